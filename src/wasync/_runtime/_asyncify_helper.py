"""The "asyncify" strategy's helpers: two small wasm modules around an Asyncify
module that take the protocol's steps in wasm, so that a suspension crosses
between Python and wasm once instead of nine times.

Without them, a suspension is: the export call, the import callback,
``asyncify_start_unwind`` from inside it, a read of the data header (a C call
for the memory's address), ``asyncify_start_rewind``, the export called again,
the import callback again, ``asyncify_stop_rewind`` from inside it, and the
header read again: nine crossings at 0.3 to 1 us each through ctypes. With
them, the driver makes one call per suspension, and reads and writes
everything else in the stubs' memory, whose address never changes.

**The stubs** (instantiated before the module, in the same store): the module's
async import number K is the stubs' function ``fK``, which

* on the rewind, when the driver has placed the import's result (the rewind
  mode is K + 1): clears the mode, calls ``asyncify_stop_rewind``, checks that
  the data position is back at the buffer start (else sets the status
  ``STATUS_REWIND_POSITION`` and traps) and returns the result;
* on the first visit of an ``async def`` import during an export call (the
  driving flag set, nothing pending): records K + 1 as pending, stores the
  arguments and calls ``asyncify_start_unwind(data)``;
* otherwise calls the Python callback ``slowK`` (a "maybe async" import, which
  must run at once; a rewind the driver left to Python; every protocol
  violation and misuse, which Python reports) and calls
  ``asyncify_start_unwind(data)`` if the callback asked for it (``UNWIND``).

The stubs reach the module's ABI exports, and the trampolines' ``check``,
through their own table, filled once everything is instantiated.

**The trampolines** (instantiated after the module, importing the memory that
holds its Asyncify data, ``asyncify_start_rewind`` and ``asyncify_get_state``):
``tS`` calls an export of signature S through the trampolines' table, after
``asyncify_start_rewind(data)`` if asked to, and returns the export's results
followed by the Asyncify state and, when unwinding, the header (position,
end): the driver needs no other call to learn what happened.

Layout of the stubs' memory (one page that cannot grow, so its address never
changes and Python reads and writes it directly): u32 words ``MODE`` (0, K + 1
for a result placed for import K, or ``SLOW``), ``PENDING`` (0 or K + 1),
``DRIVING``, ``STATUS``, ``UNWIND``; the data pointer (u32 or u64) at ``DATA``;
the suspended import's arguments from ``ARGS`` and its results from
``results_offset``, 16 bytes per value as in a ``wasmtime_val_raw_t`` array
(see RawMarshal).
"""

from __future__ import annotations

import ctypes
import threading
from typing import TYPE_CHECKING, Any

import wasmtime

from wasync._errors import WasyncError
from wasync._runtime._common import raise_call_failure, wasmtime_functype
from wasync._runtime._ffi import (
    HELPER_NAME,
    NULL_FINALIZER,
    RAW_VAL_SIZE,
    define_func_unchecked,
    error_pointer,
    ffi,
    take_error,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable

    from wasync._binary.types import Limits
    from wasync._runtime._host import HostFunc

__all__ = [
    "ARGS",
    "DATA",
    "DRIVING",
    "HELPER_NAME",
    "MODE",
    "PENDING",
    "SLOW",
    "STATUS",
    "STATUS_REWIND_POSITION",
    "UNWIND",
    "Helper",
    "stubs_wat",
    "trampolines_wat",
]

MODE, PENDING, DRIVING, STATUS, UNWIND, DATA, ARGS = 0, 4, 8, 12, 16, 24, 32
SLOW = 0xFFFF_FFFF  # MODE: a rewind the Python callback finishes
STATUS_REWIND_POSITION = 1  # the stubs trapped: the position was not back at the start
_STOP_REWIND, _START_UNWIND, _CHECK = 0, 1, 2  # the stubs' table slots
_WAT = {0: "i32", 1: "i64", 2: "f32", 3: "f64", 4: "v128"}
_ZERO = {
    0: "(i32.const 0)",
    1: "(i64.const 0)",
    2: "(f32.const 0)",
    3: "(f64.const 0)",
    4: "(v128.const i64x2 0 0)",
}

Signature = tuple[tuple[int, ...], tuple[int, ...]]  # (params, results) value kinds

# Compiled helpers by engine and what their text is generated from (the text is
# only generated, and compiled, the first time).
_compiled: dict[tuple[wasmtime.Engine, Hashable], wasmtime.Module] = {}
_compiled_lock = threading.Lock()


def results_offset(signatures: list[Signature]) -> int:
    """Where the stubs' memory holds a suspended import's results. (Arguments
    and results always fit in the page: wasmtime accepts at most 1,000 of each
    per function, 16,000 bytes.)"""
    most = max((len(params) for params, _ in signatures), default=0)
    return ARGS + RAW_VAL_SIZE * most


def stubs_wat(imports: list[tuple[Signature, bool]], ptr64: bool) -> str:
    """The stubs for async imports of these signatures; the flag says whether
    the import suspends on its first visit without asking Python (``async def``
    imports) or must run first ("maybe async" imports)."""
    ptr = "i64" if ptr64 else "i32"
    res_at = results_offset([sig for sig, _ in imports])
    out = [
        f"(module ${HELPER_NAME}",
        "  (type $v (func))",
        f"  (type $p (func (param {ptr})))",
        f"  (type $chk (func (param {ptr}) (result i32)))",
    ]
    for k, ((params, results), _) in enumerate(imports):
        p = " ".join(_WAT[t] for t in params)
        r = " ".join(_WAT[t] for t in results)
        out.append(f'  (import "wasync" "slow{k}" (func $slow{k} (param {p}) (result {r})))')
    out += ['  (table (export "table") 3 funcref)', '  (memory (export "memory") 1 1)']
    data = f"({ptr}.load (i32.const {DATA}))"
    start_unwind = f"(call_indirect (type $p) {data} (i32.const {_START_UNWIND}))"
    for k, ((params, results), in_wasm) in enumerate(imports):
        p = " ".join(_WAT[t] for t in params)
        r = " ".join(_WAT[t] for t in results)
        args = " ".join(f"(local.get {i})" for i in range(len(params)))
        loads = " ".join(
            f"({_WAT[t]}.load (i32.const {res_at + RAW_VAL_SIZE * i}))"
            for i, t in enumerate(results)
        )
        body = [
            f'  (func (export "f{k}") (param {p}) (result {r}) (local $mode i32)',
            f"    (if (local.tee $mode (i32.load (i32.const {MODE})))",
            "      (then",
            f"        (if (i32.eq (local.get $mode) (i32.const {k + 1}))",
            "          (then",
            f"            (i32.store (i32.const {MODE}) (i32.const 0))",
            f"            (call_indirect (type $v) (i32.const {_STOP_REWIND}))",
            f"            (if (call_indirect (type $chk) {data} (i32.const {_CHECK}))",
            f"              (then (i32.store (i32.const {STATUS}) "
            f"(i32.const {STATUS_REWIND_POSITION})) (unreachable)))",
            f"            (return {loads})))",
            f"        (return (call $slow{k} {args}))))",
        ]
        if in_wasm:
            stores = " ".join(
                f"({_WAT[t]}.store (i32.const {ARGS + RAW_VAL_SIZE * i}) (local.get {i}))"
                for i, t in enumerate(params)
            )
            zeros = " ".join(_ZERO[t] for t in results)
            body += [
                f"    (if (i32.and (i32.load (i32.const {DRIVING})) "
                f"(i32.eqz (i32.load (i32.const {PENDING}))))",
                "      (then",
                f"        (i32.store (i32.const {PENDING}) (i32.const {k + 1})) {stores}",
                f"        {start_unwind}",
                f"        (return {zeros})))",
            ]
        body += [
            f"    (call $slow{k} {args})",
            f"    (if (i32.load (i32.const {UNWIND}))",
            f"      (then (i32.store (i32.const {UNWIND}) (i32.const 0)) {start_unwind})))",
        ]
        out += body
    out.append(")")
    return "\n".join(out)


def _memory_type(memory: Limits) -> str:
    """The import type of the module's data memory (any size will do)."""
    text = "i64 0" if memory.is64 else "0"
    if memory.page_size_log2 is not None:
        text += f" (pagesize {1 << memory.page_size_log2})"
    return text


def trampolines_wat(signatures: list[Signature], memory: Limits, exports: int) -> str:
    """The trampolines for exports of these signatures (table of `exports` slots)."""
    ptr = "i64" if memory.is64 else "i32"
    width = 8 if memory.is64 else 4
    out = [
        f"(module ${HELPER_NAME}",
        f'  (import "m" "memory" (memory {_memory_type(memory)}))',
        f'  (import "m" "start_rewind" (func $start_rewind (param {ptr})))',
        '  (import "m" "get_state" (func $get_state (result i32)))',
        f'  (table (export "table") {max(exports, 1)} funcref)',
        f'  (func (export "check") (param $data {ptr}) (result i32)',
        f"    ({ptr}.ne ({ptr}.load (local.get $data))",
        f"      ({ptr}.add (local.get $data) ({ptr}.const {2 * width}))))",
    ]
    for j, (params, results) in enumerate(signatures):
        p = " ".join(_WAT[t] for t in params)
        r = " ".join(_WAT[t] for t in results)
        n = len(params)
        args = " ".join(f"(local.get {i})" for i in range(n))
        out += [
            f"  (type $s{j} (func (param {p}) (result {r})))",
            f'  (func (export "t{j}") (param {p} {ptr} i32 i32) (result {r} i32 {ptr} {ptr})',
            "    (local $state i32)",
            f"    (if (local.get {n + 2}) (then (call $start_rewind (local.get {n}))))",
            f"    (call_indirect (type $s{j}) {args} (local.get {n + 1}))",
            "    (local.tee $state (call $get_state))",
            f"    (if (result {ptr} {ptr}) (i32.eq (local.get $state) (i32.const 1))",
            f"      (then ({ptr}.load (local.get {n}))",
            f"        ({ptr}.load offset={width} (local.get {n})))",
            f"      (else ({ptr}.const 0) ({ptr}.const 0))))",
        ]
    out.append(")")
    return "\n".join(out)


def _compile(engine: wasmtime.Engine, key: Hashable, wat: Callable[[], str]) -> wasmtime.Module:
    """The helper module `key` for `engine`, from the text `wat()` the first time."""
    with _compiled_lock:
        module = _compiled.get((engine, key))
        if module is None:
            if len(_compiled) >= 256:  # distinct signature sets: bounded
                _compiled.clear()
            module = _compiled[(engine, key)] = wasmtime.Module(engine, wat())
        return module


def _instantiate(linker: wasmtime.Linker, ctx: Any, wmod: wasmtime.Module) -> Any:
    instance = ffi.wasmtime_instance_t()
    trap = ctypes.POINTER(ffi.wasm_trap_t)()
    error = ffi.wasmtime_linker_instantiate(
        linker.ptr(), ctx, wmod.ptr(), ctypes.byref(instance), ctypes.byref(trap)
    )
    raise_call_failure(trap, error, None, {})
    return instance


def _export(ctx: Any, instance: Any, name: str) -> Any:
    ext = ffi.wasmtime_extern_t()
    raw = name.encode()
    found = ffi.wasmtime_instance_export_get(
        ctx, ctypes.byref(instance), ctypes.create_string_buffer(raw), len(raw), ctypes.byref(ext)
    )
    if not found:
        raise WasyncError(f"the Asyncify helper has no export {name!r}")
    return ext


def _define(linker: wasmtime.Linker, ctx: Any, module: str, name: str, ext: Any) -> None:
    m, n = module.encode(), name.encode()
    err = ffi.wasmtime_linker_define(
        linker.ptr(), ctx, ctypes.create_string_buffer(m), len(m),
        ctypes.create_string_buffer(n), len(n), ctypes.byref(ext),
    )  # fmt: skip
    if err:
        raise take_error(err)


def _func_extern(func: Any) -> Any:
    ext = ffi.wasmtime_extern_t()
    ext.kind = ffi.WASMTIME_EXTERN_FUNC
    ext.of.func = func
    return ext


def _set(ctx: Any, table: Any, index: int, func: Any) -> None:
    val = ffi.wasmtime_val_t()
    val.kind = ffi.WASMTIME_FUNCREF
    val.of.funcref = func
    err = ffi.wasmtime_table_set(ctx, ctypes.byref(table.of.table), index, ctypes.byref(val))
    if err:
        raise take_error(err)


class Helper:
    """The stubs and trampolines of one AsyncifyBackend (in its store)."""

    def __init__(
        self,
        engine: wasmtime.Engine,
        ctx: Any,
        imports: list[tuple[HostFunc, Any]],
        ptr64: bool,
    ) -> None:
        """Instantiate the stubs. `imports`: each async import with its Python
        callback (UNCHECKED_CALLBACK)."""
        self._engine = engine
        self._ctx = ctx
        self._ptr64 = ptr64
        self._linker = wasmtime.Linker(engine)
        self._keep: list[object] = []
        signatures = [(hf.param_kinds, hf.result_kinds) for hf, _ in imports]
        for k, (hf, callback) in enumerate(imports):
            ft = wasmtime_functype(hf.type, engine)
            module, name = b"wasync", f"slow{k}".encode()
            err = define_func_unchecked(
                self._linker.ptr(), module, len(module), name, len(name), ft.ptr(), callback,
                None, NULL_FINALIZER,
            )  # fmt: skip
            if err:
                raise take_error(error_pointer(err))
            self._keep += [ft, callback]
        stubs = [(sig, hf.is_async) for sig, (hf, _) in zip(signatures, imports, strict=True)]
        wmod = _compile(engine, ("stubs", tuple(stubs), ptr64), lambda: stubs_wat(stubs, ptr64))
        self._keep.append(wmod)
        self._stubs = _instantiate(self._linker, ctx, wmod)
        self._funcs = [_export(ctx, self._stubs, f"f{k}") for k in range(len(imports))]
        self._table = _export(ctx, self._stubs, "table")
        memory = _export(ctx, self._stubs, "memory")
        data = ffi.wasmtime_memory_data(ctx, ctypes.byref(memory.of.memory))
        self.base = ctypes.addressof(data.contents)  # of the stubs' memory (never moves)
        self.results = self.base + results_offset(signatures)
        # The trampolines (connect): the module's callable exports by name, their
        # table slots, and the trampoline of each signature.
        self._trampolines: Any = None
        self._trampoline_table: Any = None
        self._slots: dict[str, int] = {}
        self._bound: set[str] = set()
        self._by_signature: dict[Signature, Any] = {}

    def define_imports(self, linker: wasmtime.Linker, imports: list[HostFunc]) -> None:
        """Define each async import in `linker` as the stub for it."""
        for hf, ext in zip(imports, self._funcs, strict=True):
            _define(linker, self._ctx, hf.module, hf.name, ext)

    def connect(
        self,
        abi: dict[str, Any],
        memory: Any,
        memory_type: Limits,
        exports: dict[str, Signature],
    ) -> None:
        """Instantiate the trampolines and fill the stubs' table. `abi`: the
        module's Asyncify exports (wasmtime_func_t by name); `memory`: the memory
        that holds its Asyncify data (wasmtime_memory_t); `exports`: the exports
        to call through trampolines."""
        signatures = sorted(set(exports.values()))
        linker = wasmtime.Linker(self._engine)
        ext = ffi.wasmtime_extern_t()
        ext.kind = ffi.WASMTIME_EXTERN_MEMORY
        ext.of.memory = memory
        _define(linker, self._ctx, "m", "memory", ext)
        _define(linker, self._ctx, "m", "start_rewind", _func_extern(abi["asyncify_start_rewind"]))
        _define(linker, self._ctx, "m", "get_state", _func_extern(abi["asyncify_get_state"]))
        key = ("trampolines", tuple(signatures), memory_type, len(exports))
        wmod = _compile(
            self._engine, key, lambda: trampolines_wat(signatures, memory_type, len(exports))
        )
        self._keep += [linker, wmod]
        self._trampolines = _instantiate(linker, self._ctx, wmod)
        self._trampoline_table = _export(self._ctx, self._trampolines, "table")
        self._slots = {name: i for i, name in enumerate(exports)}
        self._by_signature = {
            sig: _export(self._ctx, self._trampolines, f"t{j}").of.func
            for j, sig in enumerate(signatures)
        }
        check = _export(self._ctx, self._trampolines, "check").of.func
        for index, func in (
            (_STOP_REWIND, abi["asyncify_stop_rewind"]),
            (_START_UNWIND, abi["asyncify_start_unwind"]),
            (_CHECK, check),
        ):
            _set(self._ctx, self._table, index, func)

    def trampoline(self, name: str, func: Any, signature: Signature) -> tuple[Any, int] | None:
        """The trampoline (wasmtime_func_t) and table slot to call export `name`
        (`func`) through, or None if it has none."""
        slot = self._slots.get(name)
        if slot is None:
            return None
        if name not in self._bound:
            _set(self._ctx, self._trampoline_table, slot, func)
            self._bound.add(name)
        return self._by_signature[signature], slot
