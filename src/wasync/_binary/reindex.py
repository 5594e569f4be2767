"""Renumbering the function and global index spaces of a module.

Removing a function import, or turning a defined global into an imported one,
shifts every index after it: :func:`reindex` rewrites every place a module
names a function or a global (code, constant expressions, element segments,
exports, the start function, and the ``name`` section's function, local, label
and global names). Function bodies and constant expressions that name nothing
that moved keep their original bytes.

Other custom sections that hold indices (``linking`` and ``reloc.*`` of object
files, DWARF's code offsets) are kept as they are: they describe the module
before any transform, as they do after instrumentation.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from wasync._binary.leb import read_uleb, uleb
from wasync._binary.module import BinaryModule, ConstExpr, FuncBody
from wasync._binary.opcodes import Imm
from wasync._binary.types import ExternKind
from wasync._errors import DecodeError
from wasync._ir.instr import Instr, decode_body, encode_body, encode_instrs

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = ["reindex"]

# Subsections of the ``name`` section, by what their entries are keyed on.
_FUNC_NAMES, _LOCAL_NAMES, _LABEL_NAMES, _GLOBAL_NAMES = 1, 2, 3, 7


def reindex(
    m: BinaryModule,
    *,
    funcs: Sequence[int] | None = None,
    globals_: Sequence[int] | None = None,
    kept_funcs: Mapping[int, int] | None = None,
) -> None:
    """Rewrite `m` in place so that every reference to function ``i`` names
    ``funcs[i]`` and every reference to global ``g`` names ``globals_[g]`` (None:
    that index space is unchanged). The caller has already rearranged the
    imports and definitions themselves to match.

    `kept_funcs` maps the old index of each function that still exists to its
    new one, for the names section (a removed function whose references were
    redirected to another one loses its name); by default every function is
    kept under ``funcs[i]``."""
    fmap = list(funcs) if funcs is not None else None
    gmap = list(globals_) if globals_ is not None else None
    if fmap is None and gmap is None:
        return
    if fmap is not None and all(i == j for i, j in enumerate(fmap)):
        fmap = None
    if gmap is not None and all(i == j for i, j in enumerate(gmap)):
        gmap = None
    if fmap is None and gmap is None:
        return

    def map_instrs(instrs: list[Instr]) -> bool:
        changed = False
        for k, ins in enumerate(instrs):
            imms = ins.op.imms
            if not imms:
                continue
            if Imm.FUNC not in imms and Imm.GLOBAL not in imms:
                continue
            values = list(ins.imm) if len(imms) > 1 else [ins.imm]
            new = list(values)
            for j, kind in enumerate(imms):
                if kind is Imm.FUNC and fmap is not None:
                    new[j] = _lookup(fmap, values[j], "function")
                elif kind is Imm.GLOBAL and gmap is not None:
                    new[j] = _lookup(gmap, values[j], "global")
            if new != values:
                instrs[k] = Instr(ins.op, tuple(new) if len(imms) > 1 else new[0])
                changed = True
        return changed

    def map_expr(expr: ConstExpr) -> ConstExpr:
        instrs = expr.instrs()
        if not map_instrs(instrs):
            return expr
        return ConstExpr(bytes(encode_instrs(instrs)))

    # Code.
    nimp = m.num_imported_funcs
    for k, code in enumerate(m.codes):
        try:
            body = decode_body(code.raw, base=code.offset, has_data_count=m.data_count is not None)
        except DecodeError as e:
            e.locate(section="code", func_name=m.function_names().get(nimp + k))
            raise
        if map_instrs(body.instrs):
            m.codes[k] = FuncBody(encode_body(body), code.offset)

    # Constant expressions and segments.
    m.globals = [replace(g, init=map_expr(g.init)) for g in m.globals]
    m.tables = [t if t.init is None else replace(t, init=map_expr(t.init)) for t in m.tables]
    elements = []
    for el in m.elements:
        offset = None if el.offset is None else map_expr(el.offset)
        items = el.items
        if el.uses_exprs:
            items = tuple(map_expr(e) for e in items if isinstance(e, ConstExpr))
        elif fmap is not None:
            items = tuple(_lookup(fmap, i, "function") for i in items if isinstance(i, int))
        elements.append(replace(el, offset=offset, items=items))
    m.elements = elements
    m.datas = [d if d.offset is None else replace(d, offset=map_expr(d.offset)) for d in m.datas]

    # Exports and start.
    exports = []
    for ex in m.exports:
        if ex.kind is ExternKind.FUNC and fmap is not None:
            ex = replace(ex, index=_lookup(fmap, ex.index, "function"))
        elif ex.kind is ExternKind.GLOBAL and gmap is not None:
            ex = replace(ex, index=_lookup(gmap, ex.index, "global"))
        exports.append(ex)
    m.exports = exports
    if m.start is not None and fmap is not None:
        m.start = _lookup(fmap, m.start, "function")

    # Names.
    kept: Mapping[int, int] | None
    if fmap is None:
        kept = None
    elif kept_funcs is not None:
        kept = kept_funcs
    else:
        kept = dict(enumerate(fmap))
    gkept = dict(enumerate(gmap)) if gmap is not None else None
    m.customs = [
        replace(c, data=_rename(c.data, kept, gkept), raw=None) if c.name == "name" else c
        for c in m.customs
    ]


def _lookup(table: list[int], index: int, what: str) -> int:
    if not 0 <= index < len(table):
        raise DecodeError(f"{what} index {index} out of range (the module has {len(table)})")
    return table[index]


def _rename(
    payload: bytes, funcs: Mapping[int, int] | None, globals_: Mapping[int, int] | None
) -> bytes:
    """The ``name`` section with its index-keyed subsections renumbered. A name
    section that cannot be read is left as it is (custom sections are never an
    error); so are subsections this does not know."""
    out = bytearray()
    pos = 0
    try:
        while pos < len(payload):
            sub_id = payload[pos]
            size, start = read_uleb(payload, pos + 1)
            end = start + size
            if end > len(payload):
                return payload
            chunk = payload[start:end]
            keys = funcs if sub_id in (_FUNC_NAMES, _LOCAL_NAMES, _LABEL_NAMES) else None
            if sub_id == _GLOBAL_NAMES:
                keys = globals_
            if keys is not None:
                chunk = _rekey(chunk, keys, indirect=sub_id in (_LOCAL_NAMES, _LABEL_NAMES))
            out.append(sub_id)
            out += uleb(len(chunk))
            out += chunk
            pos = end
    except (DecodeError, IndexError):
        return payload
    return bytes(out)


def _rekey(chunk: bytes, keys: Mapping[int, int], *, indirect: bool) -> bytes:
    """A name map (or an indirect name map, whose values are name maps kept as
    bytes) with its keys renumbered, entries without a new key dropped, sorted."""
    count, pos = read_uleb(chunk, 0)
    entries: list[tuple[int, bytes]] = []
    for _ in range(count):
        index, pos = read_uleb(chunk, pos)
        start = pos
        if indirect:
            inner, pos = read_uleb(chunk, pos)
            for _ in range(inner):
                _, pos = read_uleb(chunk, pos)
                n, pos = read_uleb(chunk, pos)
                pos += n
        else:
            n, pos = read_uleb(chunk, pos)
            pos += n
        if pos > len(chunk):
            raise DecodeError("name map runs past its subsection")
        new = keys.get(index)
        if new is not None:
            entries.append((new, chunk[start:pos]))
    entries.sort(key=lambda e: e[0])
    out = bytearray(uleb(len(entries)))
    for index, value in entries:
        out += uleb(index)
        out += value
    return bytes(out)
