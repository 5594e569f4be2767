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
  their spill locals while the level runs.
* **Skipping on rewind.** Each run is wrapped in ``block; global.get $state;
  br_if 0; ...; end``: during a rewind (state 2) it is skipped, with no cost
  per instruction inside it. A site runs when the state is normal or when the
  rewind is heading for it (``$resume == k``). A transformed ``if`` takes, on
  a rewind, the branch whose site-number range holds ``$resume``; loops and
  blocks are simply entered. Nothing writes a local during a rewind before the
  target site is reached, so the restored locals survive.
* **Branches** to a transformed structure that carry values put them in the
  spill locals of the target's positions first (``br_if`` does so only when it
  branches, through a small ``if``). Branch depths are remapped for the guard
  blocks the transform inserts.
* **Unwinding.** After a site's call, ``state == 1`` means the callee is
  unwinding: the function writes its frame (its saved locals, then the site
  number) at the data position, advances the position and returns dummy
  results. The write is skipped when it would pass the buffer's end, but the
  position still advances, so ``asyncify_stop_unwind`` traps as Binaryen's
  does. **Rewinding.** On entry with ``state == 2`` the function pops its
  frame (the position moves back by the frame size) and restores its locals
  and ``$resume``.

Saved per frame: the original locals (parameters included) live after some
site of the function, and every spill local. Frames are fixed-size per
function; one shared tail writes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from wasync._asyncify.liveness import live_after
from wasync._binary.opcodes import OPS, Op
from wasync._binary.types import NumType, RefType, ValType
from wasync._errors import AsyncifyError
from wasync._ir.instr import Body, Instr, MemArg
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


def _i(name: str, imm: object = None) -> Instr:
    return Instr(_BY_NAME[name], imm)


def _zero(t: ValType) -> Instr:
    if t is NumType.I32:
        return _i("i32.const", 0)
    if t is NumType.I64:
        return _i("i64.const", 0)
    if t is NumType.F32:
        return _i("f32.const", 0)
    if t is NumType.F64:
        return _i("f64.const", 0)
    if t is NumType.V128:
        return _i("v128.const", bytes(16))
    assert isinstance(t, RefType)
    if not t.nullable:
        raise AsyncifyError(f"cannot make a dummy value of the non-nullable type {t}")
    return _i("ref.null", t.heap)


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


class _Marker(Instr):
    """A placeholder for the frame-save code of site `k` (known only at the end)."""

    __slots__ = ("site",)

    def __init__(self, site: int) -> None:
        super().__init__(_BY_NAME["nop"])
        self.site = site


class _Instrumenter:
    def __init__(self, plan: FunctionPlan, body: Body, typing: StackTyping) -> None:
        self.plan = plan
        self.body = body
        self.instrs = body.instrs
        self.typing = typing
        self.where = f"function {plan.func_index}" + (f" {plan.name!r}" if plan.name else "")
        self.local_types: list[ValType] = list(body.local_types(plan.params))
        self.n_original = len(self.local_types)
        self.spill: dict[tuple[int, ValType], int] = {}
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
        self._scan()

    # -- analysis of the body -------------------------------------------------

    def _scan(self) -> None:
        instrs = self.instrs
        typing = self.typing
        open_: list[int] = []
        sites: list[int] = []
        self.parent: list[int] = [-1] * len(instrs)
        for i, ins in enumerate(instrs):
            name = ins.op.name
            self.parent[i] = open_[-1] if open_ else -1
            if name in _OPENERS:
                open_.append(i)
            elif name in ("end", "delegate"):
                if open_:
                    open_.pop()
            elif not typing.unreachable[i] and self.plan.is_site(ins):
                if name.startswith("return_call"):
                    # The tail call discards this frame, so it cannot be saved; turning
                    # it into call + return would break the constant-stack guarantee
                    # (deep tail recursion would overflow).
                    raise AsyncifyError(
                        f"{self.where}: tail call `{ins}` to code that may suspend "
                        f"(instruction {i}) is not supported yet"
                    )
                sites.append(i)
                self.site_number[i] = len(sites) - 1
                for s in open_:
                    self.transformed.add(s)
        self.plan.sites = sites
        for s in self.transformed:
            name = instrs[s].op.name
            if name not in ("block", "loop", "if"):
                raise AsyncifyError(
                    f"{self.where}: a call that may suspend inside `{name}` "
                    f"(instruction {s}) is not supported yet"
                )
        # Site-number range per transformed structure branch (for `if`).
        self.ranges: dict[tuple[int, str], tuple[int, int]] = {}

    # -- locals -----------------------------------------------------------------

    def _new_local(self, t: ValType) -> int:
        self.local_types.append(t)
        return len(self.local_types) - 1

    def _slot(self, pos: int, t: ValType) -> int:
        if not isinstance(t, NumType):
            raise AsyncifyError(
                f"{self.where}: a value of reference type {t} is live across a call that "
                "may suspend; saving references is not supported yet"
            )
        key = (pos, t)
        idx = self.spill.get(key)
        if idx is None:
            idx = self.spill[key] = self._new_local(t)
        return idx

    def _tslot(self, j: int, t: ValType) -> int:
        key = (j, t)
        idx = self.transfer.get(key)
        if idx is None:
            idx = self.transfer[key] = self._new_local(t)
        return idx

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
        for j, t in enumerate(types):
            self.out.append(_i("local.get", self._slot(base + j, t)))

    def _store(self, base: int, types: Sequence[ValType]) -> None:
        for j in range(len(types) - 1, -1, -1):
            self.out.append(_i("local.set", self._slot(base + j, types[j])))

    # -- emission -----------------------------------------------------------------

    def run(self) -> list[Instr]:
        """The body (without the rewind prologue): the original code, transformed,
        inside ``block $unwind``; a site that sees the callee unwinding stores its
        number in ``$resume`` and branches out to the shared frame-save tail."""
        out = self.out
        self.labels.append(("orig", -1))
        out.append(_i("block", None))
        self.labels.append(("unwind", -1))
        n = len(self.instrs)
        self._level(0, n - 1, 0)  # the final `end` is the function's
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
        out.append(_Marker(-1))  # the frame-save tail
        out += [_zero(t) for t in self.plan.results]
        out.append(self.instrs[n - 1])
        self.labels.pop()
        return out

    def _unwind_depth(self) -> int:
        for pos in range(len(self.labels) - 1, -1, -1):
            if self.labels[pos][0] == "unwind":
                return len(self.labels) - 1 - pos
        raise AssertionError("no unwind label")  # pragma: no cover

    def _level(self, start: int, stop: int, base: int) -> None:
        """Emit instructions [start, stop) of a level whose base height is `base`."""
        i = start
        moved: list[Instr] = []
        while i < stop:
            if i in self.site_number:
                # The run right after a site goes inside the site's `if`: it runs
                # exactly when the call ran and returned normally, so it needs no
                # guard of its own.
                after = self._run_range(i + 1, stop)
                self._site(i, base, moved, after)
                moved = after[2]
                i = after[3]
            elif i in self.transformed:
                i = self._structure(i, base)
            else:
                begin, end, moved, i = self._run_range(i, stop)
                if end > begin:
                    self._run(begin, end, base)

    def _run_range(self, i: int, stop: int) -> tuple[int, int, list[Instr], int]:
        """The run of plain code starting at `i`: (start, end of what the run
        emits, the trailing instructions moved into the next site, next index)."""
        j = i
        while j < stop and j not in self.site_number and j not in self.transformed:
            j = self._skip(j)
        cut = self._movable_tail(i, j) if j in self.site_number else 0
        return i, j - cut, list(self.instrs[j - cut : j]), j

    def _movable_tail(self, start: int, site: int) -> int:
        """How many trailing instructions of the run [start, site) only push a
        constant or a local each, feeding the site's arguments directly: they move
        into the site (re-executed there on a rewind) instead of being spilled."""
        params, _ = self.plan.label_types(self.instrs[site])
        heights = self.typing.heights
        count = 0
        while count < len(params) and site - count - 1 >= start:
            k = site - count - 1
            ins = self.instrs[k]
            name = ins.op.name
            if not (name.endswith(".const") or name == "local.get"):
                break
            if heights[k] + 1 != heights[k + 1] or self.typing.unreachable[k]:
                break
            count += 1
        return count

    def _skip(self, i: int) -> int:
        """The index after instruction `i`, or after the whole structure it opens."""
        if self.instrs[i].op.name in _OPENERS:
            return self.typing.block_end[i] + 1
        return i + 1

    def _run(self, start: int, stop: int, base: int, *, guarded: bool = True) -> None:
        out = self.out
        typing = self.typing
        reachable_in = not typing.unreachable[start]
        # Values the run never touches stay parked in their spill locals.
        low = self._low_water(start, stop, base)
        if guarded:
            out.append(_i("block", None))
            self.labels.append(("guard", -1))
            out.append(_i("global.get", self.plan.state_global))
            out.append(_i("br_if", 0))
        if reachable_in:
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
            out.append(self._remap_catches(ins) if name == "try_table" else ins)
            self.labels.append(("orig", k))
            return
        if name == "end":
            out.append(ins)
            self.labels.pop()
            return
        if name == "delegate":
            self.labels.pop()
            out.append(_i("delegate", self._depth(ins.imm, k)))
            return
        if name in _BRANCH_OPS or name in ("br_on_cast", "br_on_cast_fail", "rethrow"):
            self._branch(ins, k)
            return
        out.append(ins)

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

    def _depth(self, depth: int, k: int) -> int:
        start, new = self._target(depth)
        if start in self.transformed:
            raise AsyncifyError(
                f"{self.where}: instruction {k} (`{self.instrs[k]}`) targets a structure "
                "that contains a call that may suspend; not supported yet"
            )
        return new

    def _remap_catches(self, ins: Instr) -> Instr:
        bt, catches = ins.imm
        # Catch labels are relative to the try_table's *enclosing* labels.
        new = tuple(c._replace(label=self._depth(c.label, -1)) for c in catches)
        return Instr(ins.op, (bt, new))

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
        if name in ("br_on_null", "br_on_non_null", "rethrow"):
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
            out.append(_i("local.get", self._tslot(j, t)))
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
                    out.append(_i("local.get", self._tslot(j, t)))
            out.append(_i("br", depth + inside))

    def _label_types(self, start: int) -> tuple[ValType, ...]:
        params, results = self.plan.label_types(self.instrs[start])
        return params if self.instrs[start].op.name == "loop" else results

    def _arity(self, start: int) -> int:
        return len(self._label_types(start))

    def _structure(self, s: int, base: int) -> int:
        """Emit a transformed block/loop/if starting at `s`; return the index after it."""
        ins = self.instrs[s]
        name = ins.op.name
        end = self.typing.block_end[s]
        params, _results = self.plan.label_types(ins)
        h = self.typing.heights[s]
        inner = h - len(params) - (1 if name == "if" else 0)
        self.bases[s] = inner
        out = self.out
        if name == "if":
            else_at = self.typing.else_of.get(s)
            then_sites = [n for i, n in self.site_number.items() if s < i < (else_at or end)]
            cond_slot = self._slot(h - 1, NumType.I32)
            out.append(_i("global.get", self.plan.state_global))
            out.append(_i("if", NumType.I32))
            self.labels.append(("extra", -1))
            if then_sites:
                resume = self._scratch("resume")
                out += [
                    _i("local.get", resume),
                    _i("i32.const", min(then_sites)),
                    _i("i32.ge_u"),
                    _i("local.get", resume),
                    _i("i32.const", max(then_sites)),
                    _i("i32.le_u"),
                    _i("i32.and"),
                ]
            else:
                out.append(_i("i32.const", 0))
            out.append(_i("else"))
            out.append(_i("local.get", cond_slot))
            out.append(_i("end"))
            self.labels.pop()
            out.append(_i("if", None))
            self.labels.append(("orig", s))
            self._level(s + 1, else_at if else_at is not None else end, inner)
            if else_at is not None:
                out.append(_i("else"))
                self._level(else_at + 1, end, inner)
            out.append(_i("end"))
            self.labels.pop()
            return end + 1
        out.append(_i(name, None))
        self.labels.append(("orig", s))
        self._level(s + 1, end, inner)
        out.append(_i("end"))
        self.labels.pop()
        return end + 1

    def _site(
        self,
        i: int,
        base: int,
        moved: Sequence[Instr] = (),
        after: tuple[int, int, list[Instr], int] | None = None,
    ) -> None:
        ins = self.instrs[i]
        k = self.site_number[i]
        params, results = self.plan.label_types(ins)
        h = self.typing.heights[i]
        nargs = len(params)
        first = h - nargs
        # The arguments: spilled ones first, then the moved constants/locals.
        args = self._values(i, first)[: nargs - len(moved)]
        for m in moved:
            if m.op.name == "local.get":
                self.must_save.add(int(m.imm))
        out = self.out
        resume = self._scratch("resume")
        out += [
            _i("global.get", self.plan.state_global),
            _i("i32.eqz"),
            _i("local.get", resume),
            _i("i32.const", k),
            _i("i32.eq"),
            _i("i32.or"),
            _i("if", None),
        ]
        self.labels.append(("extra", -1))
        # $resume = k now (it only matters when the callee unwinds; on a rewind it
        # already is k), so that the unwind check is one branch.
        out += [_i("i32.const", k), _i("local.set", resume)]
        self._reload(first, args)
        out += moved
        out.append(ins)
        # After a call the state is normal, or unwinding (1): then save the frame.
        out += [_i("global.get", self.plan.state_global), _i("br_if", self._unwind_depth())]
        self._store(first, list(results))
        if after is not None and after[1] > after[0]:
            self._run(after[0], after[1], base, guarded=False)
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
        saved = original + sorted(self.spill.values())
        for idx in saved:
            t = self.local_types[idx]
            if not isinstance(t, NumType):
                raise AsyncifyError(
                    f"{self.where}: local {idx} of reference type {t} would have to be "
                    "saved across a suspension; not supported yet"
                )
        return saved

    def frame_code(self, data_global: int) -> tuple[list[Instr], dict[int, list[Instr]]]:
        """The rewind prologue, and the save code per site."""
        saved = self.saved_locals()
        offsets = []
        size = 0
        for idx in saved:
            offsets.append(size)
            size += _SIZES[self.local_types[idx]]  # type: ignore[index]
        index_at = size
        size += 4
        p64 = self.plan.ptr64
        word = 8 if p64 else 4  # header: position at +0, end at +word
        ptr_t = NumType.I64 if p64 else NumType.I32
        ipre = "i64" if p64 else "i32"
        pos = self._scratch("pos64" if p64 else "pos", ptr_t)
        resume = self._scratch("resume")

        def mem(name: str, offset: int) -> Instr:
            return _i(name, MemArg(0, offset, 0))

        prologue = [
            _i("global.get", self.plan.state_global),
            _i("i32.const", STATE_REWINDING),
            _i("i32.eq"),
            _i("if", None),
            _i("global.get", data_global),
            _i("global.get", data_global),
            mem(f"{ipre}.load", 0),
            _i(f"{ipre}.const", size),
            _i(f"{ipre}.sub"),
            _i("local.tee", pos),
            mem(f"{ipre}.store", 0),
        ]
        for idx, off in zip(saved, offsets, strict=True):
            t = self.local_types[idx]
            prologue += [_i("local.get", pos), mem(_LOADS[t], off), _i("local.set", idx)]  # type: ignore[index]
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
        for idx, off in zip(saved, offsets, strict=True):
            t = self.local_types[idx]
            save += [_i("local.get", pos), _i("local.get", idx), mem(_STORES[t], off)]  # type: ignore[index]
        save += [
            _i("local.get", pos),
            _i("local.get", resume),
            mem("i32.store", index_at),
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


def instrument_function(plan: FunctionPlan, body: Body, typing: StackTyping) -> Body:
    """Instrument one function body (see the module docstring)."""
    inst = _Instrumenter(plan, body, typing)
    out = inst.run()
    prologue, saves = inst.frame_code(plan.data_global)
    final: list[Instr] = list(prologue)
    for ins in out:
        if isinstance(ins, _Marker):
            final += saves[ins.site]
        else:
            final.append(ins)
    extra = inst.local_types[inst.n_original :]
    runs: list[tuple[int, ValType]] = list(body.locals)
    for t in extra:
        if runs and runs[-1][1] == t and len(runs) > len(body.locals):
            runs[-1] = (runs[-1][0] + 1, t)
        else:
            runs.append((1, t))
    return Body(runs, final)
