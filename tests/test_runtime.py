"""One behavioural suite for every runtime strategy.

Each test runs on "fiber" (wasmtime stack switching), "thread" (a worker
thread) and "asyncify" (the module transformed by Binaryen's
``wasm-opt --asyncify``, all imports async-capable).
"""

from __future__ import annotations

import asyncio
import gc
import math
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping
from typing import Any, cast

import pytest

import wasync
from tests.support.metrics import rss_kib
from wasync._runtime import _fiber

STRATEGIES = ["fiber", "thread", "asyncify"]

CORE = r"""
(module
  (import "env" "get_i32" (func $get_i32 (param i32) (result i32)))
  (import "env" "get_i64" (func $get_i64 (param i64) (result i64)))
  (import "env" "get_f32" (func $get_f32 (param f32) (result f32)))
  (import "env" "get_f64" (func $get_f64 (param f64) (result f64)))
  (import "env" "plain" (func $plain (param i32 i32) (result i32)))
  (import "env" "touch" (func $touch (param i32)))
  (memory (export "memory") 1)
  (global $g (mut i32) (i32.const 0))
  (func (export "sum") (param $n i32) (result i32)
    (local $acc i32) (local $i i32)
    (block $done
      (loop $l
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $acc (i32.add (local.get $acc) (call $get_i32 (local.get $i))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $l)))
    (local.get $acc))
  (func (export "wide") (param i64) (result i64)
    (i64.add (call $get_i64 (local.get 0)) (i64.const 1)))
  (func (export "floats") (param f32 f64) (result f64)
    (f64.add (f64.promote_f32 (call $get_f32 (local.get 0))) (call $get_f64 (local.get 1))))
  (func (export "plain_only") (param i32 i32) (result i32)
    (call $plain (local.get 0) (local.get 1)))
  (func (export "touch") (param i32) (call $touch (local.get 0)))
  (func (export "deep") (param $n i32) (result i32)
    (if (result i32) (i32.eqz (local.get $n))
      (then (call $get_i32 (i32.const 1)))
      (else (i32.add (local.get $n) (call 11 (i32.sub (local.get $n) (i32.const 1)))))))
  (func (export "trap") (param i32) (result i32)
    (drop (call $get_i32 (local.get 0)))
    (unreachable))
  (func (export "set_g") (param i32) (global.set $g (local.get 0)))
  (func (export "get_g") (result i32) (global.get $g))
  (func (export "pair") (param i32) (result i32 i64)
    (call $get_i32 (local.get 0)) (i64.extend_i32_s (local.get 0))))
"""


def module_for(strategy: wasync.Strategy, wat: str) -> wasync.Module:
    if strategy != "asyncify":
        return wasync.Module.from_wat(wat)
    from tests.support.binaryen import binaryen_asyncify  # noqa: PLC0415

    return wasync.Module(binaryen_asyncify(wat))


class Host:
    """Import implementations that record what they saw."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []
        self.delay = 0.0
        self.fail_on: int | None = None
        self.block: asyncio.Event | None = None

    async def get_i32(self, x: int) -> int:
        self.calls.append(("get_i32", x))
        await asyncio.sleep(self.delay)
        if self.block is not None:
            await self.block.wait()
        if self.fail_on is not None and x == self.fail_on:
            raise ValueError(f"no value for {x}")
        return x * 10

    async def get_i64(self, x: int) -> int:
        await asyncio.sleep(0)
        return x * 2

    async def get_f32(self, x: float) -> float:
        await asyncio.sleep(0)
        return x / 2

    async def get_f64(self, x: float) -> float:
        await asyncio.sleep(0)
        return x * 1.5

    def plain(self, a: int, b: int) -> int:
        return a * b

    def imports(
        self, **overrides: Callable[..., Any]
    ) -> Mapping[str, Mapping[str, Callable[..., Any]]]:
        env: dict[str, Callable[..., Any]] = {
            "get_i32": self.get_i32,
            "get_i64": self.get_i64,
            "get_f32": self.get_f32,
            "get_f64": self.get_f64,
            "plain": self.plain,
            "touch": lambda x: None,
        }
        env.update(overrides)
        return {"env": env}


# Each strategy, and the fiber strategy once more with the Python callback for
# async imports that stands in for the C one (_native.c) where it is not built.
@pytest.fixture(
    scope="module",
    params=[(s, True) for s in STRATEGIES] + [("fiber", False)],
    ids=[*STRATEGIES, "fiber-python-callback"],
)
def strategy(request: pytest.FixtureRequest) -> Iterator[wasync.Strategy]:
    name, native = request.param
    with pytest.MonkeyPatch.context() as mp:
        if not native:
            mp.setattr(_fiber, "NATIVE_CALLBACK", None)
        yield cast("wasync.Strategy", name)


@pytest.fixture(scope="module")
def core(strategy: wasync.Strategy) -> wasync.Module:
    return module_for(strategy, CORE)


async def make(
    core: wasync.Module, strategy: wasync.Strategy, host: Host, **kw: Any
) -> wasync.Instance:
    overrides = kw.pop("overrides", {})
    return await wasync.instantiate(core, host.imports(**overrides), strategy=strategy, **kw)


def test_async_imports_of_every_numeric_type(
    core: wasync.Module, strategy: wasync.Strategy
) -> None:
    async def main() -> None:
        host = Host()
        inst = await make(core, strategy, host)
        assert inst.strategy == strategy
        assert await inst.exports.sum(5) == 100
        assert host.calls == [("get_i32", i) for i in range(5)]
        assert await inst.exports.wide(2**62) == 2**63 + 1 - 2**64  # wraps as i64
        assert await inst.exports.wide(-7) == -13
        assert await inst.exports.floats(3.0, 2.0) == 1.5 + 3.0
        assert await inst.exports.plain_only(6, 7) == 42
        assert await inst.exports.pair(4) == (40, 4)
        assert await inst.exports.deep(30) == sum(range(31)) + 10

    asyncio.run(main())


V128 = r"""
(module
  (import "env" "a" (func $a (param v128 i32) (result v128)))
  (import "env" "p" (func $p (param v128) (result v128)))
  (import "env" "m" (func $m (param v128) (result v128)))
  (memory (export "memory") 1)
  (func (export "go") (param $x v128) (result v128)
    (call $m (call $p (call $a (local.get $x) (i32.const 7)))))
  (func (export "lanes") (result i32 i32)
    (local $v v128)
    (local.set $v (call $a (v128.const i32x4 1 2 3 4) (i32.const 1)))
    (i32x4.extract_lane 0 (local.get $v)) (i32x4.extract_lane 3 (local.get $v))))
"""


def test_v128_imports_and_exports(strategy: wasync.Strategy) -> None:
    """v128 crosses as an unsigned 128-bit int, through async, plain and maybe
    async imports (instantiating such a module used to abort the process: wasm.h
    has no v128 kind)."""

    async def a(v: int, k: int) -> int:
        await asyncio.sleep(0)
        return v + k

    @wasync.maybe_async
    def m(v: int) -> int | Coroutine[Any, Any, int]:
        if v % 2:
            return v

        async def later() -> int:
            await asyncio.sleep(0)
            return v + 1

        return later()

    async def main() -> None:
        inst = await wasync.instantiate(
            module_for(strategy, V128),
            {"env": {"a": a, "p": lambda v: v * 2, "m": m}},
            strategy=strategy,
        )
        assert await inst.exports.go(5) == (5 + 7) * 2 + 1  # even: m suspends
        assert await inst.exports.go(2**127 + 3) == 21  # (2**128 + 20) wraps; m adds 1
        assert await inst.exports.go(2**128 - 1) == (2**128 - 1 + 7) * 2 % 2**128 + 1
        assert await inst.exports.lanes() == (2, 4)  # i32x4 1 2 3 4, plus 1 in lane 0
        bad = await wasync.instantiate(
            module_for(strategy, V128),
            {"env": {"a": a, "p": lambda v: 1.5, "m": m}},
            strategy=strategy,
        )
        with pytest.raises(TypeError, match="v128"):
            await bad.exports.go(1)
        assert await inst.exports.go(1) == 16 + 1

    asyncio.run(main())


def test_exception_in_import_propagates_and_instance_survives(
    core: wasync.Module, strategy: wasync.Strategy
) -> None:
    async def main() -> None:
        host = Host()
        host.fail_on = 2
        inst = await make(core, strategy, host)
        with pytest.raises(ValueError, match="no value for 2") as info:
            await inst.exports.sum(5)
        notes = "\n".join(getattr(info.value, "__notes__", []))
        assert "wasm backtrace" in notes
        assert isinstance(info.value.__cause__, wasync.Trap)
        host.fail_on = None
        assert await inst.exports.sum(3) == 30

    asyncio.run(main())


def test_plain_import_exception(core: wasync.Module, strategy: wasync.Strategy) -> None:
    async def main() -> None:
        host = Host()

        def bad(a: int, b: int) -> int:
            raise KeyError("plain failure")

        inst = await make(core, strategy, host, overrides={"plain": bad})
        with pytest.raises(KeyError, match="plain failure"):
            await inst.exports.plain_only(1, 2)
        assert await inst.exports.sum(2) == 10

    asyncio.run(main())


def test_trap_has_backtrace_and_instance_survives(
    core: wasync.Module, strategy: wasync.Strategy
) -> None:
    async def main() -> None:
        host = Host()
        inst = await make(core, strategy, host)
        with pytest.raises(wasync.Trap) as info:
            await inst.exports.trap(1)
        assert "unreachable" in str(info.value)
        assert info.value.frames
        assert await inst.exports.sum(2) == 10

    asyncio.run(main())


def test_cancel_while_suspended_then_next_call_works(
    core: wasync.Module, strategy: wasync.Strategy
) -> None:
    async def main() -> None:
        host = Host()
        host.block = asyncio.Event()  # never set: the import waits forever
        inst = await make(core, strategy, host)
        task = asyncio.create_task(inst.exports.sum(3))
        while not host.calls:
            await asyncio.sleep(0.001)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        host.block = None
        assert await asyncio.wait_for(inst.exports.sum(2), 10) == 10

    asyncio.run(main())


def test_close_while_suspended_then_the_call_raises(
    core: wasync.Module, strategy: wasync.Strategy
) -> None:
    """The import finishes after close(): the call raises instead of touching the
    released store (a use after free before), and other instances carry on."""

    async def main() -> None:
        host = Host()
        host.block = asyncio.Event()
        inst = await make(core, strategy, host)
        task = asyncio.create_task(inst.exports.sum(3))
        while not host.calls:
            await asyncio.sleep(0.001)
        inst.close()
        gc.collect()
        others = [await make(core, strategy, Host()) for _ in range(3)]
        host.block.set()
        with pytest.raises(wasync.WasyncError, match="closed"):
            await asyncio.wait_for(task, 10)
        for other in others:
            assert await other.exports.sum(3) == 30

    asyncio.run(main())


def test_calls_on_one_instance_are_serialized(
    core: wasync.Module, strategy: wasync.Strategy
) -> None:
    async def main() -> None:
        host = Host()
        host.delay = 0.01
        inst = await make(core, strategy, host)
        results = await asyncio.gather(*(inst.exports.sum(3) for _ in range(4)))
        assert results == [30] * 4
        # Never interleaved: each call's imports are contiguous.
        assert host.calls == [("get_i32", i) for i in range(3)] * 4

    asyncio.run(main())


def test_busy_instance_can_refuse(core: wasync.Module, strategy: wasync.Strategy) -> None:
    async def main() -> None:
        host = Host()
        host.delay = 0.05
        inst = await make(core, strategy, host, on_busy="error")
        first = asyncio.create_task(inst.exports.sum(2))
        await asyncio.sleep(0.01)
        with pytest.raises(wasync.InstanceBusy):
            await inst.exports.sum(1)
        assert await first == 10

    asyncio.run(main())


def test_reentrant_call_is_refused(core: wasync.Module, strategy: wasync.Strategy) -> None:
    async def main() -> None:
        host = Host()
        inst: wasync.Instance | None = None

        async def reenter(x: int) -> int:
            assert inst is not None
            return int(await inst.exports.plain_only(1, 1))

        inst = await make(core, strategy, host, overrides={"get_i32": reenter})
        with pytest.raises(wasync.ReentrancyError):
            await inst.exports.sum(1)
        inst2 = await make(core, strategy, Host())
        assert await inst2.exports.sum(1) == 0

    asyncio.run(main())


def test_caller_reaches_memory(core: wasync.Module, strategy: wasync.Strategy) -> None:
    async def main() -> None:
        host = Host()

        @wasync.with_caller
        async def get_i32(caller: wasync.Caller, x: int) -> int:
            await asyncio.sleep(0)
            caller.memory.write(100 + 4 * x, x.to_bytes(4, "little"))
            return caller.memory.read_u32(100 + 4 * x)

        inst = await make(core, strategy, host, overrides={"get_i32": get_i32})
        assert await inst.exports.sum(4) == 6
        mem = inst.memory
        assert mem is not None
        assert mem.read(100, 16) == b"".join(i.to_bytes(4, "little") for i in range(4))
        with pytest.raises(wasync.MemoryAccessError):
            mem.read(mem.size - 2, 4)

    asyncio.run(main())


def test_maybe_async_imports(core: wasync.Module, strategy: wasync.Strategy) -> None:
    """A "maybe async" import suspends only when it returns an awaitable; its
    plain results, awaited results and errors (raised at once or by the
    awaitable) all reach the wasm code as with the other kinds of import."""

    async def main() -> None:
        suspended: list[int] = []
        fail_early = {7}
        ticks = 0

        async def later(x: int) -> int:
            suspended.append(x)
            await asyncio.sleep(0)
            if x == 13:
                raise KeyError("late failure")
            return x * 100

        @wasync.maybe_async
        def get_i32(x: int) -> int | Coroutine[Any, Any, int]:
            if x in fail_early:
                raise LookupError("early failure")
            return later(x) if x % 3 == 0 or x == 13 else x

        @wasync.maybe_async
        @wasync.with_caller
        def get_i64(caller: wasync.Caller, x: int) -> Any:
            caller.memory.write(0, b"seen")
            return x + 1 if x < 100 else later(x)

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        inst = await make(
            core, strategy, Host(), overrides={"get_i32": get_i32, "get_i64": get_i64}
        )
        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        assert await inst.exports.sum(7) == 0 + 1 + 2 + 300 + 4 + 5 + 600
        assert suspended == [0, 3, 6]
        ticks_after_sum = ticks
        assert ticks_after_sum >= 3  # the awaitables really ran on the loop
        assert await inst.exports.deep(20) == sum(range(21)) + 1  # nested in 20 frames
        assert await inst.exports.wide(5) == 7
        assert await inst.exports.wide(500) == 50001
        assert inst.memory is not None
        assert inst.memory.read(0, 4) == b"seen"
        with pytest.raises(LookupError, match="early failure") as early:
            await inst.exports.sum(8)
        assert isinstance(early.value.__cause__, wasync.Trap)
        fail_early.clear()
        with pytest.raises(KeyError, match="late failure"):
            await inst.exports.sum(14)
        assert await inst.exports.sum(4) == 0 + 1 + 2 + 300  # still usable
        task.cancel()

    asyncio.run(main())


def test_maybe_async_cancelled_while_suspended(
    core: wasync.Module, strategy: wasync.Strategy
) -> None:
    async def main() -> None:
        gate = asyncio.Event()
        started = asyncio.Event()

        async def wait_gate(x: int) -> int:
            started.set()
            await gate.wait()
            return x

        @wasync.maybe_async
        def get_i32(x: int) -> Any:
            return wait_gate(x) if x == 2 else x

        inst = await make(core, strategy, Host(), overrides={"get_i32": get_i32})
        call = asyncio.create_task(inst.exports.sum(5))
        await started.wait()
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        gate.set()
        assert await inst.exports.sum(5) == 10

    asyncio.run(main())


def test_arguments_are_checked(core: wasync.Module, strategy: wasync.Strategy) -> None:
    async def main() -> None:
        inst = await make(core, strategy, Host())
        with pytest.raises(TypeError, match="takes 1 arguments"):
            await inst.exports.sum(1, 2)
        with pytest.raises(TypeError):
            await inst.exports.sum("x")
        with pytest.raises(AttributeError, match="no function"):
            inst.exports.nope  # noqa: B018
        assert await inst.exports.sum(1) == 0

    asyncio.run(main())


def test_bad_import_results_become_errors(core: wasync.Module, strategy: wasync.Strategy) -> None:
    async def main() -> None:
        async def wrong(x: int) -> str:
            await asyncio.sleep(0)
            return "not a number"

        inst = await make(core, strategy, Host(), overrides={"get_i32": wrong})
        with pytest.raises(TypeError, match="expected"):
            await inst.exports.sum(1)

    asyncio.run(main())


def test_many_instances_sleep_concurrently(core: wasync.Module, strategy: wasync.Strategy) -> None:
    async def main() -> float:
        n, sleeps, delay = 100, 5, 0.05
        host = Host()
        host.delay = delay
        instances = [await make(core, strategy, host) for _ in range(n)]
        t0 = time.perf_counter()
        results = await asyncio.gather(*(i.exports.sum(sleeps) for i in instances))
        elapsed = time.perf_counter() - t0
        assert results == [sum(10 * k for k in range(sleeps))] * n
        for inst in instances:
            inst.close()
        return elapsed

    elapsed = asyncio.run(main())
    # 5 sequential sleeps of 50 ms each: 0.25 s if the instances really overlap
    # (100 x 0.25 = 25 s if they did not).
    assert elapsed < 2.0, elapsed


def test_link_errors_before_anything_runs(core: wasync.Module, strategy: wasync.Strategy) -> None:
    async def main() -> None:
        host = Host()
        imports = dict(host.imports()["env"])
        del imports["get_f32"]
        with pytest.raises(wasync.LinkError, match=r"env\.get_f32.*missing"):
            await wasync.instantiate(core, {"env": imports}, strategy=strategy)
        with pytest.raises(wasync.LinkError, match=r"env\.plain.*cannot take 2"):
            await make(core, strategy, host, overrides={"plain": lambda a: a})
        with pytest.raises(wasync.LinkError, match="not callable"):
            await make(core, strategy, host, overrides={"plain": 5})
        # The checks are cached per function (bound methods: per function they
        # bind), per argument count: each answer stays right on every use.
        one_arg = Host().get_i32  # takes (x): right for get_i32, wrong for plain
        for _ in range(2):
            with pytest.raises(wasync.LinkError, match=r"env\.plain.*cannot take 2"):
                await make(core, strategy, Host(), overrides={"plain": one_arg})
            inst = await make(core, strategy, Host(), overrides={"get_i32": one_arg})
            assert await inst.exports.sum(2) == 10
            inst.close()

    asyncio.run(main())


def test_under_trio(core: wasync.Module, strategy: wasync.Strategy) -> None:
    trio = pytest.importorskip("trio")

    async def get_i32(x: int) -> int:
        await trio.sleep(0.001)
        return x + 1

    async def main() -> None:
        host = Host()
        inst = await make(core, strategy, host, overrides={"get_i32": get_i32})
        assert await inst.exports.sum(4) == 10
        with trio.move_on_after(0.05):

            async def forever(x: int) -> int:
                await trio.sleep(math.inf)
                return 0

            inst2 = await make(core, strategy, host, overrides={"get_i32": forever})
            await inst2.exports.sum(1)
        assert await inst.exports.sum(2) == 3

    trio.run(main)


def test_instances_are_released(core: wasync.Module, strategy: wasync.Strategy) -> None:
    async def main() -> None:
        for _ in range(50):
            inst = await make(core, strategy, Host())
            assert await inst.exports.sum(1) == 0
            del inst
        gc.collect()

    asyncio.run(main())


def test_same_import_twice(strategy: wasync.Strategy) -> None:
    wat = """(module
      (import "env" "f" (func $a (param i32) (result i32)))
      (import "env" "f" (func $b (param i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "both") (param i32) (result i32)
        (i32.add (call $a (local.get 0)) (call $b (local.get 0)))))"""

    async def f(x: int) -> int:
        await asyncio.sleep(0)
        return x + 1

    async def main() -> None:
        inst = await wasync.instantiate(
            module_for(strategy, wat), {"env": {"f": f}}, strategy=strategy
        )
        assert await inst.exports.both(1) == 4
        clash = wat.replace("(func $b (param i32)", "(func $b (param i64)").replace(
            "(call $b (local.get 0))", "(i32.wrap_i64 (call $b (i64.extend_i32_u (local.get 0))))"
        )
        with pytest.raises(wasync.LinkError, match="twice with different signatures"):
            await wasync.instantiate(
                wasync.Module.from_wat(clash), {"env": {"f": f}}, strategy=strategy
            )

    asyncio.run(main())


@pytest.mark.slow
def test_no_leaks_after_10000_failed_or_cancelled_calls(
    core: wasync.Module, strategy: wasync.Strategy
) -> None:
    import threading  # noqa: PLC0415

    async def main() -> tuple[int, int, list[threading.Thread]]:
        gate = asyncio.Event()
        entered = asyncio.Event()

        async def get_i32(x: int) -> int:
            if x == 0:
                raise RuntimeError("failed")
            entered.set()
            await gate.wait()
            return x

        inst = await make(core, strategy, Host(), overrides={"get_i32": get_i32})
        for _ in range(100):  # warm up pools and caches
            with pytest.raises(RuntimeError):
                await inst.exports.trap(0)
        # Threads that other tests left behind may end meanwhile (trio's idle
        # workers, an epoch ticker with no users left): what counts is that no
        # thread this loop started is still alive.
        threads_before = set(threading.enumerate())
        rss_before = rss_kib()
        for i in range(5000):
            with pytest.raises(RuntimeError):
                await inst.exports.trap(0)
            entered.clear()
            task = asyncio.create_task(inst.call("trap", i + 1))
            await entered.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        rss_after = rss_kib()
        leaked = [t for t in threading.enumerate() if t not in threads_before]
        gate.set()
        with pytest.raises(wasync.Trap):  # the export traps after its import returns
            await inst.exports.trap(3)
        inst.close()
        return rss_before, rss_after, leaked

    rss_before, rss_after, leaked = asyncio.run(main())
    assert leaked == []
    # A leaked fiber stack is 2 MiB; a leaked thread or buffer tens of KiB at least.
    assert rss_after - rss_before < 20_000, (rss_before, rss_after)


@pytest.mark.slow
def test_thousand_instances_ten_sleeps_each(strategy: wasync.Strategy) -> None:
    wat = """(module
      (import "env" "tick" (func $tick (param i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "ten") (result i32) (local $i i32) (local $s i32)
        (loop $l
          (local.set $s (i32.add (local.get $s) (call $tick (local.get $i))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $l (i32.lt_u (local.get $i) (i32.const 10))))
        (local.get $s)))"""

    async def tick(x: int) -> int:
        await asyncio.sleep(0.1)
        return x

    async def main() -> float:
        module = module_for(strategy, wat)
        instances = [
            await wasync.instantiate(module, {"env": {"tick": tick}}, strategy=strategy)
            for _ in range(1000)
        ]
        t0 = time.perf_counter()
        results = await asyncio.gather(*(i.exports.ten() for i in instances))
        elapsed = time.perf_counter() - t0
        assert results == [45] * 1000
        for inst in instances:
            inst.close()
        return elapsed

    elapsed = asyncio.run(main())
    print(f"\n1,000 instances x 10 sleeps of 0.1 s, strategy {strategy}: {elapsed:.2f} s")
    assert elapsed < 3.0, elapsed  # ten sequential 0.1 s sleeps: about 1 s
