"""Thin helpers over wasmtime's raw C bindings (``wasmtime._bindings``).

wasmtime-py's high-level wrappers cost several microseconds per call; the hot
paths of the runtime (host calls, export calls, memory access) go through the
raw C API instead. Everything that touches ctypes lives here.
"""

from __future__ import annotations

import ctypes
import functools
import struct
import sys
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
    "HELPER_NAME",
    "KIND_OF",
    "NULL_FINALIZER",
    "RAW",
    "RAW_VAL_SIZE",
    "SYNC_CALLBACK",
    "UNCHECKED_CALLBACK",
    "VAL_SIZE",
    "Marshal",
    "RawMarshal",
    "call_future_poll",
    "define_async_func",
    "define_func",
    "define_func_unchecked",
    "error_pointer",
    "ffi",
    "func_kinds",
    "marshal_for",
    "new_trap",
    "raw_function",
    "raw_marshal_for",
    "store_pointer",
    "take_error",
    "take_trap",
    "trap_address",
    "word",
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


# The module name of the asyncify strategy's helper modules (_asyncify_helper):
# its frames are the runtime's, not the user's, and are left out of backtraces.
HELPER_NAME = "wasync_asyncify_helper"


def _frames(vec: Any, names: dict[int, str] | None) -> tuple[tuple[int, str | None, int], ...]:
    out = []
    for i in range(vec.size):
        frame = vec.data[i]
        module_name = ffi.wasmtime_frame_module_name(frame)
        if module_name and ffi.to_str(module_name.contents) == HELPER_NAME:
            continue
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

# The process's address space as one writable byte buffer: ``RAW[address]``,
# ``struct.unpack_from(RAW, address)`` and ``struct.pack_into(RAW, address, ...)``
# read and write memory that C hands us (argument arrays, result slots, the
# continuation) without a ctypes foreign call. ``ctypes.string_at`` and
# ``ctypes.memmove`` cost about 0.4 us each (argument conversion and a GIL
# release); these cost under 0.1 us. Only addresses that C gave us are used,
# exactly as with ``string_at``/``memmove``.
_ADDRESS_SPACE = (ctypes.c_char * sys.maxsize).from_address(0)
RAW = memoryview(_ADDRESS_SPACE).cast("B")

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


def _one_writer(kind: int, pack_to: Callable[..., None]) -> Callable[[int, object], None]:
    """A fast store of one numeric value: the hot path of every import call."""
    name = _NAMES[kind]
    raw = RAW
    if kind < 2:
        mask = _MASK32 if kind == 0 else _MASK64

        def write_int(address: int, value: object) -> None:
            if value.__class__ is not int and not isinstance(value, int):
                raise TypeError(f"expected {name}, got {value!r}")
            pack_to(raw, address, kind, value & mask)

        return write_int

    def write_float(address: int, value: object) -> None:
        try:
            pack_to(raw, address, kind, value)
        except struct.error:
            raise TypeError(f"expected {name}, got {value!r}") from None

    return write_float


class Marshal:
    """Packs and unpacks the values of one signature to and from wasmtime_val_t arrays
    (integers come out signed; v128 as an unsigned 128-bit int)."""

    __slots__ = ("int_write", "kinds", "nbytes", "pack", "read", "single", "unpack", "write_one")

    def __init__(self, kinds: tuple[int, ...]) -> None:
        self.kinds = kinds
        self.single = len(kinds) == 1  # write_one applies
        self.nbytes = VAL_SIZE * len(kinds)
        read = "<"
        write = "<"
        for k in kinds:
            code, size = _CODES[k]
            rest = VAL_SIZE - _VAL_OFFSET - size
            read += f"{_VAL_OFFSET}x{code.lower() if k < 2 else code}{rest}x"
            write += f"B{_VAL_OFFSET - 1}x{code}{rest}x"
        reader = struct.Struct(read)
        writer = struct.Struct(write)
        raw = RAW
        unpack_from = reader.unpack_from
        self.unpack: Callable[[int], tuple[Any, ...]]
        # read(RAW, address): the same as unpack(address), one Python call less.
        self.read: Callable[[Any, int], tuple[Any, ...]] = unpack_from
        self.pack: Callable[[Sequence[object]], bytes]
        if not kinds:
            self.unpack = lambda address: ()
        elif 4 not in kinds:
            self.unpack = lambda address: unpack_from(raw, address)
        else:

            def unpack_v128(address: int) -> tuple[Any, ...]:
                values = unpack_from(raw, address)
                return tuple(
                    int.from_bytes(v, "little") if k == 4 else v
                    for k, v in zip(kinds, values, strict=True)
                )

            self.unpack = unpack_v128
            self.read = lambda buffer, address: unpack_v128(address)
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
        # int_write = (pack_into, kind, mask) for a single i32 or i64 result, so
        # that a hot path can store an int `value` without a Python call:
        # ``pack_into(RAW, address, kind, value & mask)``.
        self.int_write: tuple[Callable[..., None], int, int] | None = None
        if len(kinds) == 1 and kinds[0] < 2:
            self.int_write = (writer.pack_into, kinds[0], masks[kinds[0]])
        # write_one(address, value): store the only value of a one-value signature.
        self.write_one: Callable[[int, object], None]
        if len(kinds) == 1 and kinds[0] != 4:
            self.write_one = _one_writer(kinds[0], writer.pack_into)
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
        RAW[address : address + len(data)] = data


@functools.lru_cache(maxsize=1024)
def marshal_for(kinds: tuple[int, ...]) -> Marshal:
    """The (shared, immutable) Marshal of a signature: built once, not per
    import and instance (each holds compiled structs)."""
    return Marshal(kinds)


RAW_VAL_SIZE = ctypes.sizeof(ffi.wasmtime_val_raw_t)


class RawMarshal:
    """One signature's values in a ``wasmtime_val_raw_t`` array, as
    ``wasmtime_func_call_unchecked`` takes its arguments and returns its results:
    16 bytes per value, little-endian, no kind tag (the signature is known)."""

    __slots__ = ("int_write", "kinds", "read", "reader", "slots", "writer")

    def __init__(self, kinds: tuple[int, ...]) -> None:
        self.kinds = kinds
        self.slots = len(kinds)
        read = "<"
        write = "<"
        for k in kinds:
            code, size = _CODES[k]
            pad = f"{RAW_VAL_SIZE - size}x" if size < RAW_VAL_SIZE else ""
            read += (code.lower() if k < 2 else code) + pad
            write += code + pad
        self.reader = struct.Struct(read)
        self.writer = struct.Struct(write)
        # read(RAW, address): the same as unpack(address), one Python call less.
        self.read: Callable[[Any, int], tuple[Any, ...]] = self.reader.unpack_from
        if 4 in kinds:
            self.read = lambda buffer, address: self.unpack(address)
        # int_write = (pack_into, mask) for a single i32 or i64, so that a hot path
        # can store an int `value` without a Python call:
        # ``pack_into(RAW, address, value & mask)``.
        self.int_write: tuple[Callable[..., None], int] | None = None
        if len(kinds) == 1 and kinds[0] < 2:
            self.int_write = (self.writer.pack_into, _MASK32 if kinds[0] == 0 else _MASK64)

    def pack(self, values: Sequence[object]) -> bytes:
        """The array's bytes for `values` (TypeError naming the expected types)."""
        try:
            if len(values) != len(self.kinds):
                raise TypeError
            items = [
                _int_only(v) & (_MASK32 if k == 0 else _MASK64)  # type: ignore[operator]
                if k < 2
                else _to_v128(v)
                if k == 4
                else v
                for k, v in zip(self.kinds, values, strict=True)
            ]
            return self.writer.pack(*items)
        except (struct.error, TypeError, ValueError):
            want = ", ".join(_NAMES[k] for k in self.kinds)
            raise TypeError(f"expected ({want}), got {tuple(values)!r}") from None

    def unpack(self, address: int) -> tuple[Any, ...]:
        values = self.reader.unpack_from(RAW, address)
        if 4 in self.kinds:
            return tuple(
                int.from_bytes(v, "little") if k == 4 else v
                for k, v in zip(self.kinds, values, strict=True)
            )
        return values

    def pack_into(self, address: int, values: Sequence[object]) -> None:
        """Store `values` at `address` (TypeError naming the expected types)."""
        data = self.pack(values)
        RAW[address : address + len(data)] = data


@functools.lru_cache(maxsize=1024)
def raw_marshal_for(kinds: tuple[int, ...]) -> RawMarshal:
    """The (shared, immutable) RawMarshal of a signature, built once."""
    return RawMarshal(kinds)


# -- raw prototypes -------------------------------------------------------------
# Our own declarations of the few C functions on the hot path: pointers travel
# as plain integers (no ctypes pointer objects to build per call).

_vp = ctypes.c_void_p
_sz = ctypes.c_size_t
FINALIZER = ctypes.CFUNCTYPE(None, _vp)
SYNC_CALLBACK = ctypes.CFUNCTYPE(_sz, _vp, _vp, _vp, _sz, _vp, _sz)
# wasm_trap_t *(*)(void *env, wasmtime_caller_t *, wasmtime_val_raw_t *args_and_results,
# size_t len): the arguments are read from, and the results written to, one raw
# array (RawMarshal); wasmtime converts and checks nothing.
UNCHECKED_CALLBACK = ctypes.CFUNCTYPE(_sz, _vp, _vp, _vp, _sz)
ASYNC_CALLBACK = ctypes.CFUNCTYPE(None, _vp, _vp, _vp, _sz, _vp, _sz, _vp, _vp)
CONTINUATION = ctypes.CFUNCTYPE(ctypes.c_bool, _vp)
NULL_FINALIZER = FINALIZER()
_DEFINE_ARGS = (_vp, ctypes.c_char_p, _sz, ctypes.c_char_p, _sz, _vp)
define_func = ctypes.CFUNCTYPE(_vp, *_DEFINE_ARGS, SYNC_CALLBACK, _vp, FINALIZER)(
    ("wasmtime_linker_define_func", ffi.dll)
)
define_func_unchecked = ctypes.CFUNCTYPE(_vp, *_DEFINE_ARGS, UNCHECKED_CALLBACK, _vp, FINALIZER)(
    ("wasmtime_linker_define_func_unchecked", ffi.dll)
)
define_async_func = ctypes.CFUNCTYPE(_vp, *_DEFINE_ARGS, ASYNC_CALLBACK, _vp, FINALIZER)(
    ("wasmtime_linker_define_async_func", ffi.dll)
)


def word(value: int) -> Any:
    """`value` (an address or a size) as a ready-made argument for a
    :func:`raw_function`: a pointer-sized C argument built once, not per call.

    ctypes converts each argument of a declared prototype through a Python-level
    ``from_param`` call and a new object (about 0.1 us per argument here); an
    argument that is already a ctypes "CArg" object is passed as it is. ``byref``
    of an object at address 0 with offset `value` is such an object carrying the
    pointer value `value` (pointers and ``size_t`` travel in the same registers
    on every 64-bit C ABI)."""
    if value < 0:
        raise ValueError(f"not an address or size: {value}")
    return ctypes.byref(_ADDRESS_SPACE, value)


def raw_function(name: str, restype: Any, *, release_gil: bool = True) -> Any:
    """wasmtime's C function `name`, with no declared argument types: call it with
    :func:`word` arguments only (a plain int would be passed as a C ``int``).

    ``release_gil=False`` keeps the GIL during the call (saving a release and
    re-acquisition, ~0.1 us): only for calls that are short and never block, and
    if they call back into Python, the callback runs on this thread."""
    prototype = ctypes.CFUNCTYPE if release_gil else ctypes.PYFUNCTYPE
    return prototype(restype)((name, ffi.dll))


# bool wasmtime_call_future_poll(wasmtime_call_future_t *): call with a word().
call_future_poll = raw_function("wasmtime_call_future_poll", ctypes.c_bool)


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
