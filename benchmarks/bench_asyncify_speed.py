"""Speed of asyncified code when nothing suspends: SQLite under wasmtime, wasync beside Binaryen.

``benchmarks/sqlite_bench.c`` (100,000 inserts in one transaction, two indexes, 5,000 indexed
point lookups, 1,000 index range scans, one GROUP BY over the table, all in ``:memory:``) is
compiled together with the SQLite amalgamation for ``wasm32-wasi`` with ``zig cc -O2``.  The
amalgamation comes from the npm package ``sqlite3`` (pinned below), which ships it as the
nested tarball ``deps/sqlite-autoconf-*.tar.gz``.

The module is then transformed so that the ``wasi_snapshot_preview1.fd_*`` imports may unwind:

* by wasync (``wasync.asyncify``): Binaryen's conservative rule for ``call_indirect``, with
  ``precise_indirect=True`` and with ``ignore_indirect=True``;
* by Binaryen: ``wasm-opt --asyncify -O1`` (the reference), ``-O3``, and ``-O1`` with
  ``asyncify-ignore-indirect``; ``wasm-opt -O1`` alone (no Asyncify) is shown for scale.

Every variant runs the program's ``_start`` under wasmtime's own WASI.  No import suspends, so
the transformed modules just run and the time measured is the instrumentation's overhead.  Runs
are interleaved round-robin and the best of ``--repeat`` is reported (module compilation is
not timed); the program's output (checksums) must be identical in every variant.

Usage: python benchmarks/bench_asyncify_speed.py [--repeat N]
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Final

import wasmtime

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.corpus import cache_dir, compile_c
from tests.support.native_wasi import run_native
from tests.support.sqlite import AMALGAMATION_DIR, NPM_PACKAGE, NPM_VERSION, amalgamation

import wasync
from wasync import ExternKind

if TYPE_CHECKING:
    from collections.abc import Callable

HERE: Final = Path(__file__).resolve().parent
BENCH_C: Final = HERE / "sqlite_bench.c"

# The amalgamation: npm `sqlite3` 6.0.1 ships SQLite 3.52.0 as an autoconf tarball.

# SQLite for wasm32-wasi: no threads, no dlopen; temporary tables and sorter spills stay in
# memory (the program has no preopened directory, so a temporary file would be "disk I/O
# error"); plus a few of SQLite's recommended options that drop unused bookkeeping.
SQLITE_CFLAGS: Final = (
    "-DSQLITE_THREADSAFE=0",
    "-DSQLITE_OMIT_LOAD_EXTENSION",
    "-DSQLITE_TEMP_STORE=3",
    "-DSQLITE_DEFAULT_MEMSTATUS=0",
    "-DSQLITE_OMIT_SHARED_CACHE",
    "-DSQLITE_OMIT_DEPRECATED",
    "-DSQLITE_DQS=0",
)

ASYNC_IMPORTS: Final = ("wasi_snapshot_preview1.fd_*",)
REFERENCE: Final = "binaryen --asyncify -O1"
# What zig's wasm32 "generic" CPU emits (Binaryen 108's defaults lack the first three).
WASM_OPT_FEATURES: Final = (
    "--enable-bulk-memory",
    "--enable-nontrapping-float-to-int",
    "--enable-sign-ext",
    "--enable-mutable-globals",
)


# --------------------------------------------------------------------------------------------
# Building the benchmark module


def build() -> bytes:
    """``sqlite_bench.c`` + ``sqlite3.c`` as a ``wasm32-wasi`` command (cached by compile_c)."""
    src = amalgamation()
    return compile_c(BENCH_C, opt="-O2", extra=[*SQLITE_CFLAGS, f"-I{src}", str(src / "sqlite3.c")])


# --------------------------------------------------------------------------------------------
# Variants


@dataclass
class Variant:
    name: str
    wasm: bytes
    transform_seconds: float | None = None
    instrumented: int | None = None  # functions the transform instrumented (its own count)
    reads_state: int | None = None  # functions that read the Asyncify state global
    best: float = float("inf")
    module: wasmtime.Module | None = None


def wasync_variant(
    name: str, wasm: bytes, *, precise_indirect: bool = False, ignore_indirect: bool = False
) -> Variant:
    t0 = time.perf_counter()
    out, report = wasync.asyncify_with_report(
        wasm,
        imports=list(ASYNC_IMPORTS),
        precise_indirect=precise_indirect,
        ignore_indirect=ignore_indirect,
    )
    seconds = time.perf_counter() - t0
    return Variant(name, out, seconds, len(report.instrumented), state_readers(out))


def wasm_opt() -> str:
    exe = shutil.which("wasm-opt")
    if exe is None:
        raise SystemExit("wasm-opt (Debian package binaryen) is needed for the comparison")
    return exe


def wasm_opt_version() -> str:
    proc = subprocess.run([wasm_opt(), "--version"], capture_output=True, text=True, check=False)
    return proc.stdout.strip() or "wasm-opt"


def wasm_opt_variant(name: str, wasm: bytes, *args: str) -> Variant:
    exe = wasm_opt()
    with tempfile.TemporaryDirectory(prefix="wasync-bench-") as tmp:
        src, dst = Path(tmp) / "in.wasm", Path(tmp) / "out.wasm"
        src.write_bytes(wasm)
        t0 = time.perf_counter()
        proc = subprocess.run(
            [exe, *WASM_OPT_FEATURES, str(src), "-o", str(dst), *args],
            capture_output=True,
            text=True,
            check=False,
        )
        seconds = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(f"wasm-opt {' '.join(args)} failed:\n{proc.stderr}{proc.stdout}")
        out = dst.read_bytes()
    readers = state_readers(out) if "--asyncify" in args else None
    return Variant(name, out, seconds, None, readers)


def state_readers(wasm: bytes) -> int | None:
    """How many functions read the Asyncify state global, the exported ``asyncify_*`` API
    excluded (the global is the one ``asyncify_get_state`` returns); None if not found."""
    module = wasync.decode_module(wasm)
    exports = {e.name: e.index for e in module.exports if e.kind is ExternKind.FUNC}
    get_state = exports.get("asyncify_get_state")
    if get_state is None:
        return None
    state = {i.imm for i in module.body(get_state).instrs if i.name == "global.get"}
    if len(state) != 1:
        return None
    api = {index for name, index in exports.items() if name.startswith("asyncify_")}
    nimp = module.num_imported_funcs
    count = 0
    for index in range(nimp, nimp + len(module.codes)):
        if index in api:
            continue
        if any(i.name == "global.get" and i.imm in state for i in module.body(index).instrs):
            count += 1
    return count


# --------------------------------------------------------------------------------------------
# Running


def run_once(engine: wasmtime.Engine, module: wasmtime.Module) -> tuple[float, bytes]:
    """Instantiate and run ``_start`` once; the elapsed time and the program's stdout."""
    run = run_native(module, engine, ["sqlite_bench"])
    if run.exit_code != 0:
        raise SystemExit(f"exit code {run.exit_code}: {run.stderr.decode(errors='replace')}")
    return run.seconds, run.stdout


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3, help="runs per variant (best is reported)")
    args = ap.parse_args()
    if shutil.which("npm") is None and not (cache_dir() / "sqlite-amalgamation").is_dir():
        raise SystemExit("npm is needed to fetch the SQLite amalgamation (npm package sqlite3)")
    if importlib.util.find_spec("ziglang") is None:
        raise SystemExit("the ziglang package is needed to compile the benchmark")

    print(f"building {BENCH_C.name} + SQLite amalgamation ({NPM_PACKAGE}@{NPM_VERSION})...")
    base = build()
    imports = ",".join(ASYNC_IMPORTS)
    asyncify = ["--asyncify", f"--pass-arg=asyncify-imports@{imports}"]
    makers: list[tuple[str, Callable[[], Variant]]] = [
        ("untransformed", lambda: Variant("untransformed", base)),
        ("wasync", lambda: wasync_variant("wasync", base)),
        (
            "wasync precise_indirect",
            lambda: wasync_variant("wasync precise_indirect", base, precise_indirect=True),
        ),
        (
            "wasync ignore_indirect",
            lambda: wasync_variant("wasync ignore_indirect", base, ignore_indirect=True),
        ),
        (REFERENCE, lambda: wasm_opt_variant(REFERENCE, base, *asyncify, "-O1")),
        (
            "binaryen --asyncify -O3",
            lambda: wasm_opt_variant("binaryen --asyncify -O3", base, *asyncify, "-O3"),
        ),
        (
            "binaryen --asyncify ignore-indirect -O1",
            lambda: wasm_opt_variant(
                "binaryen --asyncify ignore-indirect -O1",
                base,
                *asyncify,
                "--pass-arg=asyncify-ignore-indirect",
                "-O1",
            ),
        ),
        (
            "binaryen -O1 (no asyncify)",
            lambda: wasm_opt_variant("binaryen -O1 (no asyncify)", base, "-O1"),
        ),
    ]
    engine = wasmtime.Engine()
    variants: list[Variant] = []
    for label, make in makers:
        print(f"  {label}...", end="", flush=True)
        variant = make()
        variant.module = wasmtime.Module(engine, variant.wasm)  # also validates it
        variants.append(variant)
        took = variant.transform_seconds
        print(f" {len(variant.wasm):,} bytes" + (f", {took:.1f} s" if took is not None else ""))

    expected: bytes | None = None
    for round_ in range(args.repeat):
        print(f"  run {round_ + 1}/{args.repeat}...", flush=True)
        for variant in variants:
            assert variant.module is not None
            elapsed, stdout = run_once(engine, variant.module)
            if expected is None:
                expected = stdout
                print(f"  output: {stdout.decode(errors='replace').strip()}")
            elif stdout != expected:
                raise SystemExit(
                    f"{variant.name}: output differs:\n{stdout!r}\nexpected\n{expected!r}"
                )
            variant.best = min(variant.best, elapsed)

    plain, ref = variants[0], next(v for v in variants if v.name == REFERENCE)
    nfuncs = len(wasync.decode_module(base).codes)
    print()
    print(
        f"{BENCH_C.name} with SQLite from {NPM_PACKAGE}@{NPM_VERSION} ({AMALGAMATION_DIR}): "
        f"{len(base):,} bytes, {nfuncs:,} functions; may unwind: {imports}; "
        f"wasmtime {metadata.version('wasmtime')}, {wasm_opt_version()}; best of {args.repeat}"
    )
    print()
    print(
        "| variant | size | run time | vs untransformed | vs Binaryen -O1 "
        "| instrumented | read state | transform |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for v in variants:
        inst = f"{v.instrumented:,}" if v.instrumented is not None else "-"
        reads = f"{v.reads_state:,}" if v.reads_state is not None else "-"
        secs = f"{v.transform_seconds:.1f} s" if v.transform_seconds is not None else "-"
        print(
            f"| {v.name} | {len(v.wasm) / len(plain.wasm):.2f}x | {v.best:.3f} s "
            f"| {v.best / plain.best:.2f}x | {v.best / ref.best:.2f}x | {inst} | {reads} "
            f"| {secs} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
