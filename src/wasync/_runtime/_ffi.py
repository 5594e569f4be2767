"""Thin helpers over wasmtime's raw C bindings (``wasmtime._bindings``).

wasmtime-py's high-level wrappers cost several microseconds per call; the hot
paths of the runtime (host calls, export calls, memory access) go through the
raw C API instead. Everything that touches ctypes lives here.
"""

from __future__ import annotations

import ctypes
import struct
from typing import TYPE_CHECKING, Any

import wasmtime
from wasmtime import _ffi as ffi

from wasync._binary.types import NumType, RefType, ValType
from wasync._errors import LinkError, Trap, WasyncError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = [
    "ASYNC_CALLBACK",
    "CONTINUATION",
    "FLAG_READER",
    "KIND_OF",
    "NULL_FINALIZER",
    "SYNC_CALLBACK",
    "VAL_SIZE",
    "Marshal",
    "call_future_poll",
    "define_async_func",
    "define_func",
    "error_pointer",
    "ffi",
    "func_kinds",
    "new_trap",
    "store_pointer",
    "take_error",
    "take_trap",
    "trap_address",
]


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


# -- fast marshalling -----------------------------------------------------------
# A wasmtime_val_t is 32 bytes: the kind byte at 0, the value at 8. Reading or
# writing a whole signature with one struct call is several times faster than
# going through ctypes structure objects field by field.

VAL_SIZE = ctypes.sizeof(ffi.wasmtime_val_t)
_VAL_OFFSET = ffi.wasmtime_val_t.of.offset
_CODES = {0: ("I", 4), 1: ("Q", 8), 2: ("f", 4), 3: ("d", 8), 4: ("16s", 16)}
_NAMES = {0: "i32", 1: "i64", 2: "f32", 3: "f64", 4: "v128"}


def _to_v128(v: object) -> bytes:
    if not isinstance(v, int):
        raise TypeError(f"expected an int for v128, got {v!r}")
    return (v & _MASK128).to_bytes(16, "little")


def _int_only(v: object) -> object:
    if not isinstance(v, int):
        raise TypeError(f"expected an int, got {v!r}")
    return v


def _one_writer(kind: int, pack_raw: Callable[..., bytes]) -> Callable[[int, object], None]:
    """A fast store of one numeric value: the hot path of every import call."""
    memmove = ctypes.memmove
    name = _NAMES[kind]
    if kind < 2:
        mask = _MASK32 if kind == 0 else _MASK64

        def write_int(address: int, value: object) -> None:
            if value.__class__ is not int and not isinstance(value, int):
                raise TypeError(f"expected {name}, got {value!r}")
            memmove(address, pack_raw(kind, value & mask), VAL_SIZE)

        return write_int

    def write_float(address: int, value: object) -> None:
        try:
            data = pack_raw(kind, value)
        except struct.error:
            raise TypeError(f"expected {name}, got {value!r}") from None
        memmove(address, data, VAL_SIZE)

    return write_float


class Marshal:
    """Packs and unpacks the values of one signature to and from wasmtime_val_t arrays
    (integers come out signed; v128 as an unsigned 128-bit int)."""

    __slots__ = ("kinds", "nbytes", "pack", "single", "unpack", "write_one")

    def __init__(self, kinds: tuple[int, ...]) -> None:
        self.kinds = kinds
        self.single = len(kinds) == 1  # write_one applies
        self.nbytes = nbytes = VAL_SIZE * len(kinds)
        read = "<"
        write = "<"
        for k in kinds:
            code, size = _CODES[k]
            rest = VAL_SIZE - _VAL_OFFSET - size
            read += f"{_VAL_OFFSET}x{code.lower() if k < 2 else code}{rest}x"
            write += f"B{_VAL_OFFSET - 1}x{code}{rest}x"
        reader = struct.Struct(read)
        writer = struct.Struct(write)
        string_at = ctypes.string_at
        unpack_raw = reader.unpack
        self.unpack: Callable[[int], tuple[Any, ...]]
        self.pack: Callable[[Sequence[object]], bytes]
        if not kinds:
            self.unpack = lambda address: ()
        elif 4 not in kinds:
            self.unpack = lambda address: unpack_raw(string_at(address, nbytes))
        else:

            def unpack_v128(address: int) -> tuple[Any, ...]:
                values = unpack_raw(string_at(address, nbytes))
                return tuple(
                    int.from_bytes(v, "little") if k == 4 else v
                    for k, v in zip(kinds, values, strict=True)
                )

            self.unpack = unpack_v128
        pack_raw = writer.pack
        masks = {0: _MASK32, 1: _MASK64}
        if len(kinds) == 1 and kinds[0] < 2:
            kind, mask = kinds[0], masks[kinds[0]]
            self.pack = lambda values: pack_raw(kind, _int_only(values[0]) & mask)  # type: ignore[operator]
        else:

            def pack_any(values: Sequence[object]) -> bytes:
                items: list[object] = []
                for k, v in zip(kinds, values, strict=True):
                    items.append(k)
                    if k < 2:
                        items.append(_int_only(v) & masks[k])  # type: ignore[operator]
                    elif k == 4:
                        items.append(_to_v128(v))
                    else:
                        items.append(v)
                return pack_raw(*items)

            self.pack = pack_any
        # write_one(address, value): store the only value of a one-value signature.
        self.write_one: Callable[[int, object], None]
        if len(kinds) == 1 and kinds[0] != 4:
            self.write_one = _one_writer(kinds[0], pack_raw)
        else:
            self.write_one = lambda address, value: self.pack_into(address, (value,))

    def pack_into(self, address: int, values: Sequence[object]) -> None:
        """Store `values` at `address` (TypeError naming the expected types)."""
        if not self.kinds:
            return
        try:
            data = self.pack(values)
        except (struct.error, TypeError, ValueError):
            want = ", ".join(_NAMES[k] for k in self.kinds)
            raise TypeError(f"expected ({want}), got {tuple(values)!r}") from None
        ctypes.memmove(address, data, len(data))


# -- raw prototypes -------------------------------------------------------------
# Our own declarations of the few C functions on the hot path: pointers travel
# as plain integers (no ctypes pointer objects to build per call).

_vp = ctypes.c_void_p
_sz = ctypes.c_size_t
FINALIZER = ctypes.CFUNCTYPE(None, _vp)
SYNC_CALLBACK = ctypes.CFUNCTYPE(_sz, _vp, _vp, _vp, _sz, _vp, _sz)
ASYNC_CALLBACK = ctypes.CFUNCTYPE(None, _vp, _vp, _vp, _sz, _vp, _sz, _vp, _vp)
CONTINUATION = ctypes.CFUNCTYPE(ctypes.c_bool, _vp)
NULL_FINALIZER = FINALIZER()
_DEFINE_ARGS = (_vp, ctypes.c_char_p, _sz, ctypes.c_char_p, _sz, _vp)
define_func = ctypes.CFUNCTYPE(_vp, *_DEFINE_ARGS, SYNC_CALLBACK, _vp, FINALIZER)(
    ("wasmtime_linker_define_func", ffi.dll)
)
define_async_func = ctypes.CFUNCTYPE(_vp, *_DEFINE_ARGS, ASYNC_CALLBACK, _vp, FINALIZER)(
    ("wasmtime_linker_define_async_func", ffi.dll)
)
call_future_poll = ctypes.CFUNCTYPE(ctypes.c_bool, _vp)(("wasmtime_call_future_poll", ffi.dll))


def error_pointer(address: int) -> Any:
    """A wasmtime_error_t* from an integer address (for take_error)."""
    return ctypes.cast(address, ctypes.POINTER(ffi.wasmtime_error_t))


def trap_address(message: str) -> int:
    """A new wasm_trap_t*, as an integer address."""
    return ctypes.cast(new_trap(message), ctypes.c_void_p).value or 0


def store_pointer(address: int, value: int) -> None:
    """``*(void **)address = value``."""
    ctypes.c_void_p.from_address(address).value = value


def _flag_reader() -> int | None:
    """The address of C's ``strlen``, used as a continuation callback.

    wasmtime polls an async host call's continuation, ``bool callback(void *env)``,
    until it returns true. Pointing ``env`` at a two-byte buffer ``{flag, 0}``,
    ``strlen`` returns 0 while the flag is 0 and 1 once it is set: exactly the
    callback needed, without crossing into Python (twice per suspension) to
    answer it. Every C ABI returns both ``bool`` and ``size_t`` in the integer
    return register, and 0/1 are valid bools. None where libc cannot be found
    (the runtime then falls back to a Python callback)."""
    try:
        strlen = ctypes.CDLL(None).strlen
    except (OSError, AttributeError):
        return None
    return ctypes.cast(strlen, ctypes.c_void_p).value


FLAG_READER = _flag_reader()
