"""Write-behind for :class:`~wasync.HostDir`: a write to a host file returns at
once, and a worker makes it, in order, while the program goes on.

With ``offload=True`` every write to a regular file would otherwise cost the
program a round trip to a worker thread (tens of microseconds on a quiet
machine, more on a busy one: most of what a 64 KiB write costs), because
buffered writes have no non-blocking form on most file systems (ext4 and tmpfs
refuse ``RWF_NOWAIT`` for them). The kernel's own page cache answers the same
problem the same way: ``write()`` returns once the data is in memory, and the
disk gets it later.

The rules, which keep every program's view of its files what it would be with
synchronous writes:

* One queue for the whole process (:data:`LANE`), worked through by one worker
  at a time: writes land in the order they were made, whichever file, program
  or directory they are for.
* A write is accepted while less than :data:`LIMIT` bytes are queued (a larger
  one when the queue is empty); otherwise the program waits for room. Its data
  is copied when it is accepted.
* Before any other operation on a file (read, stat, truncate, sync, close,
  ...), the writes queued for that file (its device and inode, so also through
  other descriptors) are made; before any path operation (open, stat, rename,
  unlink, ...) in any host directory, all queued writes are.
* An error in a write that was accepted is reported by the next operation on
  the descriptor that made it (as ``close()`` and ``fsync()`` report the
  kernel's write-back errors); later writes on it fail with the same error
  until it has been reported once.

So, as with the page cache, only another process (or the host program, while
the guest runs) may see a file before the writes queued for it are made;
``fd_sync``/``fd_close`` of the descriptor, or the end of the run, make them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections import deque
from typing import TYPE_CHECKING, Any, Protocol

from wasync._wasi import _aio

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["LANE", "LIMIT", "Lane", "Writer"]

#: How many bytes may be queued at once.
LIMIT = 8 << 20


class Writer(Protocol):
    """What the lane needs of a file that writes behind: where an error in one
    of its writes goes (its ``behind_error``, reported by its next operation)."""

    behind_error: BaseException | None


# A queued write: (file, key, the write, its size). The write raises OSError
# (or anything else) on failure; the lane leaves that in file.behind_error.
_Entry = tuple[Writer, object, "Callable[[], None]", int]


class Lane:
    """The queue of accepted writes (see the module docstring).

    Called on event loops (``busy``, ``submit``, ``settle``) and off them
    (``settle_blocking``, and the worker that runs the queue); one lock guards
    the state."""

    def __init__(self, limit: int = LIMIT) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._queue: deque[_Entry] = deque()
        self._running = False
        self._bytes = 0  # queued, including the write being made
        self._keys: dict[object, int] = {}  # key -> writes queued for it
        # Loops waiting for a write to finish: post(settle, target) each, as the
        # workers hand results over (see _hostfs._Workers); emptied at each wake.
        self._waiters: list[tuple[Callable[..., object], Callable[..., None], Any]] = []

    # -- on an event loop ---------------------------------------------------------

    def busy(self, key: object | None = None) -> bool:
        """Whether writes are queued (for `key`: for that file). A plain read of
        the state (each is one atomic step); :meth:`settle` checks it again."""
        return bool(self._queue) if key is None else key in self._keys

    def room(self, size: int) -> bool:
        """Whether a write of `size` bytes would be accepted now."""
        queued = self._bytes
        return not queued or queued + size <= self.limit

    def submit(
        self,
        file: Writer,
        key: object,
        write: Callable[[], None],
        size: int,
        spawn: Callable[[Callable[[], None]], object],
    ) -> bool:
        """Queue `write` (of `size` bytes, for `file` with `key`) if there is
        room; false if not (wait for :meth:`settle` with `room` and try again).
        `spawn` starts the worker if none runs (``spawn(run)`` runs ``run()`` on
        a thread)."""
        with self._lock:
            if self._bytes and self._bytes + size > self.limit:
                return False
            entry = (file, key, write, size)
            self._queue.append(entry)
            self._bytes += size
            self._keys[key] = self._keys.get(key, 0) + 1
            start = not self._running
            self._running = True
        if start:
            try:
                spawn(self._run)
            except BaseException:  # no worker (interpreter shutdown): not queued
                with self._lock:
                    self._running = False
                    self._queue.remove(entry)
                    self._bytes -= size
                    self._forget(key)
                raise
        return True

    def _forget(self, key: object) -> None:
        """One write less queued for `key` (the lock is held)."""
        left = self._keys[key] - 1
        if left:
            self._keys[key] = left
        else:
            del self._keys[key]

    async def settle(self, key: object | None = None, *, room: int = 0) -> None:
        """Wait until no write is queued for `key` (None: none at all), or, with
        `room`, until `room` more bytes may be queued."""
        while True:
            with self._lock:
                if self._settled(key, room):
                    return
                post, settle, target, wait = _waiter()
                self._waiters.append((post, settle, target))
            await wait()

    # -- anywhere else --------------------------------------------------------------

    def settle_blocking(self, key: object | None = None) -> None:
        """:meth:`settle`, for a thread that may block (not an event loop's)."""
        with self._lock:
            while not self._settled(key, 0):
                self._idle.wait()

    def _settled(self, key: object | None, room: int) -> bool:
        if room:
            return not self._bytes or self._bytes + room <= self.limit
        return not self._queue if key is None else key not in self._keys

    def _run(self) -> None:
        """The worker: make the queued writes, in order, until none is left."""
        while True:
            with self._lock:
                if not self._queue:
                    self._running = False
                    self._wake()
                    return
                file, key, write, size = self._queue[0]
            error: BaseException | None = None
            try:
                write()
            except BaseException as e:  # noqa: BLE001 - reported by the file's next operation
                error = e
            with self._lock:
                self._queue.popleft()
                self._bytes -= size
                self._forget(key)
                if error is not None and file.behind_error is None:
                    file.behind_error = error
                self._wake()
            del file, write, error

    def _wake(self) -> None:
        """Wake every waiter (the lock is held)."""
        self._idle.notify_all()
        waiters, self._waiters = self._waiters, []
        for post, settle, target in waiters:
            # RuntimeError: a closed loop, a finished trio run: nobody waits any more
            with contextlib.suppress(RuntimeError):
                post(settle, target, (True, None))


def _waiter() -> tuple[Callable[..., object], Callable[..., None], Any, Callable[[], Any]]:
    """(post, settle, target, wait) for the running library: ``post(settle,
    target, result)`` from any thread ends ``await wait()``."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # not asyncio: trio (or an error)
        if _aio.current().name != "trio":
            raise RuntimeError("HostDir must be awaited from asyncio or trio") from None
        import trio  # noqa: PLC0415 - only when trio runs

        waiter = _aio.TrioWaiter()
        post = trio.lowlevel.current_trio_token().run_sync_soon
        return post, _aio.TrioWaiter.settle, waiter, lambda: _aio.trio_wait(waiter)
    fut: asyncio.Future[Any] = loop.create_future()
    return loop.call_soon_threadsafe, _aio.settle_future, fut, lambda: fut


#: The process's one lane.
LANE = Lane()


def _forget_after_fork() -> None:
    # A forked child has no worker (and the lock may be held): the writes
    # queued are the parent's to make; the child starts with an empty lane.
    LANE.__init__(LANE.limit)  # type: ignore[misc]


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)
