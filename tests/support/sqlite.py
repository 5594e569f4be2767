"""The SQLite shell (``shell.c`` + ``sqlite3.c``) built for ``wasm32-wasi``, and its workload.

* :func:`amalgamation` extracts the SQLite 3.52.0 sources from the nested tarball the npm
  package ``sqlite3`` ships (``deps/sqlite-autoconf-3520000.tar.gz``, checked by SHA-256),
  once, into the test cache; the same pin as ``benchmarks/bench_asyncify_speed.py``.
* :func:`build_shell` compiles the command-line shell with ``zig cc`` (cached by
  :func:`~tests.support.corpus.compile_c`); :func:`asyncified_shell` is that binary after
  ``wasync.asyncify`` with every WASI import allowed to suspend, cached on disk by the input
  and the transform's own source code.
* :func:`workload` is the SQL the tests and ``benchmarks/bench_wasi.py`` feed the shell on
  stdin: 10,000 rows inserted into a file database in one transaction, read back by a
  checksum query; :func:`expected_output` computes that query's answer in Python and
  :func:`check_database` checks the file with the host's ``sqlite3`` module.
"""

from __future__ import annotations

import hashlib
import sqlite3
import tarfile
from pathlib import Path
from typing import Final

from tests.support.corpus import REPO_ROOT, atomic_write, cache_dir, compile_c, npm_file

__all__ = [
    "ROWS",
    "SHELL_ARGS",
    "SHELL_CFLAGS",
    "amalgamation",
    "asyncified_shell",
    "build_shell",
    "check_database",
    "expected_output",
    "rows",
    "workload",
]

# npm `sqlite3` 6.0.1 ships SQLite 3.52.0 as an autoconf tarball (amalgamation + shell.c).
NPM_PACKAGE: Final = "sqlite3"
NPM_VERSION: Final = "6.0.1"
NPM_PATH: Final = "deps/sqlite-autoconf-3520000.tar.gz"
NPM_SHA256: Final = "f6b50b0c103392af32a8be15b2b9d25959de9a00a70c3979128aafeaa5338b3f"
AMALGAMATION_DIR: Final = "sqlite-autoconf-3520000"
SOURCES: Final = ("shell.c", "sqlite3.c", "sqlite3.h", "sqlite3ext.h")

# The shell for wasm32-wasi. SQLite itself detects __wasi__ (SQLITE_WASI: no WAL, no
# threads, no extension loading, dot-file locking off); the shell additionally needs libc's
# emulations of signal(), clock() and getpid(), and must not use system()/popen().
SHELL_CFLAGS: Final = (
    "-DSQLITE_THREADSAFE=0",
    "-DSQLITE_OMIT_LOAD_EXTENSION",
    "-DSQLITE_NOHAVE_SYSTEM",
    "-DSQLITE_OMIT_POPEN",
    "-DSQLITE_DQS=0",
    "-D_WASI_EMULATED_SIGNAL",
    "-D_WASI_EMULATED_PROCESS_CLOCKS",
    "-D_WASI_EMULATED_GETPID",
    "-lwasi-emulated-signal",
    "-lwasi-emulated-process-clocks",
    "-lwasi-emulated-getpid",
)

#: argv for the shell: batch mode (no prompts, stop on nothing), database in the preopen.
#: HOME points into the preopen so that the shell's ~/.sqliterc lookup fails quietly.
SHELL_ARGS: Final = ("sqlite3", "-batch", "/data/test.db")
SHELL_ENV: Final = {"HOME": "/data"}
ROWS: Final = 10_000

_ASYNCIFY_IMPORTS: Final = ("wasi_snapshot_preview1.*",)
# The wasync code an asyncified binary depends on (the cache key covers its source).
_TRANSFORM_SOURCES: Final = ("_asyncify", "_binary", "_ir")


def amalgamation() -> Path:
    """The directory holding ``shell.c``, ``sqlite3.c`` and the headers (extracted once).

    Member names are compared with the expected names, never used as paths, and anything
    but a regular file is refused.
    """
    dest = cache_dir() / "sqlite-amalgamation" / AMALGAMATION_DIR
    if all((dest / name).is_file() for name in SOURCES):
        return dest
    nested = npm_file(NPM_PACKAGE, NPM_VERSION, NPM_PATH)
    digest = hashlib.sha256(nested.read_bytes()).hexdigest()
    if digest != NPM_SHA256:
        raise RuntimeError(f"{nested}: sha256 {digest}, expected {NPM_SHA256}")
    wanted = {f"{AMALGAMATION_DIR}/{name}": name for name in SOURCES}
    found: dict[str, bytes] = {}
    with tarfile.open(nested, mode="r:gz") as tar:
        for member in tar:
            name = wanted.get(member.name.removeprefix("./"))
            if name is None:
                continue
            if not member.isreg():
                raise RuntimeError(f"{nested}: {member.name} is not a regular file")
            stream = tar.extractfile(member)
            if stream is None:  # pragma: no cover - regular members always have data
                raise RuntimeError(f"{nested}: cannot read {member.name}")
            with stream:
                data = stream.read()
            if len(data) != member.size:
                raise RuntimeError(f"{nested}: {member.name} is truncated")
            found[name] = data
    missing = sorted(set(SOURCES) - found.keys())
    if missing:
        raise RuntimeError(f"{nested}: no {', '.join(missing)} under {AMALGAMATION_DIR}/")
    for name, data in found.items():
        atomic_write(dest / name, data)
    return dest


def build_shell() -> bytes:
    """The SQLite shell as a ``wasm32-wasi`` command module (``-O2``, stripped; cached)."""
    src = amalgamation()
    return compile_c(
        src / "shell.c", opt="-O2", extra=[*SHELL_CFLAGS, f"-I{src}", str(src / "sqlite3.c")]
    )


def _transform_digest() -> str:
    digest = hashlib.sha256()
    root = REPO_ROOT / "src" / "wasync"
    for package in _TRANSFORM_SOURCES:
        for path in sorted((root / package).rglob("*.py")):
            digest.update(path.relative_to(root).as_posix().encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def asyncified_shell() -> bytes:
    """:func:`build_shell` after ``wasync.asyncify(imports=["wasi_snapshot_preview1.*"])``.

    Cached under ``cache/wasync-asyncify/`` by the input's SHA-256, the options and a digest
    of the transform's source code (``src/wasync/_asyncify``, ``_binary``, ``_ir``).
    """
    import wasync  # noqa: PLC0415 - only the callers that transform need it

    wasm = build_shell()
    key = hashlib.sha256(
        b"\0".join(
            [
                hashlib.sha256(wasm).hexdigest().encode(),
                repr(_ASYNCIFY_IMPORTS).encode(),
                _transform_digest().encode(),
            ]
        )
    ).hexdigest()
    cached = cache_dir() / "wasync-asyncify" / f"{key}.wasm"
    if cached.is_file():
        return cached.read_bytes()
    out = wasync.asyncify(wasm, imports=list(_ASYNCIFY_IMPORTS))
    atomic_write(cached, out)
    return out


def _mix(x: int) -> int:
    """A 32-bit integer hash (lowbias32), the row generator."""
    x &= 0xFFFF_FFFF
    x ^= x >> 16
    x = (x * 0x7FEB352D) & 0xFFFF_FFFF
    x ^= x >> 15
    x = (x * 0x846CA68B) & 0xFFFF_FFFF
    x ^= x >> 16
    return x


def rows(count: int = ROWS) -> list[tuple[int, str, int]]:
    """The rows the workload inserts: ``(id, name, score)``."""
    out = []
    for i in range(1, count + 1):
        h = _mix(i)
        out.append((i, f"row-{h:08x}", h % 1_000_003))
    return out


CHECKSUM_QUERY: Final = (
    "SELECT count(*), sum(score), sum(length(name)), sum(id * score % 65521), "
    "min(name), max(name) FROM t;"
)


def workload(count: int = ROWS) -> bytes:
    """The SQL for the shell's stdin: create, insert ``count`` rows in one transaction (one
    ``INSERT`` statement per row), then the checksum query."""
    lines = [
        "CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT NOT NULL, score INTEGER NOT NULL);",
        "BEGIN;",
    ]
    lines += [f"INSERT INTO t VALUES({i}, '{name}', {score});" for i, name, score in rows(count)]
    lines += ["COMMIT;", CHECKSUM_QUERY]
    return ("\n".join(lines) + "\n").encode()


def expected_output(count: int = ROWS) -> bytes:
    """What the shell prints for the checksum query (``|``-separated, one line)."""
    data = rows(count)
    fields = [
        len(data),
        sum(s for _, _, s in data),
        sum(len(n) for _, n, _ in data),
        sum(i * s % 65521 for i, _, s in data),
        min(n for _, n, _ in data),
        max(n for _, n, _ in data),
    ]
    return ("|".join(str(f) for f in fields) + "\n").encode()


def check_database(path: Path, count: int = ROWS) -> None:
    """Open the database file the shell wrote with the host's ``sqlite3`` and compare every
    row (raises AssertionError on a difference)."""
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        got = db.execute("SELECT id, name, score FROM t ORDER BY id").fetchall()
    finally:
        db.close()
    assert got == rows(count)
