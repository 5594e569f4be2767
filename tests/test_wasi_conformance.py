"""WASI conformance: C programs run under wasmtime's WASI and under wasync's.

Every program in ``tests/data/wasi`` (compiled with zig's wasi-libc) runs
once under wasmtime (``wasmtime.WasiConfig``, the reference) and under wasync
on each strategy ("fiber", "thread", and "asyncify" on the output of wasync's
own Asyncify transform), each time in a fresh copy of the same directory tree
(:func:`tests.support.wasi_harness.make_tree`).  Standard output, standard
error, the exit status and the tree left behind must be identical.

The programs print only deterministic things (return values, errno names,
contents, sorted listings, properties of timestamps rather than timestamps).
Where wasmtime itself is at odds with WASI or POSIX the check is left out of
the comparison and asserted for wasync alone (see ``test_wasync_only``).

wasync runs them under asyncio, and a subset under trio too (``*_under_trio``):
the outcome must not depend on the event loop.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
import wasmtime

from tests.support.wasi_harness import (
    LIBRARIES,
    STRATEGIES,
    Entry,
    Library,
    NowaitMode,
    Outcome,
    Run,
    Strategy,
    fresh_root,
    host_dir,
    nowait_simulation,
    run_wasmtime,
    run_wasync,
    snapshot,
    text_diff,
    wasync_module,
)
from wasync._wasi._core import Wasi
from wasync._wasi._hostfs import HostDir
from wasync._wasi._memfs import MemoryFS, Symlink, Tree, TreeEntry

ENV = (("WASYNC_KEY", "v=1"), ("EMPTY", ""), ("PATH", "/bin:/usr/bin"))
TWO_PREOPENS = (("/sandbox", "sandbox"), ("/other", "other"))

CASES = [
    Run("basics", ("7",), env=ENV, stdin=b"some input\n", id="basics"),
    Run("basics", ("exit", "0")),
    Run("basics", ("exit", "1")),
    Run("basics", ("exit", "42")),
    Run("basics", ("exit", "125", "raw")),
    Run("basics", ("exit", "3", "raw")),
    Run("fdops"),
    Run("paths"),
    Run("readdir"),
    Run("fds", preopens=TWO_PREOPENS),
]

_REFERENCE: dict[Run, Outcome] = {}


def reference(run: Run, tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    """wasmtime's outcome for `run` (computed once per run)."""
    if run not in _REFERENCE:
        base = tmp_path_factory.mktemp("wasmtime")
        _REFERENCE[run] = run_wasmtime(run, fresh_root(base, "root"))
    return _REFERENCE[run]


def assert_same(expected: Outcome, actual: Outcome) -> None:
    assert actual.stdout == expected.stdout, "stdout differs:\n" + text_diff(
        expected.stdout, actual.stdout
    )
    assert actual.stderr == expected.stderr, "stderr differs:\n" + text_diff(
        expected.stderr, actual.stderr
    )
    assert actual.exit_code == expected.exit_code
    assert actual.tree == expected.tree


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("run", CASES, ids=Run.label)
def test_conformance(
    run: Run, strategy: Strategy, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    expected = reference(run, tmp_path_factory)
    actual = run_wasync(run, fresh_root(tmp_path, "root"), strategy)
    assert_same(expected, actual)


# Under trio: clocks, sleeping and poll_oneoff (basics), file descriptors and
# reads and writes in HostDir's worker threads (fdops, fds), paths and readdir.
TRIO_CASES = [CASES[0], Run("fdops"), Run("fds", preopens=TWO_PREOPENS), Run("readdir")]


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("run", TRIO_CASES, ids=Run.label)
def test_conformance_under_trio(
    run: Run, strategy: Strategy, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    expected = reference(run, tmp_path_factory)
    actual = run_wasync(run, fresh_root(tmp_path, "root"), strategy, library="trio")
    assert_same(expected, actual)


# -- where wasync deliberately differs from wasmtime ------------------------------------
#
# Each program's "divergent" mode holds the checks left out of the comparison
# above; the comment beside each in the C source says what wasmtime does.
# wasync's output is pinned here, and wasmtime's is asserted to differ from it
# (so that a wasmtime upgrade that changes its mind shows up).

DIVERGENT: dict[Run, str] = {
    Run("basics", ("divergent",)): """\
== bad descriptors in poll_oneoff
__wasi_poll_oneoff(subs, events, 2, &n) -> OK
nevents=1 userdata=77 error=EBADF type=1
poll(&p, 1, 0) = 1
revents POLLNVAL=1
""",
    Run("fdops", ("divergent",)): """\
== fd_allocate
write(fd, "abc", 3) = 3
posix_fallocate(0, 100) = OK
fstat after fallocate: file size=100 nlink=1
posix_fallocate(0, 10) = OK
fstat no shrinking: file size=100 nlink=1
posix_fallocate(read-only) = EBADF
posix_fallocate(dir) = EBADF
posix_fallocate(closed) = EBADF
== pwrite on an O_APPEND descriptor
write(fd, "one\\n", 4) = 4
pwrite(fd, "ONE", 3, 0) = 3
write(fd, "two\\n", 4) = 4
content /sandbox/append.txt (8 bytes): ONE\\x0atwo\\x0a
""",
    Run("paths", ("divergent",)): """\
== rmdir with a trailing slash
mkdir("/sandbox/d9", 0755) = 0
rmdir("/sandbox/d9/") = 0
== path operations relative to a regular file
open("/sandbox/hello.txt", O_RDONLY) = fd
e = __wasi_path_open(hello, 0, "x", 0, __WASI_RIGHTS_FD_READ, 0, 0, &nfd) -> ENOTDIR
e = __wasi_path_remove_directory(hello, "x") -> ENOTDIR
e = __wasi_path_create_directory(hello, "x") -> ENOTDIR
e = __wasi_path_unlink_file(hello, "x") -> ENOTDIR
close(hello) = 0
== linkat(AT_SYMLINK_FOLLOW)
symlink("hello.txt", "/sandbox/sym") = 0
linkat(AT_FDCWD, "/sandbox/sym", AT_FDCWD, "/sandbox/hard_follow", AT_SYMLINK_FOLLOW) = 0
lstat /sandbox/hard_follow: file size=13 nlink=2
lstat /sandbox/hello.txt: file size=13 nlink=2
""",
    Run("fds", ("divergent",), stdin=b"input", preopens=TWO_PREOPENS): """\
== rename and link across preopens
rename("/sandbox/hello.txt", "/other/moved.txt") = -1 EXDEV
link("/sandbox/data.bin", "/other/hard.bin") = -1 EXDEV
== lowest free descriptor first
__wasi_fd_close(4) -> OK
next descriptor reuses 4: 1
__wasi_fd_close(0) -> OK
closing stdin frees 0: 1
read(0, buf, 5) = 5
stdin is now hello.txt: hello
""",
    # wasmtime traps ("Invalid enum value") instead of returning EINVAL
    Run("basics", ("enums",)): """\
== invalid enum values
__wasi_clock_time_get(99, 1, &t) -> EINVAL
__wasi_clock_res_get(99, &t) -> EINVAL
__wasi_fd_seek(fd, 0, 7, &pos) -> EINVAL
__wasi_fd_advise(fd, 0, 0, 9) -> EINVAL
""",
}


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("run", list(DIVERGENT), ids=Run.label)
def test_wasync_only(run: Run, strategy: Strategy, tmp_path: Path) -> None:
    actual = run_wasync(run, fresh_root(tmp_path, "root"), strategy)
    assert actual.text() == DIVERGENT[run], text_diff(DIVERGENT[run].encode(), actual.stdout)
    assert actual.exit_code == 0


@pytest.mark.parametrize("strategy", ["fiber", "asyncify"])
@pytest.mark.parametrize("run", list(DIVERGENT), ids=Run.label)
def test_wasync_only_under_trio(run: Run, strategy: Strategy, tmp_path: Path) -> None:
    actual = run_wasync(run, fresh_root(tmp_path, "root"), strategy, library="trio")
    assert actual.text() == DIVERGENT[run], text_diff(DIVERGENT[run].encode(), actual.stdout)
    assert actual.exit_code == 0


@pytest.mark.parametrize("run", list(DIVERGENT), ids=Run.label)
def test_wasmtime_still_differs(run: Run, tmp_path: Path) -> None:
    if "enums" in run.args:
        with pytest.raises(wasmtime.WasmtimeError, match="Invalid enum value"):
            run_wasmtime(run, fresh_root(tmp_path, "root"))
        return
    outcome = run_wasmtime(run, fresh_root(tmp_path, "root"))
    assert outcome.text() != DIVERGENT[run]


# -- file reads and writes served at once, or not -------------------------------------
#
# wasync first offers fd_read/fd_write on a file to the backend synchronously:
# HostDir(offload=True) tries RWF_NOWAIT and hands what it could not do to a
# worker thread; HostDir(offload=False) and the "thread" strategy do the call at
# once. The outcome never depends on which: the same programs against wasmtime,
# with every answer a kernel may give to RWF_NOWAIT.

FILE_IO = [Run("fdops"), Run("fds", preopens=TWO_PREOPENS)]
NOWAIT: list[tuple[NowaitMode, NowaitMode]] = [
    ("ok", "ok"),  # everything at hand
    ("eagain", "eagain"),  # nothing at hand: every call goes to a worker
    ("partial", "partial"),  # one byte at once, the rest in a worker
    ("unsupported", "unsupported"),  # the file system refuses the flag
]


@pytest.mark.parametrize("strategy", ["fiber", "asyncify"])
@pytest.mark.parametrize(("reads", "writes"), NOWAIT, ids=str)
@pytest.mark.parametrize("run", FILE_IO, ids=Run.label)
def test_conformance_whatever_rwf_nowait_says(
    run: Run,
    reads: NowaitMode,
    writes: NowaitMode,
    strategy: Strategy,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    expected = reference(run, tmp_path_factory)
    with nowait_simulation(reads, writes) as sim:
        actual = run_wasync(run, fresh_root(tmp_path, "root"), strategy)
    assert_same(expected, actual)
    assert sim.read_calls > 0
    if run.program == "fdops":
        assert sim.write_calls > 0


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("run", FILE_IO, ids=Run.label)
def test_conformance_inline(
    run: Run, strategy: Strategy, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """HostDir(offload=False): every file call made at once, on the loop."""
    expected = reference(run, tmp_path_factory)
    root = fresh_root(tmp_path, "root")
    preopens = {guest: HostDir(root / host, offload=False) for guest, host in run.preopens}
    actual = run_wasync(run, root, strategy, preopens=preopens)
    for fs in preopens.values():
        fs.close()
    assert_same(expected, actual)


def _tree(path: Path) -> dict[str, TreeEntry]:
    out: dict[str, TreeEntry] = {}
    for entry in os.scandir(path):
        p = Path(entry.path)
        if entry.is_symlink():
            out[entry.name] = Symlink(os.readlink(p))
        elif entry.is_dir():
            out[entry.name] = _tree(p)
        else:
            out[entry.name] = p.read_bytes()
    return out


def _entries(tree: Tree, prefix: str, root: Path) -> list[Entry]:
    out: list[Entry] = []
    for name, value in tree.items():
        rel = f"{prefix}/{name}"
        if isinstance(value, Symlink):
            out.append((rel, "symlink", value.target.replace(str(root), "<root>")))
        elif isinstance(value, bytes | bytearray):
            out.append((rel, "file", repr(bytes(value))))
        else:
            out.append((rel, "dir", ""))
            out += _entries(value, rel, root)
    return out


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("run", FILE_IO, ids=Run.label)
def test_conformance_memory_fs(
    run: Run,
    strategy: Strategy,
    library: Library,
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """MemoryFS preopens holding the same trees: the same outcome (MemoryFS
    serves file calls at once on the loop's thread, in coroutines off it)."""
    expected = reference(run, tmp_path_factory)
    root = fresh_root(tmp_path, "root")
    preopens = {guest: MemoryFS(_tree(root / host)) for guest, host in run.preopens}
    actual = run_wasync(run, root, strategy, preopens=preopens, library=library)
    hosts = {host for _, host in run.preopens}
    tree = [e for e in snapshot(root) if e[0].partition("/")[0] not in hosts]
    for (guest, host), fs in zip(run.preopens, preopens.values(), strict=True):
        assert isinstance(fs, MemoryFS), guest
        tree += [(host, "dir", ""), *_entries(fs.to_dict(), host, root)]
    actual.tree = sorted(tree)
    assert_same(expected, actual)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_conformance_stdin_stream(
    strategy: Strategy, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """stdin as an asyncio.StreamReader (poll()ed, then read: what poll read
    ahead is served at once on the loop's thread) gives what bytes give."""
    run = CASES[0]
    assert run.stdin
    expected = reference(run, tmp_path_factory)
    root = fresh_root(tmp_path, "root")
    out, err = bytearray(), bytearray()

    async def main() -> int:
        reader = asyncio.StreamReader()
        reader.feed_data(run.stdin)
        reader.feed_eof()
        preopens = {guest: host_dir(root / host) for guest, host in run.preopens}
        wasi = Wasi(run.argv, list(run.env), preopens, stdin=reader, stdout=out, stderr=err)
        return await wasi.run(wasync_module(run.program, strategy), strategy=strategy)

    code = asyncio.run(main())
    assert_same(expected, Outcome(code, bytes(out), bytes(err), snapshot(root)))
