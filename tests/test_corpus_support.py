"""Tests for the test-corpus support (tests/support/corpus.py) and the corpus itself."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from typing import TYPE_CHECKING, NoReturn

import pytest
import wasmtime

from tests.support import corpus
from tests.support.corpus import REAL_WORLD, NpmWasm, compile_c, run_wasi

if TYPE_CHECKING:
    from importlib.machinery import ModuleSpec
    from pathlib import Path

PROGRAMS = corpus.c_programs()
OPT_LEVELS = ("-O0", "-O2", "-Os")


def _ids(program: Path) -> str:
    return program.stem


# --------------------------------------------------------------------------------------------
# helpers that need no network and no compiler


def test_cache_dir_honours_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("WASYNC_TEST_CACHE", str(tmp_path))
    assert corpus.cache_dir() == tmp_path
    monkeypatch.delenv("WASYNC_TEST_CACHE")
    assert corpus.cache_dir() == corpus.REPO_ROOT / ".cache"


def test_source_cflags() -> None:
    text = "// wasync-cflags: -msimd128 -DX='a b'\nint main(void) { return 0; }\n"
    assert corpus.source_cflags(text) == ("-msimd128", "-DX=a b")
    assert corpus.source_cflags("int main(void) { return 0; }\n") == ()


def test_corpus_is_present() -> None:
    assert 6 <= len(PROGRAMS) <= 8
    flagged = {p.stem: corpus.source_cflags(p.read_text()) for p in PROGRAMS}
    assert flagged["simd"] == ("-msimd128",)


@pytest.mark.parametrize(
    ("package", "version", "path"),
    [
        ("left-pad", "1.3.0", "../../etc/passwd"),
        ("left-pad", "1.3.0", "/etc/passwd"),
        ("left-pad", "1.3.0", "lib/./index.js"),
        ("left-pad", "1.3.0", "lib\\index.js"),
        ("left-pad", "1.3.0", ""),
        ("left-pad", "^1.3.0", "index.js"),
        ("left-pad", "latest", "index.js"),
        ("../left-pad", "1.3.0", "index.js"),
        ("Left Pad", "1.3.0", "index.js"),
    ],
)
def test_npm_file_rejects_unsafe_arguments(package: str, version: str, path: str) -> None:
    with pytest.raises(ValueError, match="not"):
        corpus.npm_file(package, version, path)


def test_npm_file_skips_without_npm(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("WASYNC_TEST_CACHE", str(tmp_path))
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    with pytest.raises(pytest.skip.Exception, match="npm is not on PATH"):
        corpus.npm_file("left-pad", "1.3.0", "index.js")


# --------------------------------------------------------------------------------------------
# C programs


def test_compile_c_skips_without_ziglang(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, package: str | None = None) -> ModuleSpec | None:
        return None if name == "ziglang" else real_find_spec(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    corpus.zig_version.cache_clear()
    try:
        with pytest.raises(pytest.skip.Exception, match="ziglang"):
            compile_c("int main(void) { return 0; }\n")
    finally:
        corpus.zig_version.cache_clear()


def test_compile_c_reports_compiler_errors() -> None:
    with pytest.raises(corpus.CorpusError, match="undeclared_thing"):
        compile_c("int main(void) { return undeclared_thing; }\n", opt="-O1")


def test_compile_c_from_text_is_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    source = '#include <stdio.h>\nint main(void) { puts("cached"); return 3; }\n'
    wasm = compile_c(source, opt="-O1")

    def no_compiler(*args: object, **kwargs: object) -> NoReturn:
        raise AssertionError("the compiler ran although the result is cached")

    monkeypatch.setattr(subprocess, "run", no_compiler)
    assert compile_c(source, opt="-O1") == wasm
    result = run_wasi(wasm)
    assert (result.exit_code, result.stdout) == (3, b"cached\n")


@pytest.mark.parametrize("opt", OPT_LEVELS)
@pytest.mark.parametrize("program", PROGRAMS, ids=_ids)
def test_c_program_compiles(program: Path, opt: str) -> None:
    wasm = compile_c(program, opt=opt)
    assert wasm[:8] == b"\0asm\x01\0\0\0"
    assert compile_c(program, opt=opt) == wasm  # second call: from the cache


@pytest.mark.parametrize("program", PROGRAMS, ids=_ids)
def test_c_program_output_is_the_same_at_every_opt_level(program: Path) -> None:
    runs = {opt: run_wasi(compile_c(program, opt=opt)) for opt in OPT_LEVELS}
    reference = runs["-O0"]
    assert reference.exit_code == 0, reference.stderr.decode(errors="replace")
    assert reference.stderr == b""
    assert reference.stdout.count(b"\n") >= 5
    for opt, run in runs.items():
        assert run.exit_code == 0, (opt, run.stderr.decode(errors="replace"))
        assert run.stdout == reference.stdout, opt
        assert run.stderr == b"", opt


# --------------------------------------------------------------------------------------------
# real-world modules from npm


def test_real_world_pins_are_distinct() -> None:
    assert len({m.package for m in REAL_WORLD}) == len(REAL_WORLD) >= 3
    for module in REAL_WORLD:
        assert module.size is not None
        assert module.import_modules


@pytest.mark.slow
@pytest.mark.parametrize("module", REAL_WORLD, ids=lambda m: m.spec)
def test_real_world_module_fetches_and_compiles(module: NpmWasm) -> None:
    path = module.fetch()
    assert path == corpus.cache_dir() / "npm" / module.spec / module.path
    data = path.read_bytes()
    assert data[:8] == b"\0asm\x01\0\0\0"
    assert len(data) == module.size
    config = wasmtime.Config()
    # All three need bulk memory (memory.copy/fill), on by wasmtime's default; nothing else
    # beyond the defaults is required.
    config.wasm_bulk_memory = True
    compiled = wasmtime.Module(wasmtime.Engine(config), data)
    assert tuple(sorted({imp.module for imp in compiled.imports})) == module.import_modules


@pytest.mark.slow
def test_npm_failure_raises_with_npm_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if shutil.which("npm") is None:
        pytest.skip("npm is not on PATH")
    monkeypatch.setenv("WASYNC_TEST_CACHE", str(tmp_path))
    with pytest.raises(corpus.CorpusError, match=r"npm pack .*failed[\s\S]*ETARGET"):
        corpus.npm_file("@sqlite.org/sqlite-wasm", "0.0.2", "package.json")
    assert not list((tmp_path / "npm").rglob("*.tgz"))


@pytest.mark.slow
def test_npm_missing_member_raises() -> None:
    module = REAL_WORLD[0]
    module.fetch()  # make sure the tarball is cached
    with pytest.raises(corpus.CorpusError, match="has no file"):
        corpus.npm_file(module.package, module.version, "no/such/file.wasm")
