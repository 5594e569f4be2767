"""Differential tests of wasync's Asyncify transform: original against transformed.

The transformed module runs through :class:`tests.support.asyncify_driver.Runner`,
where **every** call to a function import suspends (unwind, the Python
implementation runs outside wasm, rewind by calling the same export again). The
original runs on plain wasmtime with the same Python imports. Results (exact bits),
traps (trap codes) and the sequence of import calls (names and arguments) must be
identical. The instrumentation is chosen by ``simple_analysis`` (every import and
every indirect call may unwind). Both runs see memory 0 exported and grown by the
buffer page(s) (a defined memory's maximum is raised to make room), so that
``memory.size`` agrees.

* **Hand-written cases** (``WAT_CASES``): one construct each, rewinding with the
  same arguments and with zeros.
* **Spec suite, "imports"**: every module of ``../shared/spec-testsuite`` that
  imports a function, imports only from ``spectest`` and has ``invoke`` /
  ``assert_return`` / ``assert_trap`` actions; a 1-page memory is added to modules
  without one (always valid: they have no memory instructions).
* **Spec suite, "ticks"**: every module with such actions and only ``spectest``
  imports (or none) gets an import ``wasync_test.tick`` called at the entry of every
  function, and at loop heads up to ``LOOP_TICK_BUDGET`` times per action; the
  ticked original and the ticked, transformed module are compared, rewinding with
  zero arguments. This suspends inside nearly every function of the suite (the
  import calls :func:`tick_suspends` chooses, at most ``TICK_SUSPEND_LIMIT`` per
  export call; the other ticks run synchronously, as a host may choose).
* **C programs**: ``tests/data/c/*.c`` at -O0 and -O2 under a Python WASI shim:
  wasmtime's own WASI (sanity check of the shim), the shim on the original, the shim
  on the transformed module (every WASI call suspends): same stdout, stderr, exit
  code, and the same WASI calls.

Every module left out is counted by reason and printed at the end of the run (see
``conftest.py``); nothing is skipped silently. Known transform failures are listed
in ``KNOWN_WAT_FAILURES`` / ``KNOWN_SPEC_FAILURES`` / ``KNOWN_C_FAILURES``: those
cases are ``xfail(strict=True, raises=KnownTransformFailure)``, so any other failure
in them still fails the run, and a fix makes them XPASS (strict: fails until the
entry is removed).
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest
import wasmtime

import wasync
from tests.conftest import SPEC_ROOT, wat
from tests.support.asyncify_driver import (
    DriverError,
    HostContext,
    HostFunc,
    ProcExit,
    Runner,
    WasiShim,
    WasmValue,
    asyncify,
    engine,
    export_memory0,
    spectest_host,
)
from tests.support.corpus import c_programs, compile_c, run_wasi
from tests.support.wast import (
    Action,
    NumValue,
    RefValue,
    V128Value,
    WastCommand,
    WastModule,
    WatConversionError,
    module_bytes,
    parse_wast_file,
    spec_files,
)
from wasync import AsyncifyError, Imm

# Printed by conftest.pytest_terminal_summary.
REPORT: Counter[str] = Counter()
TIMES: dict[str, float] = {}

TICK = ("wasync_test", "tick")
TICK_SUSPEND_LIMIT = 12
SPEC_FUEL = 10**8  # per action; the original never needs that much


def tick_suspends(index: int) -> bool:
    """Which import calls of one export call suspend in ticks mode: the first four,
    then the powers of two (so that long computations suspend late too)."""
    return index < 4 or index & (index - 1) == 0


LOOP_TICKS = "__wasync_loop_ticks"
LOOP_TICK_BUDGET = 32

# (mode, script, line of the module) -> why the transformed module misbehaves.
KNOWN_SPEC_FAILURES: dict[tuple[str, str, int], str] = {}
# (program stem, opt) -> why.
KNOWN_C_FAILURES: dict[tuple[str, str], str] = {}


def _add_time(key: str, start: float) -> None:
    TIMES[key] = TIMES.get(key, 0.0) + time.perf_counter() - start


class KnownTransformFailure(AssertionError):
    """Raised for the listed known failures only (what the xfail marks expect)."""


# --------------------------------------------------------------------------------------------
# Module preparation


def _reason(e: Exception) -> str:
    """A transform error message without its function / instruction specifics."""
    text = str(e).splitlines()[0]
    text = re.sub(r"^function \d+( '[^']*')?: ", "", text)
    text = re.sub(r"`(\S+)[^`]*`", r"`\1`", text)  # the instruction's name only
    text = re.sub(r"\(?instruction \d+\)?", "", text)
    text = re.sub(r"(local|label) \d+", r"\1 N", text)
    text = re.sub(r"reference type (\([^)]*\)|\S+)", "reference type T", text)
    return re.sub(r"\s+", " ", text).strip()


def _func_type_index(m: wasync.BinaryModule, ft: wasync.FuncType) -> int:
    index = 0
    for group in m.types:
        for st in group.types:
            if len(group.types) == 1 and st.comp == ft and st.final and not st.supertypes:
                return index
            index += 1
    m.types.append(wasync.RecGroup((wasync.SubType(ft),)))
    return index


def inject_ticks(m: wasync.BinaryModule) -> None:
    """Add the import ``wasync_test.tick: [] -> []`` (the last function import) and call
    it at every function entry, and at loop heads while the exported global
    :data:`LOOP_TICKS` is positive (each loop tick decrements it; the test sets it
    before every action, so that long loops cost little). Defined functions move up by
    one; custom sections (names, hints) are dropped since they may name functions."""
    tidx = _func_type_index(m, wasync.FuncType((), ()))
    nimp = m.num_imported_funcs
    bodies = [m.body(nimp + i) for i in range(len(m.codes))]
    funcs = [i for i, imp in enumerate(m.imports) if imp.kind is wasync.ExternKind.FUNC]
    m.imports.insert(max(funcs, default=-1) + 1, wasync.Import(*TICK, wasync.ExternKind.FUNC, tidx))
    budget = len(m.imports_of(wasync.ExternKind.GLOBAL)) + len(m.globals)
    m.globals.append(
        wasync.Global(
            wasync.GlobalType(wasync.NumType.I32, True),
            wasync.ConstExpr(
                bytes(wasync.encode_instrs([_op("i32.const", LOOP_TICK_BUDGET), _op("end")]))
            ),
        )
    )
    m.exports.append(wasync.Export(LOOP_TICKS, wasync.ExternKind.GLOBAL, budget))
    loop_tick = [
        _op("global.get", budget),
        _op("if", None),
        _op("global.get", budget),
        _op("i32.const", 1),
        _op("i32.sub"),
        _op("global.set", budget),
        _op("call", nimp),
        _op("end"),
    ]

    def shift(f: int) -> int:
        return f + 1 if f >= nimp else f

    def remap(instrs: list[wasync.Instr], *, ticks: bool) -> list[wasync.Instr]:
        out: list[wasync.Instr] = [_op("call", nimp)] if ticks else []
        for ins in instrs:
            if ins.op.imms == (Imm.FUNC,):
                out.append(wasync.Instr(ins.op, shift(int(ins.imm))))
            else:
                out.append(ins)
            if ticks and ins.op.name == "loop":
                out += loop_tick
        return out

    def remap_expr(e: wasync.ConstExpr) -> wasync.ConstExpr:
        return wasync.ConstExpr(bytes(wasync.encode_instrs(remap(e.instrs(), ticks=False))))

    for i, body in enumerate(bodies):
        new = wasync.Body(body.locals, remap(body.instrs, ticks=True), body.locals_raw)
        m.codes[i] = wasync.FuncBody(new.encode())
    m.globals = [wasync.Global(g.type, remap_expr(g.init)) for g in m.globals]
    m.tables = [
        wasync.Table(t.type, remap_expr(t.init) if t.init is not None else None) for t in m.tables
    ]
    m.elements = [
        dataclasses.replace(
            e,
            items=tuple(
                remap_expr(x) if isinstance(x, wasync.ConstExpr) else shift(x) for x in e.items
            ),  # type: ignore[arg-type]
        )
        for e in m.elements
    ]
    m.exports = [
        dataclasses.replace(x, index=shift(x.index)) if x.kind is wasync.ExternKind.FUNC else x
        for x in m.exports
    ]
    if m.start is not None:
        m.start = shift(m.start)
    m.customs = []


def _op(name: str, imm: Any = None) -> wasync.Instr:
    return wasync.Instr(wasync.ops_named(name)[0], imm)


@dataclass
class Prepared:
    """The two binaries of one case, or why there are none."""

    plain: bytes = b""
    transformed: bytes = b""
    memory0: str = ""
    memory64: bool = False  # memory 0 (which holds the Asyncify data) is 64-bit
    skip: str | None = None
    invalid: str | None = None  # the transformed module does not validate


def prepare(data: bytes, *, ticks: bool) -> Prepared:
    """Original (memory 0 exported, a memory added if there was none) and transformed."""
    m = wasync.decode_module(data)
    if any(i.module != "spectest" for i in m.imports):
        return Prepared(skip="imports from other modules (needs `register`)")
    if not ticks and not any(i.kind is wasync.ExternKind.FUNC for i in m.imports):
        return Prepared(skip="no function import")
    try:
        wasmtime.Module.validate(engine(), data)
    except wasmtime.WasmtimeError:
        return Prepared(skip="wasmtime rejects the module")
    if ticks:
        inject_ticks(m)
    mems = [i.desc for i in m.imports if isinstance(i.desc, wasync.Limits)] + list(m.memories)
    if not mems:
        m.memories.append(wasync.Limits(1))
        REPORT[f"{'ticks' if ticks else 'imports'}: memory added (module had none)"] += 1
    elif mems[0].shared:
        return Prepared(skip="memory 0 is shared")
    elif m.memories and len(mems) == len(m.memories) and mems[0].max is not None:
        # Room for the buffer page that both runs grow (the most pages a memory can
        # have: 2**16 of 64 KiB for a 32-bit memory, 2**48 for a 64-bit one).
        if mems[0].max >= 1 << (48 if mems[0].is64 else 16):
            return Prepared(skip="memory 0 is at its maximum size")
        m.memories[0] = dataclasses.replace(mems[0], max=mems[0].max + 1)
    memory0 = export_memory0(m)
    plain = wasync.encode_module(m)
    try:
        wasmtime.Module.validate(engine(), plain)
    except wasmtime.WasmtimeError as e:  # pragma: no cover - our own rewriting
        raise AssertionError(f"the prepared original is invalid: {e}") from None
    m2 = wasync.decode_module(plain)
    try:
        transformed = asyncify(m2)
    except AsyncifyError as e:
        return Prepared(skip=f"AsyncifyError: {_reason(e)}")
    try:
        wasmtime.Module.validate(engine(), transformed)
    except wasmtime.WasmtimeError as e:
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        return Prepared(invalid=lines[-1] if lines else str(e))
    return Prepared(plain, transformed, memory0, memory64=bool(mems) and mems[0].is64)


# --------------------------------------------------------------------------------------------
# Running actions on both


Outcome = tuple[Any, ...]


def outcome_of(fn: Callable[[], list[WasmValue] | WasmValue]) -> Outcome:
    try:
        value = fn()
    except wasmtime.Trap as e:
        return ("trap", e.trap_code)
    except wasmtime.WasmtimeError as e:
        return ("error", str(e).splitlines()[0])
    return ("ok", value)


def action_args(action: Action) -> list[WasmValue] | None:
    out: list[WasmValue] = []
    for v in action.args:
        if isinstance(v, NumValue):
            out.append((v.type, v.bits))
        elif isinstance(v, V128Value) and v.data is not None:
            out.append(("v128", v.data))
        elif isinstance(v, RefValue) and v.type == "ref.null":
            out.append(("ref.null", v.value))
        elif isinstance(v, RefValue) and v.type == "ref.extern" and isinstance(v.value, int):
            out.append(("ref.extern", v.value))
        else:
            return None
    return out


def spectest_funcs(ticks: bool) -> tuple[dict[tuple[str, str], HostFunc], Any]:
    funcs, externs = spectest_host()
    if ticks:

        def tick(ctx: HostContext) -> None:
            del ctx

        funcs[TICK] = tick
    return funcs, externs


@dataclass
class Pair:
    """The original and the transformed instance of one module."""

    where: str
    plain: Runner
    transformed: Runner
    failures: list[str] = field(default_factory=list)
    memory64: bool = False

    def run(self, action: Action, what: str) -> None:
        n0, n1 = len(self.plain.calls), len(self.transformed.calls)
        for runner in (self.plain, self.transformed):
            budget = runner.exports.get(LOOP_TICKS)
            if isinstance(budget, wasmtime.Global):
                budget.set_value(runner.store, LOOP_TICK_BUDGET)
        if action.kind == "get":
            a = outcome_of(lambda: self.plain.get(action.name))
            b = outcome_of(lambda: self.transformed.get(action.name))
        else:
            args = action_args(action)
            if args is None:
                REPORT[f"{what}: actions left out (reference arguments)"] += 1
                return
            a = outcome_of(lambda: self.plain.call(action.name, args))
            b = outcome_of(lambda: self.transformed.call(action.name, args))
        REPORT[f"{what}: actions compared"] += 1
        if self.memory64:
            REPORT[f"{what}: actions compared (64-bit memory 0)"] += 1
        where = f"{self.where}, line {action.line} ({action.kind} {action.name!r})"
        if a == ("trap", wasmtime.TrapCode.OUT_OF_FUEL):
            self.failures.append(f"{where}: the original ran out of fuel: raise SPEC_FUEL")
        if a != b:
            self.failures.append(f"{where}: original {a} != transformed {b}")
        ca, cb = self.plain.calls[n0:], self.transformed.calls[n1:]
        if ca != cb:
            self.failures.append(f"{where}: import calls differ: {ca[:5]} != {cb[:5]}")


def make_pair(where: str, prep: Prepared, ticks: bool) -> tuple[Pair | None, list[str]]:
    """Instantiate both; (None, failures) when instantiation itself differs."""
    funcs, externs = spectest_funcs(ticks)
    results: list[tuple[str, Any]] = []
    for wasm, is_async in ((prep.plain, False), (prep.transformed, True)):
        try:
            runner = Runner(
                wasm,
                funcs,
                asyncify=is_async,
                memory0=prep.memory0,
                externs=externs,
                rewind_args="zeros" if ticks else "same",
                preserve_buffer=True,
                suspend_limit=TICK_SUSPEND_LIMIT if ticks else None,
                suspend_at=tick_suspends if ticks else None,
                fuel=SPEC_FUEL,
            )
        except wasmtime.Trap as e:
            results.append(("trap", e.trap_code))
        except wasmtime.WasmtimeError as e:
            results.append(("error", str(e).splitlines()[0]))
        else:
            results.append(("ok", runner))
    (ka, va), (kb, vb) = results
    if isinstance(va, Runner) and isinstance(vb, Runner):
        if va.calls != vb.calls:
            return None, [f"{where}: import calls during instantiation differ"]
        return Pair(where, va, vb, memory64=prep.memory64), []
    if (ka, va) == (kb, vb):
        REPORT[f"{'ticks' if ticks else 'imports'}: instantiation fails alike in both"] += 1
        return None, []
    shown = [v if k != "ok" else "" for k, v in results]
    return None, [
        f"{where}: instantiation: original {ka} {shown[0]} != transformed {kb} {shown[1]}"
    ]


def module_where(path: Path, mod: WastModule) -> str:
    return f"{path.name}:{mod.line}"


def spec_script(path: Path, *, ticks: bool) -> tuple[list[str], list[str]]:
    """Run the differential over one script: (unexpected failures, known failures)."""
    what = "ticks" if ticks else "imports"
    commands = _commands(path)
    modules: dict[str, WastModule | None] = {}
    current: WastModule | None = None
    pairs: dict[int, Pair | None] = {}
    actions_of: Counter[int] = Counter()
    failures: dict[int, list[str]] = {}
    tried: set[int] = set()
    tried64: set[int] = set()  # of those, modules whose memory 0 is 64-bit

    def pair_for(mod: WastModule) -> Pair | None:
        key = id(mod)
        if key in pairs:
            return pairs[key]
        pairs[key] = None
        where = module_where(path, mod)
        REPORT[f"{what}: modules with actions"] += 1
        if mod.form not in ("text", "binary") or mod.definition:
            REPORT[f"{what}: skipped: {mod.form} module"] += 1
            return None
        try:
            data = module_bytes(mod)
        except WatConversionError:
            REPORT[f"{what}: skipped: wat2wasm rejects the text"] += 1
            return None
        assert data is not None
        prep = prepare(data, ticks=ticks)
        if prep.skip is not None:
            REPORT[f"{what}: skipped: {prep.skip}"] += 1
            return None
        REPORT[f"{what}: modules tried"] += 1
        tried.add(key)
        if prep.memory64:
            REPORT[f"{what}: modules tried (64-bit memory 0)"] += 1
            tried64.add(key)
        if prep.invalid is not None:
            failures[key] = [f"{where}: the transformed module is invalid: {prep.invalid}"]
            return None
        try:
            pair, fails = make_pair(where, prep, ticks)
        except DriverError as e:
            pair, fails = None, [f"{where}: driver: {e}"]
        if fails:
            failures[key] = fails
        pairs[key] = pair
        return pair

    for cmd in commands:
        if cmd.commands:
            REPORT[f"{what}: nested thread/script commands left out"] += 1
            continue
        if cmd.kind == "module" and cmd.module is not None:
            current = cmd.module
            if current.name:
                modules[current.name] = current
            continue
        if cmd.kind not in ("invoke", "assert_return", "assert_trap") or cmd.action is None:
            continue
        target = modules.get(cmd.action.module) if cmd.action.module else current
        if target is None:
            continue
        pair = pair_for(target)
        actions_of[id(target)] += 1
        if pair is None:
            continue
        try:
            pair.run(cmd.action, what)
        except DriverError as e:
            pair.failures.append(f"{pair.where}, line {cmd.action.line}: driver: {e}")
    unexpected: list[str] = []
    known: list[str] = []
    by_id = {id(m): m for _, m in _all_modules(commands)}
    for cmd, mod in _all_modules(commands):
        if cmd.kind == "module" and id(mod) not in pairs:
            REPORT[f"{what}: modules without actions (not run)"] += 1
    for key, pair in pairs.items():
        fails = failures.get(key, []) + (pair.failures if pair is not None else [])
        mod = by_id[key]
        if fails:
            entry = (what, path.name, mod.line)
            if entry in KNOWN_SPEC_FAILURES:
                known += fails
            else:
                unexpected += fails
            REPORT[f"{what}: modules failed"] += 1
        elif key in tried:
            REPORT[f"{what}: modules passed"] += 1
            if key in tried64:
                REPORT[f"{what}: modules passed (64-bit memory 0)"] += 1
        if pair is not None:
            REPORT[f"{what}: suspensions"] += pair.transformed.suspensions
    return unexpected, known


def _all_modules(commands: list[WastCommand]) -> Iterator[tuple[WastCommand, WastModule]]:
    for cmd in commands:
        if cmd.module is not None:
            yield cmd, cmd.module


FILES = spec_files(SPEC_ROOT) if SPEC_ROOT.is_dir() else []
MODES = ("imports", "ticks")


@lru_cache(maxsize=1)
def _commands(path: Path) -> list[WastCommand]:
    """One script's commands (both modes of a script run one after the other)."""
    return parse_wast_file(path)


def _spec_params() -> list[Any]:
    params = []
    for p in FILES:
        for mode in MODES:
            known = [
                f"line {line}: {why}"
                for (m, name, line), why in KNOWN_SPEC_FAILURES.items()
                if m == mode and name == p.name
            ]
            marks = (
                [
                    pytest.mark.xfail(
                        strict=True, raises=KnownTransformFailure, reason="; ".join(known)
                    )
                ]
                if known
                else []
            )
            rel = p.relative_to(SPEC_ROOT).as_posix()
            params.append(pytest.param(p, mode, id=f"{mode}:{rel}", marks=marks))
    return params


@pytest.mark.slow
@pytest.mark.parametrize(("path", "mode"), _spec_params())
def test_spec(path: Path, mode: str) -> None:
    """``imports``: spec modules that import functions from spectest, every import call
    suspends. ``ticks``: every spec module with actions, a suspending tick at every
    function entry and (a bounded number of) loop heads."""
    t = time.perf_counter()
    try:
        unexpected, known = spec_script(path, ticks=mode == "ticks")
        assert not unexpected, "\n".join(unexpected[:20])
        if known:
            raise KnownTransformFailure("\n".join(known[:20]))
    finally:
        _add_time(f"spec ({mode})", t)


# --------------------------------------------------------------------------------------------
# Hand-written cases: one construct each, quick to run


def _env_host() -> dict[tuple[str, str], HostFunc]:
    def get(ctx: HostContext, x: int) -> int:
        del ctx
        return (x * 3 + 1) & 0x7FFF_FFFF

    def get64(ctx: HostContext, x: int) -> int:
        del ctx
        return x * 5 - 2

    def fget(ctx: HostContext, x: float) -> float:
        del ctx
        return x + 0.5

    def nop(ctx: HostContext) -> None:
        del ctx

    def pair(ctx: HostContext, x: int) -> list[int]:
        del ctx
        return [x + 1, x + 2]

    return {
        ("env", "get"): get,
        ("env", "get64"): get64,
        ("env", "fget"): fget,
        ("env", "nop"): nop,
        ("env", "pair"): pair,
    }


_ENV = """
  (import "env" "get" (func $get (param i32) (result i32)))
  (import "env" "get64" (func $get64 (param i64) (result i64)))
  (import "env" "fget" (func $fget (param f64) (result f64)))
  (import "env" "nop" (func $nop))
  (import "env" "pair" (func $pair (param i32) (result i32 i32)))
  (memory 1)
"""

# name -> (functions, export, arguments); every case's module has _ENV's imports.
WAT_CASES: dict[str, tuple[str, str, list[WasmValue]]] = {
    "operands below the call": (
        """(func (export "f") (param i32) (result i32)
             (i32.add (i32.const 7) (call $get (local.get 0)))
             (call $get (i32.const 2))
             i32.mul)""",
        "f",
        [("i32", 5)],
    ),
    "loop": (
        """(func (export "f") (param i32) (result i64) (local i64)
             (loop $l
               (local.set 1 (i64.add (local.get 1) (call $get64 (i64.extend_i32_u (local.get 0)))))
               (br_if $l (local.tee 0 (i32.sub (local.get 0) (i32.const 1)))))
             (local.get 1))""",
        "f",
        [("i32", 6)],
    ),
    "if/else with results": (
        """(func (export "f") (param i32) (result i32)
             (if (result i32) (local.get 0)
               (then (call $get (i32.const 10)))
               (else (i32.add (call $get (i32.const 20)) (call $get (i32.const 30))))))""",
        "f",
        [("i32", 0)],
    ),
    "block params": (
        """(func (export "f") (param i32) (result i32)
             (local.get 0) (i32.const 4)
             (block (param i32 i32) (result i32)
               (call $get) i32.add))""",
        "f",
        [("i32", 9)],
    ),
    "br_if with a value": (
        """(func (export "f") (param i32) (result i32)
             (block (result i32)
               (drop (br_if 0 (call $get (i32.const 1)) (local.get 0)))
               (call $get (i32.const 2))))""",
        "f",
        [("i32", 1)],
    ),
    "br_table out of a transformed block": (
        """(func (export "f") (param i32) (result i32) (local i32)
             (block $a (block $b (block $c
               (local.set 1 (call $get (local.get 0)))
               (br_table $a $b $c (i32.rem_u (local.get 1) (i32.const 3))))
               (return (i32.const 100)))
               (return (call $get (i32.const 200))))
             (local.get 1))""",
        "f",
        [("i32", 4)],
    ),
    "NaN bits in locals": (
        """(func (export "f") (result f32 f64) (local f32 f64)
             (local.set 0 (f32.const nan:0x200001))
             (local.set 1 (f64.const -nan:0x4000000000001))
             (call $nop)
             (local.get 0) (local.get 1))""",
        "f",
        [],
    ),
    "f64 through the import": (
        """(func (export "f") (param f64) (result f64)
             (f64.mul (local.get 0) (call $fget (local.get 0))))""",
        "f",
        [("f64", 0x4009_21FB_5444_2D18)],
    ),
    "v128 local": (
        """(func (export "f") (result v128) (local v128)
             (local.set 0 (v128.const i32x4 1 2 3 4))
             (call $nop)
             (i32x4.add (local.get 0) (i32x4.splat (call $get (i32.const 1)))))""",
        "f",
        [],
    ),
    "recursion": (
        """(func $fac (export "f") (param i64) (result i64)
             (if (result i64) (i64.eqz (local.get 0))
               (then (call $get64 (i64.const 0)))
               (else (i64.mul (local.get 0)
                              (call $fac (i64.sub (local.get 0) (i64.const 1)))))))""",
        "f",
        [("i64", 6)],
    ),
    "call_indirect": (
        """(type $t (func (param i32) (result i32)))
           (table funcref (elem $a $b))
           (func $a (param i32) (result i32) (call $get (local.get 0)))
           (func $b (param i32) (result i32) (i32.mul (call $get (local.get 0)) (i32.const 2)))
           (func (export "f") (param i32) (result i32)
             (i32.add
               (call_indirect (type $t) (local.get 0) (i32.const 0))
               (call_indirect (type $t) (local.get 0) (i32.const 1))))""",
        "f",
        [("i32", 3)],
    ),
    "multi-value import and function": (
        """(func $g (param i32) (result i32 i32) (call $pair (local.get 0)))
           (func (export "f") (param i32) (result i32 i32 i32)
             (local.get 0) (call $g (local.get 0)))""",
        "f",
        [("i32", 40)],
    ),
    # Known failures (see KNOWN_WAT_FAILURES).
    "values pushed after unreachable": (
        # `unreachable` in dead code (after the return), then a value pushed.
        """(func (export "f") (result i32)
             (call $nop) (return (i32.const 7)) unreachable i32.const 0)""",
        "f",
        [],
    ),
    "values pushed after return": (
        """(func (export "f") (result i32) (call $nop) (return (i32.const 1)) i32.const 0)""",
        "f",
        [],
    ),
    "values pushed after br": (
        """(func (export "f") (result i32)
             (block (result i32) (call $nop) (br 0 (i32.const 1)) i32.const 2))""",
        "f",
        [],
    ),
}
KNOWN_WAT_FAILURES: dict[str, str] = {}


def _wat_params() -> list[Any]:
    out = []
    for name in WAT_CASES:
        for rewind in ("same", "zeros"):
            why = KNOWN_WAT_FAILURES.get(name)
            marks = (
                [pytest.mark.xfail(strict=True, raises=KnownTransformFailure, reason=why)]
                if why
                else []
            )
            out.append(pytest.param(name, rewind, id=f"{name}-{rewind}", marks=marks))
    return out


@pytest.mark.parametrize(("case", "rewind"), _wat_params())
def test_wat_case(case: str, rewind: str) -> None:
    funcs, export, args = WAT_CASES[case]
    data = wat(f"(module {_ENV} {funcs})")
    m = wasync.decode_module(data)
    memory0 = export_memory0(m)
    plain_wasm = wasync.encode_module(m)
    transformed = asyncify(wasync.decode_module(plain_wasm))
    try:
        wasmtime.Module.validate(engine(), transformed)
    except wasmtime.WasmtimeError as e:
        failure = f"{case}: the transformed module is invalid: {str(e).splitlines()[-1]}"
        if case in KNOWN_WAT_FAILURES:
            raise KnownTransformFailure(failure) from None
        raise AssertionError(failure) from None
    runs = []
    for wasm, is_async in ((plain_wasm, False), (transformed, True)):
        runner = Runner(
            wasm,
            _env_host(),
            asyncify=is_async,
            memory0=memory0,
            rewind_args="same" if rewind == "same" else "zeros",
        )
        runs.append((outcome_of(lambda r=runner: r.call(export, args)), runner))  # type: ignore[misc]
    (a, plain), (b, transformed_runner) = runs
    assert a[0] == "ok", a
    assert (b, transformed_runner.calls) == (a, plain.calls)
    assert transformed_runner.suspensions == len(plain.calls) > 0


# --------------------------------------------------------------------------------------------
# C programs under a WASI shim

PROGRAMS = c_programs()
OPTS = ["-O0", "-O2"]


@dataclass
class ShimRun:
    exit_code: int
    stdout: bytes
    stderr: bytes
    calls: list[tuple[str, str, tuple[object, ...]]]
    suspensions: int
    unsupported: list[str]


def run_shim(wasm: bytes, imports: list[str], *, asyncify_mode: bool) -> ShimRun:
    shim = WasiShim()
    runner = Runner(
        wasm, shim.host(imports), asyncify=asyncify_mode, memory0="memory", buffer_pages=16
    )
    try:
        runner.call("_start", [])
        code = 0
    except ProcExit as e:
        code = e.code
    return ShimRun(
        code,
        bytes(shim.stdout),
        bytes(shim.stderr),
        runner.calls,
        runner.suspensions,
        shim.unsupported,
    )


def _c_params() -> list[Any]:
    out = []
    for p in PROGRAMS:
        for opt in OPTS:
            why = KNOWN_C_FAILURES.get((p.stem, opt))
            marks = (
                [pytest.mark.xfail(strict=True, raises=KnownTransformFailure, reason=why)]
                if why
                else []
            )
            out.append(pytest.param(p, opt, id=f"{p.stem}{opt}", marks=marks))
    return out


@pytest.mark.slow
@pytest.mark.parametrize(("program", "opt"), _c_params())
def test_c_program(program: Path, opt: str) -> None:
    t = time.perf_counter()
    try:
        wasm = compile_c(program, opt=opt)
        reference = run_wasi(wasm)
        m = wasync.decode_module(wasm)
        imports = [i.name for i in m.imports if i.kind is wasync.ExternKind.FUNC]
        assert all(i.module == "wasi_snapshot_preview1" for i in m.imports)
        plain = run_shim(wasm, imports, asyncify_mode=False)
        # The shim against wasmtime's WASI.
        assert (plain.exit_code, plain.stdout, plain.stderr) == (
            reference.exit_code,
            reference.stdout,
            reference.stderr,
        )
        assert plain.unsupported == [], f"the shim lacks {sorted(set(plain.unsupported))}"
        assert export_memory0(m) == "memory"
        transformed = asyncify(m)
        try:
            result = run_shim(transformed, imports, asyncify_mode=True)
        except (wasmtime.Trap, DriverError) as e:
            failure = f"{program.stem} {opt}: transformed run failed: {type(e).__name__}: {e}"
            if (program.stem, opt) in KNOWN_C_FAILURES:
                raise KnownTransformFailure(failure) from e
            raise AssertionError(failure) from e
        REPORT[f"C: WASI calls ({opt})"] += len(plain.calls)
        REPORT[f"C: suspensions ({opt})"] += result.suspensions
        same = (result.exit_code, result.stdout, result.stderr, result.calls) == (
            plain.exit_code,
            plain.stdout,
            plain.stderr,
            plain.calls,
        )
        if not same:
            failure = (
                f"{program.stem} {opt}: exit {result.exit_code} vs {plain.exit_code}, "
                f"stdout same: {result.stdout == plain.stdout}, "
                f"stderr same: {result.stderr == plain.stderr}, "
                f"calls same: {result.calls == plain.calls}"
            )
            if (program.stem, opt) in KNOWN_C_FAILURES:
                raise KnownTransformFailure(failure)
            raise AssertionError(failure)
        assert result.suspensions == len(plain.calls)
        REPORT["C: programs passed"] += 1
    finally:
        _add_time("C programs", t)
