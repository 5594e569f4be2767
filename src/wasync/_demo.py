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
    return await _wasi_demo()


# A WASI command written by hand: opens "book.txt" in its preopened directory
# (fd 3) and copies it to stdout 64 bytes at a time, sleeping 50 ms
# (poll_oneoff on the monotonic clock) before every read.
WASI_WAT = r"""
(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "book.txt")
  ;; 64: one clock subscription (48 bytes), 128: its event, 160: an iovec,
  ;; 168: byte counts, 172: the opened fd, 176: event count, 256: the buffer
  (func (export "_start")
    (local $fd i32) (local $n i32)
    (if (call $path_open (i32.const 3) (i32.const 0) (i32.const 0) (i32.const 8)
                         (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 172))
      (then (call $exit (i32.const 2))))
    (local.set $fd (i32.load (i32.const 172)))
    (i32.store (i32.const 80) (i32.const 1))           ;; clock: monotonic
    (i64.store (i32.const 88) (i64.const 50000000))    ;; timeout: 50 ms
    (loop $next
      (drop (call $poll (i32.const 64) (i32.const 128) (i32.const 1) (i32.const 176)))
      (i32.store (i32.const 160) (i32.const 256))
      (i32.store (i32.const 164) (i32.const 64))
      (if (call $fd_read (local.get $fd) (i32.const 160) (i32.const 1) (i32.const 168))
        (then (call $exit (i32.const 3))))
      (local.set $n (i32.load (i32.const 168)))
      (if (local.get $n)
        (then
          (i32.store (i32.const 164) (local.get $n))
          (drop (call $fd_write (i32.const 1) (i32.const 160) (i32.const 1) (i32.const 168)))
          (br $next))))
    (call $exit (i32.const 0))))
"""


async def _wasi_demo(programs: int = 100, chunks: int = 10) -> int:
    """Many WASI programs on one event loop: each sleeps and reads its own file
    through wasync's async WASI; progress is shown as they go."""
    import wasync  # noqa: PLC0415

    out = sys.stdout.write
    out(
        f"\nasync WASI: {programs} programs on one event loop, each copying its "
        f"{chunks * 64}-byte book.txt to stdout in {chunks} reads with a 50 ms sleep before each\n"
    )
    module = wasync.Module.from_wat(WASI_WAT)
    books = [
        (f"program {p:03d}: " + "all work and no play " * 40).encode()[: chunks * 64]
        for p in range(programs)
    ]
    outputs = [bytearray() for _ in range(programs)]
    asyncified = wasync.Module(wasync.asyncify(module.wasm, imports=["wasi_snapshot_preview1.*"]))
    strategies: list[wasync.Strategy] = ["fiber", "thread", "asyncify"]
    modules = {"fiber": module, "thread": module, "asyncify": asyncified}
    t0 = time.perf_counter()

    async def one(p: int) -> int:
        wasi = wasync.Wasi(
            ["book"],
            preopens={"/": wasync.MemoryFS({"book.txt": books[p]})},
            stdout=outputs[p],
        )
        strategy = strategies[p % len(strategies)]
        return await wasi.run(modules[strategy], strategy=strategy)

    tty = sys.stdout.isatty()
    # On a terminal the progress line is redrawn in place; elsewhere, one line each.
    start, end = ("\r", "") if tty else ("", "\n")

    async def progress() -> None:
        total = programs * chunks * 64
        while True:
            done = sum(len(o) for o in outputs)
            out(f"{start}  {done * 100 // total:3d}% of {total:,} bytes copied{end}")
            sys.stdout.flush()
            await asyncio.sleep(0.1 if tty else 0.2)

    ticker = asyncio.create_task(progress())
    try:
        codes = await asyncio.gather(*(one(p) for p in range(programs)))
    finally:
        ticker.cancel()
    elapsed = time.perf_counter() - t0
    ok = codes == [0] * programs and [bytes(o) for o in outputs] == books
    sleeping = chunks * 0.05 + 0.05
    out(
        f"{start}  done in {elapsed:.2f} s wall time (each program sleeps {sleeping:.2f} s; "
        f"one after another they would take {programs * sleeping:.0f} s), "
        f"output {'identical to every file' if ok else 'WRONG'}, strategies "
        f"{', '.join(strategies)} in turn\n"
    )
    return 0 if ok else 1
