"""Writing a :class:`~wasync._binary.module.BinaryModule` back to bytes.

By default the writer preserves encodings: a known section whose entries still
equal what was decoded from it, a custom section that still holds its name and
payload, and a function body nobody replaced are written back byte for byte,
so ``encode_module(decode_module(b)) == b`` for every well-formed binary,
including ones with padded LEB128s. ``canonical=True`` re-encodes everything in
the shortest form instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from wasync._binary.leb import read_uleb, uleb
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
    SectionId,
    Table,
)
from wasync._binary.types import (
    ArrayType,
    ExternKind,
    FieldType,
    FuncType,
    GlobalType,
    Limits,
    PackedType,
    RecGroup,
    StructType,
    SubType,
    TableType,
    TagType,
)
from wasync._binary.valtypes import write_valtype
from wasync._errors import DecodeError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = ["encode_module"]


def _vec(out: bytearray, items: Sequence[Any], write: Callable[[bytearray, Any], None]) -> None:
    out += uleb(len(items))
    for item in items:
        write(out, item)


def _name(out: bytearray, s: str) -> None:
    b = s.encode("utf-8")
    out += uleb(len(b))
    out += b


def _limits(out: bytearray, lim: Limits) -> None:
    flags = (lim.max is not None) | (lim.shared << 1) | (lim.is64 << 2)
    flags |= (lim.page_size_log2 is not None) << 3
    out.append(flags)
    out += uleb(lim.min)
    if lim.max is not None:
        out += uleb(lim.max)
    if lim.page_size_log2 is not None:
        out += uleb(lim.page_size_log2)


def _tabletype(out: bytearray, tt: TableType) -> None:
    out += write_valtype(tt.elem)
    _limits(out, tt.limits)


def _globaltype(out: bytearray, gt: GlobalType) -> None:
    out += write_valtype(gt.type)
    out.append(int(gt.mutable))


def _tagtype(out: bytearray, tag: TagType) -> None:
    out.append(tag.attribute)
    out += uleb(tag.type_index)


def _field(out: bytearray, f: FieldType) -> None:
    if isinstance(f.storage, PackedType):
        out.append(f.storage.value)
    else:
        out += write_valtype(f.storage)
    out.append(int(f.mutable))


def _subtype(out: bytearray, st: SubType) -> None:
    if st.explicit or st.supertypes or not st.final:
        out.append(0x4F if st.final else 0x50)
        out += uleb(len(st.supertypes))
        for s in st.supertypes:
            out += uleb(s)
    comp = st.comp
    if isinstance(comp, FuncType):
        out.append(0x60)
        out += uleb(len(comp.params))
        for t in comp.params:
            out += write_valtype(t)
        out += uleb(len(comp.results))
        for t in comp.results:
            out += write_valtype(t)
    elif isinstance(comp, StructType):
        out.append(0x5F)
        _vec(out, comp.fields, _field)
    elif isinstance(comp, ArrayType):
        out.append(0x5E)
        _field(out, comp.field)


def _recgroup(out: bytearray, g: RecGroup) -> None:
    if g.explicit or len(g.types) != 1:
        out.append(0x4E)
        _vec(out, g.types, _subtype)
    else:
        _subtype(out, g.types[0])


def _import(out: bytearray, imp: Import) -> None:
    _name(out, imp.module)
    _name(out, imp.name)
    out.append(int(imp.kind))
    desc = imp.desc
    if imp.kind is ExternKind.FUNC:
        out += uleb(int(desc))  # type: ignore[arg-type]
    elif isinstance(desc, TableType):
        _tabletype(out, desc)
    elif isinstance(desc, Limits):
        _limits(out, desc)
    elif isinstance(desc, GlobalType):
        _globaltype(out, desc)
    elif isinstance(desc, TagType):
        _tagtype(out, desc)


def _expr(out: bytearray, e: ConstExpr) -> None:
    out += e.raw


def _table(out: bytearray, t: Table) -> None:
    if t.init is not None:
        out += b"\x40\x00"
        _tabletype(out, t.type)
        _expr(out, t.init)
    else:
        _tabletype(out, t.type)


def _global(out: bytearray, g: Global) -> None:
    _globaltype(out, g.type)
    _expr(out, g.init)


def _export(out: bytearray, e: Export) -> None:
    _name(out, e.name)
    out.append(int(e.kind))
    out += uleb(e.index)


def _element(out: bytearray, e: Element) -> None:
    flags = e.flags
    out += uleb(flags)
    if not flags & 1:
        if flags & 2:
            out += uleb(e.table)
        assert e.offset is not None, "an active element segment needs an offset"
        _expr(out, e.offset)
    if flags & 3:
        if flags & 4:
            out += write_valtype(e.type)
        else:
            out.append(0)
    out += uleb(len(e.items))
    for item in e.items:
        if isinstance(item, ConstExpr):
            out += item.raw
        else:
            out += uleb(item)


def _data(out: bytearray, d: Data) -> None:
    out += uleb(d.flags)
    if d.flags == 2:
        out += uleb(d.memory)
    if d.flags != 1:
        assert d.offset is not None, "an active data segment needs an offset"
        _expr(out, d.offset)
    out += uleb(len(d.init))
    out += d.init


def _body(out: bytearray, b: FuncBody) -> None:
    out += uleb(len(b.raw))
    out += b.raw


def _content(m: BinaryModule, sid: SectionId) -> tuple[object, Callable[[bytearray], None] | None]:
    """The section's current entries (compared with the decode snapshot) and a
    function writing its payload, or None when the section is empty."""
    if sid is SectionId.START:
        start = m.start
        return start, None if start is None else (lambda out: out.extend(uleb(start)))
    if sid is SectionId.DATA_COUNT:
        dc = m.data_count
        return dc, None if dc is None else (lambda out: out.extend(uleb(dc)))
    table: dict[SectionId, tuple[tuple[object, ...], Callable[[bytearray, Any], None]]] = {
        SectionId.TYPE: (tuple(m.types), _recgroup),
        SectionId.IMPORT: (tuple(m.imports), _import),
        SectionId.FUNCTION: (tuple(m.functions), lambda out, i: out.extend(uleb(i))),
        SectionId.TABLE: (tuple(m.tables), _table),
        SectionId.MEMORY: (tuple(m.memories), _limits),
        SectionId.TAG: (tuple(m.tags), _tagtype),
        SectionId.GLOBAL: (tuple(m.globals), _global),
        SectionId.EXPORT: (tuple(m.exports), _export),
        SectionId.ELEMENT: (tuple(m.elements), _element),
        SectionId.CODE: (tuple(m.codes), _body),
        SectionId.DATA: (tuple(m.datas), _data),
    }
    items, write = table[sid]
    if not items and sid not in m.present:
        return items, None
    return items, lambda out: _vec(out, items, write)


def _custom(out: bytearray, c: CustomSection, canonical: bool) -> None:
    if c.raw is not None and not canonical:
        # Keep the original bytes while they still hold this name and payload.
        try:
            size, body = read_uleb(c.raw, 1, 32)
            n, p = read_uleb(c.raw, body, 32)
            if (
                c.raw[p : p + n] == c.name.encode("utf-8")
                and c.raw[p + n :] == c.data
                and body + size == len(c.raw)
            ):
                out += c.raw
                return
        except DecodeError:  # a stale raw copy just gets re-encoded
            pass
    payload = bytearray()
    _name(payload, c.name)
    payload += c.data
    out.append(0)
    out += uleb(len(payload))
    out += payload


def encode_module(m: BinaryModule, *, canonical: bool = False) -> bytes:
    """Encode a module. Unchanged sections and bodies keep their original bytes
    unless `canonical` is true."""
    out = bytearray(b"\x00asm")
    out += m.version.to_bytes(4, "little")
    customs: dict[SectionId | None, list[CustomSection]] = {}
    for c in m.customs:
        customs.setdefault(c.after, []).append(c)
    for c in customs.get(None, ()):
        _custom(out, c, canonical)
    for sid in SECTION_ORDER:
        items, write = _content(m, sid)
        if write is not None:
            original = m._raw.get(sid)
            if not canonical and original is not None and original[1] == items:
                out += original[0]
            else:
                payload = bytearray()
                write(payload)
                out.append(int(sid))
                out += uleb(len(payload))
                out += payload
        for c in customs.get(sid, ()):
            _custom(out, c, canonical)
    # Custom sections anchored after a known section that is gone now.
    written = {None, *SECTION_ORDER}
    for anchor, cs in customs.items():
        if anchor not in written:  # pragma: no cover - anchors are always section ids
            for c in cs:
                _custom(out, c, canonical)
    return bytes(out)
