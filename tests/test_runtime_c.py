"""A C module built with a real toolchain, whose imports suspend, on every strategy."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import wasync
from tests.support.corpus import compile_c

pytestmark = pytest.mark.slow

SOURCE = Path(__file__).parent / "data" / "c_async" / "imports.c"
# "wasync": the asyncify strategy on the output of wasync's own transform.
STRATEGIES = ["fiber", "thread", "asyncify", "wasync"]
MASK64 = (1 << 64) - 1


def fetch_value(key: int) -> int:
    return key * 7 + 3


def fetch64_value(key: int) -> int:
    return (key * 0x9E3779B97F4A7C15) & MASK64


def signed64(v: int) -> int:
    return v - (1 << 64) if v & (1 << 63) else v


def expected_checksum(rounds: int) -> int:
    h = 1469598103934665603
    for r in range(rounds):
        v = signed64(fetch64_value(r))
        for k in range(8):
            h ^= (v >> (8 * k)) & 0xFF
            h = (h * 1099511628211) & MASK64
    return signed64(h)


def fib(n: int) -> int:
    return fetch_value(n) if n < 2 else fib(n - 1) + fib(n - 2)


@pytest.mark.parametrize("opt", ["-O0", "-O2"])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_c_module_with_async_imports(strategy: str, opt: str) -> None:
    wasm = compile_c(
        SOURCE, opt=opt, extra=("-nostdlib", "-Wl,--no-entry", "-fno-sanitize=undefined")
    )
    imports = ["env.fetch", "env.fetch64", "env.fetchd"]
    run_strategy = strategy
    if strategy == "asyncify":
        from tests.support.binaryen import binaryen_asyncify  # noqa: PLC0415

        wasm = binaryen_asyncify(wasm, imports=imports)
    elif strategy == "wasync":
        wasm = wasync.asyncify(wasm, imports=imports)
        run_strategy = "asyncify"
    calls = 0

    async def fetch(key: int) -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)
        return fetch_value(key)

    async def fetch64(key: int) -> int:
        await asyncio.sleep(0)
        return fetch64_value(key)

    async def fetchd(x: float) -> float:
        await asyncio.sleep(0)
        return x * 0.5

    async def main() -> None:
        inst = await wasync.instantiate(
            wasm,
            {"env": {"fetch": fetch, "fetch64": fetch64, "fetchd": fetchd}},
            strategy=run_strategy,  # type: ignore[arg-type]
        )
        assert await inst.exports.fib(12) == fib(12)
        assert calls > 100
        assert await inst.exports.apply(0, 5) == 2 * fetch_value(5)
        assert await inst.exports.apply(1, 5) == fetch_value(5) + 1
        assert await inst.exports.mix(-3, 9.0) == float(signed64(fetch64_value(-3 & MASK64))) + 4.5
        assert await inst.exports.sum_array(40) == sum(fetch_value(i) ^ i for i in range(40))
        assert await inst.exports.checksum(25) == expected_checksum(25)

    asyncio.run(main())
