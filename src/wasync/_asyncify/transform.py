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
    FunctionPlan,
    _i,
    instrument_function,
)
from wasync._binary.module import BinaryModule, ConstExpr, Export, FuncBody, Global
from wasync._binary.types import (
    ExternKind,
    FuncType,
    GlobalType,
    Limits,
    NumType,
    RecGroup,
    SubType,
    TableType,
    ValType,
)
from wasync._errors import AsyncifyError, ValidationError
from wasync._ir.instr import Body, Instr, MemArg, encode_instrs
from wasync._ir.stack import ModuleTypes, type_function

if TYPE_CHECKING:
    from collections.abc import Callable, Collection

__all__ = ["ABI_EXPORTS", "transform_module"]

ABI_EXPORTS = (
    "asyncify_start_unwind",
    "asyncify_stop_unwind",
    "asyncify_start_rewind",
    "asyncify_stop_rewind",
    "asyncify_get_state",
)


def _memory0(m: BinaryModule) -> Limits:
    """Memory 0, which holds the Asyncify data. A module without memory gets one
    (one page, exported as "memory" when that name is free), as Binaryen does,
    so that a runtime can place the data buffer."""
    mems = [i.desc for i in m.imports if isinstance(i.desc, Limits)] + list(m.memories)
    if not mems:
        added = Limits(1)
        m.memories.append(added)
        if not any(e.name == "memory" for e in m.exports):
            m.exports.append(Export("memory", ExternKind.MEMORY, 0))
        return added
    return mems[0]


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


def _check_bounds(data: int, ptr64: bool) -> list[Instr]:
    """``if (position > end) unreachable`` (Binaryen's check in start/stop)."""
    pre, word = ("i64", 8) if ptr64 else ("i32", 4)
    align = 3 if ptr64 else 2
    return [
        _i("global.get", data),
        _i(f"{pre}.load", MemArg(align, 0, 0)),
        _i("global.get", data),
        _i(f"{pre}.load", MemArg(align, word, 0)),
        _i(f"{pre}.gt_u"),
        _i("if", None),
        _i("unreachable"),
        _i("end"),
    ]


def _abi_bodies(state: int, data: int, ptr64: bool) -> dict[str, tuple[bool, bool, list[Instr]]]:
    """name -> (takes the pointer, returns the state, body instructions)."""

    def set_state(value: int) -> list[Instr]:
        return [_i("i32.const", value), _i("global.set", state)]

    set_data = [_i("local.get", 0), _i("global.set", data)]
    return {
        "asyncify_start_unwind": (
            True,
            False,
            set_state(STATE_UNWINDING) + set_data + _check_bounds(data, ptr64),
        ),
        "asyncify_stop_unwind": (
            False,
            False,
            set_state(STATE_NORMAL) + _check_bounds(data, ptr64),
        ),
        "asyncify_start_rewind": (
            True,
            False,
            set_state(STATE_REWINDING) + set_data + _check_bounds(data, ptr64),
        ),
        "asyncify_stop_rewind": (
            False,
            False,
            set_state(STATE_NORMAL) + _check_bounds(data, ptr64),
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
    memory: int = 0,
    export_globals: bool = False,
) -> BinaryModule:
    """Instrument `instrumented` functions of `m` in place and add the ABI.

    A call is a site when `is_call_site(caller, instr)` says so (the analysis'
    answer); without it, calls to `instrumented` functions or
    `unwinding_imports`, and indirect calls when `indirect_may_unwind`."""
    if memory != 0:
        raise AsyncifyError(
            "keeping the Asyncify data in a memory other than memory 0 is not supported yet"
        )
    ptr64 = _memory0(m).is64
    ptr_t = NumType.I64 if ptr64 else NumType.I32
    names = m.function_names()
    clash = {e.name for e in m.exports} & set(ABI_EXPORTS)
    if clash:
        raise AsyncifyError(f"the module already exports {', '.join(sorted(clash))}")
    n_globals = sum(1 for i in m.imports if i.kind is ExternKind.GLOBAL) + len(m.globals)
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
            raise AsyncifyError("call_ref in an instrumented function is not supported yet")
        bt = ins.imm[0] if isinstance(ins.imm, tuple) else ins.imm
        if bt is None:
            return (), ()
        if isinstance(bt, int):
            ft = func_type(bt)
            return ft.params, ft.results
        return (), (bt,)

    for f in sorted(instrumented):
        if f < nimp:
            continue
        body = m.body(f)
        typing = type_function(m, f, body=body, module_types=mt)
        ft = func_type(mt.func_type_indices[f])
        site_test = is_call_site or default_site
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
        )
        new_body: Body = instrument_function(plan, body, typing)
        m.codes[f - nimp] = FuncBody(new_body.encode())

    # The ABI functions, appended at the end of the function index space.
    ptr_type = _type_index(m, FuncType((ptr_t,), ()))
    void_type = _type_index(m, FuncType((), ()))
    state_type = _type_index(m, FuncType((), (NumType.I32,)))
    next_index = nimp + len(m.functions)
    for name, (takes_ptr, returns, instrs) in _abi_bodies(state, data, ptr64).items():
        tidx = ptr_type if takes_ptr else state_type if returns else void_type
        m.functions.append(tidx)
        m.codes.append(FuncBody(Body([], [*instrs, _i("end")]).encode()))
        m.exports.append(Export(name, ExternKind.FUNC, next_index))
        next_index += 1
    if export_globals:
        m.exports.append(Export("__asyncify_state", ExternKind.GLOBAL, state))
        m.exports.append(Export("__asyncify_data", ExternKind.GLOBAL, data))
    return m


def _table_address(t: TableType) -> ValType:
    return NumType.I64 if t.limits.is64 else NumType.I32
