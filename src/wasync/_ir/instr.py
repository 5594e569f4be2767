"""Function IR: instructions with typed immediates, decoded from and encoded to bytes.

A body decodes into a flat list of :class:`Instr` in encoding order; structured
instructions (``block``, ``loop``, ``if``, ``try``, ``try_table``) are followed by
their contents and closed by ``end`` (or ``delegate``), exactly as in the
binary. Decoding and encoding are driven by :mod:`wasync._binary.opcodes`.

Instructions are immutable values: to change one, put a new one in the list.
Instructions without immediates are shared singletons (``op.instr``), so
compare instructions by position, not identity. An instruction whose encoding
was not the shortest one (linkers pad LEB128 immediates to five bytes) keeps
its original bytes and is written back with them, so that
``encode(decode(body)) == body`` for every well-formed body.

Immediate values (``Instr.imm``), by the op's immediate kinds: none -> ``None``;
one kind -> its value; several -> a tuple in encoding order. Values: indices
and counts are ``int``; block types ``None | ValType | int`` (type index);
``br_table`` a ``(labels, default)`` pair; memargs :class:`MemArg`; constants
``int`` (floats as their raw IEEE bits, so NaN payloads survive); ``v128`` and
shuffles 16 ``bytes``; heap types :data:`~wasync._binary.types.HeapType`; typed
``select`` a tuple of value types; ``try_table`` catches a tuple of
:class:`Catch`.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, TypeAlias, overload

from wasync._binary.leb import leb_is_canonical, read_sleb, read_uleb, sleb, uleb
from wasync._binary.opcodes import BY_BYTE, BY_PREFIX, OPS, U32_IMMS, Imm, Op, Shape
from wasync._binary.types import NumType, ValType
from wasync._binary.valtypes import (
    read_blocktype,
    read_heaptype,
    read_valtype,
    write_blocktype,
    write_heaptype,
    write_valtype,
)
from wasync._errors import DecodeError

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "SINGLETONS",
    "Body",
    "Catch",
    "Instr",
    "MemArg",
    "decode_body",
    "decode_expr",
    "encode_body",
    "encode_instrs",
]

ImmValue: TypeAlias = Any  # heterogeneous by design: see the module docstring


class MemArg(NamedTuple):
    """A memory operand: log2 alignment, static offset, memory index."""

    align: int
    offset: int
    memory: int = 0


class Catch(NamedTuple):
    """A ``try_table`` catch clause: kind 0 ``catch``, 1 ``catch_ref``,
    2 ``catch_all``, 3 ``catch_all_ref``; tag is None for the ``catch_all`` kinds."""

    kind: int
    tag: int | None
    label: int


CATCH_NAMES = ("catch", "catch_ref", "catch_all", "catch_all_ref")


class Instr:
    """One instruction: its table entry and its immediates."""

    __slots__ = ("imm", "op")
    raw: bytes | None = None  # the original encoding, when it was not canonical

    def __init__(self, op: Op, imm: ImmValue = None) -> None:
        self.op = op
        self.imm = imm

    @property
    def name(self) -> str:
        return self.op.name

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Instr):
            return NotImplemented
        return self.op is other.op and self.imm == other.imm

    def __hash__(self) -> int:
        return hash((self.op.id, self.imm))

    def __repr__(self) -> str:
        return f"Instr({self})"

    def __str__(self) -> str:
        if self.imm is None:
            return self.op.name
        parts = self.imm if len(self.op.imms) > 1 else (self.imm,)
        return " ".join([self.op.name, *(_show(v) for v in parts if v is not None)])


class _RawInstr(Instr):
    """An instruction that keeps a non-canonical original encoding."""

    __slots__ = ("raw",)

    def __init__(self, op: Op, imm: ImmValue, raw: bytes) -> None:
        self.op = op
        self.imm = imm
        self.raw = raw


def _show(value: object) -> str:
    if isinstance(value, Catch):
        tag = "" if value.tag is None else f" {value.tag}"
        return f"({CATCH_NAMES[value.kind]}{tag} {value.label})"
    if isinstance(value, MemArg):
        s = f"offset={value.offset} align={1 << value.align}"
        return f"{value.memory} {s}" if value.memory else s
    if isinstance(value, bytes):
        return " ".join(str(b) for b in value)
    if isinstance(value, tuple):
        return " ".join(_show(v) for v in value)
    return str(value)


# One shared instance per immediate-less op.
SINGLETONS: dict[Op, Instr] = {op: Instr(op) for op in OPS if not op.imms}

# Dispatch information for one-byte opcodes: (op, shape, singleton, cache). The
# cache holds shared instances for one-byte immediates (indices < 128, constants
# in -64..63, small memargs): most instructions of real code are one of those.
_ByteInfo: TypeAlias = tuple[Op, int, Instr | None, dict[int, Instr]]
_BYTE_INFO: list[_ByteInfo | None] = [
    None if op is None else (op, int(op.shape), SINGLETONS.get(op), {}) for op in BY_BYTE
]
_PREFIX_BYTES = frozenset(BY_PREFIX)
_NEEDS_DATA_COUNT = frozenset(o for o in OPS if o.prefix == 0xFC and o.code in (8, 9))

_NONE = int(Shape.NONE)
_U32 = int(Shape.U32)
_U32_U32 = int(Shape.U32_U32)
_MEMARG = int(Shape.MEMARG)
_I32 = int(Shape.I32)
_I64 = int(Shape.I64)
_BLOCK = int(Shape.BLOCK)
_END = int(Shape.END)


class _Ctx:
    """What a decode needs to know beyond the bytes (for errors and checks)."""

    __slots__ = ("base", "func_index", "has_data_count")

    def __init__(self, base: int, func_index: int | None, has_data_count: bool | None) -> None:
        self.base = base
        self.func_index = func_index
        self.has_data_count = has_data_count


def _read_u32(data: bytes, pos: int) -> tuple[int, int, bool]:
    start = pos
    value, pos = read_uleb(data, pos, 32)
    return value, pos, pos - start == 1 or data[pos - 1] != 0


def _read_memarg(data: bytes, pos: int) -> tuple[MemArg, int, bool]:
    start = pos
    flags, pos = read_uleb(data, pos, 32)
    canonical = leb_is_canonical(data, start, pos, False)
    if flags >= 0x80:
        raise DecodeError("malformed memop flags", offset=start)
    memory = 0
    if flags & 0x40:
        mstart = pos
        memory, pos = read_uleb(data, pos, 32)
        # An explicit memory index 0 is a valid but non-canonical spelling.
        canonical = canonical and memory != 0 and leb_is_canonical(data, mstart, pos, False)
        flags &= ~0x40
    ostart = pos
    offset, pos = read_uleb(data, pos, 64)
    canonical = canonical and leb_is_canonical(data, ostart, pos, False)
    return MemArg(flags, offset, memory), pos, canonical


def _read_imm(kind: Imm, data: bytes, pos: int) -> tuple[ImmValue, int, bool]:
    """Read one immediate of any kind: (value, position, canonical?)."""
    if kind in U32_IMMS:
        return _read_u32(data, pos)
    if kind is Imm.MEMARG:
        return _read_memarg(data, pos)
    if kind is Imm.BLOCKTYPE:
        return read_blocktype(data, pos)
    if kind is Imm.I32 or kind is Imm.I64:
        start = pos
        value, pos = read_sleb(data, pos, 32 if kind is Imm.I32 else 64)
        return value, pos, leb_is_canonical(data, start, pos, True)
    if kind is Imm.F32 or kind is Imm.F64:
        n = 4 if kind is Imm.F32 else 8
        if pos + n > len(data):
            raise DecodeError("unexpected end", offset=pos)
        return int.from_bytes(data[pos : pos + n], "little"), pos + n, True
    if kind is Imm.V128 or kind is Imm.SHUFFLE:
        if pos + 16 > len(data):
            raise DecodeError("unexpected end", offset=pos)
        return bytes(data[pos : pos + 16]), pos + 16, True
    if kind is Imm.LANE or kind is Imm.CASTFLAGS:
        return data[pos], pos + 1, True
    if kind is Imm.ZERO:
        if data[pos] != 0:
            raise DecodeError("zero byte expected", offset=pos)
        return None, pos + 1, True
    if kind is Imm.HEAPTYPE or kind is Imm.NULLHEAPTYPE:
        return read_heaptype(data, pos)
    if kind is Imm.LABELS:
        count, pos, canonical = _read_u32(data, pos)
        labels = []
        for _ in range(count):
            label, pos, c = _read_u32(data, pos)
            labels.append(label)
            canonical = canonical and c
        default, pos, c = _read_u32(data, pos)
        return (tuple(labels), default), pos, canonical and c
    if kind is Imm.VALTYPES:
        count, pos, canonical = _read_u32(data, pos)
        types = []
        for _ in range(count):
            t, pos, c = read_valtype(data, pos)
            types.append(t)
            canonical = canonical and c
        return tuple(types), pos, canonical
    if kind is Imm.CATCHES:
        count, pos, canonical = _read_u32(data, pos)
        catches = []
        for _ in range(count):
            ckind = data[pos]
            if ckind > 3:
                raise DecodeError(f"malformed catch clause kind {ckind}", offset=pos)
            pos += 1
            tag: int | None = None
            if ckind < 2:
                tag, pos, c = _read_u32(data, pos)
                canonical = canonical and c
            label, pos, c = _read_u32(data, pos)
            catches.append(Catch(ckind, tag, label))
            canonical = canonical and c
        return tuple(catches), pos, canonical
    raise AssertionError(f"unhandled immediate kind {kind}")  # pragma: no cover


def _read_generic(op: Op, data: bytes, pos: int) -> tuple[ImmValue, int, bool]:
    imms = op.imms
    if len(imms) == 1:
        return _read_imm(imms[0], data, pos)
    values = []
    canonical = True
    for kind in imms:
        value, pos, c = _read_imm(kind, data, pos)
        values.append(value)
        canonical = canonical and c
    return tuple(values), pos, canonical


def _decode_instrs(data: bytes, pos: int, ctx: _Ctx) -> tuple[list[Instr], int]:
    """Decode instructions from `pos` up to and including the `end` that closes
    the outermost level. Returns (instructions, position after that end)."""
    instrs: list[Instr] = []
    append = instrs.append
    byte_info = _BYTE_INFO
    new = Instr
    depth = 0
    start = pos
    try:
        while True:
            start = pos
            b = data[pos]
            pos += 1
            info = byte_info[b]
            if info is not None:
                op, shape, single, cache = info
                if single is not None:
                    if shape == _END:
                        append(single)
                        if depth == 0:
                            return instrs, pos
                        depth -= 1
                        continue
                    append(single)
                    continue
                if shape == _U32:
                    v = data[pos]
                    if v < 0x80:
                        pos += 1
                        ins = cache.get(v)
                        if ins is None:
                            ins = cache[v] = new(op, v)
                        append(ins)
                        continue
                    v, pos, canonical = _read_u32(data, pos)
                    append(new(op, v) if canonical else _RawInstr(op, v, data[start:pos]))
                    continue
                if shape == _MEMARG:
                    flags = data[pos]
                    off = data[pos + 1]
                    if flags < 0x40 and off < 0x80:
                        pos += 2
                        key = flags << 7 | off
                        ins = cache.get(key)
                        if ins is None:
                            ins = cache[key] = new(op, MemArg(flags, off, 0))
                        append(ins)
                        continue
                    m, pos, canonical = _read_memarg(data, pos)
                    append(new(op, m) if canonical else _RawInstr(op, m, data[start:pos]))
                    continue
                if shape == _I32:
                    v = data[pos]
                    if v < 0x80:
                        pos += 1
                        ins = cache.get(v)
                        if ins is None:
                            ins = cache[v] = new(op, v - 0x80 if v & 0x40 else v)
                        append(ins)
                        continue
                    v, pos = read_sleb(data, pos, 32)
                    if leb_is_canonical(data, start + 1, pos, True):
                        append(new(op, v))
                    else:
                        append(_RawInstr(op, v, data[start:pos]))
                    continue
                if shape == _BLOCK:
                    depth += 1
                    t = data[pos]
                    if t == 0x40 or (0x7B <= t <= 0x7F):
                        pos += 1
                        ins = cache.get(t)
                        if ins is None:
                            ins = cache[t] = new(op, None if t == 0x40 else NumType(t))
                        append(ins)
                        continue
                    bt, pos, canonical = read_blocktype(data, pos)
                    append(new(op, bt) if canonical else _RawInstr(op, bt, data[start:pos]))
                    continue
                imm, pos, canonical = _read_generic(op, data, pos)
            elif b in _PREFIX_BYTES:
                code, pos = read_uleb(data, pos, 32)
                sub = BY_PREFIX[b].get(code)
                if sub is None:
                    raise DecodeError(f"illegal opcode 0x{b:02x} {code}", offset=start)
                op = sub
                canonical = leb_is_canonical(data, start + 1, pos, False)
                if op.imms:
                    imm, pos, c = _read_generic(op, data, pos)
                    canonical = canonical and c
                else:
                    imm = None
                if op in _NEEDS_DATA_COUNT and ctx.has_data_count is False:
                    raise DecodeError("data count section required", offset=start)
                if canonical and not op.imms:
                    append(SINGLETONS[op])
                    continue
            else:
                raise DecodeError(f"illegal opcode 0x{b:02x}", offset=start)
            # Everything not handled by a fast path above.
            if op.opens_block:
                depth += 1
            elif op.name == "delegate":
                if depth == 0:
                    raise DecodeError("delegate outside of a try block", offset=start)
                depth -= 1
            append(new(op, imm) if canonical else _RawInstr(op, imm, data[start:pos]))
    except IndexError:
        raise DecodeError(
            "unexpected end of section or function", offset=ctx.base + len(data)
        ) from None
    except DecodeError as e:
        # Everything inside raised offsets relative to `data`.
        e.offset = ctx.base + (start if e.offset is None else e.offset)
        e.locate(func_index=ctx.func_index)
        raise


def decode_expr(data: bytes, pos: int = 0, *, base: int = 0) -> list[Instr]:
    """Decode a constant expression (up to and including its `end`)."""
    instrs, _ = _decode_instrs(data, pos, _Ctx(base, None, None))
    return instrs


def decode_expr_at(data: bytes, pos: int, *, base: int = 0) -> int:
    """Check the expression at `pos` decodes; return the position after its `end`."""
    _, end = _decode_instrs(data, pos, _Ctx(base, None, None))
    return end


def decode_body(
    raw: bytes,
    *,
    base: int = 0,
    func_index: int | None = None,
    has_data_count: bool | None = None,
) -> Body:
    """Decode a function body (locals and code, without the size prefix).

    `base` is the body's offset in the module (errors report absolute offsets);
    `has_data_count=False` makes ``memory.init``/``data.drop`` malformed, as the
    spec requires when the module has no data count section.
    """
    ctx = _Ctx(base, func_index, has_data_count)
    try:
        count, pos = read_uleb(raw, 0, 32)
        local_groups: list[tuple[int, ValType]] = []
        canonical = leb_is_canonical(raw, 0, pos, False)
        total = 0
        for _ in range(count):
            start = pos
            n, pos = read_uleb(raw, pos, 32)
            canonical = canonical and leb_is_canonical(raw, start, pos, False)
            total += n
            if total > 0xFFFF_FFFF:
                raise DecodeError("too many locals", offset=base + start)
            t, pos, c = read_valtype(raw, pos)
            canonical = canonical and c
            local_groups.append((n, t))
    except IndexError:
        raise DecodeError(
            "unexpected end of section or function", offset=base + len(raw), func_index=func_index
        ) from None
    except DecodeError as e:
        e.offset = base + (0 if e.offset is None else e.offset)
        e.locate(func_index=func_index, section="code")
        raise
    instrs, end = _decode_instrs(raw, pos, ctx)
    if end != len(raw):
        raise DecodeError(
            "section size mismatch: bytes after the end of the function",
            offset=base + end,
            func_index=func_index,
            section="code",
        )
    locals_raw = None if canonical else bytes(raw[:pos])
    return Body(local_groups, instrs, locals_raw)


@dataclass(eq=False, slots=True)
class Body:
    """A decoded function body: local declarations as (count, type) runs, and the
    instruction list, ending with the function's final ``end``."""

    locals: list[tuple[int, ValType]]
    instrs: list[Instr]
    # The original encoding of the local declarations when it was not canonical.
    locals_raw: bytes | None = None

    def local_types(self, params: Sequence[ValType] = ()) -> Sequence[ValType]:
        """The type of every local, `params` first: a list, or (for the huge
        declarations a binary may hold, up to 2^32 locals) a run-length view
        that answers indexing without materialising every entry."""
        return LocalTypes(params, self.locals)

    def encode(self) -> bytes:
        """The body's encoding (what :class:`~wasync.FuncBody` holds as `raw`)."""
        return encode_body(self)


class LocalTypes(Sequence[ValType]):
    """Local types by index from (count, type) runs, in O(log runs) per lookup."""

    __slots__ = ("_ends", "_flat", "_types")

    _FLAT_LIMIT = 1 << 16

    def __init__(self, params: Sequence[ValType], runs: Sequence[tuple[int, ValType]]) -> None:
        ends: list[int] = []
        types: list[ValType] = []
        total = 0
        for t in params:
            total += 1
            ends.append(total)
            types.append(t)
        for count, t in runs:
            if count:
                total += count
                ends.append(total)
                types.append(t)
        self._ends = ends
        self._types = types
        self._flat: list[ValType] | None = None
        if total <= self._FLAT_LIMIT:
            flat: list[ValType] = []
            start = 0
            for end, t in zip(ends, types, strict=True):
                flat.extend([t] * (end - start))
                start = end
            self._flat = flat

    def __len__(self) -> int:
        return self._ends[-1] if self._ends else 0

    @overload
    def __getitem__(self, index: int) -> ValType: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[ValType]: ...
    def __getitem__(self, index: int | slice) -> ValType | Sequence[ValType]:
        if self._flat is not None:
            return self._flat[index]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("local index out of range")
        return self._types[bisect_right(self._ends, index)]

    def as_list(self) -> list[ValType] | None:
        """The plain list of types, or None when there are too many locals for one."""
        return self._flat


# -- encoding ---------------------------------------------------------------


def _write_imm(kind: Imm, value: ImmValue, out: bytearray) -> None:
    if kind in U32_IMMS:
        out += uleb(value)
    elif kind is Imm.MEMARG:
        m: MemArg = value
        if m.memory:
            out += uleb(m.align | 0x40)
            out += uleb(m.memory)
        else:
            out += uleb(m.align)
        out += uleb(m.offset)
    elif kind is Imm.BLOCKTYPE:
        out += write_blocktype(value)
    elif kind is Imm.I32 or kind is Imm.I64:
        out += sleb(value)
    elif kind is Imm.F32:
        out += value.to_bytes(4, "little")
    elif kind is Imm.F64:
        out += value.to_bytes(8, "little")
    elif kind is Imm.V128 or kind is Imm.SHUFFLE:
        out += value
    elif kind is Imm.LANE or kind is Imm.CASTFLAGS:
        out.append(value)
    elif kind is Imm.ZERO:
        out.append(0)
    elif kind is Imm.HEAPTYPE or kind is Imm.NULLHEAPTYPE:
        out += write_heaptype(value)
    elif kind is Imm.LABELS:
        labels, default = value
        out += uleb(len(labels))
        for label in labels:
            out += uleb(label)
        out += uleb(default)
    elif kind is Imm.VALTYPES:
        types: tuple[ValType, ...] = value
        out += uleb(len(types))
        for t in types:
            out += write_valtype(t)
    elif kind is Imm.CATCHES:
        catches: tuple[Catch, ...] = value
        out += uleb(len(catches))
        for c in catches:
            out.append(c.kind)
            if c.tag is not None:
                out += uleb(c.tag)
            out += uleb(c.label)
    else:  # pragma: no cover
        raise AssertionError(f"unhandled immediate kind {kind}")


def encode_instrs(instrs: Iterable[Instr], out: bytearray | None = None) -> bytearray:
    """Encode instructions (non-canonical originals are written back as they were)."""
    if out is None:
        out = bytearray()
    for ins in instrs:
        raw = ins.raw
        if raw is not None:
            out += raw
            continue
        op = ins.op
        out += op.opcode_bytes
        imm = ins.imm
        if imm is None and not op.imms:
            continue
        shape = op.shape
        if shape == _U32:
            if imm < 0x80:
                out.append(imm)
            else:
                out += uleb(imm)
        elif shape == _MEMARG:
            m: MemArg = imm
            if m.memory == 0 and m.offset < 0x80:
                out.append(m.align)
                out.append(m.offset)
            else:
                _write_imm(Imm.MEMARG, m, out)
        elif shape == _I32:
            out += sleb(imm)
        elif len(op.imms) == 1:
            _write_imm(op.imms[0], imm, out)
        else:
            for kind, value in zip(op.imms, imm, strict=True):
                _write_imm(kind, value, out)
    return out


def encode_body(body: Body) -> bytes:
    """Encode a decoded body (locals and instructions)."""
    out = bytearray()
    if body.locals_raw is not None:
        out += body.locals_raw
    else:
        out += uleb(len(body.locals))
        for n, t in body.locals:
            out += uleb(n)
            out += write_valtype(t)
    encode_instrs(body.instrs, out)
    return bytes(out)
