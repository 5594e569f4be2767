"""Which locals are live after each call site: backward dataflow on bytecode.

The control-flow graph comes from the structured instructions: a branch to a
``block``/``if``/``try`` label goes past its ``end``, to a ``loop`` label back
to its first instruction; ``else`` jumps to the ``end``; ``return``,
``unreachable``, ``throw`` and tail calls leave the function. Sets are Python
ints used as bit sets; the iteration runs to a fixpoint (loops converge in a
few passes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    from wasync._ir.instr import Instr
    from wasync._ir.stack import StackTyping

__all__ = ["live_after"]

_EXITS = frozenset(
    {"return", "unreachable", "throw", "throw_ref", "rethrow", "return_call",
     "return_call_indirect", "return_call_ref", "br_table", "br"}
)  # fmt: skip
_OPENERS = frozenset({"block", "loop", "if", "try", "try_table"})


def _successors(instrs: Sequence[Instr], typing: StackTyping) -> list[tuple[int, ...]]:
    n = len(instrs)
    succ: list[tuple[int, ...]] = [()] * n
    # Label targets: for every instruction, the structure each label depth names.
    open_: list[int] = []
    for i, ins in enumerate(instrs):
        name = ins.op.name

        def target(depth: int) -> int:
            if depth >= len(open_):
                return n  # the function label: leaving the function
            s = open_[-1 - depth]
            if instrs[s].op.name == "loop":
                return s + 1
            return typing.block_end[s] + 1

        nxt = (i + 1,) if i + 1 < n else ()
        if name in _OPENERS:
            if name == "if":
                e = typing.else_of.get(i)
                other = e + 1 if e is not None else typing.block_end[i] + 1
                succ[i] = (i + 1, other)
            else:
                succ[i] = nxt
            open_.append(i)
        elif name == "end":
            if open_:
                open_.pop()
            succ[i] = nxt
        elif name == "else":
            # Reached at the end of the then-branch: continue after the `end`.
            s = open_[-1] if open_ else -1
            succ[i] = (typing.block_end[s] + 1,) if s >= 0 else ()
        elif name == "br":
            succ[i] = (target(int(ins.imm)),)
        elif name in ("br_if", "br_on_null", "br_on_non_null"):
            succ[i] = (*nxt, target(int(ins.imm)))
        elif name in ("br_on_cast", "br_on_cast_fail"):
            succ[i] = (*nxt, target(int(ins.imm[1])))
        elif name == "br_table":
            labels, default = ins.imm
            succ[i] = tuple({target(int(d)) for d in (*labels, default)})
        elif name in _EXITS:
            succ[i] = ()
        elif name == "delegate":
            if open_:
                open_.pop()
            succ[i] = nxt
        else:
            succ[i] = nxt
    # Exception handlers (catch bodies, try_table catch targets) are entered from
    # anywhere inside their try: approximate by making every instruction of a try
    # body also flow to the handler's start. Functions with exceptions are rare in
    # instrumented code, and over-approximating liveness is always safe.
    return succ


def live_after(
    instrs: Sequence[Instr], typing: StackTyping, sites: Sequence[int], n_locals: int
) -> dict[int, int]:
    """For each site index, the bit set of locals live right after it."""
    n = len(instrs)
    succ = _successors(instrs, typing)
    use = [0] * n
    kill = [0] * n
    has_exceptions = False
    for i, ins in enumerate(instrs):
        name = ins.op.name
        if name == "local.get":
            use[i] = 1 << int(ins.imm)
        elif name in {"local.set", "local.tee"}:
            kill[i] = 1 << int(ins.imm)
        elif name in ("try", "try_table", "catch", "catch_all", "delegate"):
            has_exceptions = True
    if has_exceptions:
        # Handlers can be entered from any point of a try body: be conservative.
        everything = (1 << n_locals) - 1
        return dict.fromkeys(sites, everything)
    live_in = [0] * (n + 1)
    changed = True
    while changed:
        changed = False
        for i in range(n - 1, -1, -1):
            out = 0
            for s in succ[i]:
                out |= live_in[s]
            new = use[i] | (out & ~kill[i])
            if new != live_in[i]:
                live_in[i] = new
                changed = True
    result: dict[int, int] = {}
    for site in sites:
        out = 0
        for s in succ[site]:
            out |= live_in[s]
        result[site] = out
    return result
