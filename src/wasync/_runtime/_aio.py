"""The few event-loop primitives the runtime needs, for asyncio and trio.

The runtime's await points only await the user's awaitables, with three
exceptions that need the loop itself: a lock (calls on one instance are
serialized), a checkpoint (the CPU guard yields to the loop) and, for the
thread strategy, waiting for a signal from another thread. Each is provided
for whichever library is running, detected with sniffio.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Protocol

import sniffio

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "AsyncLock",
    "ThreadSignal",
    "checkpoint",
    "current_task",
    "new_lock",
    "new_thread_signal",
]


def _library() -> str:
    try:
        return sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        raise RuntimeError("wasync must be awaited from asyncio or trio") from None


class AsyncLock(Protocol):
    def locked(self) -> bool: ...
    async def acquire(self) -> Any: ...
    def release(self) -> None: ...


def new_lock() -> AsyncLock:
    if _library() == "trio":
        import trio  # noqa: PLC0415 - only when trio runs

        return trio.Lock()
    return asyncio.Lock()


def current_task_function() -> Callable[[], object]:
    """The running library's current-task function (looked up once per instance)."""
    if _library() == "trio":
        import trio  # noqa: PLC0415

        return trio.lowlevel.current_task
    return asyncio.current_task


def current_task() -> object:
    if _library() == "trio":
        import trio  # noqa: PLC0415

        return trio.lowlevel.current_task()
    return asyncio.current_task()


async def checkpoint() -> None:
    """Let the event loop run other tasks once."""
    if _library() == "trio":
        import trio  # noqa: PLC0415

        await trio.sleep(0)
    else:
        await asyncio.sleep(0)


class ThreadSignal(Protocol):
    """Set from any thread, awaited on the event loop.

    ``set_threadsafe`` raises RuntimeError once the event loop has finished
    (asyncio: loop closed; trio: ``trio.RunFinishedError``). ``clear`` and
    ``wait`` are called on the loop; a ``set_threadsafe`` that happens after a
    ``clear`` is never lost."""

    def set_threadsafe(self) -> None: ...
    async def wait(self) -> None: ...
    def clear(self) -> None: ...


class _AsyncioSignal:
    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._event = asyncio.Event()

    def set_threadsafe(self) -> None:
        self._loop.call_soon_threadsafe(self._event.set)

    async def wait(self) -> None:
        await self._event.wait()

    def clear(self) -> None:
        self._event.clear()


class _TrioSignal:
    def __init__(self) -> None:
        import trio  # noqa: PLC0415

        self._token = trio.lowlevel.current_trio_token()
        self._event = trio.Event()
        self._new_event: Callable[[], trio.Event] = trio.Event

    def set_threadsafe(self) -> None:
        # Read self._event on the trio thread, not here: clear() may replace it
        # concurrently, and setting the replaced event would lose the wake-up.
        self._token.run_sync_soon(self._set)

    def _set(self) -> None:
        self._event.set()

    async def wait(self) -> None:
        await self._event.wait()

    def clear(self) -> None:
        if self._event.is_set():
            self._event = self._new_event()


def new_thread_signal() -> ThreadSignal:
    return _TrioSignal() if _library() == "trio" else _AsyncioSignal()
