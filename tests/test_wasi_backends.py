"""The WASI file system backends: one behavioural suite for MemoryFS and
HostDir (threads and inline; under asyncio, and under trio for "-trio"), then
each one's own features, and the sandbox of HostDir (symlinks leading out,
non-clean paths, directories swapped for symlinks between resolution and
use)."""

from __future__ import annotations

import asyncio
import errno
import gc
import os
import socket
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.support.wasi_harness import NowaitMode, nowait_simulation
from wasync._wasi import _aio, _hostfs
from wasync._wasi._abi import Errno, Filetype
from wasync._wasi._fs import NOW, File, FileSystem, FsError, OpenMode, resolve_path
from wasync._wasi._hostfs import ERRNO_TO_WASI, HostDir, errno_from_oserror
from wasync._wasi._memfs import MemoryFS, Symlink, Tree, TreeEntry, clean_parts

# "host": HostDir as it comes (offload=True: cached lookups on the loop, writes
# behind); "host-workers": every call in a worker; "host-inline": offload=False.
BACKENDS = ["memory", "host", "host-workers", "host-inline", "memory-trio", "host-trio"]

R = OpenMode()
W = OpenMode(read=False, write=True)
RW = OpenMode(write=True)
CREATE = OpenMode(write=True, create=True)
DIR = OpenMode(directory=True)
SEC = 1_000_000_000
SLACK = 50_000_000  # coarse file system clocks (a jiffy) lag time.time_ns()

TREE: Tree = {
    "f": b"hello",
    "empty": b"",
    "d": {"a": b"A", "sub": {"deep": b"deep"}},
    "e": {},
    "lf": Symlink("f"),
    "ld": Symlink("d"),
    "dangling": Symlink("nothing"),
}


# The library run() runs under: trio for the "-trio" backends (set by `env`).
LIBRARY = "asyncio"


def run(coro: Coroutine[Any, Any, None]) -> None:
    if LIBRARY == "trio":
        trio.run(lambda: coro)
    else:
        asyncio.run(coro)


async def fails(code: Errno, aw: Awaitable[object]) -> FsError:
    with pytest.raises(FsError) as info:
        await aw
    assert info.value.errno == code, f"expected {code.name}, got {info.value.errno.name}"
    return info.value


def write_tree(root: Path, tree: Tree) -> None:
    for name, value in tree.items():
        p = root / name
        if isinstance(value, Symlink):
            os.symlink(value.target, p)
        elif isinstance(value, bytes | bytearray):
            p.write_bytes(value)
        else:
            p.mkdir()
            write_tree(p, value)


def read_tree(root: Path) -> dict[str, TreeEntry]:
    out: dict[str, TreeEntry] = {}
    for entry in os.scandir(root):
        p = Path(entry.path)
        if entry.is_symlink():
            out[entry.name] = Symlink(os.readlink(p))
        elif entry.is_dir():
            out[entry.name] = read_tree(p)
        else:
            out[entry.name] = p.read_bytes()
    return out


@dataclass
class Env:
    kind: str
    tmp: Path
    made: list[HostDir] = field(default_factory=list)

    @property
    def host(self) -> bool:
        return self.kind.startswith("host")

    def make(self, tree: Tree | None = None, *, readonly: bool = False) -> FileSystem:
        if not self.host:
            return MemoryFS(TREE if tree is None else tree, readonly=readonly)
        root = self.tmp / f"root{len(self.made)}"
        root.mkdir()
        write_tree(root, TREE if tree is None else tree)
        workers = self.kind == "host-workers"
        fs = HostDir(
            root, readonly=readonly, offload=self.kind != "host-inline", write_behind=not workers
        )
        if workers:
            fs._cached = None
        self.made.append(fs)
        return fs

    def dump(self, fs: FileSystem) -> dict[str, TreeEntry]:
        if isinstance(fs, MemoryFS):
            return fs.to_dict()
        assert isinstance(fs, HostDir)
        return read_tree(Path(fs.path))


@pytest.fixture(params=BACKENDS)
def env(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Env]:
    e = Env(request.param, tmp_path)
    if e.kind.endswith("-trio"):
        monkeypatch.setitem(globals(), "LIBRARY", "trio")
    yield e
    for fs in e.made:
        fs.close()


async def read_all(fs: FileSystem, path: str) -> bytes:
    f = await fs.open(path, R)
    try:
        return await f.read(1 << 20, 0)
    finally:
        await f.close()


async def write_file(fs: FileSystem, path: str, data: bytes) -> None:
    f = await fs.open(path, OpenMode(write=True, create=True, truncate=True))
    try:
        assert await f.write(data, 0) == len(data)
    finally:
        await f.close()


# -- paths ----------------------------------------------------------------------------------------


def test_clean_parts() -> None:
    assert clean_parts(".") == []
    assert clean_parts("a/b") == ["a", "b"]
    for bad, code in [
        ("", Errno.INVAL),
        ("a//b", Errno.INVAL),
        ("a/", Errno.INVAL),
        ("./a", Errno.INVAL),
        ("a/.", Errno.INVAL),
        ("a\0b", Errno.INVAL),
        ("..", Errno.PERM),
        ("a/../b", Errno.PERM),
        ("/etc", Errno.PERM),
        ("x" * 256, Errno.NAMETOOLONG),
        ("\ud800", Errno.ILSEQ),
    ]:
        with pytest.raises(FsError) as info:
            clean_parts(bad)
        assert info.value.errno == code, bad
    assert clean_parts("x" * 255) == ["x" * 255]


def test_non_clean_paths_refused(env: Env) -> None:
    async def main() -> None:
        fs = env.make()
        for path, code in [
            ("../f", Errno.PERM),
            ("d/../f", Errno.PERM),
            ("/f", Errno.PERM),
            ("./f", Errno.INVAL),
            ("d//a", Errno.INVAL),
            ("d/", Errno.INVAL),
            ("", Errno.INVAL),
            ("x" * 256, Errno.NAMETOOLONG),
        ]:
            await fails(code, fs.stat(path))
            await fails(code, fs.open(path, R))
            await fails(code, fs.readlink(path))
            await fails(code, fs.mkdir(path))
            await fails(code, fs.rmdir(path))
            await fails(code, fs.unlink(path))
            await fails(code, fs.rename(path, "n"))
            await fails(code, fs.rename("f", path))
            await fails(code, fs.link(path, "n"))
            await fails(code, fs.link("f", path))
            await fails(code, fs.symlink("t", path))
            await fails(code, fs.set_times(path, 0, 0))
        assert env.dump(fs) == TREE

    run(main())


# -- stat -----------------------------------------------------------------------------------------


def test_stat(env: Env) -> None:
    async def main() -> None:
        fs = env.make()
        f = await fs.stat("f")
        assert (f.filetype, f.size, f.nlink) == (Filetype.REGULAR_FILE, 5, 1)
        d = await fs.stat("d")
        assert d.filetype == Filetype.DIRECTORY
        assert d.nlink == 3  # its name, ".", the ".." of d/sub
        assert (await fs.stat("e")).nlink == 2
        lf = await fs.stat("lf")
        assert (lf.filetype, lf.size) == (Filetype.SYMBOLIC_LINK, 1)  # not followed
        assert (await fs.stat("dangling")).filetype == Filetype.SYMBOLIC_LINK
        root = await fs.stat(".")
        assert root.filetype == Filetype.DIRECTORY
        inos = {(await fs.stat(p)).ino for p in (".", "f", "empty", "d", "d/a", "lf", "ld")}
        assert len(inos) == 7
        assert 0 not in inos
        assert f.dev == d.dev == root.dev
        assert (await fs.stat("d/sub/deep")).size == 4
        await fails(Errno.NOENT, fs.stat("missing"))
        await fails(Errno.NOENT, fs.stat("missing/x"))
        await fails(Errno.NOTDIR, fs.stat("f/x"))
        await fails(Errno.NOTDIR, fs.stat("ld/a"))  # never through a symlink

    run(main())


# -- open -----------------------------------------------------------------------------------------


def test_open_flags(env: Env) -> None:
    async def main() -> None:
        fs = env.make()
        # existing file: create without exclusive opens it as it is
        f = await fs.open("f", CREATE)
        assert (await f.stat()).size == 5
        await f.close()
        f = await fs.open("new", CREATE)
        assert f.filetype == Filetype.REGULAR_FILE
        assert (await f.stat()).size == 0
        await f.close()
        assert (await fs.stat("new")).filetype == Filetype.REGULAR_FILE
        excl = OpenMode(write=True, create=True, exclusive=True)
        for path in ("f", "d", "lf", "dangling", "."):
            await fails(Errno.EXIST, fs.open(path, excl))
        f = await fs.open("new2", excl)
        await f.close()
        await fails(Errno.NOENT, fs.open("missing", R))
        await fails(Errno.NOENT, fs.open("missing/x", CREATE))
        await fails(Errno.NOTDIR, fs.open("f/x", CREATE))
        await fails(Errno.NOTDIR, fs.open("ld/a", R))
        await fails(Errno.NOTDIR, fs.open("f", DIR))
        await fails(Errno.NOTDIR, fs.open("ld", DIR))  # a symlink, even to a directory
        await fails(Errno.ISDIR, fs.open("d", W))
        await fails(Errno.ISDIR, fs.open("d", RW))
        await fails(Errno.ISDIR, fs.open("d", OpenMode(truncate=True)))
        await fails(Errno.ISDIR, fs.open("d", OpenMode(create=True)))
        await fails(Errno.ISDIR, fs.open(".", OpenMode(create=True)))
        await fails(Errno.INVAL, fs.open("x", OpenMode(create=True, directory=True)))
        # symlinks are resolved before open: open refuses them
        await fails(Errno.LOOP, fs.open("lf", R))
        await fails(Errno.LOOP, fs.open("ld", R))
        await fails(Errno.LOOP, fs.open("lf", CREATE))
        await fails(Errno.LOOP, fs.open("dangling", CREATE))
        assert "nothing" not in env.dump(fs)
        # directories
        d = await fs.open("d", DIR)
        assert d.filetype == Filetype.DIRECTORY
        assert (await d.stat()).filetype == Filetype.DIRECTORY
        await d.close()
        d = await fs.open("d", R)  # without directory=True too
        assert d.filetype == Filetype.DIRECTORY
        await d.close()
        root = await fs.open(".", DIR)
        assert {e.name for e in await root.readdir()} == {*TREE, "new", "new2"}
        await root.close()
        # truncate, even without write (as Linux does)
        f = await fs.open("f", OpenMode(truncate=True))
        assert (await f.stat()).size == 0
        await f.close()
        assert env.dump(fs)["f"] == b""

    run(main())


def test_read_write(env: Env) -> None:
    async def main() -> None:
        fs = env.make()
        f = await fs.open("f", RW)
        assert await f.read(100, 0) == b"hello"
        assert await f.read(2, 1) == b"el"
        assert await f.read(100, 3) == b"lo"
        assert await f.read(10, 5) == b""
        assert await f.read(10, 1000) == b""
        assert await f.read(0, 0) == b""
        assert await f.write(b"J", 0) == 1
        assert await f.write(b"!!", 8) == 2  # past the end: a hole of zeros
        assert await f.read(100, 0) == b"Jello\0\0\0!!"
        assert await f.write(b"?", None) == 1  # None: at the end
        assert await f.write(b"", 3) == 0
        assert (await f.stat()).size == 11
        await fails(Errno.INVAL, f.read(1, -1))
        await fails(Errno.INVAL, f.write(b"x", -1))
        await fails(Errno.INVAL, f.read(1, 1 << 64))
        await f.close()
        assert env.dump(fs)["f"] == b"Jello\0\0\0!!?"
        await write_file(fs, "d/new", b"data")
        assert await read_all(fs, "d/new") == b"data"

    run(main())


def test_append(env: Env) -> None:
    async def main() -> None:
        fs = env.make()
        f = await fs.open("f", OpenMode(write=True, append=True))
        assert await f.write(b" world", None) == 6
        assert await f.write(b"!", None) == 1
        await f.close()
        assert await read_all(fs, "f") == b"hello world!"
        # POSIX pwrite writes at its offset even on an append descriptor
        f = await fs.open("f", OpenMode(write=True, append=True))
        assert await f.write(b"J", 0) == 1
        await f.close()
        if env.host and not _hostfs._noappend_works:
            pytest.skip("this kernel has no RWF_NOAPPEND")
        assert await read_all(fs, "f") == b"Jello world!"

    run(main())


def test_file_modes_enforced(env: Env) -> None:
    async def main() -> None:
        fs = env.make()
        ro = await fs.open("f", R)
        await fails(Errno.BADF, ro.write(b"x", 0))
        await fails(Errno.BADF, ro.write(b"x", None))
        await fails(Errno.BADF, ro.set_size(0))
        await fails(Errno.BADF, ro.allocate(0, 10))
        await fails(Errno.NOTDIR, ro.readdir())
        await ro.close()
        wo = await fs.open("f", W)
        await fails(Errno.BADF, wo.read(1, 0))
        await wo.close()
        d = await fs.open("d", DIR)
        await fails(Errno.ISDIR, d.read(1, 0))
        await fails(Errno.BADF, d.write(b"x", 0))
        await fails(Errno.BADF, d.set_size(0))
        await d.close()
        for f in (ro, d):
            await fails(Errno.BADF, f.stat())
            await fails(Errno.BADF, f.read(1, 0))
            await fails(Errno.BADF, f.sync())
            await fails(Errno.BADF, f.set_times(0, 0))
            await f.close()  # closing twice is harmless
        await fails(Errno.BADF, d.readdir())
        assert env.dump(fs) == TREE

    run(main())


def test_set_size_allocate_sync(env: Env) -> None:
    async def main() -> None:
        fs = env.make()
        f = await fs.open("f", RW)
        await f.set_size(8)
        assert await f.read(100, 0) == b"hello\0\0\0"
        await f.set_size(2)
        assert await f.read(100, 0) == b"he"
        await fails(Errno.INVAL, f.set_size(-1))
        await f.allocate(0, 1)  # within the file: no change
        assert (await f.stat()).size == 2
        await f.allocate(4, 6)
        assert (await f.stat()).size == 10
        assert await f.read(100, 0) == b"he" + bytes(8)
        await fails(Errno.INVAL, f.allocate(0, 0))
        await fails(Errno.INVAL, f.allocate(-1, 5))
        await f.sync()
        await f.datasync()
        await f.close()
        d = await fs.open("d", DIR)
        await d.sync()
        await d.datasync()
        await d.close()
        assert env.dump(fs)["f"] == b"he" + bytes(8)

    run(main())


def test_open_file_survives_unlink_and_rename(env: Env) -> None:
    async def main() -> None:
        fs = env.make()
        f = await fs.open("f", RW)
        await fs.unlink("f")
        await fails(Errno.NOENT, fs.stat("f"))
        assert await f.write(b"more", 5) == 4
        assert await f.read(100, 0) == b"hellomore"
        st = await f.stat()
        assert (st.nlink, st.size) == (0, 9)
        await f.close()
        g = await fs.open("d/a", RW)
        await fs.rename("d/a", "e/moved")
        await g.write(b"B", 1)
        await g.close()
        assert await read_all(fs, "e/moved") == b"AB"
        # an open directory removed: reads as empty
        d = await fs.open("e", DIR)
        await fs.unlink("e/moved")
        await fs.rmdir("e")
        assert await d.readdir() == []
        assert (await d.stat()).nlink == 0
        await d.close()

    run(main())


# -- readdir --------------------------------------------------------------------------------------


def test_readdir(env: Env) -> None:
    async def main() -> None:
        fs = env.make()
        root = await fs.open(".", DIR)
        entries = await root.readdir()
        assert entries == await root.readdir()  # stable
        by_name = {e.name: e for e in entries}
        assert set(by_name) == set(TREE)
        assert len(entries) == len(TREE)
        assert by_name["f"].filetype == Filetype.REGULAR_FILE
        assert by_name["d"].filetype == Filetype.DIRECTORY
        for name in ("lf", "ld", "dangling"):
            assert by_name[name].filetype == Filetype.SYMBOLIC_LINK
        for e in entries:
            assert e.ino == (await fs.stat(e.name)).ino
        names = [e.name for e in entries]
        assert names == (sorted(TREE) if env.host else list(TREE))
        await root.close()
        edir = await fs.open("e", DIR)
        assert await edir.readdir() == []
        await write_file(fs, "e/z", b"")
        await write_file(fs, "e/a", b"")
        await fs.mkdir("e/m")
        got = await edir.readdir()
        expected = ["a", "m", "z"] if env.host else ["z", "a", "m"]
        assert [x.name for x in got] == expected
        assert [x.filetype for x in got if x.name == "m"] == [Filetype.DIRECTORY]
        await edir.close()

    run(main())


# -- directories ----------------------------------------------------------------------------------


def test_mkdir(env: Env) -> None:
    async def main() -> None:
        fs = env.make()
        await fs.mkdir("x")
        await fs.mkdir("x/y")
        assert (await fs.stat("x/y")).filetype == Filetype.DIRECTORY
        assert (await fs.stat("x")).nlink == 3
        root_links = (await fs.stat(".")).nlink
        await fs.mkdir("z")
        assert (await fs.stat(".")).nlink == root_links + 1
        for path in ("x", "f", "lf", "dangling", "."):
            await fails(Errno.EXIST, fs.mkdir(path))
        await fails(Errno.NOENT, fs.mkdir("missing/x"))
        await fails(Errno.NOTDIR, fs.mkdir("f/x"))
        await fails(Errno.NOTDIR, fs.mkdir("ld/x"))
        assert env.dump(fs)["x"] == {"y": {}}

    run(main())


def test_rmdir(env: Env) -> None:
    async def main() -> None:
        fs = env.make()
        await fails(Errno.NOTEMPTY, fs.rmdir("d"))
        await fails(Errno.NOTDIR, fs.rmdir("f"))
        await fails(Errno.NOTDIR, fs.rmdir("ld"))
        await fails(Errno.NOENT, fs.rmdir("missing"))
        await fails(Errno.INVAL, fs.rmdir("."))
        links = (await fs.stat(".")).nlink
        await fs.rmdir("e")
        await fails(Errno.NOENT, fs.stat("e"))
        assert (await fs.stat(".")).nlink == links - 1
        await fs.unlink("d/sub/deep")
        await fs.rmdir("d/sub")
        assert env.dump(fs)["d"] == {"a": b"A"}
        assert "ld" in env.dump(fs)

    run(main())


def test_unlink(env: Env) -> None:
    async def main() -> None:
        fs = env.make()
        await fails(Errno.ISDIR, fs.unlink("d"))
        await fails(Errno.ISDIR, fs.unlink("."))
        await fails(Errno.NOENT, fs.unlink("missing"))
        await fails(Errno.NOTDIR, fs.unlink("f/x"))
        await fs.unlink("lf")  # the link, not its target
        await fs.unlink("ld")
        await fs.unlink("dangling")
        tree = env.dump(fs)
        assert tree["f"] == b"hello"
        assert tree["d"] == TREE["d"]
        assert {"lf", "ld", "dangling"}.isdisjoint(tree)
        await fs.link("f", "f2")
        await fs.unlink("f")
        assert (await fs.stat("f2")).nlink == 1
        assert await read_all(fs, "f2") == b"hello"

    run(main())


# -- rename ---------------------------------------------------------------------------------------


def test_rename(env: Env) -> None:
    async def main() -> None:
        fs = env.make()
        ino = (await fs.stat("f")).ino
        await fs.rename("f", "g")
        assert (await fs.stat("g")).ino == ino
        await fails(Errno.NOENT, fs.stat("f"))
        # replace a file
        await fs.rename("g", "empty")
        assert await read_all(fs, "empty") == b"hello"
        assert (await fs.stat("empty")).ino == ino
        await fails(Errno.NOENT, fs.stat("g"))
        await fails(Errno.NOENT, fs.rename("g", "h"))
        await fails(Errno.NOENT, fs.rename("empty", "missing/x"))
        await fails(Errno.NOTDIR, fs.rename("empty", "empty/x"))
        # file <-> directory mismatches
        await fails(Errno.ISDIR, fs.rename("empty", "e"))
        await fails(Errno.NOTDIR, fs.rename("e", "empty"))
        await fails(Errno.NOTDIR, fs.rename("e", "lf"))  # a symlink is not a directory
        # directories
        await fails(Errno.NOTEMPTY, fs.rename("e", "d"))
        await fails(Errno.INVAL, fs.rename("d", "d/sub/x"))
        await fails(Errno.INVAL, fs.rename("d", "d/x"))
        await fails(Errno.NOTEMPTY, fs.rename("d/a", "d"))
        await fails(Errno.NOTEMPTY, fs.rename("d/sub/deep", "d"))
        await fails(Errno.BUSY, fs.rename(".", "x"))
        await fails(Errno.BUSY, fs.rename("d", "."))
        await fs.mkdir("x")
        dino = (await fs.stat("d")).ino
        await fs.rename("d", "x")  # over an empty directory
        assert (await fs.stat("x")).ino == dino
        assert (await fs.stat("x/sub/deep")).size == 4
        # same file: nothing happens (also for two hard links)
        await fs.rename("x", "x")
        await fs.link("empty", "hard")
        await fs.rename("empty", "hard")
        assert (await fs.stat("empty")).ino == (await fs.stat("hard")).ino == ino
        assert (await fs.stat("hard")).nlink == 2
        # symlinks move as themselves
        await fs.rename("lf", "x/lf2")
        assert await fs.readlink("x/lf2") == "f"
        # moving a directory between parents fixes the parents' link counts
        before = (await fs.stat(".")).nlink
        await fs.rename("x/sub", "sub2")
        assert (await fs.stat(".")).nlink == before + 1
        assert (await fs.stat("x")).nlink == 2
        # into a new name in another directory
        await fs.rename("hard", "e/h")
        tree = env.dump(fs)
        assert tree == {
            "empty": b"hello",
            "e": {"h": b"hello"},
            "x": {"a": b"A", "lf2": Symlink("f")},
            "sub2": {"deep": b"deep"},
            "ld": Symlink("d"),
            "dangling": Symlink("nothing"),
        }

    run(main())


# -- links ----------------------------------------------------------------------------------------


def test_link(env: Env) -> None:
    async def main() -> None:
        fs = env.make()
        await fs.link("f", "d/f2")
        a, b = await fs.stat("f"), await fs.stat("d/f2")
        assert a.ino == b.ino
        assert a.nlink == b.nlink == 2
        f = await fs.open("d/f2", RW)
        await f.write(b"J", 0)
        await f.close()
        assert await read_all(fs, "f") == b"Jello"
        await fails(Errno.PERM, fs.link("d", "d2"))
        await fails(Errno.PERM, fs.link(".", "d2"))
        await fails(Errno.EXIST, fs.link("f", "empty"))
        await fails(Errno.EXIST, fs.link("f", "d"))
        await fails(Errno.EXIST, fs.link("f", "."))
        await fails(Errno.EXIST, fs.link("d", "e"))  # EXIST is checked first
        await fails(Errno.NOENT, fs.link("missing", "x"))
        await fails(Errno.NOENT, fs.link("f", "missing/x"))
        # a link to a symlink is a symlink (not followed)
        await fs.link("lf", "lf2")
        assert (await fs.stat("lf2")).filetype == Filetype.SYMBOLIC_LINK
        assert await fs.readlink("lf2") == "f"
        assert (await fs.stat("f")).nlink == 2

    run(main())


def test_symlink_readlink(env: Env) -> None:
    async def main() -> None:
        fs = env.make()
        await fs.symlink("d/a", "s")
        assert await fs.readlink("s") == "d/a"
        st = await fs.stat("s")
        assert (st.filetype, st.size) == (Filetype.SYMBOLIC_LINK, 3)
        await fs.symlink("../../anywhere", "d/s")  # the text is not checked
        assert await fs.readlink("d/s") == "../../anywhere"
        for path in ("s", "f", "d", "."):
            await fails(Errno.EXIST, fs.symlink("x", path))
        await fails(Errno.NOENT, fs.symlink("", "t"))
        await fails(Errno.INVAL, fs.symlink("a\0b", "t"))
        await fails(Errno.ILSEQ, fs.symlink("\ud800", "t"))
        await fails(Errno.NOENT, fs.stat("t"))
        await fails(Errno.NOENT, fs.symlink("x", "missing/t"))
        await fails(Errno.INVAL, fs.readlink("f"))
        await fails(Errno.INVAL, fs.readlink("d"))
        await fails(Errno.INVAL, fs.readlink("."))
        await fails(Errno.NOENT, fs.readlink("missing"))
        assert await fs.readlink("dangling") == "nothing"

    run(main())


# -- times ----------------------------------------------------------------------------------------


async def settle() -> None:
    await _aio.current().sleep(0.03)  # beyond the file system clock's granularity


def test_set_times(env: Env) -> None:
    async def main() -> None:
        fs = env.make()
        await fs.set_times("f", 1 * SEC + 5, 2 * SEC + 7)
        st = await fs.stat("f")
        assert (st.atime_ns, st.mtime_ns) == (1 * SEC + 5, 2 * SEC + 7)
        ctime = st.ctime_ns
        await settle()
        await fs.set_times("f", None, 3 * SEC)  # None keeps
        st = await fs.stat("f")
        assert (st.atime_ns, st.mtime_ns) == (1 * SEC + 5, 3 * SEC)
        assert st.ctime_ns > ctime
        await fs.set_times("f", 4 * SEC, None)
        st = await fs.stat("f")
        assert (st.atime_ns, st.mtime_ns) == (4 * SEC, 3 * SEC)
        before = time.time_ns()
        await fs.set_times("f", None, NOW)
        after = time.time_ns()
        st = await fs.stat("f")
        assert st.atime_ns == 4 * SEC
        assert before - SLACK <= st.mtime_ns <= after + SLACK
        await fs.set_times("f", NOW, 5 * SEC)
        st = await fs.stat("f")
        assert before - SLACK <= st.atime_ns <= time.time_ns() + SLACK
        assert st.mtime_ns == 5 * SEC
        # both None: nothing changes
        ctime = st.ctime_ns
        await settle()
        await fs.set_times("f", None, None)
        st2 = await fs.stat("f")
        assert (st2.atime_ns, st2.mtime_ns, st2.ctime_ns) == (st.atime_ns, 5 * SEC, ctime)
        # on a symlink itself, not its target
        await fs.set_times("lf", 6 * SEC, 7 * SEC)
        assert (await fs.stat("lf")).mtime_ns == 7 * SEC
        assert (await fs.stat("f")).mtime_ns == 5 * SEC
        await fs.set_times("d", 8 * SEC, 9 * SEC)
        assert (await fs.stat("d")).mtime_ns == 9 * SEC
        await fs.set_times(".", 8 * SEC, 9 * SEC)
        assert (await fs.stat(".")).atime_ns == 8 * SEC
        await fails(Errno.NOENT, fs.set_times("missing", 0, 0))
        await fails(Errno.INVAL, fs.set_times("f", -1, 0))
        await fails(Errno.INVAL, fs.set_times("f", 0, 1 << 64))
        # through an open file, even a read-only one
        f = await fs.open("f", R)
        await f.set_times(10 * SEC, NOW)
        st = await f.stat()
        assert st.atime_ns == 10 * SEC
        assert st.mtime_ns >= before - SLACK
        await f.set_times(None, 11 * SEC)
        st = await f.stat()
        assert (st.atime_ns, st.mtime_ns) == (10 * SEC, 11 * SEC)
        await fails(Errno.INVAL, f.set_times(-5, None))
        await f.close()

    run(main())


def test_times_follow_changes(env: Env) -> None:
    """Writes, truncation, creation, removal, renames and links update mtime and
    ctime as POSIX says."""

    async def main() -> None:
        fs = env.make()
        old = 1 * SEC
        for path in (".", "f", "d", "d/a", "e", "empty"):
            await fs.set_times(path, old, old)
        await settle()

        async def changed(path: str, *, mtime: bool = True) -> None:
            st = await fs.stat(path)
            now = time.time_ns()
            if mtime:
                assert now - 5 * SEC < st.mtime_ns <= now + SLACK, path
            else:
                assert st.mtime_ns == old, path
            assert now - 5 * SEC < st.ctime_ns <= now + SLACK, path

        f = await fs.open("f", RW)
        await f.read(1, 0)
        assert (await f.stat()).mtime_ns == old  # reads do not change mtime
        await f.write(b"x", 0)
        await changed("f")
        await f.close()
        assert (await fs.stat(".")).mtime_ns == old  # writing a file: not its directory
        g = await fs.open("empty", RW)
        await g.set_size(3)
        await g.close()
        await changed("empty")
        await write_file(fs, "d/new", b"")  # creating: the directory
        await changed("d")
        await fs.set_times("d", old, old)
        await fs.unlink("d/new")
        await changed("d")
        await fs.set_times("d", old, old)
        await fs.mkdir("e/sub")
        await changed("e")
        for path in ("f", "d", "e"):
            await fs.set_times(path, old, old)
        await fs.rename("d/a", "e/a")  # both directories and the file's ctime
        await changed("d")
        await changed("e")
        await changed("e/a", mtime=False)
        await fs.set_times("f", old, old)
        await fs.set_times("e", old, old)
        await fs.link("f", "e/f")  # a link changes the file's ctime, not mtime
        await changed("f", mtime=False)
        await changed("e")
        await fs.set_times("e", old, old)
        await fs.symlink("x", "e/s")
        await changed("e")

    run(main())


# -- read-only ------------------------------------------------------------------------------------


def test_readonly(env: Env) -> None:
    async def main() -> None:
        fs = env.make(readonly=True)
        assert fs.readonly
        for mode in (W, RW, CREATE, OpenMode(truncate=True), OpenMode(write=True, append=True)):
            await fails(Errno.ROFS, fs.open("f", mode))
        await fails(Errno.ROFS, fs.open("new", CREATE))
        await fails(Errno.ROFS, fs.mkdir("x"))
        await fails(Errno.ROFS, fs.rmdir("e"))
        await fails(Errno.ROFS, fs.unlink("f"))
        await fails(Errno.ROFS, fs.rename("f", "g"))
        await fails(Errno.ROFS, fs.link("f", "g"))
        await fails(Errno.ROFS, fs.symlink("f", "g"))
        await fails(Errno.ROFS, fs.set_times("f", 0, 0))
        f = await fs.open("f", R)
        assert await f.read(10, 0) == b"hello"
        await fails(Errno.ROFS, f.set_times(0, 0))
        await fails(Errno.BADF, f.write(b"x", 0))
        await f.close()
        d = await fs.open("d", DIR)
        assert {e.name for e in await d.readdir()} == {"a", "sub"}
        await d.close()
        assert await fs.readlink("lf") == "f"
        assert (await fs.stat("d/a")).size == 1
        assert env.dump(fs) == TREE

    run(main())


# -- resolve --------------------------------------------------------------------------------------

RESOLVE_TREE: Tree = {
    "f": b"file",
    "d": {"a": b"A", "sub": {"x": b""}, "up": Symlink(".."), "abs": Symlink("/etc")},
    "ld": Symlink("d"),
    "ldslash": Symlink("d/"),
    "lf": Symlink("f"),
    "lfslash": Symlink("f/"),
    "chain": Symlink("ld/sub"),
    "loop1": Symlink("loop2"),
    "loop2": Symlink("loop1"),
    "out": Symlink("../x"),
    "abs": Symlink("/etc/passwd"),
    "dangling": Symlink("nothing/here"),
    "dl": Symlink("newfile"),
    "empty": {},
}

RESOLVE_CASES: list[tuple[str, str, bool]] = [
    (base, path, follow)
    for base in (".", "d", "d/sub")
    for path in (
        "f", "d", "d/a", "d/", "ld", "ld/", "ld/a", "ldslash", "ldslash/a", "lf", "lf/",
        "lfslash", "chain", "chain/x", "chain/../a", "loop1", "loop1/x", "out", "abs",
        "dangling", "dangling/x", "missing", "missing/x", "f/x", "d/up", "d/up/f",
        "d/abs", "d/abs/x", "..", "../f", "a/../..", "./a/./", "a", "up", "up/f", "sub/..",
        "x", "/etc", "", "a\0b", "d/sub/../../f", "empty/..", ".", "./", "x" * 256,
        "ld/sub/x/", "d//a",
    )
    for follow in (False, True)
]  # fmt: skip


def test_resolve_like_resolve_path(env: Env) -> None:
    """Backends overriding resolve (HostDir) agree with the generic walk."""

    async def outcome(aw: Awaitable[str]) -> str | Errno:
        try:
            return await aw
        except FsError as e:
            return e.errno

    async def main() -> None:
        fs = env.make(RESOLVE_TREE)
        seen: set[str | Errno] = set()
        for base, path, follow in RESOLVE_CASES:
            mine = await outcome(fs.resolve(base, path, follow=follow))
            generic = await outcome(resolve_path(fs, base, path, follow=follow))
            assert mine == generic, (base, path, follow)
            seen.add(mine)
        # the cases cover every outcome
        assert {Errno.PERM, Errno.NOENT, Errno.NOTDIR, Errno.LOOP, Errno.ILSEQ} <= seen
        assert Errno.NAMETOOLONG in seen

    run(main())


def test_resolve(env: Env) -> None:
    async def main() -> None:
        fs = env.make(RESOLVE_TREE)

        async def r(path: str, follow: bool = True, base: str = ".") -> str:
            return await fs.resolve(base, path, follow=follow)

        assert await r("ld/a") == "d/a"
        assert await r("chain/x") == "d/sub/x"
        assert await r("chain/../a") == "d/a"
        assert await r("lf", follow=False) == "lf"
        assert await r("lf") == "f"
        assert await r("missing") == "missing"
        assert await r("dangling", follow=False) == "dangling"
        await fails(Errno.NOENT, r("dangling"))  # nothing/here: "nothing" is missing
        assert await r("d/up/d/a") == "d/a"
        assert await r("dl") == "newfile"
        assert await r("sub/..", base="d") == "d"
        assert await r(".", base="d/sub") == "d/sub"
        await fails(Errno.PERM, r("..", base="d"))
        await fails(Errno.PERM, r("up", base="d"))  # d/up -> .. leaves base "d"
        await fails(Errno.PERM, r("out"))
        await fails(Errno.PERM, r("abs"))
        await fails(Errno.PERM, r("d/abs/x"))
        await fails(Errno.PERM, r("/etc"))
        await fails(Errno.LOOP, r("loop1"))
        await fails(Errno.NOTDIR, r("lfslash"))
        await fails(Errno.NOTDIR, r("f/x"))
        await fails(Errno.NOTDIR, r("f/"))
        await fails(Errno.NOENT, r("missing/x"))
        await fails(Errno.NOENT, r(""))

    run(main())


# -- MemoryFS -------------------------------------------------------------------------------------


def test_memory_seed_and_export() -> None:
    tree: Tree = {
        "dir": {"a.txt": b"hi", "sub": {}},
        "link": MemoryFS.Symlink("dir/a.txt"),
        "bin": bytearray(b"\0\1"),
    }
    fs = MemoryFS(tree)
    assert fs.to_dict() == {
        "dir": {"a.txt": b"hi", "sub": {}},
        "link": Symlink("dir/a.txt"),
        "bin": b"\0\1",
    }
    assert fs.to_dict("dir") == {"a.txt": b"hi", "sub": {}}
    assert list(fs.to_dict()) == ["dir", "link", "bin"]
    assert MemoryFS().to_dict() == {}
    with pytest.raises(FsError):
        fs.to_dict("link")
    with pytest.raises(TypeError):
        MemoryFS({"x": "text"})  # type: ignore[dict-item]
    for bad in ("a/b", "..", ".", "", "x\0"):
        with pytest.raises(ValueError, match="invalid file name"):
            MemoryFS({bad: b""})
    with pytest.raises(ValueError, match="symlink"):
        MemoryFS({"l": Symlink("")})

    async def main() -> None:
        other = MemoryFS(tree)
        await other.mkdir("dir/new")  # instances are independent of each other and the seed
        assert "new" in other.to_dict("dir")
        assert "new" not in fs.to_dict("dir")
        assert tree["dir"] == {"a.txt": b"hi", "sub": {}}
        assert await read_all(fs, "dir/a.txt") == b"hi"

    run(main())


def test_memory_devices_and_inodes() -> None:
    a, b = MemoryFS({"f": b""}), MemoryFS({"f": b""})

    async def main() -> None:
        sa, sb = await a.stat("f"), await b.stat("f")
        assert sa.dev != sb.dev
        assert (await MemoryFS(dev=7).stat(".")).dev == 7
        await a.mkdir("x")
        await write_file(a, "y", b"")
        inos = [(await a.stat(p)).ino for p in (".", "f", "x", "y")]
        assert len(set(inos)) == 4

    run(main())


def test_memory_max_bytes() -> None:
    async def main() -> None:
        fs = MemoryFS({"f": b"12345"}, max_bytes=10)
        assert fs.used_bytes == 5
        f = await fs.open("f", RW)
        assert await f.write(b"abcdefgh", 3) == 7  # short: up to the limit
        assert fs.used_bytes == 10
        await fails(Errno.NOSPC, f.write(b"x", None))
        assert await f.write(b"Z", 0) == 1  # overwriting needs no space
        await fails(Errno.NOSPC, f.set_size(11))
        await fails(Errno.NOSPC, f.allocate(0, 11))
        await fails(Errno.NOSPC, f.write(b"x", 20))
        await fs.unlink("f")
        assert fs.used_bytes == 10  # still open
        await f.close()
        assert fs.used_bytes == 0
        g = await fs.open("g", CREATE)
        assert await g.write(bytes(10), 0) == 10
        await g.set_size(4)
        assert fs.used_bytes == 4
        await g.close()
        await fs.link("g", "h")
        await fs.unlink("g")
        assert fs.used_bytes == 4
        await write_file(fs, "k", b"x")  # replaced by rename: freed
        await fs.rename("k", "h")
        assert fs.used_bytes == 1
        with pytest.raises(ValueError, match="max_bytes"):
            MemoryFS({"f": b"123"}, max_bytes=2)

    run(main())


def test_memory_huge_sizes() -> None:
    async def main() -> None:
        fs = MemoryFS({"f": b""})
        f = await fs.open("f", RW)
        await fails(Errno.FBIG, f.write(b"xx", (1 << 63) - 1))
        await fails(Errno.FBIG, f.set_size(1 << 63))
        await f.close()

    run(main())


# -- HostDir: errno mapping -----------------------------------------------------------------------


def test_errno_table() -> None:
    for code in Errno:
        if code in (Errno.SUCCESS, Errno.NOTCAPABLE):
            continue
        name = "E2BIG" if code == Errno.TOOBIG else "E" + code.name
        assert ERRNO_TO_WASI[getattr(errno, name)] == code, name
        assert errno_from_oserror(OSError(getattr(errno, name), "x")) == code
    assert set(ERRNO_TO_WASI.values()) == set(Errno) - {Errno.SUCCESS, Errno.NOTCAPABLE}
    assert errno_from_oserror(OSError(errno.EWOULDBLOCK, "x")) == Errno.AGAIN
    assert errno_from_oserror(OSError(errno.EOPNOTSUPP, "x")) == Errno.NOTSUP
    assert errno_from_oserror(FileNotFoundError(errno.ENOENT, "x")) == Errno.NOENT
    assert errno_from_oserror(OSError("no errno")) == Errno.IO
    assert errno_from_oserror(OSError(100_000, "unknown")) == Errno.IO


# -- HostDir: the sandbox -------------------------------------------------------------------------


@pytest.fixture(params=[True, False], ids=["offload", "inline"])
def sandbox(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[HostDir, Path, Path]]:
    """A host dir with ways out, and the outside they lead to."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    (outside / "dir").mkdir()
    root = tmp_path / "root"
    root.mkdir()
    write_tree(
        root,
        {
            "etc": Symlink("/etc"),
            "up": Symlink("../outside"),
            "upfile": Symlink("../outside/secret"),
            "d": {"f": b"inside", "e": {}},
            "f": b"file",
        },
    )
    fs = HostDir(root, offload=request.param)
    yield fs, root, outside
    fs.close()


def snapshot(path: Path) -> dict[str, tuple[int, int, bytes | None]]:
    """Names, mtimes, link counts and contents under `path`."""
    out: dict[str, tuple[int, int, bytes | None]] = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            st = p.lstat()
            data = p.read_bytes() if p.is_file() and not p.is_symlink() else None
            out[str(p.relative_to(path))] = (st.st_mtime_ns, st.st_nlink, data)
    st = path.lstat()
    out["."] = (st.st_mtime_ns, st.st_nlink, None)
    return out


async def try_everything(fs: FileSystem, path: str) -> list[Errno]:
    """Every operation on `path` (as a file, a directory and a parent): the
    errors (each must fail)."""
    errs = []
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: fs.open(path, OpenMode(write=True, create=True, truncate=True)),
        lambda: fs.open(path, R),
        lambda: fs.open(f"{path}/secret", OpenMode(write=True, truncate=True)),
        lambda: fs.open(f"{path}/new", CREATE),
        lambda: fs.open(f"{path}/dir", DIR),
        lambda: fs.stat(f"{path}/secret"),
        lambda: fs.readlink(f"{path}/secret"),
        lambda: fs.mkdir(f"{path}/newdir"),
        lambda: fs.rmdir(f"{path}/dir"),
        lambda: fs.unlink(f"{path}/secret"),
        lambda: fs.rename(f"{path}/secret", "stolen"),
        lambda: fs.rename("f", f"{path}/planted"),
        lambda: fs.rename("f", f"{path}/secret"),
        lambda: fs.link(f"{path}/secret", "hard"),
        lambda: fs.link("f", f"{path}/planted"),
        lambda: fs.symlink("x", f"{path}/planted"),
        lambda: fs.set_times(f"{path}/secret", 0, 0),
    ]
    for call in calls:
        with pytest.raises(FsError) as info:
            await call()
        errs.append(info.value.errno)
    return errs


def test_symlinks_out_are_not_followed(sandbox: tuple[HostDir, Path, Path]) -> None:
    fs, root, outside = sandbox
    before = snapshot(outside)

    async def main() -> None:
        for name in ("up", "etc"):
            await fails(Errno.PERM, fs.resolve(".", f"{name}/secret", follow=True))
            await fails(Errno.PERM, fs.resolve(".", name, follow=True))
            assert await fs.resolve(".", name, follow=False) == name
            errs = await try_everything(fs, name)
            assert set(errs) <= {Errno.NOTDIR, Errno.LOOP}, errs
            await fails(Errno.LOOP, fs.open(name, R))
            await fails(Errno.NOTDIR, fs.open(name, DIR))
        await fails(Errno.PERM, fs.resolve(".", "upfile", follow=True))
        await fails(Errno.LOOP, fs.open("upfile", RW))
        await fails(Errno.LOOP, fs.open("upfile", OpenMode(write=True, create=True, truncate=True)))
        # operations on the links themselves touch only the links
        await fs.set_times("upfile", 0, 0)
        await fs.link("upfile", "hard")
        assert await fs.readlink("hard") == "../outside/secret"
        await fs.rename("upfile", "d/moved")
        await fs.unlink("d/moved")
        await fails(Errno.NOTDIR, fs.rmdir("up"))
        await fs.unlink("up")

    run(main())
    assert snapshot(outside) == before
    assert (outside / "secret").read_bytes() == b"secret"
    assert not (root / "stolen").exists()


def test_non_clean_paths_never_reach_outside(sandbox: tuple[HostDir, Path, Path]) -> None:
    fs, _root, outside = sandbox
    before = snapshot(outside)

    async def main() -> None:
        for path in ("../outside", "d/../../outside", str(outside)):
            errs = await try_everything(fs, path)
            assert set(errs) == {Errno.PERM}, (path, errs)

    run(main())
    assert snapshot(outside) == before


def test_directory_swapped_for_symlink_after_resolve(sandbox: tuple[HostDir, Path, Path]) -> None:
    fs, root, outside = sandbox
    before = snapshot(outside)

    async def main() -> None:
        path = await fs.resolve(".", "d/f", follow=True)
        assert path == "d/f"
        deep = await fs.resolve(".", "d/e/new", follow=True)
        # another process swaps d for a symlink leading out
        os.rename(root / "d", root / "d.old")
        os.symlink(outside, root / "d")
        await fails(Errno.NOTDIR, fs.open(path, OpenMode(write=True, truncate=True)))
        await fails(Errno.NOTDIR, fs.open(deep, CREATE))
        errs = await try_everything(fs, "d")
        assert set(errs) <= {Errno.NOTDIR, Errno.LOOP}, errs
        # and a relative one, deeper
        os.rename(root / "d.old" / "e", root / "d.old" / "e.old")
        os.symlink("../../outside", root / "d.old" / "e")
        errs = await try_everything(fs, "d.old/e")
        assert set(errs) <= {Errno.NOTDIR, Errno.LOOP}, errs
        # the last component swapped for a symlink: open refuses it
        os.rename(root / "f", root / "f.old")
        os.symlink(outside / "secret", root / "f")
        await fails(Errno.LOOP, fs.open("f", OpenMode(write=True, truncate=True)))
        await fails(Errno.LOOP, fs.open("f", OpenMode(write=True, create=True)))
        await fails(Errno.EXIST, fs.open("f", OpenMode(write=True, create=True, exclusive=True)))
        await fs.set_times("f", 0, 0)  # the link's own times
        await fs.link("f", "f2")  # a second link to the symlink
        assert await fs.readlink("f2") == str(outside / "secret")

    run(main())
    assert snapshot(outside) == before


def test_swap_race_never_escapes(tmp_path: Path) -> None:
    """A thread keeps swapping a directory and a symlink out while writes run."""
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "root"
    (root / "d").mkdir(parents=True)
    stop = threading.Event()
    swaps = [0]

    def swapper() -> None:
        while not stop.is_set():
            os.rename(root / "d", root / "real")
            os.symlink(outside, root / "d")
            time.sleep(0.0001)
            os.unlink(root / "d")
            os.rename(root / "real", root / "d")
            time.sleep(0.0003)
            swaps[0] += 1

    async def main() -> None:
        fs = HostDir(root, offload=False)
        ok, errs = 0, []
        deadline = time.monotonic() + 5
        i = 0
        while (swaps[0] < 50 or i < 1000) and time.monotonic() < deadline:
            i += 1
            for op in (
                fs.open(f"d/f{i}", CREATE),
                fs.mkdir(f"d/m{i}"),
                fs.set_times(f"d/m{i}", 0, 0),
                fs.rename(f"d/f{i}", f"d/g{i}"),
            ):
                try:
                    result = await op
                    ok += 1
                except FsError as e:
                    errs.append(e.errno)
                else:
                    if isinstance(result, File):
                        await result.close()
        fs.close()
        assert ok > 0  # the race was run both ways
        assert Errno.NOTDIR in errs
        assert set(errs) <= {Errno.NOTDIR, Errno.NOENT}

    t = threading.Thread(target=swapper)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # interleave the two threads finely
    t.start()
    try:
        run(main())
    finally:
        stop.set()
        t.join()
        sys.setswitchinterval(interval)
    assert swaps[0] >= 50
    assert list(outside.iterdir()) == []
    assert outside.stat().st_mtime_ns > 0


# -- HostDir: descriptors, threads ----------------------------------------------------------------


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_no_descriptor_leaks(tmp_path: Path) -> None:
    write_tree(tmp_path, TREE)

    async def main(offload: bool) -> None:
        fs = HostDir(tmp_path, offload=offload)
        for _ in range(20):
            await fs.stat("d/sub/deep")
            await fs.resolve(".", "ld/sub/../a", follow=True)
            await fails(Errno.NOENT, fs.stat("d/sub/missing/x"))
            await fails(Errno.NOTDIR, fs.stat("d/a/x"))
            await fails(Errno.LOOP, fs.open("lf", R))
            f = await fs.open("d/sub/deep", R)
            await f.read(10, 0)
            await f.close()
            d = await fs.open("d", DIR)
            await d.readdir()
            await d.close()
            await fs.rename("d/a", "d/sub/a")
            await fs.rename("d/sub/a", "d/a")
        fs.close()
        await fails(Errno.BADF, fs.stat("f"))
        await fails(Errno.BADF, fs.resolve(".", "f", follow=True))

    gc.collect()
    before = open_fds()
    run(main(True))
    run(main(False))
    assert open_fds() == before

    # garbage collection closes what was not closed
    async def leak(fs: FileSystem) -> File:
        return await fs.open("f", R)

    host = HostDir(tmp_path, offload=False)
    f = asyncio.run(leak(host))
    assert open_fds() == before + 2
    del host, f
    gc.collect()
    assert open_fds() == before


def test_files_outlive_their_hostdir(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"abc")

    async def main() -> None:
        fs = HostDir(tmp_path)
        f = await fs.open("f", RW)
        with fs:
            pass
        assert fs.closed
        await fails(Errno.BADF, fs.open("f", R))
        assert await f.read(10, 0) == b"abc"
        await f.write(b"d", None)
        await f.close()

    run(main())
    assert (tmp_path / "f").read_bytes() == b"abcd"


def test_fifo_open_does_not_block(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "sock"))
    unblocked: list[bool] = []

    def watchdog() -> None:  # if open blocks, open the writer side to free it
        if not done.wait(5):
            unblocked.append(True)
            fd = os.open(tmp_path / "fifo", os.O_WRONLY)
            os.close(fd)

    done = threading.Event()
    t = threading.Thread(target=watchdog)
    t.start()

    async def main() -> None:
        fs = HostDir(tmp_path, offload=False)
        f = await fs.open("fifo", R)
        done.set()
        assert f.filetype == Filetype.UNKNOWN
        await f.close()
        d = await fs.open(".", DIR)
        types = {e.name: e.filetype for e in await d.readdir()}
        assert types == {"fifo": Filetype.UNKNOWN, "sock": Filetype.SOCKET_STREAM}
        await d.close()
        assert (await fs.stat("sock")).filetype == Filetype.SOCKET_STREAM
        fs.close()

    try:
        run(main())
    finally:
        done.set()
        t.join()
        sock.close()
    assert not unblocked


@pytest.mark.parametrize("library", ["asyncio", "trio"])
def test_trio_and_custom_executor(tmp_path: Path, library: str) -> None:
    """Under trio as under asyncio, offloaded calls run on the shared worker
    threads, or on the executor given. (Without the probe of cached lookups,
    which would run the stat on the loop: see tests/test_wasi_cached.py.)"""
    (tmp_path / "f").write_bytes(b"trio")
    thread_names: list[str] = []
    orig = os.stat

    def spy(*args: Any, **kwargs: Any) -> os.stat_result:
        if args and args[0] == "f":
            thread_names.append(threading.current_thread().name)
        return orig(*args, **kwargs)

    def go(coro: Coroutine[Any, Any, None]) -> None:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(os, "stat", spy)
            if library == "trio":
                trio.run(lambda: coro)
            else:
                asyncio.run(coro)

    async def main() -> None:
        fs = HostDir(tmp_path)
        fs._cached = None
        f = await fs.open("f", R)
        assert await f.read(10, 0) == b"trio"
        await f.close()
        await fs.mkdir("made")
        assert (await fs.stat("f")).size == 4
        fs.close()

    go(main())
    assert (tmp_path / "made").is_dir()
    assert len(thread_names) == 1
    assert thread_names.pop().startswith("wasync-hostfs-")

    from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

    with ThreadPoolExecutor(1, thread_name_prefix="custom") as pool:
        fs = HostDir(tmp_path, executor=pool)
        fs._cached = None

        async def stat() -> None:
            assert (await fs.stat("f")).size == 4
            with pytest.raises(FsError) as info:
                await fs.stat("missing")
            assert info.value.errno == Errno.NOENT

        go(stat())
        fs.close()
    assert len(thread_names) == 1
    assert thread_names.pop().startswith("custom")


def test_memory_and_host_agree_on_a_script(tmp_path: Path) -> None:
    """A longer sequence of operations gives the same tree on both."""

    async def script(fs: FileSystem) -> list[object]:
        log: list[object] = []

        async def step(aw: Awaitable[object]) -> None:
            try:
                r = await aw
                log.append(r if isinstance(r, str | bytes | int | type(None)) else type(r))
            except FsError as e:
                log.append(e.errno)

        await step(fs.mkdir("a"))
        await step(fs.mkdir("a/b"))
        await step(write_file(fs, "a/b/c", b"123"))
        await step(fs.link("a/b/c", "a/c2"))
        await step(fs.symlink("b/c", "a/sl"))
        await step(fs.rename("a/b", "a/sl"))
        await step(fs.rename("a/c2", "a/b/c"))
        await step(fs.rename("a", "z"))
        await step(fs.rmdir("z"))
        await step(fs.unlink("z/sl"))
        await step(fs.rename("z/b", "z/sl"))
        await step(read_all(fs, "z/sl/c"))
        await step(fs.readlink("z/sl/c"))
        f = await fs.open("z/sl/c", RW)
        await step(f.write(b"45", None))
        await step(f.set_size(4))
        await f.close()
        await step(fs.open("z", OpenMode(write=True)))
        return log

    mem = MemoryFS()
    host = HostDir(tmp_path)
    log_mem = asyncio.run(script(mem))
    log_host = asyncio.run(script(host))
    host.close()
    assert log_mem == log_host
    assert mem.to_dict() == read_tree(tmp_path) == {"z": {"sl": {"c": b"1234"}, "c2": b"1234"}}


# -- the fast paths of fd_read/fd_write (File._read_now, File._write_now) ---------------------
#
# wasync's WASI first offers a file read or write to the backend synchronously,
# with views of the program's buffers; HostDir(offload=True) tries RWF_NOWAIT
# (see tests.support.wasi_harness.nowait_simulation for the kernel's answers),
# HostDir(offload=False) and the "thread" strategy (off_loop) make the call
# inline, MemoryFS serves it on the loop's thread only. (Writes behind, which
# HostDir(offload=True) makes by default, are tested further down.)

CONTENT = bytes(range(200))


def views(*sizes: int) -> list[memoryview]:
    return [memoryview(bytearray(n)) for n in sizes]


def joined(buffers: list[memoryview], n: int) -> bytes:
    return b"".join(bytes(b) for b in buffers)[:n]


async def open_host(
    tmp_path: Path, mode: OpenMode = RW, *, offload: bool = True, write_behind: bool = False
) -> File:
    """A HostDir file; without writes behind unless asked: the tests of the fast
    paths are about what is tried inline, and what is left to a worker."""
    if not (tmp_path / "f").exists():
        (tmp_path / "f").write_bytes(CONTENT)
    fs = HostDir(tmp_path, offload=offload, write_behind=write_behind)
    f = await fs.open("f", mode)
    fs.close()
    return f


@pytest.mark.skipif(not getattr(_hostfs, "_RWF_NOWAIT", 0), reason="no RWF_NOWAIT here")
def test_nowait_read_of_cached_data_is_served_at_once(tmp_path: Path) -> None:
    async def main() -> None:
        f = await open_host(tmp_path)
        bufs = views(3, 0, 10)  # an empty buffer in the middle, as readv allows
        assert f._read_now(bufs, 5, off_loop=False) == (13, True)
        assert joined(bufs, 13) == CONTENT[5:18]
        bufs = views(64)
        assert f._read_now(bufs, 190, off_loop=False) == (10, True)  # short: the end
        assert joined(bufs, 10) == CONTENT[190:]
        assert f._read_now(views(8), 200, off_loop=False) == (0, True)  # at the end
        assert f._read_now(views(8), 5000, off_loop=False) == (0, True)  # past it
        await f.close()

    run(main())


@pytest.mark.parametrize("mode", ["eagain", "partial", "unsupported"])
def test_nowait_read_falls_back_to_a_worker(tmp_path: Path, mode: NowaitMode) -> None:
    async def main() -> None:
        with nowait_simulation(reads=mode) as sim:
            f = await open_host(tmp_path)
            bufs = views(4, 6)
            done, final = f._read_now(bufs, 10, off_loop=False)
            assert not final
            assert done == (1 if mode == "partial" else 0)
            assert joined(bufs, done) == CONTENT[10 : 10 + done]
            # what the WASI layer does next: the rest in a worker thread
            assert await f.read(10 - done, 10 + done) == CONTENT[10 + done : 20]
            calls = sim.read_calls
            assert calls == (2 if mode == "partial" else 1)
            f._read_now(views(4), 0, off_loop=False)
            if mode == "unsupported":  # learnt: not tried again on this file
                assert sim.read_calls == calls
            else:
                assert sim.read_calls > calls
            await f.close()

    run(main())


def test_nowait_read_partial_to_the_end(tmp_path: Path) -> None:
    """Partial answers add up; the end of the file (0) is final."""

    async def main() -> None:
        with nowait_simulation(reads="ok"):
            f = await open_host(tmp_path)
            bufs = views(100, 100)
            assert f._read_now(bufs, 150, off_loop=False) == (50, True)
            assert joined(bufs, 50) == CONTENT[150:]
            await f.close()

    run(main())


def test_large_calls_go_to_a_worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Copying a lot inline would hold the event loop: not tried."""
    monkeypatch.setattr(_hostfs, "_NOWAIT_MAX", 8)

    async def main() -> None:
        with nowait_simulation(reads="ok", writes="ok") as sim:
            f = await open_host(tmp_path)
            assert f._read_now(views(4, 5), 0, off_loop=False) == (0, False)
            assert f._write_now(views(9), 0, off_loop=False) == (0, False)
            bufs = views(4, 4)
            assert f._read_now(bufs, 0, off_loop=False) == (8, True)
            assert joined(bufs, 8) == CONTENT[:8]
            await f.close()
            assert (sim.read_calls, sim.write_calls) == (1, 0)

    run(main())


def test_no_nowait_on_platforms_without_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_hostfs, "_RWF_NOWAIT", 0)
    tried: list[int] = []
    if hasattr(os, "preadv"):
        real = os.preadv

        def spy(fd: int, buffers: list[memoryview], offset: int, flags: int = 0, /) -> int:
            tried.append(flags)
            return real(fd, buffers, offset, flags)

        monkeypatch.setattr(os, "preadv", spy)

    async def main() -> None:
        f = await open_host(tmp_path)
        assert f._read_now(views(8), 0, off_loop=False) == (0, False)
        assert f._write_now(views(8), 0, off_loop=False) == (0, False)
        assert await f.read(8, 0) == CONTENT[:8]  # the worker, as ever
        await f.close()

    run(main())
    assert not tried


@pytest.mark.parametrize("where", ["inline", "off-loop"])
def test_inline_fast_paths_never_use_nowait(tmp_path: Path, where: str) -> None:
    """offload=False, and a call off the event loop's thread (the "thread"
    strategy), read and write at once, blocking if need be."""

    async def main() -> None:
        with nowait_simulation(reads="eagain", writes="eagain") as sim:
            f = await open_host(tmp_path, offload=where == "off-loop")
            off_loop = where == "off-loop"
            bufs = views(5, 5)
            assert f._read_now(bufs, 100, off_loop=off_loop) == (10, True)
            assert joined(bufs, 10) == CONTENT[100:110]
            data = [memoryview(b"ab"), memoryview(b"cd")]
            assert f._write_now(data, 198, off_loop=off_loop) == (4, True)
            assert f._write_now([memoryview(b"!")], None, off_loop=off_loop) == (1, True)
            await f.close()
            assert (sim.read_calls, sim.write_calls) == (0, 0)

    run(main())
    assert (tmp_path / "f").read_bytes() == CONTENT[:198] + b"abcd!"


@pytest.mark.parametrize("mode", ["ok", "eagain", "partial", "unsupported", "kernel"])
def test_nowait_write(tmp_path: Path, mode: NowaitMode) -> None:
    async def main() -> None:
        with nowait_simulation(writes=mode) as sim:
            f = await open_host(tmp_path)
            data = [memoryview(b"XY"), memoryview(b""), memoryview(b"Z")]
            done, final = f._write_now(data, 10, off_loop=False)
            if mode == "kernel":  # whatever this machine's file system says
                assert (done, final) in ((3, True), (0, False))
                if not final:
                    assert await f.write(b"XYZ", 10) == 3
            else:
                assert (done, final) == {
                    "ok": (3, True),
                    "eagain": (0, False),
                    "partial": (1, False),
                    "unsupported": (0, False),
                }[mode]
                if not final:
                    assert await f.write(b"XYZ"[done:], 10 + done) == 3 - done
            calls = sim.write_calls
            f._write_now([memoryview(b"Z")], 12, off_loop=False)
            if mode == "unsupported":
                assert sim.write_calls == calls  # learnt
            # Never for writes at the end (an fstat first) or on O_APPEND descriptors.
            calls = sim.write_calls
            assert f._write_now([memoryview(b"!")], None, off_loop=False) == (0, False)
            await f.close()
            g = await open_host(tmp_path, OpenMode(write=True, append=True))
            assert g._write_now([memoryview(b"!")], 3, off_loop=False) == (0, False)
            await g.close()
            assert sim.write_calls == calls

    run(main())
    assert (tmp_path / "f").read_bytes() == CONTENT[:10] + b"XYZ" + CONTENT[13:]


@pytest.mark.parametrize("backend", ["memory", "host", "host-inline"])
def test_fast_path_errors_match_read_and_write(tmp_path: Path, backend: str) -> None:
    """The fast paths refuse what read()/write() refuse, with the same errno."""

    def refused(code: Errno, fn: Callable[[], object]) -> None:
        with pytest.raises(FsError) as info:
            fn()
        assert info.value.errno == code

    async def main() -> None:
        fs: FileSystem
        if backend == "memory":
            fs = MemoryFS({"f": CONTENT, "d": {}})
        else:
            (tmp_path / "f").write_bytes(CONTENT)
            (tmp_path / "d").mkdir()
            fs = HostDir(tmp_path, offload=backend == "host")
        ro = await fs.open("f", R)
        wo = await fs.open("f", W)
        d = await fs.open("d", DIR)
        # MemoryFS is never touched off the loop's thread (see test_memory_fast_paths)
        for off in (False,) if backend == "memory" else (False, True):
            refused(Errno.BADF, lambda: wo._read_now(views(4), 0, off_loop=off))  # noqa: B023
            refused(Errno.BADF, lambda: ro._write_now(views(4), 0, off_loop=off))  # noqa: B023
            refused(Errno.ISDIR, lambda: d._read_now(views(4), 0, off_loop=off))  # noqa: B023
            refused(Errno.INVAL, lambda: ro._read_now(views(4), -1, off_loop=off))  # noqa: B023
            refused(Errno.INVAL, lambda: wo._write_now(views(4), -1, off_loop=off))  # noqa: B023
        for f in (ro, wo, d):
            await f.close()
        refused(Errno.BADF, lambda: ro._read_now(views(4), 0, off_loop=False))
        refused(Errno.BADF, lambda: wo._write_now(views(4), 0, off_loop=False))
        if isinstance(fs, HostDir):
            fs.close()

    run(main())


def test_memory_fast_paths(tmp_path: Path) -> None:
    async def main() -> None:
        fs = MemoryFS({"f": CONTENT})
        f = await fs.open("f", RW)
        bufs = views(3, 0, 4)
        assert f._read_now(bufs, 196, off_loop=False) == (4, True)
        assert joined(bufs, 4) == CONTENT[196:]
        assert f._write_now([memoryview(b"ab"), memoryview(b"c")], 1, off_loop=False) == (3, True)
        assert f._write_now([memoryview(b"!")], None, off_loop=False) == (1, True)
        assert await f.read(5, 0) == CONTENT[:1] + b"abc" + CONTENT[4:5]
        assert (await f.stat()).size == 201
        # off the loop's thread (the "thread" strategy): left to the coroutines
        assert f._read_now(views(4), 0, off_loop=True) == (0, False)
        assert f._write_now(views(4), 0, off_loop=True) == (0, False)
        await f.close()

    run(main())


def test_other_backends_keep_the_coroutines() -> None:
    class Plain(File):
        async def read(self, size: int, offset: int) -> bytes:
            return b""

        async def write(self, data: bytes, offset: int | None) -> int:
            return 0

        async def stat(self) -> Any:
            raise NotImplementedError

    f = Plain()
    assert f._read_now(views(4), 0, off_loop=False) == (0, False)
    assert f._write_now(views(4), 0, off_loop=False) == (0, False)


# -- the worker threads of offload=True ---------------------------------------------------


def test_workers_deliver_results_and_errors() -> None:
    def boom() -> None:
        raise ValueError("boom")

    async def main() -> None:
        names = await asyncio.gather(
            *(_hostfs._WORKERS.run(lambda: threading.current_thread().name) for _ in range(8))
        )
        assert all(n.startswith("wasync-hostfs-") for n in names)
        with pytest.raises(ValueError, match="boom"):
            await _hostfs._WORKERS.run(boom)

    run(main())


def test_workers_after_cancellation_and_a_closed_loop() -> None:
    started, release = threading.Event(), threading.Event()
    errors: list[dict[str, Any]] = []

    def slow() -> int:
        started.set()
        release.wait(5)
        return 1

    async def cancel_while_running() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: errors.append(ctx))
        task = asyncio.ensure_future(_hostfs._WORKERS.run(slow))
        await asyncio.get_running_loop().run_in_executor(None, started.wait, 5)
        task.cancel()
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await _hostfs._WORKERS.run(lambda: 2) == 2  # the result of slow() is dropped

    run(cancel_while_running())
    assert not errors

    started.clear()
    release.clear()

    async def leave_running() -> None:
        _hostfs._WORKERS.run(slow)  # never awaited: the loop closes first
        await asyncio.get_running_loop().run_in_executor(None, started.wait, 5)

    run(leave_running())
    release.set()  # its result goes to a closed loop: dropped quietly

    async def still_working() -> None:
        assert await _hostfs._WORKERS.run(lambda: 3) == 3

    run(still_working())


def test_workers_under_trio() -> None:
    """The same worker threads serve trio: results and errors come back through
    the trio token; a cancelled wait is abandoned at once (the job runs to its
    end and its result is dropped, as under asyncio), and a result for a
    finished trio run is dropped quietly."""
    started, release = threading.Event(), threading.Event()

    def boom() -> None:
        raise ValueError("boom")

    def slow() -> int:
        started.set()
        release.wait(5)
        return 1

    async def main() -> None:
        names: list[str] = []

        async def one() -> None:
            names.append(await _hostfs._WORKERS.run_trio(lambda: threading.current_thread().name))

        async with trio.open_nursery() as nursery:
            for _ in range(8):
                nursery.start_soon(one)
        assert len(names) == 8
        assert all(n.startswith("wasync-hostfs-") for n in names)
        with pytest.raises(ValueError, match="boom"):
            await _hostfs._WORKERS.run_trio(boom)

        with trio.move_on_after(5) as scope:
            async with trio.open_nursery() as nursery:

                async def cancel_when_started() -> None:
                    await trio.to_thread.run_sync(started.wait, 5)
                    nursery.cancel_scope.cancel()

                nursery.start_soon(cancel_when_started)
                await _hostfs._WORKERS.run_trio(slow)
                pytest.fail("not cancelled")
        assert not scope.cancelled_caught  # the nursery's own cancellation ended it
        release.set()
        assert await _hostfs._WORKERS.run_trio(lambda: 2) == 2  # slow()'s result: dropped

    trio.run(main)

    started.clear()
    release.clear()

    async def leave_running() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_hostfs._WORKERS.run_trio, slow)
            await trio.to_thread.run_sync(started.wait, 5)
            nursery.cancel_scope.cancel()

    trio.run(leave_running)
    release.set()  # its result goes to a finished run: dropped quietly

    async def still_working() -> None:
        assert await _hostfs._WORKERS.run_trio(lambda: 3) == 3

    trio.run(still_working)
