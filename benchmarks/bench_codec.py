"""Codec benchmark: wasync's reader/IR/typing/writer beside Binaryen's wasm-opt.

Measures, on real-world modules from npm (best of --repeat runs each):

* lazy:  decode_module + encode_module, bodies untouched (copied byte for byte);
* full:  decode every body into IR, stack-type every function, re-encode every
         body and write the module from the re-encoded bodies;
* wasm-opt: Binaryen's ``wasm-opt --all-features IN -o OUT`` (parse + validate + write, no
         passes), native code, in the same run.

Usage: python benchmarks/bench_codec.py [--repeat N] [--all]
(--all adds the 18 MB Rust module.) Prints the table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.corpus import REAL_WORLD, NpmWasm

import wasync

if TYPE_CHECKING:
    from collections.abc import Callable


@dataclass
class Result:
    name: str
    size: int
    instructions: int
    lazy: float
    decode: float
    typing: float
    encode: float
    wasm_opt: float | None

    @property
    def full(self) -> float:
        return self.decode + self.typing + self.encode


def best(repeat: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def lazy_round_trip(data: bytes) -> None:
    if wasync.encode_module(wasync.decode_module(data)) != data:
        raise SystemExit("lazy round trip is not byte-identical")


def full_phases(data: bytes) -> tuple[float, float, float, int]:
    t0 = time.perf_counter()
    m = wasync.decode_module(data)
    nimp = m.num_imported_funcs
    bodies = [m.body(nimp + i) for i in range(len(m.codes))]
    t1 = time.perf_counter()
    mt = wasync.ModuleTypes.from_module(m)
    for i, body in enumerate(bodies):
        wasync.type_function(m, nimp + i, body=body, module_types=mt)
    t2 = time.perf_counter()
    m.codes = [wasync.FuncBody(b.encode()) for b in bodies]
    out = wasync.encode_module(m)
    t3 = time.perf_counter()
    if out != data:
        raise SystemExit("full re-encode is not byte-identical")
    return t1 - t0, t2 - t1, t3 - t2, sum(len(b.instrs) for b in bodies)


def wasm_opt_time(path: Path, repeat: int) -> float | None:
    exe = shutil.which("wasm-opt")
    if exe is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.wasm"
        cmd = [exe, "--all-features", str(path), "-o", str(out)]
        subprocess.run(cmd, check=True, capture_output=True)  # warm the file cache
        return best(repeat, lambda: subprocess.run(cmd, check=True, capture_output=True))


def measure(pkg: NpmWasm, repeat: int) -> Result:
    path = pkg.fetch()
    data = path.read_bytes()
    lazy = best(repeat, lambda: lazy_round_trip(data))
    runs = [full_phases(data) for _ in range(repeat)]
    decode = min(r[0] for r in runs)
    typing = min(r[1] for r in runs)
    encode = min(r[2] for r in runs)
    return Result(
        name=f"{pkg.spec} {Path(pkg.path).name}",
        size=len(data),
        instructions=runs[0][3],
        lazy=lazy,
        decode=decode,
        typing=typing,
        encode=encode,
        wasm_opt=wasm_opt_time(path, repeat),
    )


def ratio(a: float, b: float | None) -> str:
    return "n/a" if not b else f"{a / b:.2f}x"


def wasm_opt_version() -> str:
    exe = shutil.which("wasm-opt")
    if exe is None:
        return "not installed"
    proc = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True)
    return proc.stdout.strip()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--all", action="store_true", help="include the 18 MB swc module")
    args = ap.parse_args()
    pkgs = [p for p in REAL_WORLD if args.all or (p.size or 0) < 5_000_000]
    results = [measure(p, args.repeat) for p in pkgs]
    print(
        f"python {platform.python_version()}, {platform.machine()}, "
        f"{wasm_opt_version()}, best of {args.repeat}\n"
    )
    header = (
        "| module | size | instructions | lazy read+write | full: decode + typing + encode "
        "| wasm-opt in -o out | full / wasm-opt | lazy / wasm-opt |"
    )
    print(header)
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        wo = "n/a" if r.wasm_opt is None else f"{r.wasm_opt:.3f} s"
        print(
            f"| {r.name} | {r.size:,} B | {r.instructions:,} | {r.lazy:.3f} s "
            f"| {r.full:.3f} s ({r.decode:.3f} + {r.typing:.3f} + {r.encode:.3f}) "
            f"| {wo} | {ratio(r.full, r.wasm_opt)} | {ratio(r.lazy, r.wasm_opt)} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
