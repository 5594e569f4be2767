"""The module-level Asyncify transform: globals, ABI functions, instrumented bodies.

ABI (Binaryen's, kept exactly): exports ``asyncify_start_unwind(ptr)``,
``asyncify_stop_unwind()``, ``asyncify_start_rewind(ptr)``,
``asyncify_stop_rewind()``, ``asyncify_get_state() -> i32``; globals
``__asyncify_state`` (0 normal, 1 unwinding, 2 rewinding) and
``__asyncify_data`` (the header address: +0 position, +4 end). The start/stop
functions trap when the position is past the end.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from wasync._asyncify.instrument import (
    STATE_NORMAL,
    STATE_REWINDING,
    STATE_UNWINDING,
    FrameHelpers,
    FunctionPlan,
    _dummy,
    _i,
    instrument_function,
)
from wasync._binary.module import (
    BinaryModule,
    ConstExpr,
    Element,
    Export,
    FuncBody,
    Global,
    Import,
    SegmentMode,
    Table,
)
from wasync._binary.reindex import reindex
from wasync._binary.types import (
    FUNCREF,
    AbsHeap,
    ArrayType,
    ExternKind,
    FuncType,
    GlobalType,
    HeapType,
    Limits,
    NumType,
    RecGroup,
    RefType,
    StructType,
    SubType,
    TableType,
    ValType,
)
from wasync._errors import AsyncifyError, DecodeError, ValidationError
from wasync._ir.instr import Body, Instr, MemArg, encode_instrs
from wasync._ir.stack import ModuleTypes, type_function

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Mapping

__all__ = ["ABI_EXPORTS", "data_memory", "transform_module"]

ABI_EXPORTS = (
    "asyncify_start_unwind",
    "asyncify_stop_unwind",
    "asyncify_start_rewind",
    "asyncify_stop_rewind",
    "asyncify_get_state",
)


def _data_memory(
    m: BinaryModule, memory: int | None, secondary_pages: int | None
) -> tuple[int, Limits]:
    """The memory that holds the Asyncify data (index and limits).

    * `secondary_pages`: a new memory of that many pages (minimum and maximum),
      appended to the memory index space and exported as ``asyncify_memory``
      (Binaryen's name for it; Binaryen does not export it, which leaves a host
      no way to place the data there);
    * else memory `memory`; a module without memory gets one (one page,
      exported as "memory" when that name is free), as Binaryen does, so that
      a runtime can place the data buffer."""
    mems = [i.desc for i in m.imports if isinstance(i.desc, Limits)] + list(m.memories)
    if secondary_pages is not None:
        added = Limits(secondary_pages, secondary_pages)
        m.memories.append(added)
        taken = {e.name for e in m.exports}
        name, n = "asyncify_memory", 0
        while name in taken:
            n += 1
            name = f"asyncify_memory_{n}"
        m.exports.append(Export(name, ExternKind.MEMORY, len(mems)))
        return len(mems), added
    if not mems:
        added = Limits(1)
        m.memories.append(added)
        if not any(e.name == "memory" for e in m.exports):
            m.exports.append(Export("memory", ExternKind.MEMORY, 0))
        return 0, added
    index = memory or 0
    if not 0 <= index < len(mems):
        raise AsyncifyError(f"memory {index} does not exist (the module has {len(mems)})")
    return index, mems[index]


def _type_index(m: BinaryModule, ft: FuncType) -> int:
    """A type index for `ft`: an existing plain one, or a new one appended."""
    index = 0
    for group in m.types:
        for st in group.types:
            if len(group.types) == 1 and st.comp == ft and st.final and not st.supertypes:
                return index
            index += 1
    m.types.append(RecGroup((SubType(ft),)))
    return index


def _const(value: int, wide: bool = False) -> ConstExpr:
    const = _i("i64.const" if wide else "i32.const", value)
    return ConstExpr(bytes(encode_instrs([const, _i("end")])))


def _check_bounds(data: int, ptr64: bool, memory: int) -> list[Instr]:
    """``if (position > end) unreachable`` (Binaryen's check in start/stop)."""
    pre, word = ("i64", 8) if ptr64 else ("i32", 4)
    align = 3 if ptr64 else 2
    return [
        _i("global.get", data),
        _i(f"{pre}.load", MemArg(align, 0, memory)),
        _i("global.get", data),
        _i(f"{pre}.load", MemArg(align, word, memory)),
        _i(f"{pre}.gt_u"),
        _i("if", None),
        _i("unreachable"),
        _i("end"),
    ]


def _abi_bodies(
    state: int, data: int, ptr64: bool, memory: int
) -> dict[str, tuple[bool, bool, list[Instr]]]:
    """name -> (takes the pointer, returns the state, body instructions)."""
    check = _check_bounds(data, ptr64, memory)

    def set_state(value: int) -> list[Instr]:
        return [_i("i32.const", value), _i("global.set", state)]

    set_data = [_i("local.get", 0), _i("global.set", data)]
    return {
        "asyncify_start_unwind": (
            True,
            False,
            set_state(STATE_UNWINDING) + set_data + check,
        ),
        "asyncify_stop_unwind": (
            False,
            False,
            set_state(STATE_NORMAL) + check,
        ),
        "asyncify_start_rewind": (
            True,
            False,
            set_state(STATE_REWINDING) + set_data + check,
        ),
        "asyncify_stop_rewind": (
            False,
            False,
            set_state(STATE_NORMAL) + check,
        ),
        "asyncify_get_state": (False, True, [_i("global.get", state)]),
    }


def transform_module(
    m: BinaryModule,
    *,
    instrumented: Collection[int],
    unwinding_imports: Collection[int] = (),
    indirect_may_unwind: bool = True,
    is_call_site: Callable[[int, Instr], bool] | None = None,
    memory: int | None = 0,
    secondary_memory_pages: int | None = None,
    export_globals: bool = False,
    import_globals: bool = False,
    runtime_imports: Mapping[int, str] | None = None,
    asserts_in: Collection[int] = (),
    changes_state: Collection[int] | None = None,
) -> BinaryModule:
    """Instrument `instrumented` functions of `m` in place and add the ABI.

    A call is a site when `is_call_site(caller, instr)` says so (the analysis'
    answer); without it, calls to `instrumented` functions or
    `unwinding_imports`, and indirect calls when `indirect_may_unwind`.

    The data lives in memory `memory` (None: the module has none, add one), or
    in a new memory of `secondary_memory_pages` pages. `runtime_imports` maps
    the imports of an in-wasm runtime (``asyncify.start_unwind`` ...) to what
    they stand for (``"start_unwind"`` ...): they are removed, and calls to them
    call the generated functions. With `import_globals` the two globals are
    imported from ``env`` instead of defined. Functions in `asserts_in` (not
    instrumented) get Binaryen's asserts: a trap when a call changes the state.
    `changes_state` (default: the instrumented functions and unwinding imports)
    are the functions that can change the state, imports and top-most runtime
    functions included: what an indirect tail call may reach."""
    mem_index, mem_limits = _data_memory(m, memory, secondary_memory_pages)
    ptr64 = mem_limits.is64
    ptr_t = NumType.I64 if ptr64 else NumType.I32
    names = m.function_names()
    clash = {e.name for e in m.exports} & set(ABI_EXPORTS)
    if clash:
        raise AsyncifyError(f"the module already exports {', '.join(sorted(clash))}")
    runtime = dict(runtime_imports or {})
    _check_runtime_imports(m, runtime, ptr_t)
    n_imported_globals = sum(1 for i in m.imports if i.kind is ExternKind.GLOBAL)
    n_globals = n_imported_globals + len(m.globals)
    state, data = n_globals, n_globals + 1
    m.globals.append(Global(GlobalType(NumType.I32, True), _const(0)))
    m.globals.append(Global(GlobalType(ptr_t, True), _const(0, ptr64)))
    mt = ModuleTypes.from_module(m)
    nimp = m.num_imported_funcs
    may_unwind = set(instrumented) | set(unwinding_imports)
    types = mt.types

    def func_type(index: int) -> FuncType:
        comp = types[index].comp
        if not isinstance(comp, FuncType):
            raise ValidationError(f"type {index} is not a function type")
        return comp

    def default_site(caller: int, ins: Instr) -> bool:
        name = ins.op.name
        if name in ("call", "return_call"):
            return int(ins.imm) in may_unwind
        if name in ("call_indirect", "return_call_indirect", "call_ref", "return_call_ref"):
            return indirect_may_unwind
        return False

    def label_types(ins: Instr) -> tuple[tuple[ValType, ...], tuple[ValType, ...]]:
        name = ins.op.name
        if name in ("call", "return_call"):
            ft = func_type(mt.func_type_indices[int(ins.imm)])
            return ft.params, ft.results
        if name in ("call_indirect", "return_call_indirect"):
            tidx, table = ins.imm
            ft = func_type(tidx)
            addr: ValType = _table_address(mt.tables[table])
            return (*ft.params, addr), ft.results
        if name in ("call_ref", "return_call_ref"):
            ft = func_type(int(ins.imm))
            return (*ft.params, RefType(True, int(ins.imm))), ft.results
        bt = ins.imm[0] if isinstance(ins.imm, tuple) else ins.imm
        if bt is None:
            return (), ()
        if isinstance(bt, int):
            ft = func_type(bt)
            return ft.params, ft.results
        return (), (bt,)

    refs = _RefSupport(m, types)

    def is_func_type(index: int) -> bool:
        return 0 <= index < len(types) and isinstance(types[index].comp, FuncType)

    def block_type(
        params: tuple[ValType, ...], results: tuple[ValType, ...]
    ) -> ValType | int | None:
        if not params and len(results) <= 1:
            return results[0] if results else None
        return _type_index(m, FuncType(params, results))

    def tag_params(tag: int) -> tuple[ValType, ...]:
        return func_type(mt.tags[tag]).params

    site_test = is_call_site or default_site

    def add_function(params: tuple[ValType, ...], results: tuple[ValType, ...], body: Body) -> int:
        index = m.num_imported_funcs + len(m.functions)
        m.functions.append(_type_index(m, FuncType(params, results)))
        m.codes.append(FuncBody(body.encode()))
        return index

    helpers = FrameHelpers(add_function, data, ptr64, mem_index)
    multivalue = any(isinstance(st.comp, FuncType) and len(st.comp.results) > 1 for st in mt.types)
    bodies = {f: m.body(f) for f in sorted(instrumented) if f >= nimp}
    changing = set(may_unwind) if changes_state is None else set(changes_state)
    owners = _tail_owners(
        bodies, site_test, changing, [func_type(t) for t in mt.func_type_indices], func_type
    )
    for f, body in bodies.items():
        typing = type_function(m, f, body=body, module_types=mt)
        ft = func_type(mt.func_type_indices[f])
        plan = FunctionPlan(
            func_index=f,
            name=names.get(f),
            params=ft.params,
            results=ft.results,
            state_global=state,
            data_global=data,
            is_site=functools.partial(site_test, f),
            label_types=label_types,
            ptr64=ptr64,
            memory=mem_index,
            ref_table=refs.table,
            dummy=refs.dummy,
            is_func_type=is_func_type,
            block_type=block_type,
            tag_params=tag_params,
            frame_helper=helpers.get,
            multivalue=multivalue,
            owner_tags=owners is not None,
            tail_owners=tuple(
                (g, func_type(mt.func_type_indices[g]).params)
                for g in sorted((owners or {}).get(f, ()))
            ),
        )
        try:
            new_body: Body = instrument_function(plan, body, typing)
        except AsyncifyError as e:
            where = f"function {f}" + (f" {names[f]!r}" if f in names else "")
            if str(e).startswith(where):
                raise
            raise AsyncifyError(f"{where}: {e}") from None
        m.codes[f - nimp] = FuncBody(new_body.encode())

    for f in sorted(asserts_in):
        if f >= nimp and f not in bodies:
            m.codes[f - nimp] = FuncBody(
                _with_asserts(m.body(f), len(func_type(mt.func_type_indices[f]).params), state)
            )

    refs.finish()
    # The ABI functions, appended at the end of the function index space.
    ptr_type = _type_index(m, FuncType((ptr_t,), ()))
    void_type = _type_index(m, FuncType((), ()))
    state_type = _type_index(m, FuncType((), (NumType.I32,)))
    next_index = nimp + len(m.functions)
    abi_index: dict[str, int] = {}
    for name, (takes_ptr, returns, instrs) in _abi_bodies(state, data, ptr64, mem_index).items():
        tidx = ptr_type if takes_ptr else state_type if returns else void_type
        m.functions.append(tidx)
        m.codes.append(FuncBody(Body([], [*instrs, _i("end")]).encode()))
        m.exports.append(Export(name, ExternKind.FUNC, next_index))
        abi_index[name] = next_index
        next_index += 1
    if export_globals:
        m.exports.append(Export("__asyncify_state", ExternKind.GLOBAL, state))
        m.exports.append(Export("__asyncify_data", ExternKind.GLOBAL, data))
    if runtime or import_globals:
        _renumber(m, runtime, abi_index, (state, data) if import_globals else None)
    return m


def _check_runtime_imports(m: BinaryModule, runtime: Mapping[int, str], ptr_t: NumType) -> None:
    """The in-wasm runtime's imports must have the types of the functions that
    replace them."""
    if not runtime:
        return
    funcs = [i for i in m.imports if i.kind is ExternKind.FUNC]
    for index, base in sorted(runtime.items()):
        imp = funcs[index]
        want = FuncType((ptr_t,), ()) if base.startswith("start_") else FuncType((), ())
        got = m.func_type(index)
        if got != want:
            raise AsyncifyError(
                f"import {imp.module}.{imp.name} (function {index}) has type {_sig(got)}, but "
                f"asyncify_{base}, which replaces it, has type {_sig(want)}"
            )


def _sig(ft: FuncType) -> str:
    return f"({', '.join(map(str, ft.params))}) -> ({', '.join(map(str, ft.results))})"


def _with_asserts(body: Body, nparams: int, state: int) -> bytes:
    """Binaryen's asserts in a function that is not instrumented: remember the
    state on entry, and trap when a call returns with another state (the
    function would otherwise carry on as if nothing was unwinding). A tail call
    leaves no point after it to check."""
    old = nparams + sum(n for n, _ in body.locals)
    check = [
        _i("global.get", state),
        _i("local.get", old),
        _i("i32.ne"),
        _i("if", None),
        _i("unreachable"),
        _i("end"),
    ]
    instrs: list[Instr] = [_i("global.get", state), _i("local.set", old)]
    for ins in body.instrs:
        instrs.append(ins)
        if ins.op.name in ("call", "call_indirect", "call_ref"):
            instrs.extend(check)
    locals_ = [*body.locals, (1, NumType.I32)]
    return Body(locals_, instrs).encode()


def _renumber(
    m: BinaryModule,
    runtime: Mapping[int, str],
    abi_index: Mapping[str, int],
    imported: tuple[int, int] | None,
) -> None:
    """Remove the in-wasm runtime's imports (their callers now call the ABI
    functions) and, with `imported`, turn the state and data globals into
    imports from ``env``: both shift index spaces, which :func:`reindex`
    rewrites everywhere."""
    nfuncs = m.num_imported_funcs + len(m.functions)
    fmap: list[int] | None = None
    kept: dict[int, int] | None = None
    if runtime:
        removed = 0
        shifted = []
        for f in range(nfuncs):
            shifted.append(f - removed)
            if f in runtime:
                removed += 1
        fmap = [
            shifted[abi_index[f"asyncify_{runtime[f]}"]] if f in runtime else shifted[f]
            for f in range(nfuncs)
        ]
        kept = {f: shifted[f] for f in range(nfuncs) if f not in runtime}
        func_imports = [i for i in m.imports if i.kind is ExternKind.FUNC]
        drop = {id(func_imports[f]) for f in runtime}
        m.imports = [i for i in m.imports if id(i) not in drop]
    gmap: list[int] | None = None
    if imported is not None:
        state, data = imported
        n_imported = sum(1 for i in m.imports if i.kind is ExternKind.GLOBAL)
        defined = m.globals
        data_type = defined[data - n_imported].type
        state_type = defined[state - n_imported].type
        n_globals = n_imported + len(defined)
        gmap = []
        for g in range(n_globals):
            if g < n_imported:
                gmap.append(g)
            elif g == state:
                gmap.append(n_imported)
            elif g == data:
                gmap.append(n_imported + 1)
            else:
                # Defined globals after the two moved ones (reference-saving
                # stack pointers) shift down past them; all shift up by two.
                gmap.append(g + 2 - sum(1 for moved in (state, data) if moved < g))
        m.globals = [gl for k, gl in enumerate(defined) if n_imported + k not in (state, data)]
        m.imports.append(Import("env", "__asyncify_state", ExternKind.GLOBAL, state_type))
        m.imports.append(Import("env", "__asyncify_data", ExternKind.GLOBAL, data_type))
    reindex(m, funcs=fmap, globals_=gmap, kept_funcs=kept)


def _tail_owners(
    bodies: dict[int, Body],
    site_test: Callable[[int, Instr], bool],
    changing: set[int],
    signatures: list[FuncType],
    func_type: Callable[[int], FuncType],
) -> dict[int, set[int]] | None:
    """Per function, the functions its suspending tail calls reach (through
    chains of such tail calls): their frames may be on top when it is called
    on a rewind. None when the module has no suspending tail call (frames then
    carry no owner tag).

    A direct ``return_call`` reaches its target. An indirect one
    (``return_call_indirect``, ``return_call_ref``) reaches every instrumented
    function of its type. A tail call that may reach code which changes the
    state without a frame of its own (an import, or a top-most runtime function)
    becomes a plain call followed by ``return`` in `bodies`: on a rewind the
    caller's frame must be there to resume. Such a call is one frame deeper
    than the tail call was, once (an import does not tail-call back)."""
    direct: dict[int, set[int]] = {}
    frameless = changing - bodies.keys()
    by_type: dict[FuncType, set[int]] = {}
    for g in bodies:
        by_type.setdefault(signatures[g], set()).add(g)
    frameless_types = {signatures[g] for g in frameless}
    for f, body in bodies.items():
        rewritten: list[Instr] | None = None
        for k, ins in enumerate(body.instrs):
            name = ins.op.name
            if not name.startswith("return_call") or not site_test(f, ins):
                continue
            if name == "return_call":
                target = int(ins.imm)
                if target in bodies:
                    direct.setdefault(f, set()).add(target)
                    continue
                plain = _i("call", target)
            else:
                tidx = ins.imm[0] if name == "return_call_indirect" else int(ins.imm)
                ft = func_type(tidx)
                if ft not in frameless_types:
                    direct.setdefault(f, set()).update(by_type.get(ft, ()))
                    continue
                plain = _i(name.removeprefix("return_"), ins.imm)
            if rewritten is None:
                rewritten = list(body.instrs[:k])
                done = k
            rewritten += body.instrs[done:k]
            rewritten += [plain, _i("return")]
            done = k + 1
        if rewritten is not None:
            body.instrs = rewritten + body.instrs[done:]
    if not direct:
        return None
    closure: dict[int, set[int]] = {}
    for f, targets in direct.items():
        seen: set[int] = set()
        work = list(targets)
        while work:
            g = work.pop()
            if g not in seen:
                seen.add(g)
                work.extend(direct.get(g, ()))
        seen.discard(f)
        closure[f] = seen
    return closure


class _RefSupport:
    """What saving references needs at module level: one table (of the nullable
    type) and one stack-pointer global per heap type saved, and dummy values of
    non-nullable reference types (the results of a function that unwinds)."""

    def __init__(self, m: BinaryModule, types: list[SubType]) -> None:
        self.m = m
        self.types = types
        self.tables: dict[HeapType, tuple[int, int]] = {}
        self.n_tables = sum(1 for i in m.imports if i.kind is ExternKind.TABLE) + len(m.tables)
        self.n_globals = sum(1 for i in m.imports if i.kind is ExternKind.GLOBAL)
        self.dummy_funcs: dict[int, int] = {}  # type index -> function returning nothing

    def table(self, heap: HeapType) -> tuple[int, int]:
        got = self.tables.get(heap)
        if got is None:
            m = self.m
            m.tables.append(Table(TableType(RefType(True, heap), Limits(0))))
            m.globals.append(Global(GlobalType(NumType.I32, True), _const(0)))
            got = (self.n_tables, self.n_globals + len(m.globals) - 1)
            self.n_tables += 1
            self.tables[heap] = got
        return got

    def dummy(self, t: ValType) -> list[Instr]:
        if not isinstance(t, RefType):
            return _dummy(t)
        if t.nullable:
            return [_i("ref.null", t.heap)]
        heap = t.heap
        if heap in (AbsHeap.ANY, AbsHeap.EQ, AbsHeap.I31):
            return [_i("i32.const", 0), _i("ref.i31")]
        if heap is AbsHeap.EXTERN:
            return [_i("i32.const", 0), _i("ref.i31"), _i("extern.convert_any")]
        if heap is AbsHeap.FUNC:
            return [_i("ref.func", self._dummy_func(_type_index(self.m, FuncType((), ()))))]
        if isinstance(heap, int) and 0 <= heap < len(self.types):
            comp = self.types[heap].comp
            if isinstance(comp, FuncType):
                return [_i("ref.func", self._dummy_func(heap))]
            if isinstance(comp, StructType) and all(
                not isinstance(f.unpacked, RefType) or f.unpacked.nullable for f in comp.fields
            ):
                return [_i("struct.new_default", heap)]
            if isinstance(comp, ArrayType):
                return [_i("array.new_fixed", (heap, 0))]
        raise AsyncifyError(
            f"a function returning the non-nullable type {t} may unwind, and wasync cannot "
            "make a dummy value of that type"
        )

    def _dummy_func(self, type_index: int) -> int:
        """A function of type `type_index` whose body traps (never called: only
        its reference is returned by a function that unwinds)."""
        f = self.dummy_funcs.get(type_index)
        if f is None:
            m = self.m
            f = m.num_imported_funcs + len(m.functions)
            m.functions.append(type_index)
            m.codes.append(FuncBody(Body([], [_i("unreachable"), _i("end")]).encode()))
            self.dummy_funcs[type_index] = f
        return f

    def finish(self) -> None:
        if self.dummy_funcs:
            # `ref.func` in code needs the function declared.
            funcs = tuple(sorted(self.dummy_funcs.values()))
            self.m.elements.append(Element(SegmentMode.DECLARATIVE, FUNCREF, funcs, flags=3))


def _table_address(t: TableType) -> ValType:
    return NumType.I64 if t.limits.is64 else NumType.I32


def data_memory(m: BinaryModule) -> int | None:
    """Which memory an Asyncify-transformed module keeps its data in, read from
    its own ``asyncify_start_unwind`` (Binaryen's and wasync's both load the
    header from it to check the bounds): the memory index of the first load
    there, or None when the module has no such export or it loads nothing."""
    index = next(
        (e.index for e in m.exports if e.kind is ExternKind.FUNC and e.name == ABI_EXPORTS[0]),
        None,
    )
    if index is None or index < m.num_imported_funcs:
        return None
    try:
        body = m.body(index)
    except (DecodeError, IndexError):
        return None
    for ins in body.instrs:
        if isinstance(ins.imm, MemArg) and ins.op.name.endswith(".load"):
            return ins.imm.memory
    return None
