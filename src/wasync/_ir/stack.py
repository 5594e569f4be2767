"""Operand-stack typing: the types on the operand stack before every instruction.

This is the spec's validation algorithm reduced to what a rewriter needs: it
tracks the operand stack and the control frames, including unreachable code
(where the stack is polymorphic below what was pushed since, shown as
:data:`BOT`), block parameters and results, and every branch form. It checks
arity (stack underflow, unbalanced blocks) and index ranges, but not subtyping:
run it on modules an engine accepts.

Stacks are persistent linked lists of ``(type, below)`` cells (``None`` is the
empty stack), so the state before every instruction costs one pointer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, TypeAlias, TypeVar

from wasync._binary.opcodes import OPS, Imm, Op
from wasync._binary.types import (
    AbsHeap,
    ArrayType,
    CompType,
    ExternKind,
    FuncType,
    GlobalType,
    HeapType,
    Limits,
    NumType,
    RefType,
    StructType,
    SubType,
    TableType,
    TagType,
    ValType,
)
from wasync._errors import ValidationError
from wasync._ir.instr import Body, Instr, LocalTypes, MemArg

if TYPE_CHECKING:
    from collections.abc import Sequence

    from wasync._binary.module import BinaryModule

__all__ = [
    "BOT",
    "Bottom",
    "ModuleTypes",
    "StackType",
    "StackTyping",
    "type_body",
    "type_function",
]


class Bottom:
    """The unknown type of a value popped from the polymorphic stack of
    unreachable code."""

    _instance: Bottom | None = None

    def __new__(cls) -> Bottom:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "BOT"

    __str__ = __repr__


BOT: Final = Bottom()
StackType: TypeAlias = ValType | Bottom
Stack: TypeAlias = "tuple[StackType, Stack] | None"

_T = TypeVar("_T")
I32: Final = NumType.I32
I64: Final = NumType.I64
_TOKENS: dict[str, StackType] = {
    "i32": NumType.I32,
    "i64": NumType.I64,
    "f32": NumType.F32,
    "f64": NumType.F64,
    "v128": NumType.V128,
    "(ref i31)": RefType(False, AbsHeap.I31),
}


def _fixed(op: Op) -> tuple[int, tuple[StackType, ...]] | None:
    if op.params is None or op.results is None or "A" in op.params or "A" in op.results:
        return None
    return len(op.params), tuple(_TOKENS[t] for t in op.results)


_FIXED: list[tuple[int, tuple[StackType, ...]] | None] = [_fixed(op) for op in OPS]

# How the typing loop handles each op: inline fast paths for the commonest.
(
    _K_FIXED,
    _K_LOCAL_GET,
    _K_LOCAL_SET,
    _K_LOCAL_TEE,
    _K_GLOBAL_GET,
    _K_MEMARG,
    _K_DROP,
    _K_CALL,
    _K_BR_IF,
    _K_OTHER,
) = range(10)
_FAST_RULES = {
    "local.get": _K_LOCAL_GET,
    "local.set": _K_LOCAL_SET,
    "local.tee": _K_LOCAL_TEE,
    "global.get": _K_GLOBAL_GET,
    "drop": _K_DROP,
    "br_if": _K_BR_IF,
}


def _kind(op: Op, fx: object) -> int:
    if fx is not None:
        return _K_FIXED
    if op.rule is None and op.imms == (Imm.MEMARG,):
        return _K_MEMARG  # a fixed effect with the memory's address type
    if op.name == "call":
        return _K_CALL
    return _FAST_RULES.get(op.rule or "", _K_OTHER)


_KINDS: list[int] = [_kind(op, fx) for op, fx in zip(OPS, _FIXED, strict=True)]


def _memory_operand(op: Op, imm: Any) -> int:
    """Which memory an address-typed instruction uses."""
    if isinstance(imm, MemArg):
        return imm.memory
    if isinstance(imm, tuple):
        for kind, value in zip(op.imms, imm, strict=True):
            if kind is Imm.MEMARG:
                return int(value.memory)
            if kind is Imm.MEMORY:
                return int(value)
    return int(imm)


@dataclass(slots=True)
class ModuleTypes:
    """The module-level facts stack typing needs, gathered once per module."""

    types: list[SubType]
    func_type_indices: list[int]
    globals: list[GlobalType]
    tables: list[TableType]
    memories: list[Limits]
    tags: list[int]

    _calls: list[tuple[int, tuple[ValType, ...]] | None] | None = None
    # (op id, memory index) -> resolved fixed effect, filled as the typer meets them
    address_effects: dict[tuple[int, int], tuple[int, tuple[StackType, ...]]] = field(
        default_factory=dict
    )

    def call_effects(self) -> list[tuple[int, tuple[ValType, ...]] | None]:
        """Per function: (parameter count, results), None if its type is not a
        function type (the typer reports that when a call uses it)."""
        if self._calls is None:
            calls: list[tuple[int, tuple[ValType, ...]] | None] = []
            for tidx in self.func_type_indices:
                comp = self.types[tidx].comp if 0 <= tidx < len(self.types) else None
                calls.append(
                    (len(comp.params), comp.results) if isinstance(comp, FuncType) else None
                )
            self._calls = calls
        return self._calls

    @classmethod
    def from_module(cls, m: BinaryModule) -> ModuleTypes:
        globals_: list[GlobalType] = []
        tables: list[TableType] = []
        memories: list[Limits] = []
        tags: list[int] = []
        for imp in m.imports:
            desc = imp.desc
            if imp.kind is ExternKind.GLOBAL and isinstance(desc, GlobalType):
                globals_.append(desc)
            elif imp.kind is ExternKind.TABLE and isinstance(desc, TableType):
                tables.append(desc)
            elif imp.kind is ExternKind.MEMORY and isinstance(desc, Limits):
                memories.append(desc)
            elif imp.kind is ExternKind.TAG and isinstance(desc, TagType):
                tags.append(desc.type_index)
        globals_ += [g.type for g in m.globals]
        tables += [t.type for t in m.tables]
        memories += m.memories
        tags += [t.type_index for t in m.tags]
        return cls(m.type_list(), m.func_type_indices(), globals_, tables, memories, tags)


class StackTyping:
    """The result of typing one body.

    ``before[i]`` is the stack (a ``(top, below)`` cell chain) before
    instruction ``i``, ``heights[i]`` its depth, ``unreachable[i]`` whether
    ``i`` is in unreachable code; ``block_end[i]`` maps each block-opening
    instruction to its ``end`` (or ``delegate``), and ``else_of[i]`` each ``if``
    to its ``else`` when it has one.
    """

    __slots__ = ("before", "block_end", "else_of", "heights", "unreachable")

    def __init__(self) -> None:
        self.before: list[Stack] = []
        self.heights: list[int] = []
        self.unreachable = bytearray()
        self.block_end: dict[int, int] = {}
        self.else_of: dict[int, int] = {}

    def types_before(self, index: int) -> tuple[StackType, ...]:
        """The operand stack before instruction `index`, bottom first."""
        out: list[StackType] = []
        node = self.before[index]
        while node is not None:
            out.append(node[0])
            node = node[1]
        out.reverse()
        return tuple(out)


class _Frame:
    __slots__ = ("end_types", "height", "kind", "stack", "start", "start_types", "unreachable")

    def __init__(
        self,
        kind: str,
        start_types: tuple[ValType, ...],
        end_types: tuple[ValType, ...],
        height: int,
        stack: Stack,
        start: int,
    ) -> None:
        self.kind = kind
        self.start_types = start_types
        self.end_types = end_types
        self.height = height
        self.stack = stack
        self.unreachable = False
        self.start = start

    @property
    def label_types(self) -> tuple[ValType, ...]:
        return self.start_types if self.kind == "loop" else self.end_types


class _Typer:
    """Types one body; see :func:`type_body`."""

    def __init__(
        self,
        mt: ModuleTypes,
        func_type: FuncType,
        local_types: Sequence[ValType],
        func_index: int | None,
    ) -> None:
        self.mt = mt
        self.func_type = func_type
        flat = local_types.as_list() if isinstance(local_types, LocalTypes) else None
        self.locals: Sequence[ValType] = flat if flat is not None else local_types
        self.func_index = func_index
        self.stack: Stack = None
        self.h = 0
        self.frames: list[_Frame] = []
        self.index = 0
        self.instr: Instr | None = None
        self._addr_cache = mt.address_effects

    # -- errors and lookups ---------------------------------------------------

    def fail(self, message: str) -> ValidationError:
        where = f" at instruction {self.index} ({self.instr})" if self.instr is not None else ""
        return ValidationError(message + where, section="code", func_index=self.func_index)

    def _get(self, seq: Sequence[_T], index: int, what: str) -> _T:
        if not 0 <= index < len(seq):
            raise self.fail(f"unknown {what} {index}")
        return seq[index]

    def comp(self, type_index: int) -> CompType:
        return self._get(self.mt.types, type_index, "type").comp

    def functype(self, type_index: int) -> FuncType:
        comp = self.comp(type_index)
        if not isinstance(comp, FuncType):
            raise self.fail(f"type {type_index} is not a function type")
        return comp

    def blocktype(
        self, bt: ValType | int | None
    ) -> tuple[tuple[ValType, ...], tuple[ValType, ...]]:
        if bt is None:
            return (), ()
        if isinstance(bt, int):
            ft = self.functype(bt)
            return ft.params, ft.results
        return (), (bt,)

    def address(self, memory: int) -> NumType:
        return self._get(self.mt.memories, memory, "memory").address_type

    def table(self, index: int) -> TableType:
        return self._get(self.mt.tables, index, "table")

    def tag_params(self, tag: int) -> tuple[ValType, ...]:
        return self.functype(self._get(self.mt.tags, tag, "tag")).params

    def label(self, depth: int) -> _Frame:
        if not 0 <= depth < len(self.frames):
            raise self.fail(f"unknown label {depth}")
        return self.frames[-1 - depth]

    # -- the operand stack ----------------------------------------------------

    def pop(self) -> StackType:
        frame = self.frames[-1]
        if self.h > frame.height:
            t, self.stack = self.stack  # type: ignore[misc]  # h > frame.height: not empty
            self.h -= 1
            return t
        if frame.unreachable:
            return BOT
        raise self.fail("type mismatch: operand stack underflow")

    def pop_n(self, n: int) -> None:
        frame = self.frames[-1]
        if self.h - n >= frame.height:
            stack = self.stack
            for _ in range(n):
                stack = stack[1]  # type: ignore[index]  # the height says it is there
            self.stack = stack
            self.h -= n
        elif frame.unreachable:
            self.stack = frame.stack
            self.h = frame.height
        else:
            raise self.fail(
                f"type mismatch: instruction needs {n} operands but the stack has "
                f"{self.h - frame.height}"
            )

    def push(self, t: StackType) -> None:
        self.stack = (t, self.stack)
        self.h += 1

    def push_all(self, ts: Sequence[StackType]) -> None:
        stack = self.stack
        for t in ts:
            stack = (t, stack)
        self.stack = stack
        self.h += len(ts)

    def set_unreachable(self) -> None:
        frame = self.frames[-1]
        self.stack = frame.stack
        self.h = frame.height
        frame.unreachable = True

    def push_frame(
        self, kind: str, params: tuple[ValType, ...], results: tuple[ValType, ...], start: int
    ) -> None:
        self.pop_n(len(params))
        self.frames.append(_Frame(kind, params, results, self.h, self.stack, start))
        self.push_all(params)

    def end_frame(self) -> _Frame:
        frame = self.frames[-1]
        self.pop_n(len(frame.end_types))
        if self.h != frame.height:
            raise self.fail(
                f"type mismatch: {self.h - frame.height} values left on the stack at the end "
                f"of a block"
            )
        self.frames.pop()
        self.stack = frame.stack
        self.h = frame.height
        self.push_all(frame.end_types)
        return frame

    # -- the main loop --------------------------------------------------------

    def run(self, instrs: Sequence[Instr]) -> StackTyping:
        out = StackTyping()
        before = out.before.append
        heights = out.heights.append
        unreach = out.unreachable.append
        fixed = _FIXED
        kinds = _KINDS
        locals_ = self.locals
        globals_ = self.mt.globals
        addr_cache = self._addr_cache
        calls = self.mt.call_effects()
        ft = self.func_type
        frame = _Frame("func", (), ft.results, 0, None, -1)
        frames = self.frames
        frames.append(frame)
        n = len(instrs)
        # The stack and its height live in locals on the fast paths; they are
        # written back to self before any out-of-line code runs.
        stack: Stack = None
        h = 0
        for i, ins in enumerate(instrs):
            before(stack)
            heights(h)
            unreach(frame.unreachable)
            op = ins.op
            kind = kinds[op.id]
            if kind == _K_FIXED:
                npop, push = fixed[op.id]  # type: ignore[misc]
                if h - npop >= frame.height:
                    for _ in range(npop):
                        stack = stack[1]  # type: ignore[index]  # the height says it is there
                    for t in push:
                        stack = (t, stack)
                    h += len(push) - npop
                    continue
            elif kind == _K_LOCAL_GET:
                idx = ins.imm
                if idx < len(locals_):
                    stack = (locals_[idx], stack)
                    h += 1
                    continue
            elif kind == _K_LOCAL_SET:
                if h > frame.height and ins.imm < len(locals_):
                    stack = stack[1]  # type: ignore[index]
                    h -= 1
                    continue
            elif kind == _K_LOCAL_TEE:
                idx = ins.imm
                if h > frame.height and idx < len(locals_):
                    stack = (locals_[idx], stack[1])  # type: ignore[index]
                    continue
            elif kind == _K_GLOBAL_GET:
                idx = ins.imm
                if idx < len(globals_):
                    stack = (globals_[idx].type, stack)
                    h += 1
                    continue
            elif kind == _K_MEMARG:
                eff = addr_cache.get((op.id, ins.imm.memory))
                if eff is not None and h - eff[0] >= frame.height:
                    for _ in range(eff[0]):
                        stack = stack[1]  # type: ignore[index]
                    for t in eff[1]:
                        stack = (t, stack)
                    h += len(eff[1]) - eff[0]
                    continue
            elif kind == _K_DROP:
                if h > frame.height:
                    stack = stack[1]  # type: ignore[index]
                    h -= 1
                    continue
            elif kind == _K_CALL:
                idx = ins.imm
                if idx < len(calls):
                    eff = calls[idx]
                    if eff is not None and h - eff[0] >= frame.height:
                        for _ in range(eff[0]):
                            stack = stack[1]  # type: ignore[index]
                        for t in eff[1]:
                            stack = (t, stack)
                        h += len(eff[1]) - eff[0]
                        continue
            elif kind == _K_BR_IF:
                depth = ins.imm
                if depth < len(frames):
                    target = frames[-1 - depth]
                    types = target.start_types if target.kind == "loop" else target.end_types
                    npop = len(types) + 1
                    if h - npop >= frame.height:
                        for _ in range(npop):
                            stack = stack[1]  # type: ignore[index]
                        for t in types:
                            stack = (t, stack)
                        h -= 1
                        continue
            # Everything else, and the fast paths' rare cases (underflow in
            # unreachable code, bad indices), out of line.
            self.stack = stack
            self.h = h
            self.index, self.instr = i, ins
            self._slow(ins, kind, out)
            if not frames:
                if i != n - 1:
                    raise self.fail("instructions after the end of the function")
                return out
            stack = self.stack
            h = self.h
            frame = frames[-1]
        raise self.fail("function body does not end with `end`")

    def _slow(self, ins: Instr, kind: int, out: StackTyping) -> None:
        op = ins.op
        fx = _FIXED[op.id]
        if fx is not None:
            self.pop_n(fx[0])
            self.push_all(fx[1])
            return
        rule = op.rule
        if rule is None:  # fixed, but with address types to resolve
            key = (op.id, _memory_operand(op, ins.imm))
            eff = self._addr_cache.get(key)
            if eff is None:
                addr = self.address(key[1])
                assert op.params is not None
                assert op.results is not None
                tok = {**_TOKENS, "A": addr}
                eff = len(op.params), tuple(tok[t] for t in op.results)
                self._addr_cache[key] = eff
            self.pop_n(eff[0])
            self.push_all(eff[1])
            return
        handler = _RULES.get(rule)
        if handler is None:  # pragma: no cover - the table and the rules disagree
            raise AssertionError(f"no typing rule {rule!r}")
        handler(self, ins, out)

    # -- rules ----------------------------------------------------------------

    def r_block(self, ins: Instr, out: StackTyping) -> None:
        params, results = self.blocktype(ins.imm)
        self.push_frame(ins.op.name, params, results, self.index)

    def r_if(self, ins: Instr, out: StackTyping) -> None:
        self.pop()
        self.r_block(ins, out)

    def r_try_table(self, ins: Instr, out: StackTyping) -> None:
        bt, catches = ins.imm
        params, results = self.blocktype(bt)
        for c in catches:
            self.label(c.label)
            if c.tag is not None:
                self.tag_params(c.tag)
        self.push_frame("try_table", params, results, self.index)

    def r_else(self, ins: Instr, out: StackTyping) -> None:
        frame = self.frames[-1]
        if frame.kind != "if":
            raise self.fail("`else` without a matching `if`")
        self.end_frame()
        out.else_of[frame.start] = self.index
        self.stack = frame.stack
        self.h = frame.height
        frame.kind = "else"
        frame.unreachable = False
        self.frames.append(frame)
        self.push_all(frame.start_types)

    def r_catch(self, ins: Instr, out: StackTyping) -> None:
        frame = self.frames[-1]
        if frame.kind not in ("try", "catch"):
            raise self.fail(f"`{ins.op.name}` without a matching `try`")
        self.end_frame()
        self.stack = frame.stack
        self.h = frame.height
        frame.kind = "catch_all" if ins.op.name == "catch_all" else "catch"
        frame.unreachable = False
        self.frames.append(frame)
        if ins.op.name == "catch":
            self.push_all(self.tag_params(ins.imm))

    def r_end(self, ins: Instr, out: StackTyping) -> None:
        frame = self.frames[-1]
        if frame.kind == "if" and frame.start_types != frame.end_types:
            raise self.fail("type mismatch: `if` without `else` must not change the stack")
        self.end_frame()
        if frame.start >= 0:
            out.block_end[frame.start] = self.index

    def r_delegate(self, ins: Instr, out: StackTyping) -> None:
        frame = self.frames[-1]
        if frame.kind != "try":
            raise self.fail("`delegate` without a matching `try`")
        self.end_frame()
        self.label(ins.imm)
        out.block_end[frame.start] = self.index

    def r_unreachable(self, ins: Instr, out: StackTyping) -> None:
        self.set_unreachable()

    def r_br(self, ins: Instr, out: StackTyping) -> None:
        self.pop_n(len(self.label(ins.imm).label_types))
        self.set_unreachable()

    def r_br_if(self, ins: Instr, out: StackTyping) -> None:
        self.pop()
        types = self.label(ins.imm).label_types
        self.pop_n(len(types))
        self.push_all(types)

    def r_br_table(self, ins: Instr, out: StackTyping) -> None:
        labels, default = ins.imm
        self.pop()
        arity = len(self.label(default).label_types)
        for label in labels:
            if len(self.label(label).label_types) != arity:
                raise self.fail("type mismatch: br_table targets of different arity")
        self.pop_n(arity)
        self.set_unreachable()

    def r_return(self, ins: Instr, out: StackTyping) -> None:
        self.pop_n(len(self.func_type.results))
        self.set_unreachable()

    def _call(self, ft: FuncType, tail: bool) -> None:
        self.pop_n(len(ft.params))
        if tail:
            self.set_unreachable()
        else:
            self.push_all(ft.results)

    def r_call(self, ins: Instr, out: StackTyping) -> None:
        tidx = self._get(self.mt.func_type_indices, ins.imm, "function")
        self._call(self.functype(tidx), ins.op.name == "return_call")

    def r_call_indirect(self, ins: Instr, out: StackTyping) -> None:
        tidx, table = ins.imm
        self.table(table)
        self.pop()
        self._call(self.functype(tidx), ins.op.name == "return_call_indirect")

    def r_call_ref(self, ins: Instr, out: StackTyping) -> None:
        self.pop()
        self._call(self.functype(ins.imm), ins.op.name == "return_call_ref")

    def r_throw(self, ins: Instr, out: StackTyping) -> None:
        self.pop_n(len(self.tag_params(ins.imm)))
        self.set_unreachable()

    def r_throw_ref(self, ins: Instr, out: StackTyping) -> None:
        self.pop()
        self.set_unreachable()

    def r_rethrow(self, ins: Instr, out: StackTyping) -> None:
        self.label(ins.imm)
        self.set_unreachable()

    def r_drop(self, ins: Instr, out: StackTyping) -> None:
        self.pop()

    def r_select(self, ins: Instr, out: StackTyping) -> None:
        self.pop()
        t1 = self.pop()
        t2 = self.pop()
        self.push(t2 if t1 is BOT else t1)

    def r_select_t(self, ins: Instr, out: StackTyping) -> None:
        types: tuple[ValType, ...] = ins.imm
        if len(types) != 1:
            raise self.fail("invalid result arity of typed select")
        self.pop_n(3)
        self.push(types[0])

    def _local(self, index: int) -> ValType:
        return self._get(self.locals, index, "local")

    def r_local_get(self, ins: Instr, out: StackTyping) -> None:
        self.push(self._local(ins.imm))

    def r_local_set(self, ins: Instr, out: StackTyping) -> None:
        self._local(ins.imm)
        self.pop()

    def r_local_tee(self, ins: Instr, out: StackTyping) -> None:
        t = self._local(ins.imm)
        self.pop()
        self.push(t)

    def r_global_get(self, ins: Instr, out: StackTyping) -> None:
        g = self._get(self.mt.globals, ins.imm, "global")
        self.push(g.type)

    def r_global_set(self, ins: Instr, out: StackTyping) -> None:
        self._get(self.mt.globals, ins.imm, "global")
        self.pop()

    def r_table_get(self, ins: Instr, out: StackTyping) -> None:
        t = self.table(ins.imm)
        self.pop()
        self.push(t.elem)

    def r_table_set(self, ins: Instr, out: StackTyping) -> None:
        self.table(ins.imm)
        self.pop_n(2)

    def r_table_size(self, ins: Instr, out: StackTyping) -> None:
        self.push(self.table(ins.imm).limits.address_type)

    def r_table_grow(self, ins: Instr, out: StackTyping) -> None:
        t = self.table(ins.imm)
        self.pop_n(2)
        self.push(t.limits.address_type)

    def r_table_fill(self, ins: Instr, out: StackTyping) -> None:
        self.table(ins.imm)
        self.pop_n(3)

    def r_table_copy(self, ins: Instr, out: StackTyping) -> None:
        dst, src = ins.imm
        self.table(dst)
        self.table(src)
        self.pop_n(3)

    def r_table_init(self, ins: Instr, out: StackTyping) -> None:
        _elem, table = ins.imm
        self.table(table)
        self.pop_n(3)

    def r_memory_copy(self, ins: Instr, out: StackTyping) -> None:
        dst, src = ins.imm
        self.address(dst)
        self.address(src)
        self.pop_n(3)

    def r_ref_null(self, ins: Instr, out: StackTyping) -> None:
        self.push(RefType(True, ins.imm))

    def r_ref_is_null(self, ins: Instr, out: StackTyping) -> None:
        self.pop()
        self.push(I32)

    def r_ref_func(self, ins: Instr, out: StackTyping) -> None:
        tidx = self._get(self.mt.func_type_indices, ins.imm, "function")
        self.push(RefType(False, tidx))

    @staticmethod
    def _non_null(t: StackType) -> StackType:
        return RefType(False, t.heap) if isinstance(t, RefType) else t

    def r_ref_as_non_null(self, ins: Instr, out: StackTyping) -> None:
        self.push(self._non_null(self.pop()))

    def r_br_on_null(self, ins: Instr, out: StackTyping) -> None:
        t = self.pop()
        types = self.label(ins.imm).label_types
        self.pop_n(len(types))
        self.push_all(types)
        self.push(self._non_null(t))

    def r_br_on_non_null(self, ins: Instr, out: StackTyping) -> None:
        self.pop()
        types = self.label(ins.imm).label_types
        if not types:
            raise self.fail("type mismatch: br_on_non_null target has no reference result")
        self.pop_n(len(types) - 1)
        self.push_all(types[:-1])

    def _cast_types(self, ins: Instr) -> tuple[RefType, RefType, tuple[ValType, ...]]:
        flags, label, ht1, ht2 = ins.imm
        rt1 = RefType(bool(flags & 1), ht1)
        rt2 = RefType(bool(flags & 2), ht2)
        types = self.label(label).label_types
        if not types:
            raise self.fail("type mismatch: cast branch target has no reference result")
        return rt1, rt2, types

    def r_br_on_cast(self, ins: Instr, out: StackTyping) -> None:
        rt1, rt2, types = self._cast_types(ins)
        self.pop()
        self.pop_n(len(types) - 1)
        self.push_all(types[:-1])
        self.push(RefType(rt1.nullable and not rt2.nullable, rt1.heap))

    def r_br_on_cast_fail(self, ins: Instr, out: StackTyping) -> None:
        _rt1, rt2, types = self._cast_types(ins)
        self.pop()
        self.pop_n(len(types) - 1)
        self.push_all(types[:-1])
        self.push(rt2)

    def r_ref_cast(self, ins: Instr, out: StackTyping) -> None:
        self.pop()
        self.push(RefType(ins.op.imms[0] is Imm.NULLHEAPTYPE, ins.imm))

    def _convert(self, heap: HeapType) -> None:
        t = self.pop()
        self.push(RefType(t.nullable if isinstance(t, RefType) else True, heap))

    def r_any_convert_extern(self, ins: Instr, out: StackTyping) -> None:
        self._convert(AbsHeap.ANY)

    def r_extern_convert_any(self, ins: Instr, out: StackTyping) -> None:
        self._convert(AbsHeap.EXTERN)

    def _struct(self, tidx: int) -> StructType:
        comp = self.comp(tidx)
        if not isinstance(comp, StructType):
            raise self.fail(f"type {tidx} is not a struct type")
        return comp

    def _array(self, tidx: int) -> ArrayType:
        comp = self.comp(tidx)
        if not isinstance(comp, ArrayType):
            raise self.fail(f"type {tidx} is not an array type")
        return comp

    def r_struct_new(self, ins: Instr, out: StackTyping) -> None:
        self.pop_n(len(self._struct(ins.imm).fields))
        self.push(RefType(False, ins.imm))

    def r_struct_new_default(self, ins: Instr, out: StackTyping) -> None:
        self._struct(ins.imm)
        self.push(RefType(False, ins.imm))

    def _field(self, tidx: int, fidx: int) -> ValType:
        fields = self._struct(tidx).fields
        if not 0 <= fidx < len(fields):
            raise self.fail(f"unknown field {fidx} of type {tidx}")
        return fields[fidx].unpacked

    def r_struct_get(self, ins: Instr, out: StackTyping) -> None:
        tidx, fidx = ins.imm
        t = self._field(tidx, fidx)
        self.pop()
        self.push(t)

    def r_struct_set(self, ins: Instr, out: StackTyping) -> None:
        tidx, fidx = ins.imm
        self._field(tidx, fidx)
        self.pop_n(2)

    def _array_new(self, ins: Instr, n: int) -> None:
        tidx = ins.imm[0] if isinstance(ins.imm, tuple) else ins.imm
        self._array(tidx)
        self.pop_n(n)
        self.push(RefType(False, tidx))

    def r_array_new(self, ins: Instr, out: StackTyping) -> None:
        self._array_new(ins, 2)

    def r_array_new_default(self, ins: Instr, out: StackTyping) -> None:
        self._array_new(ins, 1)

    def r_array_new_fixed(self, ins: Instr, out: StackTyping) -> None:
        self._array_new(ins, ins.imm[1])

    def r_array_new_data(self, ins: Instr, out: StackTyping) -> None:
        self._array_new(ins, 2)

    def r_array_get(self, ins: Instr, out: StackTyping) -> None:
        t = self._array(ins.imm).field.unpacked
        self.pop_n(2)
        self.push(t)


_RULES = {
    "block": _Typer.r_block,
    "loop": _Typer.r_block,
    "try": _Typer.r_block,
    "if": _Typer.r_if,
    "try_table": _Typer.r_try_table,
    "else": _Typer.r_else,
    "catch": _Typer.r_catch,
    "catch_all": _Typer.r_catch,
    "end": _Typer.r_end,
    "delegate": _Typer.r_delegate,
    "unreachable": _Typer.r_unreachable,
    "br": _Typer.r_br,
    "br_if": _Typer.r_br_if,
    "br_table": _Typer.r_br_table,
    "return": _Typer.r_return,
    "call": _Typer.r_call,
    "return_call": _Typer.r_call,
    "call_indirect": _Typer.r_call_indirect,
    "return_call_indirect": _Typer.r_call_indirect,
    "call_ref": _Typer.r_call_ref,
    "return_call_ref": _Typer.r_call_ref,
    "throw": _Typer.r_throw,
    "throw_ref": _Typer.r_throw_ref,
    "rethrow": _Typer.r_rethrow,
    "drop": _Typer.r_drop,
    "select": _Typer.r_select,
    "select_t": _Typer.r_select_t,
    "local.get": _Typer.r_local_get,
    "local.set": _Typer.r_local_set,
    "local.tee": _Typer.r_local_tee,
    "global.get": _Typer.r_global_get,
    "global.set": _Typer.r_global_set,
    "table.get": _Typer.r_table_get,
    "table.set": _Typer.r_table_set,
    "table.size": _Typer.r_table_size,
    "table.grow": _Typer.r_table_grow,
    "table.fill": _Typer.r_table_fill,
    "table.copy": _Typer.r_table_copy,
    "table.init": _Typer.r_table_init,
    "memory.copy": _Typer.r_memory_copy,
    "ref.null": _Typer.r_ref_null,
    "ref.is_null": _Typer.r_ref_is_null,
    "ref.func": _Typer.r_ref_func,
    "ref.as_non_null": _Typer.r_ref_as_non_null,
    "br_on_null": _Typer.r_br_on_null,
    "br_on_non_null": _Typer.r_br_on_non_null,
    "br_on_cast": _Typer.r_br_on_cast,
    "br_on_cast_fail": _Typer.r_br_on_cast_fail,
    "ref.cast": _Typer.r_ref_cast,
    "any.convert_extern": _Typer.r_any_convert_extern,
    "extern.convert_any": _Typer.r_extern_convert_any,
    "struct.new": _Typer.r_struct_new,
    "struct.new_default": _Typer.r_struct_new_default,
    "struct.get": _Typer.r_struct_get,
    "struct.set": _Typer.r_struct_set,
    "array.new": _Typer.r_array_new,
    "array.new_default": _Typer.r_array_new_default,
    "array.new_fixed": _Typer.r_array_new_fixed,
    "array.new_data": _Typer.r_array_new_data,
    "array.new_elem": _Typer.r_array_new_data,
    "array.get": _Typer.r_array_get,
}

_missing = {op.rule for op in OPS if op.rule is not None} - set(_RULES)
if _missing:  # pragma: no cover - caught by the first import in any test run
    raise RuntimeError(f"opcode table rules without a typing rule: {sorted(_missing)}")


def type_body(
    body: Body,
    func_type: FuncType,
    module_types: ModuleTypes,
    *,
    func_index: int | None = None,
) -> StackTyping:
    """Compute the operand stack before every instruction of `body`.

    Raises :class:`~wasync._errors.ValidationError` for code that does not
    type-check structurally (underflow, unbalanced blocks, unknown indices).
    """
    local_types = body.local_types(func_type.params)
    return _Typer(module_types, func_type, local_types, func_index).run(body.instrs)


def type_function(
    module: BinaryModule,
    func_index: int,
    *,
    body: Body | None = None,
    module_types: ModuleTypes | None = None,
) -> StackTyping:
    """Type function `func_index` of `module` (decoding its body unless given).

    Pass `module_types` (from :meth:`ModuleTypes.from_module`) when typing many
    functions of one module."""
    mt = module_types or ModuleTypes.from_module(module)
    if body is None:
        body = module.body(func_index)
    if not 0 <= func_index < len(mt.func_type_indices):
        raise ValidationError(f"unknown function {func_index}", func_index=func_index)
    tidx = mt.func_type_indices[func_index]
    if not 0 <= tidx < len(mt.types) or not isinstance(mt.types[tidx].comp, FuncType):
        raise ValidationError(
            f"function {func_index} has type {tidx}, which is not a function type",
            func_index=func_index,
        )
    ft = mt.types[tidx].comp
    assert isinstance(ft, FuncType)
    return type_body(body, ft, mt, func_index=func_index)
