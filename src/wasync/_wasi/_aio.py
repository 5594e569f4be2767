"""The event-loop primitives of the WASI implementation, for asyncio and trio.

Besides their backends' coroutines, the WASI functions wait for a few things
only the event loop provides: time (``poll_oneoff`` clocks, ``sched_yield``),
the first of several descriptors to be ready, or a deadline (``poll_oneoff``),
socket accept/receive/send, and blocking calls made on a thread (stdin from a
file; HostDir's system calls). :class:`Aio` gathers them, one implementation per
library; :func:`current` picks the running one with sniffio, once per
:class:`~wasync.Wasi` run, not per call.

What is not tied to a run (HostDir, the standard streams) tells the libraries
apart per call with :func:`asyncio.get_running_loop`, which the asyncio path
calls anyway; only a call outside asyncio goes on to sniffio. Their trio paths
are :func:`trio_wait` (a result handed over from another thread with the trio
token, as asyncio's ``call_soon_threadsafe`` does) and :func:`run_in_thread`.

The asyncio implementations are the calls the WASI functions made before trio
was supported (the asyncio paths cost what they did), but for one fix: a poll
now lets its cancelled waits end before it returns (see :meth:`Aio.wait_any`).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import sniffio

if TYPE_CHECKING:
    import socket
    from collections.abc import Awaitable, Callable, Coroutine, Sequence
    from concurrent.futures import Future

__all__ = [
    "Aio",
    "TrioWaiter",
    "current",
    "run_in_thread",
    "settle_future",
    "trio_run_in_executor",
    "trio_wait",
]

T = TypeVar("T")


def _library() -> str:
    try:
        return sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        raise RuntimeError("wasync's WASI must be awaited from asyncio or trio") from None


class Aio(ABC):
    """The primitives of one async library. Every method is called on the
    event loop's thread, from a task of that library."""

    #: The library's name, as sniffio reports it.
    name: ClassVar[str]
    #: ``sleep(seconds)``: the library's own function (no wrapper to go through).
    sleep: Callable[[float], Awaitable[None]]

    @abstractmethod
    async def sleep_forever(self) -> None:
        """Wait until cancelled."""

    @abstractmethod
    async def wait_readable(self, sock: socket.socket) -> None:
        """Return once `sock` is readable (or has an error or hangup pending)."""

    @abstractmethod
    async def wait_writable(self, sock: socket.socket) -> None:
        """Return once `sock` is writable (or has an error or hangup pending)."""

    @abstractmethod
    async def wait_any(
        self,
        waits: Sequence[Callable[[], Coroutine[Any, Any, None]]],
        timeout: Callable[[], float | None],
        check: Callable[[], T | None],
    ) -> T:
        """``poll``: wait until ``check()`` returns something other than None,
        and return that. ``check`` is called each time one of `waits` has
        completed (or failed: a wait's exception only makes the poll look
        again) or ``timeout()`` seconds have passed (None: no deadline; with no
        `waits` there is always one). Each wait is started once per round."""

    @abstractmethod
    async def sock_accept(self, sock: socket.socket) -> socket.socket:
        """A connection from the listening, non-blocking `sock` (non-blocking)."""

    @abstractmethod
    async def sock_recv(self, sock: socket.socket, n: int) -> bytes:
        """Up to `n` bytes from the non-blocking `sock` (b"" at its end)."""

    @abstractmethod
    async def sock_sendall(self, sock: socket.socket, data: bytes) -> None:
        """All of `data` to the non-blocking `sock`."""

    @abstractmethod
    def shield(self) -> contextlib.AbstractContextManager[object]:
        """Where cleanup awaits must run even in a cancelled task: under trio a
        shielded cancel scope (a cancelled scope cancels every await in it);
        under asyncio nothing (a cancellation is delivered once)."""


class _Asyncio(Aio):
    name = "asyncio"

    def __init__(self) -> None:
        self.sleep = asyncio.sleep

    async def sleep_forever(self) -> None:
        await asyncio.Event().wait()

    async def wait_readable(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        await _loop_ready(sock.fileno(), loop.add_reader, loop.remove_reader)

    async def wait_writable(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        await _loop_ready(sock.fileno(), loop.add_writer, loop.remove_writer)

    async def wait_any(
        self,
        waits: Sequence[Callable[[], Coroutine[Any, Any, None]]],
        timeout: Callable[[], float | None],
        check: Callable[[], T | None],
    ) -> T:
        waiters: list[asyncio.Future[Any]] = []
        loop = asyncio.get_running_loop()
        try:
            for wait in waits:
                waiters.append(loop.create_task(wait()))
            limit = timeout()
            while True:
                if waiters:
                    await asyncio.wait(waiters, timeout=limit, return_when="FIRST_COMPLETED")
                else:
                    await asyncio.sleep(limit or 0)
                result = check()
                if result is not None:
                    return result
                limit = timeout()
        finally:
            for w in waiters:
                w.cancel()
            # Let them end before going on: a cancelled wait_readable removes
            # its reader when it next runs, which would otherwise be after the
            # program's next call registered its own (sock_accept after a poll
            # that timed out would never wake).
            pending = [w for w in waiters if not w.done()]
            if pending:
                await asyncio.wait(pending)

    async def sock_accept(self, sock: socket.socket) -> socket.socket:
        conn, _ = await asyncio.get_running_loop().sock_accept(sock)
        return conn

    async def sock_recv(self, sock: socket.socket, n: int) -> bytes:
        return await asyncio.get_running_loop().sock_recv(sock, n)

    async def sock_sendall(self, sock: socket.socket, data: bytes) -> None:
        await asyncio.get_running_loop().sock_sendall(sock, data)

    def shield(self) -> contextlib.AbstractContextManager[object]:
        return contextlib.nullcontext()


class _Trio(Aio):
    """trio's primitives; the socket calls are asyncio's loop methods' logic
    (try the call, wait for readiness when it would block, try again)."""

    name = "trio"

    def __init__(self) -> None:
        import trio  # noqa: PLC0415 - only when trio runs

        self._trio = trio
        self.sleep = trio.sleep

    async def sleep_forever(self) -> None:
        await self._trio.sleep_forever()

    async def wait_readable(self, sock: socket.socket) -> None:
        await self._trio.lowlevel.wait_readable(sock)

    async def wait_writable(self, sock: socket.socket) -> None:
        await self._trio.lowlevel.wait_writable(sock)

    async def wait_any(
        self,
        waits: Sequence[Callable[[], Coroutine[Any, Any, None]]],
        timeout: Callable[[], float | None],
        check: Callable[[], T | None],
    ) -> T:
        trio = self._trio
        while True:
            limit = timeout()
            if not waits:
                await trio.sleep(limit or 0)
            elif len(waits) == 1:  # the usual case (one descriptor): no nursery
                with trio.move_on_after(math.inf if limit is None else limit):
                    await _quietly(waits[0])
            else:
                await self._first(waits, limit)
            result = check()
            if result is not None:
                return result
            # Nothing ready after all (a wait that failed, a clock read a hair
            # early): let the loop run before the next round, as asyncio would.
            await trio.lowlevel.checkpoint()

    async def _first(
        self, waits: Sequence[Callable[[], Coroutine[Any, Any, None]]], limit: float | None
    ) -> None:
        """Until the first of `waits` completes, or `limit` seconds."""
        trio = self._trio
        try:
            with trio.move_on_after(math.inf if limit is None else limit):
                async with trio.open_nursery() as nursery:
                    for wait in waits:
                        nursery.start_soon(_then_cancel, wait, nursery.cancel_scope)
        except BaseExceptionGroup as group:
            # Cancelled from outside: the children's Cancelled come grouped.
            # Raise this task's own (a checkpoint in a cancelled scope raises it).
            _, rest = group.split(trio.Cancelled)
            if rest is not None:
                raise
            await trio.lowlevel.checkpoint()
            raise

    async def sock_accept(self, sock: socket.socket) -> socket.socket:
        while True:
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError):
                await self._trio.lowlevel.wait_readable(sock)
            else:
                conn.setblocking(False)
                return conn

    async def sock_recv(self, sock: socket.socket, n: int) -> bytes:
        while True:
            try:
                return sock.recv(n)
            except (BlockingIOError, InterruptedError):
                await self._trio.lowlevel.wait_readable(sock)

    async def sock_sendall(self, sock: socket.socket, data: bytes) -> None:
        view = memoryview(data)
        while True:
            try:
                sent = sock.send(view)
            except (BlockingIOError, InterruptedError):
                sent = 0
            view = view[sent:]
            if not view:
                return
            await self._trio.lowlevel.wait_writable(sock)

    def shield(self) -> contextlib.AbstractContextManager[object]:
        return self._trio.CancelScope(shield=True)


async def _quietly(wait: Callable[[], Coroutine[Any, Any, None]]) -> None:
    # A wait's exception only makes the poll look again (under asyncio: a task
    # done with an exception ends asyncio.wait all the same).
    with contextlib.suppress(Exception):
        await wait()


async def _then_cancel(wait: Callable[[], Coroutine[Any, Any, None]], scope: Any) -> None:
    await _quietly(wait)
    scope.cancel()


_ASYNCIO = _Asyncio()
_TRIO: list[_Trio] = []  # made on first use: trio is imported only when it runs


def current() -> Aio:
    """The primitives of the running library (trio's under trio, else asyncio's,
    as the runtime decides)."""
    if _library() != "trio":
        return _ASYNCIO
    if not _TRIO:
        _TRIO.append(_Trio())
    return _TRIO[0]


# -- a result from another thread, and blocking calls on one, outside a Wasi run ------------


class TrioWaiter:
    """A trio task waiting for `result` from another thread (see :func:`trio_wait`)."""

    __slots__ = ("abandoned", "result", "task")

    def __init__(self) -> None:
        import trio  # noqa: PLC0415

        self.task = trio.lowlevel.current_task()
        self.result: tuple[bool, object] | None = None  # (ok, value or exception)
        self.abandoned = False

    def settle(self, result: tuple[bool, object]) -> None:
        """Hand `result` over; call it on the trio thread (``run_sync_soon``)."""
        if self.abandoned:
            return
        import trio  # noqa: PLC0415

        self.result = result
        trio.lowlevel.reschedule(self.task)


async def trio_wait(waiter: TrioWaiter, on_abandon: Callable[[], object] | None = None) -> Any:
    """Wait for ``waiter.settle`` (a worker posts it with the trio token's
    ``run_sync_soon``); return its value or raise its exception. Cancelled,
    the wait is abandoned at once (the result is dropped when it comes) and
    `on_abandon` is called: what cancelling an asyncio future does."""
    import trio  # noqa: PLC0415

    def abort(_: object) -> Any:
        waiter.abandoned = True
        if on_abandon is not None:
            on_abandon()
        return trio.lowlevel.Abort.SUCCEEDED

    await trio.lowlevel.wait_task_rescheduled(abort)
    assert waiter.result is not None
    ok, value = waiter.result
    waiter.result = None
    if ok:
        return value
    assert isinstance(value, BaseException)
    raise value


def settle_future(fut: asyncio.Future[Any], result: tuple[bool, object]) -> None:
    """Hand `result` ``(ok, value or exception)`` over to an asyncio future: the
    asyncio twin of :meth:`TrioWaiter.settle`, posted with the loop's
    ``call_soon_threadsafe``; a future cancelled meanwhile is left alone."""
    if fut.done():
        return
    ok, value = result
    if ok:
        fut.set_result(value)
    else:
        assert isinstance(value, BaseException)
        fut.set_exception(value)


async def trio_run_in_executor(executor: Any, fn: Callable[[], T]) -> T:
    """``fn()`` in `executor` (a concurrent.futures Executor) under trio:
    ``loop.run_in_executor`` for trio (cancelled, the future is cancelled too)."""
    import trio  # noqa: PLC0415

    token = trio.lowlevel.current_trio_token()
    waiter = TrioWaiter()
    future: Future[T] = executor.submit(fn)

    def done(f: Future[T]) -> None:
        if f.cancelled():
            return  # only ever after the wait was abandoned
        error = f.exception()
        result: tuple[bool, object] = (True, f.result()) if error is None else (False, error)
        with contextlib.suppress(RuntimeError):  # trio.RunFinishedError: nobody waits
            token.run_sync_soon(waiter.settle, result)

    future.add_done_callback(done)
    value: T = await trio_wait(waiter, future.cancel)
    return value


async def run_in_thread(fn: Callable[..., T], *args: object) -> T:
    """``fn(*args)`` on a thread of the running library's own (asyncio: the
    default executor; trio: ``trio.to_thread``), abandoned when cancelled."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # not asyncio
        if _library() != "trio":
            raise
        import trio  # noqa: PLC0415

        return await trio.to_thread.run_sync(fn, *args, abandon_on_cancel=True)
    return await loop.run_in_executor(None, fn, *args)


async def _loop_ready(
    fileno: int, add: Callable[..., object], remove: Callable[[int], object]
) -> None:
    """Wait until asyncio's loop reports `fileno` ready (`add`/`remove`: the
    loop's add_reader/remove_reader, or add_writer/remove_writer)."""
    fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    add(fileno, fut.set_result, None)
    try:
        await fut
    finally:
        remove(fileno)
