"""Thin helpers over wasmtime's raw C bindings (``wasmtime._bindings``).

wasmtime-py's high-level wrappers cost several microseconds per call; the hot
paths of the runtime (host calls, export calls, memory access) go through the
raw C API instead. Everything that touches ctypes lives here.
"""

from __future__ import annotations

import ctypes
from typing import TYPE_CHECKING, Any

import wasmtime
from wasmtime import _ffi as ffi

from wasync._binary.types import NumType, RefType, ValType
from wasync._errors import LinkError, Trap, WasyncError

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "KIND_OF",
    "NO_FINALIZER",
    "ffi",
    "func_kinds",
    "new_trap",
    "read_val",
    "take_error",
    "take_trap",
    "write_val",
]

NO_FINALIZER = ctypes.CFUNCTYPE(None, ctypes.c_void_p)()  # a NULL function pointer

# wasmtime_valkind_t codes for the value types the runtime passes across.
KIND_OF: dict[NumType, int] = {
    NumType.I32: 0,
    NumType.I64: 1,
    NumType.F32: 2,
    NumType.F64: 3,
    NumType.V128: 4,
}
_MASK32 = (1 << 32) - 1
_MASK64 = (1 << 64) - 1
_MASK128 = (1 << 128) - 1


def func_kinds(types: Sequence[ValType], what: str) -> tuple[int, ...]:
    """wasmtime value kinds for a signature; reference types are not supported yet."""
    kinds = []
    for t in types:
        if isinstance(t, RefType):
            raise LinkError(f"{what} uses the reference type {t}, which wasync cannot pass yet")
        kinds.append(KIND_OF[t])
    return tuple(kinds)


def _signed(value: int, mask: int) -> int:
    value &= mask
    top = (mask >> 1) + 1
    return value - (top << 1) if value & top else value


def write_val(slot: Any, kind: int, value: object) -> None:
    """Store a Python value into a wasmtime_val_t of the given kind."""
    slot.kind = kind
    if kind <= 1:
        if not isinstance(value, int):
            raise TypeError(f"expected an int for {'i32' if kind == 0 else 'i64'}, got {value!r}")
        if kind == 0:
            slot.of.i32 = _signed(value, _MASK32)
        else:
            slot.of.i64 = _signed(value, _MASK64)
    elif kind <= 3:
        if not isinstance(value, (int, float)):
            raise TypeError(f"expected a float for {'f32' if kind == 2 else 'f64'}, got {value!r}")
        if kind == 2:
            slot.of.f32 = value
        else:
            slot.of.f64 = value
    else:
        if not isinstance(value, int):
            raise TypeError(f"expected an int for v128, got {value!r}")
        raw = (value & _MASK128).to_bytes(16, "little")
        ctypes.memmove(slot.of.v128, raw, 16)


def read_val(slot: Any, kind: int) -> int | float:
    """A Python value from a wasmtime_val_t (integers signed, v128 unsigned)."""
    if kind == 0:
        return int(slot.of.i32)
    if kind == 1:
        return int(slot.of.i64)
    if kind == 2:
        return float(slot.of.f32)
    if kind == 3:
        return float(slot.of.f64)
    return int.from_bytes(bytes(slot.of.v128), "little")


def new_trap(message: str) -> Any:
    """A new wasm_trap_t* (owned by whoever receives it)."""
    raw = message.encode("utf-8")
    return ffi.wasmtime_trap_new(ctypes.create_string_buffer(raw), len(raw))


def _frames(vec: Any, names: dict[int, str] | None) -> tuple[tuple[int, str | None, int], ...]:
    out = []
    for i in range(vec.size):
        frame = vec.data[i]
        index = int(ffi.wasm_frame_func_index(frame))
        name_ptr = ffi.wasmtime_frame_func_name(frame)
        name = ffi.to_str(name_ptr.contents) if name_ptr else (names or {}).get(index)
        out.append((index, name, int(ffi.wasm_frame_module_offset(frame))))
    return tuple(out)


def _reason(message: str) -> str:
    """wasmtime's messages embed a backtrace; keep the cause, which is what went wrong."""
    head, sep, cause = message.partition("Caused by:")
    text = cause if sep else head
    return " ".join(line.strip() for line in text.strip().splitlines() if line.strip())


def take_trap(ptr: Any, names: dict[int, str] | None = None) -> Trap:
    """Turn an owned wasm_trap_t* into a :class:`~wasync.Trap` (and free it)."""
    trap = wasmtime.Trap._from_ptr(ptr)
    vec = ffi.wasm_frame_vec_t(0, None)
    ffi.wasm_trap_trace(ptr, ctypes.byref(vec))
    try:
        frames = _frames(vec, names)
    finally:
        ffi.wasm_frame_vec_delete(ctypes.byref(vec))
    code = trap.trap_code
    return Trap(_reason(trap.message), frames=frames, code=None if code is None else code.name)


def take_error(ptr: Any, names: dict[int, str] | None = None) -> WasyncError:
    """Turn an owned wasmtime_error_t* into a wasync error (and free it): a
    :class:`~wasync.Trap` with the wasm backtrace when wasm code was running."""
    vec = ffi.wasm_frame_vec_t(0, None)
    ffi.wasmtime_error_wasm_trace(ptr, ctypes.byref(vec))
    try:
        frames = _frames(vec, names)
    finally:
        ffi.wasm_frame_vec_delete(ctypes.byref(vec))
    message = _reason(str(wasmtime.WasmtimeError._from_ptr(ptr)))
    if frames:
        return Trap(message, frames=frames)
    return WasyncError(message)
