"""wasync's Asyncify transform: real-world modules, clear errors, the CLI.

Behaviour (unwind, rewind, results) is tested through the runtime: Binaryen's
own runtime tests in tests/test_runtime_asyncify.py and a zig-built C module in
tests/test_runtime_c.py run on wasync's output as well as Binaryen's.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import wasmtime

import wasync
from tests.conftest import wat
from tests.support.corpus import REAL_WORLD, NpmWasm
from wasync.cli import main

SLEEPER = """(module
  (import "env" "sleep" (func $sleep))
  (memory (export "memory") 1)
  (func $inner (export "inner") (param i32) (result i32)
    (call $sleep) (i32.add (local.get 0) (i32.const 1)))
  (func (export "outer") (result i32) (call $inner (i32.const 41)))
  (func (export "pure") (param i32) (result i32) (i32.mul (local.get 0) (local.get 0))))"""


def engine() -> wasmtime.Engine:
    cfg = wasmtime.Config()
    for feature in ("wasm_gc", "wasm_function_references", "wasm_exceptions", "wasm_tail_call"):
        setattr(cfg, feature, True)
    return wasmtime.Engine(cfg)


def test_abi_exports_and_report() -> None:
    out, report = wasync.asyncify_with_report(wat(SLEEPER))
    m = wasync.decode_module(out)
    names = {e.name for e in m.exports}
    assert {
        "asyncify_start_unwind",
        "asyncify_stop_unwind",
        "asyncify_start_rewind",
        "asyncify_stop_rewind",
        "asyncify_get_state",
    } <= names
    wasmtime.Module.validate(engine(), out)
    by_name = {report.names[f]: why for f, why in report.instrumented.items()}
    # "outer" has no name: Binaryen names it by its index among defined functions.
    assert set(by_name) == {"inner", "1"}
    assert "env.sleep" in by_name["inner"]
    assert report.call_sites == 2
    assert report.unwinding_imports == ("env.sleep",)
    assert report.bytes_added > 0
    assert len(report.not_instrumented) == 1  # "pure"


def test_export_globals() -> None:
    out = wasync.asyncify(wat(SLEEPER), export_globals=True)
    kinds = {e.name: e.kind for e in wasync.decode_module(out).exports}
    assert kinds["__asyncify_state"] is wasync.ExternKind.GLOBAL
    assert kinds["__asyncify_data"] is wasync.ExternKind.GLOBAL


def test_options_restrict_the_instrumentation() -> None:
    _, report = wasync.asyncify_with_report(wat(SLEEPER), imports=["env.other"])
    assert report.instrumented == {}
    assert report.call_sites == 0


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            """(module (import "env" "sleep" (func $sleep)) (memory 1)
              (func $f (param anyref) (result (ref any))
                (block $b (result (ref any))
                  (call $sleep)
                  (br_on_non_null $b (local.get 0))
                  (unreachable))))""",
            "targets a structure that contains a call that may suspend",
        ),
        (
            """(module (import "env" "sleep" (func $sleep)) (memory 1)
              (type $s (struct (field (ref $s))))
              (func $f (result (ref $s)) (call $sleep) (unreachable)))""",
            "cannot make a dummy value",
        ),
    ],
    ids=["br_on_non_null", "uninhabited-result"],
)
def test_unsupported_constructs_are_clear_errors(source: str, message: str) -> None:
    with pytest.raises(wasync.AsyncifyError, match=message) as info:
        wasync.asyncify(wat(source))
    assert "'f'" in str(info.value) or "function 1" in str(info.value)


def test_a_module_without_memory_gets_one() -> None:
    source = """(module (import "env" "sleep" (func $sleep (result i32)))
      (func (export "f") (result i32) (i32.add (call $sleep) (i32.const 1))))"""

    async def sleep() -> int:
        await asyncio.sleep(0)
        return 41

    async def main() -> int:
        out = wasync.asyncify(wat(source))
        m = wasync.decode_module(out)
        assert len(m.memories) == 1
        assert any(e.name == "memory" and e.kind is wasync.ExternKind.MEMORY for e in m.exports)
        inst = await wasync.instantiate(out, {"env": {"sleep": sleep}})
        return int(await inst.exports.f())

    assert asyncio.run(main()) == 42


def test_memory64_uses_a_64_bit_header() -> None:
    source = """(module
      (import "env" "sleep" (func $sleep (param i64) (result i64)))
      (memory (export "memory") i64 1)
      (func $inner (param $x i64) (result i64) (local $y i64)
        (local.set $y (i64.mul (local.get $x) (i64.const 3)))
        (i64.add (call $sleep (local.get $x)) (local.get $y)))
      (func (export "f") (param i64) (result i64) (call $inner (local.get 0))))"""

    async def sleep(x: int) -> int:
        await asyncio.sleep(0)
        return x + 1000

    async def main() -> list[int]:
        out = wasync.asyncify(wat(source))
        m = wasync.decode_module(out)
        start_unwind = next(e for e in m.exports if e.name == "asyncify_start_unwind")
        assert m.func_type(start_unwind.index).params == (wasync.NumType.I64,)
        inst = await wasync.instantiate(out, {"env": {"sleep": sleep}})
        return [int(await inst.exports.f(x)) for x in (5, 7)]

    assert asyncio.run(main()) == [1020, 1028]


def test_br_table_carrying_values_out_of_suspending_blocks() -> None:
    source = """(module (import "env" "sleep" (func $sleep)) (memory (export "memory") 1)
      (func (export "f") (param i32) (result i32)
        (block $a (result i32)
          (block $b (result i32)
            (call $sleep)
            (br_table $a $b $a (i32.const 10) (local.get 0)))
          (i32.add (i32.const 100)))))"""
    slept = 0

    async def sleep() -> None:
        nonlocal slept
        slept += 1
        await asyncio.sleep(0)

    async def main() -> list[int]:
        inst = await wasync.instantiate(wasync.asyncify(wat(source)), {"env": {"sleep": sleep}})
        return [await inst.exports.f(i) for i in range(4)]

    assert asyncio.run(main()) == [10, 110, 10, 10]
    assert slept == 4


@pytest.mark.slow
@pytest.mark.parametrize(
    "pkg", [p for p in REAL_WORLD if (p.size or 0) < 5_000_000], ids=lambda p: p.spec
)
@pytest.mark.parametrize("imports", [None, "wasi"], ids=["all-imports", "io-imports"])
def test_real_world_modules_transform_and_validate(
    pkg: NpmWasm, imports: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    data = pkg.fetch().read_bytes()
    patterns = (
        None if imports is None else ["wasi_snapshot_preview1.fd_*", "env.__syscall_*", "a.*"]
    )
    out, report = wasync.asyncify_with_report(data, imports=patterns)
    wasmtime.Module.validate(engine(), out)
    assert report.instrumented
    with capsys.disabled():
        which = "all imports" if imports is None else "I/O imports"
        print(f"\n{pkg.spec} ({which}): {report.summary()}")


def test_cli_asyncify(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "in.wasm"
    src.write_bytes(wat(SLEEPER))
    out = tmp_path / "out.wasm"
    assert (
        main(["asyncify", str(src), "-o", str(out), "--pass-arg=asyncify-imports@env.sleep"]) == 0
    )
    assert "instrumented 2 of 3 functions" in capsys.readouterr().err
    wasmtime.Module.validate(engine(), out.read_bytes())
    names = tmp_path / "names.txt"
    names.write_text("inner\n")
    assert main(["asyncify", str(src), "-o", str(out), "--onlylist", f"@{names}", "--verbose"]) == 0
    err = capsys.readouterr().err
    assert "instrumented 1 of 3 functions" in err
    assert main(["asyncify", str(src), "-o", str(out), "--onlylist", "a", "--addlist", "b"]) == 1
    assert "only-list" in capsys.readouterr().err
