"""The documented ways to use the async WASI: the custom file system example
(examples/kv_fs.py) and the demo's many-programs run."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

import wasync
from wasync._demo import WASI_WAT

ROOT = Path(__file__).resolve().parent.parent


def load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_custom_file_system_example() -> None:
    kv = load_example("kv_fs")

    async def main() -> None:
        store = kv.AsyncKV({"book.txt": b"x" * 150, "notes/a.txt": b"a", "notes/b/c.txt": b"c"})
        fs = kv.KVFileSystem(store)
        out = bytearray()
        wasi = wasync.Wasi(["cat"], preopens={"/": fs}, stdout=out)
        assert await wasi.run(wasync.Module.from_wat(WASI_WAT)) == 0
        assert out == b"x" * 150
        # The pieces the WASI layer relies on.
        assert (await fs.stat("notes")).filetype == wasync.WasiFiletype.DIRECTORY
        listing = await (await fs.open("notes", wasync.OpenMode(directory=True))).readdir()
        assert [(e.name, e.filetype) for e in listing] == [
            ("a.txt", wasync.WasiFiletype.REGULAR_FILE),
            ("b", wasync.WasiFiletype.DIRECTORY),
        ]
        with pytest.raises(wasync.FsError) as refused:
            await fs.open("book.txt", wasync.OpenMode(write=True))
        assert refused.value.errno == wasync.WasiErrno.ROFS
        # A missing file reaches the program as an errno: path_open fails, exit 2.
        wasi = wasync.Wasi(["cat"], preopens={"/": kv.KVFileSystem(kv.AsyncKV({}))})
        assert await wasi.run(wasync.Module.from_wat(WASI_WAT)) == 2

    asyncio.run(main())


def test_demo_runs_many_programs_concurrently() -> None:
    from wasync._demo import _wasi_demo  # noqa: PLC0415

    assert asyncio.run(_wasi_demo(programs=30, chunks=4)) == 0
