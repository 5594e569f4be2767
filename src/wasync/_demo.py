"""`wasync demo`: the codec on an embedded module, end to end."""

from __future__ import annotations

import asyncio
import sys
import time

DEMO_WAT = r"""
(module
  (import "env" "fetch_text" (func $fetch_text (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (table 2 funcref)
  (elem (i32.const 0) $double $square)
  (type $unop (func (param i32) (result i32)))
  (func $double (type $unop) (i32.mul (local.get 0) (i32.const 2)))
  (func $square (type $unop) (i32.mul (local.get 0) (local.get 0)))
  (func $fac (export "fac") (param $n i64) (result i64)
    (if (result i64) (i64.le_u (local.get $n) (i64.const 1))
      (then (i64.const 1))
      (else (i64.mul (local.get $n) (call $fac (i64.sub (local.get $n) (i64.const 1)))))))
  (func $sum_apply (export "sum_apply") (param $f i32) (param $n i32) (result i32)
    (local $acc i32)
    (block $done
      (loop $next
        (br_if $done (i32.eqz (local.get $n)))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (local.set $acc
          (i32.add (local.get $acc)
            (call_indirect (type $unop) (local.get $n) (local.get $f))))
        (br $next)))
    (i32.add (local.get $acc) (call $fetch_text (i32.const 0) (i32.const 16))))
)
"""


def run_demo() -> int:
    import wasmtime  # noqa: PLC0415 - slow to import; only the demo needs it

    import wasync  # noqa: PLC0415 - the demo shows the public API

    out = sys.stdout.write
    wasm = bytes(wasmtime.wat2wasm(DEMO_WAT))
    out("wasync demo: the binary toolkit on an embedded module\n\n")
    summary = wasync.summarize(wasm, functions=True)
    out(
        f"module: {summary.size} bytes; features beyond the MVP: "
        f"{', '.join(summary.features) or 'none'}\n"
    )
    for module, name, desc in summary.imports:
        out(f"  import {module}.{name}: {desc}\n")
    for name, desc in summary.exports:
        out(f"  export {name}: {desc}\n")

    m = wasync.decode_module(wasm)
    names = m.function_names()
    index = next(i for i, n in names.items() if n == "sum_apply")
    body = m.body(index)
    typing = wasync.type_function(m, index, body=body)
    out(f"\nfunction {index} ${names[index]} {m.func_type(index)}, operand stack before each:\n")
    depth = 0
    for i, ins in enumerate(body.instrs):
        if ins.op.name in ("end", "else"):
            depth -= 1
        stack = " ".join(str(t) for t in typing.types_before(i)) or "-"
        out(f"  {'  ' * depth}{ins!s:<32} [{stack}]\n")
        if ins.op.opens_block or ins.op.name == "else":
            depth += 1

    again = wasync.encode_module(m)
    body_same = wasync.encode_body(body) == m.codes[index - m.num_imported_funcs].raw
    out(
        f"\nround trip: module {'identical' if again == wasm else 'DIFFERENT'}, "
        f"body {'identical' if body_same else 'DIFFERENT'}\n"
    )
    corrupt = bytearray(wasm)
    first = m.codes[0]
    corrupt[first.offset + 1] = 0xFF  # the first opcode of the first body (no locals)
    try:
        bad = wasync.decode_module(bytes(corrupt))
        for f in range(bad.num_imported_funcs, bad.num_imported_funcs + len(bad.codes)):
            bad.body(f)
        out("corrupted module: decoded without error?!\n")
        return 1
    except wasync.WasyncError as e:
        out(f"corrupted module: {type(e).__name__}: {e}\n")
    if again != wasm:
        return 1
    return asyncio.run(_runtime_demo(wasm))


async def _runtime_demo(wasm: bytes) -> int:
    """The same module's import `fetch_text` made async: ten instances per
    strategy, each awaiting 50 ms in it, run concurrently on one event loop."""
    import wasync  # noqa: PLC0415

    out = sys.stdout.write
    out("\nthe async runtime: `env.fetch_text` is an `async def` awaiting 50 ms\n")

    async def fetch_text(ptr: int, n: int) -> int:
        await asyncio.sleep(0.05)
        return n

    asyncified, report = wasync.asyncify_with_report(wasm, imports=["env.fetch_text"])
    out(f"  wasync asyncify: {report.summary()}\n")
    expected = sum(2 * i for i in range(4)) + 16  # $double over 0..3, then fetch_text(0, 16)
    for strategy, module in (("fiber", wasm), ("thread", wasm), ("asyncify", asyncified)):
        instances = [
            await wasync.instantiate(module, {"env": {"fetch_text": fetch_text}}, strategy=strategy)  # type: ignore[arg-type]
            for _ in range(10)
        ]
        t0 = time.perf_counter()
        results = await asyncio.gather(*(i.exports.sum_apply(0, 4) for i in instances))
        elapsed = time.perf_counter() - t0
        for inst in instances:
            inst.close()
        ok = all(r == expected for r in results)
        out(
            f"  {strategy:<9} 10 instances x 50 ms import: {elapsed * 1000:4.0f} ms wall time, "
            f"results {'all ' + str(expected) if ok else results}\n"
        )
        if not ok:
            return 1
    return 0
