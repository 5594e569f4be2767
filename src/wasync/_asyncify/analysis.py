"""Which functions Asyncify instruments, with Binaryen's semantics exactly.

Binaryen (``src/passes/Asyncify.cpp``, ``ModuleAnalyzer``) decides per function
whether it "can change the state" (start an unwind or a rewind, itself or in
something it calls), and instruments those that can, except the top-most
in-wasm runtime. In order:

1. **Scan.** An import can change the state if it matches the imports list
   (``module.base`` against each pattern; all imports when no list was given).
   A defined function can if it makes an indirect call (unless
   ``ignore_indirect``), or calls ``asyncify.start_unwind`` or
   ``asyncify.stop_rewind`` (then it is the *top-most runtime*: its callers
   are instrumented, it is not). A function that calls ``asyncify.stop_unwind``
   or ``asyncify.start_rewind`` is the *bottom-most runtime*: it never changes
   the state and nothing propagates to it. Any other ``asyncify.*`` function
   import is an error.
2. **Remove-list.** Every function it matches (imports included) cannot
   change the state, and nothing propagates to it.
3. With ``propagate_addlist``: add-list functions (defined ones) can change
   the state, before propagation.
4. **Propagation** backwards over direct calls: a caller of a function that
   can change the state can too, unless it is bottom-most or in the
   remove-list.
5. **Only-list**: every defined function can change the state exactly when
   it matches (this overrides everything above, the runtime rules included).
6. Without ``propagate_addlist``: add-list functions can change the state
   (without propagating).

A function is instrumented when it can change the state and is not top-most.
Functions of the add- and only-lists also have their indirect calls
instrumented when ``ignore_indirect`` is set (:meth:`changes_state_at`).

Names in the lists are Binaryen's internal function names: the ``name``
section's (duplicates made unique with ``_N`` suffixes), else ``fimport$K``
for the K-th function import and the *defined-function* index (``"0"`` is the
first function after the imports) for the others. A list entry without ``*``
is a name: one naming an import is an error, one naming nothing a warning. An
entry with ``*`` is a pattern; the patterns are tried in sorted order and only
the first that matches a function counts as used, so a pattern that only ever
matches after another is reported as matching nothing (Binaryen's quirk, kept
for identical warnings). Remove-list patterns count matches on imports, the
``asyncify.*`` imports included (under their renamed names, such as
``asyncify_start_unwind``); add-list patterns on imports too; only-list
patterns only on defined functions. A function matched by both the add- and
the remove-list is an error.

wasync differs from Binaryen in what Binaryen rejects or skips: direct tail
calls (``return_call``) are calls, and ``call_ref``, ``return_call_ref`` and
``return_call_indirect`` are indirect calls like ``call_indirect`` (Binaryen
stops with "tail calls not yet supported" and ignores ``call_ref``).

**Precise indirect calls** (``precise_indirect``, wasync only): an indirect
call of type T can only reach a function whose type matches T (same
structure, or a declared subtype when T is not final) and that the module
makes a reference to (element segments, ``ref.func`` in code or in constant
expressions). The call can change the state only if one of those can. This
holds for ``call_indirect`` through a table that is neither imported nor
exported, and for ``call_ref``, as long as no function reference can enter
the module from outside; when one can (a reference-typed import result,
exported-function parameter, imported or exported mutable global, tag, a
``table.get``/``table.copy`` reading an imported or exported table,
``any.convert_extern``), every indirect call is treated conservatively and a
warning says why. A ``call_indirect`` through an imported or exported table is
always conservative.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeAlias

from wasync._asyncify.options import AsyncifyOptions, wildcard_match
from wasync._binary.module import BinaryModule, ConstExpr, Import
from wasync._binary.names import function_name_entries
from wasync._binary.opcodes import ops_named
from wasync._binary.types import (
    AbsHeap,
    ExternKind,
    FuncType,
    GlobalType,
    RefType,
    SubType,
    TableType,
    TagType,
    ValType,
)
from wasync._errors import AsyncifyError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from wasync._ir.instr import Body, Instr

IndirectKey: TypeAlias = tuple[str, int, int] | tuple[str, int]
"""An indirect call kind: ``("table", table, type index)`` for ``call_indirect``,
``("ref", type index)`` for ``call_ref`` (tail-call forms included)."""
__all__ = [
    "RUNTIME_IMPORT_MODULE",
    "AsyncifyAnalysis",
    "IndirectKey",
    "analyze",
    "binaryen_function_names",
    "resolve_memory",
]

RUNTIME_IMPORT_MODULE = "asyncify"
_START_UNWIND = "start_unwind"
_STOP_UNWIND = "stop_unwind"
_START_REWIND = "start_rewind"
_STOP_REWIND = "stop_rewind"
# What a runtime import is renamed to (the generated function replacing it).
_RUNTIME_RENAMED = {
    _START_UNWIND: "asyncify_start_unwind",
    _STOP_UNWIND: "asyncify_stop_unwind",
    _START_REWIND: "asyncify_start_rewind",
    _STOP_REWIND: "asyncify_stop_rewind",
}
_TOP_MOST_CALLS = frozenset({_START_UNWIND, _STOP_REWIND})

_DIRECT = frozenset(op.id for n in ("call", "return_call") for op in ops_named(n))
_TABLE_CALL = frozenset(
    op.id for n in ("call_indirect", "return_call_indirect") for op in ops_named(n)
)
_REF_CALL = frozenset(op.id for n in ("call_ref", "return_call_ref") for op in ops_named(n))
_REF_FUNC = frozenset(op.id for op in ops_named("ref.func"))
_TABLE_GET = frozenset(op.id for op in ops_named("table.get"))
_TABLE_COPY = frozenset(op.id for op in ops_named("table.copy"))
_CONVERT_EXTERN = frozenset(op.id for op in ops_named("any.convert_extern"))
_SCAN = _DIRECT | _TABLE_CALL | _REF_CALL
_SCAN_PRECISE = _SCAN | _REF_FUNC | _TABLE_GET | _TABLE_COPY | _CONVERT_EXTERN

# Heap types whose references cannot hold (or lead to) a function reference.
_NON_FUNC_HEAPS = frozenset(
    {
        AbsHeap.EXTERN,
        AbsHeap.NOEXTERN,
        AbsHeap.EXN,
        AbsHeap.NOEXN,
        AbsHeap.NOFUNC,
        AbsHeap.NONE,
        AbsHeap.I31,
    }
)


# -- names ------------------------------------------------------------------


def _unique(root: str, used: set[str] | dict[str, int], hint: int) -> str:
    # Binaryen's Names::getValidName: root, else root_N from N = hint upwards.
    if root not in used:
        return root
    n = hint
    while f"{root}_{n}" in used:
        n += 1
    return f"{root}_{n}"


def binaryen_function_names(module: BinaryModule) -> list[str]:
    """Binaryen's internal name of every function (imports first), as its
    binary reader assigns them: names from the ``name`` section (a repeated
    name gets ``_N``), else ``fimport$K`` for the K-th function import and the
    defined-function index for a defined function (``"0"``, ``"1"``, ...),
    made unique the same way. (Binaryen 108 escaped non-identifier characters
    as ``\\xx`` and de-duplicated with ``.N``; later versions keep names as
    they are.)"""
    entries: list[tuple[int, str]] = []
    for custom in module.customs:
        if custom.name == "name":
            entries = function_name_entries(custom.data, "surrogateescape")
            break
    from_section: dict[int, str] = {}
    seen: dict[str, int] = {}
    used: set[str] = set()
    for index, raw in entries:
        name = _unique(raw, seen, len(seen))
        seen[name] = 1
        from_section[index] = name
        used.add(name)
    nimp = module.num_imported_funcs
    out: list[str] = []
    for k in range(nimp + len(module.functions)):
        name_or_none = from_section.get(k)
        if name_or_none is None:
            root = f"fimport${k}" if k < nimp else str(k - nimp)
            name_or_none = _unique(root, used, len(used))
            used.add(name_or_none)
        out.append(name_or_none)
    return out


class _Matcher:
    """Binaryen's PatternMatcher for one list."""

    def __init__(
        self,
        designation: str,
        entries: Sequence[str],
        by_name: dict[str, int],
        nimp: int,
        warnings: list[str],
    ) -> None:
        self.designation = designation
        self.names: set[str] = set()
        patterns: set[str] = set()
        for entry in entries:
            if "*" in entry:
                patterns.add(entry)
                continue
            index = by_name.get(entry)
            if index is None:
                warnings.append(
                    f"Asyncify {designation}list contained a non-existing function name: '{entry}'"
                )
            elif index < nimp:
                raise AsyncifyError(
                    f"Asyncify {designation}list contained an imported function name "
                    f"(use the import list for imports): {entry}"
                )
            self.names.add(entry)
        self.patterns = sorted(patterns)
        self.matched: set[str] = set()

    def __bool__(self) -> bool:
        return bool(self.names or self.patterns)

    def match(self, name: str) -> str | None:
        """The entry that matches `name` (recorded as used), or None."""
        if name in self.names:
            return name
        for pattern in self.patterns:
            if wildcard_match(pattern, name):
                self.matched.add(pattern)
                return pattern
        return None

    def check(self, warnings: list[str]) -> None:
        for pattern in self.patterns:
            if pattern not in self.matched:
                warnings.append(
                    f"Asyncify {self.designation}list contained a non-matching pattern: '{pattern}'"
                )


# -- types, for precise indirect calls ----------------------------------------


def _erase(t: ValType) -> ValType:
    if isinstance(t, RefType) and isinstance(t.heap, int):
        return RefType(t.nullable, -1)
    return t


def _func_key(ft: FuncType) -> tuple[tuple[ValType, ...], tuple[ValType, ...]]:
    # Type indices erased: a coarser equivalence than the engine's, so sound.
    return tuple(map(_erase, ft.params)), tuple(map(_erase, ft.results))


def _carries_funcs(t: ValType) -> bool:
    """Whether a value of type `t` may be, or lead to, a function reference."""
    return isinstance(t, RefType) and t.heap not in _NON_FUNC_HEAPS


def _const_ref_funcs(expr: ConstExpr) -> list[int]:
    ref_func = _REF_FUNC
    return [int(i.imm) for i in expr.instrs() if i.op.id in ref_func]


# -- the result ---------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class AsyncifyAnalysis:
    """What Asyncify instruments in a module, and why. Function indices are in
    the function index space (imports first)."""

    options: AsyncifyOptions
    names: tuple[str, ...]  # Binaryen's internal name of every function
    num_imported_funcs: int
    instrumented: frozenset[int]  # defined functions to instrument
    # Every function that can change the state, imports included: a direct call
    # to one of these is a call site to instrument (Binaryen's canChangeState;
    # top-most runtime functions are here but not instrumented).
    can_change_state: frozenset[int]
    reasons: dict[int, str]  # why each function is or is not instrumented
    unwinding_imports: frozenset[int]  # imports that may unwind (runtime excluded)
    runtime_imports: dict[int, str]  # asyncify.* import: index -> "start_unwind" etc.
    top_most_runtime: frozenset[int]
    bottom_most_runtime: frozenset[int]
    # Add-/only-list functions: their indirect calls are instrumented even
    # with ignore_indirect (Binaryen's addedFromList).
    added_from_list: frozenset[int]
    warnings: list[str]  # Binaryen's warnings (without its "warning: " prefix)
    log: list[str]  # Binaryen's verbose lines ("[asyncify] ..."), with options.verbose
    memory: int | None  # memory for the data; None: the transform adds one
    precise: bool = False  # whether precise indirect calls were in effect
    # Precise mode: whether each indirect call kind (IndirectKey) can change the
    # state; kinds not listed (imported/exported tables) are assumed to.
    indirect_sites: dict[IndirectKey, bool] = field(default_factory=dict)
    # Precise mode: the possible targets of each kind (for reports).
    indirect_targets: dict[IndirectKey, frozenset[int]] = field(default_factory=dict)

    def name(self, func_index: int) -> str:
        return self.names[func_index]

    def indirect_call_changes_state(
        self, caller: int, type_index: int, table: int | None = None
    ) -> bool:
        """Whether an indirect call in `caller` is a call site to instrument:
        a ``call_indirect`` of `type_index` through `table`, or (`table`
        None) a ``call_ref`` of `type_index`."""
        if self.options.ignore_indirect:
            return caller in self.added_from_list
        if caller in self.added_from_list or not self.precise:
            return True
        key: IndirectKey = ("ref", type_index) if table is None else ("table", table, type_index)
        return self.indirect_sites.get(key, True)

    def changes_state_at(self, caller: int, instr: Instr) -> bool:
        """Whether `instr`, in the body of `caller`, is a call that can change
        the state (Binaryen's ``canChangeState`` for a call expression): a
        direct call to a function that can, or an indirect call that can
        (:meth:`indirect_call_changes_state`). Calls to the bottom-most runtime
        imports (``asyncify.stop_unwind``/``start_rewind``) never are."""
        op_id = instr.op.id
        if op_id in _DIRECT:
            target = int(instr.imm)
            base = self.runtime_imports.get(target)
            if base is not None:
                return base in _TOP_MOST_CALLS
            return target in self.can_change_state
        if op_id in _TABLE_CALL:
            type_index, table = instr.imm
            return self.indirect_call_changes_state(caller, type_index, table)
        if op_id in _REF_CALL:
            return self.indirect_call_changes_state(caller, int(instr.imm))
        return False


def _ignore(_: str) -> None:
    pass


# -- memory -------------------------------------------------------------------


def resolve_memory(module: BinaryModule, options: AsyncifyOptions) -> int | None:
    """The memory that holds the Asyncify data, as Binaryen picks it: None when
    the transform must add one (``in_secondary_memory``, or the module has no
    memory: Binaryen then adds one); the only memory; else the memory exported
    as `options.memory` (default ``"memory"``), or (wasync) the memory with
    that index."""
    if options.in_secondary_memory:
        return None
    count = sum(1 for i in module.imports if i.kind is ExternKind.MEMORY) + len(module.memories)
    if count == 0:
        return None
    if count == 1:
        return 0
    wanted = options.memory if options.memory is not None else "memory"
    for e in module.exports:
        if e.kind is ExternKind.MEMORY and e.name == wanted:
            return e.index
    if wanted.isdecimal() and int(wanted) < count:
        return int(wanted)
    raise AsyncifyError(
        "Please specify which of the multiple memories to use, with "
        "--pass-arg=asyncify-memory@memory (no memory is exported as "
        f"{wanted!r})"
    )


# -- the analysis -------------------------------------------------------------


class _Scan:
    """What the bodies contain, gathered in one pass over every instruction."""

    def __init__(self, nfuncs: int) -> None:
        self.callees: list[set[int]] = [set() for _ in range(nfuncs)]
        self.runtime_calls: list[set[str]] = [set() for _ in range(nfuncs)]
        self.table_calls: list[set[tuple[int, int]]] = [set() for _ in range(nfuncs)]
        self.ref_calls: list[set[int]] = [set() for _ in range(nfuncs)]
        self.ref_funcs: set[int] = set()
        self.table_reads: set[int] = set()  # tables read by table.get / table.copy
        self.converts_extern = False


def _scan_bodies(
    module: BinaryModule,
    bodies: Sequence[Body] | None,
    runtime_by_index: dict[int, str],
    precise: bool,
) -> _Scan:
    nimp = module.num_imported_funcs
    nfuncs = nimp + len(module.functions)
    scan = _Scan(nfuncs)
    if bodies is not None and len(bodies) != len(module.codes):
        raise ValueError(f"bodies: {len(bodies)} given, the module has {len(module.codes)}")
    wanted = _SCAN_PRECISE if precise else _SCAN
    # any.convert_extern has no immediate: only look for it where its encoding
    # (0xFB 0x1A) occurs in the raw body at all.
    maybe_convert = precise and any(b"\xfb\x1a" in c.raw for c in module.codes)
    for k in range(len(module.codes)):
        f = nimp + k
        instrs = bodies[k].instrs if bodies is not None else module.body(f).instrs
        if maybe_convert:
            hits = [i for i in instrs if i.op.id in wanted]
        else:
            hits = [i for i in instrs if i.imm is not None and i.op.id in wanted]
        if not hits:
            continue
        callees = scan.callees[f]
        for ins in hits:
            op_id = ins.op.id
            if op_id in _DIRECT:
                target = int(ins.imm)
                base = runtime_by_index.get(target)
                if base is None:
                    callees.add(target)
                else:
                    scan.runtime_calls[f].add(base)
            elif op_id in _TABLE_CALL:
                type_index, table = ins.imm
                scan.table_calls[f].add((table, type_index))
            elif op_id in _REF_CALL:
                scan.ref_calls[f].add(int(ins.imm))
            elif op_id in _REF_FUNC:
                scan.ref_funcs.add(int(ins.imm))
            elif op_id in _TABLE_GET:
                scan.table_reads.add(int(ins.imm))
            elif op_id in _TABLE_COPY:
                scan.table_reads.add(int(ins.imm[1]))
            elif op_id in _CONVERT_EXTERN:
                scan.converts_extern = True
    return scan


class _Precise:
    """Targets of indirect calls by type, for ``precise_indirect``."""

    def __init__(self, module: BinaryModule, scan: _Scan) -> None:
        self.types: list[SubType] = module.type_list()
        self.func_types = module.func_type_indices()
        nimp_tables = 0
        self.open_tables: set[int] = set()
        for imp in module.imports:
            if imp.kind is ExternKind.TABLE:
                self.open_tables.add(nimp_tables)
                nimp_tables += 1
        for e in module.exports:
            if e.kind is ExternKind.TABLE:
                self.open_tables.add(e.index)
        referenced = set(scan.ref_funcs)
        for seg in module.elements:
            for item in seg.items:
                if isinstance(item, ConstExpr):
                    referenced.update(_const_ref_funcs(item))
                else:
                    referenced.add(item)
        for g in module.globals:
            referenced.update(_const_ref_funcs(g.init))
        for t in module.tables:
            if t.init is not None:
                referenced.update(_const_ref_funcs(t.init))
        self.referenced = sorted(referenced)
        self.foreign = self._foreign_source(module, scan)
        self._by_key: dict[int, frozenset[int]] = {}

    def _func_type(self, type_index: int) -> FuncType | None:
        if not 0 <= type_index < len(self.types):
            return None
        comp = self.types[type_index].comp
        return comp if isinstance(comp, FuncType) else None

    def _foreign_source(self, module: BinaryModule, scan: _Scan) -> str | None:
        """Why function references may enter the module from outside, or None."""
        for imp in module.imports:
            what = f"import {imp.module}.{imp.name}"
            desc = imp.desc
            if imp.kind is ExternKind.FUNC and isinstance(desc, int):
                ft = self._func_type(desc)
                if ft is None or any(map(_carries_funcs, ft.results)):
                    return f"{what} returns a reference"
            elif isinstance(desc, GlobalType) and _carries_funcs(desc.type):
                return f"{what} is a reference-typed global"
            elif isinstance(desc, TagType):
                ft = self._func_type(desc.type_index)
                if ft is None or any(map(_carries_funcs, ft.params)):
                    return f"{what} is a tag carrying references"
        globals_types = [i.desc for i in module.imports if isinstance(i.desc, GlobalType)]
        globals_types += [g.type for g in module.globals]
        tags = [i.desc for i in module.imports if isinstance(i.desc, TagType)] + list(module.tags)
        for e in module.exports:
            what = f"export {e.name!r}"
            if e.kind is ExternKind.FUNC and e.index < len(self.func_types):
                ft = self._func_type(self.func_types[e.index])
                if ft is None or any(map(_carries_funcs, ft.params)):
                    return f"{what} takes a reference parameter"
            elif e.kind is ExternKind.GLOBAL and e.index < len(globals_types):
                gt = globals_types[e.index]
                if gt.mutable and _carries_funcs(gt.type):
                    return f"{what} is a mutable reference-typed global"
            elif e.kind is ExternKind.TAG and e.index < len(tags):
                ft = self._func_type(tags[e.index].type_index)
                if ft is None or any(map(_carries_funcs, ft.params)):
                    return f"{what} is a tag carrying references"
        tables: list[TableType] = [i.desc for i in module.imports if isinstance(i.desc, TableType)]
        tables += [t.type for t in module.tables]
        for t in sorted(scan.table_reads & self.open_tables):
            if t < len(tables) and _carries_funcs(tables[t].elem):
                return f"table {t} is imported or exported and read by table.get/table.copy"
        if scan.converts_extern:
            return "any.convert_extern can turn host references into module references"
        return None

    def targets(self, type_index: int) -> frozenset[int]:
        cached = self._by_key.get(type_index)
        if cached is not None:
            return cached
        ft = self._func_type(type_index)
        if ft is None:
            out = frozenset(self.referenced)
        else:
            key = _func_key(ft)
            final = self.types[type_index].final
            found: list[int] = []
            for f in self.referenced:
                tf = self.func_types[f] if f < len(self.func_types) else -1
                if self._matches(tf, key, final):
                    found.append(f)
            out = frozenset(found)
        self._by_key[type_index] = out
        return out

    def _matches(self, type_index: int, key: object, final: bool) -> bool:
        seen: set[int] = set()
        t = type_index
        while 0 <= t < len(self.types) and t not in seen:
            seen.add(t)
            ft = self._func_type(t)
            if ft is not None and _func_key(ft) == key:
                return True
            if final:
                return False
            supers = self.types[t].supertypes
            if not supers:
                return False
            t = supers[0]
        return t >= len(self.types) or t < 0  # unknown type: assume it matches


def analyze(
    module: BinaryModule,
    options: AsyncifyOptions | None = None,
    *,
    bodies: Sequence[Body] | None = None,
) -> AsyncifyAnalysis:
    """Decide which functions of `module` Asyncify instruments.

    `bodies`, if given, are the decoded bodies of the defined functions in
    order (as ``module.body(i)`` returns them), so that a caller who decodes
    them anyway does not pay twice. Raises :class:`AsyncifyError` where
    Binaryen stops with a fatal error (an imported function named in a
    function list, a function in both the add- and remove-list, an unknown
    ``asyncify.*`` import, no memory selected among several).
    """
    opts = options if options is not None else AsyncifyOptions()
    nimp = module.num_imported_funcs
    names = binaryen_function_names(module)
    nfuncs = len(names)
    by_name = {n: i for i, n in enumerate(names)}
    warnings: list[str] = []
    verbose = opts.verbose
    log: list[str] = []
    note = log.append if verbose else _ignore
    memory = resolve_memory(module, opts)

    # The lists are checked first, in Binaryen's order.
    remove = _Matcher("remove", opts.removelist, by_name, nimp, warnings)
    add = _Matcher("add", opts.addlist, by_name, nimp, warnings)
    only = _Matcher("only", opts.onlylist, by_name, nimp, warnings)

    # Imports: the runtime ones, then which may unwind.
    func_imports = [i for i in module.imports if i.kind is ExternKind.FUNC]
    runtime_by_index: dict[int, str] = {}
    match_names = list(names)  # names as the lists see them after the renaming
    for k, imp in enumerate(func_imports):
        if imp.module == RUNTIME_IMPORT_MODULE:
            if imp.name not in _RUNTIME_RENAMED:
                raise AsyncifyError(
                    f"call to unidentified asyncify import: {imp.name} (the in-wasm runtime "
                    "imports are asyncify.start_unwind, stop_unwind, start_rewind, "
                    "stop_rewind)"
                )
            runtime_by_index[k] = imp.name
            match_names[k] = _RUNTIME_RENAMED[imp.name]

    all_imports = opts.imports is None and not opts.ignore_imports
    listed = opts.imports or ()
    can = [False] * nfuncs
    import_reason: dict[int, str] = {}
    for k, imp in enumerate(func_imports):
        if k in runtime_by_index:
            can[k] = runtime_by_index[k] in _TOP_MOST_CALLS
            continue
        full = f"{imp.module}.{imp.name}"
        if all_imports:
            can[k] = True
            import_reason[k] = "every import may unwind"
        else:
            hit = next((p for p in listed if wildcard_match(p, full)), None)
            can[k] = hit is not None
            if hit is not None:
                import_reason[k] = (
                    "in the imports list" if hit == full else f"matches {hit!r} in the imports list"
                )
            else:
                import_reason[k] = (
                    "ignore-imports" if opts.imports is None else "not in the imports list"
                )
        if can[k]:
            note(f"[asyncify] {names[k]} is an import that can change the state")

    # Scan the bodies.
    precise_on = opts.precise_indirect and not opts.ignore_indirect
    scan = _scan_bodies(module, bodies, runtime_by_index, precise_on)
    precise: _Precise | None = None
    if precise_on:
        precise = _Precise(module, scan)
        if precise.foreign is not None:
            warnings.append(
                "precise_indirect: every indirect call is treated as able to unwind, because "
                f"function references may come from outside the module ({precise.foreign})"
            )
            precise = None

    top = [False] * nfuncs
    bottom = [False] * nfuncs
    scan_reason: dict[int, str] = {}
    # Virtual nodes for the precise indirect call kinds, after the functions.
    node_keys: list[IndirectKey] = []
    node_of: dict[IndirectKey, int] = {}
    callers: list[list[int]] = [[] for _ in range(nfuncs)]

    def node(key: IndirectKey, type_index: int) -> int:
        n = node_of.get(key)
        if n is None:
            assert precise is not None
            n = nfuncs + len(node_keys)
            node_of[key] = n
            node_keys.append(key)
            callers.append([])
            for t in precise.targets(type_index):
                callers[t].append(n)
        return n

    for f in range(nimp, nfuncs):
        for target in scan.callees[f]:
            callers[target].append(f)
        rt = scan.runtime_calls[f]
        if rt & _TOP_MOST_CALLS:
            can[f] = True
            top[f] = True
            scan_reason[f] = (
                "top-most runtime: calls "
                + " and ".join(f"asyncify.{b}" for b in sorted(rt & _TOP_MOST_CALLS))
                + " (not instrumented; its callers are)"
            )
        if not opts.ignore_indirect:
            kinds: list[str] = []
            for table, type_index in sorted(scan.table_calls[f]):
                if precise is not None and table not in precise.open_tables:
                    callers[node(("table", table, type_index), type_index)].append(f)
                else:
                    can[f] = True
                    if precise is not None:
                        kinds.append(f"call_indirect through imported/exported table {table}")
                    elif "call_indirect" not in kinds:
                        kinds.append("call_indirect")
            for type_index in sorted(scan.ref_calls[f]):
                if precise is not None:
                    callers[node(("ref", type_index), type_index)].append(f)
                else:
                    can[f] = True
                    if "call_ref" not in kinds:
                        kinds.append("call_ref")
            if kinds and f not in scan_reason:
                scan_reason[f] = "calls indirectly (" + ", ".join(kinds) + ")"
        if rt - _TOP_MOST_CALLS:
            bottom[f] = True
            can[f] = False
            scan_reason[f] = (
                "bottom-most runtime: calls "
                + " and ".join(f"asyncify.{b}" for b in sorted(rt - _TOP_MOST_CALLS))
                + " (never instrumented)"
            )
        if can[f]:
            note(f"[asyncify] {names[f]} can change the state due to initial scan")

    # The remove-list (imports included, runtime imports under their new names).
    in_remove = [False] * nfuncs
    list_reason: dict[int, str] = {}
    if remove:
        for f in range(nfuncs):
            hit = remove.match(match_names[f])
            if hit is not None:
                in_remove[f] = True
                if can[f]:
                    note(f"[asyncify] {names[f]} is in the remove-list, ignore")
                can[f] = False
                list_reason[f] = "in the removelist" + ("" if hit == names[f] else f" ({hit!r})")

    added = [False] * nfuncs

    def handle_addlist() -> None:
        for f in range(nfuncs):
            if f in runtime_by_index:
                continue  # Binaryen has removed these imports by now
            hit = add.match(names[f])
            if hit is None:
                continue
            if remove.match(names[f]) is not None:
                raise AsyncifyError(f"{names[f]} is found in the add-list and in the remove-list")
            if f < nimp:
                continue
            if not can[f]:
                note(f"[asyncify] {names[f]} is in the add-list, add")
                list_reason[f] = "in the addlist" + ("" if hit == names[f] else f" ({hit!r})")
            can[f] = True
            added[f] = True

    if add and opts.propagate_addlist:
        handle_addlist()

    # Propagate backwards over calls (and precise indirect call kinds).
    nnodes = len(callers)
    can.extend([False] * (nnodes - nfuncs))
    allowed = [not (bottom[f] or in_remove[f]) for f in range(nfuncs)]
    allowed.extend([True] * (nnodes - nfuncs))
    via: dict[int, int] = {}  # what a node got the property from
    prop_log: list[str] = []
    queue: deque[int] = deque(f for f in range(nfuncs) if can[f])
    while queue:
        f = queue.popleft()
        for c in callers[f]:
            if not allowed[c]:
                continue
            if verbose and c < nfuncs:
                if f < nfuncs:
                    prop_log.append(f"[asyncify] {names[c]} can change the state due to {names[f]}")
                else:
                    prop_log.append(
                        f"[asyncify] {names[c]} can change the state due to an indirect call "
                        f"that can reach {names[via[f]]}"
                    )
            if not can[c]:
                can[c] = True
                via[c] = f
                queue.append(c)
    log.extend(sorted(set(prop_log)))

    if only:
        for f in range(nimp, nfuncs):
            hit = only.match(names[f])
            can[f] = hit is not None
            added[f] = hit is not None
            list_reason[f] = (
                "not in the onlylist"
                if hit is None
                else "in the onlylist" + ("" if hit == names[f] else f" ({hit!r})")
            )
            note(f"[asyncify] {names[f]}'s state is set based on the only-list to {int(can[f])}")

    if add and not opts.propagate_addlist:
        handle_addlist()

    remove.check(warnings)
    add.check(warnings)
    only.check(warnings)

    # Results.
    instrumented = frozenset(f for f in range(nimp, nfuncs) if can[f] and not top[f])
    reasons: dict[int, str] = {}
    for f in range(nfuncs):
        reasons[f] = _reason(
            f,
            nimp=nimp,
            names=names,
            func_imports=func_imports,
            runtime_by_index=runtime_by_index,
            import_reason=import_reason,
            scan_reason=scan_reason,
            list_reason=list_reason,
            via=via,
            node_keys=node_keys,
            can=can,
            top=top,
            has_indirect=bool(scan.table_calls[f] or scan.ref_calls[f]),
            ignore_indirect=opts.ignore_indirect,
        )
    indirect_sites = {key: can[nfuncs + i] for i, key in enumerate(node_keys)}
    indirect_targets: dict[IndirectKey, frozenset[int]] = {}
    if precise is not None:
        for key in node_keys:
            indirect_targets[key] = precise.targets(key[-1])
    return AsyncifyAnalysis(
        options=opts,
        names=tuple(names),
        num_imported_funcs=nimp,
        instrumented=instrumented,
        can_change_state=frozenset(f for f in range(nfuncs) if can[f]),
        reasons=reasons,
        unwinding_imports=frozenset(k for k in range(nimp) if can[k] and k not in runtime_by_index),
        runtime_imports=dict(runtime_by_index),
        top_most_runtime=frozenset(f for f in range(nfuncs) if top[f]),
        bottom_most_runtime=frozenset(f for f in range(nfuncs) if bottom[f]),
        added_from_list=frozenset(f for f in range(nfuncs) if added[f]),
        warnings=warnings,
        log=log,
        memory=memory,
        precise=precise is not None,
        indirect_sites=dict(indirect_sites),
        indirect_targets=indirect_targets,
    )


def _reason(
    f: int,
    *,
    nimp: int,
    names: list[str],
    func_imports: list[Import],
    runtime_by_index: dict[int, str],
    import_reason: dict[int, str],
    scan_reason: dict[int, str],
    list_reason: dict[int, str],
    via: dict[int, int],
    node_keys: list[IndirectKey],
    can: list[bool],
    top: list[bool],
    has_indirect: bool,
    ignore_indirect: bool,
) -> str:
    nfuncs = len(names)

    def describe(g: int) -> str:
        if g < nimp:
            return f"import {func_imports[g].module}.{func_imports[g].name}"
        return names[g]

    if f < nimp:
        full = f"{func_imports[f].module}.{func_imports[f].name}"
        if f in runtime_by_index:
            return f"in-wasm runtime import {full} (replaced by asyncify_{runtime_by_index[f]})"
        if f in list_reason:
            return f"import {full} cannot unwind: {list_reason[f]}"
        verdict = "may unwind" if can[f] else "cannot unwind"
        return f"import {full} {verdict} ({import_reason[f]})"
    if top[f]:
        return scan_reason[f]
    if f in list_reason:
        return list_reason[f]
    if f in via:
        src = via[f]
        if src < nfuncs:
            return (
                f"calls {describe(src)}"
                if src < nimp
                else f"calls {names[src]} which can change state"
            )
        key = node_keys[src - nfuncs]
        kind = "call_ref" if key[0] == "ref" else "call_indirect"
        return (
            f"calls indirectly ({kind} of type {key[-1]}), which can reach "
            f"{describe(via[src])}, which can change state"
        )
    if f in scan_reason:
        return scan_reason[f]  # indirect calls, or bottom-most runtime
    if has_indirect and ignore_indirect:
        return "cannot change state (its indirect calls are ignored)"
    return "cannot change state (calls nothing that can)"
