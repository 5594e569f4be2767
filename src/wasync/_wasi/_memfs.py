"""An in-memory :class:`~wasync._wasi._fs.FileSystem` (:class:`MemoryFS`).

Inodes with POSIX behaviour: regular files (a ``bytearray``), directories
(insertion-ordered ``dict`` of name -> inode), symlinks; hard links with link
counts; inode numbers and a device number; access/modification/change times
in nanoseconds, updated as POSIX (Linux) updates them. Errors are the ones
Linux reports for the same system calls (``rename``'s ISDIR/NOTDIR/NOTEMPTY/
INVAL/BUSY, ``unlink`` of a directory is ISDIR, ...), so that a program sees
the same thing on :class:`MemoryFS` as on a host directory.

Seeding and exporting use nested dicts::

    fs = MemoryFS({"dir": {"a.txt": b"hi"}, "link": MemoryFS.Symlink("dir/a.txt")})
    fs.to_dict()  # the same shape back: dict = directory, bytes = file

:func:`clean_parts` (also used by the host backend) checks that a path is
*clean* in the sense of :mod:`wasync._wasi._fs`.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, TypeAlias

from wasync._wasi._abi import Errno, Filetype
from wasync._wasi._fs import NOW, DirEntry, File, FileStat, FileSystem, FsError, OpenMode

if TYPE_CHECKING:
    from wasync._wasi._fs import TimeSpec

__all__ = [
    "MAX_FILE_SIZE",
    "MAX_TIME",
    "NAME_MAX",
    "MemoryFS",
    "Symlink",
    "Tree",
    "TreeEntry",
    "clean_parts",
]

#: Longest file name component, in bytes of UTF-8 (Linux's NAME_MAX).
NAME_MAX = 255
#: Largest file size/offset (an off_t).
MAX_FILE_SIZE = (1 << 63) - 1
#: Latest time that can be set (ns since the epoch; a host's time_t bounds it).
MAX_TIME = (1 << 63) - 1

# Device numbers of MemoryFS instances: distinct per instance, so that two
# mounts never show the same (dev, ino) pair for different files (programs such
# as ``cp`` compare them to detect "same file").
_DEVICES = itertools.count(0x6D656D00)


def _name_bytes(name: str) -> int:
    try:
        return len(name.encode("utf-8", "surrogateescape"))
    except UnicodeEncodeError:
        raise FsError(Errno.ILSEQ, f"{name!r} is not encodable") from None


def clean_parts(path: str) -> list[str]:
    """The components of clean path `path` (``"."`` -> ``[]``).

    Anything that is not clean fails: absolute paths and ``..`` with PERM (they
    would leave the file system), empty or ``.`` components and NUL with INVAL,
    a component longer than :data:`NAME_MAX` bytes with NAMETOOLONG."""
    if path == ".":
        return []
    if path.startswith("/"):
        raise FsError(Errno.PERM, f"absolute path {path!r} given to a file system")
    if not path or "\0" in path:
        raise FsError(Errno.INVAL, f"not a clean path: {path!r}")
    parts = path.split("/")
    for part in parts:
        if part == "..":
            raise FsError(Errno.PERM, f"'..' in {path!r} given to a file system")
        if part in ("", "."):
            raise FsError(Errno.INVAL, f"not a clean path: {path!r}")
        if _name_bytes(part) > NAME_MAX:
            raise FsError(Errno.NAMETOOLONG, f"name too long in {path!r}")
    return parts


@dataclass(frozen=True, slots=True)
class Symlink:
    """A symbolic link in a :class:`MemoryFS` tree (seed or export)."""

    target: str


# A tree to seed a MemoryFS with, or exported from one: a dict is a directory,
# bytes a regular file, Symlink a symbolic link.
TreeEntry: TypeAlias = "bytes | bytearray | Symlink | Mapping[str, TreeEntry]"
Tree: TypeAlias = Mapping[str, TreeEntry]


class _Node:
    __slots__ = ("atime", "ctime", "ino", "mtime", "nlink")
    filetype: ClassVar[Filetype]

    def __init__(self, ino: int, now: int) -> None:
        self.ino = ino
        self.nlink = 0  # names linking to it (directories: 1 while linked)
        self.atime = self.mtime = self.ctime = now

    def size(self) -> int:
        return 0

    def stat_nlink(self) -> int:
        return self.nlink


class _FileNode(_Node):
    __slots__ = ("data", "opens")
    filetype = Filetype.REGULAR_FILE

    def __init__(self, ino: int, now: int, data: bytes = b"") -> None:
        super().__init__(ino, now)
        self.data = bytearray(data)
        self.opens = 0  # open MemoryFiles: data is kept while > 0

    def size(self) -> int:
        return len(self.data)


class _DirNode(_Node):
    __slots__ = ("entries", "subdirs")
    filetype = Filetype.DIRECTORY

    def __init__(self, ino: int, now: int) -> None:
        super().__init__(ino, now)
        self.entries: dict[str, _Node] = {}
        self.subdirs = 0

    def stat_nlink(self) -> int:
        # POSIX: the entry in the parent, "." and the ".." of each subdirectory.
        return 2 + self.subdirs if self.nlink else 0


class _LinkNode(_Node):
    __slots__ = ("target",)
    filetype = Filetype.SYMBOLIC_LINK

    def __init__(self, ino: int, now: int, target: str) -> None:
        super().__init__(ino, now)
        self.target = target

    def size(self) -> int:
        return _name_bytes(self.target)


def _check_offset(offset: int) -> None:
    if not 0 <= offset <= MAX_FILE_SIZE:
        raise FsError(Errno.INVAL, f"invalid offset {offset}")


class MemoryFS(FileSystem):
    """A file system in memory.

    `tree` seeds it (see :data:`Tree`); `readonly` refuses every change with
    ROFS; `max_bytes` bounds the bytes stored in regular files (writes past it
    are short, or fail with NOSPC); `dev` is the device number reported by
    ``stat`` (default: a number distinct per instance)."""

    Symlink: ClassVar[type[Symlink]] = Symlink

    def __init__(
        self,
        tree: Tree | None = None,
        *,
        readonly: bool = False,
        max_bytes: int | None = None,
        dev: int | None = None,
    ) -> None:
        self.dev = next(_DEVICES) if dev is None else dev
        self.max_bytes = max_bytes
        self.used_bytes = 0
        self._inos = itertools.count(1)
        self._root = _DirNode(next(self._inos), time.time_ns())
        self._root.nlink = 1
        if tree is not None:
            self._seed(self._root, tree)
        if max_bytes is not None and self.used_bytes > max_bytes:
            raise ValueError(f"the tree holds {self.used_bytes} bytes, above max_bytes")
        self.readonly = readonly

    # -- seeding and export ------------------------------------------------------

    def _seed(self, parent: _DirNode, tree: Tree) -> None:
        now = time.time_ns()
        for name, value in tree.items():
            if not isinstance(name, str) or "/" in name or name in ("", ".", ".."):
                raise ValueError(f"invalid file name {name!r} in the tree")
            try:
                clean_parts(name)
            except FsError as e:
                raise ValueError(f"invalid file name {name!r} in the tree: {e}") from None
            node: _Node
            if isinstance(value, bytes | bytearray):
                node = _FileNode(next(self._inos), now, bytes(value))
                self.used_bytes += len(value)
            elif isinstance(value, Symlink):
                if not value.target or "\0" in value.target:
                    raise ValueError(f"invalid symlink target {value.target!r}")
                node = _LinkNode(next(self._inos), now, value.target)
            elif isinstance(value, Mapping):
                node = _DirNode(next(self._inos), now)
                self._seed(node, value)
            else:
                raise TypeError(
                    f"{name!r}: expected bytes, a dict or MemoryFS.Symlink, not "
                    f"{type(value).__name__}"
                )
            self._attach(parent, name, node)

    def to_dict(self, path: str = ".") -> dict[str, TreeEntry]:
        """The tree under directory `path` as nested dicts (the shape `tree` takes);
        a file with several hard links appears under each name."""
        node = self._lookup(path)
        if not isinstance(node, _DirNode):
            raise FsError(Errno.NOTDIR, f"{path!r} is not a directory")
        return self._export(node)

    def _export(self, node: _DirNode) -> dict[str, TreeEntry]:
        out: dict[str, TreeEntry] = {}
        for name, child in node.entries.items():
            if isinstance(child, _DirNode):
                out[name] = self._export(child)
            elif isinstance(child, _FileNode):
                out[name] = bytes(child.data)
            elif isinstance(child, _LinkNode):
                out[name] = Symlink(child.target)
        return out

    # -- tree primitives -----------------------------------------------------------

    def _attach(self, parent: _DirNode, name: str, node: _Node) -> None:
        parent.entries[name] = node
        node.nlink += 1
        if isinstance(node, _DirNode):
            parent.subdirs += 1

    def _detach(self, parent: _DirNode, name: str, now: int, *, moving: bool = False) -> _Node:
        """Remove entry `name` (`moving`: to attach it elsewhere, keep its data)."""
        node = parent.entries.pop(name)
        node.nlink -= 1
        node.ctime = now
        if isinstance(node, _DirNode):
            parent.subdirs -= 1
        elif isinstance(node, _FileNode) and not moving:
            self._maybe_free(node)
        return node

    def _maybe_free(self, node: _FileNode) -> None:
        if node.nlink == 0 and node.opens == 0:
            self.used_bytes -= len(node.data)
            node.data = bytearray()

    def _check_writable(self) -> None:
        if self.readonly:
            raise FsError(Errno.ROFS, "read-only file system")

    def _dir(self, parts: list[str]) -> _DirNode:
        node = self._root
        for i, part in enumerate(parts):
            child = node.entries.get(part)
            if child is None:
                raise FsError(Errno.NOENT, f"{'/'.join(parts[: i + 1])!r} does not exist")
            if not isinstance(child, _DirNode):
                raise FsError(Errno.NOTDIR, f"{'/'.join(parts[: i + 1])!r} is not a directory")
            node = child
        return node

    def _parent(self, path: str) -> tuple[_DirNode, str | None]:
        """The directory holding `path`'s last component, and that component
        (None for the root)."""
        parts = clean_parts(path)
        if not parts:
            return self._root, None
        return self._dir(parts[:-1]), parts[-1]

    def _lookup(self, path: str) -> _Node:
        parent, name = self._parent(path)
        if name is None:
            return parent
        node = parent.entries.get(name)
        if node is None:
            raise FsError(Errno.NOENT, f"{path!r} does not exist")
        return node

    def _new_ino(self) -> int:
        return next(self._inos)

    def _stat(self, node: _Node) -> FileStat:
        return FileStat(
            filetype=node.filetype,
            size=node.size(),
            nlink=node.stat_nlink(),
            ino=node.ino,
            dev=self.dev,
            atime_ns=node.atime,
            mtime_ns=node.mtime,
            ctime_ns=node.ctime,
        )

    @staticmethod
    def _touch(node: _Node, now: int) -> None:
        node.mtime = node.ctime = now

    def _set_times(self, node: _Node, atime: TimeSpec, mtime: TimeSpec) -> None:
        for t in (atime, mtime):
            if isinstance(t, int) and not 0 <= t <= MAX_TIME:
                raise FsError(Errno.INVAL, f"invalid time {t!r}")
        if atime is None and mtime is None:
            return  # utimensat with both UTIME_OMIT changes nothing, not even ctime
        now = time.time_ns()
        if atime is not None:
            node.atime = now if atime == NOW else int(atime)
        if mtime is not None:
            node.mtime = now if mtime == NOW else int(mtime)
        node.ctime = now

    def _room(self) -> int:
        """How many more bytes files may take (the NOSPC policy)."""
        if self.max_bytes is None:
            return MAX_FILE_SIZE
        return max(0, self.max_bytes - self.used_bytes)

    def _resize(self, node: _FileNode, size: int) -> None:
        old = len(node.data)
        if size > old:
            if size - old > self._room():
                raise FsError(Errno.NOSPC, "no space left in the memory file system")
            try:
                node.data.extend(bytes(size - old))
            except MemoryError:
                raise FsError(Errno.NOSPC, "out of memory") from None
        else:
            del node.data[size:]
        self.used_bytes += size - old
        self._touch(node, time.time_ns())

    def _write(self, node: _FileNode, data: bytes, offset: int) -> int:
        if not data:
            return 0
        end = offset + len(data)
        if end > MAX_FILE_SIZE:
            raise FsError(Errno.FBIG, "file too large")
        old = len(node.data)
        if end > old:
            room = old + self._room()
            if end > room:
                if offset >= room:
                    raise FsError(Errno.NOSPC, "no space left in the memory file system")
                data = data[: room - offset]
                end = room
        try:
            if offset > old:
                node.data.extend(bytes(offset - old))
            node.data[offset:end] = data
        except MemoryError:
            del node.data[old:]
            raise FsError(Errno.NOSPC, "out of memory") from None
        self.used_bytes += len(node.data) - old
        self._touch(node, time.time_ns())
        return len(data)

    # -- the FileSystem interface ----------------------------------------------------

    async def stat(self, path: str) -> FileStat:
        return self._stat(self._lookup(path))

    async def open(self, path: str, mode: OpenMode) -> File:
        if mode.create and mode.directory:
            raise FsError(Errno.INVAL, "cannot create a directory with open")
        if mode.write or mode.create or mode.truncate:
            self._check_writable()
        parent, name = self._parent(path)
        node = parent.entries.get(name) if name is not None else parent
        if node is None:
            if not mode.create:
                raise FsError(Errno.NOENT, f"{path!r} does not exist")
            assert name is not None
            now = time.time_ns()
            node = _FileNode(self._new_ino(), now)
            self._attach(parent, name, node)
            self._touch(parent, now)
            return MemoryFile(self, node, mode)
        if mode.create and mode.exclusive:
            raise FsError(Errno.EXIST, f"{path!r} exists")
        is_dir = isinstance(node, _DirNode)
        if mode.create and is_dir:
            raise FsError(Errno.ISDIR, f"{path!r} is a directory")
        if mode.directory and not is_dir:
            raise FsError(Errno.NOTDIR, f"{path!r} is not a directory")
        if isinstance(node, _LinkNode):
            raise FsError(Errno.LOOP, f"{path!r} is a symbolic link")
        if is_dir and (mode.write or mode.truncate):
            raise FsError(Errno.ISDIR, f"{path!r} is a directory")
        if mode.truncate and isinstance(node, _FileNode):
            self._resize(node, 0)
        return MemoryFile(self, node, mode)

    async def readlink(self, path: str) -> str:
        node = self._lookup(path)
        if not isinstance(node, _LinkNode):
            raise FsError(Errno.INVAL, f"{path!r} is not a symbolic link")
        return node.target

    async def mkdir(self, path: str) -> None:
        self._check_writable()
        parent, name = self._parent(path)
        if name is None or name in parent.entries:
            raise FsError(Errno.EXIST, f"{path!r} exists")
        now = time.time_ns()
        self._attach(parent, name, _DirNode(self._new_ino(), now))
        self._touch(parent, now)

    async def rmdir(self, path: str) -> None:
        self._check_writable()
        parent, name = self._parent(path)
        if name is None:
            raise FsError(Errno.INVAL, "cannot remove the root directory")
        node = parent.entries.get(name)
        if node is None:
            raise FsError(Errno.NOENT, f"{path!r} does not exist")
        if not isinstance(node, _DirNode):
            raise FsError(Errno.NOTDIR, f"{path!r} is not a directory")
        if node.entries:
            raise FsError(Errno.NOTEMPTY, f"{path!r} is not empty")
        now = time.time_ns()
        self._detach(parent, name, now)
        self._touch(parent, now)

    async def unlink(self, path: str) -> None:
        self._check_writable()
        parent, name = self._parent(path)
        if name is None:
            raise FsError(Errno.ISDIR, "the root is a directory")
        node = parent.entries.get(name)
        if node is None:
            raise FsError(Errno.NOENT, f"{path!r} does not exist")
        if isinstance(node, _DirNode):
            raise FsError(Errno.ISDIR, f"{path!r} is a directory")
        now = time.time_ns()
        self._detach(parent, name, now)
        self._touch(parent, now)

    async def rename(self, old: str, new: str) -> None:
        # The checks in the order Linux's renameat makes them.
        self._check_writable()
        old_parent, old_name = self._parent(old)
        new_parent, new_name = self._parent(new)
        if old_name is None or new_name is None:
            raise FsError(Errno.BUSY, "cannot rename the root directory")
        node = old_parent.entries.get(old_name)
        if node is None:
            raise FsError(Errno.NOENT, f"{old!r} does not exist")
        old_parts, new_parts = old.split("/"), new.split("/")
        if len(new_parts) > len(old_parts) and new_parts[: len(old_parts)] == old_parts:
            raise FsError(Errno.INVAL, f"cannot move {old!r} into itself")
        if len(old_parts) > len(new_parts) and old_parts[: len(new_parts)] == new_parts:
            raise FsError(Errno.NOTEMPTY, f"{new!r} contains {old!r}")
        target = new_parent.entries.get(new_name)
        if target is node:
            return  # the same file (or hard links to it): nothing to do
        if target is not None:
            if isinstance(node, _DirNode) and not isinstance(target, _DirNode):
                raise FsError(Errno.NOTDIR, f"{new!r} is not a directory")
            if not isinstance(node, _DirNode) and isinstance(target, _DirNode):
                raise FsError(Errno.ISDIR, f"{new!r} is a directory")
            if isinstance(target, _DirNode) and target.entries:
                raise FsError(Errno.NOTEMPTY, f"{new!r} is not empty")
        now = time.time_ns()
        if target is not None:
            self._detach(new_parent, new_name, now)
        self._detach(old_parent, old_name, now, moving=True)
        self._attach(new_parent, new_name, node)
        self._touch(old_parent, now)
        self._touch(new_parent, now)

    async def link(self, old: str, new: str) -> None:
        self._check_writable()
        node = self._lookup(old)
        new_parent, new_name = self._parent(new)
        if new_name is None or new_name in new_parent.entries:
            raise FsError(Errno.EXIST, f"{new!r} exists")
        if isinstance(node, _DirNode):
            raise FsError(Errno.PERM, f"{old!r} is a directory")
        now = time.time_ns()
        self._attach(new_parent, new_name, node)
        node.ctime = now
        self._touch(new_parent, now)

    async def symlink(self, target: str, path: str) -> None:
        self._check_writable()
        if not target:
            raise FsError(Errno.NOENT, "empty symlink target")
        if "\0" in target:
            raise FsError(Errno.INVAL, "NUL in symlink target")
        parent, name = self._parent(path)
        if name is None or name in parent.entries:
            raise FsError(Errno.EXIST, f"{path!r} exists")
        _name_bytes(target)
        now = time.time_ns()
        self._attach(parent, name, _LinkNode(self._new_ino(), now, target))
        self._touch(parent, now)

    async def set_times(self, path: str, atime: TimeSpec, mtime: TimeSpec) -> None:
        self._check_writable()
        self._set_times(self._lookup(path), atime, mtime)


class MemoryFile(File):
    """An open file or directory of a :class:`MemoryFS`; stays usable after its
    last name is removed."""

    def __init__(self, fs: MemoryFS, node: _Node, mode: OpenMode) -> None:
        self._fs = fs
        self._node: _Node | None = node
        self.filetype = node.filetype
        self._readable = mode.read
        self._writable = mode.write
        if isinstance(node, _FileNode):
            node.opens += 1

    def _open_node(self) -> _Node:
        if self._node is None:
            raise FsError(Errno.BADF, "file is closed")
        return self._node

    def _file_node(self, *, write: bool) -> _FileNode:
        node = self._open_node()
        if write and not self._writable:
            raise FsError(Errno.BADF, "file not open for writing")
        if not isinstance(node, _FileNode):
            raise FsError(Errno.ISDIR if isinstance(node, _DirNode) else Errno.INVAL)
        return node

    def _read(self, size: int, offset: int) -> bytes:
        node = self._open_node()
        if isinstance(node, _DirNode):
            raise FsError(Errno.ISDIR, "is a directory")
        if not self._readable:
            raise FsError(Errno.BADF, "file not open for reading")
        node = self._file_node(write=False)
        _check_offset(offset)
        if size < 0:
            raise FsError(Errno.INVAL, f"invalid size {size}")
        data = bytes(node.data[offset : offset + size])
        if not self._fs.readonly:
            node.atime = time.time_ns()
        return data

    def _write(self, data: bytes, offset: int | None) -> int:
        node = self._file_node(write=True)
        if offset is None:
            offset = len(node.data)
        _check_offset(offset)
        return self._fs._write(node, data, offset)

    async def read(self, size: int, offset: int) -> bytes:
        return self._read(size, offset)

    async def write(self, data: bytes, offset: int | None) -> int:
        return self._write(bytes(data), offset)

    # Everything is at hand: served at once, but only on the event loop's thread
    # (the file system's state is not shared with other threads).

    def _read_now(
        self, buffers: list[memoryview], offset: int, *, off_loop: bool
    ) -> tuple[int, bool]:
        if off_loop:
            return 0, False
        data = self._read(sum(len(b) for b in buffers), offset)
        done = 0
        for buf in buffers:
            if done >= len(data):
                break
            chunk = data[done : done + len(buf)]
            buf[: len(chunk)] = chunk
            done += len(chunk)
        return done, True

    def _write_now(
        self, buffers: list[memoryview], offset: int | None, *, off_loop: bool
    ) -> tuple[int, bool]:
        if off_loop:
            return 0, False
        return self._write(b"".join(buffers), offset), True

    async def stat(self) -> FileStat:
        return self._fs._stat(self._open_node())

    async def set_size(self, size: int) -> None:
        node = self._file_node(write=True)
        if size < 0:
            raise FsError(Errno.INVAL, f"invalid size {size}")
        if size > MAX_FILE_SIZE:
            raise FsError(Errno.FBIG, "file too large")
        self._fs._resize(node, size)

    async def set_times(self, atime: TimeSpec, mtime: TimeSpec) -> None:
        node = self._open_node()
        self._fs._check_writable()
        self._fs._set_times(node, atime, mtime)

    async def sync(self) -> None:
        self._open_node()

    async def datasync(self) -> None:
        self._open_node()

    async def allocate(self, offset: int, length: int) -> None:
        node = self._file_node(write=True)
        if offset < 0 or length <= 0:
            raise FsError(Errno.INVAL, "invalid range")
        if offset + length > MAX_FILE_SIZE:
            raise FsError(Errno.FBIG, "file too large")
        if offset + length > len(node.data):
            self._fs._resize(node, offset + length)

    async def readdir(self) -> list[DirEntry]:
        node = self._open_node()
        if not isinstance(node, _DirNode):
            raise FsError(Errno.NOTDIR, "not a directory")
        if not self._fs.readonly:
            node.atime = time.time_ns()
        return [DirEntry(name, child.filetype, child.ino) for name, child in node.entries.items()]

    async def close(self) -> None:
        node, self._node = self._node, None
        if isinstance(node, _FileNode):
            node.opens -= 1
            self._fs._maybe_free(node)
