"""wasmtime's own WASI (``wasmtime.WasiConfig``, ``Linker.define_wasi``): the reference that
wasync's Python WASI is compared with, in tests and in ``benchmarks/bench_wasi.py``.

:func:`run_native` runs a command module's ``_start`` with arguments, environment, preopened
host directories and standard streams from and to files, and times the run (instantiation
included, compilation not: pass an already compiled :class:`wasmtime.Module`).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import wasmtime

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = ["NativeRun", "run_native"]


@dataclass(frozen=True)
class NativeRun:
    """The outcome of :func:`run_native`."""

    exit_code: int
    stdout: bytes
    stderr: bytes
    seconds: float  # instantiate + _start


def run_native(
    module: wasmtime.Module,
    engine: wasmtime.Engine,
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    preopens: Mapping[str, str | Path] | None = None,
    stdin: bytes | Path | None = None,
    stdout: Path | None = None,
) -> NativeRun:
    """Run `module` (compiled for `engine`) under wasmtime's WASI.

    `preopens` maps guest paths to host directories; `stdin` is data or a file to read (none:
    empty); stdout and stderr go to files (`stdout` if given, else a temporary file whose
    contents are returned). ``proc_exit`` becomes the exit code; other traps propagate.
    """
    with tempfile.TemporaryDirectory(prefix="wasync-native-") as tmp:
        out = stdout if stdout is not None else Path(tmp) / "stdout"
        err = Path(tmp) / "stderr"
        wasi = wasmtime.WasiConfig()
        wasi.argv = list(args)
        if env:
            wasi.env = [[k, v] for k, v in env.items()]
        for guest, host in (preopens or {}).items():
            wasi.preopen_dir(str(host), guest)
        if isinstance(stdin, bytes):
            data = Path(tmp) / "stdin"
            data.write_bytes(stdin)
            stdin = data
        if stdin is not None:
            wasi.stdin_file = str(stdin)
        wasi.stdout_file = str(out)
        wasi.stderr_file = str(err)
        store = wasmtime.Store(engine)
        store.set_wasi(wasi)
        linker = wasmtime.Linker(engine)
        linker.define_wasi()
        t0 = time.perf_counter()
        instance = linker.instantiate(store, module)
        start = instance.exports(store)["_start"]
        if not isinstance(start, wasmtime.Func):
            raise TypeError("_start is not a function")
        try:
            start(store)
            code = 0
        except wasmtime.ExitTrap as exc:
            code = int(exc.code)
        seconds = time.perf_counter() - t0
        # drop the store (and with it WASI's open handles) before reading the files
        del start, instance, store, linker
        stdout_data = b"" if stdout is not None else out.read_bytes()
        return NativeRun(code, stdout_data, err.read_bytes(), seconds)
