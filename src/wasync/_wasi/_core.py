"""``wasi_snapshot_preview1`` in Python, on asyncio or trio, for every strategy.

Each WASI function is a "maybe async" import (:func:`wasync.maybe_async`): what
can be answered at once (arguments, clocks, a write to a buffer, a table
lookup) returns its errno directly and costs no suspension; what waits (file
systems, sockets, timers, input) returns a coroutine, and the wasm code is
suspended until it completes.

What waits on the event loop itself (timers, descriptor readiness, sockets)
goes through :mod:`wasync._wasi._aio`, whose implementation for the running
library (asyncio or trio) a Wasi looks up once per run.

Guest pointers are checked: an access outside linear memory is ``EFAULT``.
Paths are resolved by :meth:`FileSystem.resolve` relative to the directory
descriptor they are given with; nothing above that directory is reachable.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import struct
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

from wasync._errors import WasyncError
from wasync._runtime._host import maybe_async, with_caller
from wasync._runtime._instance import MemoryAccessError
from wasync._wasi import _abi as abi
from wasync._wasi import _aio
from wasync._wasi._abi import Errno, Filetype, Rights
from wasync._wasi._fs import NOW, File, FileStat, FileSystem, FsError, OpenMode, TimeSpec
from wasync._wasi._guest import GuestMemory
from wasync._wasi._streams import Input, InputSpec, Output, OutputSpec, make_input, make_output

if TYPE_CHECKING:
    from wasync._runtime._instance import Caller, Instance, Strategy
    from wasync._runtime._module import Module
    from wasync._wasi._aio import Aio

__all__ = ["ProcExit", "Wasi", "errno_of"]

NAMESPACE = "wasi_snapshot_preview1"
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
# The flags of the hot paths as plain ints (IntFlag operations cost ~1 us each).
_FD_READ = int(Rights.FD_READ)
_FD_WRITE = int(Rights.FD_WRITE)
_APPEND = int(abi.Fdflags.APPEND)
_O_CREAT = int(abi.Oflags.CREAT)
_O_DIRECTORY = int(abi.Oflags.DIRECTORY)
_O_EXCL = int(abi.Oflags.EXCL)
_O_TRUNC = int(abi.Oflags.TRUNC)
_FOLLOW = int(abi.Lookupflags.SYMLINK_FOLLOW)
_PATH_OPEN = int(Rights.PATH_OPEN)
_PATH_CREATE_FILE = int(Rights.PATH_CREATE_FILE)
_PATH_FILESTAT_SET_SIZE = int(Rights.PATH_FILESTAT_SET_SIZE)
_OPEN_READ_RIGHTS = int(Rights.FD_READ | Rights.FD_READDIR)
_OPEN_WRITE_RIGHTS = int(Rights.FD_WRITE | Rights.FD_ALLOCATE | Rights.FD_FILESTAT_SET_SIZE)
_OPEN_DIR_RIGHTS = int(abi.DIR_RIGHTS)
_OPEN_FILE_RIGHTS = int(abi.FILE_RIGHTS & ~Rights.FD_READDIR)
_OPEN_SYNC_RIGHTS = int(Rights.FD_DATASYNC | Rights.FD_SYNC)
_PREOPEN_INHERITING = int(abi.DIR_RIGHTS | abi.FILE_RIGHTS)
_IN_RIGHTS = int(Rights.FD_READ | Rights.POLL_FD_READWRITE | Rights.FD_FILESTAT_GET)
_OUT_RIGHTS = int(Rights.FD_WRITE | Rights.POLL_FD_READWRITE | Rights.FD_FILESTAT_GET)
_ClockName = Literal["monotonic", "process_time", "time", "thread_time"]
_F = TypeVar("_F", bound=Callable[..., Any])


class ProcExit(WasyncError):
    """The program called ``proc_exit``; :attr:`code` is its exit status."""

    def __init__(self, code: int) -> None:
        super().__init__(f"proc_exit({code})")
        self.code = code


def errno_of(e: BaseException) -> int:
    """The WASI errno for an exception raised by a backend."""
    if isinstance(e, FsError):
        return int(e.errno)
    if isinstance(e, MemoryAccessError):
        return Errno.FAULT
    if isinstance(e, OSError):
        from wasync._wasi._hostfs import errno_from_oserror  # noqa: PLC0415

        return int(errno_from_oserror(e))
    if isinstance(e, UnicodeError):
        return Errno.ILSEQ
    raise e


def _filestat(st: FileStat) -> bytes:
    """A ``filestat`` record."""
    return abi.FILESTAT.pack(
        st.dev, st.ino, st.filetype, st.nlink, st.size, st.atime_ns, st.mtime_ns, st.ctime_ns
    )


class _Fault(Exception):
    """An errno to return from the synchronous part of a call."""

    def __init__(self, errno: int) -> None:
        self.errno = errno


def _export(fn: _F) -> _F:
    """A WASI function: maybe async, with the caller; the synchronous part's
    errors become errnos, and so do those of the coroutine it may return."""

    def wrapper(self: Wasi, caller: Caller, *args: int) -> int | Coroutine[Any, Any, int]:
        try:
            result = fn(self, caller, *args)
        except _Fault as e:
            return e.errno
        except (FsError, MemoryAccessError, OSError, UnicodeError) as e:
            return errno_of(e)
        if isinstance(result, int):
            return result
        return _guard(result)

    wrapper.__name__ = fn.__name__
    wrapper.__qualname__ = fn.__qualname__
    wrapper.__doc__ = fn.__doc__
    # The runtime binds the parameters by position: one per wasm parameter.
    wrapper.__signature__ = _signature(fn)  # type: ignore[attr-defined]
    return maybe_async(with_caller(wrapper))  # type: ignore[return-value]


def _signature(fn: Callable[..., Any]) -> Any:
    import inspect  # noqa: PLC0415

    return inspect.signature(fn)


async def _guard(coro: Awaitable[int]) -> int:
    try:
        return await coro
    except _Fault as e:
        return e.errno
    except (FsError, MemoryAccessError, OSError, UnicodeError) as e:
        return errno_of(e)


# -- descriptors ------------------------------------------------------------------


class _Fd:
    filetype = Filetype.UNKNOWN

    def __init__(self, rights: int, inheriting: int = 0, flags: int = 0) -> None:
        # Plain ints: `int & IntFlag` goes through the enum's __rand__ (~1 us).
        self.rights = int(rights)
        self.inheriting = int(inheriting)
        self.flags = int(flags)

    async def close(self) -> None:
        return None


class _FileFd(_Fd):
    def __init__(
        self, fs: FileSystem, path: str, file: File, rights: int, inheriting: int, flags: int
    ) -> None:
        super().__init__(rights, inheriting, flags)
        self.fs = fs
        self.path = path
        self.file = file
        self.filetype = file.filetype
        self.position: int | None = 0  # None: at the end (after an append)
        self.dir_cache: list[tuple[str, int, int]] | None = None  # fd_readdir's listing

    async def close(self) -> None:
        await self.file.close()


class _DirFd(_FileFd):
    def __init__(
        self,
        fs: FileSystem,
        path: str,
        file: File,
        rights: int,
        inheriting: int,
        flags: int,
        preopen: str | None = None,
    ) -> None:
        super().__init__(fs, path, file, rights, inheriting, flags)
        self.filetype = Filetype.DIRECTORY
        self.preopen = preopen


def _stream_filetype(tty: bool) -> Filetype:
    # As wasmtime reports them: a terminal is a character device, anything else
    # (a buffer, a pipe, a file, a callback) is "unknown". wasi-libc's isatty()
    # is true for a character device without seek rights.
    return Filetype.CHARACTER_DEVICE if tty else Filetype.UNKNOWN


class _InFd(_Fd):
    def __init__(self, source: Input) -> None:
        super().__init__(_IN_RIGHTS)
        self.source = source
        self.filetype = _stream_filetype(source.isatty())


class _OutFd(_Fd):
    def __init__(self, sink: Output) -> None:
        super().__init__(_OUT_RIGHTS)
        self.sink = sink
        self.filetype = _stream_filetype(sink.isatty())


class _SockFd(_Fd):
    filetype = Filetype.SOCKET_STREAM

    def __init__(self, sock: socket.socket, rights: int) -> None:
        super().__init__(rights)
        sock.setblocking(False)
        self.sock = sock

    async def close(self) -> None:
        self.sock.close()


class Wasi:
    """One WASI program's world: its arguments, environment, preopened
    directories, standard streams and sockets, and its descriptor table.

    A Wasi serves **one** instance (descriptors are per process)::

        wasi = wasync.Wasi(args=["app", "in.txt"], preopens={"/data": wasync.HostDir("data")})
        status = await wasi.run(wasync.Module.from_file("app.wasm"))

    or, to wire it yourself: ``await wasync.instantiate(module, {**wasi.imports(), ...})``,
    then call ``_start`` and catch :class:`ProcExit`.
    """

    def __init__(
        self,
        args: Sequence[str | bytes] = ("main",),
        env: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        preopens: Mapping[str, FileSystem] | None = None,
        *,
        stdin: InputSpec = None,
        stdout: OutputSpec = "inherit",
        stderr: OutputSpec = "inherit",
        sockets: Sequence[socket.socket] = (),
    ) -> None:
        self.args = [a.encode() if isinstance(a, str) else bytes(a) for a in args]
        pairs = env.items() if isinstance(env, Mapping) else (env or ())
        self.env = [f"{k}={v}".encode() for k, v in pairs]
        for item in [*self.args, *self.env]:
            if b"\0" in item:
                raise ValueError(f"argument or environment entry contains NUL: {item!r}")
        self._stdio: tuple[Input, Output, Output] = (
            make_input(stdin),
            make_output(stdout, "stdout"),
            make_output(stderr, "stderr"),
        )
        self._fds: dict[int, _Fd] = {
            0: _InFd(self._stdio[0]),
            1: _OutFd(self._stdio[1]),
            2: _OutFd(self._stdio[2]),
        }
        self._preopens = dict(preopens or {})
        for name, fs in self._preopens.items():
            if not isinstance(fs, FileSystem):
                raise TypeError(f"preopen {name!r}: expected a wasync FileSystem, not {fs!r}")
        self._sockets = list(sockets)
        self._opened = False
        self._memory: GuestMemory | None = None
        # Whether the WASI functions run on a thread of the instance's own (the
        # "thread" strategy) rather than the event loop's: file calls may block.
        self._off_loop = False
        self._imports: dict[str, Callable[..., Any]] | None = None
        # The event-loop primitives of the library running the program (asyncio's
        # or trio's): looked up by open() (so once per run), else on first use.
        self._aio: Aio | None = None

    # -- wiring -----------------------------------------------------------------

    def imports(self) -> dict[str, dict[str, Callable[..., Any]]]:
        """The ``wasi_snapshot_preview1`` namespace for :func:`wasync.instantiate`."""
        return {NAMESPACE: dict(self._namespace())}

    def _namespace(self) -> dict[str, Callable[..., Any]]:
        if self._imports is None:
            self._imports = {name: getattr(self, name) for name in _FUNCTIONS}
        return self._imports

    async def open(self) -> None:
        """Open the preopened directories (fd 3 onwards, in order) and the
        sockets after them. Done by :meth:`run` and :meth:`start`.

        Also looks up which async library runs (asyncio or trio), and raises
        TypeError for standard streams that library cannot serve."""
        self._bind_library()
        if self._opened:
            return
        self._opened = True
        fd = 3
        for name, fs in self._preopens.items():
            root = await fs.open(".", OpenMode(read=True, directory=True))
            self._fds[fd] = _DirFd(
                fs, ".", root, _OPEN_DIR_RIGHTS, _PREOPEN_INHERITING, 0, preopen=name
            )
            fd += 1
        for sock in self._sockets:
            self._fds[fd] = _SockFd(sock, abi.SOCKET_RIGHTS)
            fd += 1

    async def close(self) -> None:
        """Close every descriptor still open (also in a cancelled trio scope)."""
        fds, self._fds = self._fds, {}
        with (self._aio or _aio.current()).shield():
            for f in fds.values():
                with contextlib.suppress(OSError, FsError):
                    await f.close()

    async def run(
        self,
        module: Module | bytes,
        *,
        strategy: Strategy = "auto",
        imports: Mapping[str, Mapping[str, Callable[..., Any]]] | None = None,
        **options: Any,
    ) -> int:
        """Instantiate `module` with this WASI (and any other `imports`), run its
        ``_start`` and return the exit status (0, or what ``proc_exit`` gave)."""
        from wasync._runtime._instance import instantiate  # noqa: PLC0415

        await self.open()
        merged: dict[str, Mapping[str, Callable[..., Any]]] = dict(imports or {})
        ours = self._namespace()  # only read by instantiate: no copy
        theirs = merged.get(NAMESPACE)
        merged[NAMESPACE] = {**theirs, **ours} if theirs else ours
        inst = await instantiate(module, merged, strategy=strategy, **options)
        try:
            return await self.start(inst)
        finally:
            inst.close()
            await self.close()

    async def start(self, inst: Instance) -> int:
        """Call `inst`'s ``_start``; the exit status."""
        await self.open()
        if inst.module.export("_start") is None:
            raise WasyncError("the module exports no _start function (not a WASI command)")
        try:
            await inst.exports["_start"]()
        except ProcExit as e:
            return e.code
        return 0

    # -- helpers ------------------------------------------------------------------

    def _bind_library(self) -> Aio:
        """Look up the running library's primitives (on the event loop)."""
        aio = _aio.current()
        if aio.name != "asyncio":
            streams: tuple[Input | Output, ...] = self._stdio
            for name, stream in zip(("stdin", "stdout", "stderr"), streams, strict=True):
                if stream.needs_asyncio is not None:
                    raise TypeError(f"{name}: {stream.needs_asyncio} (running under {aio.name})")
        self._aio = aio
        return aio

    def _lib(self) -> Aio:
        """The running library's primitives; call it in coroutines only (on the
        event loop: under the "thread" strategy the rest runs elsewhere)."""
        aio = self._aio
        return aio if aio is not None else self._bind_library()

    def _mem(self, caller: Caller) -> GuestMemory:
        mem = self._memory
        if mem is None:
            mem = self._memory = GuestMemory(caller.memory)
            self._off_loop = caller.instance.strategy == "thread"
        return mem

    def _fd(self, fd: int, rights: int = 0) -> _Fd:
        f = self._fds.get(fd)
        if f is None:
            if not self._opened and (self._preopens or self._sockets):
                raise _Fault(Errno.BADF)  # cannot happen after run()/open()
            raise _Fault(Errno.BADF)
        if rights and (int(f.rights) & int(rights)) != rights:  # ints: IntFlag's & is slow
            raise _Fault(Errno.NOTCAPABLE)
        return f

    def _file(self, fd: int, rights: int = 0) -> _FileFd:
        f = self._fd(fd)
        if not isinstance(f, _FileFd):
            raise _Fault(Errno.BADF if rights & ~int(f.rights) else Errno.SPIPE)
        if isinstance(f, _DirFd):
            raise _Fault(Errno.BADF)  # reading, writing, seeking, syncing... a directory
        if rights and (int(f.rights) & int(rights)) != rights:  # ints: IntFlag's & is slow
            raise _Fault(Errno.NOTCAPABLE)
        return f

    @staticmethod
    def _open_for(f: _Fd, right: int) -> None:
        """EBADF unless `f` is open for reading (FD_READ) or writing (FD_WRITE):
        read(2)/write(2)'s errno, which wasmtime returns too."""
        if not int(f.rights) & right:
            raise _Fault(Errno.BADF)

    def _dir(self, fd: int, rights: int = 0) -> _DirFd:
        f = self._fd(fd)
        if not isinstance(f, _DirFd):
            # a regular file: ENOTDIR (POSIX); a stream or socket: EBADF (wasmtime)
            raise _Fault(Errno.NOTDIR if isinstance(f, _FileFd) else Errno.BADF)
        if rights and (int(f.rights) & int(rights)) != rights:  # ints: IntFlag's & is slow
            raise _Fault(Errno.NOTCAPABLE)
        return f

    def _path(self, mem: GuestMemory, ptr: int, n: int) -> str:
        return mem.read(ptr, n).decode("utf-8")

    def _new_fd(self, f: _Fd) -> int:
        fd = 0
        while fd in self._fds:
            fd += 1
        self._fds[fd] = f
        return fd

    @staticmethod
    def _iovecs(mem: GuestMemory, ptr: int, n: int) -> list[tuple[int, int]]:
        if n == 0:
            return []
        raw = mem.read(ptr, 8 * n)
        if n == 1:
            return [abi.IOVEC.unpack(raw)]
        return list(abi.IOVEC.iter_unpack(raw))

    @staticmethod
    def _scatter(mem: GuestMemory, iovs: list[tuple[int, int]], data: bytes, skip: int = 0) -> int:
        """Store `data` in the buffers `iovs` after their first `skip` bytes; how
        many bytes were stored."""
        done = 0
        for buf, length in iovs:
            if done >= len(data):
                break
            if skip >= length:
                skip -= length
                continue
            chunk = data[done : done + length - skip]
            mem.write(buf + skip, chunk)
            skip = 0
            done += len(chunk)
        return done

    @staticmethod
    def _gather(mem: GuestMemory, iovs: list[tuple[int, int]], skip: int = 0) -> bytes:
        """The bytes of the buffers `iovs`, without the first `skip`."""
        if skip:
            return Wasi._gather(mem, iovs)[skip:]
        if len(iovs) == 1:
            return mem.read(*iovs[0])
        return b"".join(mem.read(buf, length) for buf, length in iovs)

    # -- args, environment, clocks, random, process --------------------------------

    @staticmethod
    def _write_strings(mem: GuestMemory, items: list[bytes], ptrs: int, buf: int) -> int:
        offsets = bytearray()
        blob = bytearray()
        for item in items:
            offsets += _U32.pack(buf + len(blob))
            blob += item + b"\0"
        mem.write(ptrs, bytes(offsets))
        mem.write(buf, bytes(blob))
        return 0

    @staticmethod
    def _write_sizes(mem: GuestMemory, items: list[bytes], count_ptr: int, size_ptr: int) -> int:
        mem.write(count_ptr, _U32.pack(len(items)))
        mem.write(size_ptr, _U32.pack(sum(len(i) + 1 for i in items)))
        return 0

    @_export
    def args_get(self, caller: Caller, argv: int, argv_buf: int) -> int:
        return self._write_strings(self._mem(caller), self.args, argv, argv_buf)

    @_export
    def args_sizes_get(self, caller: Caller, argc: int, size: int) -> int:
        return self._write_sizes(self._mem(caller), self.args, argc, size)

    @_export
    def environ_get(self, caller: Caller, environ: int, buf: int) -> int:
        return self._write_strings(self._mem(caller), self.env, environ, buf)

    @_export
    def environ_sizes_get(self, caller: Caller, count: int, size: int) -> int:
        return self._write_sizes(self._mem(caller), self.env, count, size)

    _CLOCKS: ClassVar[dict[int, Callable[[], int]]] = {
        abi.Clock.REALTIME: time.time_ns,
        abi.Clock.MONOTONIC: time.monotonic_ns,
        abi.Clock.PROCESS_CPUTIME_ID: time.process_time_ns,
        abi.Clock.THREAD_CPUTIME_ID: time.thread_time_ns,
    }
    _CLOCK_INFO: ClassVar[dict[int, _ClockName]] = {
        abi.Clock.REALTIME: "time",
        abi.Clock.MONOTONIC: "monotonic",
        abi.Clock.PROCESS_CPUTIME_ID: "process_time",
        abi.Clock.THREAD_CPUTIME_ID: "thread_time",
    }

    @_export
    def clock_res_get(self, caller: Caller, clock: int, out: int) -> int:
        name = self._CLOCK_INFO.get(clock)
        if name is None:
            return Errno.INVAL
        res = max(1, round(time.get_clock_info(name).resolution * 1e9))
        self._mem(caller).write(out, _U64.pack(res))
        return 0

    @_export
    def clock_time_get(self, caller: Caller, clock: int, precision: int, out: int) -> int:
        fn = self._CLOCKS.get(clock)
        if fn is None:
            return Errno.INVAL
        self._mem(caller).write(out, _U64.pack(fn()))
        return 0

    @_export
    def random_get(self, caller: Caller, buf: int, n: int) -> int:
        self._mem(caller).write(buf, os.urandom(n))
        return 0

    @_export
    def proc_exit(self, caller: Caller, code: int) -> int:
        raise ProcExit(code & 0xFFFF_FFFF)

    @_export
    def proc_raise(self, caller: Caller, sig: int) -> int:
        return Errno.NOSYS

    @_export
    def sched_yield(self, caller: Caller) -> Coroutine[Any, Any, int]:
        async def go() -> int:
            await self._lib().sleep(0)
            return 0

        return go()

    # -- descriptors -----------------------------------------------------------------

    @_export
    def fd_advise(self, caller: Caller, fd: int, offset: int, length: int, advice: int) -> int:
        self._file(fd, Rights.FD_ADVISE)
        if advice > abi.Advice.NOREUSE:
            return Errno.INVAL
        return 0

    @_export
    def fd_allocate(
        self, caller: Caller, fd: int, offset: int, length: int
    ) -> Coroutine[Any, Any, int]:
        f = self._file(fd)
        if not f.rights & Rights.FD_ALLOCATE:
            raise _Fault(Errno.BADF)  # not open for writing: posix_fallocate's EBADF

        async def go() -> int:
            await f.file.allocate(offset, length)
            return 0

        return go()

    @_export
    def fd_close(self, caller: Caller, fd: int) -> int | Coroutine[Any, Any, int]:
        f = self._fd(fd)
        del self._fds[fd]

        async def go() -> int:
            await f.close()
            return 0

        return go() if isinstance(f, (_FileFd, _SockFd)) else 0

    @_export
    def fd_datasync(self, caller: Caller, fd: int) -> Coroutine[Any, Any, int]:
        f = self._file(fd, Rights.FD_DATASYNC)

        async def go() -> int:
            await f.file.datasync()
            return 0

        return go()

    @_export
    def fd_sync(self, caller: Caller, fd: int) -> Coroutine[Any, Any, int]:
        f = self._file(fd, Rights.FD_SYNC)

        async def go() -> int:
            await f.file.sync()
            return 0

        return go()

    @_export
    def fd_fdstat_get(self, caller: Caller, fd: int, out: int) -> int:
        f = self._fd(fd)
        self._mem(caller).write(out, abi.FDSTAT.pack(f.filetype, f.flags, f.rights, f.inheriting))
        return 0

    @_export
    def fd_fdstat_set_flags(self, caller: Caller, fd: int, flags: int) -> int:
        f = self._fd(fd)
        if isinstance(f, _DirFd) or not isinstance(f, (_FileFd, _SockFd)):
            return Errno.BADF  # flags of a directory or a standard stream: as wasmtime
        if not f.rights & Rights.FD_FDSTAT_SET_FLAGS:
            return Errno.NOTCAPABLE
        if flags & ~(abi.Fdflags.APPEND | abi.Fdflags.NONBLOCK):
            return Errno.INVAL  # the sync flags cannot be changed (wasmtime: EINVAL too)
        f.flags = flags
        return 0

    @_export
    def fd_fdstat_set_rights(self, caller: Caller, fd: int, base: int, inheriting: int) -> int:
        f = self._fd(fd)
        if base & ~f.rights or inheriting & ~f.inheriting:
            return Errno.NOTCAPABLE
        f.rights = base
        f.inheriting = inheriting
        return 0

    @_export
    def fd_filestat_get(self, caller: Caller, fd: int, out: int) -> int | Coroutine[Any, Any, int]:
        f = self._fd(fd)
        mem = self._mem(caller)
        if not isinstance(f, _FileFd):
            mem.write(out, abi.FILESTAT.pack(0, 0, f.filetype, 1, 0, 0, 0, 0))
            return 0

        async def go() -> int:
            st = await f.file.stat()
            mem.write(out, _filestat(st))
            return 0

        return go()

    @_export
    def fd_filestat_set_size(self, caller: Caller, fd: int, size: int) -> Coroutine[Any, Any, int]:
        f = self._file(fd)
        if not f.rights & Rights.FD_FILESTAT_SET_SIZE:
            raise _Fault(Errno.INVAL)  # not open for writing: ftruncate's EINVAL

        async def go() -> int:
            await f.file.set_size(size)
            return 0

        return go()

    @staticmethod
    def _times(atim: int, mtim: int, flags: int) -> tuple[TimeSpec, TimeSpec]:
        if flags & ~0xF:
            raise _Fault(Errno.INVAL)
        if (flags & abi.Fstflags.ATIM and flags & abi.Fstflags.ATIM_NOW) or (
            flags & abi.Fstflags.MTIM and flags & abi.Fstflags.MTIM_NOW
        ):
            raise _Fault(Errno.INVAL)
        a: TimeSpec = (
            atim if flags & abi.Fstflags.ATIM else NOW if flags & abi.Fstflags.ATIM_NOW else None
        )
        m: TimeSpec = (
            mtim if flags & abi.Fstflags.MTIM else NOW if flags & abi.Fstflags.MTIM_NOW else None
        )
        return a, m

    @_export
    def fd_filestat_set_times(
        self, caller: Caller, fd: int, atim: int, mtim: int, flags: int
    ) -> Coroutine[Any, Any, int]:
        a, m = self._times(atim, mtim, flags)
        f = self._fd(fd, Rights.FD_FILESTAT_SET_TIMES)
        if not isinstance(f, _FileFd):
            raise _Fault(Errno.BADF)

        async def go() -> int:
            await f.file.set_times(a, m)
            return 0

        return go()

    @_export
    def fd_prestat_get(self, caller: Caller, fd: int, out: int) -> int:
        f = self._fd(fd)
        if not isinstance(f, _DirFd) or f.preopen is None:
            return Errno.BADF
        self._mem(caller).write(out, abi.PRESTAT.pack(0, len(f.preopen.encode())))
        return 0

    @_export
    def fd_prestat_dir_name(self, caller: Caller, fd: int, path: int, n: int) -> int:
        f = self._fd(fd)
        if not isinstance(f, _DirFd):
            return Errno.NOTDIR
        if f.preopen is None:
            return Errno.BADF
        name = f.preopen.encode()
        if n < len(name):
            return Errno.NAMETOOLONG
        self._mem(caller).write(path, name)
        return 0

    # -- reading and writing ------------------------------------------------------

    @_export
    def fd_read(
        self, caller: Caller, fd: int, iovs: int, n: int, out: int
    ) -> int | Coroutine[Any, Any, int]:
        f = self._fd(fd)
        self._open_for(f, _FD_READ)
        mem = self._mem(caller)
        vecs = self._iovecs(mem, iovs, n)
        total = sum(length for _, length in vecs)
        if isinstance(f, _FileFd):
            self._file(fd)
            return self._read_file(mem, f, vecs, total, None, out)
        return self._read_stream(mem, f, vecs, total, out)

    @_export
    def fd_pread(
        self, caller: Caller, fd: int, iovs: int, n: int, offset: int, out: int
    ) -> int | Coroutine[Any, Any, int]:
        f = self._fd(fd)
        if not isinstance(f, _FileFd):
            raise _Fault(Errno.SPIPE)
        f = self._file(fd, Rights.FD_SEEK)
        self._open_for(f, _FD_READ)
        mem = self._mem(caller)
        vecs = self._iovecs(mem, iovs, n)
        return self._read_file(mem, f, vecs, sum(v[1] for v in vecs), offset, out)

    def _read_file(
        self,
        mem: GuestMemory,
        f: _FileFd,
        vecs: list[tuple[int, int]],
        total: int,
        offset: int | None,
        out: int,
    ) -> int | Coroutine[Any, Any, int]:
        """Read `total` bytes at `offset` (None: the file position) into `vecs`:
        at once if the backend can (File._read_now), else (for the rest) in a
        coroutine."""
        done = 0
        at = f.position if offset is None else offset
        if total and at is not None:
            views = mem.views(vecs)
            if views is not None:
                done, final = f.file._read_now(views, at, off_loop=self._off_loop)
                if final:
                    if offset is None:
                        f.position = at + done
                    mem.write(out, _U32.pack(done))
                    return 0
        return self._read_file_rest(mem, f, vecs, total, offset, out, done)

    async def _read_file_rest(
        self,
        mem: GuestMemory,
        f: _FileFd,
        vecs: list[tuple[int, int]],
        total: int,
        offset: int | None,
        out: int,
        done: int,
    ) -> int:
        """The rest of :meth:`_read_file`: its first `done` bytes are read."""
        at = offset
        if at is None:
            at = f.position
            if at is None:
                at = f.position = (await f.file.stat()).size
        try:
            data = await f.file.read(total - done, at + done) if total > done else b""
        except (FsError, OSError):
            if not done:
                raise
            data = b""  # a short read; the error comes with the next one
        done += self._scatter(mem, vecs, data, done)
        if offset is None:
            f.position = at + done
        mem.write(out, _U32.pack(done))
        return 0

    def _read_stream(
        self, mem: GuestMemory, f: _Fd, vecs: list[tuple[int, int]], total: int, out: int
    ) -> int | Coroutine[Any, Any, int]:
        if isinstance(f, _InFd) and total:
            data = f.source.read_now(total, off_loop=self._off_loop)
            if data is not None:  # at hand (a bytes stdin): no suspension
                mem.write(out, _U32.pack(self._scatter(mem, vecs, data)))
                return 0

        async def go() -> int:
            if isinstance(f, _InFd):
                data = await f.source.read(total) if total else b""
            elif isinstance(f, _SockFd):
                data = await self._recv(f, total, 0)
            else:
                return Errno.BADF
            mem.write(out, _U32.pack(self._scatter(mem, vecs, data)))
            return 0

        return go()

    @_export
    def fd_write(
        self, caller: Caller, fd: int, iovs: int, n: int, out: int
    ) -> int | Coroutine[Any, Any, int]:
        f = self._fd(fd)
        self._open_for(f, _FD_WRITE)
        mem = self._mem(caller)
        vecs = self._iovecs(mem, iovs, n)
        if isinstance(f, _FileFd):
            self._file(fd)
            return self._write_file(mem, f, vecs, None, out)
        data = self._gather(mem, vecs)
        if isinstance(f, _OutFd):
            waiting = f.sink.write(data)
            if waiting is None:
                mem.write(out, _U32.pack(len(data)))
                return 0

            async def drain() -> int:
                await waiting
                mem.write(out, _U32.pack(len(data)))
                return 0

            return drain()
        if isinstance(f, _SockFd):
            return self._send_all(mem, f, data, out)
        return Errno.BADF

    @_export
    def fd_pwrite(
        self, caller: Caller, fd: int, iovs: int, n: int, offset: int, out: int
    ) -> int | Coroutine[Any, Any, int]:
        f = self._fd(fd)
        if not isinstance(f, _FileFd):
            raise _Fault(Errno.SPIPE)
        f = self._file(fd, Rights.FD_SEEK)
        self._open_for(f, _FD_WRITE)
        mem = self._mem(caller)
        return self._write_file(mem, f, self._iovecs(mem, iovs, n), offset, out)

    def _write_file(
        self,
        mem: GuestMemory,
        f: _FileFd,
        vecs: list[tuple[int, int]],
        offset: int | None,
        out: int,
    ) -> int | Coroutine[Any, Any, int]:
        """Write `vecs` at `offset` (None: at the file position, or at the end
        with APPEND): at once if the backend can (File._write_now), else (for
        the rest) in a coroutine."""
        append = offset is None and bool(f.flags & _APPEND)
        at = offset if offset is not None else None if append else f.position
        done = 0
        if (at is not None or append) and any(length for _, length in vecs):
            views = mem.views(vecs)
            if views is not None:
                done, final = f.file._write_now(views, at, off_loop=self._off_loop)
                if final:
                    if offset is None:
                        f.position = None if at is None else at + done  # None: appended
                    mem.write(out, _U32.pack(done))
                    return 0
        data = self._gather(mem, vecs, done)
        return self._write_file_rest(mem, f, data, offset, out, done)

    async def _write_file_rest(
        self, mem: GuestMemory, f: _FileFd, data: bytes, offset: int | None, out: int, done: int
    ) -> int:
        """The rest of :meth:`_write_file`: `data`, after the `done` bytes written."""
        try:
            if offset is not None:
                written = await f.file.write(data, offset + done) if data else 0
            elif f.flags & _APPEND:
                written = await f.file.write(data, None) if data else 0
                f.position = None
            else:
                at = f.position
                if at is None:
                    at = (await f.file.stat()).size
                written = await f.file.write(data, at + done) if data else 0
                f.position = at + done + written
        except (FsError, OSError):
            if not done:
                raise
            written = 0  # a short write; the error comes with the next one
            if offset is None and not f.flags & _APPEND and f.position is not None:
                f.position += done
        mem.write(out, _U32.pack(done + written))
        return 0

    async def _send_all(self, mem: GuestMemory, f: _SockFd, data: bytes, out: int) -> int:
        if f.flags & abi.Fdflags.NONBLOCK:
            try:
                sent = f.sock.send(data)
            except BlockingIOError:
                return Errno.AGAIN
        else:
            await self._lib().sock_sendall(f.sock, data)
            sent = len(data)
        mem.write(out, _U32.pack(sent))
        return 0

    @_export
    def fd_seek(
        self, caller: Caller, fd: int, offset: int, whence: int, out: int
    ) -> int | Coroutine[Any, Any, int]:
        f = self._fd(fd)
        if not isinstance(f, _FileFd):
            return Errno.SPIPE
        rights = Rights.FD_TELL if (offset == 0 and whence == abi.Whence.CUR) else Rights.FD_SEEK
        f = self._file(fd, rights)
        if whence not in (0, 1, 2):
            return Errno.INVAL
        offset = offset - (1 << 64) if offset >= 1 << 63 else offset  # filedelta is signed
        mem = self._mem(caller)

        async def go() -> int:
            if whence == abi.Whence.SET:
                base = 0
            elif whence == abi.Whence.CUR and f.position is not None:
                base = f.position
            else:
                base = (await f.file.stat()).size
            new = base + offset
            if new < 0:
                return Errno.INVAL
            f.position = new
            mem.write(out, _U64.pack(new))
            return 0

        if whence == abi.Whence.SET or (whence == abi.Whence.CUR and f.position is not None):
            base = 0 if whence == abi.Whence.SET else f.position or 0
            if base + offset < 0:
                return Errno.INVAL
            f.position = base + offset
            mem.write(out, _U64.pack(f.position))
            return 0
        return go()

    @_export
    def fd_tell(self, caller: Caller, fd: int, out: int) -> int | Coroutine[Any, Any, int]:
        f = self._fd(fd)
        if not isinstance(f, _FileFd):
            return Errno.SPIPE
        f = self._file(fd, Rights.FD_TELL)
        mem = self._mem(caller)
        if f.position is not None:
            mem.write(out, _U64.pack(f.position))
            return 0

        async def go() -> int:
            f.position = (await f.file.stat()).size
            mem.write(out, _U64.pack(f.position))
            return 0

        return go()

    @_export
    def fd_readdir(
        self, caller: Caller, fd: int, buf: int, n: int, cookie: int, out: int
    ) -> Coroutine[Any, Any, int]:
        f = self._fd(fd)
        if not isinstance(f, _DirFd):
            raise _Fault(Errno.BADF)  # as wasmtime (and its fd_read of a directory)
        if not f.rights & Rights.FD_READDIR:
            raise _Fault(Errno.NOTCAPABLE)
        mem = self._mem(caller)

        async def go() -> int:
            listing = f.dir_cache
            if listing is None or cookie == 0:
                st = await f.file.stat()
                parent_ino = st.ino
                if f.path != ".":
                    parent = f.path.rpartition("/")[0] or "."
                    parent_ino = (await f.fs.stat(parent)).ino
                entries = await f.file.readdir()
                listing = [
                    (".", Filetype.DIRECTORY, st.ino),
                    ("..", Filetype.DIRECTORY, parent_ino),
                ]
                listing += [(e.name, e.filetype, e.ino) for e in entries]
                f.dir_cache = listing
            blob = bytearray()
            for index in range(cookie, len(listing)):
                if len(blob) >= n:
                    break
                name, ftype, ino = listing[index]
                raw = name.encode()
                blob += abi.DIRENT.pack(index + 1, ino, len(raw), ftype) + raw
            data = bytes(blob[:n])
            mem.write(buf, data)
            mem.write(out, _U32.pack(len(data)))
            return 0

        return go()

    @_export
    def fd_renumber(self, caller: Caller, fd: int, to: int) -> int | Coroutine[Any, Any, int]:
        f = self._fd(fd)
        old = self._fd(to)
        if fd == to:
            return 0
        self._fds[to] = f
        del self._fds[fd]

        async def go() -> int:
            await old.close()
            return 0

        return go()

    # -- paths ----------------------------------------------------------------------

    async def _resolve(self, d: _DirFd, mem: GuestMemory, ptr: int, n: int, *, follow: bool) -> str:
        path = self._path(mem, ptr, n)
        return await d.fs.resolve(d.path, path, follow=follow)

    @_export
    def path_create_directory(
        self, caller: Caller, fd: int, ptr: int, n: int
    ) -> Coroutine[Any, Any, int]:
        d = self._dir(fd, Rights.PATH_CREATE_DIRECTORY)
        mem = self._mem(caller)

        async def go() -> int:
            await d.fs.mkdir(await self._resolve(d, mem, ptr, n, follow=False))
            return 0

        return go()

    @_export
    def path_filestat_get(
        self, caller: Caller, fd: int, flags: int, ptr: int, n: int, out: int
    ) -> Coroutine[Any, Any, int]:
        d = self._dir(fd, Rights.PATH_FILESTAT_GET)
        mem = self._mem(caller)

        async def go() -> int:
            path = await self._resolve(d, mem, ptr, n, follow=bool(flags & 1))
            st = await d.fs.stat(path)
            mem.write(out, _filestat(st))
            return 0

        return go()

    @_export
    def path_filestat_set_times(
        self, caller: Caller, fd: int, flags: int, ptr: int, n: int, atim: int, mtim: int,
        fst: int,
    ) -> Coroutine[Any, Any, int]:  # fmt: skip
        a, m = self._times(atim, mtim, fst)
        d = self._dir(fd, Rights.PATH_FILESTAT_SET_TIMES)
        mem = self._mem(caller)

        async def go() -> int:
            path = await self._resolve(d, mem, ptr, n, follow=bool(flags & 1))
            await d.fs.set_times(path, a, m)
            return 0

        return go()

    @_export
    def path_link(
        self, caller: Caller, old_fd: int, old_flags: int, old_ptr: int, old_n: int,
        new_fd: int, new_ptr: int, new_n: int,
    ) -> Coroutine[Any, Any, int]:  # fmt: skip
        src = self._dir(old_fd, Rights.PATH_LINK_SOURCE)
        dst = self._dir(new_fd, Rights.PATH_LINK_TARGET)
        mem = self._mem(caller)

        async def go() -> int:
            old = await self._resolve(src, mem, old_ptr, old_n, follow=bool(old_flags & 1))
            new = await self._resolve(dst, mem, new_ptr, new_n, follow=False)
            if src.fs is not dst.fs:
                return Errno.XDEV
            await src.fs.link(old, new)
            return 0

        return go()

    @_export
    def path_open(
        self, caller: Caller, fd: int, dirflags: int, ptr: int, n: int, oflags: int,
        base: int, inheriting: int, fdflags: int, out: int,
    ) -> Coroutine[Any, Any, int]:  # fmt: skip
        d = self._dir(fd, _PATH_OPEN)
        if oflags & _O_CREAT and not d.rights & _PATH_CREATE_FILE:
            raise _Fault(Errno.NOTCAPABLE)
        if oflags & _O_TRUNC and not d.rights & _PATH_FILESTAT_SET_SIZE:
            raise _Fault(Errno.NOTCAPABLE)
        if oflags & ~0xF or fdflags & ~0x1F:
            raise _Fault(Errno.INVAL)
        if oflags & _O_DIRECTORY and oflags & (_O_CREAT | _O_TRUNC):
            raise _Fault(Errno.INVAL)  # a directory is neither created nor truncated by open
        mem = self._mem(caller)
        # Rights: what was asked for, within what the directory passes on.
        # (Plain ints throughout: IntFlag operations cost ~1 us each.)
        base &= d.inheriting
        inheriting &= d.inheriting
        want_write = bool(base & _OPEN_WRITE_RIGHTS or fdflags & _APPEND or oflags & _O_TRUNC)
        exclusive = oflags & _O_CREAT and oflags & _O_EXCL
        # O_CREAT|O_EXCL never follows a symlink: one there (dangling or not) is EEXIST.
        follow = bool(dirflags & _FOLLOW) and not exclusive

        async def go() -> int:
            path = await self._resolve(d, mem, ptr, n, follow=follow)
            directory = bool(oflags & _O_DIRECTORY)
            mode = OpenMode(
                read=bool(base & _OPEN_READ_RIGHTS) or not want_write,
                write=want_write,
                create=bool(oflags & _O_CREAT),
                exclusive=bool(oflags & _O_EXCL),
                truncate=bool(oflags & _O_TRUNC),
                directory=directory,
                append=bool(fdflags & _APPEND),
            )
            try:
                file = await d.fs.open(path, mode)
            except FsError as e:
                # O_DIRECTORY|O_NOFOLLOW on a symlink: ELOOP, as for any other
                # O_NOFOLLOW open (a backend may say ENOTDIR first)
                if e.errno != Errno.NOTDIR or follow or not directory:
                    raise
                if (await d.fs.stat(path)).filetype == Filetype.SYMBOLIC_LINK:
                    raise FsError(Errno.LOOP, "symlink") from None
                raise
            new: _Fd
            if file.filetype == Filetype.DIRECTORY:
                rights = base & _OPEN_DIR_RIGHTS
                new = _DirFd(d.fs, path, file, rights, inheriting, fdflags & ~_APPEND)
            else:
                rights = base & _OPEN_FILE_RIGHTS
                if not mode.write:
                    rights &= ~_OPEN_WRITE_RIGHTS
                if not mode.read:
                    rights &= ~_FD_READ
                # syncing needs no write access (POSIX), whatever wasi-libc asked for
                rights |= _OPEN_SYNC_RIGHTS & d.inheriting
                new = _FileFd(d.fs, path, file, rights, inheriting, fdflags)
            mem.write(out, _U32.pack(self._new_fd(new)))
            return 0

        return go()

    @_export
    def path_readlink(
        self, caller: Caller, fd: int, ptr: int, n: int, buf: int, buf_len: int, out: int
    ) -> Coroutine[Any, Any, int]:
        d = self._dir(fd, Rights.PATH_READLINK)
        mem = self._mem(caller)

        async def go() -> int:
            path = await self._resolve(d, mem, ptr, n, follow=False)
            link = await d.fs.readlink(path)
            if link.startswith("/"):
                # a host path: never shown to the guest (which could not follow it
                # anyway); wasmtime refuses such links with EPERM too
                return Errno.PERM
            target = link.encode()[:buf_len]
            mem.write(buf, target)
            mem.write(out, _U32.pack(len(target)))
            return 0

        return go()

    @_export
    def path_remove_directory(
        self, caller: Caller, fd: int, ptr: int, n: int
    ) -> Coroutine[Any, Any, int]:
        d = self._dir(fd, Rights.PATH_REMOVE_DIRECTORY)
        mem = self._mem(caller)

        async def go() -> int:
            raw = self._path(mem, ptr, n)
            if raw.rstrip("/").rpartition("/")[2] in (".", ".."):
                return Errno.INVAL  # rmdir("x/.") and rmdir("x/..") (POSIX, wasmtime)
            path = await self._resolve(d, mem, ptr, n, follow=False)
            if path == d.path:
                return Errno.INVAL  # the directory itself
            await d.fs.rmdir(path)
            return 0

        return go()

    @_export
    def path_rename(
        self, caller: Caller, fd: int, old_ptr: int, old_n: int, new_fd: int, new_ptr: int,
        new_n: int,
    ) -> Coroutine[Any, Any, int]:  # fmt: skip
        src = self._dir(fd, Rights.PATH_RENAME_SOURCE)
        dst = self._dir(new_fd, Rights.PATH_RENAME_TARGET)
        mem = self._mem(caller)

        async def go() -> int:
            old = await self._resolve(src, mem, old_ptr, old_n, follow=False)
            new = await self._resolve(dst, mem, new_ptr, new_n, follow=False)
            if src.fs is not dst.fs:
                return Errno.XDEV
            slash = self._path(mem, old_ptr, old_n).endswith("/") or self._path(
                mem, new_ptr, new_n
            ).endswith("/")
            if slash and (await src.fs.stat(old)).filetype != Filetype.DIRECTORY:
                return Errno.NOTDIR  # a trailing slash names a directory (POSIX)
            await src.fs.rename(old, new)
            return 0

        return go()

    @_export
    def path_symlink(
        self, caller: Caller, old_ptr: int, old_n: int, fd: int, new_ptr: int, new_n: int
    ) -> Coroutine[Any, Any, int]:
        d = self._dir(fd, Rights.PATH_SYMLINK)
        mem = self._mem(caller)

        async def go() -> int:
            target = self._path(mem, old_ptr, old_n)
            if target.startswith("/"):
                # it could never be followed inside the sandbox, but would be by
                # the host's own programs: refused, as wasmtime does
                return Errno.PERM
            path = await self._resolve(d, mem, new_ptr, new_n, follow=False)
            await d.fs.symlink(target, path)
            return 0

        return go()

    @_export
    def path_unlink_file(
        self, caller: Caller, fd: int, ptr: int, n: int
    ) -> Coroutine[Any, Any, int]:
        d = self._dir(fd, Rights.PATH_UNLINK_FILE)
        mem = self._mem(caller)

        async def go() -> int:
            path = await self._resolve(d, mem, ptr, n, follow=False)
            await d.fs.unlink(path)
            return 0

        return go()

    # -- polling --------------------------------------------------------------------

    @_export
    def poll_oneoff(
        self, caller: Caller, in_ptr: int, out_ptr: int, nsubs: int, nevents: int
    ) -> int | Coroutine[Any, Any, int]:
        if nsubs == 0:
            return Errno.INVAL
        mem = self._mem(caller)
        raw = mem.read(in_ptr, abi.SUBSCRIPTION_SIZE * nsubs)
        now_mono = time.monotonic_ns()
        clocks: list[tuple[int, int]] = []  # (userdata, deadline in monotonic ns)
        fds: list[tuple[int, int, _Fd | None, int]] = []  # userdata, type, fd, errno
        errors: list[tuple[int, int, int]] = []  # userdata, type, errno
        for i in range(nsubs):
            base = i * abi.SUBSCRIPTION_SIZE
            userdata, tag = abi.SUBSCRIPTION_HEAD.unpack_from(raw, base)
            if tag == abi.EventType.CLOCK:
                clock_id, timeout, _precision, flags = abi.SUBSCRIPTION_CLOCK.unpack_from(
                    raw, base + 16
                )
                read = self._CLOCKS.get(clock_id)
                if read is None:
                    errors.append((userdata, tag, Errno.INVAL))
                    continue
                if flags & abi.SUBCLOCKFLAGS_ABSTIME:
                    timeout = timeout - read()
                clocks.append((userdata, now_mono + max(timeout, 0)))
            elif tag in (abi.EventType.FD_READ, abi.EventType.FD_WRITE):
                (fd,) = _U32.unpack_from(raw, base + 16)
                f = self._fds.get(fd)
                if f is None:
                    errors.append((userdata, tag, Errno.BADF))
                elif not f.rights & Rights.POLL_FD_READWRITE:
                    errors.append((userdata, tag, Errno.NOTCAPABLE))
                else:
                    fds.append((userdata, tag, f, 0))
            else:
                return Errno.INVAL

        def ready_events() -> list[bytes]:
            events = [abi.EVENT.pack(u, e, t, 0, 0) for u, t, e in errors]
            now = time.monotonic_ns()
            events += [
                abi.EVENT.pack(u, 0, abi.EventType.CLOCK, 0, 0) for u, d in clocks if d <= now
            ]
            for u, t, f, _ in fds:
                assert f is not None
                state = self._readiness(f, t)
                if state is not None:
                    nbytes, hangup = state
                    flags = abi.EVENTRWFLAGS_HANGUP if hangup else 0
                    events.append(abi.EVENT.pack(u, 0, t, nbytes, flags))
            return events

        def finish(events: list[bytes]) -> int:
            mem.write(out_ptr, b"".join(events))
            mem.write(nevents, _U32.pack(len(events)))
            return 0

        events = ready_events()
        if events:
            return finish(events)

        def next_timeout() -> float | None:
            if not clocks:
                return None
            return max(0.0, (min(d for _, d in clocks) - time.monotonic_ns()) / 1e9)

        def check() -> list[bytes] | None:
            return ready_events() or None

        async def wait() -> int:
            # One wait per descriptor and kind (trio allows one waiter per
            # descriptor and direction; under asyncio a second add_reader would
            # replace the first anyway).
            waits: dict[tuple[int, int], Callable[[], Coroutine[Any, Any, None]]] = {}
            for _, t, f, _ in fds:
                assert f is not None
                waits.setdefault((id(f), t), functools.partial(self._wait_ready, f, t))
            return finish(await self._lib().wait_any(list(waits.values()), next_timeout, check))

        return wait()

    def _readiness(self, f: _Fd, kind: int) -> tuple[int, bool] | None:
        """(nbytes, hangup) if `f` is ready for `kind`, else None (synchronous)."""
        if isinstance(f, _FileFd):
            return (0, False)
        if isinstance(f, _OutFd):
            return (0, False) if kind == abi.EventType.FD_WRITE else None
        if isinstance(f, _InFd):
            return (0, False) if kind == abi.EventType.FD_READ and f.source.ready() else None
        if isinstance(f, _SockFd):
            import select  # noqa: PLC0415

            want = select.POLLIN if kind == abi.EventType.FD_READ else select.POLLOUT
            poller = select.poll()
            poller.register(f.sock.fileno(), want)
            got = poller.poll(0)
            if not got:
                return None
            mask = got[0][1]
            hangup = bool(mask & (select.POLLHUP | select.POLLERR))
            return (0, hangup)
        return None

    async def _wait_ready(self, f: _Fd, kind: int) -> None:
        if isinstance(f, _InFd) and kind == abi.EventType.FD_READ:
            await f.source.wait_ready()
        elif isinstance(f, _SockFd):
            if kind == abi.EventType.FD_READ:
                await self._lib().wait_readable(f.sock)
            else:
                await self._lib().wait_writable(f.sock)
        else:
            # never ready: only a clock or another fd ends the poll
            await self._lib().sleep_forever()

    # -- sockets --------------------------------------------------------------------

    def _sock(self, fd: int, rights: int) -> _SockFd:
        f = self._fd(fd)
        if not isinstance(f, _SockFd):
            raise _Fault(Errno.NOTSOCK)
        if (f.rights & rights) != rights:
            raise _Fault(Errno.NOTCAPABLE)
        return f

    @_export
    def sock_accept(
        self, caller: Caller, fd: int, flags: int, out: int
    ) -> int | Coroutine[Any, Any, int]:
        f = self._sock(fd, Rights.SOCK_ACCEPT)
        if flags & ~abi.Fdflags.NONBLOCK:
            return Errno.INVAL
        mem = self._mem(caller)

        def take(conn: socket.socket) -> int:
            new = _SockFd(conn, abi.SOCKET_RIGHTS & ~Rights.SOCK_ACCEPT)
            new.flags = flags
            mem.write(out, _U32.pack(self._new_fd(new)))
            return 0

        if f.flags & abi.Fdflags.NONBLOCK:
            try:
                conn, _ = f.sock.accept()
            except BlockingIOError:
                return Errno.AGAIN
            return take(conn)

        async def go() -> int:
            return take(await self._lib().sock_accept(f.sock))

        return go()

    async def _recv(self, f: _SockFd, n: int, flags: int) -> bytes:
        aio = self._lib()
        peek = flags & abi.RIFLAGS_RECV_PEEK
        waitall = flags & abi.RIFLAGS_RECV_WAITALL
        if f.flags & abi.Fdflags.NONBLOCK:
            try:
                return f.sock.recv(n, socket.MSG_PEEK if peek else 0)
            except BlockingIOError:
                raise _Fault(Errno.AGAIN) from None
        if peek:
            await self._wait_ready(f, abi.EventType.FD_READ)
            return f.sock.recv(n, socket.MSG_PEEK)
        data = await aio.sock_recv(f.sock, n)
        while waitall and data and len(data) < n:
            more = await aio.sock_recv(f.sock, n - len(data))
            if not more:
                break
            data += more
        return data

    @_export
    def sock_recv(
        self, caller: Caller, fd: int, iovs: int, n: int, flags: int, out: int, out_flags: int
    ) -> Coroutine[Any, Any, int]:
        f = self._sock(fd, Rights.FD_READ)
        if flags & ~3:
            raise _Fault(Errno.INVAL)
        mem = self._mem(caller)
        vecs = self._iovecs(mem, iovs, n)
        total = sum(v[1] for v in vecs)

        async def go() -> int:
            data = await self._recv(f, total, flags) if total else b""
            mem.write(out, _U32.pack(self._scatter(mem, vecs, data)))
            mem.write(out_flags, b"\0\0")
            return 0

        return go()

    @_export
    def sock_send(
        self, caller: Caller, fd: int, iovs: int, n: int, flags: int, out: int
    ) -> Coroutine[Any, Any, int]:
        f = self._sock(fd, Rights.FD_WRITE)
        mem = self._mem(caller)
        data = self._gather(mem, self._iovecs(mem, iovs, n))
        return self._send_all(mem, f, data, out)

    @_export
    def sock_shutdown(self, caller: Caller, fd: int, how: int) -> int:
        f = self._sock(fd, Rights.SOCK_SHUTDOWN)
        modes = {
            abi.SDFLAGS_RD: socket.SHUT_RD,
            abi.SDFLAGS_WR: socket.SHUT_WR,
            abi.SDFLAGS_RD | abi.SDFLAGS_WR: socket.SHUT_RDWR,
        }
        mode = modes.get(how)
        if mode is None:
            return Errno.INVAL
        f.sock.shutdown(mode)
        return 0


_FUNCTIONS = sorted(
    name
    for name, value in vars(Wasi).items()
    if not name.startswith("_")
    and callable(value)
    and getattr(value, "__wasync_maybe_async__", False)
)
