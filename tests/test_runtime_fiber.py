"""Fiber-strategy specifics: the CPU guard, leaks, scale."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import wasync
from tests.support.metrics import loop_ticks_during, rss_kib

BUSY = r"""
(module
  (import "env" "tick" (func $tick (param i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "spin") (param $n i64) (result i64)
    (local $i i64)
    (loop $l
      (local.set $i (i64.add (local.get $i) (i64.const 1)))
      (br_if $l (i64.lt_u (local.get $i) (local.get $n))))
    (local.get $i))
  (func (export "tick") (param i32) (result i32) (call $tick (local.get 0))))
"""


def test_cpu_guard_lets_the_loop_run() -> None:
    """A busy wasm loop with yield_every_ms does not starve a concurrent timer."""

    async def tick(x: int) -> int:
        await asyncio.sleep(0)
        return x

    async def main(guard: float | None) -> tuple[int, float]:
        inst = await wasync.instantiate(
            wasync.Module.from_wat(BUSY), {"env": {"tick": tick}}, yield_every_ms=guard
        )
        result, ticks, elapsed = await loop_ticks_during(inst.exports.spin(300_000_000))
        assert result == 300_000_000
        return ticks, elapsed

    ticks, elapsed = asyncio.run(main(5))
    # The timer would fire every 5-10 ms (its own 5 ms sleep, then the next
    # yield) on an idle machine; a loaded CI machine gets fewer, so the bound is
    # loose: what it tells apart is "ticks all along" from "blocked throughout".
    assert ticks >= max(5.0, elapsed / 0.005 * 0.1), (ticks, elapsed)
    unguarded_ticks, _ = asyncio.run(main(None))
    assert unguarded_ticks <= 1  # without the guard the loop is blocked throughout


def test_guard_needs_fiber() -> None:
    async def main() -> None:
        with pytest.raises(ValueError, match="fiber"):
            await wasync.instantiate(
                wasync.Module.from_wat(BUSY),
                {"env": {"tick": abs}},
                strategy="thread",
                yield_every_ms=1,
            )

    asyncio.run(main())


def test_no_leaks_after_10000_failed_or_cancelled_calls() -> None:
    async def main() -> tuple[int, int]:
        gate = asyncio.Event()

        async def tick(x: int) -> int:
            if x == 0:
                raise RuntimeError("failed")
            await gate.wait()
            return x

        inst = await wasync.instantiate(wasync.Module.from_wat(BUSY), {"env": {"tick": tick}})
        for _ in range(200):  # warm up allocator pools
            with pytest.raises(RuntimeError):
                await inst.exports.tick(0)
        before = rss_kib()
        for i in range(5000):
            with pytest.raises(RuntimeError):
                await inst.exports.tick(0)
            task = asyncio.create_task(inst.exports.tick(i + 1))
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        after = rss_kib()
        gate.set()
        assert await inst.exports.tick(7) == 7
        return before, after

    before, after = asyncio.run(main())
    # A leaked fiber stack would be 2 MiB each (10,000 calls: gigabytes).
    assert after - before < 20_000, (before, after)


def test_the_c_callback_is_built_where_there_is_a_compiler() -> None:
    """The C callback of async imports (_native.c) is optional at install time;
    where a C compiler exists it must have been built, and it must be in use."""
    import shutil  # noqa: PLC0415
    import sysconfig  # noqa: PLC0415

    from wasync._runtime import _fiber  # noqa: PLC0415

    compiler = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(compiler) is None:
        pytest.skip(f"no C compiler ({compiler}): wasync runs with the Python callback")
    header = Path(sysconfig.get_paths()["include"]) / "Python.h"
    if not header.exists():
        pytest.skip(f"no {header}: wasync runs with the Python callback")
    assert _fiber.NATIVE_CALLBACK is not None, "src/wasync/_runtime/_native.c was not built"
