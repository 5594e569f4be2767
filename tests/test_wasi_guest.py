"""GuestMemory: the WASI functions' access to a program's memory (raw C calls
and the process-wide byte view instead of wasync.Memory's wrapped calls), and
its fallback to the public Memory API."""

from __future__ import annotations

import asyncio
from typing import cast

import pytest

import wasync
from wasync._runtime._instance import Memory, MemoryAccessError
from wasync._wasi._guest import GuestMemory

PAGE = 65536
WAT = """
(module
  (memory (export "memory") 1)
  (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0)))
  (func (export "load") (param i32) (result i32) (i32.load8_u (local.get 0))))
"""


@pytest.mark.parametrize("strategy", ["fiber", "thread"])
def test_reads_writes_and_views(strategy: str) -> None:
    async def main() -> None:
        inst = await wasync.instantiate(
            wasync.Module.from_wat(WAT),
            strategy=strategy,  # type: ignore[arg-type]
        )
        mem = inst.memory
        assert mem is not None
        g = GuestMemory(mem)
        assert g.fast
        g.write(100, b"hello")
        assert g.read(100, 5) == b"hello" == mem.read(100, 5)
        mem.write(PAGE - 3, b"end")
        assert g.read(PAGE - 3, 3) == b"end"
        for bad in [(PAGE - 2, 3), (PAGE, 1), (-1, 1)]:
            with pytest.raises(MemoryAccessError):
                g.read(*bad)
            with pytest.raises(MemoryAccessError):
                g.write(bad[0], b"x" * bad[1])
        with pytest.raises(MemoryAccessError):
            g.views([(0, 4), (PAGE - 1, 2)])
        # empty accesses are never checked (as Memory's)
        assert g.read(10 * PAGE, 0) == b""
        g.write(10 * PAGE, b"")
        a, empty, b = g.views([(200, 2), (10 * PAGE, 0), (PAGE - 1, 1)])  # type: ignore[misc]
        a[:] = b"AB"
        b[:] = b"Z"
        assert len(empty) == 0
        assert mem.read(200, 2) == b"AB"
        assert await inst.exports.load(PAGE - 1) == ord("Z")
        # the memory grows (and may move): the next access sees it
        with pytest.raises(MemoryAccessError):
            g.read(PAGE, 4)
        assert await inst.exports.grow(3) == 1
        g.write(4 * PAGE - 4, b"last")
        assert mem.read(4 * PAGE - 4, 4) == b"last"
        assert g.read(100, 5) == b"hello"
        inst.close()
        with pytest.raises(wasync.WasyncError, match="closed"):
            g.read(100, 5)

    asyncio.run(main())


def test_fallback_to_the_public_api() -> None:
    """A Memory without the internals GuestMemory relies on: its read/write."""

    class Plain:
        name = "plain"

        def __init__(self) -> None:
            self.data = bytearray(64)

        def read(self, ptr: int, n: int) -> bytes:
            if ptr + n > len(self.data):
                raise MemoryAccessError("out")
            return bytes(self.data[ptr : ptr + n])

        def write(self, ptr: int, data: bytes) -> None:
            if ptr + len(data) > len(self.data):
                raise MemoryAccessError("out")
            self.data[ptr : ptr + len(data)] = data

    plain = Plain()
    g = GuestMemory(cast(Memory, plain))
    assert not g.fast
    g.write(3, b"abc")
    assert g.read(3, 3) == b"abc"
    assert plain.data[3:6] == b"abc"
    assert g.views([(0, 4)]) is None  # the WASI functions then copy
    with pytest.raises(MemoryAccessError):
        g.read(62, 4)
