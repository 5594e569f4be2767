"""The "thread" strategy: the instance runs on its own worker thread, which
blocks while the event loop runs an async import (the SharedArrayBuffer +
``Atomics.wait`` idea, with a lock instead of an atomic).

Each instance owns one daemon worker thread and a synchronous wasmtime Store
and Linker. The worker takes jobs (instantiate, call an export) one at a time
from a queue and runs them with the synchronous C API, the GIL released while
wasm code runs: CPU-bound wasm does not block the event loop.

* A **plain** import is called directly **on the worker thread** (a raw
  synchronous callback): it must be thread-safe with respect to whatever it
  shares with code on the event loop.
* An **async** import's callback (on the worker) posts the call to the job and
  wakes the loop side (``_aio`` thread signal), then blocks on a lock. The
  coroutine awaiting the export call (on the loop) runs ``await fn(*args)``,
  writes the results into wasmtime's result array and releases the lock; an
  exception is handed over instead and becomes a trap, re-raised to the
  caller as the original exception (wasm backtrace as a note, the Trap as
  its cause). The loop side only ever awaits the user's awaitables and the
  signal: nothing polls.

Cancellation: if the task awaiting a call is cancelled (or anything else
interrupts it) the call is *abandoned*: an import the worker is blocked in
(or blocks in later) traps at once, so the wasm call unwinds on the worker in
the background and its outcome is discarded; the next call queues behind it.
If the wasm code is running CPU-bound code when the task is cancelled, that
code runs to the end on the worker (nothing can interrupt it) and its result
is discarded; later calls wait for it.

Shutdown: ``close()`` aborts a blocked import, queues a stop and joins the
thread (unless the worker is running wasm or plain-import code, which cannot be
interrupted: then the thread releases the store and exits as soon as that code
returns). The thread holds only a weak reference to the instance's state while
idle, and a finalizer queues the stop when that state is garbage-collected, so
worker threads never outlive their instances (a :class:`Memory` object still
referenced keeps the store, and so the thread, alive).

Cost: each suspension is one cross-thread round trip plus two GIL hand-overs
(tens of microseconds; see tests/test_runtime_thread.py), and every export
call is one more. The strategy suits imports that do real I/O and wasm code
that computes for long stretches; "fiber" is cheaper for chatty imports.

Memory may be read and written from the loop while the worker is blocked in an
async import or idle (the wasm code is not running then). Accessing it while a
call runs wasm code (for instance from another task, or after a cancelled
CPU-bound call) races with that code.
"""

from __future__ import annotations

import contextlib
import ctypes
import inspect
import itertools
import queue
import threading
import weakref
from typing import TYPE_CHECKING, Any

import wasmtime

from wasync._errors import WasyncError
from wasync._runtime import _aio
from wasync._runtime._common import (
    ExportCall,
    ExportFunc,
    PlainImports,
    close_awaitable,
    define_import,
    lookup_exports,
    raise_call_failure,
)
from wasync._runtime._ffi import (
    SYNC_CALLBACK,
    Marshal,
    error_pointer,
    ffi,
    marshal_for,
    trap_address,
)
from wasync._runtime._module import engine_for

if TYPE_CHECKING:
    from wasync._runtime._host import HostFunc
    from wasync._runtime._instance import Instance, Memory

__all__ = ["ThreadBackend"]

_vp = ctypes.c_void_p
# wasmtime_func_call with integer pointers (no ctypes pointer objects per call).
# A CFUNCTYPE foreign function releases the GIL while wasm runs.
_func_call = ctypes.CFUNCTYPE(_vp, _vp, _vp, _vp, ctypes.c_size_t, _vp, ctypes.c_size_t, _vp)(
    ("wasmtime_func_call", ffi.dll)
)
_TRAP_P = ctypes.POINTER(ffi.wasm_trap_t)
_ids = itertools.count(1)


class _Abort:
    """Why an abandoned call's import traps instead of running."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


class _Request:
    """An async import call made on the worker, blocked until answered."""

    __slots__ = (
        "answered", "args", "awaitable", "error", "host", "out", "ready", "results", "taken",
    )  # fmt: skip

    def __init__(
        self,
        host: HostFunc,
        args: tuple[Any, ...],
        out: Marshal,
        results: int,
        awaitable: object = None,
    ) -> None:
        self.host = host
        self.args = args
        self.awaitable = awaitable  # what a "maybe async" import returned
        self.out = out
        self.results = results  # address of wasmtime's result array (valid while blocked)
        self.taken = False  # the loop side has started the coroutine
        self.answered = False  # results written or error set; the worker may go on
        self.error: BaseException | _Abort | None = None
        self.ready = threading.Lock()
        self.ready.acquire()  # released once, by whoever answers


class _Job:
    """Instantiating (``export is None``) or one export call: shared by the worker
    and the coroutine awaiting it. `lock` guards the hand-over fields."""

    __slots__ = (
        "abort", "args", "blocked", "done", "error", "export", "listening", "lock", "signal",
        "value",
    )  # fmt: skip

    def __init__(
        self,
        signal: _aio.ThreadSignal,
        export: ExportCall | None = None,
        args: tuple[object, ...] = (),
    ) -> None:
        self.signal = signal
        self.export = export
        self.args = args
        self.lock = threading.Lock()
        self.abort: _Abort | None = None  # set: imports trap instead of running
        self.listening = True  # a coroutine awaits the outcome
        self.blocked: _Request | None = None  # the import the worker is blocked in
        self.done = False
        self.value: object = None
        self.error: BaseException | None = None

    # -- worker side ----------------------------------------------------------

    def post(self, req: _Request) -> None:
        """Hand `req` to the loop side (or answer it at once if nobody listens)."""
        with self.lock:
            abort = self.abort
            if abort is None:
                self.blocked = req
        if abort is None:
            try:
                self.signal.set_threadsafe()
                return
            except RuntimeError:  # the event loop has finished
                with self.lock:
                    self.abort = abort = self.abort or _Abort("the event loop has finished")
                    self.listening = False
                    if req.answered:
                        return
                    req.answered = True
        else:
            req.answered = True  # nobody else knows about req
        req.error = abort
        req.ready.release()

    def finish(self, value: object, error: BaseException | None) -> None:
        with self.lock:
            self.value = value
            self.error = error
            self.done = True
            listening = self.listening
        if listening:
            # RuntimeError: the event loop has finished; nobody awaits the outcome.
            with contextlib.suppress(RuntimeError):
                self.signal.set_threadsafe()

    # -- loop side (or close(), on any thread) ----------------------------------

    def cut_short(self, reason: str, *, listening: bool) -> bool:
        """Make the import the worker is blocked in trap now, and later ones at
        once; with ``listening=False`` the outcome is not wanted any more.
        Returns whether the worker is now unwinding from an import that traps
        (rather than running wasm or plain-import code)."""
        with self.lock:
            if self.abort is None:
                self.abort = _Abort(reason)
            self.listening = self.listening and listening
            req = self.blocked
            if req is None:
                return False
            if not req.answered:
                req.answered = True
                req.error = self.abort
                req.ready.release()
            return isinstance(req.error, _Abort)

    def take_request(self) -> tuple[_Request | None, bool]:
        with self.lock:
            req = self.blocked
            if req is None or req.taken or req.answered:
                return None, self.done
            req.taken = True
            return req, False

    def answer(
        self, req: _Request, error: BaseException | None, values: tuple[object, ...]
    ) -> None:
        with self.lock:
            if req.answered:
                return  # abandoned meanwhile (close()): the worker has moved on
            if error is None:
                try:
                    req.out.pack_into(req.results, values)
                except Exception as e:  # noqa: BLE001 - a bad result is the import's error
                    error = e
            req.error = error
            req.answered = True
            req.ready.release()


class _Worker:
    """Everything the worker thread uses: store, linker, callbacks, exports.

    Owned by the ThreadBackend; the thread holds it only while running a job."""

    def __init__(self, inst: Instance, host: list[HostFunc]) -> None:
        self.module = inst.module
        self.engine = engine_for(epochs=False)
        self.store: wasmtime.Store | None = wasmtime.Store(self.engine)
        self.ctx = self.store._context()
        self.ctx_addr = ctypes.cast(self.ctx, ctypes.c_void_p).value or 0
        self.linker: wasmtime.Linker | None = wasmtime.Linker(self.engine)
        self.keep: list[object] = []  # ctypes objects wasmtime points at
        self.names = inst.module.binary.function_names()
        self.current: _Job | None = None
        self.closed = False
        self._host_error: BaseException | None = None
        self.funcs: dict[str, ExportFunc] = {}
        self.exports: dict[str, ExportCall] = {}  # built on first call (on the loop)
        self.memories: dict[str, Memory] = {}
        defined: set[tuple[str, str]] = set()
        plain = PlainImports(self, inst.caller)
        self.keep.append(plain)
        # The async and "maybe async" imports: (import, its arguments' and its
        # results' marshalling); import k has env k + 1 (a NULL env arrives as None).
        self._asyncs: list[tuple[HostFunc, Marshal, Marshal]] = []
        asyncs: Any = None
        for hf in host:
            if (hf.module, hf.name) in defined:
                continue  # imported twice: one definition serves both
            defined.add((hf.module, hf.name))
            if hf.is_async or hf.maybe_async:
                # One callback for all of them, told apart by its env: the slot.
                if asyncs is None:
                    asyncs = SYNC_CALLBACK(self._async_callback(inst.caller))
                    self.keep.append(asyncs)
                self._asyncs.append((hf, marshal_for(hf.param_kinds), marshal_for(hf.result_kinds)))
                self.keep.append(define_import(self.linker, hf, asyncs, len(self._asyncs)))
            else:
                self.keep.append(plain.define(self.linker, hf))

    def _async_callback(self, inst_caller: object) -> Any:
        """The callback of the async and "maybe async" imports (`env`: which)."""
        imports = self._asyncs

        def callback(env: int, caller: int, args: int, nargs: int, res: int, nres: int) -> int:
            # Runs on the worker, inside wasm: hand the call to the loop and block.
            hf, params, out = imports[env - 1]
            label = hf.label
            try:
                fn = hf.fn
                maybe = hf.maybe_async
                job = self.current
                assert job is not None
                values = params.unpack(args)
                awaitable: object = None
                if maybe:
                    # A "maybe async" import runs here, like a plain one; only an
                    # awaitable goes to the loop.
                    value = fn(inst_caller, *values) if hf.wants_caller else fn(*values)
                    if not inspect.isawaitable(value):
                        out.pack_into(res, hf.convert_result(value))
                        return 0
                    awaitable = value
                req = _Request(hf, values, out, res, awaitable)
                job.post(req)
                req.ready.acquire()
                with job.lock:
                    job.blocked = None
                    taken = req.taken
                error = req.error
                if error is None:
                    return 0
                if awaitable is not None and not taken:
                    close_awaitable(awaitable)  # abandoned before the loop started it
                if isinstance(error, _Abort):
                    return trap_address(f"async import {label} did not complete: {error.reason}")
                self._host_error = error
                return trap_address(f"async import {label} raised {type(error).__name__}: {error}")
            except BaseException as e:  # noqa: BLE001 - must not unwind into C; re-raised after
                self._host_error = e
                return trap_address(f"async import {label} failed: {type(e).__name__}: {e}")

        return callback

    def context(self) -> Any:
        if self.closed or self.store is None:
            raise WasyncError("the instance is closed")
        return self.ctx

    def _take_host_error(self) -> BaseException | None:
        err, self._host_error = self._host_error, None
        return err

    # -- jobs (on the worker thread) --------------------------------------------

    def run(self, job: _Job) -> None:
        value: object = None
        error: BaseException | None = None
        self.current = job
        self._host_error = None
        try:
            if self.closed:
                raise WasyncError("the instance is closed")
            if job.export is None:
                self._instantiate()
            else:
                value = self._call(job.export, job.args)
        except BaseException as e:  # noqa: BLE001 - handed to the awaiting coroutine
            error = e
        finally:
            self.current = None
            self._host_error = None
        job.finish(value, error)

    def _instantiate(self) -> None:
        assert self.linker is not None
        wmod = self.module.compiled(self.engine)  # compiles here, off the event loop
        raw = ffi.wasmtime_instance_t()
        trap = _TRAP_P()
        error = ffi.wasmtime_linker_instantiate(
            self.linker.ptr(), self.ctx, wmod.ptr(), ctypes.byref(raw), ctypes.byref(trap)
        )
        raise_call_failure(trap, error, self._take_host_error(), self.names)
        self.funcs, self.memories = lookup_exports(self.ctx, raw, self.module, self.context)

    def _call(self, export: ExportCall, args: tuple[object, ...]) -> object:
        export.params.pack_into(ctypes.addressof(export.argv), args)
        trap = _vp()
        error = _func_call(
            self.ctx_addr, ctypes.addressof(export.func), ctypes.addressof(export.argv), export.n,
            ctypes.addressof(export.resv), export.m, ctypes.addressof(trap),
        )  # fmt: skip
        if error or trap.value:
            raise_call_failure(
                ctypes.cast(trap.value or 0, _TRAP_P),
                error_pointer(error) if error else None,
                self._take_host_error(),
                self.names,
            )
        values = export.results.unpack(ctypes.addressof(export.resv))
        if export.m == 1:
            return values[0]
        return values if export.m else None

    def release(self) -> None:
        """Drop the store (on the worker thread, when it stops)."""
        self.closed = True
        self.funcs = {}
        self.exports = {}
        self.memories = {}
        self.store = None
        self.linker = None
        self.keep.clear()


def _worker_main(ref: weakref.ref[_Worker], jobs: queue.SimpleQueue[_Job | None]) -> None:
    """The worker thread: run jobs until told to stop or the state is collected.
    While idle it holds no strong reference to the state (so an unreachable
    instance can be garbage-collected; its finalizer then queues the stop)."""
    while True:
        job = jobs.get()
        worker = ref()
        if job is None:
            if worker is not None:
                worker.release()
            return
        if worker is None:  # collected: its finalizer has queued the stop
            job.finish(None, WasyncError("the instance is closed"))
            continue
        worker.run(job)
        del worker, job


class ThreadBackend:
    strategy = "thread"

    @classmethod
    async def create(cls, inst: Instance, host: list[HostFunc]) -> ThreadBackend:
        backend = cls(inst, host)
        try:
            await backend._run(_Job(_aio.new_thread_signal()))
        except BaseException:
            backend.close()
            raise
        return backend

    def __init__(self, inst: Instance, host: list[HostFunc]) -> None:
        self._inst = weakref.proxy(inst)
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        worker = _Worker(inst, host)
        self._worker: _Worker | None = worker
        # Queues the stop when closed or when the worker state is collected.
        self._stop = weakref.finalize(worker, self._jobs.put, None)
        self._stop.atexit = False  # at exit, daemon threads just end with the process
        self._thread = threading.Thread(
            target=_worker_main,
            args=(weakref.ref(worker), self._jobs),
            name=f"wasync-thread-{next(_ids)}",
            daemon=True,
        )
        self._thread.start()

    @property
    def thread(self) -> threading.Thread:
        """The worker thread (for tests and diagnostics)."""
        return self._thread

    def _require(self) -> _Worker:
        if self._worker is None:
            raise WasyncError("the instance is closed")
        return self._worker

    async def call(self, name: str, args: tuple[object, ...]) -> object:
        worker = self._require()
        export = worker.exports.get(name)
        if export is None:
            found = worker.funcs.get(name)
            if found is None:
                raise WasyncError(f"export {name!r} cannot be called (reference-typed signature)")
            export = worker.exports[name] = ExportCall(*found)
        return await self._run(_Job(_aio.new_thread_signal(), export, args))

    async def _run(self, job: _Job) -> object:
        """Queue `job` and serve its async imports until it is done."""
        self._jobs.put(job)
        signal = job.signal
        try:
            while True:
                signal.clear()  # before looking: a later post sets it again
                req, done = job.take_request()
                if req is not None:
                    await self._serve(job, req)
                elif done:
                    break
                else:
                    await signal.wait()
        except BaseException as e:
            # Cancelled (or interrupted): the worker finishes in the background.
            job.cut_short(
                f"the awaiting task was interrupted ({type(e).__name__})", listening=False
            )
            raise
        error = job.error
        if error is not None:
            job.error = None
            try:
                raise error
            finally:
                del error
        return job.value

    async def _serve(self, job: _Job, req: _Request) -> None:
        """Run one async import on the loop; hand its outcome to the worker."""
        hf = req.host
        try:
            if req.awaitable is not None:
                awaitable, req.awaitable = req.awaitable, None
                value = await awaitable  # type: ignore[misc]
            elif hf.wants_caller:
                value = await hf.fn(self._inst.caller, *req.args)
            else:
                value = await hf.fn(*req.args)
            if len(req.out.kinds) == 1 and value.__class__ in (int, float):
                values: tuple[object, ...] = (value,)
            else:
                values = hf.convert_result(value)
        except Exception as e:  # noqa: BLE001 - delivered to the caller after the trap
            job.answer(req, e, ())
        else:
            job.answer(req, None, values)

    def memory(self, name: str) -> Memory | None:
        return self._require().memories.get(name)

    def close(self) -> None:
        """Stop the worker: abort an import it is blocked in, queue the stop and
        join the thread, unless it is running wasm or plain-import code (which
        cannot be interrupted; the thread then exits when that code returns)."""
        worker = self._worker
        if worker is None:
            return
        self._worker = None
        worker.closed = True
        job = worker.current
        running = job is not None and not job.cut_short("the instance was closed", listening=True)
        self._stop()  # queue the stop (once)
        if not running and threading.current_thread() is not self._thread:
            self._thread.join()
