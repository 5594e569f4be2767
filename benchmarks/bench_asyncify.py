"""Asyncify transform benchmark: wasync beside Binaryen's wasm-opt, in one run.

For each real-world module (npm) and each import set, transform with:

* wasync (`wasync.asyncify`, pure Python, no general optimizer),
* Binaryen `wasm-opt --asyncify` (native; no optimisation),
* Binaryen `wasm-opt --asyncify -O1`,

and report output size (as a multiple of the input) and transform time.

Usage: python benchmarks/bench_asyncify.py [--repeat N]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.corpus import REAL_WORLD

import wasync

IMPORT_SETS: dict[str, list[str] | None] = {
    "all imports": None,
    "I/O imports": ["wasi_snapshot_preview1.fd_*", "env.__syscall_*"],
}


def wasm_opt(path: Path, imports: list[str] | None, opt: str | None) -> tuple[int, float]:
    exe = shutil.which("wasm-opt")
    if exe is None:
        raise SystemExit("wasm-opt (Debian package binaryen) is needed for the comparison")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.wasm"
        cmd = [exe, "--all-features", str(path), "--asyncify", "-o", str(out)]
        if imports:
            cmd.append("--pass-arg=asyncify-imports@" + ",".join(imports))
        if opt:
            cmd.append(opt)
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        return out.stat().st_size, time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    print(
        "| module | imports | wasync size | wasync time | wasm-opt --asyncify size | time "
        "| wasm-opt --asyncify -O1 size | time | wasync / -O1 (size, time) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for pkg in REAL_WORLD:
        if (pkg.size or 0) > 5_000_000:
            continue  # the 18 MB module: Binaryen takes minutes per run
        path = pkg.fetch()
        data = path.read_bytes()
        n = len(data)
        label = pkg.spec
        for set_name, imports in IMPORT_SETS.items():
            times = []
            size = 0
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                out = wasync.asyncify(data, imports=imports)
                times.append(time.perf_counter() - t0)
                size = len(out)
            ours = min(times)
            plain = min(
                (wasm_opt(path, imports, None) for _ in range(args.repeat)), key=lambda r: r[1]
            )
            o1 = min(
                (wasm_opt(path, imports, "-O1") for _ in range(args.repeat)), key=lambda r: r[1]
            )
            print(
                f"| {label} | {set_name} | {size / n:.2f}x | {ours:.2f} s "
                f"| {plain[0] / n:.2f}x | {plain[1]:.2f} s | {o1[0] / n:.2f}x | {o1[1]:.2f} s "
                f"| {size / o1[0]:.2f}, {ours / o1[1]:.2f} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
