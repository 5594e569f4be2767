"""A synchronous Asyncify host on wasmtime-py, for differential tests of the transform.

:class:`Runner` instantiates a module whose function imports are Python callables
(``fn(ctx, *args)``, ``ctx`` a :class:`HostContext`) and calls its exports with exact
bit patterns (:data:`WasmValue`). With ``asyncify=True`` the module must be
Asyncify-transformed, and **every** call to a function import suspends, following
the ABI of ``DESIGN.md``:

1. the import is called in state 0: the runner records its arguments, writes the
   buffer header (position = the first byte after the header, end) and calls
   ``asyncify_start_unwind(buffer)``; the import returns zeros. The header is two
   u32 words (position at +0, end at +4), or two u64 words (+0, +8) and an i64
   ``buffer`` pointer when memory 0 is 64-bit;
2. the export returns in state 1: ``asyncify_stop_unwind()``; the Python
   implementation runs (outside wasm); ``asyncify_start_rewind(buffer)``; the
   **same export** is called again (with the same arguments, or zeros);
3. the import is called again in state 2 with the same arguments: the header
   position must be back where it started; ``asyncify_stop_rewind()``; the real
   result is returned. Repeat until the export returns in state 0.

Imports called while the module is being instantiated (start function), past the
``suspend_limit`` of one export call, or whose index in the export call is not
chosen by ``suspend_at`` just run synchronously, as a host may choose.

The data buffer lives in pages grown at the end of memory 0 (which must be exported,
see :func:`export_memory0`); a plain (untransformed) runner grows the same pages so
that ``memory.size`` agrees between the two runs.

Also here: :func:`simple_analysis` (every import may unwind, indirect calls may
unwind), :func:`asyncify` (analysis + transform + encode), the spectest host
(:func:`spectest_host`) and a minimal WASI preview1 shim (:class:`WasiShim`).
"""

from __future__ import annotations

import ctypes
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal

import wasmtime
from wasmtime import _ffi as ffi
from wasmtime._func import enter_wasm

import wasync
from wasync._asyncify.transform import ABI_EXPORTS, transform_module
from wasync._runtime._module import WASM_FEATURES

__all__ = [
    "MEMORY0_EXPORT",
    "DriverError",
    "HostContext",
    "HostFunc",
    "ImportCall",
    "ProcExit",
    "Runner",
    "WasiShim",
    "WasmValue",
    "asyncify",
    "engine",
    "export_memory0",
    "simple_analysis",
    "spectest_host",
]

WasmValue = tuple[str, Any]
"""A value with its exact bits: ``("i32"|"i64"|"f32"|"f64", unsigned bits)``,
``("v128", 16 bytes)``; arguments also ``("ref.null", heap)`` / ``("ref.extern", n)``;
results ``("funcref"|"anyref"|"exnref", non-null?)`` / ``("externref", host value)``."""

HostFunc = Callable[..., Any]
"""A function import: ``fn(ctx: HostContext, *args) -> result | list of results | None``."""

ImportCall = tuple[str, str, tuple[object, ...]]
"""(module, name, arguments) of one import call; floats as their double's bits."""

MEMORY0_EXPORT = "__wasync_memory0"
_KIND = {"i32": 0, "i64": 1, "f32": 2, "f64": 3, "v128": 4}
_NAME = {v: k for k, v in _KIND.items()}
_WIDTH = {"i32": 32, "i64": 64, "f32": 32, "f64": 64, "v128": 128}
_REF_KIND = {5: "funcref", 6: "externref", 7: "anyref", 8: "exnref"}
_STATES = {0: "normal", 1: "unwinding", 2: "rewinding"}


class DriverError(AssertionError):
    """The module broke the Asyncify protocol, or the runner cannot run it."""


class ProcExit(Exception):
    """``proc_exit`` was called (raised through wasm by the WASI shim)."""

    def __init__(self, code: int) -> None:
        super().__init__(f"proc_exit({code})")
        self.code = code


# --------------------------------------------------------------------------------------------
# Transform helpers


def simple_analysis(m: wasync.BinaryModule) -> tuple[set[int], set[int]]:
    """(functions to instrument, imports that may unwind): every function import may
    unwind, every indirect call may unwind, and so may their callers, transitively."""
    nimp = m.num_imported_funcs
    unwinding = set(range(nimp))
    callers: dict[int, set[int]] = {}
    can: set[int] = set()
    for f in range(nimp, nimp + len(m.codes)):
        for ins in m.body(f).instrs:
            n = ins.op.name
            if n in ("call", "return_call"):
                callers.setdefault(int(ins.imm), set()).add(f)
            elif n in ("call_indirect", "return_call_indirect", "call_ref", "return_call_ref"):
                can.add(f)
    work = list(unwinding | can)
    seen = set(work)
    while work:
        g = work.pop()
        for c in callers.get(g, ()):
            if c not in seen:
                seen.add(c)
                can.add(c)
                work.append(c)
    return can, unwinding


def asyncify(m: wasync.BinaryModule) -> bytes:
    """Transform `m` (in place) with :func:`simple_analysis`; the new binary."""
    can, unwinding = simple_analysis(m)
    transform_module(m, instrumented=can, unwinding_imports=unwinding, indirect_may_unwind=True)
    return wasync.encode_module(m)


def export_memory0(m: wasync.BinaryModule) -> str:
    """The name memory 0 is exported under, adding :data:`MEMORY0_EXPORT` if needed."""
    for e in m.exports:
        if e.kind is wasync.ExternKind.MEMORY and e.index == 0:
            return e.name
    m.exports.append(wasync.Export(MEMORY0_EXPORT, wasync.ExternKind.MEMORY, 0))
    return MEMORY0_EXPORT


@cache
def engine() -> wasmtime.Engine:
    """An engine with every proposal the spec suite uses (as tests/test_spec_corpus.py).

    The wasm stack limit is raised from wasmtime's default 512 KiB to 1 MiB: instrumented
    code needs more native stack (recursion.c at -O0: about 270 KiB originally, 850 KiB
    after wasync's transform, 550 KiB after Binaryen's ``--asyncify -O1``, 1.8 MiB after
    its unoptimised ``--asyncify``). Fuel is on: a :class:`Runner` gives every call
    ``fuel`` units, so that a broken transform cannot hang the suite."""
    cfg = wasmtime.Config()
    cfg.max_wasm_stack = 1 << 20
    cfg.consume_fuel = True  # a guard against transform bugs that loop forever
    for feature in WASM_FEATURES:
        setattr(cfg, feature, True)
    return wasmtime.Engine(cfg)


# --------------------------------------------------------------------------------------------
# Values across the raw C API (exact bits; wasmtime-py's Val goes through Python floats)


def _raw_arg(store: wasmtime.Store, ty: wasmtime.ValType, value: WasmValue) -> Any:
    kind, payload = value
    raw = ffi.wasmtime_val_t()
    if kind in _KIND:
        raw.kind = _KIND[kind]  # type: ignore[assignment]
        data = payload if kind == "v128" else int(payload).to_bytes(16, "little")
        ctypes.memmove(ctypes.addressof(raw.of), bytes(data), 16)
        return raw
    if kind == "ref.extern":
        return wasmtime.Val.externref(payload)._new_raw(store)
    if kind == "ref.null":
        # The heap type named by the caller when it is abstract (str() of a
        # concrete GC reference type aborts inside wasmtime's C API).
        by_heap = {"func": 5, "nofunc": 5, "extern": 6, "noextern": 6, "exn": 8, "noexn": 8}
        by_heap.update(dict.fromkeys(("any", "eq", "i31", "struct", "array", "none"), 7))
        kind_code = by_heap.get(payload) if isinstance(payload, str) else None
        if kind_code is None:
            text = str(ty)
            kind_code = (
                5 if "func" in text else 6 if "extern" in text else 8 if "exn" in text else 7
            )
        raw.kind = kind_code  # type: ignore[assignment]
        ctypes.memset(ctypes.addressof(raw.of), 0, ctypes.sizeof(raw.of))
        return raw
    raise DriverError(f"cannot pass the argument {value!r}")


def _raw_result(store: wasmtime.Store, raw: Any) -> WasmValue:
    kind = int(raw.kind)
    if kind in _NAME:
        name = _NAME[kind]
        data = ctypes.string_at(ctypes.addressof(raw.of), 16)
        if name == "v128":
            return name, data
        return name, int.from_bytes(data, "little") & ((1 << _WIDTH[name]) - 1)
    ref = _REF_KIND.get(kind, f"ref{kind}")
    if ref in ("funcref", "externref"):
        val = wasmtime.Val._from_raw(store, raw).value  # unroots
        return ref, (val is not None) if ref == "funcref" else val
    nonnull = bool(ctypes.c_uint64.from_address(ctypes.addressof(raw.of)).value)
    ffi.wasmtime_val_unroot(ctypes.byref(raw))
    return ref, nonnull


def call_raw(
    store: wasmtime.Store, func: wasmtime.Func, args: Sequence[WasmValue]
) -> list[WasmValue]:
    """Call `func` with exact bit patterns; raises wasmtime.Trap, wasmtime.WasmtimeError,
    or the Python exception a host function raised."""
    ty = func.type(store)
    params, results = ty.params, ty.results
    if len(args) != len(params):
        raise DriverError(f"{len(args)} arguments for {len(params)} parameters")
    ps = (ffi.wasmtime_val_t * max(1, len(params)))()
    for i, (t, v) in enumerate(zip(params, args, strict=True)):
        ps[i] = _raw_arg(store, t, v)
    rs = (ffi.wasmtime_val_t * max(1, len(results)))()
    try:
        with enter_wasm(store) as trap:
            error = ffi.wasmtime_func_call(
                store._context(),
                ctypes.byref(func._func),
                ps,
                len(params),
                rs,
                len(results),
                trap,
            )
            if error:
                raise wasmtime.WasmtimeError._from_ptr(error)
    finally:
        for i in range(len(params)):
            if int(ps[i].kind) > 4:
                ffi.wasmtime_val_unroot(ctypes.byref(ps[i]))
    return [_raw_result(store, rs[i]) for i in range(len(results))]


def _arg_key(v: object) -> object:
    return ("f", struct.pack("<d", v).hex()) if isinstance(v, float) else v


def _zero(ty: wasmtime.ValType) -> object:
    text = str(ty)
    if text in ("i32", "i64"):
        return 0
    if text in ("f32", "f64"):
        return 0.0
    if "ref" in text:
        return None
    raise DriverError(f"no dummy value for an import result of type {text}")


# --------------------------------------------------------------------------------------------
# The runner


@dataclass
class HostContext:
    """What an import implementation sees: a store (or caller) and memory 0."""

    store: Any
    memory: wasmtime.Memory | None

    def read(self, address: int, size: int) -> bytes:
        assert self.memory is not None
        return bytes(self.memory.read(self.store, address, address + size))

    def write(self, address: int, data: bytes) -> None:
        assert self.memory is not None
        if data:
            self.memory.write(self.store, data, address)

    def u32(self, address: int) -> int:
        return int.from_bytes(self.read(address, 4), "little")

    def put(self, address: int, fmt: str, *values: int) -> None:
        self.write(address, struct.pack("<" + fmt, *values))


@dataclass
class _Pending:
    key: tuple[str, str]
    impl: HostFunc
    args: tuple[Any, ...]
    result: Any = None


@dataclass
class Runner:
    """One instance of `wasm` with Python imports; see the module docstring.

    ``host`` maps (module, name) to function imports; ``externs`` makes the other
    imports (globals, tables, memories) in the new store. ``memory0`` is the export
    name of memory 0 (None: no memory, no buffer). ``buffer_pages`` pages are grown at
    the end of memory 0 (in both modes) for the Asyncify data buffer. The program can
    see those pages (spec tests probe the end of memory): ``preserve_buffer`` saves
    the buffer's bytes before each unwind and puts them back once the rewind is over,
    so that the program never observes the buffer being used.
    """

    wasm: bytes
    host: Mapping[tuple[str, str], HostFunc]
    asyncify: bool
    memory0: str | None = None
    buffer_pages: int = 1
    externs: Callable[[wasmtime.Store], Mapping[tuple[str, str], Any]] | None = None
    rewind_args: Literal["same", "zeros"] = "same"
    suspend_limit: int | None = None
    suspend_at: Callable[[int], bool] | None = None
    preserve_buffer: bool = False
    fuel: int = 10**10
    calls: list[ImportCall] = field(default_factory=list)
    suspensions: int = 0

    def __post_init__(self) -> None:
        eng = engine()
        self.store = wasmtime.Store(eng)
        self.store.set_fuel(self.fuel)
        self.module = wasmtime.Module(eng, self.wasm)
        linker = wasmtime.Linker(eng)
        extern_values = self.externs(self.store) if self.externs is not None else {}
        self._abi: dict[str, wasmtime.Func] | None = None
        self._pending: _Pending | None = None
        self._suspended_this_call = 0
        self._imports_this_call = 0
        self._saved = b""
        self.memory: wasmtime.Memory | None = None
        defined: set[tuple[str, str]] = set()
        for imp in self.module.imports:
            key = (imp.module, imp.name or "")
            if key in defined:  # imported twice (with the same type, or linking fails)
                continue
            defined.add(key)
            if isinstance(imp.type, wasmtime.FuncType):
                impl = self.host.get(key)
                if impl is None:
                    raise DriverError(f"no host function for the import {key}")
                func = wasmtime.Func(
                    self.store, imp.type, self._wrapper(key, impl, imp.type), access_caller=True
                )
                linker.define(self.store, key[0], key[1], func)
            elif key in extern_values:
                linker.define(self.store, key[0], key[1], extern_values[key])
            else:
                raise DriverError(f"no host value for the import {key}")
        # A trap here (start function) propagates: the caller compares it.
        self.instance = linker.instantiate(self.store, self.module)
        self.exports = self.instance.exports(self.store)
        self.buffer = 0
        self.buffer_end = 0
        self.memory64 = False
        if self.memory0 is not None:
            mem = self.exports[self.memory0]
            if not isinstance(mem, wasmtime.Memory):
                raise DriverError(f"export {self.memory0!r} is not a (non-shared) memory")
            self.memory = mem
            self.memory64 = mem.type(self.store).is_64
            before = mem.data_len(self.store)
            try:
                mem.grow(self.store, self.buffer_pages)
            except wasmtime.WasmtimeError as e:
                raise DriverError(
                    f"memory 0 cannot grow by {self.buffer_pages} page(s) for the Asyncify "
                    f"buffer: {e}"
                ) from None
            self.buffer, self.buffer_end = before, mem.data_len(self.store)
            if not self.memory64 and self.buffer_end > 1 << 32:
                raise DriverError("the Asyncify buffer would be past 4 GiB")
        if self.asyncify:
            if self.memory is None:
                raise DriverError("asyncify mode needs memory 0 (memory0=...)")
            abi = {}
            for name in ABI_EXPORTS:
                f = self.exports[name]
                assert isinstance(f, wasmtime.Func), name
                abi[name] = f
            pointer = "i64" if self.memory64 else "i32"
            for name in ("asyncify_start_unwind", "asyncify_start_rewind"):
                params = [str(t) for t in abi[name].type(self.store).params]
                if params != [pointer]:
                    raise DriverError(f"{name} takes {params}, not a {pointer} pointer")
            self._abi = abi

    # -- import side -----------------------------------------------------------------------

    def _ctx(self, store: Any) -> HostContext:
        return HostContext(store, self.memory or self._memory_export(store))

    def _memory_export(self, store: Any) -> wasmtime.Memory | None:
        # During instantiation (before self.memory is known) use the caller's "memory".
        if isinstance(store, wasmtime.Caller):
            mem = store.get("memory")
            return mem if isinstance(mem, wasmtime.Memory) else None
        return None

    def _wrapper(
        self, key: tuple[str, str], impl: HostFunc, ty: wasmtime.FuncType
    ) -> Callable[..., Any]:
        results = ty.results
        zeros: Any = None
        if len(results) == 1:
            zeros = _zero(results[0])
        elif len(results) > 1:
            zeros = [_zero(t) for t in results]

        def sync(caller: wasmtime.Caller, args: tuple[Any, ...]) -> Any:
            self.calls.append((key[0], key[1], tuple(_arg_key(a) for a in args)))
            return impl(self._ctx(caller), *args)

        def wrapper(caller: wasmtime.Caller, *args: Any) -> Any:
            abi = self._abi
            if abi is None:
                return sync(caller, args)
            if self._pending is None:
                # A new import call (not the one a rewind is heading for).
                index = self._imports_this_call
                self._imports_this_call += 1
                if (
                    self.suspend_limit is not None
                    and self._suspended_this_call >= self.suspend_limit
                ) or (self.suspend_at is not None and not self.suspend_at(index)):
                    # No rewind is under way (so the state is normal): run synchronously.
                    return sync(caller, args)
            state = abi["asyncify_get_state"](caller)
            if state == 0:
                if self._pending is not None:
                    raise DriverError(f"import {key} called in state 0 while one is pending")
                self._pending = _Pending(key, impl, args)
                if self.preserve_buffer:
                    self._saved = self._read(caller, self.buffer, self.buffer_end)
                self._write_header(caller)
                abi["asyncify_start_unwind"](caller, self.buffer)
                return zeros
            if state == 2:
                p = self._pending
                if p is None or p.key != key or _keys(p.args) != _keys(args):
                    raise DriverError(
                        f"rewind reached import {key}{_keys(args)}, expected "
                        f"{p and p.key}{p and _keys(p.args)}"
                    )
                position = self._header(caller)[0]
                if position != self.data_start:
                    raise DriverError(
                        f"after the rewind the position is {position:#x}, not back at "
                        f"{self.data_start:#x}"
                    )
                abi["asyncify_stop_rewind"](caller)
                if self.preserve_buffer:
                    assert self.memory is not None
                    self.memory.write(caller, self._saved, self.buffer)
                self._pending = None
                return p.result
            raise DriverError(f"import {key} called while {_STATES.get(state, state)}")

        return wrapper

    def _read(self, store: Any, start: int, stop: int) -> bytes:
        assert self.memory is not None
        return bytes(self.memory.read(store, start, stop))

    @property
    def _header_format(self) -> str:
        """The header's two words (position, end): u64 on a 64-bit memory 0."""
        return "<QQ" if self.memory64 else "<II"

    @property
    def data_start(self) -> int:
        """The first byte after the header: where the position starts and ends."""
        return self.buffer + struct.calcsize(self._header_format)

    def _header(self, store: Any) -> tuple[int, int]:
        fmt = self._header_format
        pos, end = struct.unpack(fmt, self._read(store, self.buffer, self.data_start))
        return int(pos), int(end)

    def _write_header(self, store: Any) -> None:
        assert self.memory is not None
        header = struct.pack(self._header_format, self.data_start, self.buffer_end)
        self.memory.write(store, header, self.buffer)

    # -- export side -----------------------------------------------------------------------

    def func(self, name: str) -> wasmtime.Func:
        f = self.exports[name]
        if not isinstance(f, wasmtime.Func):
            raise DriverError(f"export {name!r} is not a function")
        return f

    def get(self, name: str) -> WasmValue:
        """The value of an exported global (bits as a call would give them)."""
        g = self.exports[name]
        if not isinstance(g, wasmtime.Global):
            raise DriverError(f"export {name!r} is not a global")
        raw = ffi.wasmtime_val_t()
        ffi.wasmtime_global_get(self.store._context(), ctypes.byref(g._global), ctypes.byref(raw))
        return _raw_result(self.store, raw)

    def call(self, name: str, args: Sequence[WasmValue]) -> list[WasmValue]:
        """Call export `name`; in asyncify mode every import call suspends. Running out
        of fuel is a trap (code OUT_OF_FUEL)."""
        func = self.func(name)
        self.store.set_fuel(self.fuel)  # for the whole call, rewinds included
        if self._abi is None:
            return call_raw(self.store, func, args)
        abi = self._abi
        store = self.store
        self._suspended_this_call = 0
        self._imports_this_call = 0
        try:
            results = call_raw(store, func, args)
            while True:
                state = abi["asyncify_get_state"](store)
                if state == 0:
                    if self._pending is not None:
                        raise DriverError(f"{name} returned normally with an import pending")
                    break
                if state != 1:
                    raise DriverError(f"{name} returned while {_STATES.get(state, state)}")
                abi["asyncify_stop_unwind"](store)
                p = self._pending
                if p is None:
                    raise DriverError(f"{name} unwound without an import call")
                position, end = self._header(store)
                if not self.data_start <= position <= end:
                    raise DriverError(f"position {position:#x} outside the buffer after unwind")
                self.suspensions += 1
                self._suspended_this_call += 1
                self.calls.append((p.key[0], p.key[1], _keys(p.args)))
                p.result = p.impl(self._ctx(store), *p.args)
                abi["asyncify_start_rewind"](store, self.buffer)
                again = args if self.rewind_args == "same" else [_zero_value(v) for v in args]
                results = call_raw(store, func, again)
        except BaseException:
            self._reset()
            raise
        return results

    def _reset(self) -> None:
        """After an exception mid-protocol: back to the normal state for the next call."""
        self._pending = None
        assert self._abi is not None
        state = self._abi["asyncify_get_state"](self.store)
        if state == 0:
            return
        self._write_header(self.store)  # so that the bounds check in stop_* passes
        stop = "asyncify_stop_unwind" if state == 1 else "asyncify_stop_rewind"
        self._abi[stop](self.store)


def _keys(args: Sequence[Any]) -> tuple[object, ...]:
    return tuple(_arg_key(a) for a in args)


def _zero_value(v: WasmValue) -> WasmValue:
    kind = v[0]
    if kind in ("i32", "i64", "f32", "f64"):
        return kind, 0
    if kind == "v128":
        return kind, bytes(16)
    if kind == "ref.extern":
        # Not a null: the C API types a null externref argument as (ref null none)
        # (and wasmtime-py's str() of an externref type says "anyref"). The
        # rewinding function never reads its arguments anyway.
        return kind, "rewind dummy"
    return v  # a null already (with its heap type)


# --------------------------------------------------------------------------------------------
# spectest


def spectest_host() -> tuple[
    dict[tuple[str, str], HostFunc],
    Callable[[wasmtime.Store], dict[tuple[str, str], Any]],
]:
    """The spec interpreter's ``spectest`` module: print functions (they record
    nothing themselves: the runner records every import call), globals, table, memory."""

    def nothing(ctx: HostContext, *args: Any) -> None:
        del ctx, args

    funcs: dict[tuple[str, str], HostFunc] = {
        ("spectest", name): nothing
        for name in (
            "print",
            "print_i32",
            "print_i64",
            "print_f32",
            "print_f64",
            "print_i32_f32",
            "print_f64_f64",
        )
    }

    def externs(store: wasmtime.Store) -> dict[tuple[str, str], Any]:
        def glob(t: wasmtime.ValType, v: object) -> wasmtime.Global:
            return wasmtime.Global(store, wasmtime.GlobalType(t, False), v)

        return {
            ("spectest", "global_i32"): glob(wasmtime.ValType.i32(), 666),
            ("spectest", "global_i64"): glob(wasmtime.ValType.i64(), 666),
            ("spectest", "global_f32"): glob(wasmtime.ValType.f32(), 666.6),
            ("spectest", "global_f64"): glob(wasmtime.ValType.f64(), 666.6),
            ("spectest", "table"): wasmtime.Table(
                store,
                wasmtime.TableType(wasmtime.ValType.funcref(), wasmtime.Limits(10, 20)),
                None,
            ),
            ("spectest", "memory"): wasmtime.Memory(
                store, wasmtime.MemoryType(wasmtime.Limits(1, 2))
            ),
        }

    return funcs, externs


# --------------------------------------------------------------------------------------------
# A minimal WASI preview1 shim

_ESUCCESS, _EBADF, _ENOSYS, _ESPIPE = 0, 8, 52, 70
_FILETYPE_CHARACTER_DEVICE = 2
_RIGHTS_FD_READ, _RIGHTS_FD_WRITE = 1 << 1, 1 << 6

WASI = "wasi_snapshot_preview1"


@dataclass
class WasiShim:
    """Just enough of wasi_snapshot_preview1 for the C corpus: stdio (character
    devices, so that stdout is line buffered: more calls), argv ``["program"]`` (as
    tests/support/corpus.run_wasi), no environment, no preopens, a clock that ticks
    1 ms per query, deterministic random bytes; everything else answers ENOSYS."""

    argv: tuple[str, ...] = ("program",)
    stdout: bytearray = field(default_factory=bytearray)
    stderr: bytearray = field(default_factory=bytearray)
    clock: int = 1_700_000_000_000_000_000
    random_state: int = 0x2545F4914F6CDD1D
    unsupported: list[str] = field(default_factory=list)

    def host(self, imports: Sequence[str]) -> dict[tuple[str, str], HostFunc]:
        """Implementations for the named WASI imports (ENOSYS stubs for the others)."""
        out: dict[tuple[str, str], HostFunc] = {}
        for name in imports:
            impl = getattr(self, name, None)
            out[WASI, name] = impl if callable(impl) else self._enosys(name)
        return out

    def _enosys(self, name: str) -> HostFunc:
        def stub(ctx: HostContext, *args: Any) -> int:
            del ctx, args
            self.unsupported.append(name)
            return _ENOSYS

        return stub

    # -- stdio -----------------------------------------------------------------------------

    def fd_write(self, ctx: HostContext, fd: int, iovs: int, n: int, nwritten: int) -> int:
        out = {1: self.stdout, 2: self.stderr}.get(fd)
        if out is None:
            return _EBADF
        total = 0
        for i in range(n):
            ptr, size = struct.unpack("<II", ctx.read(iovs + 8 * i, 8))
            out += ctx.read(ptr, size)
            total += size
        ctx.put(nwritten, "I", total)
        return _ESUCCESS

    def fd_read(self, ctx: HostContext, fd: int, iovs: int, n: int, nread: int) -> int:
        del iovs, n
        if fd != 0:
            return _EBADF
        ctx.put(nread, "I", 0)  # stdin is empty
        return _ESUCCESS

    def fd_close(self, ctx: HostContext, fd: int) -> int:
        del ctx
        return _ESUCCESS if fd in (0, 1, 2) else _EBADF

    def fd_seek(self, ctx: HostContext, fd: int, offset: int, whence: int, new: int) -> int:
        del ctx, offset, whence, new
        return _ESPIPE if fd in (0, 1, 2) else _EBADF

    def fd_fdstat_get(self, ctx: HostContext, fd: int, buf: int) -> int:
        if fd not in (0, 1, 2):
            return _EBADF
        rights = _RIGHTS_FD_READ if fd == 0 else _RIGHTS_FD_WRITE
        ctx.put(buf, "BxHxxxxQQ", _FILETYPE_CHARACTER_DEVICE, 0, rights, 0)
        return _ESUCCESS

    def fd_prestat_get(self, ctx: HostContext, fd: int, buf: int) -> int:
        del ctx, fd, buf
        return _EBADF  # no preopened directories

    def fd_prestat_dir_name(self, ctx: HostContext, fd: int, path: int, size: int) -> int:
        del ctx, fd, path, size
        return _EBADF

    def proc_exit(self, ctx: HostContext, code: int) -> None:
        del ctx
        raise ProcExit(code)

    # -- args, environment, clocks, random -------------------------------------------------

    def args_sizes_get(self, ctx: HostContext, argc: int, size: int) -> int:
        ctx.put(argc, "I", len(self.argv))
        ctx.put(size, "I", sum(len(a.encode()) + 1 for a in self.argv))
        return _ESUCCESS

    def args_get(self, ctx: HostContext, argv: int, buf: int) -> int:
        for i, arg in enumerate(self.argv):
            data = arg.encode() + b"\0"
            ctx.put(argv + 4 * i, "I", buf)
            ctx.write(buf, data)
            buf += len(data)
        return _ESUCCESS

    def environ_sizes_get(self, ctx: HostContext, count: int, size: int) -> int:
        ctx.put(count, "I", 0)
        ctx.put(size, "I", 0)
        return _ESUCCESS

    def environ_get(self, ctx: HostContext, environ: int, buf: int) -> int:
        del ctx, environ, buf
        return _ESUCCESS

    def clock_time_get(self, ctx: HostContext, clock_id: int, precision: int, out: int) -> int:
        del clock_id, precision
        self.clock += 1_000_000
        ctx.put(out, "Q", self.clock)
        return _ESUCCESS

    def clock_res_get(self, ctx: HostContext, clock_id: int, out: int) -> int:
        del clock_id
        ctx.put(out, "Q", 1_000)
        return _ESUCCESS

    def random_get(self, ctx: HostContext, buf: int, size: int) -> int:
        data = bytearray()
        x = self.random_state
        while len(data) < size:  # xorshift64
            x ^= (x << 13) & 0xFFFF_FFFF_FFFF_FFFF
            x ^= x >> 7
            x ^= (x << 17) & 0xFFFF_FFFF_FFFF_FFFF
            data += x.to_bytes(8, "little")
        self.random_state = x
        ctx.write(buf, bytes(data[:size]))
        return _ESUCCESS
