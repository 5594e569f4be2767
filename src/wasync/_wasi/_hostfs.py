"""A host directory as a :class:`~wasync._wasi._fs.FileSystem` (:class:`HostDir`).

The sandbox holds against races, not only against the paths it is given:

* the root is an ``O_DIRECTORY`` descriptor opened once; every operation
  walks its clean path component by component from that descriptor with
  ``openat(O_DIRECTORY | O_NOFOLLOW)`` and makes the last step relative to the
  parent's descriptor (``fstatat``/``openat``/``mkdirat``/``renameat``/...
  with no symlink following). A directory swapped for a symlink between
  :meth:`HostDir.resolve` and the operation makes the operation fail (NOTDIR
  or LOOP); it is never followed, so nothing outside the root is reached;
* only clean paths are accepted (``..``/absolute: PERM, others: INVAL);
* descriptors are reference-counted while a system call runs in a worker
  thread, so closing a :class:`HostDir` or file never lets a recycled
  descriptor number be used in its place.

System calls run in worker threads (``offload=True``, the default: 4 threads
shared by every event loop, asyncio's or trio's, or the ``executor`` given) or
inline on the event loop (``offload=False``: cheaper per call, but the loop
blocks for each call; fine for local disks and benchmarks). Four
exceptions keep ``offload=True`` from costing a thread round trip where nothing
waits: read-only path operations (``stat``, ``readlink``, ``resolve``, opening
for reading) run on the loop when the kernel has their lookups cached, on a
local file system (Linux >= 5.12, see _cached); a read of a regular file is
first tried inline with ``RWF_NOWAIT`` (Linux >= 4.14), which the kernel serves
from the page cache or refuses rather than wait for the disk (then the read
goes to a thread); buffered writes
likewise where the file system supports the flag for them (not ext4 or tmpfs);
and other writes to regular files go behind (``write_behind=True``, the
default; see _behind): the write returns once its data is copied, and a
worker makes it, in order, before anything else touches the file.
And under the "thread" strategy, whose WASI calls run on the instance's own
thread rather than the event loop's, file reads and writes are made right there.

``readonly=True`` refuses every change with ROFS (real hosts report EROFS for
read-only mounts; ``wasmtime`` with read-only preopens reports EPERM/EACCES per
operation instead).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import functools
import os
import queue
import stat as stat_mod
import sys
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from wasync._wasi import _aio
from wasync._wasi._abi import Errno, Filetype
from wasync._wasi._behind import LANE
from wasync._wasi._cached import probe_for
from wasync._wasi._fs import (
    MAX_SYMLINKS,
    NOW,
    DirEntry,
    File,
    FileStat,
    FileSystem,
    FsError,
    OpenMode,
    join_path,
    resolve_path,
)
from wasync._wasi._memfs import MAX_FILE_SIZE, MAX_TIME, clean_parts

if TYPE_CHECKING:
    from collections.abc import Callable
    from concurrent.futures import Executor

    from wasync._wasi._fs import TimeSpec

__all__ = ["ERRNO_TO_WASI", "HostDir", "HostFile", "errno_from_oserror"]

T = TypeVar("T")

# -- errno mapping -------------------------------------------------------------------

_ERRNO_NAMES: tuple[tuple[str, Errno], ...] = (
    ("E2BIG", Errno.TOOBIG),
    ("EACCES", Errno.ACCES),
    ("EADDRINUSE", Errno.ADDRINUSE),
    ("EADDRNOTAVAIL", Errno.ADDRNOTAVAIL),
    ("EAFNOSUPPORT", Errno.AFNOSUPPORT),
    ("EAGAIN", Errno.AGAIN),
    ("EWOULDBLOCK", Errno.AGAIN),
    ("EALREADY", Errno.ALREADY),
    ("EBADF", Errno.BADF),
    ("EBADMSG", Errno.BADMSG),
    ("EBUSY", Errno.BUSY),
    ("ECANCELED", Errno.CANCELED),
    ("ECHILD", Errno.CHILD),
    ("ECONNABORTED", Errno.CONNABORTED),
    ("ECONNREFUSED", Errno.CONNREFUSED),
    ("ECONNRESET", Errno.CONNRESET),
    ("EDEADLK", Errno.DEADLK),
    ("EDEADLOCK", Errno.DEADLK),
    ("EDESTADDRREQ", Errno.DESTADDRREQ),
    ("EDOM", Errno.DOM),
    ("EDQUOT", Errno.DQUOT),
    ("EEXIST", Errno.EXIST),
    ("EFAULT", Errno.FAULT),
    ("EFBIG", Errno.FBIG),
    ("EHOSTUNREACH", Errno.HOSTUNREACH),
    ("EIDRM", Errno.IDRM),
    ("EILSEQ", Errno.ILSEQ),
    ("EINPROGRESS", Errno.INPROGRESS),
    ("EINTR", Errno.INTR),
    ("EINVAL", Errno.INVAL),
    ("EIO", Errno.IO),
    ("EISCONN", Errno.ISCONN),
    ("EISDIR", Errno.ISDIR),
    ("ELOOP", Errno.LOOP),
    ("EMFILE", Errno.MFILE),
    ("EMLINK", Errno.MLINK),
    ("EMSGSIZE", Errno.MSGSIZE),
    ("EMULTIHOP", Errno.MULTIHOP),
    ("ENAMETOOLONG", Errno.NAMETOOLONG),
    ("ENETDOWN", Errno.NETDOWN),
    ("ENETRESET", Errno.NETRESET),
    ("ENETUNREACH", Errno.NETUNREACH),
    ("ENFILE", Errno.NFILE),
    ("ENOBUFS", Errno.NOBUFS),
    ("ENODEV", Errno.NODEV),
    ("ENOENT", Errno.NOENT),
    ("ENOEXEC", Errno.NOEXEC),
    ("ENOLCK", Errno.NOLCK),
    ("ENOLINK", Errno.NOLINK),
    ("ENOMEM", Errno.NOMEM),
    ("ENOMSG", Errno.NOMSG),
    ("ENOPROTOOPT", Errno.NOPROTOOPT),
    ("ENOSPC", Errno.NOSPC),
    ("ENOSYS", Errno.NOSYS),
    ("ENOTCONN", Errno.NOTCONN),
    ("ENOTDIR", Errno.NOTDIR),
    ("ENOTEMPTY", Errno.NOTEMPTY),
    ("ENOTRECOVERABLE", Errno.NOTRECOVERABLE),
    ("ENOTSOCK", Errno.NOTSOCK),
    ("ENOTSUP", Errno.NOTSUP),
    ("EOPNOTSUPP", Errno.NOTSUP),
    ("ENOTTY", Errno.NOTTY),
    ("ENXIO", Errno.NXIO),
    ("EOVERFLOW", Errno.OVERFLOW),
    ("EOWNERDEAD", Errno.OWNERDEAD),
    ("EPERM", Errno.PERM),
    ("EPIPE", Errno.PIPE),
    ("EPROTO", Errno.PROTO),
    ("EPROTONOSUPPORT", Errno.PROTONOSUPPORT),
    ("EPROTOTYPE", Errno.PROTOTYPE),
    ("ERANGE", Errno.RANGE),
    ("EROFS", Errno.ROFS),
    ("ESPIPE", Errno.SPIPE),
    ("ESRCH", Errno.SRCH),
    ("ESTALE", Errno.STALE),
    ("ETIMEDOUT", Errno.TIMEDOUT),
    ("ETXTBSY", Errno.TXTBSY),
    ("EXDEV", Errno.XDEV),
)

#: Host errno -> WASI errno, for every errno of this platform that has one.
ERRNO_TO_WASI: dict[int, Errno] = {
    getattr(errno, name): wasi for name, wasi in _ERRNO_NAMES if hasattr(errno, name)
}


def errno_from_oserror(e: OSError) -> Errno:
    """The WASI errno for a host :class:`OSError` (IO when there is none)."""
    return ERRNO_TO_WASI.get(e.errno, Errno.IO) if e.errno is not None else Errno.IO


def _fs_error(e: OSError, op: str, path: str) -> FsError:
    # The message names the guest's path, never the host's.
    return FsError(errno_from_oserror(e), f"{op} {path!r}: {e.strerror or e}")


# -- stat ------------------------------------------------------------------------------


def _filetype(mode: int) -> Filetype:
    if stat_mod.S_ISREG(mode):
        return Filetype.REGULAR_FILE
    if stat_mod.S_ISDIR(mode):
        return Filetype.DIRECTORY
    if stat_mod.S_ISLNK(mode):
        return Filetype.SYMBOLIC_LINK
    if stat_mod.S_ISCHR(mode):
        return Filetype.CHARACTER_DEVICE
    if stat_mod.S_ISBLK(mode):
        return Filetype.BLOCK_DEVICE
    if stat_mod.S_ISSOCK(mode):
        return Filetype.SOCKET_STREAM
    return Filetype.UNKNOWN  # FIFOs, as other WASI hosts report them


def _filestat(st: os.stat_result) -> FileStat:
    return FileStat(
        filetype=_filetype(st.st_mode),
        size=st.st_size,
        nlink=st.st_nlink,
        ino=st.st_ino,
        dev=st.st_dev,
        atime_ns=st.st_atime_ns,
        mtime_ns=st.st_mtime_ns,
        ctime_ns=st.st_ctime_ns,
    )


# -- setting times: utimensat/futimens with UTIME_NOW/UTIME_OMIT -------------------------


class _Timespec(ctypes.Structure):
    _fields_ = (("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long))


class _Utimens:
    """utimensat/futimens from the C library (None where unavailable)."""

    def __init__(self, utime_now: int, utime_omit: int, nofollow: int) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self.utimensat = libc.utimensat
        self.utimensat.argtypes = (
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.POINTER(_Timespec),
            ctypes.c_int,
        )
        self.utimensat.restype = ctypes.c_int
        self.futimens = libc.futimens
        self.futimens.argtypes = (ctypes.c_int, ctypes.POINTER(_Timespec))
        self.futimens.restype = ctypes.c_int
        self.now = utime_now
        self.omit = utime_omit
        self.nofollow = nofollow

    def times(self, atime: TimeSpec, mtime: TimeSpec) -> Any:
        arr = (_Timespec * 2)()
        for i, t in enumerate((atime, mtime)):
            if t is None:
                arr[i].tv_nsec = self.omit
            elif t == NOW:
                arr[i].tv_nsec = self.now
            else:
                arr[i].tv_sec, arr[i].tv_nsec = divmod(int(t), 1_000_000_000)
        return arr


# UTIME_NOW, UTIME_OMIT, AT_SYMLINK_NOFOLLOW (Python's os does not expose them).
_UTIME_CONSTANTS: dict[str, tuple[int, int, int]] = {
    "linux": ((1 << 30) - 1, (1 << 30) - 2, 0x100),
    "darwin": (-1, -2, 0x20),
}


@functools.cache
def _utimens() -> _Utimens | None:
    platform = "linux" if sys.platform.startswith("linux") else sys.platform
    constants = _UTIME_CONSTANTS.get(platform)
    if constants is None:
        return None
    try:
        return _Utimens(*constants)
    except (OSError, AttributeError):  # no such library or symbol
        return None


def _check_time(t: TimeSpec) -> None:
    if isinstance(t, int) and not 0 <= t <= MAX_TIME:
        raise FsError(Errno.INVAL, f"invalid time {t!r}")


def _raise_errno() -> None:
    err = ctypes.get_errno()
    raise OSError(err, os.strerror(err))


def _utimensat(dir_fd: int, name: str, atime: TimeSpec, mtime: TimeSpec) -> None:
    lib = _utimens()
    if lib is not None:
        if lib.utimensat(dir_fd, os.fsencode(name), lib.times(atime, mtime), lib.nofollow):
            _raise_errno()
        return
    # Fallback: read what is to be kept first (racy, but only where there is no utimensat).
    if atime is None and mtime is None:
        return
    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    os.utime(name, ns=_ns_pair(st, atime, mtime), dir_fd=dir_fd, follow_symlinks=False)


def _futimens(fd: int, atime: TimeSpec, mtime: TimeSpec) -> None:
    lib = _utimens()
    if lib is not None:
        if lib.futimens(fd, lib.times(atime, mtime)):
            _raise_errno()
        return
    if atime is None and mtime is None:
        return
    os.utime(fd, ns=_ns_pair(os.fstat(fd), atime, mtime))


def _ns_pair(st: os.stat_result, atime: TimeSpec, mtime: TimeSpec) -> tuple[int, int]:
    now = time.time_ns()

    def pick(t: TimeSpec, current: int) -> int:
        return current if t is None else now if t == NOW else int(t)

    return pick(atime, st.st_atime_ns), pick(mtime, st.st_mtime_ns)


# -- descriptors and threads --------------------------------------------------------------

# Directories are walked with O_PATH where there is one: it needs no read
# permission (only search), like a kernel path walk.
_WALK_FLAGS = getattr(os, "O_PATH", os.O_RDONLY) | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_OPEN_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK
_RWF_NOAPPEND = getattr(os, "RWF_NOAPPEND", 0x20 if sys.platform.startswith("linux") else 0)
_noappend_works = hasattr(os, "pwritev") and _RWF_NOAPPEND != 0
# preadv2/pwritev2's RWF_NOWAIT (Linux >= 4.14): fail with EAGAIN instead of
# waiting for the disk (a read of pages not in the page cache; a buffered write
# where the file system cannot promise not to block). 0 where unavailable.
_RWF_NOWAIT: int = getattr(os, "RWF_NOWAIT", 0) if hasattr(os, "preadv") else 0
# The most buffers one preadv/pwritev takes (more: EINVAL); the fast paths leave
# longer lists to read()/write(), which use one buffer.
_IOV_MAX = 16
with contextlib.suppress(AttributeError, ValueError, OSError):
    _IOV_MAX = max(_IOV_MAX, os.sysconf("SC_IOV_MAX"))
# The largest read or write tried inline with RWF_NOWAIT: copying more would
# hold the event loop for long (~1 ms a MiB here) even with the data at hand.
_NOWAIT_MAX = 1 << 20
# Writes behind end before 1 TiB (see _Runner.behind_end).
_BEHIND_END = 1 << 40
# What a file system or kernel without RWF_NOWAIT support answers.
_NOWAIT_UNSUPPORTED = frozenset(
    e for e in (errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL, errno.ENOSYS) if e is not None
)


class _FdGuard:
    """A descriptor closed only once no thread uses it (descriptor numbers are
    recycled: closing under a running call could redirect it elsewhere)."""

    __slots__ = ("_closing", "_fd", "_lock", "_users")

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._lock = threading.RLock()
        self._users = 0
        self._closing = False

    def acquire(self) -> int:
        with self._lock:
            if self._closing:
                raise FsError(Errno.BADF, "closed")
            self._users += 1
            return self._fd

    def release(self) -> None:
        with self._lock:
            self._users -= 1
            if self._closing and self._users == 0:
                os.close(self._fd)

    def close(self) -> None:
        with self._lock:
            if self._closing:
                return
            self._closing = True
            if self._users == 0:
                os.close(self._fd)

    @property
    def closed(self) -> bool:
        return self._closing


# A job for the workers: ``post(settle, target, (ok, value))`` hands the outcome
# of `call` over, thread-safely, to the loop that waits for it (asyncio: the
# loop's call_soon_threadsafe, _aio.settle_future and a future; trio: the trio token's
# run_sync_soon, TrioWaiter.settle and a waiter).
_Post: TypeAlias = "Callable[..., object]"
_Settle: TypeAlias = "Callable[[Any, tuple[bool, object]], None]"
_Job: TypeAlias = "tuple[_Post | None, _Settle | None, Any, Callable[[], Any]]"


class _Workers:
    """The threads that run offloaded system calls for every :class:`HostDir`
    without an executor of its own: `size` threads (started on first use)
    taking jobs from one queue, each job's result handed to its event loop
    with ``call_soon_threadsafe`` (asyncio) or the trio token's
    ``run_sync_soon`` (trio).

    About half the cost of ``loop.run_in_executor`` on a ThreadPoolExecutor
    per call (no concurrent future to create, lock and chain to an asyncio one:
    a no-op round trip took 26 us against 51 us on the benchmark machine),
    which is most of what an offloaded 64 KiB write costs. As with a ThreadPoolExecutor,
    the jobs already queued still run at interpreter exit, and cancelling the
    waiting task does not stop a job that has started (the descriptors it uses
    stay open until it is done: see _FdGuard)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._started = False
        self._closed = False
        register = getattr(threading, "_register_atexit", None)  # what concurrent.futures uses
        self._daemon = register is None
        if register is not None:
            register(self._shutdown)
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._forget_threads)

    def run(
        self, fn: Callable[[], T], loop: asyncio.AbstractEventLoop | None = None
    ) -> asyncio.Future[T]:
        """A future of `fn()` run in a worker, for `loop` (the running loop)."""
        if not self._started or self._closed:
            self._start()
        if loop is None:
            loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._jobs.put((loop.call_soon_threadsafe, _aio.settle_future, fut, fn))
        return fut

    def spawn(self, fn: Callable[[], object]) -> None:
        """Run `fn()` in a worker, nobody waiting for it (it handles its errors)."""
        if not self._started or self._closed:
            self._start()
        self._jobs.put((None, None, None, fn))

    async def run_trio(self, fn: Callable[[], T]) -> T:
        """`fn()` run in a worker, awaited under trio (cancelled: abandoned, as
        an asyncio future is cancelled; the call itself runs to its end)."""
        if not self._started or self._closed:
            self._start()
        import trio  # noqa: PLC0415 - only when trio runs

        waiter = _aio.TrioWaiter()
        post = trio.lowlevel.current_trio_token().run_sync_soon
        self._jobs.put((post, _aio.TrioWaiter.settle, waiter, fn))
        value: T = await _aio.trio_wait(waiter)
        return value

    def _start(self) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot run file system calls after interpreter shutdown")
            if self._started:
                return
            for n in range(self._size):
                name = f"wasync-hostfs-{n + 1}"
                threading.Thread(target=self._work, name=name, daemon=self._daemon).start()
            self._started = True

    def _work(self) -> None:
        jobs = self._jobs
        while True:
            job = jobs.get()
            if job is None:
                return
            post, settle, target, fn = job
            del job
            try:
                result: tuple[bool, object] = (True, fn())
            except BaseException as e:  # noqa: BLE001 - delivered to the waiting task
                result = (False, e)
            del fn
            if post is None:  # spawned: nobody waits
                del result
                continue
            # RuntimeError: a closed loop, a finished trio run: nobody waits any more
            with contextlib.suppress(RuntimeError):
                post(settle, target, result)
            del post, settle, target, result

    def _shutdown(self) -> None:
        with self._lock:
            self._closed = True
            if self._started:
                for _ in range(self._size):
                    self._jobs.put(None)

    def _forget_threads(self) -> None:
        # In a forked child the threads are gone (and the lock may be held).
        self._lock = threading.Lock()
        self._jobs = queue.SimpleQueue()
        self._started = False


_WORKERS = _Workers(4)


class _Runner:
    """Runs blocking calls: in a worker thread, or inline. With `behind`
    (offload only), writes to regular files go behind (see _behind)."""

    __slots__ = ("behind", "behind_end", "executor", "offload")

    def __init__(self, offload: bool, executor: Executor | None, *, behind: bool) -> None:
        self.offload = offload
        self.executor = executor
        self.behind = behind and offload
        # Writes ending past this offset are made before they return: near the
        # file system's size limit, where the write itself may fail (EFBIG).
        self.behind_end = _BEHIND_END

    def spawn(self, fn: Callable[[], object]) -> None:
        """Run `fn()` in a worker, nobody waiting for it."""
        if self.executor is not None:
            self.executor.submit(fn)
        else:
            _WORKERS.spawn(fn)

    async def __call__(self, fn: Callable[[], T]) -> T:
        if not self.offload:
            return fn()
        # A HostDir is not tied to one loop: which library runs is looked up per
        # call, with what the asyncio path needs anyway (cheaper than sniffio).
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not asyncio: trio (or an error)
            return await self._trio(fn)
        if self.executor is not None:
            return await loop.run_in_executor(self.executor, fn)
        return await _WORKERS.run(fn, loop)

    async def _trio(self, fn: Callable[[], T]) -> T:
        if _aio.current().name != "trio":
            raise RuntimeError("HostDir must be awaited from asyncio or trio")
        if self.executor is not None:
            return await _aio.trio_run_in_executor(self.executor, fn)
        return await _WORKERS.run_trio(fn)


def _walk(root: int, parts: list[str]) -> int:
    """A descriptor of directory `parts` under `root`, never following a
    symlink; the caller closes it unless it is `root`."""
    fd = root
    try:
        for part in parts:
            child = os.open(part, _WALK_FLAGS, dir_fd=fd)
            if fd != root:
                os.close(fd)
            fd = child
    except BaseException:
        if fd != root:
            os.close(fd)
        raise
    return fd


# -- the file system ------------------------------------------------------------------------


class HostDir(FileSystem):
    """The host directory `path` (everything below it, nothing else).

    `readonly` refuses changes with ROFS; `offload` runs system calls in worker
    threads (`executor`, or a shared pool) instead of on the event loop, and
    with `write_behind` (the default) a write to a regular file returns as
    soon as its data is copied, the worker making it afterwards, in order
    (errors reported by the file's next operation: see _behind).
    :meth:`close` (or garbage collection) closes the root descriptor; open
    files stay usable."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        readonly: bool = False,
        offload: bool = True,
        executor: Executor | None = None,
        write_behind: bool = True,
    ) -> None:
        self.path = os.fspath(path)
        self.readonly = readonly
        self._runner = _Runner(offload, executor, behind=write_behind)
        root = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._root = _FdGuard(root)
        with contextlib.suppress(OSError, ValueError):  # not known: the default bound
            bits = os.fpathconf(root, "PC_FILESIZEBITS")
            if 0 < bits < 64:
                self._runner.behind_end = min(_BEHIND_END, 1 << (bits - 1))
        # Read-only path operations whose lookups the kernel has cached run on
        # the loop, not in a worker (see _cached).
        self._cached = probe_for(root) if offload else None
        self._finalizer = weakref.finalize(self, self._root.close)

    def __repr__(self) -> str:
        return f"HostDir({self.path!r}, readonly={self.readonly})"

    def close(self) -> None:
        """Close the root descriptor (once no running call uses it); later
        calls fail with BADF."""
        self._finalizer()

    @property
    def closed(self) -> bool:
        return self._root.closed

    def __enter__(self) -> HostDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_writable(self) -> None:
        if self.readonly:
            raise FsError(Errno.ROFS, "read-only file system")

    async def _at(
        self, op: str, path: str, fn: Callable[[int, str], T], *, reads: bool = False
    ) -> T:
        """``fn(parent_fd, name)`` for `path` in a worker (name "." for the root);
        on the loop if it only `reads` and the kernel has the lookup cached."""
        parts = clean_parts(path)
        guard = self._root
        if LANE.busy():  # writes behind land before any path operation
            await LANE.settle()

        def call() -> T:
            root = guard.acquire()
            try:
                parent = _walk(root, parts[:-1])
                try:
                    return fn(parent, parts[-1] if parts else ".")
                finally:
                    if parent != root:
                        os.close(parent)
            except OSError as e:
                raise _fs_error(e, op, path) from None
            finally:
                guard.release()

        if reads and self._cached_now(join_path(parts)):
            return call()
        return await self._runner(call)

    def _cached_now(self, path: str) -> bool:
        """Whether the lookup of `path` (below the root) needs only the kernel's
        caches now: then a read-only operation on it runs on the loop."""
        if self._cached is None:
            return False
        guard = self._root
        try:
            root = guard.acquire()
        except FsError:
            return False  # closed: the worker call reports it
        try:
            return self._cached.probe(root, path)
        finally:
            guard.release()

    async def _at2(self, op: str, old: str, new: str, fn: Callable[[int, str, int, str], T]) -> T:
        old_parts, new_parts = clean_parts(old), clean_parts(new)
        guard = self._root
        if LANE.busy():
            await LANE.settle()

        def call() -> T:
            root = guard.acquire()
            try:
                old_dir = _walk(root, old_parts[:-1])
                try:
                    new_dir = _walk(root, new_parts[:-1])
                    try:
                        return fn(
                            old_dir,
                            old_parts[-1] if old_parts else ".",
                            new_dir,
                            new_parts[-1] if new_parts else ".",
                        )
                    finally:
                        if new_dir != root:
                            os.close(new_dir)
                finally:
                    if old_dir != root:
                        os.close(old_dir)
            except OSError as e:
                raise _fs_error(e, op, f"{old} -> {new}") from None
            finally:
                guard.release()

        return await self._runner(call)

    async def stat(self, path: str) -> FileStat:
        def fn(d: int, name: str) -> FileStat:
            return _filestat(os.stat(name, dir_fd=d, follow_symlinks=False))

        return await self._at("stat", path, fn, reads=True)

    async def open(self, path: str, mode: OpenMode) -> File:
        if mode.create and mode.directory:
            raise FsError(Errno.INVAL, "cannot create a directory with open")
        if mode.write or mode.create or mode.truncate:
            self._check_writable()
        flags = _OPEN_FLAGS
        if mode.write:
            flags |= os.O_RDWR if mode.read else os.O_WRONLY
        if mode.create:
            flags |= os.O_CREAT | (os.O_EXCL if mode.exclusive else 0)
        if mode.truncate:
            flags |= os.O_TRUNC
        if mode.directory:
            flags |= os.O_DIRECTORY
        if mode.append and mode.write:
            flags |= os.O_APPEND
        runner, readonly = self._runner, self.readonly

        def fn(d: int, name: str) -> File:
            fd = os.open(name, flags, 0o666, dir_fd=d)
            try:
                st = os.fstat(fd)
                if stat_mod.S_ISREG(st.st_mode):
                    os.set_blocking(fd, True)  # O_NONBLOCK only kept open() off FIFOs
                return HostFile(
                    fd,
                    _filetype(st.st_mode),
                    mode,
                    runner,
                    readonly=readonly,
                    key=(st.st_dev, st.st_ino),
                )
            except BaseException:
                os.close(fd)
                raise

        reads = not (mode.write or mode.create or mode.truncate)
        return await self._at("open", path, fn, reads=reads)

    async def readlink(self, path: str) -> str:
        def fn(d: int, name: str) -> str:
            return os.readlink(name, dir_fd=d)

        return await self._at("readlink", path, fn, reads=True)

    async def mkdir(self, path: str) -> None:
        self._check_writable()

        def fn(d: int, name: str) -> None:
            os.mkdir(name, 0o777, dir_fd=d)

        await self._at("mkdir", path, fn)

    async def rmdir(self, path: str) -> None:
        self._check_writable()

        def fn(d: int, name: str) -> None:
            os.rmdir(name, dir_fd=d)

        await self._at("rmdir", path, fn)

    async def unlink(self, path: str) -> None:
        self._check_writable()

        def fn(d: int, name: str) -> None:
            os.unlink(name, dir_fd=d)

        await self._at("unlink", path, fn)

    async def rename(self, old: str, new: str) -> None:
        self._check_writable()

        def fn(od: int, oname: str, nd: int, nname: str) -> None:
            os.rename(oname, nname, src_dir_fd=od, dst_dir_fd=nd)

        await self._at2("rename", old, new, fn)

    async def link(self, old: str, new: str) -> None:
        self._check_writable()

        def fn(od: int, oname: str, nd: int, nname: str) -> None:
            os.link(oname, nname, src_dir_fd=od, dst_dir_fd=nd, follow_symlinks=False)

        await self._at2("link", old, new, fn)

    async def symlink(self, target: str, path: str) -> None:
        self._check_writable()
        if not target:
            raise FsError(Errno.NOENT, "empty symlink target")
        if "\0" in target:
            raise FsError(Errno.INVAL, "NUL in symlink target")
        try:
            raw_target = os.fsencode(target)
        except UnicodeEncodeError:
            raise FsError(Errno.ILSEQ, "symlink target not encodable") from None

        def fn(d: int, name: str) -> None:
            os.symlink(raw_target, name, dir_fd=d)

        await self._at("symlink", path, fn)

    async def set_times(self, path: str, atime: TimeSpec, mtime: TimeSpec) -> None:
        self._check_writable()
        _check_time(atime)
        _check_time(mtime)

        def fn(d: int, name: str) -> None:
            _utimensat(d, name, atime, mtime)

        await self._at("set_times", path, fn)

    async def resolve(self, base: str, path: str, *, follow: bool) -> str:
        """:func:`~wasync._wasi._fs.resolve_path`'s walk in one blocking step,
        on descriptors (``fstatat``/``readlinkat`` relative to each directory)."""
        if not path or "\0" in path or path.startswith("/"):
            return await resolve_path(self, base, path, follow=follow)  # its errors
        floor = clean_parts(base)
        guard = self._root
        if LANE.busy():
            await LANE.settle()

        def call() -> str | None:
            root = guard.acquire()
            fds = [root]
            try:
                try:
                    for part in floor:
                        fds.append(os.open(part, _WALK_FLAGS, dir_fd=fds[-1]))
                except OSError:
                    return None  # let the generic walk report it
                return _resolve_at(fds, list(floor), path, follow)
            except OSError as e:
                raise _fs_error(e, "resolve", path) from None
            finally:
                for fd in fds[1:]:
                    os.close(fd)
                guard.release()

        whole = join_path([*floor, path]) if floor else path
        result = call() if self._cached_now(whole) else await self._runner(call)
        if result is None:
            return await resolve_path(self, base, path, follow=follow)
        return result


def _resolve_at(fds: list[int], stack: list[str], path: str, follow: bool) -> str:
    """The loop of resolve_path; ``fds[i]`` is the directory ``stack[:i]``
    (fds[0] the root), and fds opened here are appended to `fds`."""
    floor = len(stack)
    must_be_dir = path.endswith("/")
    todo = [c for c in path.split("/") if c and c != "."][::-1]
    links = 0
    while todo:
        comp = todo.pop()
        last = not todo
        if comp == "..":
            if len(stack) <= floor:
                raise FsError(Errno.PERM, f"{path!r} leads outside its directory")
            stack.pop()
            os.close(fds.pop())
            continue
        candidate = [*stack, comp]
        if last and not follow and not must_be_dir:
            return join_path(candidate)
        clean_parts(comp)  # NAMETOOLONG/ILSEQ as stat would report them
        try:
            st = os.stat(comp, dir_fd=fds[-1], follow_symlinks=False)
        except FileNotFoundError:
            if last:
                return join_path(candidate)  # may be created
            raise
        mode = st.st_mode
        if stat_mod.S_ISLNK(mode):
            links += 1
            if links > MAX_SYMLINKS:
                raise FsError(Errno.LOOP, f"too many symlinks in {path!r}")
            target = os.readlink(comp, dir_fd=fds[-1])
            if not target or target.startswith("/"):
                raise FsError(
                    Errno.PERM, f"symlink {join_path(candidate)!r} -> {target!r} leaves the sandbox"
                )
            if target.endswith("/") and last:
                must_be_dir = True
            todo.extend(reversed([c for c in target.split("/") if c and c != "."]))
            continue
        is_dir = stat_mod.S_ISDIR(mode)
        if not is_dir and (not last or must_be_dir):
            raise FsError(Errno.NOTDIR, f"{join_path(candidate)!r} is not a directory")
        if not last:
            fds.append(os.open(comp, _WALK_FLAGS, dir_fd=fds[-1]))
        stack = candidate
    return join_path(stack)


def _skip(buffers: list[memoryview], n: int) -> list[memoryview]:
    """`buffers` without their first `n` bytes."""
    if not n:
        return buffers
    for i, buf in enumerate(buffers):
        if n < len(buf):
            return [buf[n:], *buffers[i + 1 :]]
        n -= len(buf)
    return []


def _preadv(fd: int, buffers: list[memoryview], offset: int, flags: int) -> int:
    """``preadv(fd, buffers, offset, flags)``: one read, scattered into `buffers`."""
    if hasattr(os, "preadv"):
        return os.preadv(fd, buffers, offset, flags) if flags else os.preadv(fd, buffers, offset)
    data = os.pread(fd, sum(len(b) for b in buffers), offset)  # pragma: no cover - no preadv
    done = 0  # pragma: no cover
    for buf in buffers:  # pragma: no cover
        chunk = data[done : done + len(buf)]
        buf[: len(chunk)] = chunk
        done += len(chunk)
    return done  # pragma: no cover


def _write_at(
    fd: int, buffers: list[bytes] | list[memoryview], offset: int | None, append: bool
) -> int:
    """One write of `buffers` (in order) at `offset`, or at the end for None, on a
    descriptor opened with O_APPEND if `append`: what :meth:`HostFile.write` does."""
    global _noappend_works  # noqa: PLW0603 - learnt once per process
    vectored = hasattr(os, "pwritev")
    if offset is None:
        if append:  # O_APPEND: atomically at the end
            return os.writev(fd, buffers) if vectored else os.write(fd, b"".join(buffers))
        offset = os.fstat(fd).st_size
    elif append and _noappend_works:
        # Linux's pwrite appends on O_APPEND descriptors; POSIX (and MemoryFS)
        # write at the offset: RWF_NOAPPEND (Linux >= 6.9).
        try:
            return os.pwritev(fd, buffers, offset, _RWF_NOAPPEND)
        except OSError as e:
            if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise
            _noappend_works = False
    if vectored:
        return os.pwritev(fd, buffers, offset)
    return os.pwrite(fd, b"".join(buffers), offset)  # pragma: no cover - no pwritev


class HostFile(File):
    """An open host file or directory (its own descriptor). `key` tells which
    file it is, for writes behind: (device, inode)."""

    def __init__(
        self,
        fd: int,
        filetype: Filetype,
        mode: OpenMode,
        runner: _Runner,
        *,
        readonly: bool,
        key: object = None,
    ) -> None:
        self.filetype = filetype
        self._key = key if key is not None else object()
        # An error in one of this descriptor's writes behind, for its next operation.
        self.behind_error: BaseException | None = None
        self._readonly = readonly
        self._fd = _FdGuard(fd)
        self._finalizer = weakref.finalize(self, self._fd.close)
        self._runner = runner
        self._readable = mode.read
        self._writable = mode.write
        self._append = mode.append and mode.write
        self._dir_lock = threading.Lock()
        # Whether to try RWF_NOWAIT (until the file system refuses it).
        self._nowait_reads = _RWF_NOWAIT != 0
        self._nowait_writes = _RWF_NOWAIT != 0 and hasattr(os, "pwritev")

    async def _call(self, op: str, fn: Callable[[int], T]) -> T:
        await self._behind_settled()
        guard = self._fd

        def call() -> T:
            fd = guard.acquire()
            try:
                return fn(fd)
            except OSError as e:
                raise _fs_error(e, op, "<file>") from None
            finally:
                guard.release()

        return await self._runner(call)

    # -- writes behind (see _behind) ------------------------------------------------------

    async def _behind_settled(self) -> None:
        """Wait for the writes behind to this file; raise the error of one of
        this descriptor's, if one failed."""
        if LANE.busy(self._key):
            await LANE.settle(self._key)
        self._raise_behind_error()

    def _raise_behind_error(self) -> None:
        e = self.behind_error
        if e is not None:
            self.behind_error = None
            if isinstance(e, OSError):
                raise _fs_error(e, "write", "<file>") from None
            raise e

    def _may_write_behind(self, offset: int | None, size: int) -> bool:
        """Whether a write of `size` bytes at `offset` goes behind: from the
        event loop, to a regular file of a HostDir that writes behind, and not
        near the file system's size limit (where the write itself may fail)."""
        return (
            self._runner.behind
            and self.filetype == Filetype.REGULAR_FILE
            and (offset is None or offset + size <= self._runner.behind_end)
        )

    def _write_behind(self, data: bytes, offset: int | None) -> bool:
        """Queue `data` (a copy: it must not change) to be written at `offset`
        (None: at the end); false if the lane has no room for it now."""
        if not LANE.room(len(data)):
            return False
        guard = self._fd
        fd = guard.acquire()  # held until written: close() waits for it
        append = self._append

        def write() -> None:
            try:
                view = memoryview(data)
                done = 0
                while done < len(view):
                    at = None if offset is None else offset + done
                    n = _write_at(fd, [view[done:]], at, append)
                    if n <= 0:
                        raise OSError(errno.EIO, "a write made no progress")
                    done += n
            finally:
                guard.release()

        try:
            if LANE.submit(self, self._key, write, len(data), self._runner.spawn):
                return True
        except BaseException:
            guard.release()
            raise
        guard.release()
        return False

    def _check(self, *, write: bool = False) -> None:
        if self._fd.closed:
            raise FsError(Errno.BADF, "file is closed")
        if write and not self._writable:
            raise FsError(Errno.BADF, "file not open for writing")

    def _check_read(self, size: int, offset: int) -> None:
        self._check()
        if self.filetype == Filetype.DIRECTORY:
            raise FsError(Errno.ISDIR, "is a directory")
        if not self._readable:
            raise FsError(Errno.BADF, "file not open for reading")
        if not 0 <= offset <= MAX_FILE_SIZE or size < 0:
            raise FsError(Errno.INVAL, "invalid offset or size")

    def _check_write(self, offset: int | None) -> None:
        self._check(write=True)
        if offset is not None and not 0 <= offset <= MAX_FILE_SIZE:
            raise FsError(Errno.INVAL, f"invalid offset {offset}")

    async def read(self, size: int, offset: int) -> bytes:
        self._check_read(size, offset)

        def fn(fd: int) -> bytes:
            return os.pread(fd, size, offset)

        return await self._call("read", fn)

    # -- the fast paths (see File._read_now) ------------------------------------
    #
    # Inline, the calls are made here and now: always where blocking is allowed
    # (offload=False, or off the event loop's thread); with offload=True, a
    # regular file is first read with RWF_NOWAIT, which the kernel serves from
    # the page cache or refuses (EAGAIN) rather than wait for the disk; the rest
    # then goes to a worker thread as usual. Writes likewise, where the file
    # system supports RWF_NOWAIT for buffered writes (XFS and btrfs on recent
    # kernels; not ext4 or tmpfs, which refuse the flag: learnt per file).

    def _read_now(
        self, buffers: list[memoryview], offset: int, *, off_loop: bool
    ) -> tuple[int, bool]:
        total = sum(len(b) for b in buffers)
        self._check_read(total, offset)
        if self.filetype != Filetype.REGULAR_FILE or len(buffers) > _IOV_MAX:
            return 0, False
        if LANE.busy(self._key) or self.behind_error is not None:
            if not off_loop:
                return 0, False  # read() waits for the writes behind first
            LANE.settle_blocking(self._key)
            self._raise_behind_error()
        if off_loop or not self._runner.offload:
            fd = self._fd.acquire()
            try:
                return _preadv(fd, buffers, offset, 0), True
            except OSError as e:
                raise _fs_error(e, "read", "<file>") from None
            finally:
                self._fd.release()
        if not self._nowait_reads or total > _NOWAIT_MAX:
            return 0, False
        done = 0
        fd = self._fd.acquire()
        try:
            while done < total:
                try:
                    n = _preadv(fd, _skip(buffers, done), offset + done, _RWF_NOWAIT)
                except BlockingIOError:
                    return done, False  # not in the page cache: the rest in a worker
                except OSError as e:
                    if e.errno not in _NOWAIT_UNSUPPORTED:
                        raise _fs_error(e, "read", "<file>") from None
                    self._nowait_reads = False
                    return done, False
                if n == 0:
                    break  # the end of the file (waiting is EAGAIN, never 0)
                done += n
        finally:
            self._fd.release()
        return done, True

    def _write_now(
        self, buffers: list[memoryview], offset: int | None, *, off_loop: bool
    ) -> tuple[int, bool]:
        self._check_write(offset)
        if self.filetype != Filetype.REGULAR_FILE or len(buffers) > _IOV_MAX:
            return 0, False
        behind = LANE.busy(self._key) or self.behind_error is not None
        if off_loop or not self._runner.offload:
            if behind:
                if not off_loop:
                    return 0, False  # write() waits for the writes behind first
                LANE.settle_blocking(self._key)
                self._raise_behind_error()
            fd = self._fd.acquire()
            try:
                return _write_at(fd, buffers, offset, self._append), True
            except OSError as e:
                raise _fs_error(e, "write", "<file>") from None
            finally:
                self._fd.release()
        total = sum(len(b) for b in buffers)
        if (
            not behind
            and self._nowait_writes
            and offset is not None
            and not self._append
            and total <= _NOWAIT_MAX
        ):
            done, final = self._write_nowait(buffers, offset, total)
            if done or final:
                return done, final
        if self._may_write_behind(offset, total) and LANE.room(total):
            self._raise_behind_error()
            if self._write_behind(b"".join(buffers), offset):
                return total, True
        return 0, False

    def _write_nowait(self, buffers: list[memoryview], offset: int, total: int) -> tuple[int, bool]:
        """Write with RWF_NOWAIT as far as the file system lets us."""
        done = 0
        fd = self._fd.acquire()
        try:
            while done < total:
                try:
                    n = os.pwritev(fd, _skip(buffers, done), offset + done, _RWF_NOWAIT)
                except BlockingIOError:
                    return done, False
                except OSError as e:
                    if e.errno not in _NOWAIT_UNSUPPORTED:
                        if done:
                            return done, True  # a short write; the error comes next time
                        raise _fs_error(e, "write", "<file>") from None
                    self._nowait_writes = False
                    return done, False
                if n == 0:
                    return done, False  # no progress without waiting
                done += n
        finally:
            self._fd.release()
        return done, True

    async def write(self, data: bytes, offset: int | None) -> int:
        self._check_write(offset)
        if data and self._may_write_behind(offset, len(data)):
            while True:
                self._raise_behind_error()
                if self._write_behind(data, offset):
                    return len(data)
                await LANE.settle(room=len(data))
                self._check_write(offset)
        append = self._append
        return await self._call("write", lambda fd: _write_at(fd, [data], offset, append))

    async def stat(self) -> FileStat:
        self._check()
        return await self._call("stat", lambda fd: _filestat(os.fstat(fd)))

    async def set_size(self, size: int) -> None:
        self._check(write=True)
        if size < 0:
            raise FsError(Errno.INVAL, f"invalid size {size}")
        if size > MAX_FILE_SIZE:
            raise FsError(Errno.FBIG, "file too large")
        await self._call("set_size", lambda fd: os.ftruncate(fd, size))

    async def set_times(self, atime: TimeSpec, mtime: TimeSpec) -> None:
        self._check()
        if self._readonly:
            raise FsError(Errno.ROFS, "read-only file system")
        _check_time(atime)
        _check_time(mtime)
        await self._call("set_times", lambda fd: _futimens(fd, atime, mtime))

    async def sync(self) -> None:
        self._check()
        await self._call("sync", os.fsync)

    async def datasync(self) -> None:
        self._check()
        await self._call("datasync", getattr(os, "fdatasync", os.fsync))

    async def allocate(self, offset: int, length: int) -> None:
        self._check(write=True)
        if offset < 0 or length <= 0:
            raise FsError(Errno.INVAL, "invalid range")
        if offset + length > MAX_FILE_SIZE:
            raise FsError(Errno.FBIG, "file too large")

        def fn(fd: int) -> None:
            if hasattr(os, "posix_fallocate"):
                try:
                    os.posix_fallocate(fd, offset, length)
                    return
                except OSError as e:
                    if e.errno not in (errno.EOPNOTSUPP, errno.ENOSYS):
                        raise
            if offset + length > os.fstat(fd).st_size:
                os.ftruncate(fd, offset + length)

        await self._call("allocate", fn)

    async def readdir(self) -> list[DirEntry]:
        self._check()
        if self.filetype != Filetype.DIRECTORY:
            raise FsError(Errno.NOTDIR, "not a directory")
        lock = self._dir_lock

        def fn(fd: int) -> list[DirEntry]:
            out = []
            with lock:  # scandir reads through the descriptor's offset
                os.lseek(fd, 0, os.SEEK_SET)
                with os.scandir(fd) as it:
                    for entry in it:
                        try:
                            if entry.is_symlink():
                                ft = Filetype.SYMBOLIC_LINK
                            elif entry.is_dir(follow_symlinks=False):
                                ft = Filetype.DIRECTORY
                            elif entry.is_file(follow_symlinks=False):
                                ft = Filetype.REGULAR_FILE
                            else:
                                ft = _filetype(entry.stat(follow_symlinks=False).st_mode)
                        except FileNotFoundError:
                            continue  # removed meanwhile
                        out.append(DirEntry(entry.name, ft, entry.inode()))
            out.sort(key=lambda e: e.name)
            return out

        return await self._call("readdir", fn)

    async def close(self) -> None:
        """Close the descriptor, once the writes behind to the file are made;
        an error in one of them is raised (the descriptor is closed anyway)."""
        try:
            if not self._fd.closed and LANE.busy(self._key):
                await LANE.settle(self._key)
        finally:
            self._finalizer()
        self._raise_behind_error()
