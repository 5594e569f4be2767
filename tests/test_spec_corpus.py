"""The WebAssembly spec test suite through the codec, module by module.

For every module of every script (``../shared/spec-testsuite``):

* well-formed modules: binary -> model -> binary is byte-identical; a canonical
  re-encode decodes to the same model; every body -> IR -> bytes is
  byte-identical; every constant expression too; and stack typing runs over
  every function without error when wasmtime accepts the module (for modules
  wasmtime rejects, typing may only fail with ``ValidationError``);
* ``assert_malformed`` binary modules: rejected with ``DecodeError``, never
  another exception.

Counts are printed at the end of the run (see ``conftest.py``); nothing is
skipped silently.
"""

from __future__ import annotations

from collections import Counter
from functools import cache
from pathlib import Path

import pytest
import wasmtime

import wasync
from tests.conftest import SPEC_ROOT
from tests.support.wast import (
    WastCommand,
    WastModule,
    WatConversionError,
    iter_modules,
    module_bytes,
    parse_wast_file,
    spec_files,
    wat_for_wasmtime,
)
from wasync import DecodeError, ValidationError
from wasync._runtime._module import WASM_FEATURES

pytestmark = pytest.mark.slow

FILES = spec_files(SPEC_ROOT) if SPEC_ROOT.is_dir() else []
# Aggregated over the run and printed by conftest.pytest_terminal_summary.
REPORT: Counter[str] = Counter()
OPS_SEEN: set[int] = set()


@cache
def engine() -> wasmtime.Engine:
    cfg = wasmtime.Config()
    for feature in WASM_FEATURES:
        setattr(cfg, feature, True)
    return wasmtime.Engine(cfg)


def wasmtime_accepts(data: bytes) -> str | None:
    """None if wasmtime validates the module, else its reason."""
    try:
        wasmtime.Module.validate(engine(), data)
    except wasmtime.WasmtimeError as e:
        return str(e).splitlines()[0]
    return None


def decode_all(data: bytes) -> wasync.BinaryModule:
    """Decode the module and every body (what "well-formed" means for bodies)."""
    m = wasync.decode_module(data)
    nimp = m.num_imported_funcs
    for f in range(nimp, nimp + len(m.codes)):
        m.body(f)
    return m


def model_key(m: wasync.BinaryModule) -> tuple[object, ...]:
    """Everything the model says, bodies decoded, for semantic comparison."""
    nimp = m.num_imported_funcs
    bodies = []
    for f in range(nimp, nimp + len(m.codes)):
        b = m.body(f)
        bodies.append((tuple(b.locals), tuple(b.instrs)))
    return (
        tuple(m.types),
        tuple(m.imports),
        tuple(m.functions),
        tuple(m.tables),
        tuple(m.memories),
        tuple(m.tags),
        tuple(m.globals),
        tuple(m.exports),
        m.start,
        tuple(m.elements),
        m.data_count,
        tuple(m.datas),
        tuple((c.name, c.data, c.after) for c in m.customs),
        tuple(bodies),
    )


def const_exprs(m: wasync.BinaryModule) -> list[wasync.ConstExpr]:
    exprs = [g.init for g in m.globals]
    exprs += [t.init for t in m.tables if t.init is not None]
    for e in m.elements:
        if e.offset is not None:
            exprs.append(e.offset)
        exprs += [x for x in e.items if isinstance(x, wasync.ConstExpr)]
    exprs += [d.offset for d in m.datas if d.offset is not None]
    return exprs


def check_well_formed(data: bytes, valid: bool) -> None:
    m = wasync.decode_module(data)
    assert wasync.encode_module(m) == data, "module round trip differs"
    canonical = wasync.encode_module(m, canonical=True)
    REPORT[
        "canonical re-encode byte-identical"
        if canonical == data
        else "canonical re-encode differs (non-canonical input)"
    ] += 1
    assert model_key(wasync.decode_module(canonical)) == model_key(m), (
        "canonical re-encode changed the model"
    )
    for e in const_exprs(m):
        assert wasync.encode_instrs(e.instrs()) == e.raw, "constant expression round trip differs"
    mt = wasync.ModuleTypes.from_module(m)
    nimp = m.num_imported_funcs
    for i, code in enumerate(m.codes):
        body = m.body(nimp + i)
        assert wasync.encode_body(body) == code.raw, f"body {nimp + i} round trip differs"
        OPS_SEEN.update(ins.op.id for ins in body.instrs)
        REPORT["function bodies"] += 1
        REPORT["instructions"] += len(body.instrs)
        try:
            wasync.type_function(m, nimp + i, body=body, module_types=mt)
        except ValidationError:
            if valid:
                raise
            REPORT["stack typing rejected an invalid module's function"] += 1
        else:
            REPORT["functions stack-typed"] += 1


def module_data(cmd: WastCommand, mod: WastModule) -> bytes | None:
    if mod.form == "quote":
        if cmd.kind.startswith("assert_malformed"):
            return None
        try:
            return bytes(wasmtime.wat2wasm(wat_for_wasmtime(f"(module {mod.quote})")))
        except wasmtime.WasmtimeError:
            REPORT["quote modules wasmtime's parser rejects (not binary tests)"] += 1
            return None
    if mod.form == "instance":
        return None
    return module_bytes(mod)


@pytest.mark.parametrize("path", FILES, ids=[p.relative_to(SPEC_ROOT).as_posix() for p in FILES])
def test_spec_script(path: Path) -> None:
    failures: list[str] = []
    for cmd, mod in iter_modules(parse_wast_file(path)):
        where = f"{path.name}:{mod.line} ({cmd.kind}, {mod.form})"
        try:
            data = module_data(cmd, mod)
        except WatConversionError as e:
            failures.append(f"{where}: wat2wasm failed: {e}")
            continue
        if data is None:
            REPORT[f"modules without a binary ({mod.form})"] += 1
            continue
        REPORT["modules tried"] += 1
        if cmd.kind.startswith("assert_malformed"):
            try:
                decode_all(data)
            except DecodeError:
                REPORT["assert_malformed binaries rejected with DecodeError"] += 1
            except Exception as e:  # noqa: BLE001 - any other type is the failure we look for
                failures.append(f"{where}: {type(e).__name__} instead of DecodeError: {e}")
            else:
                failures.append(f"{where}: malformed module decoded without error")
            continue
        reason = wasmtime_accepts(data)
        invalid_by_script = cmd.kind.startswith("assert_invalid")
        if reason is None:
            REPORT["modules wasmtime accepts"] += 1
        elif invalid_by_script:
            REPORT["assert_invalid modules (wasmtime rejects them too)"] += 1
        else:
            REPORT[f"valid modules wasmtime rejects: {reason[:60]}"] += 1
        try:
            check_well_formed(data, valid=reason is None)
        except (AssertionError, wasync.WasyncError) as e:
            failures.append(f"{where}: {type(e).__name__}: {e}")
        except Exception as e:  # noqa: BLE001
            failures.append(f"{where}: crash {type(e).__name__}: {e}")
        else:
            REPORT["modules passed (round trip + IR + typing)"] += 1
    assert not failures, "\n".join(failures[:30])


# Instructions the suite does not exercise, checked against wasmtime's text
# parser (an encoder nobody here wrote) instead.
EXTRA_WAT = """(module (memory 1 1 shared)
  (func (param i64 i64 i64 i64) (result i64 i64)
    atomic.fence
    (i64.add128 (local.get 0) (local.get 1) (local.get 2) (local.get 3)) drop drop
    (i64.sub128 (local.get 0) (local.get 1) (local.get 2) (local.get 3)) drop drop
    (i64.mul_wide_s (local.get 0) (local.get 1)) drop drop
    (i64.mul_wide_u (local.get 0) (local.get 1))))"""


def extra_ops_seen() -> set[int]:
    data = bytes(wasmtime.wat2wasm(EXTRA_WAT))
    assert wasmtime_accepts(data) is None
    check_well_formed(data, valid=True)
    m = wasync.decode_module(data)
    names = [str(i) for i in m.body(0).instrs]
    assert names[:4] == ["atomic.fence", "local.get 0", "local.get 1", "local.get 2"]
    return {ins.op.id for ins in m.body(0).instrs}


def test_opcode_table_coverage() -> None:
    """Every instruction of the table is decoded from binaries nobody here wrote:
    the spec suite (run before this test) or wasmtime's text parser."""
    if not OPS_SEEN:
        pytest.skip("run together with test_spec_script to measure coverage")
    missing = [op for op in wasync.OPCODES if op.id not in OPS_SEEN]
    REPORT["opcode table entries seen in the suite"] = len(wasync.OPCODES) - len(missing)
    REPORT["opcode table entries not in the suite"] = len(missing)
    extra = extra_ops_seen()
    assert [op.name for op in missing if op.id not in extra] == []
