"""Asyncify instrumentation on bytecode, without flattening.

The scheme (per instrumented function):

* **Sites.** A *site* is a call that may change state (a call to an
  instrumented function or to an import that may unwind, and indirect calls
  unless they are ignored). Sites are numbered in instruction order.
* **Levels and segments.** A structured instruction (``block``, ``loop``,
  ``if``) that contains a site is *transformed*: its block type becomes empty
  and its body (a *level*) is cut into segments: sites, transformed
  structures, and *runs* of everything else (including whole structures that
  contain no site).
* **The stack lives in locals at segment boundaries.** At every boundary the
  operand values of the level (those above the level's base) are in spill
  locals ``S[position, type]``, one per absolute stack position and type. A
  run starts by reloading them and ends by spilling what it leaves; a site
  reloads its operands and spills its results; a transformed block's params
  and results travel the same way. Values below a level's base stay parked in
  their spill locals while the level runs. Two shortcuts: the end of a run
  that computes a site's last arguments from constants and locals alone
  (integer arithmetic) moves into the site, re-executed on a rewind (the
  locals it reads are saved); and a call's results stay on the stack when the
  run after the site starts by consuming exactly them.
* **Skipping on rewind.** ``$resume`` is k + 1 on a rewind heading for site
  k. In normal execution, at a point with n sites before it (in instruction
  order), ``$resume <= n``: it is 0, or one more than the number of a site
  that a rewind resumed earlier (a rewind only moves forward: it takes no
  branch); a loop whose body tests ``$resume`` resets it to 0 at its start
  (unless rewinding). So one unsigned comparison, ``$resume <= k + 1``,
  tells whether site k runs (normal execution, or the rewind's target), and
  ``$resume <= last + 1`` whether a structure whose last site is ``last``
  is entered. A level is *precise* when a rewind enters it only if its target
  is in it (the function body; blocks, loops and ifs entered through such a
  test or as the last entry of a precise level): its last entry (site or
  transformed structure) then runs unchecked and the runs after it unguarded.
  Other sites are wrapped in ``if`` on the comparison; a block that a rewind
  may pass becomes an ``if`` on it, a loop gets one around it; a run after
  such a structure goes inside that ``if``. The remaining runs are wrapped in
  ``global.get $state; i32.eqz; if ... end`` (skipped during a rewind, with no
  cost per instruction inside), except those right after a site, which go
  inside the site's ``if``, and the code before the function's first site,
  which runs in the ``else`` of the rewind prologue. A transformed ``if``
  chooses its branch with ``select`` on the state: its condition, or on a
  rewind whether the target is in the then branch; its else branch is
  precise only when the ``if`` is the last entry of a precise level. Try
  bodies and handlers are entered on every rewind (not precise). Nothing
  writes a local during a rewind before the target site is reached, so the
  restored locals survive.
* **Branches** to a transformed structure that carry values put them in the
  spill locals of the target's positions first (``br_if`` does so only when it
  branches, through a small ``if``). Branch depths are remapped for the
  blocks the transform inserts.
* **Unwinding.** After a site's call, ``state == 1`` means the callee is
  unwinding: ``i32.const k + 1; global.get $state; br_if $unwind; drop``
  branches out of the body (``block $unwind (result i32)``) to the shared
  frame-save tail, which takes the number into ``$resume``, writes the frame
  (its saved locals, then the number) at the data position, advances the
  position and returns dummy results. The write is skipped when it would
  pass the buffer's end, but the position still advances, so
  ``asyncify_stop_unwind`` traps as Binaryen's does. **Rewinding.** On entry
  with ``state == 2`` the function pops its frame (the position moves back by
  the frame size) and restores its locals and ``$resume``.

Saved per frame: the original locals (parameters included) live after some
site of the function, and the spill locals that hold a value during some
site's call. Frames are fixed-size per function. Numeric frames are written
and read by shared helper functions (:class:`FrameHelpers`): the saved locals
grouped by type, i32 last, then the site number (and the owner tag), pushed
in chunks of up to :data:`HELPER_CHUNK` values, and popped one value a call
(or a chunk a call when the module already uses multi-value: the output needs
no feature the input does not); a function that saves references writes its
frame inline.

Beyond Binaryen:

* **References** (any reference type) live across a site are saved in tables
  the pass adds, one per heap type (of the nullable type), each with a slot
  stack-pointer global: the linear-memory frame records where its slots start,
  a rewind reads them, clears them (no stale references kept alive) and gives
  them back when they are the top ones, so frames of different data buffers
  (coroutines) may unwind and rewind in any order. A call abandoned after an
  unwind (never rewound) leaves its slots taken until the pointer drops below
  them. Declared non-nullable locals become nullable (each read gets
  ``ref.as_non_null``); reference spill locals are shared per stack position
  and hierarchy, cast back when values of several types meet there. A function
  returning a non-nullable reference returns a made-up value when it unwinds.
* **call_ref** is a site like ``call_indirect``; its reference is an operand
  saved like the others.
* **Exceptions.** A ``try_table`` containing a site is entered like a block on
  a rewind, so an exception thrown after resuming is caught; a catch whose
  target keeps its values in spill locals goes through a trampoline block. The
  code a catch branches to is ordinary code. A legacy ``try`` with handlers
  containing a site becomes a ``try_table`` with ``catch_ref`` /
  ``catch_all_ref`` clauses and the handlers after it; the exnref is kept in a
  local (``rethrow`` becomes ``throw_ref``) and a rewind heading into a
  handler branches to it. ``try ... delegate`` stays as it is.
* **Tail calls** stay tail calls. When the module has a ``return_call`` to a
  function that may unwind, every frame ends with its owner's function index;
  a function called on a rewind whose top frame belongs to a function its tail
  calls reach hands over with ``return_call`` of that owner (dummy arguments:
  its frame restores them). An indirect tail call that may unwind reaches
  every instrumented function of its type; one that may reach an import (or a
  top-most runtime function) that unwinds becomes a call and ``return``, since
  such a callee leaves no frame to hand over to.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from wasync._asyncify.liveness import live_after
from wasync._binary.opcodes import OPS, Imm, Op
from wasync._binary.types import EXNREF, AbsHeap, HeapType, NumType, RefType, ValType
from wasync._errors import AsyncifyError
from wasync._ir.instr import Body, Catch, Instr, MemArg
from wasync._ir.stack import BOT, StackTyping

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = ["FunctionPlan", "instrument_function"]

_BY_NAME: dict[str, Op] = {}
for _op in OPS:
    _BY_NAME.setdefault(_op.name, _op)
del _op

STATE_NORMAL, STATE_UNWINDING, STATE_REWINDING = 0, 1, 2
_BRANCH_OPS = frozenset({"br", "br_if", "br_table", "br_on_null", "br_on_non_null"})
_OPENERS = frozenset({"block", "loop", "if", "try", "try_table"})
_SIZES = {NumType.I32: 4, NumType.I64: 8, NumType.F32: 4, NumType.F64: 8, NumType.V128: 16}
_LOADS = {
    NumType.I32: "i32.load",
    NumType.I64: "i64.load",
    NumType.F32: "f32.load",
    NumType.F64: "f64.load",
    NumType.V128: "v128.load",
}
_STORES = {
    NumType.I32: "i32.store",
    NumType.I64: "i64.store",
    NumType.F32: "f32.store",
    NumType.F64: "f64.store",
    NumType.V128: "v128.store",
}


# Instructions that may be re-executed on a rewind (moved into a site): they
# read only constants and locals, and compute deterministically.
_PURE = frozenset(
    op.id
    for op in OPS
    if op.name in ("local.get", "i32.const", "i64.const", "f32.const", "f64.const")
    or (
        op.prefix is None
        and (0x45 <= op.code <= 0x5A or 0x67 <= op.code <= 0x8A or op.code in (0xA7, 0xAC, 0xAD))
    )
    or (op.prefix is None and 0xC0 <= op.code <= 0xC4)
)


def _i(name: str, imm: object = None) -> Instr:
    return Instr(_BY_NAME[name], imm)


def _dummy(t: ValType) -> list[Instr]:
    """A value of type `t` (numeric zero, or null) for the results of an unwind."""
    if t is NumType.I32:
        return [_i("i32.const", 0)]
    if t is NumType.I64:
        return [_i("i64.const", 0)]
    if t is NumType.F32:
        return [_i("f32.const", 0)]
    if t is NumType.F64:
        return [_i("f64.const", 0)]
    if t is NumType.V128:
        return [_i("v128.const", bytes(16))]
    assert isinstance(t, RefType)
    if not t.nullable:
        raise AsyncifyError(f"cannot make a dummy value of the non-nullable type {t}")
    return [_i("ref.null", t.heap)]


_TOPS = {
    AbsHeap.FUNC: AbsHeap.FUNC,
    AbsHeap.NOFUNC: AbsHeap.FUNC,
    AbsHeap.EXTERN: AbsHeap.EXTERN,
    AbsHeap.NOEXTERN: AbsHeap.EXTERN,
    AbsHeap.EXN: AbsHeap.EXN,
    AbsHeap.NOEXN: AbsHeap.EXN,
}
_REF_CAST = next(op for op in OPS if op.name == "ref.cast" and op.imms == (Imm.HEAPTYPE,))
_REF_CAST_NULL = next(op for op in OPS if op.name == "ref.cast" and op.imms == (Imm.NULLHEAPTYPE,))


def top_heap(heap: HeapType, is_func: Callable[[int], bool]) -> AbsHeap:
    """The top of `heap`'s hierarchy: func, extern, exn or any. `is_func` tells
    whether a type index is a function type."""
    if isinstance(heap, int):
        return AbsHeap.FUNC if is_func(heap) else AbsHeap.ANY
    return _TOPS.get(heap, AbsHeap.ANY)


def _nullable(t: ValType) -> ValType:
    return RefType(True, t.heap) if isinstance(t, RefType) and not t.nullable else t


@dataclass
class FunctionPlan:
    """What the module-level transform tells the function instrumenter."""

    func_index: int
    name: str | None
    params: tuple[ValType, ...]
    results: tuple[ValType, ...]
    state_global: int
    data_global: int
    is_site: Callable[[Instr], bool]
    label_types: Callable[[Instr], tuple[tuple[ValType, ...], tuple[ValType, ...]]]
    sites: list[int] = field(default_factory=list)
    ptr64: bool = False  # memory64: the data pointer and header words are 64-bit
    memory: int = 0  # the memory that holds the data
    # The (table, stack-pointer global) that saves references of one heap type
    # (a table of the nullable type), created on demand by the module transform.
    ref_table: Callable[[HeapType], tuple[int, int]] | None = None
    # The instructions that push a dummy value of a type (results of an unwind).
    dummy: Callable[[ValType], list[Instr]] | None = None
    # Whether a type index is a function type (reference hierarchies).
    is_func_type: Callable[[int], bool] = lambda _: False
    # The block type of a block with these results (a type index when needed).
    block_type: Callable[[tuple[ValType, ...], tuple[ValType, ...]], ValType | int | None] = (
        lambda _p, _r: None
    )
    # A tag's parameter types.
    tag_params: Callable[[int], tuple[ValType, ...]] = lambda _: ()
    # Suspending tail calls in the module: every frame ends with its owner's
    # function index. Here: the functions (with their parameter types) whose
    # frame may be on top when this one is called on a rewind, because this
    # function tail-called them (transitively); the prologue tail-calls the
    # owner of the top frame with dummy arguments (its frame restores it).
    owner_tags: bool = False
    tail_owners: tuple[tuple[int, tuple[ValType, ...]], ...] = ()
    # Shared frame helpers (see :class:`FrameHelpers`): the function index of the
    # helper that pushes (or pops) `k` values of a numeric type. Without it (or
    # for a function that saves references) frames are written inline.
    frame_helper: Callable[[bool, NumType, int], int] | None = None
    # Whether frames may be restored by helpers returning several values (the
    # multi-value feature): only when the module already uses it, so that the
    # output needs no feature the input did not.
    multivalue: bool = False


# The most values one frame helper moves (longer runs of a type use several).
# Small: results beyond the return registers take room in the frame of every
# caller (every instrumented function) on the native stack; 4 keeps the stack
# use of deep recursion as it was with frames written inline.
HELPER_CHUNK = 4


class FrameHelpers:
    """Shared functions that move frame values, created on demand: ``push(T, k)``
    of type ``(T x k) -> ()`` writes its arguments at the data position and
    advances it (the write is skipped when it would pass the buffer's end; the
    position advances anyway, so ``asyncify_stop_unwind`` traps); ``pop(T, k)``
    of type ``() -> (T x k)`` moves the position back and returns the values the
    matching push wrote. A frame is a sequence of pushes, restored by the pops
    in reverse order: per saved local two bytes of code on each side instead of
    a load or store with its address.

    `add_function(params, results, body)` appends a function to the module and
    returns its index."""

    def __init__(
        self,
        add_function: Callable[[tuple[ValType, ...], tuple[ValType, ...], Body], int],
        data_global: int,
        ptr64: bool,
        memory: int,
    ) -> None:
        self.add_function = add_function
        self.data = data_global
        self.ptr64 = ptr64
        self.memory = memory
        self.made: dict[tuple[bool, NumType, int], int] = {}

    def get(self, push: bool, t: NumType, k: int) -> int:
        key = (push, t, k)
        index = self.made.get(key)
        if index is None:
            index = self.made[key] = self._make(push, t, k)
        return index

    def _make(self, push: bool, t: NumType, k: int) -> int:
        ptr_t = NumType.I64 if self.ptr64 else NumType.I32
        pre = "i64" if self.ptr64 else "i32"
        word = 8 if self.ptr64 else 4
        size = _SIZES[t]
        total = size * k

        def mem(name: str, offset: int) -> Instr:
            return _i(name, MemArg(0, offset, self.memory))

        data = self.data
        if push:
            p = k  # the local after the parameters
            instrs = [
                _i("global.get", data),
                _i("global.get", data),
                mem(f"{pre}.load", 0),
                _i("local.tee", p),
                _i(f"{pre}.const", total),
                _i(f"{pre}.add"),
                mem(f"{pre}.store", 0),
                _i("local.get", p),
                _i(f"{pre}.const", total),
                _i(f"{pre}.add"),
                _i("global.get", data),
                mem(f"{pre}.load", word),
                _i(f"{pre}.le_u"),
                _i("if", None),
            ]
            for j in range(k):
                instrs += [_i("local.get", p), _i("local.get", j), mem(_STORES[t], j * size)]
            instrs += [_i("end"), _i("end")]
            return self.add_function((t,) * k, (), Body([(1, ptr_t)], instrs))
        instrs = [
            _i("global.get", data),
            _i("global.get", data),
            mem(f"{pre}.load", 0),
            _i(f"{pre}.const", total),
            _i(f"{pre}.sub"),
            _i("local.tee", 0),
            mem(f"{pre}.store", 0),
        ]
        for j in range(k):
            instrs += [_i("local.get", 0), mem(_LOADS[t], j * size)]
        instrs.append(_i("end"))
        return self.add_function((), (t,) * k, Body([(1, ptr_t)], instrs))


class _Marker(Instr):
    """A placeholder for the frame-save code of site `k` (known only at the end)."""

    __slots__ = ("site",)

    def __init__(self, site: int) -> None:
        super().__init__(_BY_NAME["nop"])
        self.site = site


class _Cast(Instr):
    """After reading reference spill local `local` as a value of type `want`: a
    cast (or `ref.as_non_null`) if the local's settled type needs one."""

    __slots__ = ("local", "want")

    def __init__(self, local: int, want: RefType) -> None:
        super().__init__(_BY_NAME["nop"])
        self.local = local
        self.want = want

    def resolve(self, local_types: Sequence[ValType]) -> list[Instr]:
        have = local_types[self.local]
        assert isinstance(have, RefType)
        if have.heap == self.want.heap:
            return [] if self.want.nullable else [_i("ref.as_non_null")]
        return [Instr(_REF_CAST_NULL if self.want.nullable else _REF_CAST, self.want.heap)]


class _Instrumenter:
    def __init__(self, plan: FunctionPlan, body: Body, typing: StackTyping) -> None:
        self.plan = plan
        self.body = body
        self.instrs = body.instrs
        self.typing = typing
        self.where = f"function {plan.func_index}" + (f" {plan.name!r}" if plan.name else "")
        self.local_types: list[ValType] = list(body.local_types(plan.params))
        self.n_original = len(self.local_types)
        # Declared non-nullable reference locals become nullable (the frame-save
        # tail and the rewind prologue read and write them outside the blocks that
        # initialise them); every read of one is followed by `ref.as_non_null`.
        self.nn_locals: set[int] = set()
        for idx in range(len(plan.params), self.n_original):
            t = self.local_types[idx]
            if isinstance(t, RefType) and not t.nullable:
                self.local_types[idx] = RefType(True, t.heap)
                self.nn_locals.add(idx)
        self.spill: dict[tuple[int, ValType | HeapType], int] = {}
        self.slot_heaps: dict[int, set[HeapType]] = {}
        self.transfer: dict[tuple[int, ValType], int] = {}
        self.scratch: dict[str, int] = {}
        self.out: list[Instr] = []
        # Output label stack: ("orig", structure start) / ("guard", -1) / ("extra", -1).
        self.labels: list[tuple[str, int]] = []
        self.transformed: set[int] = set()
        self.site_number: dict[int, int] = {}
        self.bases: dict[int, int] = {}  # transformed structure start -> its level base
        # Locals a site re-reads on a rewind (moved `local.get` arguments): saved.
        self.must_save: set[int] = set()
        # The code before the first site or transformed structure, if any: it
        # runs in the `else` of the rewind prologue.
        self.head: list[Instr] = []
        # How many `$resume` tests were emitted (loops with one reset it).
        self.resume_tests = 0
        # Per site: how many operands are in spill locals during its call.
        self.parked_at: dict[int, int] = {}
        self._scan()

    # -- analysis of the body -------------------------------------------------

    def _scan(self) -> None:
        instrs = self.instrs
        typing = self.typing
        open_: list[int] = []
        sites: list[int] = []
        self.parent: list[int] = [-1] * len(instrs)
        self.catch_at: dict[int, list[int]] = {}  # legacy try -> its catch/catch_all
        for i, ins in enumerate(instrs):
            name = ins.op.name
            self.parent[i] = open_[-1] if open_ else -1
            if name in ("catch", "catch_all") and open_:
                self.catch_at.setdefault(open_[-1], []).append(i)
            if name in _OPENERS:
                open_.append(i)
            elif name in ("end", "delegate"):
                if open_:
                    open_.pop()
            elif not typing.unreachable[i] and self.plan.is_site(ins):
                if name.startswith("return_call"):
                    # The tail call discards this frame: it stays a real tail call
                    # (not a site). If the callee unwinds, the top frame on a rewind
                    # is not this function's: the prologue hands over (see
                    # FunctionPlan.tail_owners).
                    continue
                sites.append(i)
                self.site_number[i] = len(sites) - 1
                for s in open_:
                    self.transformed.add(s)
        self.plan.sites = sites
        # Legacy `try` (with catches) that contain a site become try_table (see
        # :meth:`_try`); their exnref lives in a local, saved like the others.
        self.exn_local: dict[int, int] = {}
        # Copied try_tables with catch trampolines (see _open_trampolines).
        self.copied_tramps: dict[int, tuple[int, dict[int, int]]] = {}
        # Site-number range per transformed structure branch (for `if`).
        self.ranges: dict[tuple[int, str], tuple[int, int]] = {}

    # -- locals -----------------------------------------------------------------

    def _new_local(self, t: ValType) -> int:
        self.local_types.append(t)
        return len(self.local_types) - 1

    def _slot(self, pos: int, t: ValType) -> int:
        """The spill local of stack position `pos` for type `t`. References share
        one local per position and hierarchy (values of different types flow
        into one position through block ends): its type, nullable, is settled by
        :meth:`settle_slots` once every use is known; read it with :meth:`_reload`."""
        key: tuple[int, ValType | HeapType] = (pos, t if isinstance(t, NumType) else self._top(t))
        idx = self.spill.get(key)
        if idx is None:
            self._check_ref(t)
            idx = self.spill[key] = self._new_local(_nullable(t))
        if isinstance(t, RefType):
            self.slot_heaps.setdefault(idx, set()).add(t.heap)
        return idx

    def settle_slots(self) -> None:
        """Give each reference spill local its type: the one heap type stored in
        it, else the top of the hierarchy (and then reads cast back)."""
        for idx, heaps in self.slot_heaps.items():
            if len(heaps) == 1:
                self.local_types[idx] = RefType(True, next(iter(heaps)))
            else:
                self.local_types[idx] = RefType(True, self._top(self.local_types[idx]))

    def _top(self, t: ValType) -> AbsHeap:
        assert isinstance(t, RefType)
        return top_heap(t.heap, self.plan.is_func_type)

    def _tslot(self, j: int, t: ValType) -> int:
        key = (j, t)
        idx = self.transfer.get(key)
        if idx is None:
            idx = self.transfer[key] = self._new_local(_nullable(t))
        return idx

    def _check_ref(self, t: ValType) -> None:
        if isinstance(t, RefType) and self.plan.ref_table is None:
            raise AsyncifyError(
                f"{self.where}: a value of reference type {t} is live across a call that "
                "may suspend, and no reference tables are available"
            )

    @staticmethod
    def _get(idx: int, t: ValType) -> list[Instr]:
        """Push local `idx` (declared nullable) as a value of type `t`."""
        if isinstance(t, RefType) and not t.nullable:
            return [_i("local.get", idx), _i("ref.as_non_null")]
        return [_i("local.get", idx)]

    def _original(self, ins: Instr) -> list[Instr]:
        """An original instruction as emitted: reads of a non-nullable local that
        was made nullable get their `ref.as_non_null`."""
        if (
            self.nn_locals
            and ins.op.name in ("local.get", "local.tee")
            and int(ins.imm) in self.nn_locals
        ):
            return [ins, _i("ref.as_non_null")]
        return [ins]

    def _scratch(self, name: str, t: ValType = NumType.I32) -> int:
        idx = self.scratch.get(name)
        if idx is None:
            idx = self.scratch[name] = self._new_local(t)
        return idx

    # -- stack state at a boundary ---------------------------------------------

    def _values(self, i: int, base: int) -> list[ValType]:
        """The operand types above `base` before instruction `i`."""
        types = self.typing.types_before(i)
        out = list(types[base:])
        for t in out:
            if t is BOT:  # pragma: no cover - boundaries are reachable
                raise AsyncifyError(f"{self.where}: unknown operand type at instruction {i}")
        return out  # type: ignore[return-value]

    def _reload(self, base: int, types: Sequence[ValType]) -> None:
        out = self.out
        for j, t in enumerate(types):
            idx = self._slot(base + j, t)
            out.append(_i("local.get", idx))
            if isinstance(t, RefType):
                out.append(_Cast(idx, t))

    def _store(self, base: int, types: Sequence[ValType]) -> None:
        for j in range(len(types) - 1, -1, -1):
            self.out.append(_i("local.set", self._slot(base + j, types[j])))

    # -- emission -----------------------------------------------------------------

    def run(self) -> list[Instr]:
        """The body (without the rewind prologue): the original code, transformed,
        inside ``block $unwind``; a site that sees the callee unwinding stores its
        number in ``$resume`` and branches out to the shared frame-save tail."""
        self.labels.append(("orig", -1))
        n = len(self.instrs)
        start = 0
        moved: list[Instr] = []
        if n > 1 and 0 not in self.site_number and 0 not in self.transformed:
            # The code before the first site or transformed structure runs in the
            # `else` of the rewind prologue (see instrument_function).
            begin, end, moved, start = self._run_range(0, n - 1)
            if end > begin:
                self.labels.append(("extra", -1))
                self._run(begin, end, 0, guarded=False)
                self.labels.pop()
        out = self.out
        head = len(out)
        out.append(_i("block", NumType.I32))
        self.labels.append(("unwind", -1))
        # The final `end` is the function's.
        self._level(start, n - 1, 0, precise=True, moved=moved)
        if self.typing.unreachable[n - 1]:
            # The original never falls off its end; the guard blocks could, but only
            # on a rewind that matched no site (a corrupt frame): trap.
            out.append(_i("unreachable"))
        else:
            # The function's results are in the spill locals of positions 0..
            self._reload(0, list(self.plan.results))
            out.append(_i("return"))
        out.append(_i("end"))
        self.labels.pop()
        out.append(_i("local.set", self._scratch("resume")))
        out.append(_Marker(-1))  # the frame-save tail
        dummy = self.plan.dummy or _dummy
        for t in self.plan.results:
            out += dummy(t)
        out.append(self.instrs[n - 1])
        self.labels.pop()
        self.head = out[:head]
        return out[head:]

    def _unwind_depth(self) -> int:
        for pos in range(len(self.labels) - 1, -1, -1):
            if self.labels[pos][0] == "unwind":
                return len(self.labels) - 1 - pos
        raise AssertionError("no unwind label")  # pragma: no cover

    def _level(
        self,
        start: int,
        stop: int,
        base: int,
        *,
        precise: bool = False,
        moved: Sequence[Instr] = (),
    ) -> None:
        """Emit instructions [start, stop) of a level whose base height is `base`
        (`moved`: the end of a run before `start`, moved into the site there).

        A *precise* level is entered on a rewind only when the target site is in
        it: its last entry (site or transformed structure) then needs no check,
        and the runs after it no guard."""
        i = start
        last = self._last_entry(start, stop) if precise else -1
        passed_last = False
        while i < stop:
            if i in self.site_number:
                # The run right after a site goes inside the site's `if`: it runs
                # exactly when the call ran and returned normally, so it needs no
                # guard of its own.
                after = self._run_range(i + 1, stop)
                self._site(i, base, moved, after, checked=i != last)
                moved = after[2]
                passed_last = passed_last or i == last
                i = after[3]
            elif i in self.transformed:
                passed_last = passed_last or i == last
                nxt = self.typing.block_end[i] + 1
                follows = (
                    not passed_last
                    and self.instrs[i].op.name in ("loop", "if")
                    and nxt < stop
                    and nxt not in self.site_number
                    and nxt not in self.transformed
                )
                if follows:
                    begin, end, after_moved, after_next = self._run_range(nxt, stop)
                    follows = end > begin
                if follows:
                    # The run after it would need a guard: both go inside one
                    # `if` entered when the target is in the structure.
                    self.out += [*self._enter_test(i), _i("if", None)]
                    self.labels.append(("extra", -1))
                    self._structure(i, base, checked=False)
                    self._run(begin, end, base, guarded=False)
                    self.out.append(_i("end"))
                    self.labels.pop()
                    moved, i = after_moved, after_next
                else:
                    i = self._structure(i, base, checked=not passed_last)
            else:
                begin, end, moved, i = self._run_range(i, stop)
                if end > begin:
                    self._run(begin, end, base, guarded=not passed_last)

    def _resume_le(self, value: int) -> list[Instr]:
        """``$resume <= value``. Site k is resumed with ``$resume == k + 1``; at a
        point with n sites before it, ``$resume <= n`` in normal execution (0, or
        one more than the number of a site before it that a rewind resumed: loops
        that test it reset it at their start), and ``> n`` on a rewind."""
        self.resume_tests += 1
        return [_i("local.get", self._scratch("resume")), _i("i32.const", value), _i("i32.le_u")]

    def _enter_test(self, s: int) -> list[Instr]:
        """True in normal execution, and on a rewind whose target is in the
        structure at `s` (reached only with no target before it)."""
        return self._resume_le(max(self._sites_in(s, self.typing.block_end[s])) + 1)

    def _last_entry(self, start: int, stop: int) -> int:
        """The last site or transformed structure of the level [start, stop), or -1."""
        last = -1
        j = start
        while j < stop:
            if j in self.site_number:
                last = j
                j += 1
            elif j in self.transformed:
                last = j
                j = self.typing.block_end[j] + 1
            else:
                j = self._skip(j)
        return last

    def _sites_in(self, start: int, stop: int) -> range:
        """The site numbers of the sites in [start, stop) (numbered in order)."""
        sites = self.plan.sites
        return range(bisect_left(sites, start), bisect_left(sites, stop))

    def _run_range(self, i: int, stop: int) -> tuple[int, int, list[Instr], int]:
        """The run of plain code starting at `i`: (start, end of what the run
        emits, the trailing instructions moved into the next site, next index)."""
        j = i
        while j < stop and j not in self.site_number and j not in self.transformed:
            j = self._skip(j)
        cut = self._movable_tail(i, j) if j in self.site_number else 0
        return i, j - cut, list(self.instrs[j - cut : j]), j

    def _movable_tail(self, start: int, site: int) -> int:
        """How many trailing instructions of the run [start, site) compute some of
        the site's last arguments from constants and locals alone (integer
        arithmetic, deterministic): they move into the site, re-executed there on
        a rewind (the locals they read are saved), instead of spilling what they
        compute."""
        params, _ = self.plan.label_types(self.instrs[site])
        heights = self.typing.heights
        first = heights[site] - len(params)
        best = 0
        low = heights[site]
        k = site - 1
        while k >= start:
            ins = self.instrs[k]
            if ins.op.id not in _PURE or self.typing.unreachable[k]:
                break
            # The lowest height while it runs: it pops its operands first.
            pops = 0 if ins.op.params is None else len(ins.op.params)  # local.get: 0
            low = min(low, heights[k] - pops)
            if low < first:
                break
            if heights[k] == low:
                best = site - k
            k -= 1
        return best

    def _skip(self, i: int) -> int:
        """The index after instruction `i`, or after the whole structure it opens."""
        if self.instrs[i].op.name in _OPENERS:
            return self.typing.block_end[i] + 1
        return i + 1

    def _run(
        self, start: int, stop: int, base: int, *, guarded: bool = True, on_stack: bool = False
    ) -> None:
        """Emit the run [start, stop): reload the values it uses, copy it, spill
        what it leaves. `on_stack`: the values it uses are on the stack already."""
        out = self.out
        typing = self.typing
        reachable_in = not typing.unreachable[start]
        # Values the run never touches stay parked in their spill locals.
        low = self._low_water(start, stop, base)
        if guarded:
            out.append(_i("global.get", self.plan.state_global))
            out.append(_i("i32.eqz"))
            out.append(_i("if", None))
            self.labels.append(("guard", -1))
        if reachable_in and not on_stack:
            self._reload(low, self._values(start, low))
        for k in range(start, stop):
            self._copy(k)
        if typing.unreachable[stop]:
            # The run ends in unreachable code, which may still push values: the
            # enclosing block has no results, so make its end polymorphic too.
            out.append(_i("unreachable"))
        else:
            self._store(low, self._values(stop, low))
        if guarded:
            out.append(_i("end"))
            self.labels.pop()

    def _low_water(self, start: int, stop: int, base: int) -> int:
        """The lowest stack position the run [start, stop) pops or changes (not
        below `base`). The typer's stacks are persistent cons lists, so a position
        is untouched exactly when its cell is the same object throughout."""
        before = self.typing.before
        heights = self.typing.heights
        ref, href = before[start], heights[start]
        low = href
        for k in range(start + 1, stop + 1):
            a, ha = before[k], heights[k]
            b, hb = ref, href
            while ha > hb:
                a = a[1]  # type: ignore[index]
                ha -= 1
            while hb > ha:
                b = b[1]  # type: ignore[index]
                hb -= 1
            while a is not b:
                a = a[1]  # type: ignore[index]
                b = b[1]  # type: ignore[index]
                ha -= 1
            if ha < low:
                low = ha
                if low <= base:
                    return base
        return max(low, base)

    def _copy(self, k: int) -> None:
        """Copy one original instruction inside a run, remapping labels."""
        ins = self.instrs[k]
        name = ins.op.name
        out = self.out
        if name in _OPENERS:
            if name == "try_table":
                bt, catches = ins.imm
                params, results = self.plan.label_types(ins)
                tramp = self._open_trampolines(catches, params, results)
                if tramp is not None:
                    self.copied_tramps[k] = tramp
                ins = Instr(ins.op, (bt, self._catch_labels(catches, tramp)))
            out.append(ins)
            self.labels.append(("orig", k))
            return
        if name == "end":
            out.append(ins)
            start = self.labels.pop()[1]
            if start in self.copied_tramps:
                self._close_trampolines(self.copied_tramps.pop(start))
            return
        if name == "delegate":
            self.labels.pop()
            out.append(_i("delegate", self._delegate_depth(ins.imm, k)))
            return
        if name in _BRANCH_OPS or name in ("br_on_cast", "br_on_cast_fail", "rethrow"):
            self._branch(ins, k)
            return
        out += self._original(ins)

    def _target(self, depth: int) -> tuple[int, int]:
        """The structure an original label depth names, and its new depth."""
        seen = 0
        for pos in range(len(self.labels) - 1, -1, -1):
            kind, start = self.labels[pos]
            if kind == "orig":
                if seen == depth:
                    return start, len(self.labels) - 1 - pos
                seen += 1
        raise AsyncifyError(f"{self.where}: label {depth} out of range")  # pragma: no cover

    def _delegate_depth(self, depth: int, k: int) -> int:
        """A `delegate` label: a legacy try turned into try_table is reached
        through its try_table (from its body; from a handler it cannot be)."""
        start, new = self._target(depth)
        if start not in self.exn_local:
            return new
        for pos in range(len(self.labels) - 1, -1, -1):
            if self.labels[pos] == ("tt", start):
                return len(self.labels) - 1 - pos
        raise AsyncifyError(
            f"{self.where}: instruction {k} (`{self.instrs[k]}`) delegates from a catch "
            "body to its own try, which contains a call that may suspend; not supported"
        )

    def _depth(self, depth: int, k: int) -> int:
        start, new = self._target(depth)
        if start in self.transformed and self._arity(start):
            raise AsyncifyError(
                f"{self.where}: instruction {k} (`{self.instrs[k]}`) targets a structure "
                "that contains a call that may suspend; not supported yet"
            )
        return new

    def _branch(self, ins: Instr, k: int) -> None:
        name = ins.op.name
        out = self.out
        if name == "br_table":
            labels, default = ins.imm
            targets = [self._target(d) for d in (*labels, default)]
            carrying = [s for s, _ in targets if s in self.transformed and self._arity(s)]
            if carrying:
                self._br_table_with_values(targets, self._label_types(carrying[0]))
                return
            depths = [d for _, d in targets]
            out.append(Instr(ins.op, (tuple(depths[:-1]), depths[-1])))
            return
        if name in ("br_on_cast", "br_on_cast_fail"):
            flags, label, ht1, ht2 = ins.imm
            out.append(Instr(ins.op, (flags, self._depth(label, k), ht1, ht2)))
            return
        if name == "rethrow":
            start, new = self._target(ins.imm)
            exn = self.exn_local.get(start)
            if exn is None:
                out.append(Instr(ins.op, new))
            else:  # the try became a try_table: its exception is in a local
                out += [_i("local.get", exn), _i("throw_ref")]
            return
        if name in ("br_on_null", "br_on_non_null"):
            out.append(Instr(ins.op, self._depth(ins.imm, k)))
            return
        start, new = self._target(ins.imm)
        if start not in self.transformed or not self._arity(start):
            out.append(Instr(ins.op, new))
            return
        # Carry the values through the spill locals of the target's positions.
        types = self._label_types(start)
        base = self.bases[start]
        if name == "br":
            self._store(base, types)
            out.append(_i("br", new))
            return
        cond = self._scratch("cond")
        out.append(_i("local.set", cond))
        for j in range(len(types) - 1, -1, -1):
            out.append(_i("local.set", self._tslot(j, types[j])))
        for j, t in enumerate(types):
            out += self._get(self._tslot(j, t), t)
        out.append(_i("local.get", cond))
        out.append(_i("if", None))
        for j, t in enumerate(types):
            out.append(_i("local.get", self._tslot(j, t)))
            out.append(_i("local.set", self._slot(base + j, t)))
        out.append(_i("br", new + 1))
        out.append(_i("end"))

    def _br_table_with_values(
        self, targets: list[tuple[int, int]], types: tuple[ValType, ...]
    ) -> None:
        """A br_table carrying values where some target is transformed: spill the
        values, then branch through one trampoline per distinct target, which puts
        them where that target expects them (its spill locals, or the stack)."""
        out = self.out
        idx = self._scratch("br_table_index")
        out.append(_i("local.set", idx))
        for j in range(len(types) - 1, -1, -1):
            out.append(_i("local.set", self._tslot(j, types[j])))
        distinct: list[tuple[int, int]] = []
        for target in targets:
            if target not in distinct:
                distinct.append(target)
        m = len(distinct)
        out += [_i("block", None) for _ in range(m)]
        positions = [distinct.index(target) for target in targets]
        out.append(_i("local.get", idx))
        out.append(_i("br_table", (tuple(positions[:-1]), positions[-1])))
        for pos, (start, depth) in enumerate(distinct):
            out.append(_i("end"))  # the trampoline for target `pos` starts here
            inside = m - 1 - pos  # trampoline blocks still open around it
            if start in self.transformed:
                base = self.bases[start]
                for j, t in enumerate(types):
                    out.append(_i("local.get", self._tslot(j, t)))
                    out.append(_i("local.set", self._slot(base + j, t)))
            else:
                for j, t in enumerate(types):
                    out += self._get(self._tslot(j, t), t)
            out.append(_i("br", depth + inside))

    def _label_types(self, start: int) -> tuple[ValType, ...]:
        if start < 0:
            return self.plan.results
        params, results = self.plan.label_types(self.instrs[start])
        return params if self.instrs[start].op.name == "loop" else results

    def _arity(self, start: int) -> int:
        return len(self._label_types(start))

    def _structure(self, s: int, base: int, *, checked: bool = True) -> int:
        """Emit a transformed structure starting at `s`; return the index after it.

        `checked`: on a rewind the structure may be reached when the target site
        is not in it (it is not the last entry of a precise level): a block or
        loop is then entered only when the target is in it (its level is
        precise), an `if` takes no branch, or the else branch as an imprecise
        level. Try blocks are entered on every rewind (their levels are not
        precise)."""
        ins = self.instrs[s]
        name = ins.op.name
        end = self.typing.block_end[s]
        params, _results = self.plan.label_types(ins)
        h = self.typing.heights[s]
        inner = h - len(params) - (1 if name == "if" else 0)
        self.bases[s] = inner
        out = self.out
        resume = self._scratch("resume")
        state = self.plan.state_global
        if name == "if":
            else_at = self.typing.else_of.get(s)
            then_end = else_at if else_at is not None else end
            then_sites = self._sites_in(s, then_end)
            cond = [_i("local.get", self._slot(h - 1, NumType.I32))]
            if not then_sites:
                # Never the then branch on a rewind (the else branch is taken).
                out += [_i("i32.const", 0), *cond, _i("global.get", state), _i("select")]
            elif not checked and (else_at is None or not self._sites_in(else_at, end)):
                # On a rewind the target is in the then branch.
                out += [*cond, _i("global.get", state), _i("i32.or")]
            else:
                # On a rewind: the then branch when the target is in it.
                out += [
                    *self._resume_le(max(then_sites) + 1),
                    *cond,
                    _i("global.get", state),
                    _i("select"),
                ]
            out.append(_i("if", None))
            self.labels.append(("orig", s))
            # The then branch is taken on a rewind only when the target is in it.
            self._level(s + 1, then_end, inner, precise=True)
            if else_at is not None:
                out.append(_i("else"))
                self._level(else_at + 1, end, inner, precise=not checked)
            out.append(_i("end"))
            self.labels.pop()
            return end + 1
        if name == "try_table":
            self._try_table(s, inner)
            return end + 1
        if name == "try":
            if s in self.catch_at:
                self._try(s, inner)
                return end + 1
            # try ... delegate (no handlers): kept as it is, with an empty type.
            out.append(_i(name, None))
            self.labels.append(("orig", s))
            self._level(s + 1, end, inner)
            self.labels.pop()
            assert self.instrs[end].op.name == "delegate"
            out.append(_i("delegate", self._delegate_depth(int(self.instrs[end].imm), end)))
            return end + 1
        enter = self._enter_test(s)
        wrapped = checked and name == "loop"
        if wrapped:
            out += [*enter, _i("if", None)]
            self.labels.append(("extra", -1))
        out.append(_i(name, None))
        self.labels.append(("orig", s))
        at, tests = len(out), self.resume_tests
        # A block that a rewind may pass is entered anyway (a test at its entry
        # would cost time in normal execution: switch statements nest many
        # blocks, all entered for every dispatch); its level is not precise.
        self._level(s + 1, end, inner, precise=not (checked and name == "block"))
        if name == "loop" and self.resume_tests > tests:
            # Back at the loop's start in normal execution, $resume must be at most
            # the number of the sites before it again: 0 (kept on a rewind).
            resume = self._scratch("resume")
            out[at:at] = [
                _i("local.get", resume),
                _i("i32.const", 0),
                _i("global.get", state),
                _i("select"),
                _i("local.set", resume),
            ]
        out.append(_i("end"))
        self.labels.pop()
        if wrapped:
            out.append(_i("end"))
            self.labels.pop()
        return end + 1

    def _label_depth(self, pos: int) -> int:
        """The depth of the output label at position `pos` of the label stack."""
        return len(self.labels) - 1 - pos

    def _try_table(self, s: int, inner: int) -> None:
        """A try_table that contains a site: entered on a rewind like a block
        (with an empty type: its values travel through the spill locals)."""
        out = self.out
        bt, catches = self.instrs[s].imm
        del bt
        tramp = self._open_trampolines(catches, (), ())
        out.append(Instr(self.instrs[s].op, (None, self._catch_labels(catches, tramp))))
        self.labels.append(("orig", s))
        self._level(s + 1, self.typing.block_end[s], inner)
        out.append(_i("end"))
        self.labels.pop()
        self._close_trampolines(tramp)

    def _open_trampolines(
        self,
        catches: Sequence[Catch],
        params: tuple[ValType, ...],
        results: tuple[ValType, ...],
    ) -> tuple[int, dict[int, int]] | None:
        """Before a try_table whose catches branch to a transformed structure
        with values (those it keeps in spill locals): open ``block $exit`` and
        one trampoline block per such target, which will receive the values,
        store them and branch on (:meth:`_close_trampolines`). None if no catch
        needs one. The blocks pass the try_table's params through."""
        targets: list[int] = []
        for c in catches:
            start, _ = self._target(c.label)
            if start in self.transformed and self._arity(start) and start not in targets:
                targets.append(start)
        if not targets:
            return None
        out = self.out
        out.append(_i("block", self.plan.block_type(params, results)))
        self.labels.append(("extra", -1))
        exit_pos = len(self.labels) - 1
        where: dict[int, int] = {}
        for start in targets:
            out.append(_i("block", self.plan.block_type(params, self._label_types(start))))
            self.labels.append(("extra", -1))
            where[start] = len(self.labels) - 1
        return exit_pos, where

    def _catch_labels(
        self, catches: Sequence[Catch], tramp: tuple[int, dict[int, int]] | None
    ) -> tuple[Catch, ...]:
        """Catch clauses with their labels remapped (to a trampoline if any)."""
        new = []
        for c in catches:
            start, depth = self._target(c.label)
            if tramp is not None and start in tramp[1]:
                depth = self._label_depth(tramp[1][start])
            elif start in self.transformed and self._arity(start):  # pragma: no cover
                raise AssertionError("catch to a transformed target without a trampoline")
            new.append(c._replace(label=depth))
        return tuple(new)

    def _close_trampolines(self, tramp: tuple[int, dict[int, int]] | None) -> None:
        """After the try_table's end: branch over the trampolines to $exit; each
        trampoline stores its values in the target's spill locals and branches."""
        if tramp is None:
            return
        out = self.out
        exit_pos, where = tramp
        out.append(_i("br", self._label_depth(exit_pos)))
        for start in reversed(where):
            out.append(_i("end"))
            self.labels.pop()
            self._store(self.bases[start], self._label_types(start))
            out.append(_i("br", self._target_depth(start)))
        out.append(_i("end"))
        self.labels.pop()

    def _target_depth(self, start: int) -> int:
        for pos in range(len(self.labels) - 1, -1, -1):
            if self.labels[pos] == ("orig", start):
                return self._label_depth(pos)
        raise AssertionError("target not enclosing")  # pragma: no cover

    def _try(self, s: int, inner: int) -> None:
        """A legacy try with handlers that contains a site (in its body or a
        handler) becomes::

            block $done
              block $hN (result exnref) ... block $h1 (result <tag params> exnref)
                try_table (catch_ref $t1 $h1) ... (catch_all_ref $hN)
                  <body>
                end
                <on a rewind heading into handler k: dummy values, br $hk>
                br $done
              end
              <store the tag's values and the exnref> <handler 1> br $done
              ...
            end

        The exnref sits in a local (saved across suspensions like any other);
        ``rethrow`` of this try becomes ``throw_ref`` of it. A handler is thus
        outside the try_table: a suspension inside it rewinds by branching to
        it with dummy values, which its prologue does not store on a rewind."""
        out = self.out
        plan = self.plan
        end = self.typing.block_end[s]
        catches = self.catch_at[s]
        exn = self.exn_local[s] = self._new_local(EXNREF)
        bounds = [*catches, end]
        handlers: list[tuple[int, int, int | None, tuple[ValType, ...]]] = []
        for c, nxt in zip(catches, bounds[1:], strict=True):
            ins = self.instrs[c]
            tag = int(ins.imm) if ins.op.name == "catch" else None
            params = plan.tag_params(tag) if tag is not None else ()
            handlers.append((c, nxt, tag, params))
        out.append(_i("block", None))
        self.labels.append(("orig", s))  # a branch to the try leaves it
        hpos: list[int] = [0] * len(handlers)
        for k in range(len(handlers) - 1, -1, -1):
            out.append(_i("block", plan.block_type((), (*handlers[k][3], EXNREF))))
            self.labels.append(("extra", -1))
            hpos[k] = len(self.labels) - 1
        clauses = []
        for k, (_c, _nxt, tag, _params) in enumerate(handlers):
            depth = self._label_depth(hpos[k])
            kind = 1 if tag is not None else 3  # catch_ref / catch_all_ref
            clauses.append(Catch(kind, tag, depth))
        out.append(_i("try_table", (None, tuple(clauses))))
        self.labels.append(("tt", s))
        self._level(s + 1, catches[0], inner)
        out.append(_i("end"))
        self.labels.pop()
        # On a rewind whose site is in a handler: branch there.
        resume = self._scratch("resume")
        dispatch: list[Instr] = []
        for k, (c, nxt, _tag, params) in enumerate(handlers):
            nums = [n for i, n in self.site_number.items() if c < i < nxt]
            if not nums:
                continue
            dispatch += [
                _i("local.get", resume),
                _i("i32.const", min(nums) + 1),
                _i("i32.ge_u"),
                _i("local.get", resume),
                _i("i32.const", max(nums) + 1),
                _i("i32.le_u"),
                _i("i32.and"),
                _i("if", None),
            ]
            self.labels.append(("extra", -1))
            for t in params:
                dispatch += (plan.dummy or _dummy)(t)
            dispatch += [
                _i("ref.null", AbsHeap.EXN),
                _i("br", self._label_depth(hpos[k])),
                _i("end"),
            ]
            self.labels.pop()
        if dispatch:
            out += [_i("global.get", plan.state_global), _i("if", None)]
            # (the depths above were computed without this `if`: adjust them)
            self.labels.append(("extra", -1))
            for ins in dispatch:
                if ins.op.name == "br":
                    ins = _i("br", int(ins.imm) + 1)
                out.append(ins)
            self.labels.pop()
            out.append(_i("end"))
        out.append(_i("br", self._target_depth(s)))
        for k, (c, nxt, _tag, params) in enumerate(handlers):
            out.append(_i("end"))  # $hk: the tag's values and the exnref are on the stack
            self.labels.pop()
            values = (*params, EXNREF)
            for j in range(len(values) - 1, -1, -1):
                out.append(_i("local.set", self._tslot(j, values[j])))
            out += [
                _i("global.get", plan.state_global),
                _i("i32.const", STATE_REWINDING),
                _i("i32.ne"),
                _i("if", None),
                _i("local.get", self._tslot(len(params), EXNREF)),
                _i("local.set", exn),
            ]
            for j, t in enumerate(params):
                out += [
                    _i("local.get", self._tslot(j, t)),
                    _i("local.set", self._slot(inner + j, t)),
                ]
            out.append(_i("end"))
            self._level(c + 1, nxt, inner)
            if k + 1 < len(handlers):
                out.append(_i("br", self._target_depth(s)))
        out.append(_i("end"))
        self.labels.pop()

    def _site(
        self,
        i: int,
        base: int,
        moved: Sequence[Instr] = (),
        after: tuple[int, int, list[Instr], int] | None = None,
        *,
        checked: bool = True,
    ) -> None:
        """Emit site `i`. Unless it is the last entry of a precise level (not
        `checked`), it runs only when ``$resume <= k + 1``: in normal execution
        ``$resume`` is at most k, on a rewind it is the target's number plus one,
        at least k + 1."""
        ins = self.instrs[i]
        k = self.site_number[i]
        params, results = self.plan.label_types(ins)
        h = self.typing.heights[i]
        nargs = len(params)
        first = h - nargs
        # The arguments: spilled ones first, then those the moved code computes.
        n_moved = h - self.typing.heights[i - len(moved)] if moved else 0
        args = self._values(i, first)[: nargs - n_moved]
        self.parked_at[i] = h - n_moved
        for m in moved:
            if m.op.name == "local.get":
                self.must_save.add(int(m.imm))
        out = self.out
        if checked:
            out += self._resume_le(k + 1)
            out.append(_i("if", None))
            self.labels.append(("extra", -1))
        self._reload(first, args)
        for m in moved:
            out += self._original(m)
        out.append(ins)
        # After a call the state is normal, or unwinding (1): then branch to the
        # frame-save tail with the site's number plus one (the call's results,
        # dummies, are left behind).
        out += [
            _i("i32.const", k + 1),
            _i("global.get", self.plan.state_global),
            _i("br_if", self._unwind_depth()),
            _i("drop"),
        ]
        run_after = after is not None and after[1] > after[0]
        # When the run after it starts by consuming exactly the call's results (and
        # nothing below them), they stay on the stack.
        handoff = (
            after is not None
            and run_after
            and bool(results)
            and not self.typing.unreachable[after[0]]
            and self._low_water(after[0], after[1], base) == first
        )
        if not handoff:
            self._store(first, list(results))
        if after is not None and run_after:
            self._run(after[0], after[1], base, guarded=False, on_stack=handoff)
        if checked:
            out.append(_i("end"))
            self.labels.pop()

    # -- frames ---------------------------------------------------------------

    def saved_locals(self) -> list[int]:
        """What a frame holds: the original locals live after some site, and the
        spill locals (the parked operand values)."""
        live = 0
        for bits in live_after(self.instrs, self.typing, self.plan.sites, self.n_original).values():
            live |= bits
        original = [i for i in range(self.n_original) if live >> i & 1 or i in self.must_save]
        # The spill locals that hold a value at some site: the operands below it
        # and its arguments other than those the moved code computes.
        parked: set[int] = set()
        for i, height in self.parked_at.items():
            for pos, t in enumerate(self.typing.types_before(i)[:height]):
                if not isinstance(t, (NumType, RefType)):
                    continue  # pragma: no cover - sites are reachable
                idx = self.spill.get((pos, t if isinstance(t, NumType) else self._top(t)))
                if idx is not None:
                    parked.add(idx)
        saved = original + sorted(parked) + sorted(self.exn_local.values())
        for idx in saved:
            self._check_ref(self.local_types[idx])
        return saved

    def frame_code(self, data_global: int) -> tuple[list[Instr], dict[int, list[Instr]]]:
        """The rewind prologue, and the save code per site.

        Numeric locals are stored in the linear-memory frame. References go to
        one table per heap type (:attr:`FunctionPlan.ref_table`), in slots taken
        from that table's stack-pointer global; the frame records where its slots
        start, so that frames of different data buffers (coroutines) may unwind
        and rewind in any order. A rewind takes the values, clears the slots and
        gives them back when they are the top ones."""
        saved = self.saved_locals()
        numeric = [idx for idx in saved if isinstance(self.local_types[idx], NumType)]
        groups: dict[HeapType, list[int]] = {}
        for idx in saved:
            t = self.local_types[idx]
            if isinstance(t, RefType):
                groups.setdefault(t.heap, []).append(idx)
        if self.plan.frame_helper is not None and not groups:
            return self._helper_frames(numeric, self.plan.frame_helper, data_global)
        offsets = []
        size = 0
        for idx in numeric:
            offsets.append(size)
            size += _SIZES[self.local_types[idx]]  # type: ignore[index]
        group_at: list[tuple[HeapType, list[int], int, int, int]] = []
        for heap, members in groups.items():
            assert self.plan.ref_table is not None
            table, sp = self.plan.ref_table(heap)
            group_at.append((heap, members, table, sp, size))
            size += 4
        index_at = size
        size += 4
        owner_at = size
        if self.plan.owner_tags:
            size += 4
        p64 = self.plan.ptr64
        word = 8 if p64 else 4  # header: position at +0, end at +word
        ptr_t = NumType.I64 if p64 else NumType.I32
        ipre = "i64" if p64 else "i32"
        pos = self._scratch("pos64" if p64 else "pos", ptr_t)
        resume = self._scratch("resume")
        rb = self._scratch("ref_base") if group_at else -1

        def mem(name: str, offset: int) -> Instr:
            return _i(name, MemArg(0, offset, self.plan.memory))

        def slot(j: int) -> list[Instr]:
            if j == 0:
                return [_i("local.get", rb)]
            return [_i("local.get", rb), _i("i32.const", j), _i("i32.add")]

        prologue = self._rewind_test() + self._owner_handover(data_global)
        prologue += [
            _i("global.get", data_global),
            _i("global.get", data_global),
            mem(f"{ipre}.load", 0),
            _i(f"{ipre}.const", size),
            _i(f"{ipre}.sub"),
            _i("local.tee", pos),
            mem(f"{ipre}.store", 0),
        ]
        for idx, off in zip(numeric, offsets, strict=True):
            t = self.local_types[idx]
            prologue += [_i("local.get", pos), mem(_LOADS[t], off), _i("local.set", idx)]  # type: ignore[index]
        for heap, members, table, sp, off in group_at:
            n = len(members)
            prologue += [_i("local.get", pos), mem("i32.load", off), _i("local.set", rb)]
            for j, idx in enumerate(members):
                prologue += [*slot(j), _i("table.get", table)]
                t = self.local_types[idx]
                if isinstance(t, RefType) and not t.nullable:  # a parameter
                    prologue.append(_i("ref.as_non_null"))
                prologue.append(_i("local.set", idx))
            prologue += [
                # Clear the slots (no stale references kept alive) and give them back
                # when they are the top ones (always, unless buffers interleave).
                _i("local.get", rb),
                _i("ref.null", heap),
                _i("i32.const", n),
                _i("table.fill", table),
                *slot(n),
                _i("global.get", sp),
                _i("i32.eq"),
                _i("if", None),
                _i("local.get", rb),
                _i("global.set", sp),
                _i("end"),
            ]
        prologue += [
            _i("local.get", pos),
            mem("i32.load", index_at),
            _i("local.set", resume),
            _i("end"),
        ]
        save = [
            _i("global.get", data_global),
            mem(f"{ipre}.load", 0),
            _i("local.tee", pos),
            _i(f"{ipre}.const", size),
            _i(f"{ipre}.add"),
            _i("global.get", data_global),
            mem(f"{ipre}.load", word),
            _i(f"{ipre}.le_u"),
            _i("if", None),
        ]
        for idx, off in zip(numeric, offsets, strict=True):
            t = self.local_types[idx]
            save += [_i("local.get", pos), _i("local.get", idx), mem(_STORES[t], off)]  # type: ignore[index]
        for heap, members, table, sp, off in group_at:
            n = len(members)
            save += [
                _i("global.get", sp),
                _i("local.tee", rb),
                _i("i32.const", n),
                _i("i32.add"),
                _i("table.size", table),
                _i("i32.gt_u"),
                _i("if", None),
                # Grow by at least what is missing (by the slots in use plus n).
                _i("ref.null", heap),
                *slot(n),
                _i("table.grow", table),
                _i("i32.const", -1),
                _i("i32.eq"),
                _i("if", None),
                _i("unreachable"),
                _i("end"),
                _i("end"),
            ]
            for j, idx in enumerate(members):
                save += [*slot(j), _i("local.get", idx), _i("table.set", table)]
            save += [
                *slot(n),
                _i("global.set", sp),
                _i("local.get", pos),
                _i("local.get", rb),
                mem("i32.store", off),
            ]
        save += [
            _i("local.get", pos),
            _i("local.get", resume),
            mem("i32.store", index_at),
        ]
        if self.plan.owner_tags:
            save += [_i("local.get", pos), _i("i32.const", self.plan.func_index)]
            save += [mem("i32.store", owner_at)]
        save += [
            _i("end"),
            # The position always advances: past the end, stop_unwind traps.
            _i("global.get", data_global),
            _i("local.get", pos),
            _i(f"{ipre}.const", size),
            _i(f"{ipre}.add"),
            mem(f"{ipre}.store", 0),
        ]
        saves = {-1: save}
        return prologue, saves

    def _rewind_test(self) -> list[Instr]:
        return [
            _i("global.get", self.plan.state_global),
            _i("i32.const", STATE_REWINDING),
            _i("i32.eq"),
            _i("if", None),
        ]

    def _owner_handover(self, data_global: int) -> list[Instr]:
        """On a rewind with owner tags: when the top frame's owner (its last
        word) is not this function, hand over to it (this call stands for a tail
        call whose caller is gone); a frame of any other function cannot be on
        top here: trap rather than restore this function from it."""
        if not self.plan.tail_owners:
            return []
        p64 = self.plan.ptr64
        ipre = "i64" if p64 else "i32"
        owner = self._scratch("owner")
        code = [
            _i("global.get", data_global),
            _i(f"{ipre}.load", MemArg(0, 0, self.plan.memory)),
            _i(f"{ipre}.const", 4),
            _i(f"{ipre}.sub"),
            _i("i32.load", MemArg(0, 0, self.plan.memory)),
            _i("local.set", owner),
        ]
        dummy = self.plan.dummy or _dummy
        for g, params in self.plan.tail_owners:
            code += [_i("local.get", owner), _i("i32.const", g), _i("i32.eq"), _i("if", None)]
            for t in params:
                code += dummy(t)
            code += [_i("return_call", g), _i("end")]
        code += [
            _i("local.get", owner),
            _i("i32.const", self.plan.func_index),
            _i("i32.ne"),
            _i("if", None),
            _i("unreachable"),
            _i("end"),
        ]
        return code

    def _helper_frames(
        self,
        numeric: list[int],
        helper: Callable[[bool, NumType, int], int],
        data_global: int,
    ) -> tuple[list[Instr], dict[int, list[Instr]]]:
        """Frames written and read by the shared helpers (:class:`FrameHelpers`):
        the saved locals grouped by type, i32 last, followed by the site number
        and (with owner tags) the owner's index, which thus is the frame's last
        word. None stands for the owner (pushed as a constant, dropped on pop)."""
        resume = self._scratch("resume")
        by_type: dict[NumType, list[int | None]] = {}
        for idx in numeric:
            t = self.local_types[idx]
            assert isinstance(t, NumType)
            by_type.setdefault(t, []).append(idx)
        tail: list[int | None] = [resume]
        if self.plan.owner_tags:
            tail.append(None)
        by_type[NumType.I32] = [*by_type.pop(NumType.I32, []), *tail]
        chunks: list[tuple[NumType, list[int | None]]] = []
        for t, members in by_type.items():
            for a in range(0, len(members), HELPER_CHUNK):
                chunks.append((t, members[a : a + HELPER_CHUNK]))
        save: list[Instr] = []
        for t, members in chunks:
            for member in members:
                if member is None:
                    save.append(_i("i32.const", self.plan.func_index))
                else:
                    save.append(_i("local.get", member))
            save.append(_i("call", helper(True, t, len(members))))
        prologue = self._rewind_test() + self._owner_handover(data_global)
        for t, members in reversed(chunks):
            if self.plan.multivalue:
                prologue.append(_i("call", helper(False, t, len(members))))
            for member in reversed(members):
                if not self.plan.multivalue:
                    prologue.append(_i("call", helper(False, t, 1)))
                prologue.append(_i("drop") if member is None else _i("local.set", member))
        prologue.append(_i("end"))
        return prologue, {-1: save}


def instrument_function(plan: FunctionPlan, body: Body, typing: StackTyping) -> Body:
    """Instrument one function body (see the module docstring)."""
    inst = _Instrumenter(plan, body, typing)
    out = inst.run()
    inst.settle_slots()
    prologue, saves = inst.frame_code(plan.data_global)
    if inst.head:
        # The code before the first site: in normal execution, not on a rewind.
        assert prologue[-1].op.name == "end"
        out = [*prologue[:-1], _i("else"), *inst.head, prologue[-1], *out]
    else:
        out = [*prologue, *out]
    final: list[Instr] = []
    for ins in out:
        if isinstance(ins, _Marker):
            final += saves[ins.site]
        elif isinstance(ins, _Cast):
            final += ins.resolve(inst.local_types)
        else:
            final.append(ins)
    extra = inst.local_types[inst.n_original :]
    runs: list[tuple[int, ValType]] = list(body.locals)
    if inst.nn_locals:
        runs = []
        for t in inst.local_types[len(plan.params) : inst.n_original]:
            if runs and runs[-1][1] == t:
                runs[-1] = (runs[-1][0] + 1, t)
            else:
                runs.append((1, t))
    n_kept = len(runs)
    for t in extra:
        if runs and runs[-1][1] == t and len(runs) > n_kept:
            runs[-1] = (runs[-1][0] + 1, t)
        else:
            runs.append((1, t))
    return Body(runs, final)
