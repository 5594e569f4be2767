"""Measurements the runtime tests share: resident memory, and how often the
event loop gets to run while something else is awaited."""

from __future__ import annotations

import asyncio
import resource
import time
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from collections.abc import Awaitable

__all__ = ["loop_ticks_during", "rss_kib"]

_T = TypeVar("_T")


def rss_kib() -> int:
    """This process's resident set size, in KiB (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() // 1024


async def loop_ticks_during(work: Awaitable[_T], period: float = 0.005) -> tuple[_T, int, float]:
    """Await `work` while a timer task sleeps `period` in a loop: returns the
    work's result, how many times the timer woke, and the work's duration. A
    blocked event loop shows as (almost) no ticks."""
    ticks = 0
    stop = False

    async def timer() -> None:
        nonlocal ticks
        while not stop:
            await asyncio.sleep(period)
            ticks += 1

    task = asyncio.create_task(timer())
    await asyncio.sleep(0)
    t0 = time.perf_counter()
    result = await work
    elapsed = time.perf_counter() - t0
    stop = True
    await task
    return result, ticks, elapsed
