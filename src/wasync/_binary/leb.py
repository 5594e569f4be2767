"""LEB128 reading and writing, with the spec's malformedness rules.

Readers take ``(data, pos)`` and return ``(value, new_pos)``; they raise
:class:`~wasync._errors.DecodeError` for truncated input, representations longer
than ``ceil(N / 7)`` bytes ("integer representation too long") and unused bits
that are not zero (unsigned) or a sign extension (signed) ("integer too
large"). :func:`leb_is_canonical` tells whether an encoding was the shortest.
"""

from __future__ import annotations

from wasync._errors import DecodeError

__all__ = [
    "read_sleb",
    "read_uleb",
    "sleb",
    "uleb",
    "uleb_padded",
]


def read_uleb(data: bytes, pos: int, bits: int = 32, end: int | None = None) -> tuple[int, int]:
    """Read an unsigned LEB128 of at most `bits` bits."""
    if end is None:
        end = len(data)
    result = 0
    shift = 0
    start = pos
    while True:
        if pos >= end:
            raise DecodeError("unexpected end", offset=pos)
        byte = data[pos]
        pos += 1
        if shift + 7 >= bits:
            if byte & 0x80:
                raise DecodeError("integer representation too long", offset=start)
            if byte >> (bits - shift):
                raise DecodeError("integer too large", offset=start)
            return result | (byte << shift), pos
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def read_sleb(data: bytes, pos: int, bits: int = 32, end: int | None = None) -> tuple[int, int]:
    """Read a signed LEB128 of at most `bits` bits."""
    if end is None:
        end = len(data)
    result = 0
    shift = 0
    start = pos
    while True:
        if pos >= end:
            raise DecodeError("unexpected end", offset=pos)
        byte = data[pos]
        pos += 1
        if shift + 7 >= bits:
            if byte & 0x80:
                raise DecodeError("integer representation too long", offset=start)
            rest = bits - shift  # meaningful bits in this byte, sign bit included
            high = (byte & 0x7F) >> (rest - 1)
            if high not in (0, 0x7F >> (rest - 1)):
                raise DecodeError("integer too large", offset=start)
            result |= (byte & 0x7F) << shift
            if byte & 0x40:
                result -= 1 << (shift + 7)
            return result, pos
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            if byte & 0x40:
                result -= 1 << shift
            return result, pos


def leb_is_canonical(data: bytes, start: int, end: int, signed: bool) -> bool:
    """Whether the LEB128 at ``data[start:end]`` is the shortest encoding of its value."""
    if end - start <= 1:
        return True
    last = data[end - 1]
    if not signed:
        return last != 0
    prev = data[end - 2]
    if last == 0 and not prev & 0x40:
        return False
    return not (last == 0x7F and prev & 0x40)


def uleb(value: int) -> bytes:
    """The canonical unsigned LEB128 of a non-negative integer."""
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def uleb_padded(value: int, width: int) -> bytes:
    """An unsigned LEB128 padded to exactly `width` bytes (as linkers write them)."""
    out = bytearray()
    for i in range(width):
        byte = value & 0x7F
        value >>= 7
        out.append(byte | 0x80 if i < width - 1 else byte)
    if value:
        raise ValueError("value does not fit in the requested LEB128 width")
    return bytes(out)


def sleb(value: int) -> bytes:
    """The canonical signed LEB128 of an integer."""
    if -0x40 <= value < 0x40:
        return bytes((value & 0x7F,))
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if (value == 0 and not byte & 0x40) or (value == -1 and byte & 0x40):
            out.append(byte)
            return bytes(out)
        out.append(byte | 0x80)
