"""Summaries of a module: sections, counts, imports, exports, features, functions."""

from __future__ import annotations

from dataclasses import dataclass, field

from wasync._binary.decode import decode_module
from wasync._binary.leb import read_uleb
from wasync._binary.module import BinaryModule, SectionId
from wasync._binary.types import (
    AbsHeap,
    ArrayType,
    ExternKind,
    FuncType,
    GlobalType,
    Limits,
    RefType,
    StructType,
    TableType,
    TagType,
    ValType,
)
from wasync._errors import DecodeError
from wasync._ir.instr import Body, decode_body

__all__ = ["FunctionInfo", "ModuleSummary", "SectionInfo", "features_used", "summarize"]


@dataclass(frozen=True, slots=True)
class SectionInfo:
    id: int
    name: str  # section name; custom sections: their own name
    offset: int  # of the section id byte
    size: int  # payload size
    custom: bool = False


@dataclass(frozen=True, slots=True)
class FunctionInfo:
    index: int
    name: str | None
    type: FuncType
    body_size: int
    instructions: int
    imported: bool = False


@dataclass(slots=True)
class ModuleSummary:
    size: int
    sections: list[SectionInfo]
    counts: dict[str, int]
    imports: list[tuple[str, str, str]]  # module, name, description
    exports: list[tuple[str, str]]  # name, description
    features: list[str]
    functions: list[FunctionInfo] = field(default_factory=list)


def _sections(data: bytes) -> list[SectionInfo]:
    out: list[SectionInfo] = []
    pos = 8
    while pos < len(data):
        start = pos
        sid = data[pos]
        size, body = read_uleb(data, pos + 1)
        if sid == 0:
            n, p = read_uleb(data, body)
            name = data[p : p + n].decode("utf-8", errors="replace")
            out.append(SectionInfo(0, name, start, size, custom=True))
        else:
            out.append(SectionInfo(sid, str(SectionId(sid)), start, size))
        pos = body + size
    return out


def _valtype_features(t: ValType | object, feats: set[str]) -> None:
    if isinstance(t, RefType):
        feats.add("reference-types")
        if not t.nullable or isinstance(t.heap, int):
            feats.add("function-references")
        if isinstance(t.heap, AbsHeap) and t.heap not in (AbsHeap.FUNC, AbsHeap.EXTERN):
            feats.add("exceptions" if t.heap in (AbsHeap.EXN, AbsHeap.NOEXN) else "gc")
    elif str(t) == "v128":
        feats.add("simd")


_EXTENDED_CONST = frozenset({"i32.add", "i32.sub", "i32.mul", "i64.add", "i64.sub", "i64.mul"})


def features_used(m: BinaryModule, bodies: list[Body] | None = None) -> list[str]:
    """The WebAssembly features (proposal names) a module uses, sorted.

    `bodies` (decoded function bodies) adds what the code uses; without them
    only the module-level structure is considered."""
    feats: set[str] = set()
    for group in m.types:
        if group.explicit or len(group.types) != 1:
            feats.add("gc")
        for st in group.types:
            if st.supertypes or not st.final or st.explicit:
                feats.add("gc")
            comp = st.comp
            if isinstance(comp, (StructType, ArrayType)):
                feats.add("gc")
            elif isinstance(comp, FuncType):
                if len(comp.results) > 1:
                    feats.add("multi-value")
                for t in comp.params + comp.results:
                    _valtype_features(t, feats)
    memories: list[Limits] = list(m.memories)
    tables: list[TableType] = [t.type for t in m.tables]
    for imp in m.imports:
        if isinstance(imp.desc, Limits):
            memories.append(imp.desc)
        elif isinstance(imp.desc, TableType):
            tables.append(imp.desc)
        elif isinstance(imp.desc, GlobalType):
            _valtype_features(imp.desc.type, feats)
            if imp.desc.mutable:
                feats.add("mutable-globals")
        elif isinstance(imp.desc, TagType):
            feats.add("exceptions")
    if len(memories) > 1:
        feats.add("multi-memory")
    for lim in memories + [t.limits for t in tables]:
        if lim.is64:
            feats.add("memory64")
        if lim.shared:
            feats.add("threads")
        if lim.page_size_log2 is not None:
            feats.add("custom-page-sizes")
    if len(tables) > 1 or any(t.elem.heap != AbsHeap.FUNC for t in tables):
        feats.add("reference-types")
    if any(t.init is not None for t in m.tables):
        feats.add("function-references")
    if m.tags:
        feats.add("exceptions")
    for g in m.globals:
        _valtype_features(g.type.type, feats)
    if m.data_count is not None or any(d.flags == 1 for d in m.datas):
        feats.add("bulk-memory")
    if any(e.flags & 1 or e.flags & 4 for e in m.elements):
        feats.add("bulk-memory")
    exprs = [g.init for g in m.globals]
    exprs += [x.offset for x in m.elements if x.offset is not None]
    exprs += [x.offset for x in m.datas if x.offset is not None]
    for e in exprs:
        if any(i.op.name in _EXTENDED_CONST for i in e.instrs()):
            feats.add("extended-const")
    if _exports_mutable_global(m):
        feats.add("mutable-globals")
    for body in bodies or ():
        for _, t in body.locals:
            _valtype_features(t, feats)
        seen: set[int] = set()
        for ins in body.instrs:
            op = ins.op
            if op.id in seen:
                continue
            seen.add(op.id)
            if op.proposal != "mvp":
                feats.add(op.proposal)
            if op.opens_block and isinstance(ins.imm, int):
                feats.add("multi-value")
    return sorted(feats)


def _exports_mutable_global(m: BinaryModule) -> bool:
    imported = [i.desc for i in m.imports if isinstance(i.desc, GlobalType)]
    types = imported + [g.type for g in m.globals]
    return any(
        e.kind is ExternKind.GLOBAL and e.index < len(types) and types[e.index].mutable
        for e in m.exports
    )


def _describe_import(desc: object, types: list[object]) -> str:
    if isinstance(desc, int):
        comp = getattr(types[desc], "comp", None) if desc < len(types) else None
        return f"func {comp}" if comp is not None else f"func (type {desc})"
    if isinstance(desc, TableType):
        return f"table {desc.elem} {_limits(desc.limits)}"
    if isinstance(desc, Limits):
        return f"memory {_limits(desc)}"
    if isinstance(desc, GlobalType):
        return f"global {'mut ' if desc.mutable else ''}{desc.type}"
    if isinstance(desc, TagType):
        return f"tag (type {desc.type_index})"
    return str(desc)  # pragma: no cover


def _limits(lim: Limits) -> str:
    s = f"{lim.min}" + (f"..{lim.max}" if lim.max is not None else "..")
    if lim.is64:
        s += " i64"
    if lim.shared:
        s += " shared"
    return s


def summarize(data: bytes, *, functions: bool = False) -> ModuleSummary:
    """Summarize a binary; with `functions`, decode every body to list functions
    and to find every feature the code uses."""
    m = decode_module(data)
    types: list[object] = list(m.type_list())
    nimp = m.num_imported_funcs
    bodies: list[Body] = []
    fn_infos: list[FunctionInfo] = []
    names = m.function_names()
    tidx = m.func_type_indices()
    if functions:
        has_dc = m.data_count is not None
        for i, code in enumerate(m.codes):
            try:
                bodies.append(
                    decode_body(
                        code.raw, base=code.offset, func_index=nimp + i, has_data_count=has_dc
                    )
                )
            except DecodeError as e:
                e.locate(func_name=names.get(nimp + i))
                raise
        for f in range(len(tidx)):
            comp = getattr(types[tidx[f]], "comp", None) if tidx[f] < len(types) else None
            ft = comp if isinstance(comp, FuncType) else FuncType((), ())
            if f < nimp:
                fn_infos.append(FunctionInfo(f, names.get(f), ft, 0, 0, imported=True))
            else:
                body = bodies[f - nimp]
                fn_infos.append(
                    FunctionInfo(f, names.get(f), ft, len(m.codes[f - nimp].raw), len(body.instrs))
                )
    kinds = {k: sum(1 for i in m.imports if i.kind is k) for k in ExternKind}
    counts = {
        "types": len(types),
        "imports": len(m.imports),
        "functions": len(m.functions) + kinds[ExternKind.FUNC],
        "defined functions": len(m.functions),
        "tables": len(m.tables) + kinds[ExternKind.TABLE],
        "memories": len(m.memories) + kinds[ExternKind.MEMORY],
        "globals": len(m.globals) + kinds[ExternKind.GLOBAL],
        "tags": len(m.tags) + kinds[ExternKind.TAG],
        "exports": len(m.exports),
        "element segments": len(m.elements),
        "data segments": len(m.datas),
    }
    imports = [(i.module, i.name, _describe_import(i.desc, types)) for i in m.imports]
    exports = [(e.name, f"{e.kind} {e.index}") for e in m.exports]
    return ModuleSummary(
        size=len(data),
        sections=_sections(data),
        counts=counts,
        imports=imports,
        exports=exports,
        features=features_used(m, bodies if functions else None),
        functions=fn_infos,
    )
