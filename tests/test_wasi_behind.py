"""Writes behind (HostDir with offload=True): a write returns once its data is
copied, a worker makes it, and every later operation sees the file as if the
write had been made at once (see wasync._wasi._behind)."""

from __future__ import annotations

import asyncio
import errno
import threading
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from wasync._wasi import _behind, _hostfs
from wasync._wasi._abi import Errno
from wasync._wasi._fs import File, FsError, OpenMode
from wasync._wasi._hostfs import HostDir

RW = OpenMode(write=True)
CREATE = OpenMode(write=True, create=True)
TRUNCATE = OpenMode(write=True, create=True, truncate=True)


class Gate:
    """Holds the lane's worker in its next writes until opened; can make
    writes fail instead."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.open = threading.Event()
        self.open.set()
        self.fail: int | None = None  # an errno for every write while set
        self.made: list[bytes] = []
        real = _hostfs._write_at

        def write_at(fd: int, buffers: list[Any], offset: int | None, append: bool) -> int:
            if threading.current_thread() is not threading.main_thread():
                self.open.wait(10)
                if self.fail is not None:
                    raise OSError(self.fail, "failed (simulated)")
                self.made.append(b"".join(bytes(b) for b in buffers))
            return real(fd, buffers, offset, append)

        monkeypatch.setattr(_hostfs, "_write_at", write_at)

    def hold(self) -> None:
        self.open.clear()

    def release(self) -> None:
        self.open.set()


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[Gate]:
    g = Gate(monkeypatch)
    yield g
    g.release()
    _behind.LANE.settle_blocking()


def behind(f: File, data: bytes, offset: int | None) -> None:
    """A write through the fast path, which must go behind."""
    assert f._write_now([memoryview(data)], offset, off_loop=False) == (len(data), True)


def run_both(main: Callable[[], Coroutine[Any, Any, None]], library: str) -> None:
    if library == "trio":
        trio.run(main)
    else:
        asyncio.run(main())


@pytest.mark.parametrize("library", ["asyncio", "trio"])
def test_writes_return_at_once_and_every_later_operation_sees_them(
    tmp_path: Path, gate: Gate, library: str
) -> None:
    async def main() -> None:
        fs = HostDir(tmp_path)
        f = await fs.open("f", CREATE)
        gate.hold()
        behind(f, b"hello ", 0)
        behind(f, b"world", 6)
        assert await _write(f, b"!", 11) == 1  # write() goes behind too
        assert _behind.LANE.busy()
        assert (tmp_path / "f").read_bytes() == b""  # nothing made yet
        gate.release()
        assert await f.read(100, 0) == b"hello world!"  # waits for them
        gate.hold()
        behind(f, b"H", 0)
        buf = memoryview(bytearray(5))
        assert f._read_now([buf], 0, off_loop=False) == (0, False)  # not before the write
        gate.release()
        assert (await f.stat()).size == 12
        assert await f.read(5, 0) == b"Hello"
        await f.close()
        fs.close()

    run_both(main, library)
    assert gate.made == [b"hello ", b"world", b"!", b"H"]


async def _write(f: File, data: bytes, offset: int | None) -> int:
    return await f.write(data, offset)


def test_other_descriptors_and_directories_see_the_writes(tmp_path: Path, gate: Gate) -> None:
    """Another descriptor of the same file, opened before or after, and another
    HostDir on the same directory (another program) see the writes."""

    async def main() -> None:
        fs, other = HostDir(tmp_path), HostDir(tmp_path, offload=False)
        f = await fs.open("f", CREATE)
        early = await other.open("f", OpenMode())
        gate.hold()
        behind(f, b"data", 0)
        task = asyncio.ensure_future(other.open("f", OpenMode()))
        await asyncio.sleep(0.05)
        assert not task.done()  # a path operation waits for the writes behind
        gate.release()
        late = await task
        assert await late.read(10, 0) == b"data"
        gate.hold()
        behind(f, b"DATA", 0)
        reading = asyncio.ensure_future(early.read(10, 0))  # same inode: waits too
        await asyncio.sleep(0.05)
        assert not reading.done()
        gate.release()
        assert await reading == b"DATA"
        for file in (f, early, late):
            await file.close()

    asyncio.run(main())


def test_truncating_open_comes_after_the_writes(tmp_path: Path, gate: Gate) -> None:
    async def main() -> None:
        fs = HostDir(tmp_path)
        f = await fs.open("f", CREATE)
        gate.hold()
        behind(f, b"old contents", 0)
        opening = asyncio.ensure_future(fs.open("f", TRUNCATE))
        await asyncio.sleep(0.02)
        gate.release()
        g = await opening
        behind(g, b"new", 0)
        await g.close()
        await f.close()

    asyncio.run(main())
    assert (tmp_path / "f").read_bytes() == b"new"


def test_an_error_is_reported_by_the_next_operation_once(tmp_path: Path, gate: Gate) -> None:
    async def main() -> None:
        fs = HostDir(tmp_path)
        f = await fs.open("f", CREATE)
        gate.fail = errno.ENOSPC
        behind(f, b"lost", 0)
        with pytest.raises(FsError) as info:
            await f.sync()
        assert info.value.errno == Errno.NOSPC
        await f.sync()  # reported once
        behind(f, b"lost too", 0)
        with pytest.raises(FsError) as info:
            await f.close()  # close reports it, and closes
        assert info.value.errno == Errno.NOSPC
        with pytest.raises(FsError) as info:
            await f.stat()
        assert info.value.errno == Errno.BADF
        gate.fail = None
        g = await fs.open("g", CREATE)
        gate.fail = errno.EIO
        behind(g, b"x", 0)
        _behind.LANE.settle_blocking()
        with pytest.raises(FsError) as info:  # the next write sees it at once
            g._write_now([memoryview(b"y")], 1, off_loop=False)
        assert info.value.errno == Errno.IO
        gate.fail = None
        behind(g, b"y", 1)
        await g.close()

    asyncio.run(main())
    assert (tmp_path / "f").read_bytes() == b""
    assert (tmp_path / "g").read_bytes() == b"\0y"


def test_a_full_lane_makes_the_writer_wait(
    tmp_path: Path, gate: Gate, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_behind.LANE, "limit", 10)

    async def main() -> None:
        fs = HostDir(tmp_path)
        f = await fs.open("f", CREATE)
        gate.hold()
        behind(f, b"0123456789", 0)  # fills it
        assert f._write_now([memoryview(b"abc")], 10, off_loop=False) == (0, False)
        waiting = asyncio.ensure_future(f.write(b"abc", 10))
        await asyncio.sleep(0.02)
        assert not waiting.done()
        cancelled = asyncio.ensure_future(f.write(b"zzz", 13))
        await asyncio.sleep(0.02)
        cancelled.cancel()
        gate.release()
        assert await waiting == 3
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        big = b"B" * 100  # larger than the lane: accepted once it is empty
        assert await f.write(big, 13) == 100
        await f.close()

    asyncio.run(main())
    assert (tmp_path / "f").read_bytes() == b"0123456789abc" + b"B" * 100


def test_off_the_loop_calls_wait_for_the_writes(tmp_path: Path, gate: Gate) -> None:
    """The "thread" strategy's inline calls (off the loop) block until the
    writes behind to their file are made."""

    async def main() -> None:
        fs = HostDir(tmp_path)
        f = await fs.open("f", CREATE)
        gate.hold()
        behind(f, b"behind", 0)
        buf = memoryview(bytearray(6))
        result: list[tuple[int, bool]] = []
        reader = threading.Thread(
            target=lambda: result.append(f._read_now([buf], 0, off_loop=True))
        )
        reader.start()
        await asyncio.sleep(0.05)
        assert not result
        gate.release()
        await asyncio.to_thread(reader.join)
        assert result == [(6, True)]
        assert bytes(buf) == b"behind"
        await f.close()

    asyncio.run(main())


def test_closing_waits_for_the_files_writes(tmp_path: Path, gate: Gate) -> None:
    async def main() -> None:
        fs = HostDir(tmp_path)
        f = await fs.open("f", CREATE)
        gate.hold()
        behind(f, b"kept", 0)
        closing = asyncio.ensure_future(f.close())
        await asyncio.sleep(0.02)
        assert not closing.done()
        gate.release()
        await closing

    asyncio.run(main())
    assert (tmp_path / "f").read_bytes() == b"kept"


def test_write_behind_can_be_turned_off(tmp_path: Path, gate: Gate) -> None:
    async def main() -> None:
        fs = HostDir(tmp_path, write_behind=False)
        f = await fs.open("f", CREATE)
        done, final = f._write_now([memoryview(b"now")], 0, off_loop=False)
        assert (done, final) in ((3, True), (0, False))  # RWF_NOWAIT, where it works
        if not final:  # a worker makes it
            assert await f.write(b"now", 0) == 3
        assert not _behind.LANE.busy()
        await f.close()

    asyncio.run(main())
    assert (tmp_path / "f").read_bytes() == b"now"


def test_writes_near_the_size_limit_are_made_before_they_return(tmp_path: Path, gate: Gate) -> None:
    """There the write itself may fail (EFBIG): not behind."""

    async def main() -> None:
        fs = HostDir(tmp_path)
        fs._runner.behind_end = 8
        f = await fs.open("f", CREATE)
        behind(f, b"1234", 4)  # ends at the bound: behind
        assert f._write_now([memoryview(b"56789")], 4, off_loop=False) == (0, False)
        gate.hold()
        writing = asyncio.ensure_future(f.write(b"56789", 4))
        await asyncio.sleep(0.02)
        assert not writing.done()  # made in a worker, waited for
        gate.release()
        assert await writing == 5
        assert not _behind.LANE.busy()
        await f.close()

    asyncio.run(main())
    assert (tmp_path / "f").read_bytes() == bytes(4) + b"56789"


def test_a_write_that_cannot_be_queued_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No worker to start (interpreter shutdown): the write raises, and neither
    the queue nor the descriptor keeps anything of it."""

    def no_worker(fn: Callable[[], object]) -> None:
        raise RuntimeError("cannot run file system calls after interpreter shutdown")

    async def main() -> None:
        fs = HostDir(tmp_path)
        f = await fs.open("f", CREATE)
        assert isinstance(f, _hostfs.HostFile)
        monkeypatch.setattr(_hostfs._WORKERS, "spawn", no_worker)
        with pytest.raises(RuntimeError, match="shutdown"):
            f._write_now([memoryview(b"x")], 0, off_loop=False)
        assert not _behind.LANE.busy()
        assert f._fd._users == 0
        await f.close()
        assert f._fd.closed

    asyncio.run(main())
    assert (tmp_path / "f").read_bytes() == b""
