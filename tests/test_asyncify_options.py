"""The transform's module-level options: in-wasm runtimes, asserts, imported
globals, the memory that holds the data (chosen, or a secondary one).

Behaviour is checked by running the output on wasmtime with a host that speaks
the Asyncify protocol itself (:class:`Host`), so that each test sees exactly
which memory and which globals the module uses. Every one of Binaryen's lit
inputs, with its pass arguments, also transforms into a module wasmtime
validates.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from typing import Any

import pytest
import wasmtime

import wasync
from tests.conftest import wat
from tests.test_asyncify_analysis import LIT_CASES, lit_module
from wasync import AsyncifyOptions
from wasync._binary.leb import read_uleb


def engine() -> wasmtime.Engine:
    cfg = wasmtime.Config()
    for feature in (
        "wasm_gc",
        "wasm_function_references",
        "wasm_exceptions",
        "wasm_tail_call",
        "wasm_multi_memory",
        "wasm_memory64",
    ):
        setattr(cfg, feature, True)
    return wasmtime.Engine(cfg)


ENGINE = engine()


# -- every lit input -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("file", "index", "args", "prefix"),
    LIT_CASES,
    ids=[f"{f.removesuffix('.wast')}#{i}:{','.join(a)}" for f, i, a, _ in LIT_CASES],
)
def test_lit_inputs_transform_and_validate(
    file: str, index: int, args: tuple[str, ...], prefix: str
) -> None:
    wasm, _ = lit_module(file, index)
    out = wasync.asyncify(wasm, AsyncifyOptions.from_pass_args(args))
    if "-eh" in file:
        # Legacy exception handling (`try`), which this wasmtime cannot run:
        # that must be its only complaint.
        with pytest.raises(wasmtime.WasmtimeError, match="legacy_exceptions feature required"):
            wasmtime.Module.validate(ENGINE, out)
    else:
        wasmtime.Module.validate(ENGINE, out)


# -- a host on wasmtime --------------------------------------------------------------------


class Host:
    """Instantiates `wasm` with an ``env.sleep`` that unwinds on its first call
    and finishes the rewind on the second, and drives an export through one
    suspension per sleep (rewinding with dummy arguments, as Binaryen's host
    does). The header lives in memory `memory` at `header`; `extra` makes more
    ``env`` imports in the host's store."""

    def __init__(
        self,
        wasm: bytes,
        *,
        memory: str = "memory",
        header: int = 16,
        end: int = 1024,
        extra: Callable[[wasmtime.Store], dict[str, Any]] | None = None,
    ) -> None:
        self.store = wasmtime.Store(ENGINE)
        self.header, self.end = header, end
        self.sleeps = 0
        linker = wasmtime.Linker(ENGINE)
        linker.define_func("env", "sleep", wasmtime.FuncType([], []), self._sleep)
        for name, item in (extra(self.store) if extra else {}).items():
            linker.define(self.store, "env", name, item)
        self.instance = linker.instantiate(self.store, wasmtime.Module(ENGINE, wasm))
        mem = self.instance.exports(self.store)[memory]
        assert isinstance(mem, wasmtime.Memory)
        self.memory = mem
        self.is64 = self.func("asyncify_start_unwind").type(self.store).params[0] == (
            wasmtime.ValType.i64()
        )

    def func(self, name: str) -> wasmtime.Func:
        f = self.instance.exports(self.store)[name]
        assert isinstance(f, wasmtime.Func)
        return f

    def call(self, name: str, *args: Any) -> Any:
        return self.func(name)(self.store, *args)

    def _sleep(self) -> None:
        if self.call("asyncify_get_state") == 2:
            self.call("asyncify_stop_rewind")
            return
        self.sleeps += 1
        self.call("asyncify_start_unwind", self.header)

    def header_words(self) -> tuple[int, int]:
        fmt, size = ("<QQ", 16) if self.is64 else ("<II", 8)
        pos, end = struct.unpack(fmt, self.memory.read(self.store, self.header, self.header + size))
        return int(pos), int(end)

    def run(self, name: str, *args: Any) -> Any:
        fmt, size = ("<QQ", 16) if self.is64 else ("<II", 8)
        start = self.header + size
        self.memory.write(self.store, struct.pack(fmt, start, self.end), self.header)
        out = self.call(name, *args)
        while self.call("asyncify_get_state") == 1:
            self.call("asyncify_stop_unwind")
            assert self.header_words()[0] > start, "a frame was saved"
            self.call("asyncify_start_rewind", self.header)
            out = self.call(name, *[0] * len(args))
        assert self.header_words()[0] == start
        return out


SLEEPER = """(module
  (import "env" "sleep" (func $sleep))
  (memory $main (export "memory") 1)
  (memory $frames (export "frames") 1)
  (data (memory $main) (i32.const 0) "main memory")
  (func $inner (param $x i32) (result i32) (local $y i32)
    (local.set $y (i32.mul (local.get $x) (i32.const 3)))
    (call $sleep)
    (i32.add (local.get $y) (i32.load8_u $main (i32.const 0))))
  (func (export "run") (param i32) (result i32) (call $inner (local.get 0))))"""


def test_memory_selected_by_export_name() -> None:
    """With several memories, the data goes to the one exported as `memory`:
    the frames are written there, and the other memory is not touched."""
    out = wasync.asyncify(wat(SLEEPER), memory="frames")
    h = Host(out, memory="frames")
    main = h.instance.exports(h.store)["memory"]
    assert isinstance(main, wasmtime.Memory)
    before = main.read(h.store, 0, 65536)
    assert h.run("run", 5) == 15 + ord("m")
    assert h.sleeps == 1
    assert main.read(h.store, 0, 65536) == before
    # The frames were written to memory "frames" (the header was advanced there).
    assert h.memory.read(h.store, 24, 64) != bytes(40)


def test_default_memory_among_several_is_the_one_named_memory() -> None:
    out = wasync.asyncify(wat(SLEEPER))
    h = Host(out, memory="memory", header=60000, end=65000)
    frames = h.instance.exports(h.store)["frames"]
    assert isinstance(frames, wasmtime.Memory)
    assert h.run("run", 2) == 6 + ord("m")
    assert frames.read(h.store, 0, 65536) == bytes(65536)


def test_no_memory_named_among_several_is_an_error() -> None:
    with pytest.raises(wasync.AsyncifyError, match="asyncify-memory"):
        wasync.asyncify(wat(SLEEPER), memory="nonesuch")


@pytest.mark.parametrize("index_type", ["i32", "i64"])
def test_secondary_memory(index_type: str) -> None:
    """The data goes to a memory the transform adds (exported as
    ``asyncify_memory``, always 32-bit, of the given size in pages); the
    module's own memory is not touched."""
    text = SLEEPER.replace(
        '(memory $frames (export "frames") 1)', f"(memory $frames {index_type} 1)"
    ).replace(
        '(memory $main (export "memory") 1)', f'(memory $main (export "memory") {index_type} 1)'
    )
    if index_type == "i64":
        text = text.replace('(i32.const 0) "main', '(i64.const 0) "main').replace(
            "(i32.load8_u $main (i32.const 0))",
            "(i32.load8_u $main (i64.const 0))",
        )
    out = wasync.asyncify(wat(text), in_secondary_memory=True, secondary_memory_size=3)
    m = wasync.decode_module(out)
    exported = {e.name: e.index for e in m.exports if e.kind is wasync.ExternKind.MEMORY}
    added = m.memories[exported["asyncify_memory"]]
    assert (added.min, added.max, added.is64) == (3, 3, False)
    h = Host(out, memory="asyncify_memory", header=0, end=3 * 65536)
    assert not h.is64
    main = h.instance.exports(h.store)["memory"]
    assert isinstance(main, wasmtime.Memory)
    before = main.read(h.store, 0, 65536)
    assert h.run("run", 7) == 21 + ord("m")
    assert main.read(h.store, 0, 65536) == before


def test_secondary_memory_export_name_is_unique() -> None:
    text = SLEEPER.replace('(export "frames")', '(export "asyncify_memory")')
    out = wasync.asyncify(wat(text), memory="memory", in_secondary_memory=True)
    names = [e.name for e in wasync.decode_module(out).exports]
    assert names.count("asyncify_memory") == 1
    assert "asyncify_memory_1" in names
    assert Host(out, memory="asyncify_memory_1", header=0, end=65536).run("run", 1) == 3 + 109


# -- imported globals ----------------------------------------------------------------------

GLOBALS = """(module
  (import "env" "sleep" (func $sleep))
  (import "env" "base" (global $base i32))
  (memory (export "memory") 1)
  (global $sp (mut i32) (global.get $base))
  (global $k (export "k") i32 (i32.const 5))
  (func $inner (param $x i32) (result i32)
    (global.set $sp (i32.add (global.get $sp) (i32.const 1)))
    (call $sleep)
    (i32.add (i32.add (local.get $x) (global.get $sp)) (global.get $k)))
  (func (export "run") (param i32) (result i32) (call $inner (local.get 0)))
  (func (export "sp") (result i32) (global.get $sp)))"""


def test_import_globals() -> None:
    """``import_globals``: the state and data globals are imported from ``env``
    (after the module's own global imports), every other global keeps working
    under its shifted index, and the host sees the state in its own global."""
    out = wasync.asyncify(wat(GLOBALS), import_globals=True)
    m = wasync.decode_module(out)
    imported = [(i.module, i.name) for i in m.imports if i.kind is wasync.ExternKind.GLOBAL]
    assert imported == [("env", "base"), ("env", "__asyncify_state"), ("env", "__asyncify_data")]
    assert len(m.globals) == 2  # $sp and $k only
    store_globals: dict[str, wasmtime.Global] = {}

    def make(store: wasmtime.Store) -> dict[str, Any]:
        mut_i32 = wasmtime.GlobalType(wasmtime.ValType.i32(), True)
        store_globals["state"] = wasmtime.Global(store, mut_i32, wasmtime.Val.i32(0))
        store_globals["data"] = wasmtime.Global(store, mut_i32, wasmtime.Val.i32(0))
        return {
            "base": wasmtime.Global(
                store, wasmtime.GlobalType(wasmtime.ValType.i32(), False), wasmtime.Val.i32(100)
            ),
            "__asyncify_state": store_globals["state"],
            "__asyncify_data": store_globals["data"],
        }

    h = Host(out, extra=make)
    assert h.run("run", 10) == 10 + 101 + 5
    assert h.sleeps == 1
    assert h.call("sp") == 101  # the code before the sleep ran once
    k = h.instance.exports(h.store)["k"]
    assert isinstance(k, wasmtime.Global)
    assert k.value(h.store) == 5
    # The host's globals are the module's: the data pointer is the header.
    assert store_globals["data"].value(h.store) == h.header
    assert store_globals["state"].value(h.store) == 0


def test_import_and_export_globals_conflict() -> None:
    with pytest.raises(wasync.AsyncifyError, match="import"):
        wasync.asyncify(wat(GLOBALS), import_globals=True, export_globals=True)


# -- asserts -------------------------------------------------------------------------------

HIDDEN = """(module
  (import "env" "sleep" (func $sleep))
  (import "env" "log" (func $log (param i32)))
  (memory (export "memory") 1)
  (func $hidden (call $log (i32.const 1)) (call $sleep) (call $log (i32.const 2)))
  (func (export "run") (result i32) (call $hidden) (i32.const 42)))"""


def _log_host(wasm: bytes, log: list[int]) -> Host:
    def make(store: wasmtime.Store) -> dict[str, Any]:
        return {
            "log": wasmtime.Func(store, wasmtime.FuncType([wasmtime.ValType.i32()], []), log.append)
        }

    return Host(wasm, extra=make)


def test_asserts_catch_an_unwind_through_code_that_is_not_instrumented() -> None:
    """A function wrongly left out (remove-list) calls an import that unwinds:
    without asserts it carries on as if the call had returned (logging 2 before
    the sleep is over); with asserts it traps at that call."""
    plain = wasync.asyncify(wat(HIDDEN), imports=["env.sleep"], removelist=["hidden"])
    log: list[int] = []
    h = _log_host(plain, log)
    h.call("run")
    assert log == [1, 2]  # silently wrong: the code after the sleep ran during the unwind

    checked = wasync.asyncify(
        wat(HIDDEN), imports=["env.sleep"], removelist=["hidden"], asserts=True
    )
    log.clear()
    h = _log_host(checked, log)
    with pytest.raises(wasmtime.Trap, match="unreachable"):
        h.call("run")
    assert log == [1]


def test_asserts_do_not_fire_when_nothing_changes_the_state() -> None:
    out = wasync.asyncify(wat(HIDDEN), imports=["env.sleep"], asserts=True)
    log: list[int] = []
    h = _log_host(out, log)
    assert h.run("run") == 42
    assert (log, h.sleeps) == ([1, 2], 1)
    # "run" and "hidden" are instrumented, so they carry no asserts; the checks
    # sit in the functions that are not: here only the added ABI functions
    # (which call nothing). With a remove-list, "hidden" gets them and the sleep
    # is the one call that may change the state.
    out = wasync.asyncify(wat(HIDDEN), imports=["env.log"], removelist=["hidden"], asserts=True)
    log.clear()
    h = _log_host(out, log)
    with pytest.raises(wasmtime.Trap, match="unreachable"):
        h.call("run")
    assert log == [1]


# -- in-wasm runtimes ----------------------------------------------------------------------

RUNTIME = """(module
  (import "env" "log" (func $log (param i32)))
  (import "asyncify" "start_unwind" (func $start_unwind (param i32)))
  (import "asyncify" "stop_unwind" (func $stop_unwind))
  (import "asyncify" "start_rewind" (func $start_rewind (param i32)))
  (import "asyncify" "stop_rewind" (func $stop_rewind))
  (memory (export "memory") 1)
  (global $sleeping (mut i32) (i32.const 0))
  (global $counter (mut i32) (i32.const 0))
  (table 2 funcref)
  (elem (i32.const 0) $work $sleep)
  (func $sleep
    (if (global.get $sleeping)
      (then (global.set $sleeping (i32.const 0)) (call $stop_rewind))
      (else
        (global.set $sleeping (i32.const 1))
        (i32.store (i32.const 16) (i32.const 24))
        (i32.store (i32.const 20) (i32.const 1024))
        (call $start_unwind (i32.const 16)))))
  (func $work (param $x i32) (result i32) (local $y i32)
    (local.set $y (i32.mul (local.get $x) (i32.const 3)))
    (call $log (local.get $y))
    (call $sleep)
    (call $log (i32.add (local.get $y) (global.get $counter)))
    (i32.add (local.get $y) (i32.const 1)))
  (func $main (export "main") (param $x i32) (result i32) (local $r i32)
    (call $log (global.get $counter))
    (local.set $r (call_indirect (param i32) (result i32) (local.get $x) (i32.const 0)))
    (call $stop_unwind)
    (call $log (i32.const -1))
    (global.set $counter (i32.const 200))
    (call $start_rewind (i32.const 16))
    (call $work (local.get $x)))
  (func $init (global.set $counter (i32.const 7)))
  (start $init)
  (elem declare func $main)
  (func (export "main_ref") (result funcref) (ref.func $main)))"""


@pytest.mark.parametrize("asserts", [False, True])
def test_in_wasm_runtime(asserts: bool) -> None:
    """The ``asyncify.*`` imports are removed and their calls redirected to the
    generated functions; every function index after them shifts (calls,
    ``call_indirect`` through the table, ``ref.func``, the start function,
    exports, names). Binaryen's asserts break in-wasm runtimes (their own FIXME):
    wasync leaves the runtime functions out of them."""
    out = wasync.asyncify(wat(RUNTIME), asserts=asserts)
    m = wasync.decode_module(out)
    assert [(i.module, i.name) for i in m.imports] == [("env", "log")]
    names = m.function_names()
    assert {names[f] for f in range(1, 5)} == {"sleep", "work", "main", "init"}
    log: list[int] = []
    store = wasmtime.Store(ENGINE)
    linker = wasmtime.Linker(ENGINE)
    linker.define_func("env", "log", wasmtime.FuncType([wasmtime.ValType.i32()], []), log.append)
    inst = linker.instantiate(store, wasmtime.Module(ENGINE, out))
    main = inst.exports(store)["main"]
    assert isinstance(main, wasmtime.Func)
    assert main(store, 5) == 16
    assert log == [7, 15, -1, 215]
    main_ref = inst.exports(store)["main_ref"]
    assert isinstance(main_ref, wasmtime.Func)
    again = main_ref(store)
    assert isinstance(again, wasmtime.Func)
    log.clear()
    assert again(store, 1) == 4
    assert log == [200, 3, -1, 203]
    assert _local_names(m, names_to_index(names)["work"]) == {0: "x", 1: "y"}


def names_to_index(names: dict[int, str]) -> dict[str, int]:
    return {v: k for k, v in names.items()}


def _local_names(m: wasync.BinaryModule, func: int) -> dict[int, str]:
    """Function `func`'s local names from the name section (subsection 2)."""
    payload = next(c.data for c in m.customs if c.name == "name")
    pos = 0
    while pos < len(payload):
        sub, size = payload[pos], 0
        size, pos = read_uleb(payload, pos + 1)
        end = pos + size
        if sub == 2:
            count, p = read_uleb(payload, pos)
            for _ in range(count):
                index, p = read_uleb(payload, p)
                inner, p = read_uleb(payload, p)
                found: dict[int, str] = {}
                for _ in range(inner):
                    local, p = read_uleb(payload, p)
                    n, p = read_uleb(payload, p)
                    found[local] = payload[p : p + n].decode()
                    p += n
                if index == func:
                    return found
        pos = end
    return {}


def test_in_wasm_runtime_import_with_a_wrong_type() -> None:
    text = RUNTIME.replace(
        "(func $start_unwind (param i32))", "(func $start_unwind (param i64))"
    ).replace("(call $start_unwind (i32.const 16))", "(call $start_unwind (i64.const 16))")
    with pytest.raises(wasync.AsyncifyError, match=r"asyncify\.start_unwind .*\(i64\)"):
        wasync.asyncify(wat(text))


def test_in_wasm_runtime_and_imported_globals_together() -> None:
    out = wasync.asyncify(wat(RUNTIME), import_globals=True)
    store = wasmtime.Store(ENGINE)
    linker = wasmtime.Linker(ENGINE)
    log: list[int] = []
    linker.define_func("env", "log", wasmtime.FuncType([wasmtime.ValType.i32()], []), log.append)
    mut_i32 = wasmtime.GlobalType(wasmtime.ValType.i32(), True)
    for name in ("__asyncify_state", "__asyncify_data"):
        linker.define(store, "env", name, wasmtime.Global(store, mut_i32, wasmtime.Val.i32(0)))
    inst = linker.instantiate(store, wasmtime.Module(ENGINE, out))
    main = inst.exports(store)["main"]
    assert isinstance(main, wasmtime.Func)
    assert main(store, 2) == 7
    assert log == [7, 6, -1, 206]


# -- the runtime finds the data memory -------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [{"memory": "frames"}, {"in_secondary_memory": True, "secondary_memory_size": 2}],
    ids=["chosen", "secondary"],
)
def test_runtime_places_the_buffer_in_the_data_memory(options: dict[str, Any]) -> None:
    """``wasync.instantiate`` reads which memory holds the data (from the
    module's own ``asyncify_start_unwind``) and places the buffer there: the
    module's main memory is left alone."""

    async def sleep() -> None:
        await asyncio.sleep(0)

    async def main() -> tuple[list[int], bytes, bytes]:
        out = wasync.asyncify(wat(SLEEPER), **options)
        inst = await wasync.instantiate(out, {"env": {"sleep": sleep}}, strategy="asyncify")
        main = inst.memory
        assert main is not None
        before = main.read(0, 65536)
        results = [int(await inst.exports.run(x)) for x in (1, 2, 3)]
        return results, before, main.read(0, 65536)

    results, before, after = asyncio.run(main())
    assert results == [3 + 109, 6 + 109, 9 + 109]
    assert after == before


# -- features -----------------------------------------------------------------------------

MANY_LOCALS = """(module
  (import "env" "sleep" (func $sleep))
  (memory (export "memory") 1)
  (func $f (param $x i32) (result i32)
    (local $a i32) (local $b i32) (local $c i32) (local $d i32) (local $e i32) (local $g i64)
    (local.set $a (i32.add (local.get $x) (i32.const 1)))
    (local.set $b (i32.mul (local.get $a) (i32.const 2)))
    (local.set $c (i32.sub (local.get $b) (i32.const 3)))
    (local.set $d (i32.xor (local.get $c) (i32.const 5)))
    (local.set $e (i32.or (local.get $d) (i32.const 8)))
    (local.set $g (i64.extend_i32_u (local.get $e)))
    (call $sleep)
    (i32.add (i32.add (i32.add (local.get $a) (local.get $b)) (i32.add (local.get $c)
      (local.get $d))) (i32.add (local.get $e) (i32.wrap_i64 (local.get $g)))))
  (func (export "run") (param i32) (result i32) (call $f (local.get 0)))
  MULTI)"""


def _max_results(wasm: bytes) -> int:
    types = wasync.decode_module(wasm).type_list()
    return max(len(t.comp.results) for t in types if isinstance(t.comp, wasync.FuncType))


@pytest.mark.parametrize("multi", [False, True], ids=["mvp", "multivalue"])
def test_output_needs_no_feature_the_input_does_not_use(multi: bool) -> None:
    """Frames are restored through shared helpers; a helper returning several
    values (multi-value) is used only when the input already uses multi-value."""
    extra = '(func (export "pair") (result i32 i32) (i32.const 1) (i32.const 2))' if multi else ""
    source = MANY_LOCALS.replace("MULTI", extra)
    out = wasync.asyncify(wat(source))
    if multi:
        assert _max_results(out) > _max_results(wat(source)) == 2  # several values a call
    else:
        assert _max_results(out) == 1
    h = Host(out)
    x = 7
    a, b = x + 1, (x + 1) * 2
    c, d = b - 3, (b - 3) ^ 5
    e = d | 8
    assert h.run("run", x) == a + b + c + d + e + e
    assert h.sleeps == 1
