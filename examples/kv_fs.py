"""A WASI file system over an async key-value store: an example of plugging
your own backend into wasync's WASI.

The store maps paths ("docs/readme.txt") to bytes; directories are implied by
the keys under them. Every lookup awaits the store, as an object store or an
HTTP API would. Run it::

    python examples/kv_fs.py
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import TYPE_CHECKING

import wasync
from wasync import WasiErrno, WasiFiletype

if TYPE_CHECKING:
    from collections.abc import Mapping


class AsyncKV:
    """Stands in for a remote store: every call takes a little while."""

    def __init__(self, items: Mapping[str, bytes], latency: float = 0.001) -> None:
        self._items = dict(items)
        self._latency = latency

    async def get(self, key: str) -> bytes | None:
        await asyncio.sleep(self._latency)
        return self._items.get(key)

    async def keys(self, prefix: str) -> list[str]:
        await asyncio.sleep(self._latency)
        return sorted(k for k in self._items if k.startswith(prefix))


def _ino(path: str) -> int:
    return int.from_bytes(hashlib.sha256(path.encode()).digest()[:8], "little")


class KVFile(wasync.File):
    def __init__(self, path: str, data: bytes) -> None:
        self.path = path
        self.data = data

    async def read(self, size: int, offset: int) -> bytes:
        return self.data[offset : offset + size]

    async def write(self, data: bytes, offset: int | None) -> int:
        raise wasync.FsError(WasiErrno.ROFS)

    async def stat(self) -> wasync.FileStat:
        return wasync.FileStat(WasiFiletype.REGULAR_FILE, size=len(self.data), ino=_ino(self.path))


class KVDirectory(wasync.File):
    filetype = WasiFiletype.DIRECTORY

    def __init__(self, fs: KVFileSystem, path: str) -> None:
        self.fs = fs
        self.path = path

    async def read(self, size: int, offset: int) -> bytes:
        raise wasync.FsError(WasiErrno.ISDIR)

    async def write(self, data: bytes, offset: int | None) -> int:
        raise wasync.FsError(WasiErrno.ISDIR)

    async def stat(self) -> wasync.FileStat:
        return await self.fs.stat(self.path)

    async def readdir(self) -> list[wasync.DirEntry]:
        prefix = "" if self.path == "." else self.path + "/"
        entries: dict[str, WasiFiletype] = {}
        for key in await self.fs.store.keys(prefix):
            head, sep, _ = key[len(prefix) :].partition("/")
            entries[head] = WasiFiletype.DIRECTORY if sep else WasiFiletype.REGULAR_FILE
        return [wasync.DirEntry(n, t, _ino(prefix + n)) for n, t in sorted(entries.items())]


class KVFileSystem(wasync.FileSystem):
    """Read-only: the store is the source of truth."""

    readonly = True

    def __init__(self, store: AsyncKV) -> None:
        self.store = store

    async def stat(self, path: str) -> wasync.FileStat:
        if path == ".":
            return wasync.FileStat(WasiFiletype.DIRECTORY, ino=_ino(path))
        data = await self.store.get(path)
        if data is not None:
            return wasync.FileStat(WasiFiletype.REGULAR_FILE, size=len(data), ino=_ino(path))
        if await self.store.keys(path + "/"):
            return wasync.FileStat(WasiFiletype.DIRECTORY, ino=_ino(path))
        raise wasync.FsError(WasiErrno.NOENT, path)

    async def open(self, path: str, mode: wasync.OpenMode) -> wasync.File:
        if mode.write or mode.create or mode.truncate:
            raise wasync.FsError(WasiErrno.ROFS, path)
        st = await self.stat(path)
        if st.filetype == WasiFiletype.DIRECTORY:
            return KVDirectory(self, path)
        if mode.directory:
            raise wasync.FsError(WasiErrno.NOTDIR, path)
        data = await self.store.get(path)
        assert data is not None
        return KVFile(path, data)

    async def readlink(self, path: str) -> str:
        await self.stat(path)  # NOENT if missing
        raise wasync.FsError(WasiErrno.INVAL, f"{path} is not a symlink")


async def main() -> None:
    from wasync._demo import WASI_WAT  # noqa: PLC0415 - the demo's "cat book.txt" program

    store = AsyncKV({"book.txt": b"Call me Ishmael. " * 8, "notes/a.txt": b"a"})
    out = bytearray()
    wasi = wasync.Wasi(["cat"], preopens={"/": KVFileSystem(store)}, stdout=out)
    status = await wasi.run(wasync.Module.from_wat(WASI_WAT))
    print(f"exit status {status}; the program printed {len(out)} bytes:")
    print(out.decode())


if __name__ == "__main__":
    asyncio.run(main())
