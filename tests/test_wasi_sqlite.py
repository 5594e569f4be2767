"""A real program on wasync's WASI: the SQLite shell writes a database file.

The shell (``shell.c`` + ``sqlite3.c`` 3.52.0, ``zig cc -O2`` for ``wasm32-wasi``) runs with a
preopened host directory (``HostDir``) at ``/data`` and SQL on stdin: it creates
``/data/test.db``, inserts 10,000 rows in one transaction (one ``INSERT`` per row, so the
shell reads ~500 KB through ``fd_read``), commits (journal file created, synced, deleted),
then prints a checksum over every row. The output must be what wasmtime's own WASI prints
for the same binary (and what Python computes), and the host's ``sqlite3`` module must find
every row in the file. Under every strategy: fiber and thread on the plain binary, asyncify
on the binary transformed by ``wasync.asyncify`` (every WASI import may suspend); with the
backend's syscalls offloaded to threads and inline.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import wasmtime

import wasync
from tests.support import sqlite as shell
from tests.support.native_wasi import run_native
from wasync._wasi._core import Wasi
from wasync._wasi._hostfs import HostDir

if TYPE_CHECKING:
    from wasync._runtime._instance import Strategy

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def shell_wasm() -> bytes:
    return shell.build_shell()


@pytest.fixture(scope="module")
def plain_module(shell_wasm: bytes) -> wasync.Module:
    return wasync.Module(shell_wasm, name="sqlite3-shell")


@pytest.fixture(scope="module")
def asyncified_module() -> wasync.Module:
    return wasync.Module(shell.asyncified_shell(), name="sqlite3-shell-asyncified")


@pytest.fixture(scope="module")
def native_module(shell_wasm: bytes) -> tuple[wasmtime.Engine, wasmtime.Module]:
    engine = wasmtime.Engine()
    return engine, wasmtime.Module(engine, shell_wasm)


@pytest.fixture(scope="module")
def sql() -> bytes:
    return shell.workload()


@pytest.fixture(scope="module")
def native_output(
    native_module: tuple[wasmtime.Engine, wasmtime.Module],
    sql: bytes,
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[bytes, bytes]:
    """(stdout, stderr) of the shell under wasmtime's WASI; its database is checked too."""
    data = tmp_path_factory.mktemp("native")
    engine, module = native_module
    run = run_native(
        module,
        engine,
        shell.SHELL_ARGS,
        env=shell.SHELL_ENV,
        preopens={"/data": data},
        stdin=sql,
    )
    assert run.exit_code == 0, run.stderr
    shell.check_database(data / "test.db")
    return run.stdout, run.stderr


def test_native_reference(native_output: tuple[bytes, bytes]) -> None:
    stdout, stderr = native_output
    assert stdout == shell.expected_output()
    assert stderr == b""


@pytest.mark.parametrize("offload", [True, False], ids=["offload", "inline"])
@pytest.mark.parametrize("strategy", ["fiber", "thread", "asyncify"])
def test_sqlite_shell_writes_database(
    strategy: Strategy,
    offload: bool,
    request: pytest.FixtureRequest,
    sql: bytes,
    native_output: tuple[bytes, bytes],
    tmp_path: Path,
) -> None:
    fixture = "asyncified_module" if strategy == "asyncify" else "plain_module"
    module: wasync.Module = request.getfixturevalue(fixture)
    data = tmp_path / "data"
    data.mkdir()
    stdout, stderr = bytearray(), bytearray()
    wasi = Wasi(
        shell.SHELL_ARGS,
        shell.SHELL_ENV,
        {"/data": HostDir(str(data), offload=offload)},
        stdin=sql,
        stdout=stdout,
        stderr=stderr,
    )
    code = asyncio.run(wasi.run(module, strategy=strategy))
    assert (code, bytes(stderr)) == (0, native_output[1])
    assert bytes(stdout) == native_output[0]
    # The journal is gone after the commit; only the database is left.
    assert sorted(p.name for p in data.iterdir()) == ["test.db"]
    shell.check_database(data / "test.db")


def test_sqlite_shell_reports_sql_errors(
    plain_module: wasync.Module,
    native_module: tuple[wasmtime.Engine, wasmtime.Module],
    tmp_path: Path,
) -> None:
    """An error in the SQL reaches stderr and the exit status, as under wasmtime."""
    stdout, stderr = bytearray(), bytearray()
    wasi = Wasi(
        shell.SHELL_ARGS,
        shell.SHELL_ENV,
        {"/data": HostDir(str(tmp_path))},
        stdin=b"SELECT 1;\nSELECT * FROM missing;\n",
        stdout=stdout,
        stderr=stderr,
    )
    code = asyncio.run(wasi.run(plain_module, strategy="fiber"))
    native_dir = tmp_path / "native"
    native_dir.mkdir()
    engine, module = native_module
    native = run_native(
        module,
        engine,
        shell.SHELL_ARGS,
        env=shell.SHELL_ENV,
        preopens={"/data": native_dir},
        stdin=b"SELECT 1;\nSELECT * FROM missing;\n",
    )
    assert (code, bytes(stdout), bytes(stderr)) == (native.exit_code, native.stdout, native.stderr)
    assert code != 0
    assert b"no such table: missing" in bytes(stderr)
