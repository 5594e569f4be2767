"""Reading and writing value types, heap types and block types."""

from __future__ import annotations

from wasync._binary.leb import read_sleb, sleb
from wasync._binary.types import AbsHeap, HeapType, NumType, RefType, ValType
from wasync._errors import DecodeError

__all__ = [
    "read_blocktype",
    "read_heaptype",
    "read_valtype",
    "write_blocktype",
    "write_heaptype",
    "write_valtype",
]

# One-byte value types: numeric types and the nullable abstract shorthands.
ONE_BYTE_VALTYPES: dict[int, ValType] = {t.value: t for t in NumType}
ONE_BYTE_VALTYPES.update({h.value: RefType(True, h) for h in AbsHeap})
_ABS_BY_BYTE: dict[int, AbsHeap] = {h.value: h for h in AbsHeap}
REF_NULL = 0x63
REF = 0x64


def read_heaptype(data: bytes, pos: int) -> tuple[HeapType, int, bool]:
    """Read an s33 heap type; returns (heap type, position, canonical?)."""
    byte = data[pos]
    if byte in _ABS_BY_BYTE:
        return _ABS_BY_BYTE[byte], pos + 1, True
    start = pos
    value, pos = read_sleb(data, pos, 33)
    if value < 0:
        raise DecodeError("malformed heap type", offset=start)
    return value, pos, pos - start == len(sleb(value))


def read_valtype(data: bytes, pos: int) -> tuple[ValType, int, bool]:
    """Read a value type; returns (type, position, canonical?)."""
    byte = data[pos]
    t = ONE_BYTE_VALTYPES.get(byte)
    if t is not None:
        return t, pos + 1, True
    if byte in (REF_NULL, REF):
        heap, end, canonical = read_heaptype(data, pos + 1)
        nullable = byte == REF_NULL
        long_form = nullable and isinstance(heap, AbsHeap)
        return RefType(nullable, heap, long_form), end, canonical
    raise DecodeError(f"malformed value type 0x{byte:02x}", offset=pos)


def read_blocktype(data: bytes, pos: int) -> tuple[ValType | int | None, int, bool]:
    """Read a block type: None (empty), a value type, or a type index."""
    byte = data[pos]
    if byte == 0x40:
        return None, pos + 1, True
    if byte in ONE_BYTE_VALTYPES or byte in (REF_NULL, REF):
        return read_valtype(data, pos)
    start = pos
    value, pos = read_sleb(data, pos, 33)
    if value < 0:
        raise DecodeError(f"malformed block type 0x{byte:02x}", offset=start)
    return value, pos, pos - start == len(sleb(value))


def write_heaptype(heap: HeapType) -> bytes:
    return bytes((heap.value,)) if isinstance(heap, AbsHeap) else sleb(heap)


def write_valtype(t: ValType) -> bytes:
    if isinstance(t, NumType):
        return bytes((t.value,))
    if t.nullable and isinstance(t.heap, AbsHeap) and not t.long_form:
        return bytes((t.heap.value,))
    return bytes((REF_NULL if t.nullable else REF,)) + write_heaptype(t.heap)


def write_blocktype(bt: ValType | int | None) -> bytes:
    if bt is None:
        return b"\x40"
    if isinstance(bt, int):
        return sleb(bt)
    return write_valtype(bt)
