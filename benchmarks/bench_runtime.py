"""Runtime benchmark: the cost of suspending, of plain host calls, and of memory.

In one run, per strategy:

* suspend + resume round trip of an async import awaiting ``asyncio.sleep(0)``,
  called at wasm call depth 1 and 20, against the physical floor: a bare
  ``await asyncio.sleep(0)`` loop in Python;
* a call to a plain (non-async) Python import that does not suspend, against
  wasmtime-py's own synchronous host call (``Linker.define_func``);
* memory per suspended instance: RSS growth over 1,000 instances, each with a
  call suspended in an import (in a fresh process per strategy).

"fiber-python-callback" is the fiber strategy with the Python callback for
async imports, what runs where the C one (``_native.c``) is not built.

Usage: python benchmarks/bench_runtime.py [--calls N] [--repeat N] [--instances N]
                                          [--strategies a,b]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, cast

import wasmtime

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import wasync
from wasync._runtime import _fiber

WAT = r"""
(module
  (import "env" "wait" (func $wait (param i32) (result i32)))
  (import "env" "plain" (func $plain (param i32) (result i32)))
  (memory (export "memory") 1)
  (func $down (param $depth i32) (param $x i32) (result i32)
    (if (result i32) (i32.le_u (local.get $depth) (i32.const 1))
      (then (call $wait (local.get $x)))
      (else (i32.add (i32.const 1)
        (call $down (i32.sub (local.get $depth) (i32.const 1)) (local.get $x))))))
  (func (export "suspend_loop") (param $n i32) (param $depth i32) (result i32)
    (local $i i32) (local $acc i32)
    (loop $l
      (local.set $acc (i32.add (local.get $acc) (call $down (local.get $depth) (local.get $i))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (local.get $n))))
    (local.get $acc))
  (func (export "plain_loop") (param $n i32) (result i32)
    (local $i i32) (local $acc i32)
    (loop $l
      (local.set $acc (i32.add (local.get $acc) (call $plain (local.get $i))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (local.get $n))))
    (local.get $acc))
  (func (export "hold") (result i32) (call $wait (i32.const 0))))
"""
STRATEGIES: tuple[wasync.Strategy, ...] = ("fiber", "asyncify", "thread")
# Rows of the table: the strategies, and the fiber strategy with the Python
# callback for async imports (what runs where the C one, _native.c, is not built).
ROWS = ("fiber", "fiber-python-callback", "asyncify", "thread")


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


async def bare_loop(n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        await asyncio.sleep(0)
    return (time.perf_counter() - t0) / n


def module_for(strategy: wasync.Strategy) -> wasync.Module:
    if strategy == "asyncify":
        from tests.support.binaryen import binaryen_asyncify  # noqa: PLC0415

        return wasync.Module(binaryen_asyncify(WAT, imports=["env.wait"]))
    return wasync.Module.from_wat(WAT)


async def wait(x: int) -> int:
    await asyncio.sleep(0)
    return x


def plain(x: int) -> int:
    return x


async def suspend_cost(
    module: wasync.Module, strategy: wasync.Strategy, n: int, depth: int
) -> float:
    inst = await wasync.instantiate(
        module, {"env": {"wait": wait, "plain": plain}}, strategy=strategy
    )
    await inst.exports.suspend_loop(10, depth)
    t0 = time.perf_counter()
    await inst.exports.suspend_loop(n, depth)
    elapsed = (time.perf_counter() - t0) / n
    inst.close()
    return elapsed


async def plain_cost(module: wasync.Module, strategy: wasync.Strategy, n: int) -> float:
    inst = await wasync.instantiate(
        module, {"env": {"wait": wait, "plain": plain}}, strategy=strategy
    )
    await inst.exports.plain_loop(10)
    t0 = time.perf_counter()
    await inst.exports.plain_loop(n)
    elapsed = (time.perf_counter() - t0) / n
    inst.close()
    return elapsed


def wasmtime_py_plain_cost(n: int) -> float:
    engine = wasmtime.Engine()
    store = wasmtime.Store(engine)
    linker = wasmtime.Linker(engine)
    i32 = wasmtime.ValType.i32()
    ft = wasmtime.FuncType([i32], [i32])
    linker.define_func("env", "wait", ft, plain)
    linker.define_func("env", "plain", ft, plain)
    inst = linker.instantiate(store, wasmtime.Module(engine, bytes(wasmtime.wat2wasm(WAT))))
    run: Any = inst.exports(store)["plain_loop"]
    run(store, 10)
    t0 = time.perf_counter()
    run(store, n)
    return (time.perf_counter() - t0) / n


async def memory_per_instance(
    module: wasync.Module, strategy: wasync.Strategy, count: int
) -> float:
    gate = asyncio.Event()

    async def hold(x: int) -> int:
        await gate.wait()
        return x

    gc.collect()
    before = rss_bytes()
    instances = [
        await wasync.instantiate(module, {"env": {"wait": hold, "plain": plain}}, strategy=strategy)
        for _ in range(count)
    ]
    tasks = [asyncio.create_task(i.exports.hold()) for i in instances]
    for _ in range(20):
        await asyncio.sleep(0)
    after = rss_bytes()
    gate.set()
    await asyncio.gather(*tasks)
    for inst in instances:
        inst.close()
    return (after - before) / count


def memory_in_a_fresh_process(row: str, count: int) -> float:
    """memory_per_instance for table row `row`, in a process of its own: in
    this one, the memory freed by an earlier row would be reused (the
    allocator keeps it) and flatter the later rows."""
    out = subprocess.run(
        [sys.executable, __file__, "--memory-only", row, "--instances", str(count)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return float(out.strip().splitlines()[-1])


async def memory_only(row: str, count: int) -> None:
    if row == "fiber-python-callback":
        _fiber.NATIVE_CALLBACK = None
    strategy = cast("wasync.Strategy", "fiber" if row.startswith("fiber") else row)
    module = module_for(strategy)
    await memory_per_instance(module, strategy, 10)  # warm up: compile, caches
    print(await memory_per_instance(module, strategy, count))


async def main_async(args: argparse.Namespace) -> None:
    n = args.calls
    await bare_loop(n)  # warm up the loop and the allocator before anything is timed
    # The floor is the best of several bare loops spread over the whole run: a
    # one-off slow measurement must not flatter the ratios.
    names = []
    for name in args.strategies.split(","):
        if name not in ROWS:
            raise SystemExit(f"unknown strategy {name!r}: choose from {', '.join(ROWS)}")
        names.append(name)
    rows = []
    floors = [await bare_loop(n) for _ in range(args.repeat)]
    native = _fiber.NATIVE_CALLBACK
    for name in names:
        strategy = cast("wasync.Strategy", "fiber" if name.startswith("fiber") else name)
        if name == "fiber" and native is None:
            name = "fiber (Python callback: _native.c not built)"
        _fiber.NATIVE_CALLBACK = None if name == "fiber-python-callback" else native
        module = module_for(strategy)
        d1 = min([await suspend_cost(module, strategy, n, 1) for _ in range(args.repeat)])
        d20 = min([await suspend_cost(module, strategy, n // 2, 20) for _ in range(args.repeat)])
        pl = min([await plain_cost(module, strategy, n) for _ in range(args.repeat)])
        mem = memory_in_a_fresh_process(name, args.instances)
        rows.append((name, d1, d20, pl, mem))
        floors += [await bare_loop(n) for _ in range(args.repeat)]
    _fiber.NATIVE_CALLBACK = native
    floor = min(floors)
    wt_plain = min(wasmtime_py_plain_cost(n) for _ in range(args.repeat))
    print(f"python {platform.python_version()}, {n} calls per measurement, best of {args.repeat}\n")
    print(f"bare `await asyncio.sleep(0)` loop: {floor * 1e6:.2f} us per iteration")
    print(f"wasmtime-py Linker.define_func plain host call: {wt_plain * 1e6:.2f} us per call\n")
    print(
        "| strategy | suspend+resume, depth 1 | depth 20 | / bare loop (1, 20) "
        "| plain import call | / wasmtime-py | RSS per suspended instance |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for strategy, d1, d20, pl, mem in rows:
        print(
            f"| {strategy} | {d1 * 1e6:.2f} us | {d20 * 1e6:.2f} us "
            f"| {d1 / floor:.2f}x, {d20 / floor:.2f}x | {pl * 1e6:.2f} us | {pl / wt_plain:.2f}x "
            f"| {mem / 1024:.1f} KiB |"
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--calls", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--instances", type=int, default=1000)
    ap.add_argument("--strategies", default=",".join(ROWS))
    ap.add_argument("--memory-only", metavar="ROW", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_only:
        asyncio.run(memory_only(args.memory_only, args.instances))
    else:
        asyncio.run(main_async(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
