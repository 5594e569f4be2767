"""Run one WASI command under wasmtime's WASI and under wasync's, and compare.

The conformance programs live in ``tests/data/wasi/*.c`` and share
``tests/data/wasi/common.h``.  :func:`build` compiles one of them with
:func:`tests.support.corpus.compile_c` (the header's hash is passed as a ``-D``
flag so that editing the header invalidates the cache); :func:`asyncified`
is the same binary after wasync's Asyncify transform of every WASI import.

A run gets a fresh directory tree (:func:`make_tree`): ``root/sandbox`` is
preopened (as ``/sandbox``), ``root/other`` is a second preopen for the tests
that want one, and ``root/outside`` holds canaries the guest must never reach.
:func:`snapshot` describes a tree (names, types, contents, symlink targets) in
a form that does not depend on where it was built, so that the trees two
runtimes leave behind can be compared.
"""

from __future__ import annotations

import asyncio
import difflib
import errno
import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Final, Literal

import pytest
import trio
import wasmtime

import wasync
from tests.support.corpus import compile_c
from wasync._wasi import _hostfs
from wasync._wasi._core import Wasi
from wasync._wasi._fs import FileSystem

__all__ = [
    "LIBRARIES",
    "PROGRAMS",
    "STRATEGIES",
    "Library",
    "NowaitMode",
    "NowaitSim",
    "Outcome",
    "Run",
    "asyncified",
    "build",
    "host_dir",
    "make_tree",
    "nowait_simulation",
    "run_wasmtime",
    "run_wasync",
    "snapshot",
    "text_diff",
    "wasync_module",
]

PROGRAMS: Final = Path(__file__).resolve().parents[1] / "data" / "wasi"
STRATEGIES: Final = ("fiber", "thread", "asyncify")
Strategy = Literal["fiber", "thread", "asyncify"]
LIBRARIES: Final = ("asyncio", "trio")
Library = Literal["asyncio", "trio"]

CANARY: Final = b"canary: must never change\n"


@cache
def build(name: str) -> bytes:
    """``tests/data/wasi/<name>.c`` compiled for wasm32-wasi (cached)."""
    header = (PROGRAMS / "common.h").read_bytes()
    digest = hashlib.sha256(header).hexdigest()[:16]
    return compile_c(PROGRAMS / f"{name}.c", extra=(f"-DWASYNC_COMMON_H={digest}",))


@cache
def asyncified(name: str) -> bytes:
    """:func:`build` after wasync's Asyncify transform of every WASI import."""
    return wasync.asyncify(build(name), imports=["wasi_snapshot_preview1.*"])


def make_tree(root: Path) -> None:
    """The initial tree every run starts from (see the module docstring)."""
    sandbox = root / "sandbox"
    outside = root / "outside"
    other = root / "other"
    for d in (sandbox, outside, other):
        d.mkdir(parents=True)
    (outside / "canary.txt").write_bytes(CANARY)
    (outside / "canary_dir").mkdir()
    (outside / "canary_dir" / "inner.txt").write_bytes(CANARY)
    (other / "other.txt").write_bytes(b"in the other preopen\n")

    (sandbox / "hello.txt").write_bytes(b"hello, world\n")
    (sandbox / "data.bin").write_bytes(bytes(range(256)))
    (sandbox / "sub" / "deeper").mkdir(parents=True)
    (sandbox / "sub" / "nested.txt").write_bytes(b"nested\n")
    (sandbox / "sub" / "deeper" / "leaf.txt").write_bytes(b"leaf\n")
    (sandbox / "empty").mkdir()
    many = sandbox / "many"
    many.mkdir()
    for i in range(150):
        # long names, so that a listing needs several fd_readdir calls
        (many / f"entry-{i:03d}-{'x' * 40}").write_bytes(f"{i}\n".encode())
    (many / "subdir").mkdir()
    os.symlink("hello.txt", sandbox / "link_to_hello")
    os.symlink("sub", sandbox / "link_to_sub")
    os.symlink("sub/deeper/leaf.txt", sandbox / "link_to_leaf")
    os.symlink("does-not-exist", sandbox / "dangling")
    os.symlink("loop2", sandbox / "loop1")
    os.symlink("loop1", sandbox / "loop2")
    os.symlink("../hello.txt", sandbox / "sub" / "up_to_hello")
    # escapes planted by the host
    os.symlink(str(outside / "canary.txt"), sandbox / "host_abs_escape")
    os.symlink("../outside/canary.txt", sandbox / "host_rel_escape")
    os.symlink("../outside", sandbox / "host_dir_escape")
    os.symlink("../../outside/canary.txt", sandbox / "sub" / "host_rel_escape2")
    os.symlink(str(outside), sandbox / "host_abs_dir_escape")
    os.symlink("/", sandbox / "host_root")


Entry = tuple[str, str, str]  # (path, type, content or target)


def snapshot(root: Path) -> list[Entry]:
    """Every entry under `root`, sorted: ``(relative path, type, detail)`` where
    detail is a file's content (repr of bytes), a symlink's target (with `root`
    written ``<root>``), or "" for a directory."""
    prefix = str(root)
    out: list[Entry] = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            if p.is_symlink():
                out.append((rel, "symlink", os.readlink(p).replace(prefix, "<root>")))
            elif p.is_dir():
                out.append((rel, "dir", ""))
            elif p.is_file():
                out.append((rel, "file", repr(p.read_bytes())))
            else:
                out.append((rel, "other", ""))
    return sorted(out)


@dataclass(frozen=True)
class Run:
    """One invocation of a program: its arguments, environment, standard input
    and preopens (guest path -> directory under the tree's root)."""

    program: str
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    stdin: bytes = b""
    preopens: tuple[tuple[str, str], ...] = (("/sandbox", "sandbox"),)
    readonly: bool = False
    #: the test id (default: the program and its arguments)
    id: str = ""

    @property
    def argv(self) -> list[str]:
        return [self.program, *self.args]

    def label(self) -> str:
        return self.id or "-".join([self.program, *self.args]) or self.program


@dataclass
class Outcome:
    exit_code: int
    stdout: bytes
    stderr: bytes
    tree: list[Entry] = field(default_factory=list)

    def text(self) -> str:
        return self.stdout.decode("utf-8", "replace")


def run_wasmtime(run: Run, root: Path) -> Outcome:
    """`run` under wasmtime's own WASI, in the tree at `root`."""
    engine = wasmtime.Engine()
    module = wasmtime.Module(engine, build(run.program))
    with tempfile.TemporaryDirectory(prefix="wasync-wasmtime-io-") as tmp:
        stdin, out, err = Path(tmp) / "stdin", Path(tmp) / "stdout", Path(tmp) / "stderr"
        stdin.write_bytes(run.stdin)
        config = wasmtime.WasiConfig()
        config.argv = run.argv
        config.env = [[k, v] for k, v in run.env]
        for guest, host in run.preopens:
            config.preopen_dir(str(root / host), guest, not run.readonly)
        config.stdin_file = str(stdin)
        config.stdout_file = str(out)
        config.stderr_file = str(err)
        store = wasmtime.Store(engine)
        store.set_wasi(config)
        linker = wasmtime.Linker(engine)
        linker.define_wasi()
        instance = linker.instantiate(store, module)
        start = instance.exports(store)["_start"]
        assert isinstance(start, wasmtime.Func)
        try:
            start(store)
            code = 0
        except wasmtime.ExitTrap as exc:
            code = int(exc.code)
        del start, instance, store, linker
        return Outcome(code, out.read_bytes(), err.read_bytes(), snapshot(root))


def host_dir(path: Path, *, readonly: bool = False) -> FileSystem:
    from wasync._wasi._hostfs import HostDir  # noqa: PLC0415 - written alongside

    return HostDir(str(path), readonly=readonly)


def wasync_module(program: str, strategy: Strategy) -> wasync.Module:
    if strategy == "asyncify":
        return wasync.Module(asyncified(program))
    return wasync.Module(build(program))


def run_wasync(
    run: Run,
    root: Path,
    strategy: Strategy,
    *,
    during: Callable[[], object] | None = None,
    preopens: Mapping[str, FileSystem] | None = None,
    library: Library = "asyncio",
) -> Outcome:
    """`run` under wasync's WASI (HostDir preopens) with `strategy`, in an
    event loop of `library`."""
    out, err = bytearray(), bytearray()

    async def main() -> int:
        opened = preopens
        if opened is None:
            opened = {
                guest: host_dir(root / host, readonly=run.readonly) for guest, host in run.preopens
            }
        wasi = Wasi(run.argv, list(run.env), opened, stdin=run.stdin, stdout=out, stderr=err)
        return await wasi.run(wasync_module(run.program, strategy), strategy=strategy)

    code = trio.run(main) if library == "trio" else asyncio.run(main())
    return Outcome(code, bytes(out), bytes(err), snapshot(root))


def fresh_root(base: Path, name: str) -> Path:
    root = base / name
    root.mkdir()
    make_tree(root)
    return root


def text_diff(expected: bytes, actual: bytes) -> str:
    """A unified diff of two outputs (wasmtime's first)."""
    return "\n".join(
        difflib.unified_diff(
            expected.decode("utf-8", "replace").splitlines(),
            actual.decode("utf-8", "replace").splitlines(),
            "wasmtime",
            "wasync",
            lineterm="",
        )
    )


# -- RWF_NOWAIT, as a kernel may answer it ----------------------------------------------

NowaitMode = Literal["kernel", "ok", "eagain", "partial", "unsupported"]


@dataclass
class NowaitSim:
    """What :func:`nowait_simulation` answers to ``preadv``/``pwritev`` calls
    with ``RWF_NOWAIT`` (the others go to the real functions), and how many
    such calls it saw.

    ``kernel``: the real call (with the flag); ``ok``: the real call without
    the flag (a file system that supports it and has the data at hand);
    ``eagain``: EAGAIN (it would wait); ``partial``: one byte, then EAGAIN,
    alternately; ``unsupported``: EOPNOTSUPP (ext4 and tmpfs for buffered
    writes, tmpfs for reads)."""

    flag: int
    reads: NowaitMode = "kernel"
    writes: NowaitMode = "kernel"
    read_calls: int = 0
    write_calls: int = 0


def _first_byte(buffers: Sequence[memoryview]) -> list[memoryview]:
    return [next((b[:1] for b in buffers if len(b)), memoryview(bytearray()))]


@contextmanager
def nowait_simulation(
    reads: NowaitMode = "kernel", writes: NowaitMode = "kernel"
) -> Iterator[NowaitSim]:
    """Make HostDir's ``RWF_NOWAIT`` attempts see `reads`/`writes` (see
    :class:`NowaitSim`), on any platform with ``preadv``/``pwritev`` (a stand-in
    flag where ``os.RWF_NOWAIT`` is missing). Files opened inside the block
    try the flag; the simulation ends with the block."""
    if not (hasattr(os, "preadv") and hasattr(os, "pwritev")):
        pytest.skip("needs os.preadv and os.pwritev")
    flag = getattr(os, "RWF_NOWAIT", 0x8)
    sim = NowaitSim(flag, reads, writes)
    real_preadv, real_pwritev = os.preadv, os.pwritev

    def answer(mode: NowaitMode, calls: int) -> None:
        if mode == "eagain" or (mode == "partial" and calls % 2 == 0):
            raise BlockingIOError(errno.EAGAIN, "would block (simulated)")
        if mode == "unsupported":
            raise OSError(errno.EOPNOTSUPP, "not supported (simulated)")

    def preadv(fd: int, buffers: Sequence[memoryview], offset: int, flags: int = 0, /) -> int:
        if not flags & flag:
            return real_preadv(fd, buffers, offset, flags)
        sim.read_calls += 1
        answer(sim.reads, sim.read_calls)
        if sim.reads == "kernel":
            return real_preadv(fd, buffers, offset, flags)
        if sim.reads == "partial":
            buffers = _first_byte(buffers)
        return real_preadv(fd, buffers, offset)

    def pwritev(fd: int, buffers: Sequence[memoryview], offset: int, flags: int = 0, /) -> int:
        if not flags & flag:
            return real_pwritev(fd, buffers, offset, flags)
        sim.write_calls += 1
        answer(sim.writes, sim.write_calls)
        if sim.writes == "kernel":
            return real_pwritev(fd, buffers, offset, flags)
        if sim.writes == "partial":
            buffers = _first_byte(buffers)
        return real_pwritev(fd, buffers, offset)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_hostfs, "_RWF_NOWAIT", flag)
        mp.setattr(os, "preadv", preadv)
        mp.setattr(os, "pwritev", pwritev)
        yield sim
