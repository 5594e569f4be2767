"""Reading a WebAssembly binary into a :class:`~wasync._binary.module.BinaryModule`.

Every section is decoded except function bodies, which are kept as raw slices
(:class:`~wasync._binary.module.FuncBody`) until asked for. Malformed input
raises :class:`~wasync._errors.DecodeError` with the byte offset and the
section; nothing else escapes.
"""

from __future__ import annotations

from typing import NoReturn

from wasync._binary.leb import read_sleb, read_uleb
from wasync._binary.module import (
    SECTION_ORDER,
    BinaryModule,
    ConstExpr,
    CustomSection,
    Data,
    Element,
    Export,
    FuncBody,
    Global,
    Import,
    ImportDesc,
    SectionId,
    SegmentMode,
    Table,
)
from wasync._binary.types import (
    FUNCREF,
    ArrayType,
    CompType,
    ExternKind,
    FieldType,
    FuncType,
    GlobalType,
    Limits,
    PackedType,
    RecGroup,
    RefType,
    StorageType,
    StructType,
    SubType,
    TableType,
    TagType,
    ValType,
)
from wasync._binary.valtypes import read_valtype
from wasync._errors import DecodeError
from wasync._ir.instr import decode_expr_at

__all__ = ["decode_module"]

MAGIC = b"\x00asm"
_ORDER_RANK = {sid: i for i, sid in enumerate(SECTION_ORDER)}


class _Reader:
    """A cursor over one section's bytes; offsets in errors are absolute."""

    __slots__ = ("base", "data", "pos", "section")

    def __init__(self, data: bytes, base: int, section: str) -> None:
        self.data = data
        self.pos = 0
        self.base = base
        self.section = section

    def error(self, message: str, at: int | None = None) -> DecodeError:
        pos = self.pos if at is None else at
        return DecodeError(message, offset=self.base + pos, section=self.section)

    def fail(self, message: str, at: int | None = None) -> NoReturn:
        raise self.error(message, at)

    def _wrap(self, e: DecodeError) -> NoReturn:
        e.offset = self.base + (self.pos if e.offset is None else e.offset)
        e.locate(section=self.section)
        raise e

    @property
    def at_end(self) -> bool:
        return self.pos >= len(self.data)

    def byte(self) -> int:
        if self.pos >= len(self.data):
            self.fail("unexpected end of section or function")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def u32(self) -> int:
        try:
            value, self.pos = read_uleb(self.data, self.pos, 32)
        except DecodeError as e:
            self._wrap(e)
        return value

    def u64(self) -> int:
        try:
            value, self.pos = read_uleb(self.data, self.pos, 64)
        except DecodeError as e:
            self._wrap(e)
        return value

    def s33(self) -> int:
        try:
            value, self.pos = read_sleb(self.data, self.pos, 33)
        except DecodeError as e:
            self._wrap(e)
        return value

    def count(self, what: str) -> int:
        """A vector length, sanity-checked against the bytes left (each entry
        takes at least one byte), so that a huge length fails fast."""
        start = self.pos
        n = self.u32()
        if n > len(self.data) - self.pos:
            self.fail(
                f"length out of bounds: {n} {what} in {len(self.data) - self.pos} bytes", start
            )
        return n

    def take(self, n: int) -> bytes:
        if n > len(self.data) - self.pos:
            self.fail("length out of bounds")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def name(self) -> str:
        start = self.pos
        n = self.u32()
        raw = self.take(n)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            self.fail("malformed UTF-8 encoding", start)

    def valtype(self) -> ValType:
        try:
            t, self.pos, _ = read_valtype(self.data, self.pos)
        except IndexError:
            self.fail("unexpected end of section or function")
        except DecodeError as e:
            self._wrap(e)
        return t

    def reftype(self) -> RefType:
        start = self.pos
        t = self.valtype()
        if not isinstance(t, RefType):
            self.fail("malformed reference type", start)
        return t

    def expr(self) -> ConstExpr:
        start = self.pos
        try:
            self.pos = decode_expr_at(self.data, self.pos)
        except DecodeError as e:
            e.offset = self.base + (start if e.offset is None else e.offset)
            e.locate(section=self.section)
            raise
        return ConstExpr(bytes(self.data[start : self.pos]))

    def limits(self, *, table: bool) -> Limits:
        start = self.pos
        flags = self.byte()
        allowed = 0x05 if table else 0x0F
        if flags & ~allowed:
            self.fail(f"malformed limits flags 0x{flags:02x}", start)
        is64 = bool(flags & 4)
        # Wasm 3.0 reads every bound as u64; a 32-bit memory or table with a
        # bound past 2^32 is invalid, not malformed.
        lo = self.u64()
        hi = self.u64() if flags & 1 else None
        page = self.u32() if flags & 8 else None
        return Limits(lo, hi, bool(flags & 2), is64, page)

    def tabletype(self) -> TableType:
        elem = self.reftype()
        return TableType(elem, self.limits(table=True))

    def globaltype(self) -> GlobalType:
        t = self.valtype()
        start = self.pos
        mut = self.byte()
        if mut > 1:
            self.fail("malformed mutability", start)
        return GlobalType(t, bool(mut))

    def tagtype(self) -> TagType:
        start = self.pos
        attribute = self.byte()
        if attribute != 0:
            self.fail(f"malformed tag attribute {attribute}", start)
        return TagType(self.u32(), attribute)

    def storagetype(self) -> StorageType:
        if self.pos < len(self.data):
            b = self.data[self.pos]
            if b in (PackedType.I8.value, PackedType.I16.value):
                self.pos += 1
                return PackedType(b)
        return self.valtype()

    def fieldtype(self) -> FieldType:
        storage = self.storagetype()
        start = self.pos
        mut = self.byte()
        if mut > 1:
            self.fail("malformed mutability", start)
        return FieldType(storage, bool(mut))

    def comptype(self) -> CompType:
        start = self.pos
        form = self.byte()
        if form == 0x60:
            params = tuple(self.valtype() for _ in range(self.count("parameters")))
            results = tuple(self.valtype() for _ in range(self.count("results")))
            return FuncType(params, results)
        if form == 0x5F:
            return StructType(tuple(self.fieldtype() for _ in range(self.count("fields"))))
        if form == 0x5E:
            return ArrayType(self.fieldtype())
        raise self.error(f"malformed composite type form 0x{form:02x}", start)

    def subtype(self) -> SubType:
        b = self.data[self.pos] if self.pos < len(self.data) else -1
        if b in (0x50, 0x4F):
            self.pos += 1
            supers = tuple(self.u32() for _ in range(self.count("supertypes")))
            return SubType(self.comptype(), supers, b == 0x4F, explicit=True)
        return SubType(self.comptype())

    def recgroup(self) -> RecGroup:
        if self.pos < len(self.data) and self.data[self.pos] == 0x4E:
            self.pos += 1
            return RecGroup(
                tuple(self.subtype() for _ in range(self.count("types"))), explicit=True
            )
        return RecGroup((self.subtype(),))


def _import_desc(r: _Reader, kind: int, at: int) -> tuple[ExternKind, ImportDesc]:
    if kind == 0:
        return ExternKind.FUNC, r.u32()
    if kind == 1:
        return ExternKind.TABLE, r.tabletype()
    if kind == 2:
        return ExternKind.MEMORY, r.limits(table=False)
    if kind == 3:
        return ExternKind.GLOBAL, r.globaltype()
    if kind == 4:
        return ExternKind.TAG, r.tagtype()
    raise r.error(f"malformed import kind {kind}", at)


def _element(r: _Reader) -> Element:
    start = r.pos
    flags = r.u32()
    if flags > 7:
        r.fail(f"malformed elements segment kind {flags}", start)
    table = 0
    offset: ConstExpr | None = None
    if flags & 1:
        mode = SegmentMode.DECLARATIVE if flags & 2 else SegmentMode.PASSIVE
    else:
        mode = SegmentMode.ACTIVE
        if flags & 2:
            table = r.u32()
        offset = r.expr()
    etype = FUNCREF
    if flags & 3:  # an element kind or reference type is present
        if flags & 4:
            etype = r.reftype()
        else:
            at = r.pos
            kind = r.byte()
            if kind != 0:
                r.fail(f"malformed element kind {kind}", at)
    if flags & 4:
        exprs = tuple(r.expr() for _ in range(r.count("element expressions")))
        return Element(mode, etype, exprs, table, offset, flags)
    funcs = tuple(r.u32() for _ in range(r.count("element function indices")))
    return Element(mode, etype, funcs, table, offset, flags)


def _data(r: _Reader) -> Data:
    start = r.pos
    flags = r.u32()
    if flags > 2:
        r.fail(f"malformed data segment kind {flags}", start)
    if flags == 1:
        return Data(SegmentMode.PASSIVE, r.take(r.u32()), flags=1)
    memory = r.u32() if flags == 2 else 0
    offset = r.expr()
    return Data(SegmentMode.ACTIVE, r.take(r.u32()), memory, offset, flags)


def _section(m: BinaryModule, sid: SectionId, r: _Reader) -> object:
    """Decode one known section into `m`; return the snapshot of what it holds."""
    if sid is SectionId.TYPE:
        m.types = [r.recgroup() for _ in range(r.count("types"))]
        return tuple(m.types)
    if sid is SectionId.IMPORT:
        for _ in range(r.count("imports")):
            module = r.name()
            name = r.name()
            at = r.pos
            kind, desc = _import_desc(r, r.byte(), at)
            m.imports.append(Import(module, name, kind, desc))
        return tuple(m.imports)
    if sid is SectionId.FUNCTION:
        m.functions = [r.u32() for _ in range(r.count("functions"))]
        return tuple(m.functions)
    if sid is SectionId.TABLE:
        for _ in range(r.count("tables")):
            if r.pos < len(r.data) and r.data[r.pos] == 0x40:
                r.pos += 1
                at = r.pos
                if r.byte() != 0:
                    r.fail("malformed table: reserved byte must be zero", at)
                tt = r.tabletype()
                m.tables.append(Table(tt, r.expr()))
            else:
                m.tables.append(Table(r.tabletype()))
        return tuple(m.tables)
    if sid is SectionId.MEMORY:
        m.memories = [r.limits(table=False) for _ in range(r.count("memories"))]
        return tuple(m.memories)
    if sid is SectionId.TAG:
        m.tags = [r.tagtype() for _ in range(r.count("tags"))]
        return tuple(m.tags)
    if sid is SectionId.GLOBAL:
        for _ in range(r.count("globals")):
            gt = r.globaltype()
            m.globals.append(Global(gt, r.expr()))
        return tuple(m.globals)
    if sid is SectionId.EXPORT:
        for _ in range(r.count("exports")):
            name = r.name()
            at = r.pos
            kind_byte = r.byte()
            if kind_byte > 4:
                r.fail(f"malformed export kind {kind_byte}", at)
            m.exports.append(Export(name, ExternKind(kind_byte), r.u32()))
        return tuple(m.exports)
    if sid is SectionId.START:
        m.start = r.u32()
        return m.start
    if sid is SectionId.ELEMENT:
        m.elements = [_element(r) for _ in range(r.count("element segments"))]
        return tuple(m.elements)
    if sid is SectionId.DATA_COUNT:
        m.data_count = r.u32()
        return m.data_count
    if sid is SectionId.CODE:
        n = r.count("function bodies")
        if n != len(m.functions):
            r.fail("function and code section have inconsistent lengths")
        codes = m.codes
        data = r.data
        base = r.base
        for _ in range(n):
            size = r.u32()
            start = r.pos
            if size > len(data) - start:
                r.fail("length out of bounds: function body past the end of the section")
            r.pos = start + size
            codes.append(FuncBody(data[start : r.pos], base + start))
        return tuple(codes)
    if sid is SectionId.DATA:
        n = r.count("data segments")
        if m.data_count is not None and n != m.data_count:
            r.fail("data count and data section have inconsistent lengths")
        m.datas = [_data(r) for _ in range(n)]
        return tuple(m.datas)
    raise AssertionError(sid)  # pragma: no cover


def decode_module(data: bytes) -> BinaryModule:
    """Decode a binary module. Function bodies are kept raw: call
    :meth:`FuncBody.decode` (or :func:`wasync._ir.decode_body`) to decode them."""
    data = bytes(data)
    if len(data) < 4 or data[:4] != MAGIC:
        raise DecodeError("magic header not detected", offset=0)
    if len(data) < 8:
        raise DecodeError("unexpected end: truncated version", offset=4)
    version = int.from_bytes(data[4:8], "little")
    if version != 1:
        raise DecodeError(f"unknown binary version {version:#x}", offset=4)
    m = BinaryModule(version=version)
    pos = 8
    last_rank = -1
    last_known: SectionId | None = None
    end = len(data)
    while pos < end:
        start = pos
        raw_id = data[pos]
        try:
            sid = SectionId(raw_id)
        except ValueError:
            raise DecodeError(f"malformed section id {raw_id}", offset=pos) from None
        try:
            size, body = read_uleb(data, pos + 1, 32)
        except DecodeError as e:
            e.locate(section=str(sid))
            raise
        if size > end - body:
            raise DecodeError(
                f"section size mismatch: section of {size} bytes but {end - body} left",
                offset=start,
                section=str(sid),
            )
        pos = body + size
        payload = data[body:pos]
        r = _Reader(payload, body, str(sid))
        if sid is SectionId.CUSTOM:
            name = r.name()
            m.customs.append(CustomSection(name, payload[r.pos :], last_known, data[start:pos]))
            continue
        rank = _ORDER_RANK[sid]
        if rank <= last_rank:
            raise DecodeError(
                f"unexpected content after last section: {sid} section out of order",
                offset=start,
                section=str(sid),
            )
        last_rank = rank
        last_known = sid
        snapshot = _section(m, sid, r)
        if not r.at_end:
            raise DecodeError(
                "section size mismatch: bytes left over at the end of the section",
                offset=r.base + r.pos,
                section=str(sid),
            )
        m.present.add(sid)
        m._raw[sid] = (data[start:pos], snapshot)
    if m.functions and SectionId.CODE not in m.present:
        raise DecodeError(
            "function and code section have inconsistent lengths: no code section",
            offset=end,
        )
    if m.data_count and SectionId.DATA not in m.present:
        raise DecodeError(
            "data count and data section have inconsistent lengths: no data section",
            offset=end,
        )
    return m
