"""Pieces every strategy shares: signatures, plain host callbacks, export
lookup, turning a finished call's trap or error into the right exception."""

from __future__ import annotations

import ctypes
import functools
import inspect
from typing import TYPE_CHECKING, Any, Protocol

import wasmtime

from wasync._binary.types import ExternKind, FuncType, NumType, ValType
from wasync._errors import Trap, WasyncError
from wasync._runtime._ffi import (
    ASYNC_CALLBACK,
    KIND_OF,
    NULL_FINALIZER,
    SYNC_CALLBACK,
    UNCHECKED_CALLBACK,
    define_async_func,
    define_func,
    define_func_unchecked,
    error_pointer,
    ffi,
    func_kinds,
    marshal_for,
    take_error,
    take_trap,
    trap_address,
)
from wasync._runtime._instance import Memory

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from wasync._runtime._host import HostFunc
    from wasync._runtime._module import Module

__all__ = [
    "ExportCall",
    "ExportFunc",
    "HostErrorSink",
    "PlainImports",
    "close_awaitable",
    "define_import",
    "epoch_yield_and_update",
    "lookup_exports",
    "raise_call_failure",
    "wasmtime_functype",
]

ExportFunc = tuple[Any, tuple[int, ...], tuple[int, ...]]  # (wasmtime_func_t, params, results)


class HostErrorSink(Protocol):
    """Where a host callback leaves the exception it turned into a trap."""

    _host_error: BaseException | None


# wasm.h has no v128 kind (``wasm_valtype_new(4)`` aborts the process, and so
# does ``wasm_valtype_kind`` on a v128, which wasmtime-py's FuncType calls):
# wasmtime's own constructor makes the type, and wasmtime_functype builds the
# function type through the C API. Missing from wasmtime-py's bindings.
_valtype_v128 = ctypes.CFUNCTYPE(ctypes.POINTER(ffi.wasm_valtype_t))(
    ("wasmtime_wasm_valtype_v128", ffi.dll)
)


def _new_valtype(t: NumType) -> Any:
    """An owned wasm_valtype_t* for `t`."""
    if t is NumType.V128:
        return _valtype_v128()
    return ffi.wasm_valtype_new(KIND_OF[t])


def _valtype_vec(types: Sequence[ValType]) -> Any:
    nums = [t for t in types if isinstance(t, NumType)]
    vec = ffi.wasm_valtype_vec_t()
    ffi.wasm_valtype_vec_new_uninitialized(ctypes.byref(vec), len(nums))
    for i, t in enumerate(nums):
        vec.data[i] = _new_valtype(t)
    return vec


# Declared with a wrong return type in wasmtime's bindings: it returns nothing.
epoch_yield_and_update = ctypes.CFUNCTYPE(
    None, ctypes.POINTER(ffi.wasmtime_context_t), ctypes.c_uint64
)(("wasmtime_context_epoch_deadline_async_yield_and_update", ffi.dll))


@functools.lru_cache(maxsize=1024)
def wasmtime_functype(ft: FuncType, engine: wasmtime.Engine) -> wasmtime.FuncType:
    """wasmtime's FuncType for `ft`, for use with `engine` (built once: about
    14 us each through wasmtime-py, for every import of every instance
    otherwise). One object per engine: wasmtime binds a FuncType to the engine
    that first uses it, and aborts if it meets another."""
    params = _valtype_vec(ft.params)
    results = _valtype_vec(ft.results)
    ptr = ffi.wasm_functype_new(ctypes.byref(params), ctypes.byref(results))  # takes both
    if not ptr:
        raise WasyncError(f"wasmtime could not allocate the function type {ft}")
    return wasmtime.FuncType._from_ptr(ptr, None)  # owned: deleted with the object


def raise_call_failure(
    trap_ptr: Any, error_ptr: Any, host_error: BaseException | None, names: dict[int, str]
) -> None:
    """Raise what a finished call left in its trap/error out-parameters, if anything.

    A trap we injected for a failing host function re-raises that function's own
    exception, with the wasm backtrace as a note and the Trap as its cause."""
    if error_ptr or trap_ptr:
        trap = take_error(error_ptr, names) if error_ptr else take_trap(trap_ptr, names)
        if host_error is not None and isinstance(trap, Trap):
            bt = trap.backtrace()
            if bt:
                host_error.add_note("wasm backtrace:\n" + bt)
            raise host_error from trap
        raise trap


def _kind(ext: Any) -> int:
    return int(ext.kind)


def lookup_exports(
    ctx: Any, raw: Any, module: Module, context: Callable[[], Any]
) -> tuple[dict[str, ExportFunc], dict[str, Memory]]:
    """The callable function exports and the memories of a fresh instance."""
    funcs: dict[str, ExportFunc] = {}
    memories: dict[str, Memory] = {}
    for export in module.exports:
        ext = ffi.wasmtime_extern_t()
        name = export.name.encode()
        found = ffi.wasmtime_instance_export_get(
            ctx, ctypes.byref(raw), ctypes.create_string_buffer(name), len(name), ctypes.byref(ext)
        )
        if not found:
            continue
        if export.kind is ExternKind.FUNC and isinstance(export.type, FuncType):
            try:
                params = func_kinds(export.type.params, f"export {export.name}")
                results = func_kinds(export.type.results, f"export {export.name}")
            except WasyncError:
                continue  # reference-typed exports cannot be called yet
            func = ffi.wasmtime_func_t()
            ctypes.pointer(func)[0] = ext.of.func
            funcs[export.name] = (func, params, results)
        elif export.kind is ExternKind.MEMORY and _kind(ext) == ffi.WASMTIME_EXTERN_MEMORY.value:
            mem = ffi.wasmtime_memory_t()
            ctypes.pointer(mem)[0] = ext.of.memory
            memories[export.name] = Memory(context, mem, export.name)
    return funcs, memories


def close_awaitable(awaitable: object) -> None:
    """Close a coroutine that will never be awaited (no "never awaited" warning)."""
    close = getattr(awaitable, "close", None)
    if close is not None:
        close()


_AWAITABLE_ERROR = (
    "is a plain function but returned an awaitable: "
    "make it `async def` or mark it with wasync.async_import"
)


class PlainImports:
    """The plain host functions of one instance, behind one raw callback
    (SYNC_CALLBACK): each import is defined with its slot as the callback's
    `env`, so an instance costs one ctypes callback however many plain imports
    it has. One struct unpack for the arguments, one for the results. An
    exception is left in ``sink._host_error`` and becomes a trap."""

    def __init__(self, sink: HostErrorSink, caller: object) -> None:
        # Slot k (1-based: a NULL env arrives as None) is entries[k].
        entries: list[tuple[Any, ...]] = [()]
        self._entries = entries

        def callback(env: int, c: int, args: int, nargs: int, results: int, nresults: int) -> int:
            unpack, write_one, pack_into, fn, wants_caller, label, convert, single = entries[env]
            try:
                values = unpack(args)
                value = fn(caller, *values) if wants_caller else fn(*values)
                if single and value.__class__ in (int, float):
                    write_one(results, value)
                    return 0
                if inspect.isawaitable(value):
                    close_awaitable(value)
                    raise TypeError(f"import {label} {_AWAITABLE_ERROR}")
                pack_into(results, convert(value))
                return 0
            except BaseException as e:  # noqa: BLE001 - must not unwind into C; re-raised after
                sink._host_error = e
                return trap_address(f"import {label} raised {type(e).__name__}: {e}")

        self.callback = SYNC_CALLBACK(callback)

    def define(self, linker: Any, hf: HostFunc) -> wasmtime.FuncType:
        """Define `hf` in `linker`; returns what define_import returns."""
        params = marshal_for(hf.param_kinds)
        results = marshal_for(hf.result_kinds)
        self._entries.append(
            (
                params.unpack,
                results.write_one,
                results.pack_into,
                hf.fn,
                hf.wants_caller,
                hf.label,
                hf.convert_result,
                len(hf.result_kinds) == 1,
            )
        )
        return define_import(linker, hf, self.callback, len(self._entries) - 1)


def define_import(linker: Any, hf: HostFunc, callback: Any, env: int = 0) -> wasmtime.FuncType:
    """Define `callback` (SYNC_CALLBACK, UNCHECKED_CALLBACK or ASYNC_CALLBACK) for
    import `hf` in `linker`, called with `env` (an address, or 0) as its first
    argument; returns the FuncType, which must stay alive with the linker."""
    ft = wasmtime_functype(hf.type, linker.engine)
    module = hf.module.encode()
    name = hf.name.encode()
    define: Any = define_func
    if isinstance(callback, ASYNC_CALLBACK):
        define = define_async_func
    elif isinstance(callback, UNCHECKED_CALLBACK):
        define = define_func_unchecked
    err = define(
        linker.ptr(), module, len(module), name, len(name), ft.ptr(), callback, env or None,
        NULL_FINALIZER,
    )  # fmt: skip
    if err:
        raise take_error(error_pointer(err))
    return ft


class ExportCall:
    """An export's signature marshalling and its argument/result arrays, reused
    from call to call (calls on one instance never overlap)."""

    __slots__ = ("argv", "func", "m", "n", "params", "results", "resv")

    def __init__(self, func: Any, params: tuple[int, ...], results: tuple[int, ...]) -> None:
        self.func = func
        self.params = marshal_for(params)
        self.results = marshal_for(results)
        self.n = len(params)
        self.m = len(results)
        self.argv = (ffi.wasmtime_val_t * max(self.n, 1))()
        self.resv = (ffi.wasmtime_val_t * max(self.m, 1))()
