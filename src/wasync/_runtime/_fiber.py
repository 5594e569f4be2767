"""The "fiber" strategy: wasmtime's async C API suspends the native wasm stack.

An ``async def`` import is defined with ``wasmtime_linker_define_async_func``:
when wasm calls it, wasmtime runs our callback on the wasm fiber, which only
records the call and hands wasmtime a continuation; the call future's poll then
returns "pending". The driver (a coroutine on the event loop) sees the recorded
call, awaits the user's coroutine, writes the result (or a trap) and polls
again: the continuation reports done and the wasm code resumes. Nothing polls
in a loop: the next poll happens when the awaited thing completes. Plain
callables are ordinary synchronous host functions, with no suspension cost.
"""

from __future__ import annotations

import ctypes
import threading
import weakref
from typing import TYPE_CHECKING, Any

import wasmtime

from wasync._errors import WasyncError
from wasync._runtime import _aio
from wasync._runtime._common import (
    epoch_yield_and_update,
    lookup_exports,
    raise_call_failure,
    sync_callback,
    wasmtime_functype,
)
from wasync._runtime._ffi import (
    NO_FINALIZER,
    ffi,
    new_trap,
    read_val,
    take_error,
    write_val,
)
from wasync._runtime._module import engine_for

if TYPE_CHECKING:
    from wasync._runtime._host import HostFunc
    from wasync._runtime._instance import Instance, Memory

__all__ = ["FiberBackend"]


class _Ticker:
    """Advances the epoch of the guard engine while guarded instances exist."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users: weakref.WeakSet[FiberBackend] = weakref.WeakSet()
        self._interval = 0.0
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()

    def register(self, backend: FiberBackend, interval_s: float) -> None:
        with self._lock:
            self._users.add(backend)
            self._interval = min(self._interval or interval_s, interval_s)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="wasync-epoch", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        engine = engine_for(epochs=True)
        while True:
            with self._lock:
                if not self._users:
                    self._thread = None
                    self._interval = 0.0
                    return
                interval = self._interval
            self._wake.wait(interval)
            ffi.wasmtime_engine_increment_epoch(engine.ptr())


_TICKER = _Ticker()


class _Pending:
    """An async import call waiting for its coroutine."""

    __slots__ = ("args", "done", "host", "results", "trap_ret")

    def __init__(
        self, host: HostFunc, args: tuple[object, ...], results: Any, trap_ret: Any
    ) -> None:
        self.host = host
        self.args = args
        self.results = results
        self.trap_ret = trap_ret
        self.done = False


class FiberBackend:
    strategy = "fiber"

    @classmethod
    async def create(cls, inst: Instance, host: list[HostFunc]) -> FiberBackend:
        backend = cls(inst, host)
        await backend._instantiate()
        return backend

    def __init__(self, inst: Instance, host: list[HostFunc]) -> None:
        self._inst = weakref.proxy(inst)
        self._module = inst.module
        guard = inst.options.yield_every_ms
        self._engine = engine_for(epochs=guard is not None)
        self._store: wasmtime.Store | None = wasmtime.Store(self._engine)
        self._ctx = self._store._context()
        self._linker = wasmtime.Linker(self._engine)
        self._keep: list[object] = []  # ctypes objects wasmtime points at
        self._pending: _Pending | None = None
        self._host_error: BaseException | None = None
        self._funcs: dict[str, tuple[Any, tuple[int, ...], tuple[int, ...]]] = {}
        self._memories: dict[str, Memory] = {}
        self._names = inst.module.binary.function_names()
        self._continuation = ffi.wasmtime_func_async_continuation_callback_t(self._poll_pending)
        for hf in host:
            self._define(hf, inst)
        if guard is not None:
            if guard <= 0:
                raise ValueError("yield_every_ms must be positive")
            ffi.wasmtime_context_set_epoch_deadline(self._ctx, 1)
            epoch_yield_and_update(self._ctx, 1)
            _TICKER.register(self, guard / 1000)

    # -- host functions -------------------------------------------------------

    def _define(self, hf: HostFunc, inst: Instance) -> None:
        ft = wasmtime_functype(hf.type)
        module = hf.module.encode()
        name = hf.name.encode()
        caller = inst.caller
        if hf.is_async:
            cb = ffi.wasmtime_func_async_callback_t(self._async_callback(hf))
            err = ffi.wasmtime_linker_define_async_func(
                self._linker.ptr(),
                ctypes.create_string_buffer(module), len(module),
                ctypes.create_string_buffer(name), len(name),
                ft.ptr(), cb, None, NO_FINALIZER,
            )  # fmt: skip
        else:
            cb = ffi.wasmtime_func_callback_t(sync_callback(self, hf, caller))
            err = ffi.wasmtime_linker_define_func(
                self._linker.ptr(),
                ctypes.create_string_buffer(module), len(module),
                ctypes.create_string_buffer(name), len(name),
                ft.ptr(), cb, None, NO_FINALIZER,
            )  # fmt: skip
        if err:
            raise take_error(err)
        self._keep += [cb, ft]

    def _async_callback(self, hf: HostFunc) -> Any:
        kinds = hf.param_kinds

        def callback(
            env: Any, caller: Any, args: Any, nargs: int, results: Any, nresults: int,
            trap_ret: Any, cont: Any,
        ) -> None:  # fmt: skip
            # Runs on the wasm fiber: record the call; the driver does the rest.
            values = tuple(read_val(args[i], k) for i, k in enumerate(kinds))
            self._pending = _Pending(hf, values, results, trap_ret)
            c = cont.contents
            c.callback = self._continuation
            c.env = None
            c.finalizer = NO_FINALIZER

        return callback

    def _poll_pending(self, env: Any) -> bool:
        pending = self._pending
        if pending is None or pending.done:
            self._pending = None
            return True
        return False

    # -- driving a call future ------------------------------------------------

    async def _drive(self, fut: Any) -> None:
        """Poll `fut` to completion, running each async import the wasm code makes
        (the only await points are the imports' own awaitables, and a checkpoint
        when the CPU guard makes the wasm code yield)."""
        try:
            while not ffi.wasmtime_call_future_poll(fut):
                pending = self._pending
                if pending is None or pending.done:
                    await _aio.checkpoint()  # the CPU guard: let the loop run
                    continue
                hf = pending.host
                args = (self._inst.caller, *pending.args) if hf.wants_caller else pending.args
                try:
                    value = await hf.fn(*args)
                    values = hf.convert_result(value)
                    for i, (k, v) in enumerate(zip(hf.result_kinds, values, strict=True)):
                        write_val(pending.results[i], k, v)
                except Exception as e:  # noqa: BLE001 - delivered to the caller after the trap
                    self._host_error = e
                    pending.trap_ret[0] = new_trap(
                        f"async import {hf.label} raised {type(e).__name__}: {e}"
                    )
                pending.done = True
        finally:
            # Also on cancellation: deleting an unfinished future drops the fiber
            # and cancels the wasm call cleanly.
            ffi.wasmtime_call_future_delete(fut)
            self._pending = None

    async def _instantiate(self) -> None:
        assert self._store is not None
        wmod = self._module.compiled(self._engine)
        raw = ffi.wasmtime_instance_t()
        trap = ctypes.POINTER(ffi.wasm_trap_t)()
        error = ctypes.POINTER(ffi.wasmtime_error_t)()
        self._host_error = None
        fut = ffi.wasmtime_linker_instantiate_async(
            self._linker.ptr(), self._ctx, wmod.ptr(), ctypes.byref(raw),
            ctypes.byref(trap), ctypes.byref(error),
        )  # fmt: skip
        await self._drive(fut)
        raise_call_failure(trap, error, self._take_host_error(), self._names)
        self._raw_instance = raw
        self._funcs, self._memories = lookup_exports(self._ctx, raw, self._module, self._context)

    def _take_host_error(self) -> BaseException | None:
        err, self._host_error = self._host_error, None
        return err

    def _context(self) -> Any:
        if self._store is None:
            raise WasyncError("the instance is closed")
        return self._ctx

    async def call(self, name: str, args: tuple[object, ...]) -> object:
        entry = self._funcs.get(name)
        if entry is None:
            raise WasyncError(f"export {name!r} cannot be called (reference-typed signature)")
        func, params, results = entry
        ctx = self._context()
        n, m = len(params), len(results)
        argv = (ffi.wasmtime_val_t * max(n, 1))()
        for i, (k, v) in enumerate(zip(params, args, strict=True)):
            write_val(argv[i], k, v)
        resv = (ffi.wasmtime_val_t * max(m, 1))()
        trap = ctypes.POINTER(ffi.wasm_trap_t)()
        error = ctypes.POINTER(ffi.wasmtime_error_t)()
        self._host_error = None
        fut = ffi.wasmtime_func_call_async(
            ctx, ctypes.byref(func), argv, n, resv, m, ctypes.byref(trap), ctypes.byref(error)
        )
        await self._drive(fut)
        raise_call_failure(trap, error, self._take_host_error(), self._names)
        if m == 0:
            return None
        if m == 1:
            return read_val(resv[0], results[0])
        return tuple(read_val(resv[i], k) for i, k in enumerate(results))

    def memory(self, name: str) -> Memory | None:
        return self._memories.get(name)

    def close(self) -> None:
        self._funcs.clear()
        self._memories.clear()
        self._store = None
        self._linker = None  # type: ignore[assignment]
        self._keep.clear()
