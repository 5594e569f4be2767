"""wasync's async WASI against wasmtime's native WASI, on the same modules, in one run.

Three workloads, each a ``wasm32-wasi`` command built with ``zig cc -O2`` (cached):

* **copy** (``benchmarks/wasi_copy.c``): copy a file (100 MB; 16 MB with ``--quick``) inside a
  preopened host directory with 64 KiB ``read()``/``write()`` calls: 1,600 ``fd_read`` and
  1,600 ``fd_write`` calls of 64 KiB. wasync serves the directory with ``HostDir``, the
  system calls that may wait in worker threads (``offload=True``, the default; reads of
  cached data are made inline with ``RWF_NOWAIT``) or all inline on the event loop
  (``offload=False``).
* **writes** (``benchmarks/wasi_writes.c``): 10,000 ``write(1, "x\\n", 2)``, each one
  ``fd_write`` on stdout; wasmtime writes stdout to a file, wasync to a ``bytearray`` and to a
  file (``open(path, "wb")``: one ``write`` + ``flush`` per call).
* **sqlite**: the SQLite 3.52 shell (``tests/support/sqlite.py``, the program of
  ``tests/test_wasi_sqlite.py``) reads ~500 KB of SQL on stdin, inserts 10,000 rows into
  ``/data/test.db`` in one transaction and prints a checksum over them.

wasync runs every workload under the ``fiber`` and ``thread`` strategies on the plain module
and under ``asyncify`` on the module transformed by ``wasync.asyncify`` (every WASI import may
suspend). Outputs are checked against wasmtime's (and the copy byte for byte against its
source). A run is instantiate + ``_start`` (+ opening the preopens, for wasync); module
compilation is done before timing. Runs are interleaved round-robin and the best of
``--repeat`` is reported, with its ratio to wasmtime's native WASI.

``--profile`` runs the copy once under cProfile per HostDir mode (fiber) and prints where
the time goes.

Usage: python benchmarks/bench_wasi.py [--repeat N] [--quick] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import hashlib
import io
import os
import platform
import pstats
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Final

import wasmtime

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support import sqlite as shell
from tests.support.corpus import compile_c
from tests.support.native_wasi import run_native

import wasync
from wasync._wasi._core import Wasi
from wasync._wasi._hostfs import HostDir

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

    from wasync._runtime._instance import Strategy
    from wasync._wasi._streams import OutputSpec

HERE: Final = Path(__file__).resolve().parent
COPY_C: Final = HERE / "wasi_copy.c"
WRITES_C: Final = HERE / "wasi_writes.c"
STRATEGIES: Final[tuple[Strategy, ...]] = ("fiber", "thread", "asyncify")
ASYNC_IMPORTS: Final = ("wasi_snapshot_preview1.*",)
NATIVE: Final = "wasmtime WASI (native)"
WRITES: Final = 10_000


@dataclass
class Program:
    """One workload's module: plain (native, fiber, thread) and asyncified."""

    name: str
    wasm: bytes
    asyncified: bytes
    plain_module: wasync.Module = field(init=False)
    async_module: wasync.Module = field(init=False)

    def __post_init__(self) -> None:
        self.plain_module = wasync.Module(self.wasm, name=self.name)
        self.async_module = wasync.Module(self.asyncified, name=f"{self.name} (asyncified)")

    def module(self, strategy: Strategy) -> wasync.Module:
        return self.async_module if strategy == "asyncify" else self.plain_module


@dataclass
class Variant:
    label: str
    run: Callable[[], Coroutine[None, None, float]]  # one timed run: its seconds
    best: float = float("inf")
    times: list[float] = field(default_factory=list)


@dataclass
class Workload:
    title: str
    detail: str
    variants: list[Variant] = field(default_factory=list)


def build(source: Path) -> bytes:
    return compile_c(source, opt="-O2")


def transformed(wasm: bytes) -> bytes:
    return wasync.asyncify(wasm, imports=list(ASYNC_IMPORTS))


async def run_wasync(
    program: Program,
    strategy: Strategy,
    args: list[str],
    *,
    env: dict[str, str] | None = None,
    data: Path | None = None,
    offload: bool = True,
    stdin: bytes | None = None,
    stdout: OutputSpec = None,
    stderr: OutputSpec = None,
) -> tuple[float, int]:
    """Run `program` under wasync: (seconds, exit status)."""
    preopens = {"/data": HostDir(data, offload=offload)} if data is not None else {}
    wasi = Wasi(args, env, preopens, stdin=stdin, stdout=stdout, stderr=stderr)
    t0 = time.perf_counter()
    code = await wasi.run(program.module(strategy), strategy=strategy)
    return time.perf_counter() - t0, code


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------
# The workloads


def copy_workload(
    program: Program, engine: wasmtime.Engine, native: wasmtime.Module, tmp: Path, size: int
) -> Workload:
    data = tmp / "copy"
    data.mkdir()
    src, dst = data / "src.bin", data / "dst.bin"
    with src.open("wb") as f:
        block = os.urandom(1 << 20)
        for i in range(size >> 20):
            f.write(block[i % 256 :] + block[: i % 256])  # 1 MiB blocks, all different
    src_digest = file_digest(src)
    args = ["copy", "/data/src.bin", "/data/dst.bin"]
    expected = f"{src.stat().st_size}\n".encode()
    checked: set[str] = set()

    def check(label: str, code: int, stdout: bytes, stderr: bytes) -> None:
        if code != 0 or stdout != expected:
            raise SystemExit(f"copy, {label}: exit {code}, stdout {stdout!r}, stderr {stderr!r}")
        if label not in checked:  # once per variant: hashing 100 MB is not free
            checked.add(label)
            if file_digest(dst) != src_digest:
                raise SystemExit(f"copy, {label}: the copy differs from the source")
        dst.unlink()

    async def native_run() -> float:
        run = run_native(native, engine, args, preopens={"/data": data})
        check(NATIVE, run.exit_code, run.stdout, run.stderr)
        return run.seconds

    def wasync_run(strategy: Strategy, offload: bool, label: str) -> Variant:
        async def go() -> float:
            out, err = bytearray(), bytearray()
            seconds, code = await run_wasync(
                program, strategy, args, data=data, offload=offload, stdout=out, stderr=err
            )
            check(label, code, bytes(out), bytes(err))
            return seconds

        return Variant(label, go)

    workload = Workload(
        "copy",
        f"copy a {size >> 20} MiB file in a preopened directory, 64 KiB read()/write()",
    )
    workload.variants.append(Variant(NATIVE, native_run))
    for offload in (True, False):
        mode = "offload=True" if offload else "offload=False"
        for strategy in STRATEGIES:
            label = f"wasync {strategy}, HostDir {mode}"
            workload.variants.append(wasync_run(strategy, offload, label))
    return workload


def writes_workload(
    program: Program, engine: wasmtime.Engine, native: wasmtime.Module, tmp: Path
) -> Workload:
    args = ["writes", str(WRITES)]
    expected = b"x\n" * WRITES
    out_file = tmp / "writes.out"

    def check(label: str, code: int, stdout: bytes, stderr: bytes) -> None:
        if code != 0 or stdout != expected or stderr != f"done {WRITES}\n".encode():
            raise SystemExit(f"writes, {label}: exit {code}, stderr {stderr!r}")

    async def native_run() -> float:
        run = run_native(native, engine, args, stdout=out_file)
        check(NATIVE, run.exit_code, out_file.read_bytes(), run.stderr)
        return run.seconds

    def wasync_run(strategy: Strategy, to_file: bool, label: str) -> Variant:
        async def go() -> float:
            err = bytearray()
            if to_file:
                with out_file.open("wb") as f:
                    seconds, code = await run_wasync(program, strategy, args, stdout=f, stderr=err)
                out = out_file.read_bytes()
            else:
                buf = bytearray()
                seconds, code = await run_wasync(program, strategy, args, stdout=buf, stderr=err)
                out = bytes(buf)
            check(label, code, out, bytes(err))
            return seconds

        return Variant(label, go)

    workload = Workload("writes", f'{WRITES:,} x write(1, "x\\n", 2)')
    workload.variants.append(Variant(f"{NATIVE}, stdout to a file", native_run))
    for to_file in (False, True):
        sink = "a file" if to_file else "a bytearray"
        for strategy in STRATEGIES:
            label = f"wasync {strategy}, stdout to {sink}"
            workload.variants.append(wasync_run(strategy, to_file, label))
    return workload


def sqlite_workload(
    program: Program, engine: wasmtime.Engine, native: wasmtime.Module, tmp: Path
) -> Workload:
    data = tmp / "sqlite"
    data.mkdir()
    sql = shell.workload()
    stdin_file = tmp / "workload.sql"
    stdin_file.write_bytes(sql)
    expected = shell.expected_output()
    checked: set[str] = set()

    def check(label: str, code: int, stdout: bytes, stderr: bytes) -> None:
        if code != 0 or stdout != expected or stderr:
            raise SystemExit(f"sqlite, {label}: exit {code}, {stdout!r}, stderr {stderr!r}")
        if label not in checked:
            checked.add(label)
            shell.check_database(data / "test.db")
        (data / "test.db").unlink()

    async def native_run() -> float:
        run = run_native(
            native,
            engine,
            shell.SHELL_ARGS,
            env=shell.SHELL_ENV,
            preopens={"/data": data},
            stdin=stdin_file,
        )
        check(NATIVE, run.exit_code, run.stdout, run.stderr)
        return run.seconds

    def wasync_run(strategy: Strategy, offload: bool, label: str) -> Variant:
        async def go() -> float:
            out, err = bytearray(), bytearray()
            seconds, code = await run_wasync(
                program,
                strategy,
                list(shell.SHELL_ARGS),
                env=dict(shell.SHELL_ENV),
                data=data,
                offload=offload,
                stdin=sql,
                stdout=out,
                stderr=err,
            )
            check(label, code, bytes(out), bytes(err))
            return seconds

        return Variant(label, go)

    workload = Workload(
        "sqlite",
        f"SQLite shell: {shell.ROWS:,} INSERTs from stdin in one transaction into a file "
        "database, then a checksum query",
    )
    workload.variants.append(Variant(NATIVE, native_run))
    for offload in (True, False):
        mode = "offload=True" if offload else "offload=False"
        for strategy in STRATEGIES:
            label = f"wasync {strategy}, HostDir {mode}"
            workload.variants.append(wasync_run(strategy, offload, label))
    return workload


# --------------------------------------------------------------------------------------------
# Running and reporting


async def measure(workloads: list[Workload], repeat: int) -> None:
    # One untimed run of everything first: compiles every module for its engine.
    for w in workloads:
        for v in w.variants:
            await v.run()
    for round_ in range(repeat):
        print(f"  run {round_ + 1}/{repeat}...", flush=True)
        for w in workloads:
            for v in w.variants:
                seconds = await v.run()
                v.times.append(seconds)
                v.best = min(v.best, seconds)


def report(workloads: list[Workload], repeat: int) -> None:
    for w in workloads:
        native = w.variants[0].best
        print()
        print(f"### {w.title}: {w.detail}")
        print()
        print("| variant | best | median | vs native |")
        print("|---|---:|---:|---:|")
        for v in w.variants:
            median = sorted(v.times)[len(v.times) // 2]
            print(
                f"| {v.label} | {v.best * 1000:.1f} ms | {median * 1000:.1f} ms "
                f"| {v.best / native:.2f}x |"
            )
    print()
    print(f"best and median of {repeat} runs")


async def profile_copy(workload: Workload) -> None:
    for v in workload.variants:
        if not v.label.startswith("wasync fiber"):
            continue
        await v.run()  # warm
        prof = cProfile.Profile()
        prof.enable()
        seconds = await v.run()
        prof.disable()
        text = io.StringIO()
        stats = pstats.Stats(prof, stream=text)
        stats.sort_stats("tottime").print_stats(18)
        print(f"\n#### cProfile: copy, {v.label} ({seconds * 1000:.0f} ms under the profiler)")
        print(text.getvalue())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--repeat", type=int, default=None, help="timed runs per variant (default 5)")
    ap.add_argument(
        "--quick", action="store_true", help="a 16 MiB copy and 2 runs (unless --repeat is given)"
    )
    ap.add_argument("--size-mb", type=int, default=None, help="size of the copied file, MiB")
    ap.add_argument("--profile", action="store_true", help="profile the copy (fiber) too")
    ap.add_argument(
        "--only",
        default="copy,writes,sqlite",
        help="comma-separated workloads to run (default: copy,writes,sqlite)",
    )
    args = ap.parse_args()
    repeat = args.repeat or (2 if args.quick else 5)
    size = (args.size_mb or (16 if args.quick else 100)) << 20
    only = {name.strip() for name in args.only.split(",")}

    print("building the modules (cached: zig cc, wasync.asyncify)...", flush=True)
    programs: dict[str, Program] = {}
    if "copy" in only:
        wasm = build(COPY_C)
        programs["copy"] = Program("wasi_copy", wasm, transformed(wasm))
    if "writes" in only:
        wasm = build(WRITES_C)
        programs["writes"] = Program("wasi_writes", wasm, transformed(wasm))
    if "sqlite" in only:
        programs["sqlite"] = Program("sqlite3 shell", shell.build_shell(), shell.asyncified_shell())
    engine = wasmtime.Engine()
    natives = {name: wasmtime.Module(engine, p.wasm) for name, p in programs.items()}

    with tempfile.TemporaryDirectory(prefix="wasync-bench-wasi-") as tmpdir:
        tmp = Path(tmpdir)
        workloads: list[Workload] = []
        if "copy" in only:
            workloads.append(copy_workload(programs["copy"], engine, natives["copy"], tmp, size))
        if "writes" in only:
            workloads.append(writes_workload(programs["writes"], engine, natives["writes"], tmp))
        if "sqlite" in only:
            workloads.append(sqlite_workload(programs["sqlite"], engine, natives["sqlite"], tmp))

        async def everything() -> None:
            await measure(workloads, repeat)
            if args.profile and "copy" in only:
                await profile_copy(workloads[0])

        asyncio.run(everything())
        print()
        print(
            f"wasync WASI vs wasmtime {metadata.version('wasmtime')} WASI; Python "
            f"{platform.python_version()}, {os.cpu_count()} CPUs; best of {repeat}"
        )
        report(workloads, repeat)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
