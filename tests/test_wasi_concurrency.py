"""Many WASI programs on one event loop: 200 instances of a C program that
reads a small file and sleeps for one second finish in about one second
(issue 5), on the fiber strategy."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

import wasync
from tests.support.wasi_harness import build, host_dir
from wasync._wasi._core import Wasi

pytestmark = pytest.mark.slow

COUNT = 200


def test_200_sleeping_programs_take_about_one_second(tmp_path: Path) -> None:
    (tmp_path / "hello.txt").write_bytes(b"hello, world\n")
    module = wasync.Module(build("sleeper"))
    outputs = [bytearray() for _ in range(COUNT)]

    async def one(i: int) -> int:
        wasi = Wasi(["sleeper", str(i)], {}, {"/sandbox": host_dir(tmp_path)}, stdout=outputs[i])
        return await wasi.run(module, strategy="fiber")

    async def main() -> tuple[list[int], float]:
        await one(0)  # warm up: compile the module, start the worker threads
        outputs[0].clear()
        start = time.perf_counter()
        codes = await asyncio.gather(*(one(i) for i in range(COUNT)))
        return codes, time.perf_counter() - start

    codes, elapsed = asyncio.run(main())
    print(f"\n{COUNT} programs sleeping 1 s each: {elapsed:.2f} s")
    assert codes == [0] * COUNT
    for i, out in enumerate(outputs):
        assert out.decode() == f"{i} read 13: hello, world\n"
    assert elapsed < 3.0, f"{COUNT} concurrent sleeps took {elapsed:.2f} s"
