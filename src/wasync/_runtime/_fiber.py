"""The "fiber" strategy: wasmtime's async C API suspends the native wasm stack.

An ``async def`` import is defined with ``wasmtime_linker_define_async_func``:
when wasm calls it, wasmtime runs our callback on the wasm fiber, which only
records the call in the instance's mailbox and hands wasmtime a continuation;
the call future's poll then returns "pending". The driver (a coroutine on the
event loop) reads the recorded call, awaits the user's coroutine, writes the
result (or a trap) and polls again: the continuation reports done and the wasm
code resumes. Nothing polls in a loop: the next poll happens when the awaited
thing completes. Plain callables are ordinary synchronous host functions, with
no suspension cost.

The callback of ``async def`` imports is C (``_native.c``, built with wasync
where a compiler is available): it records the call without the GIL and
without a Python frame on the fiber. Without the extension, a Python callback
writes the same mailbox.
"""

from __future__ import annotations

import ctypes
import inspect
import struct
import threading
import weakref
from typing import TYPE_CHECKING, Any

import wasmtime

from wasync._errors import WasyncError
from wasync._runtime import _aio
from wasync._runtime._common import (
    ExportCall,
    PlainImports,
    close_awaitable,
    define_import,
    epoch_yield_and_update,
    lookup_exports,
    raise_call_failure,
)
from wasync._runtime._ffi import (
    ASYNC_CALLBACK,
    CONTINUATION,
    FLAG_READER,
    RAW,
    Marshal,
    call_future_poll,
    ffi,
    marshal_for,
    store_pointer,
    trap_address,
    word,
)
from wasync._runtime._module import engine_for

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

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

# How the driver runs an async import (the mode in its _Plan).
_AWAIT_CALL, _AWAIT_CALL_WITH_CALLER, _AWAIT_RESULT = 0, 1, 2

# The mailbox: where the callback of an async import records the call for the
# driver (the layout of _native.c's mailbox_t). Words: the import's slot
# (1-based; 0: no call), the address of its arguments, of its results and of
# its trap slot; then the continuation handed to wasmtime ({callback, env,
# finalizer}: the callback reports whether the driver has written the
# results); then the byte that says so, and a 0 byte.
_HEAD = struct.Struct("<QQQQ")
_CONT = _HEAD.size
_DONE = _CONT + 24
_MAILBOX_SIZE = 64
_NO_CALL = bytes(8)


def _native_callback() -> Any:
    """_native.c's callback as an ASYNC_CALLBACK, if the extension is built and
    agrees with the layout above."""
    try:
        from wasync._runtime import _native  # noqa: PLC0415
    except ImportError:  # built without a C compiler: the Python callback does its work
        return None
    layout = (_native.MAILBOX_SIZE, _native.MAILBOX_CONT, _native.MAILBOX_DONE)
    if layout != (_MAILBOX_SIZE, _CONT, _DONE) or _native.IMPORT_ENV_SIZE != 16:
        return None  # pragma: no cover - a build for another pointer size
    return ASYNC_CALLBACK(_native.on_call)


# Used by every fiber instance created while it is set (tests clear it to run
# the Python callback).
NATIVE_CALLBACK = _native_callback()


# The constant part of one async import's pending call, what the driver needs,
# unpacked in one step (an exact tuple: UNPACK_SEQUENCE's fast path): (import,
# its function, mode, reader of its arguments (RAW, address), int_pack,
# int_kind, int_mask, result marshalling). A single i32/i64 result is stored
# without a Python call when the value is an int:
# ``int_pack(RAW, address, int_kind, value & int_mask)`` (Marshal.int_write).
_Plan = tuple[
    "HostFunc",
    "Callable[..., Any]",
    int,
    "Callable[[Any, int], tuple[Any, ...]]",
    "Callable[..., None] | None",
    int,
    int,
    Marshal,
]


def _plan(hf: HostFunc, *, awaits_result: bool) -> _Plan:
    """`awaits_result`: the import returns an awaitable (a "maybe async" import)."""
    out = marshal_for(hf.result_kinds)
    if awaits_result:
        mode = _AWAIT_RESULT
    else:
        mode = _AWAIT_CALL_WITH_CALLER if hf.wants_caller else _AWAIT_CALL
    pack, kind, mask = out.int_write or (None, 0, 0)
    return (hf, hf.fn, mode, marshal_for(hf.param_kinds).read, pack, kind, mask, out)


def _maybe_entry(hf: HostFunc) -> tuple[Any, ...]:
    """What the callback of "maybe async" imports needs of `hf`: (unpack the
    arguments, the function, whether it wants the caller, write one result,
    write the results, convert the returned value, one result?, label)."""
    results = marshal_for(hf.result_kinds)
    return (
        marshal_for(hf.param_kinds).unpack,
        hf.fn,
        hf.wants_caller,
        results.write_one,
        results.pack_into,
        hf.convert_result,
        len(hf.result_kinds) == 1,
        hf.label,
    )


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
        self._host_error: BaseException | None = None
        # A call future is alive: it borrows the store, so close() must not drop
        # the store under it (it leaves it in _retired for the driver to drop
        # once the future is deleted).
        self._driving = False
        self._retired: tuple[object, ...] = ()
        self._funcs: dict[str, tuple[Any, tuple[int, ...], tuple[int, ...]]] = {}
        self._memories: dict[str, Memory] = {}
        self._calls: dict[str, ExportCall] = {}
        self._names = inst.module.binary.function_names()
        # The mailbox (see _HEAD), in a bytearray: ``mailbox[_DONE] = 1`` is
        # several times cheaper than a store through ctypes. The ctypes view pins
        # its buffer, whose address C writes to, in place.
        self._mailbox = bytearray(_MAILBOX_SIZE)
        self._mailbox_pin = (ctypes.c_char * _MAILBOX_SIZE).from_buffer(self._mailbox)
        mailbox = ctypes.addressof(self._mailbox_pin)
        # The continuation's callback: C's strlen over {done, 0} where available
        # (see FLAG_READER), else a Python callback.
        self._continuation = CONTINUATION(self._poll_pending)
        if FLAG_READER is not None:
            callback, env = FLAG_READER, mailbox + _DONE
        else:
            callback, env = ctypes.cast(self._continuation, ctypes.c_void_p).value or 0, 0
        self._continuation_bytes = struct.pack("<QQQ", callback, env, 0)
        self._mailbox[_CONT:_DONE] = self._continuation_bytes
        # What an async import that is a "maybe async" one returned (its slot is
        # in the mailbox).
        self._awaitable: object = None
        # The async imports (slot k is _plans[k - 1]); for the C callback, each
        # one's env: {mailbox, slot}.
        self._plans: list[_Plan] = []
        # The callbacks shared by the plain imports and by the "maybe async"
        # ones (made with the first), and what the latter needs per slot.
        self._plain: PlainImports | None = None
        self._maybe: Any = None
        self._maybe_entries: list[tuple[Any, ...]] = [()]
        n_async = sum(1 for hf in host if hf.is_async or hf.maybe_async)
        self._native = NATIVE_CALLBACK
        self._envs = (ctypes.c_uint64 * (2 * n_async))()
        self._envs_address = ctypes.addressof(self._envs)
        for k in range(n_async):
            self._envs[2 * k], self._envs[2 * k + 1] = mailbox, k + 1
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
        if not (hf.is_async or hf.maybe_async):
            if self._plain is None:
                self._plain = PlainImports(self, inst.caller)
            self._keep.append(self._plain.define(self._linker, hf))
            return
        self._plans.append(_plan(hf, awaits_result=hf.maybe_async))
        slot = len(self._plans)
        self._maybe_entries.append(_maybe_entry(hf) if hf.maybe_async else ())
        if hf.maybe_async:
            # One callback for all of them, told apart by its env: the slot.
            if self._maybe is None:
                self._maybe = ASYNC_CALLBACK(self._maybe_callback())
            self._keep.append(define_import(self._linker, hf, self._maybe, slot))
        elif self._native is not None:
            env = self._envs_address + 16 * (slot - 1)
            self._keep.append(define_import(self._linker, hf, self._native, env))
        else:
            cb = ASYNC_CALLBACK(self._async_callback(slot))
            self._keep += [cb, define_import(self._linker, hf, cb)]

    def _async_callback(self, slot: int) -> Any:
        """What _native.c's callback does, in Python."""
        continuation = self._continuation_bytes
        size = len(continuation)
        mailbox = self._mailbox
        head = _HEAD.pack_into
        raw = RAW

        def callback(
            env: int, caller: int, args: int, nargs: int, res: int, nres: int, trap: int, cont: int
        ) -> None:
            # Runs on the wasm fiber: record the call and hand wasmtime our
            # continuation; the driver does the rest.
            head(mailbox, 0, slot, args, res, trap)
            mailbox[_DONE] = 0
            raw[cont : cont + size] = continuation

        return callback

    def _maybe_callback(self) -> Any:
        """The callback of the "maybe async" imports (`env`: the import's slot):
        called at once, on the wasm fiber; a plain result is written and the
        continuation reports done on its first poll (the fiber never suspends);
        an awaitable is left for the driver."""
        continuation = self._continuation_bytes
        size = len(continuation)
        mailbox = self._mailbox
        head = _HEAD.pack_into
        raw = RAW
        inst = self._inst
        entries = self._maybe_entries

        def callback(
            env: int, caller: int, args: int, nargs: int, res: int, nres: int, trap: int, cont: int
        ) -> None:
            unpack, fn, wants_caller, write_one, pack_into, convert, single, label = entries[env]
            try:
                values = unpack(args)
                value = fn(inst.caller, *values) if wants_caller else fn(*values)
                if single and value.__class__ in (int, float):
                    write_one(res, value)
                    mailbox[_DONE] = 1
                elif inspect.isawaitable(value):
                    self._awaitable = value
                    head(mailbox, 0, env, args, res, trap)
                    mailbox[_DONE] = 0
                else:
                    pack_into(res, convert(value))
                    mailbox[_DONE] = 1
            except BaseException as e:  # noqa: BLE001 - must not unwind into C; re-raised after
                self._host_error = e
                store_pointer(trap, trap_address(f"import {label} raised {type(e).__name__}: {e}"))
                mailbox[_DONE] = 1
            raw[cont : cont + size] = continuation

        return callback

    def _poll_pending(self, env: int) -> bool:
        return bool(self._mailbox[_DONE])

    # -- driving a call future ------------------------------------------------

    async def _drive(
        self, fut: Any, trap: Any, error: Any, entry: ExportCall | None = None
    ) -> object:
        """Poll `fut` to completion, running each async import the wasm code makes
        (the only await points are the imports' own awaitables, and a checkpoint
        when the CPU guard makes the wasm code yield); then raise what the call
        left in `trap`/`error`, or return the results of export call `entry`.

        One coroutine for the whole call (`call` returns it without a frame of
        its own): every suspension passes through each coroutine frame twice."""
        poll = call_future_poll
        future = word(ctypes.cast(fut, ctypes.c_void_p).value or 0)
        mailbox = self._mailbox
        recorded = _HEAD.unpack_from
        plans = self._plans
        raw = RAW
        self._driving = True
        try:
            while not poll(future):
                slot, args, results, trap_slot = recorded(mailbox)
                if not slot:
                    await _aio.checkpoint()  # the CPU guard: let the loop run
                    if self._store is None:
                        raise WasyncError("the instance is closed")
                    continue
                mailbox[0:8] = _NO_CALL
                hf, fn, mode, read, int_pack, int_kind, int_mask, out = plans[slot - 1]
                try:
                    if mode == _AWAIT_CALL:
                        value = await fn(*read(raw, args))
                    elif mode == _AWAIT_RESULT:
                        # the awaitable the import returned
                        awaitable, self._awaitable = self._awaitable, None
                        value = await awaitable  # type: ignore[misc]
                    else:
                        value = await fn(self._inst.caller, *read(raw, args))
                    if int_pack is not None and value.__class__ is int:
                        int_pack(raw, results, int_kind, value & int_mask)
                    elif out.single and value.__class__ in (int, float):
                        out.write_one(results, value)
                    else:
                        out.pack_into(results, hf.convert_result(value))
                except Exception as e:  # noqa: BLE001 - delivered to the caller after the trap
                    self._host_error = e
                    store_pointer(
                        trap_slot,
                        trap_address(f"async import {hf.label} raised {type(e).__name__}: {e}"),
                    )
                if self._store is None:  # closed while suspended: the wasm code stops here
                    raise WasyncError("the instance is closed")
                mailbox[_DONE] = 1
        finally:
            # Also on cancellation: deleting an unfinished future drops the fiber
            # and cancels the wasm call cleanly.
            ffi.wasmtime_call_future_delete(fut)
            self._driving = False
            self._retired = ()  # a store closed meanwhile goes now, after the future
            mailbox[0:8] = _NO_CALL
            awaitable, self._awaitable = self._awaitable, None
            if awaitable is not None:
                close_awaitable(awaitable)
        raise_call_failure(trap, error, self._take_host_error(), self._names)
        if entry is None:
            return None
        values = entry.results.unpack(ctypes.addressof(entry.resv))
        if entry.m == 1:
            return values[0]
        return values if entry.m else None

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
        await self._drive(fut, trap, error)
        self._raw_instance = raw
        self._funcs, self._memories = lookup_exports(self._ctx, raw, self._module, self._context)

    def _take_host_error(self) -> BaseException | None:
        err, self._host_error = self._host_error, None
        return err

    def _context(self) -> Any:
        if self._store is None:
            raise WasyncError("the instance is closed")
        return self._ctx

    def call(self, name: str, args: tuple[object, ...]) -> Coroutine[Any, Any, object]:
        entry = self._calls.get(name)
        if entry is None:
            found = self._funcs.get(name)
            if found is None:
                raise WasyncError(f"export {name!r} cannot be called (reference-typed signature)")
            entry = self._calls[name] = ExportCall(*found)
        ctx = self._context()
        entry.params.pack_into(ctypes.addressof(entry.argv), args)
        trap = ctypes.POINTER(ffi.wasm_trap_t)()
        error = ctypes.POINTER(ffi.wasmtime_error_t)()
        self._host_error = None
        fut = ffi.wasmtime_func_call_async(
            ctx, ctypes.byref(entry.func), entry.argv, entry.n, entry.resv, entry.m,
            ctypes.byref(trap), ctypes.byref(error),
        )  # fmt: skip
        return self._drive(fut, trap, error, entry)

    def memory(self, name: str) -> Memory | None:
        return self._memories.get(name)

    def close(self) -> None:
        self._funcs.clear()
        self._memories.clear()
        if self._driving:
            # A call is suspended: its future borrows the store and points at our
            # callbacks until the driver deletes it (the call then raises).
            self._retired = (self._store, self._linker, list(self._keep))
        self._store = None
        self._linker = None  # type: ignore[assignment]
        self._keep.clear()
