"""The "asyncify" strategy: Binaryen's own runtime tests, and the runtime's behaviour.

Binaryen's tests (``../shared/binaryen-asyncify-tests/unit``) are transformed with
``wasm-opt --asyncify`` (all imports may unwind) at -O0, -O1 and -O3:

* ``asyncify-sleep.wat`` runs through :func:`wasync.instantiate` with the data
  buffer where Binaryen's harness puts it (header at 4, frames 12..1024);
  ``do_tunnel``'s host import calls back into the instance with
  ``AsyncifyBackend.call_nested``. It runs again on a host written on wasmtime
  directly that, like Binaryen's, rewinds with dummy arguments.
* ``asyncify-coroutine.wat`` and ``asyncify-stackOverflow.wat`` need finer control
  than the runtime offers (several buffers in one instance, a header written by
  hand), so that host drives them.
* ``asyncify-pure.wat`` (an in-wasm runtime) runs through :func:`wasync.instantiate`.
"""

from __future__ import annotations

import asyncio
import gc
import math
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio
import wasmtime

import wasync
from tests.conftest import SHARED
from tests.support.binaryen import binaryen_asyncify, binaryen_wat2wasm
from tests.support.metrics import rss_kib
from wasync._runtime._asyncify import AsyncifyBackend

UNIT = SHARED / "binaryen-asyncify-tests" / "unit"
# Binaryen at three optimisation levels, and wasync's own transform ("wasync").
OPTS = ["-O0", "-O1", "-O3", "wasync"]

_modules: dict[tuple[str, str, tuple[str, ...], tuple[str, ...]], wasync.Module] = {}


def transformed(
    source: str | Path,
    opt: str = "-O1",
    imports: tuple[str, ...] = (),
    extra: tuple[str, ...] = (),
) -> wasync.Module:
    """A module transformed by Binaryen (one Module per input, so compiled once)."""
    if isinstance(source, Path):
        if not source.is_file():
            pytest.skip(f"Binaryen's test inputs not found at {source.parent}")
        text = source.read_text()
    else:
        text = source
    key = (text, opt, imports, extra)
    mod = _modules.get(key)
    if mod is None:
        if opt == "wasync":
            # Binaryen's test inputs are not all valid wasm as written (its text
            # parser is lenient): read them with wasm-opt, transform with wasync.
            plain = binaryen_wat2wasm(text)
            wasm = wasync.asyncify(plain, imports=imports or None)
        else:
            wasm = binaryen_asyncify(text, opt=opt, imports=imports, extra=extra)
        mod = _modules[key] = wasync.Module(wasm)
    return mod


def backend_of(inst: wasync.Instance) -> AsyncifyBackend:
    backend = inst._backend
    assert isinstance(backend, AsyncifyBackend)
    return backend


def position(inst: wasync.Instance) -> tuple[int, int]:
    """The data buffer's header: (position, end)."""
    mem = inst.memory
    assert mem is not None
    address = backend_of(inst).data_address
    return mem.read_u32(address), mem.read_u32(address + 4)


# --------------------------------------------------------------------------------------------
# Binaryen: asyncify-sleep.wat through the runtime
# --------------------------------------------------------------------------------------------

SLEEP_CASES: list[tuple[str, int, int, tuple[int, ...]]] = [
    ("minimal", 1, 21, ()),
    ("repeat", 2, 42, ()),
    ("local", 1, 10, ()),
    ("local2", 1, 22, ()),
    ("params", 1, 18, (0, 0)),
    ("params", 1, 21, (1, 2)),
    ("deeper", 0, 27, (0,)),
    ("deeper", 1, 3, (1,)),
    *[("factorial-recursive", n - 1, math.factorial(n), (n,)) for n in range(1, 6)],
    *[("factorial-loop", n - 1, math.factorial(n), (n,)) for n in range(1, 6)],
    ("do_tunnel", 2, 72, (1,)),
    ("call_indirect", 3, 432, (1, 2)),
    ("if_else", 3, 1460, (1, 1000)),
    ("if_else", 3, 2520, (2, 2000)),
]


@pytest.fixture(scope="module", params=OPTS)
def sleep_module(request: pytest.FixtureRequest) -> wasync.Module:
    return transformed(UNIT / "asyncify-sleep.wat", str(request.param))


@pytest.mark.parametrize(
    ("name", "sleeps", "result", "params"),
    SLEEP_CASES,
    ids=[f"{c[0]}{list(c[3])}" for c in SLEEP_CASES],
)
def test_binaryen_sleep(
    sleep_module: wasync.Module, name: str, sleeps: int, result: int, params: tuple[int, ...]
) -> None:
    async def main() -> None:
        seen: list[tuple[int, int]] = []
        inst: wasync.Instance | None = None

        async def sleep() -> None:
            # While suspended the frames are in the buffer: position moved up.
            assert inst is not None
            seen.append(position(inst))
            await asyncio.sleep(0)

        @wasync.with_caller
        def tunnel(caller: wasync.Caller, x: int) -> int:
            # Binaryen's "tunnel": the host calls back into wasm, and the unwind
            # of end_tunnel's sleep passes through this host frame.
            out = backend_of(caller.instance).call_nested("end_tunnel", (x,))
            assert isinstance(out, int)
            return out

        inst = await wasync.instantiate(
            sleep_module,
            {"env": {"sleep": sleep, "tunnel": tunnel}},
            strategy="asyncify",
            asyncify_data_address=4,
            asyncify_stack_size=1020,
        )
        assert backend_of(inst).data_address == 4
        assert await inst.call(name, *params) == result
        assert len(seen) == sleeps
        assert all(12 < pos <= 1024 and end == 1024 for pos, end in seen), seen
        assert position(inst) == (12, 1024)
        # The instance keeps working: the same call again, then another one.
        assert await inst.call(name, *params) == result
        assert await inst.exports.minimal() == 21

    asyncio.run(main())


def test_binaryen_sleep_with_allocated_buffer(sleep_module: wasync.Module) -> None:
    """The same module with the buffer allocated by growing memory (it has no malloc)."""

    async def main() -> None:
        async def sleep() -> None:
            await asyncio.sleep(0)

        inst = await wasync.instantiate(
            sleep_module,
            {"env": {"sleep": sleep, "tunnel": lambda x: x}},
            asyncify_stack_size=4096,  # the memory's maximum is 2 pages
        )
        assert inst.strategy == "asyncify"  # "auto" on a transformed module
        assert backend_of(inst).data_address == 65536
        for name, _, result, params in SLEEP_CASES:
            if name != "do_tunnel":
                assert await inst.call(name, *params) == result, name

    asyncio.run(main())


@pytest.mark.parametrize("opt", OPTS)
def test_binaryen_pure_in_wasm_runtime(opt: str) -> None:
    """asyncify-pure.wat unwinds and rewinds itself from its start function, through
    the imports ``asyncify.*`` that the transform redirects: only a plain import
    (``spectest.print``) is left for the host. The module exports no memory, which
    the runtime accepts because nothing can suspend (no async imports)."""
    mod = transformed(UNIT / "asyncify-pure.wat", opt)
    assert {(i.module, i.name) for i in mod.imports} == {("spectest", "print")}
    printed: list[str] = []

    async def main() -> None:
        await wasync.instantiate(
            mod,
            {"spectest": {"print": lambda v: printed.append(f"{v} : i32")}},
            strategy="asyncify",  # no async imports and no exported memory: no buffer
        )

    asyncio.run(main())
    assert printed == (UNIT / "asyncify-pure.txt").read_text().split("\n")[:-1]


# --------------------------------------------------------------------------------------------
# Binaryen: a host on wasmtime directly, for the coroutine and stack-overflow tests
# --------------------------------------------------------------------------------------------


class RawHarness:
    """What Binaryen's JS harness does, on wasmtime's Python API."""

    def __init__(self, wasm: bytes, imports: dict[str, Any]) -> None:
        self.store = wasmtime.Store(wasmtime.Engine())
        module = wasmtime.Module(self.store.engine, wasm)
        linker = wasmtime.Linker(self.store.engine)
        for imp in module.imports:
            assert imp.name is not None
            assert isinstance(imp.type, wasmtime.FuncType)
            linker.define_func(imp.module, imp.name, imp.type, imports[imp.name])
        self.instance = linker.instantiate(self.store, module)
        exports = self.instance.exports(self.store)
        mem = exports["memory"]
        assert isinstance(mem, wasmtime.Memory)
        self.memory = mem

    def call(self, name: str, *args: int) -> Any:
        func = self.instance.exports(self.store)[name]
        assert isinstance(func, wasmtime.Func)
        return func(self.store, *args)

    def state(self) -> int:
        value = self.call("asyncify_get_state")
        assert isinstance(value, int)
        return value

    def write_i32s(self, address: int, *values: int) -> None:
        self.memory.write(self.store, struct.pack(f"<{len(values)}i", *values), address)

    def read_i32(self, address: int) -> int:
        value: int = struct.unpack("<i", self.memory.read(self.store, address, address + 4))[0]
        return value


@pytest.mark.parametrize("opt", OPTS)
def test_binaryen_sleep_with_dummy_arguments(opt: str) -> None:
    """Binaryen's own host: the rewind call gets zeros for arguments, so the
    parameters must come back from the saved frames (the runtime passes the real
    arguments again, which would hide a transform that forgets them)."""
    wasm = transformed(UNIT / "asyncify-sleep.wat", opt).wasm
    box: list[RawHarness] = []

    def sleep() -> None:
        h = box[0]
        if h.state() == 2:
            h.call("asyncify_stop_rewind")
            assert h.read_i32(4) == 12  # every frame restored
            return
        h.call("asyncify_start_unwind", 4)

    def tunnel(x: int) -> Any:
        return box[0].call("end_tunnel", x)

    h = RawHarness(wasm, {"sleep": sleep, "tunnel": tunnel})
    box.append(h)
    for name, sleeps, result, params in SLEEP_CASES:
        h.write_i32s(4, 12, 1024)
        out = h.call(name, *params)
        seen = 0
        while h.state() == 1:
            h.call("asyncify_stop_unwind")
            assert h.read_i32(4) > 12
            seen += 1
            h.call("asyncify_start_rewind", 4)
            out = h.call(name, *[0] * len(params))
        assert (out, seen) == (result, sleeps), name


@pytest.mark.parametrize("opt", OPTS)
def test_binaryen_coroutines(opt: str) -> None:
    """Three coroutines in one instance, each with its own buffer, resumed round-robin."""
    wasm = transformed(UNIT / "asyncify-coroutine.wat", opt).wasm
    yields: list[int] = []
    current: list[int] = []  # the running coroutine's buffer
    box: list[RawHarness] = []

    def yield_(value: int) -> None:
        h = box[0]
        if h.state() == 2:  # resumed: finish the rewind, carry on
            h.call("asyncify_stop_rewind")
            return
        yields.append(value)
        h.call("asyncify_start_unwind", current[0])

    h = RawHarness(wasm, {"yield": yield_})
    box.append(h)
    coroutines = [("linear", 1000, 2000), ("exponential", 2000, 3000), ("weird", 3000, 4000)]

    def run(name: str, start: int) -> None:
        current[:] = [start]
        h.call(name)
        assert h.state() == 1
        h.call("asyncify_stop_unwind")

    for name, start, end in coroutines:
        h.write_i32s(start, start + 8, end)
        run(name, start)
    for _ in range(4):
        for name, start, _end in coroutines:
            h.call("asyncify_start_rewind", start)
            run(name, start)
    assert yields == [0, 1, 42, 10, 2, 1337, 20, 4, 0, 30, 8, -1000, 40, 16, 42]


@pytest.mark.parametrize("opt", OPTS)
def test_binaryen_stack_overflow_is_caught_by_stop_and_start(opt: str) -> None:
    """The unwind itself does not check the buffer's end; every start/stop does."""
    wasm = transformed(UNIT / "asyncify-stackOverflow.wat", opt).wasm
    box: list[RawHarness] = []

    def sleep() -> None:
        h = box[0]
        h.call("asyncify_start_unwind", 4)  # the header is still zero: no trap
        h.write_i32s(4, 12, 13)  # one byte of room

    h = RawHarness(wasm, {"sleep": sleep})
    box.append(h)
    h.call("many_locals", 0)  # returns normally: no trap during the unwind itself
    assert h.read_i32(4) > h.read_i32(8)
    for name, args in [
        ("asyncify_stop_unwind", ()),
        ("asyncify_start_rewind", (4,)),
        ("asyncify_stop_rewind", ()),
        ("asyncify_start_unwind", (4,)),
    ]:
        with pytest.raises(wasmtime.Trap, match="unreachable"):
            h.call(name, *args)


# --------------------------------------------------------------------------------------------
# The runtime
# --------------------------------------------------------------------------------------------

NUMERIC = r"""
(module
  (import "env" "get_i32" (func $get_i32 (param i32) (result i32)))
  (import "env" "get_i64" (func $get_i64 (param i64) (result i64)))
  (import "env" "get_f32" (func $get_f32 (param f32) (result f32)))
  (import "env" "get_f64" (func $get_f64 (param f64) (result f64)))
  (import "env" "wait" (func $wait (param i32) (result i32)))
  (import "env" "plain" (func $plain (param i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "i32") (param i32) (result i32) (call $get_i32 (local.get 0)))
  (func (export "i64") (param i64) (result i64) (call $get_i64 (local.get 0)))
  (func (export "f32") (param f32) (result f32) (call $get_f32 (local.get 0)))
  (func (export "f64") (param f64) (result f64) (call $get_f64 (local.get 0)))
  (func (export "mixed") (param i32 i64 f32 f64) (result f64)
    (local $a i32) (local $b i64) (local $c f32)
    (local.set $a (call $get_i32 (local.get 0)))
    (local.set $b (call $get_i64 (local.get 1)))
    (local.set $c (call $get_f32 (local.get 2)))
    (f64.add
      (f64.add (f64.convert_i32_s (local.get $a)) (f64.convert_i64_s (local.get $b)))
      (f64.add (f64.promote_f32 (local.get $c)) (call $get_f64 (local.get 3)))))
  (func $deep (export "deep") (param $n i32) (result i32)
    (if (result i32) (i32.eqz (local.get $n))
      (then (call $wait (i32.const 0)))
      (else (i32.add (i32.const 1) (call $deep (i32.sub (local.get $n) (i32.const 1)))))))
  (func (export "plain") (param i32) (result i32) (call $plain (local.get 0)))
  (func $fat (export "fat") (param $n i32) (result i64)
    ;; 32 i64 locals live across the recursive call: big Asyncify frames
    (local LOCALS i64)
    (if (result i64) (i32.eqz (local.get $n))
      (then (i64.extend_i32_s (call $wait (i32.const 0))))
      (else
        LOADS
        (i64.add (call $fat (i32.sub (local.get $n) (i32.const 1))) SUM))))
  (func (export "trap_after") (param i32) (result i32)
    (drop (call $wait (local.get 0)))
    (unreachable)))
"""


def _fat_parts() -> dict[str, str]:
    # Loads from addresses that depend on $n, so nothing can be recomputed after the call.
    loads = (
        f"(local.set {i + 1} (i64.load offset={8 * i} (i32.and (local.get $n) (i32.const 255))))"
        for i in range(32)
    )
    total = "(local.get 1)"
    for i in range(2, 33):
        total = f"(i64.add {total} (local.get {i}))"
    return {"LOCALS": " ".join(["i64"] * 32), "LOADS": " ".join(loads), "SUM": total}


for _key, _text in _fat_parts().items():
    NUMERIC = NUMERIC.replace(_key, _text)


class NumericHost:
    def __init__(self) -> None:
        self.wait_calls = 0
        self.fail: Callable[[], BaseException] | None = None  # makes the exception to raise
        self.event: asyncio.Event | None = None

    async def get_i32(self, x: int) -> int:
        await asyncio.sleep(0)
        return x + 1

    async def get_i64(self, x: int) -> int:
        await asyncio.sleep(0)
        return x - 1

    async def get_f32(self, x: float) -> float:
        await asyncio.sleep(0)
        return x * 2

    async def get_f64(self, x: float) -> float:
        await asyncio.sleep(0)
        return x / 4

    async def wait(self, x: int) -> int:
        self.wait_calls += 1
        await asyncio.sleep(0)
        if self.event is not None:
            await self.event.wait()
        if self.fail is not None:
            raise self.fail()
        return x + 100

    def imports(self) -> dict[str, dict[str, Any]]:
        return {
            "env": {
                "get_i32": self.get_i32,
                "get_i64": self.get_i64,
                "get_f32": self.get_f32,
                "get_f64": self.get_f64,
                "wait": self.wait,
                "plain": lambda x: x * 3,
            }
        }


async def numeric(host: NumericHost, *, names: bool = False, **kw: Any) -> wasync.Instance:
    mod = transformed(NUMERIC, extra=("-g",) if names else ())  # -g: keep the name section
    return await wasync.instantiate(mod, host.imports(), strategy="asyncify", **kw)


def test_async_imports_of_every_numeric_type() -> None:
    async def main() -> None:
        inst = await numeric(NumericHost())
        assert await inst.exports.i32(41) == 42
        assert await inst.exports.i32(2**31 - 1) == -(2**31)
        assert await inst.exports.i64(2**62) == 2**62 - 1
        assert await inst.exports.i64(-(2**63) + 1) == -(2**63)
        assert await inst.exports.f32(1.25) == 2.5
        assert await inst.exports.f64(3.0) == 0.75
        assert math.isinf(await inst.exports.f64(math.inf))
        assert await inst.exports.mixed(1, 10, 0.5, 8.0) == 2 + 9 + 1.0 + 2.0
        assert await inst.exports.plain(5) == 15
        assert await inst.exports.deep(50) == 150
        assert position(inst)[0] == backend_of(inst).data_address + 8

    asyncio.run(main())


def test_coroutine_exception_propagates_as_itself() -> None:
    async def main() -> None:
        host = NumericHost()
        inst = await numeric(host, names=True)
        boom = KeyError("no such thing")
        host.fail = lambda: boom
        with pytest.raises(KeyError) as info:
            await inst.exports.deep(3)
        assert info.value is boom
        # Like the fiber strategy: raised at the import inside wasm, so the
        # exception carries the wasm backtrace and the Trap as its cause.
        assert isinstance(boom.__cause__, wasync.Trap)
        assert any("wasm backtrace" in n for n in getattr(boom, "__notes__", []))
        assert [name for _, name, _ in boom.__cause__.frames] == ["deep"] * 4
        host.fail = None
        assert position(inst)[0] == backend_of(inst).data_address + 8
        assert await inst.exports.deep(3) == 103

    asyncio.run(main())


def test_trap_after_resuming_is_a_trap_with_backtrace() -> None:
    async def main() -> None:
        inst = await numeric(NumericHost())
        with pytest.raises(wasync.Trap) as info:
            await inst.exports.trap_after(1)
        assert "unreachable" in info.value.message
        assert info.value.frames
        assert await inst.exports.i32(1) == 2

    asyncio.run(main())


def test_plain_import_exception_propagates() -> None:
    async def main() -> None:
        host = NumericHost()
        imports = host.imports()

        def plain(x: int) -> int:
            raise ZeroDivisionError("plain")

        imports["env"]["plain"] = plain
        inst = await wasync.instantiate(transformed(NUMERIC), imports, strategy="asyncify")
        with pytest.raises(ZeroDivisionError):
            await inst.exports.plain(1)
        assert await inst.exports.i32(1) == 2

    asyncio.run(main())


def test_cancellation_while_suspended_then_next_call_works() -> None:
    async def main() -> None:
        host = NumericHost()
        host.event = asyncio.Event()  # never set
        inst = await numeric(host)
        task = asyncio.create_task(inst.call("deep", 20))
        while host.wait_calls == 0:
            await asyncio.sleep(0.001)
        assert position(inst)[0] > backend_of(inst).data_address + 8  # frames saved
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert position(inst)[0] == backend_of(inst).data_address + 8
        host.event = None
        assert await inst.exports.deep(20) == 120

    asyncio.run(main())


def test_buffer_from_malloc_when_exported() -> None:
    wat = r"""
    (module
      (import "env" "wait" (func $wait (param i32) (result i32)))
      (memory (export "memory") 2)
      (global $heap (mut i32) (i32.const 4096))
      (global $mallocs (mut i32) (i32.const 0))
      (func (export "malloc") (param $n i32) (result i32)
        (local $p i32)
        (global.set $mallocs (i32.add (global.get $mallocs) (i32.const 1)))
        (local.set $p (global.get $heap))
        (global.set $heap (i32.add (global.get $heap) (local.get $n)))
        (local.get $p))
      (func (export "mallocs") (result i32) (global.get $mallocs))
      (func (export "run") (param i32) (result i32) (call $wait (local.get 0))))
    """

    async def main() -> None:
        host = NumericHost()
        inst = await wasync.instantiate(
            transformed(wat), {"env": {"wait": host.wait}}, asyncify_stack_size=20000
        )
        assert backend_of(inst).data_address == 4096
        assert position(inst) == (4096 + 8, 4096 + 20000)
        assert await inst.exports.mallocs() == 1
        assert inst.memory is not None
        assert inst.memory.size == 2 * 65536  # not grown
        assert await inst.exports.run(1) == 101
        assert await inst.exports.mallocs() == 1

    asyncio.run(main())


def test_buffer_from_memory_growth_otherwise() -> None:
    async def main() -> None:
        inst = await numeric(NumericHost())
        mem = inst.memory
        assert mem is not None
        address = backend_of(inst).data_address
        assert address >= 65536  # in the new pages, not in the module's own first page
        assert mem.size == 65536 + (1 << 20)  # grown by 1 MiB (the default size)
        assert position(inst) == (address + 8, address + (1 << 20))
        assert await inst.exports.deep(5) == 105
        assert await inst.exports.fat(100) == 100

    asyncio.run(main())


def test_buffer_at_a_given_address_and_bad_options() -> None:
    async def main() -> None:
        inst = await numeric(NumericHost(), asyncify_data_address=1024, asyncify_stack_size=2048)
        assert position(inst) == (1032, 3072)
        assert await inst.exports.deep(5) == 105
        with pytest.raises(ValueError, match="inside memory 0"):
            await numeric(NumericHost(), asyncify_data_address=65000, asyncify_stack_size=2048)
        with pytest.raises(ValueError, match="larger than the 8-byte header"):
            await numeric(NumericHost(), asyncify_stack_size=8)

    asyncio.run(main())


@pytest.mark.parametrize("placement", ["address", "grown"])
def test_overflow_reports_needed_and_available(placement: str) -> None:
    async def main() -> None:
        host = NumericHost()
        if placement == "address":
            # Room after the buffer: the unwind writes past its end, the runtime measures.
            inst = await numeric(host, asyncify_data_address=1024, asyncify_stack_size=64)
        else:
            # A whole page at the end of memory: the unwind runs off the memory's end.
            inst = await numeric(host, asyncify_stack_size=65536)
        call = inst.call("deep", 20) if placement == "address" else inst.call("fat", 600)
        with pytest.raises(wasync.AsyncifyStackOverflow, match="asyncify_stack_size=") as info:
            await call
        err = info.value
        assert err.needed > err.available
        assert err.available == (56 if placement == "address" else 65528)
        assert isinstance(err, wasync.Trap)
        # Still usable: a call that does not suspend deeply.
        assert position(inst)[0] == backend_of(inst).data_address + 8
        assert await inst.exports.deep(1) == 101
        assert await inst.exports.i64(7) == 6

    asyncio.run(main())


def test_many_failing_calls_do_not_leak() -> None:
    async def main() -> None:
        host = NumericHost()
        host.fail = lambda: RuntimeError("failing")
        inst = await numeric(host)
        start = backend_of(inst).data_address + 8

        async def fail_many(n: int) -> None:
            for _ in range(n):
                with pytest.raises(RuntimeError):
                    await inst.exports.deep(8)
                assert position(inst)[0] == start

        await fail_many(200)
        gc.collect()
        before = rss_kib()
        await fail_many(1000)
        gc.collect()
        grown = rss_kib() - before
        assert grown < 4096, f"RSS grew by {grown} KiB over 1,000 failing calls"
        host.fail = None
        assert await inst.exports.deep(8) == 108

    asyncio.run(main())


def test_under_trio() -> None:
    async def main() -> None:
        async def wait(x: int) -> int:
            await trio.sleep(0)
            return x + 100

        never = trio.Event()

        async def get_i32(x: int) -> int:
            await never.wait()
            return x

        imports = NumericHost().imports()
        imports["env"].update(wait=wait, get_i32=get_i32)
        inst = await wasync.instantiate(transformed(NUMERIC), imports, strategy="asyncify")
        assert await inst.exports.deep(10) == 110
        with trio.move_on_after(0.05) as scope:
            await inst.exports.i32(1)
        assert scope.cancelled_caught
        assert position(inst)[0] == backend_of(inst).data_address + 8
        assert await inst.exports.deep(3) == 103

    trio.run(main)


def test_async_imports_need_memory_0_exported() -> None:
    wat = r"""
    (module
      (import "env" "wait" (func $wait (param i32) (result i32)))
      (memory 1)
      (func (export "run") (param i32) (result i32) (call $wait (local.get 0))))
    """

    async def main() -> None:
        with pytest.raises(wasync.WasyncError, match="memory 0, which the module does not export"):
            await wasync.instantiate(transformed(wat), {"env": {"wait": NumericHost().wait}})

    asyncio.run(main())


def test_module_without_the_abi_is_refused() -> None:
    async def main() -> None:
        plain = wasync.Module.from_wat('(module (memory (export "memory") 1))')
        with pytest.raises(wasync.WasyncError, match=r"asyncify_start_unwind.*wasm-opt --asyncify"):
            await wasync.instantiate(plain, strategy="asyncify")

    asyncio.run(main())


def test_async_import_in_start_function_is_refused() -> None:
    wat = r"""
    (module
      (import "env" "wait" (func $wait (param i32) (result i32)))
      (memory (export "memory") 1)
      (func $start (drop (call $wait (i32.const 1))))
      (start $start))
    """

    async def main() -> None:
        with pytest.raises(wasync.WasyncError, match="outside an export call"):
            await wasync.instantiate(transformed(wat), {"env": {"wait": NumericHost().wait}})

    asyncio.run(main())


def test_async_import_on_an_uninstrumented_path_is_refused() -> None:
    """An async import the transform was not told about: its callers were not
    instrumented, so the unwind saves nothing. The runtime says so instead of
    running the function twice."""

    async def main() -> None:
        host = NumericHost()
        mod = transformed(NUMERIC, imports=("env.get_i64",))
        inst = await wasync.instantiate(mod, host.imports(), strategy="asyncify")
        assert await inst.exports.i64(5) == 4
        with pytest.raises(wasync.WasyncError, match="not instrumented"):
            await inst.exports.i32(5)
        assert await inst.exports.i64(5) == 4

    asyncio.run(main())


def test_protocol_exports_cannot_be_called() -> None:
    async def main() -> None:
        inst = await numeric(NumericHost())
        with pytest.raises(wasync.WasyncError, match="Asyncify protocol"):
            await inst.call("asyncify_start_unwind", 0)
        assert await inst.call("asyncify_get_state") == 0

    asyncio.run(main())


# Binaryen 108's --asyncify emits i32 loads on a 64-bit memory (invalid output), so
# the memory64 header (two u64) is checked on a module instrumented by hand.
MEMORY64 = r"""
(module
  (import "env" "get" (func $get (param i64) (result i64)))
  (memory (export "memory") i64 1)
  (global $state (mut i32) (i32.const 0))
  (global $data (mut i64) (i64.const 0))
  (func $check
    (if (i64.gt_u (i64.load (global.get $data)) (i64.load offset=8 (global.get $data)))
      (then (unreachable))))
  (func (export "asyncify_start_unwind") (param i64)
    (global.set $state (i32.const 1)) (global.set $data (local.get 0)) (call $check))
  (func (export "asyncify_stop_unwind") (global.set $state (i32.const 0)) (call $check))
  (func (export "asyncify_start_rewind") (param i64)
    (global.set $state (i32.const 2)) (global.set $data (local.get 0)) (call $check))
  (func (export "asyncify_stop_rewind") (global.set $state (i32.const 0)) (call $check))
  (func (export "asyncify_get_state") (result i32) (global.get $state))
  ;; get(x) + x; the frame is x (8 bytes)
  (func (export "run") (param $x i64) (result i64)
    (local $r i64)
    (if (i32.eq (global.get $state) (i32.const 2))
      (then
        (i64.store (global.get $data) (i64.sub (i64.load (global.get $data)) (i64.const 8)))
        (local.set $x (i64.load (i64.load (global.get $data))))))
    (local.set $r (call $get (local.get $x)))
    (if (i32.eq (global.get $state) (i32.const 1))
      (then
        (i64.store (i64.load (global.get $data)) (local.get $x))
        (i64.store (global.get $data) (i64.add (i64.load (global.get $data)) (i64.const 8)))
        (return (i64.const 0))))
    (i64.add (local.get $r) (local.get $x))))
"""


def test_memory64_header_is_two_u64() -> None:
    async def main() -> None:
        async def get(x: int) -> int:
            await asyncio.sleep(0)
            return x * 2**40

        mod = wasync.Module.from_wat(MEMORY64)
        inst = await wasync.instantiate(mod, {"env": {"get": get}}, asyncify_stack_size=4096)
        assert inst.strategy == "asyncify"
        mem = inst.memory
        assert mem is not None
        address = backend_of(inst).data_address
        assert address == 65536
        header = struct.unpack("<QQ", mem.read(address, 16))
        assert header == (address + 16, address + 4096)
        assert await inst.exports.run(3) == 3 * 2**40 + 3
        assert struct.unpack("<QQ", mem.read(address, 16)) == header

        small = await wasync.instantiate(mod, {"env": {"get": get}}, asyncify_stack_size=20)
        with pytest.raises(wasync.AsyncifyStackOverflow) as info:
            await small.exports.run(1)
        assert (info.value.needed, info.value.available) == (8, 4)

    asyncio.run(main())


# A module instrumented by hand (the Asyncify ABI on memory 0, frames of one i32):
# "run" follows the protocol; "sloppy" restores its frame on the rewind without
# popping it; "both" suspends in an import with two results.
HAND = r"""
(module
  (import "env" "get" (func $get (param i32) (result i32)))
  (import "env" "pair" (func $pair (param i32) (result i32 i64)))
  (memory (export "memory") 1)
  (global $state (mut i32) (i32.const 0))
  (global $data (mut i32) (i32.const 0))
  (func $check
    (if (i32.gt_u (i32.load (global.get $data)) (i32.load offset=4 (global.get $data)))
      (then (unreachable))))
  (func (export "asyncify_start_unwind") (param i32)
    (global.set $state (i32.const 1)) (global.set $data (local.get 0)) (call $check))
  (func (export "asyncify_stop_unwind") (global.set $state (i32.const 0)) (call $check))
  (func (export "asyncify_start_rewind") (param i32)
    (global.set $state (i32.const 2)) (global.set $data (local.get 0)) (call $check))
  (func (export "asyncify_stop_rewind") (global.set $state (i32.const 0)) (call $check))
  (func (export "asyncify_get_state") (result i32) (global.get $state))
  (func $pop (result i32)
    (i32.store (global.get $data) (i32.sub (i32.load (global.get $data)) (i32.const 4)))
    (i32.load (i32.load (global.get $data))))
  (func $push (param i32)
    (i32.store (i32.load (global.get $data)) (local.get 0))
    (i32.store (global.get $data) (i32.add (i32.load (global.get $data)) (i32.const 4))))
  (func (export "run") (param $x i32) (result i32)
    (local $r i32)
    (if (i32.eq (global.get $state) (i32.const 2)) (then (local.set $x (call $pop))))
    (local.set $r (call $get (local.get $x)))
    (if (i32.eq (global.get $state) (i32.const 1))
      (then (call $push (local.get $x)) (return (i32.const 0))))
    (i32.add (local.get $r) (local.get $x)))
  (func (export "sloppy") (param $x i32) (result i32)
    (local $r i32)
    (if (i32.eq (global.get $state) (i32.const 2))
      (then (local.set $x (i32.load (i32.sub (i32.load (global.get $data)) (i32.const 4))))))
    (local.set $r (call $get (local.get $x)))
    (if (i32.eq (global.get $state) (i32.const 1))
      (then (call $push (local.get $x)) (return (i32.const 0))))
    (i32.add (local.get $r) (local.get $x)))
  (func (export "both") (param $x i32) (result i64)
    (local $a i32) (local $b i64)
    (if (i32.eq (global.get $state) (i32.const 2)) (then (local.set $x (call $pop))))
    (call $pair (local.get $x))
    (local.set $b)
    (local.set $a)
    (if (i32.eq (global.get $state) (i32.const 1))
      (then (call $push (local.get $x)) (return (i64.const 0))))
    (i64.add (i64.extend_i32_s (local.get $a)) (local.get $b))))
"""


def test_hand_instrumented_module_results_and_errors() -> None:
    """The stubs hand a result over on the rewind; an exception, or a result of
    the wrong shape, is raised at the import through the Python callback; a
    rewind that does not bring the data position back is reported, and the
    instance carries on."""

    async def main() -> None:
        answer: list[object] = []

        async def get(x: int) -> int:
            await asyncio.sleep(0)
            if x < 0:
                raise LookupError(x)
            return x * 10

        async def pair(x: int) -> object:
            await asyncio.sleep(0)
            return answer[0]

        inst = await wasync.instantiate(
            wasync.Module.from_wat(HAND), {"env": {"get": get, "pair": pair}}
        )
        assert inst.strategy == "asyncify"
        start = backend_of(inst).data_address + 8
        assert await inst.exports.run(4) == 44
        with pytest.raises(LookupError):
            await inst.exports.run(-1)
        assert position(inst)[0] == start
        answer[:] = [(2, 2**40)]
        assert await inst.exports.both(7) == 2 + 2**40
        for bad in [(1,), ("x", 1), 5]:
            answer[:] = [bad]
            with pytest.raises(TypeError):
                await inst.exports.both(7)
            assert position(inst)[0] == start
        for x in (3, -3):  # the stubs' check, and the Python callback's
            with pytest.raises(wasync.WasyncError, match="restored inconsistently"):
                await inst.exports.sloppy(x)
            assert position(inst)[0] == start
        assert await inst.exports.run(5) == 55

    asyncio.run(main())
