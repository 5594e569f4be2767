"""Read-only path operations of HostDir(offload=True) run on the event loop
when the kernel has their lookups cached (openat2 RESOLVE_CACHED), else in a
worker; either way with the same results (see wasync._wasi._cached)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from wasync._wasi import _cached, _hostfs
from wasync._wasi._abi import Errno
from wasync._wasi._fs import FsError, OpenMode
from wasync._wasi._hostfs import HostDir


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_bytes(b"data")
    os.symlink("d/f", tmp_path / "link")
    return tmp_path


@pytest.fixture
def hops(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The worker round trips made (one name per call)."""
    made: list[str] = []
    real = _hostfs._WORKERS.run

    def run(fn: Callable[[], Any], loop: Any = None) -> Any:
        made.append(getattr(fn, "__qualname__", "?"))
        return real(fn, loop)

    monkeypatch.setattr(_hostfs._WORKERS, "run", run)
    return made


def needs_the_probe(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if _cached.probe_for(fd) is None:
            pytest.skip("no openat2(RESOLVE_CACHED) on a local file system here")
    finally:
        os.close(fd)


def test_the_probe_answers_what_the_kernel_has_cached(tree: Path) -> None:
    needs_the_probe(tree)
    fd = os.open(tree, os.O_RDONLY | os.O_DIRECTORY)
    try:
        probe = _cached.probe_for(fd)
        assert probe is not None
        os.stat(tree / "d" / "f")  # now cached
        assert probe.probe(fd, "d/f")
        assert probe.probe(fd, "link")  # the symlink itself
        assert probe.probe(fd, ".")
        assert not probe.probe(fd, "../x")  # outside: never (EXDEV)
        with pytest.raises(FileNotFoundError):
            os.stat(tree / "d" / "gone")
        assert probe.probe(fd, "d/gone")  # a cached negative entry: ENOENT
    finally:
        os.close(fd)


def test_reads_of_cached_paths_make_no_round_trip(tree: Path, hops: list[str]) -> None:
    needs_the_probe(tree)

    async def main() -> None:
        fs = HostDir(tree)
        os.stat(tree / "d" / "f")
        os.lstat(tree / "link")
        assert (await fs.stat("d/f")).size == 4
        f = await fs.open("d/f", OpenMode())
        assert await fs.readlink("link") == "d/f"
        assert await fs.resolve(".", "link", follow=True) == "d/f"
        await f.close()
        assert hops == []
        # What changes the tree, or opens for writing, goes to a worker.
        g = await fs.open("d/f", OpenMode(write=True))
        await g.close()
        await fs.mkdir("e")
        assert len(hops) == 2
        fs.close()

    asyncio.run(main())


def test_uncached_lookups_go_to_a_worker_with_the_same_results(
    tree: Path, hops: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    needs_the_probe(tree)
    monkeypatch.setattr(_cached.CachedLookup, "probe", lambda self, fd, path: False)

    async def main() -> None:
        fs = HostDir(tree)
        assert (await fs.stat("d/f")).size == 4
        assert await fs.readlink("link") == "d/f"
        assert await fs.resolve(".", "link", follow=True) == "d/f"
        with pytest.raises(FsError) as info:
            await fs.stat("d/gone")
        assert info.value.errno == Errno.NOENT
        assert len(hops) == 4
        fs.close()

    asyncio.run(main())


def test_inline_errors_are_the_workers(tree: Path, hops: list[str]) -> None:
    """Errors found on the loop are those a worker would report."""
    needs_the_probe(tree)

    async def main() -> None:
        fs = HostDir(tree)
        with pytest.raises(FileNotFoundError):
            os.stat(tree / "d" / "gone")
        with pytest.raises(FsError) as info:
            await fs.stat("d/gone")
        assert info.value.errno == Errno.NOENT
        with pytest.raises(FsError) as info:
            await fs.open("link", OpenMode())  # never follows the last symlink
        assert info.value.errno == Errno.LOOP
        with pytest.raises(FsError) as info:
            await fs.open("d/f/x", OpenMode())
        assert info.value.errno == Errno.NOTDIR
        fs.close()
        with pytest.raises(FsError) as info:
            await fs.stat("d/f")  # closed
        assert info.value.errno == Errno.BADF

    asyncio.run(main())


def test_no_probe_without_offload_or_off_linux(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert HostDir(tree, offload=False)._cached is None
    monkeypatch.setattr(sys, "platform", "darwin")
    assert HostDir(tree)._cached is None
