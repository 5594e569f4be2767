"""The one small interface behind every file system wasync's WASI serves.

A :class:`FileSystem` is mounted as a preopened directory. wasync resolves
every guest path itself (``.``, ``..``, symlinks, the sandbox: see
:meth:`FileSystem.resolve`), so a backend only ever sees *clean* paths:

* relative POSIX paths of one or more components joined by ``/``, with no
  empty, ``.`` or ``..`` component; the root of the file system is ``"."``;
* whose components are, at resolution time, directories or (the last one)
  whatever the operation names; operations never follow a symlink in the
  last component (``stat`` is ``lstat``; ``open`` refuses a symlink).

Errors are :class:`FsError` with a WASI errno; a backend may also let an
:class:`OSError` escape, which is mapped by its ``errno``.

Implementing one (an object store, an HTTP tree, ...) means subclassing
:class:`FileSystem` and :class:`File`; every method is a coroutine, so the
backend may wait on anything. See docs/wasi.md for a worked example.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Final, Literal

from wasync._errors import WasyncError
from wasync._wasi._abi import Errno, Filetype

__all__ = [
    "NOW",
    "DirEntry",
    "File",
    "FileStat",
    "FileSystem",
    "FsError",
    "OpenMode",
    "TimeSpec",
    "split_path",
]

NOW: Final = "now"
# A time to set: nanoseconds since the epoch, NOW (the current time), or None
# (leave it as it is).
TimeSpec = int | Literal["now"] | None

MAX_SYMLINKS = 40


class FsError(WasyncError):
    """A file system operation failed with a WASI errno (returned to the guest)."""

    def __init__(self, errno: Errno, message: str = "") -> None:
        super().__init__(message or errno.name.lower())
        self.errno = errno


@dataclass(frozen=True, slots=True)
class FileStat:
    """What ``stat`` tells about a file (WASI ``filestat``)."""

    filetype: Filetype
    size: int = 0
    nlink: int = 1
    ino: int = 0
    dev: int = 0
    atime_ns: int = 0
    mtime_ns: int = 0
    ctime_ns: int = 0


@dataclass(frozen=True, slots=True)
class DirEntry:
    """One directory entry (without ``.`` and ``..``, which wasync adds)."""

    name: str
    filetype: Filetype
    ino: int = 0


@dataclass(frozen=True, slots=True)
class OpenMode:
    """How :meth:`FileSystem.open` opens a path."""

    read: bool = True
    write: bool = False
    create: bool = False  # create a regular file if the path does not exist
    exclusive: bool = False  # with create: fail with EXIST if it exists
    truncate: bool = False
    directory: bool = False  # the path must be a directory (ENOTDIR otherwise)
    append: bool = False  # writes with offset None go to the end


class File(abc.ABC):
    """An open file or directory of a :class:`FileSystem`."""

    filetype: Filetype = Filetype.REGULAR_FILE

    @abc.abstractmethod
    async def read(self, size: int, offset: int) -> bytes:
        """Up to `size` bytes at `offset` (fewer at the end of the file)."""

    @abc.abstractmethod
    async def write(self, data: bytes, offset: int | None) -> int:
        """Write `data` at `offset`, or at the end of the file for None; returns
        the number of bytes written."""

    @abc.abstractmethod
    async def stat(self) -> FileStat: ...

    async def set_size(self, size: int) -> None:
        raise FsError(Errno.NOTSUP)

    async def set_times(self, atime: TimeSpec, mtime: TimeSpec) -> None:
        raise FsError(Errno.NOTSUP)

    async def sync(self) -> None:  # noqa: B027 - optional, a no-op by default
        """Flush data and metadata to stable storage (no-op by default)."""

    async def datasync(self) -> None:  # noqa: B027 - optional, a no-op by default
        """Flush data to stable storage (no-op by default)."""

    async def allocate(self, offset: int, length: int) -> None:
        """Make sure the file is at least ``offset + length`` bytes long."""
        st = await self.stat()
        if offset + length > st.size:
            await self.set_size(offset + length)

    async def readdir(self) -> list[DirEntry]:
        """The entries of a directory (not ``.`` and ``..``), in a stable order."""
        raise FsError(Errno.NOTDIR)

    async def close(self) -> None:  # noqa: B027 - optional, a no-op by default
        """Release the file (no-op by default)."""

    # -- internal fast paths (wasync's own backends only) ---------------------------
    #
    # A WASI fd_read/fd_write on a file first offers the call here, synchronously,
    # with views of the program's buffers: a backend that can serve it at once (a
    # cached page, memory) does, and the program is not suspended at all. The
    # views point into guest memory: they are only valid during this call and
    # must never be kept or used from another thread later. These are not part
    # of the public interface: other backends keep the defaults.

    def _read_now(
        self, buffers: list[memoryview], offset: int, *, off_loop: bool
    ) -> tuple[int, bool]:
        """Read at `offset` into `buffers` (in order) without waiting, as
        :meth:`read` would: ``(bytes read, final)``. Not final: the rest (from
        ``offset + bytes read`` on) must be read with :meth:`read`. `off_loop`:
        called on a thread of its own (the "thread" strategy), where blocking
        is fine but the event loop's objects must not be touched."""
        return 0, False

    def _write_now(
        self, buffers: list[memoryview], offset: int | None, *, off_loop: bool
    ) -> tuple[int, bool]:
        """Write `buffers` (in order) at `offset` (None: at the end) without
        waiting, as :meth:`write` would: ``(bytes written, final)``; not final:
        the rest must be written with :meth:`write` (at ``offset`` + written)."""
        return 0, False


class FileSystem(abc.ABC):
    """An async file system: what a preopened directory is backed by."""

    #: Refuse everything that would change the file system (EROFS... as ``wasmtime``
    #: reports it: EPERM/EACCES per operation; see docs/wasi.md).
    readonly: bool = False

    @abc.abstractmethod
    async def stat(self, path: str) -> FileStat:
        """Status of `path` itself (a symlink is reported as a symlink)."""

    @abc.abstractmethod
    async def open(self, path: str, mode: OpenMode) -> File: ...

    @abc.abstractmethod
    async def readlink(self, path: str) -> str: ...

    async def mkdir(self, path: str) -> None:
        raise FsError(Errno.NOTSUP)

    async def rmdir(self, path: str) -> None:
        raise FsError(Errno.NOTSUP)

    async def unlink(self, path: str) -> None:
        raise FsError(Errno.NOTSUP)

    async def rename(self, old: str, new: str) -> None:
        raise FsError(Errno.NOTSUP)

    async def link(self, old: str, new: str) -> None:
        raise FsError(Errno.NOTSUP)

    async def symlink(self, target: str, path: str) -> None:
        raise FsError(Errno.NOTSUP)

    async def set_times(self, path: str, atime: TimeSpec, mtime: TimeSpec) -> None:
        raise FsError(Errno.NOTSUP)

    async def resolve(self, base: str, path: str, *, follow: bool) -> str:
        """The clean path that guest path `path`, relative to directory `base`
        (a clean path), names; symlinks are followed in every component but the
        last, and in the last one too with `follow`.

        The sandbox: absolute paths, and ``..`` or symlinks leading above
        `base`, fail with NOTCAPABLE... (see :func:`resolve_path`). Backends may
        override this to resolve in one step, but must keep its semantics."""
        return await resolve_path(self, base, path, follow=follow)


def split_path(path: str) -> list[str]:
    """The components of a clean path ("." is the root: no components)."""
    return [] if path in ("", ".") else path.split("/")


def join_path(parts: list[str]) -> str:
    return "/".join(parts) if parts else "."


async def resolve_path(fs: FileSystem, base: str, path: str, *, follow: bool) -> str:
    """:meth:`FileSystem.resolve` on top of ``stat`` and ``readlink``."""
    if not path:
        raise FsError(Errno.NOENT, "empty path")
    if "\0" in path:
        raise FsError(Errno.ILSEQ, "NUL in path")
    if path.startswith("/"):
        raise FsError(Errno.PERM, f"absolute path {path!r} is outside the sandbox")
    floor = split_path(base)
    stack = list(floor)
    must_be_dir = path.endswith("/")
    todo = [c for c in path.split("/") if c and c != "."][::-1]  # a stack: next on top
    if not todo:
        return join_path(stack)  # "." or "x/."
    links = 0
    while todo:
        comp = todo.pop()
        last = not todo
        if comp == "..":
            if len(stack) <= len(floor):
                raise FsError(Errno.PERM, f"{path!r} leads outside its directory")
            stack.pop()
            continue
        candidate = [*stack, comp]
        if last and not follow and not must_be_dir:
            return join_path(candidate)
        try:
            st = await fs.stat(join_path(candidate))
        except FsError as e:
            if e.errno == Errno.NOENT and last:
                return join_path(candidate)  # may be created
            raise
        if st.filetype == Filetype.SYMBOLIC_LINK:
            links += 1
            if links > MAX_SYMLINKS:
                raise FsError(Errno.LOOP, f"too many symlinks in {path!r}")
            target = await fs.readlink(join_path(candidate))
            if not target or target.startswith("/"):
                raise FsError(
                    Errno.PERM, f"symlink {join_path(candidate)!r} -> {target!r} leaves the sandbox"
                )
            parts = [c for c in target.split("/") if c and c != "."]
            if target.endswith("/") and last:
                must_be_dir = True
            todo.extend(reversed(parts))
            continue
        if not last and st.filetype != Filetype.DIRECTORY:
            raise FsError(Errno.NOTDIR, f"{join_path(candidate)!r} is not a directory")
        if last and must_be_dir and st.filetype != Filetype.DIRECTORY:
            raise FsError(Errno.NOTDIR, f"{join_path(candidate)!r} is not a directory")
        stack = candidate
    return join_path(stack)
