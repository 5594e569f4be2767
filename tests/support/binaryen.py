"""Binaryen's ``wasm-opt --asyncify``, the reference Asyncify transform, for tests.

:func:`binaryen_asyncify` transforms a module (binary or text: ``wasm-opt`` reads
both) and caches the output under ``<cache>/binaryen/`` keyed by the SHA-256 of
the input, the flags and ``wasm-opt --version``. A missing ``wasm-opt`` skips the
calling test with a visible reason; a failing one raises :class:`BinaryenError`
with its diagnostics. Text is compiled with wasmtime's parser first (Binaryen
108's own text parser rejects valid modules, e.g. a numeric function index in
``call``); text only wasm-opt understands is passed to it as it is. Cache
entries are written atomically (temporary file, then :func:`os.replace`), so
concurrent pytest processes can share the cache.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import wasmtime

from tests.support.corpus import atomic_write, cache_dir

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["BinaryenError", "binaryen_asyncify", "wasm_opt_version"]

_TIMEOUT_S = 300


class BinaryenError(RuntimeError):
    """``wasm-opt`` is installed but failed; the message carries its output."""


def _wasm_opt() -> str:
    exe = shutil.which("wasm-opt")
    if exe is None:
        pytest.skip("wasm-opt (Binaryen) is not on PATH: install Binaryen (Debian: binaryen)")
    return exe


@cache
def _version(exe: str) -> str:
    proc = subprocess.run(
        [exe, "--version"], capture_output=True, text=True, check=False, timeout=60
    )
    if proc.returncode != 0:
        raise BinaryenError(f"{exe} --version failed:\n{proc.stderr.strip() or proc.stdout}")
    return proc.stdout.strip()


def wasm_opt_version() -> str:
    """``wasm-opt --version`` (skips the calling test if wasm-opt is missing)."""
    return _version(_wasm_opt())


def binaryen_asyncify(
    wasm_or_wat: bytes | str,
    *,
    imports: Sequence[str] = (),
    opt: str = "-O1",
    extra: Sequence[str] = (),
) -> bytes:
    """``wasm-opt --asyncify`` applied to `wasm_or_wat` (binary bytes, or text).

    `imports` lists the imports that may unwind (``module.name``; empty: all of
    them), `opt` is the optimisation flag (``""`` for none) and `extra` further
    wasm-opt arguments (``--pass-arg=...``). All features are enabled."""
    is_text = False
    if isinstance(wasm_or_wat, str):
        try:
            data = bytes(wasmtime.wat2wasm(wasm_or_wat))
        except wasmtime.WasmtimeError:
            data, is_text = wasm_or_wat.encode(), True
    else:
        data = bytes(wasm_or_wat)
    flags = ["--asyncify"]
    if imports:
        flags.append("--pass-arg=asyncify-imports@" + ",".join(imports))
    if opt:
        flags.append(opt)
    return _wasm_opt_run(data, is_text, [*flags, *extra, "--all-features"])


def binaryen_wat2wasm(text: str) -> bytes:
    """WebAssembly text read by wasm-opt (no passes): Binaryen's own test inputs
    rely on its lenient parser (wasmtime rejects some of them as written)."""
    return _wasm_opt_run(text.encode(), True, ["--all-features"])


def _wasm_opt_run(data: bytes, is_text: bool, flags: list[str]) -> bytes:
    """Run wasm-opt on `data` with `flags`, cached by input, flags and version."""
    exe = _wasm_opt()
    key = hashlib.sha256()
    parts = [_version(exe).encode(), b"text" if is_text else b"binary", data]
    for part in parts + [f.encode() for f in flags]:
        key.update(len(part).to_bytes(8, "little"))
        key.update(part)
    target = cache_dir() / "binaryen" / f"{key.hexdigest()}.wasm"
    if target.is_file():
        return target.read_bytes()
    with tempfile.TemporaryDirectory(prefix="wasync-binaryen-") as tmp:
        src = Path(tmp) / ("input.wat" if is_text else "input.wasm")
        out = Path(tmp) / "output.wasm"
        src.write_bytes(data)
        proc = subprocess.run(
            [exe, str(src), *flags, "-o", str(out)],
            capture_output=True,
            text=True,
            check=False,
            timeout=_TIMEOUT_S,
        )
        if proc.returncode != 0 or not out.is_file():
            output = "\n".join(p for p in (proc.stderr.strip(), proc.stdout.strip()) if p)
            raise BinaryenError(
                f"wasm-opt {' '.join(flags)} failed (exit {proc.returncode}):\n"
                f"{output or '(no output)'}"
            )
        result = out.read_bytes()
    atomic_write(target, result)
    return result
