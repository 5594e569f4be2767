"""The "asyncify" strategy: modules transformed by Asyncify unwind and rewind
their own stack, so a synchronous wasmtime store is enough.

The module runs on a plain (synchronous) wasmtime store. When wasm calls an
``async def`` import, the runtime records the call, calls the module's export
``asyncify_start_unwind(data)`` and returns a zero value: every instrumented
frame saves its locals into the data buffer and returns, so the export call
returns to the driver (a coroutine on the event loop) with the state
"unwinding". The driver calls ``asyncify_stop_unwind()``, awaits the user's
coroutine, calls ``asyncify_start_rewind(data)`` and calls the **same export
again with the same arguments**: the frames restore themselves on entry, the
import is called again in the state "rewinding", and this time the runtime
calls ``asyncify_stop_rewind()`` and returns the awaited result. The wasm code
carries on from there. Plain imports are ordinary synchronous host functions.

The data buffer holds the unwound frames between the two calls. Its header at
``data`` is ``[position, end]`` (two u32, or two u64 for a 64-bit memory); the
frames are written upward from ``data + header size``. Binaryen's code checks
``position <= end`` only in ``start_*``/``stop_*``, not while it writes frames:
an unwind deeper than the buffer writes past its end before anyone notices, so
the default buffer is large (1 MiB) and an overflow is reported as
:class:`~wasync.AsyncifyStackOverflow` with the size that was needed.

That is the protocol; most of its steps run in wasm, in two helper modules
instantiated beside the module (see _asyncify_helper): stubs between the
module and its async imports, which start the unwind and hand over the
awaited result on the rewind without entering Python, and trampolines through
which the driver calls the exports, which start the rewind and report the
Asyncify state and the data header. A suspension of an ``async def`` import
then costs the driver one call into wasm; the Python callback behind each stub
runs for "maybe async" imports, for an import whose result the stubs cannot
hand over (an exception, a value of the wrong type) and to report misuse.
"""

from __future__ import annotations

import ctypes
import inspect
import struct
import weakref
from typing import TYPE_CHECKING, Any, NoReturn

import wasmtime

from wasync._asyncify.transform import data_memory
from wasync._binary.types import ExternKind, FuncType, Limits, NumType
from wasync._errors import AsyncifyStackOverflow, Trap, WasyncError
from wasync._runtime._asyncify_helper import (
    ARGS,
    DATA,
    DRIVING,
    MODE,
    PENDING,
    SLOW,
    STATUS,
    STATUS_REWIND_POSITION,
    UNWIND,
    Helper,
)
from wasync._runtime._common import (
    PlainImports,
    close_awaitable,
    lookup_exports,
    raise_call_failure,
)
from wasync._runtime._ffi import (
    RAW,
    RAW_VAL_SIZE,
    UNCHECKED_CALLBACK,
    RawMarshal,
    error_pointer,
    ffi,
    raw_function,
    raw_marshal_for,
    take_error,
    trap_address,
    word,
)
from wasync._runtime._module import ASYNCIFY_EXPORTS, engine_for

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from wasync._runtime._common import ExportFunc
    from wasync._runtime._host import HostFunc
    from wasync._runtime._instance import Instance, Memory

__all__ = ["AsyncifyBackend"]

_NORMAL, _UNWINDING, _REWINDING = 0, 1, 2
# The C functions on the hot path, called with word() arguments built once (see
# raw_function): wasmtime_error_t *wasmtime_func_call_unchecked(context, func,
# args_and_results, len, trap_ret) costs about 0.3 us from Python this way,
# wasmtime_func_call with declared argument types about 1.1 us. The signatures
# come from the module, so the values need no checking.
_call_unchecked = raw_function("wasmtime_func_call_unchecked", ctypes.c_void_p)
# The same for the Asyncify exports, which only set globals and check the header:
# the GIL is kept (see raw_function).
_call_abi_unchecked = raw_function(
    "wasmtime_func_call_unchecked", ctypes.c_void_p, release_gil=False
)
# uint8_t *wasmtime_memory_data(context, memory)
_memory_data = raw_function("wasmtime_memory_data", ctypes.c_void_p, release_gil=False)
_I32 = struct.Struct("<i")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
# The stubs' MODE and PENDING words (see _asyncify_helper), read together.
_MODE_PENDING = struct.Struct("<II")
# MODE, PENDING, DRIVING, STATUS, UNWIND: written together at the start of a call.
_FLAGS = struct.Struct("<5I")
# Exports a caller must not call by hand: the runtime owns the unwind/rewind protocol.
_PROTOCOL_EXPORTS = frozenset(ASYNCIFY_EXPORTS) - {"asyncify_get_state"}
# How the driver runs a suspended import (the mode in its _Plan).
_AWAIT_CALL, _AWAIT_CALL_WITH_CALLER = 0, 1

# What the driver needs to run async import K and hand its result over, unpacked
# in one step (an exact tuple: UNPACK_SEQUENCE's fast path): (import, its
# function, mode, reader of its arguments (RAW, address), whether it has exactly
# one result, int_pack, int_mask, result marshalling). A single i32/i64 result is
# stored without a Python call when the value is an int:
# ``int_pack(RAW, address, value & int_mask)`` (RawMarshal.int_write).
_Plan = tuple[
    "HostFunc",
    "Callable[..., Any]",
    int,
    "Callable[[Any, int], tuple[Any, ...]]",
    bool,
    "Callable[..., None] | None",
    int,
    RawMarshal,
]


def _plan(hf: HostFunc) -> _Plan:
    results = raw_marshal_for(hf.result_kinds)
    pack, mask = results.int_write or (None, 0)
    mode = _AWAIT_CALL_WITH_CALLER if hf.wants_caller else _AWAIT_CALL
    read = raw_marshal_for(hf.param_kinds).read
    return (hf, hf.fn, mode, read, len(hf.result_kinds) == 1, pack, mask, results)


class _Pending:
    """An async import's result (or exception) that the Python callback hands
    over on the rewind (the stubs hand over the others themselves)."""

    __slots__ = ("error", "host", "values")

    def __init__(
        self, host: HostFunc, values: tuple[object, ...], error: BaseException | None
    ) -> None:
        self.host = host
        self.values = values
        self.error = error


class _ExportCall:
    """An export's marshalling, with an argument-and-result array of its own
    (``wasmtime_func_call_unchecked``'s), and the call's arguments ready-made.

    With a trampoline (``via``: its wasmtime_func_t, the export's slot in the
    trampolines' table, the data buffer's address and its value kind), the
    export is called through it: three more arguments (the data address, the
    slot, whether to start a rewind first) and three more results (the Asyncify
    state, and the header's position and end when unwinding), in ``tail``."""

    __slots__ = (
        "address", "args", "array", "extra", "m", "n", "params", "raw", "results",
        "rewind_args", "tail", "tail_struct", "via", "words",
    )  # fmt: skip

    def __init__(
        self,
        raw: Any,
        params: tuple[int, ...],
        results: tuple[int, ...],
        ctx: int,
        trap: int,
        via: tuple[Any, int, int, int] | None = None,
    ) -> None:
        self.raw = raw  # the wasmtime_func_t, kept alive with the call
        self.params = raw_marshal_for(params)
        self.results = raw_marshal_for(results)
        self.n = len(params)
        self.m = len(results)
        self.via = via
        extra = 3 if via is not None else 0
        slots = max(self.n + extra, self.m + extra, 1)
        self.array = (ffi.wasmtime_val_raw_t * slots)()
        self.address = ctypes.addressof(self.array)
        self.args = b""  # the packed arguments, copied into the array for every invocation
        self.rewind_args = b""  # the same, asking the trampoline to start the rewind
        self.tail = 0  # where the trampoline's three extra results are
        self.tail_struct: struct.Struct | None = None  # (state, position, end), unsigned
        self.extra: RawMarshal | None = None  # the trampoline's extra arguments
        func = raw
        if via is not None:
            func, _, _, kind = via
            self.tail = self.address + RAW_VAL_SIZE * self.m
            pointer = "Q8x" if kind == 1 else "I12x"
            self.tail_struct = struct.Struct(f"<i12x{pointer}{pointer}")
            self.extra = raw_marshal_for((kind, 0, 0))
        self.words = (
            word(ctx), word(ctypes.addressof(func)), word(self.address), word(slots), word(trap),
        )  # fmt: skip

    def set_args(self, values: Sequence[object]) -> None:
        self.args = self.params.pack(values)
        if self.via is not None and self.extra is not None:
            _, slot, data, _ = self.via
            self.rewind_args = self.args + self.extra.pack((data, slot, 1))
            self.args += self.extra.pack((data, slot, 0))

    def value(self) -> object:
        """The finished call's result: None, one value or a tuple."""
        values = self.results.unpack(self.address)
        if self.m == 1:
            return values[0]
        return values if self.m else None


class _ProtocolError(WasyncError):
    """The module did not follow the Asyncify protocol (raised inside a callback,
    re-raised to the caller with the wasm backtrace)."""


class AsyncifyBackend:
    """Runs an Asyncify-transformed module on a synchronous wasmtime store.

    The data buffer is allocated once per instance, of
    ``InstanceOptions.asyncify_stack_size`` bytes (header included):

    * at ``asyncify_data_address`` if given (the caller vouches for the region);
    * in a memory the transform added for the data alone (wasync's
      ``asyncify_memory``, see :func:`wasync._asyncify.transform.data_memory`):
      all of it, from address 0;
    * else with the module's own ``malloc`` export, if it has one, called once
      after instantiation. This is preferred because the module's allocator then
      knows the region is taken: an allocator that treats everything between its
      heap pointer and the end of memory as its own (Emscripten's ``sbrk``
      compares its break with ``memory.size``; so do simple bump allocators)
      would otherwise hand out the bytes the runtime uses;
    * else by growing the memory by enough pages and using the new pages (never a
      fixed low address, where the module's data and stack live). A large
      overflow then runs off the end of memory and traps instead of corrupting
      data (until the module grows its memory further).

    The header is reset (position = start) before every call and after every
    call, whether it completed, failed or was cancelled; a failed call also
    brings the Asyncify state back to normal, so the next call starts clean.
    """

    strategy = "asyncify"

    @classmethod
    async def create(cls, inst: Instance, host: list[HostFunc]) -> AsyncifyBackend:
        missing = [n for n in ASYNCIFY_EXPORTS if _export_func(inst, n) is None]
        if missing:
            raise WasyncError(
                "strategy 'asyncify' needs a module transformed by Asyncify, but the module "
                f"does not export {', '.join(missing)}: transform it first (`wasm-opt "
                "--asyncify` or wasync's own transform) or use strategy='fiber'"
            )
        backend = cls(inst, host)
        backend._instantiate()
        return backend

    def __init__(self, inst: Instance, host: list[HostFunc]) -> None:
        self._inst = weakref.proxy(inst)
        self._module = inst.module
        self._options = inst.options
        self._engine = engine_for(epochs=False)
        self._store: wasmtime.Store | None = wasmtime.Store(self._engine)
        self._ctx = self._store._context()
        self._ctx_address = ctypes.cast(self._ctx, ctypes.c_void_p).value or 0
        self._linker = wasmtime.Linker(self._engine)
        self._keep: list[object] = []  # ctypes objects wasmtime points at
        self._names = inst.module.binary.function_names()
        self._funcs: dict[str, ExportFunc] = {}
        self._calls: dict[str, _ExportCall] = {}
        self._memories: dict[str, Memory] = {}
        self._host_error: BaseException | None = None
        # Protocol state, shared by the driver (`call`) and the import callbacks;
        # the rest is in the stubs' memory (MODE, PENDING, ...: see _asyncify_helper).
        self._driving = False  # an export call is running (async imports may unwind)
        self._pending: _Pending | None = None  # a result the Python callback hands over
        self._awaitable: object = None  # what a suspended "maybe async" import returned
        # The data buffer.
        ft = _export_func(inst, "asyncify_start_unwind")
        self._is64 = ft is not None and ft.params[:1] == (NumType.I64,)
        self._ptr_kind = 1 if self._is64 else 0
        self._word = _U64 if self._is64 else _U32
        self._pair = struct.Struct("<QQ" if self._is64 else "<II")
        self._header = 2 * self._word.size
        self._memory: Memory | None = None  # the memory that holds the buffer
        self._memory_index = 0  # its index (memory 0 unless transformed otherwise)
        self._dedicated = False  # it holds nothing else (a secondary memory)
        self._memory_address = 0  # its wasmtime_memory_t
        self._data = 0  # address of the header
        self._start = 0  # first byte for frames (data + header size)
        self._end = 0  # one past the last byte for frames
        self._fresh_header = b""
        # The Asyncify exports: (the call's word() arguments, address of the i32
        # result or 0), built once.
        self._abi: dict[str, tuple[tuple[Any, ...], int]] = {}
        self._abi_arrays: list[object] = []
        self._trap_slot = ctypes.c_void_p()
        self._trap_slot_address = ctypes.addressof(self._trap_slot)
        self._memory_words: tuple[Any, ...] = ()  # wasmtime_memory_data's arguments
        # The ABI call the Python callback makes, inline (_prepare_abi sets it; an
        # object ctypes cannot convert until then, so a premature call raises).
        self._stop_rewind: tuple[Any, ...] = (object(),)
        # The unwind of the suspended call was not stopped yet: start_rewind does
        # not depend on the state before it, so the driver goes straight from
        # "unwinding" to "rewinding" (one wasm call less per suspension), and
        # anything else that calls wasm meanwhile stops the unwind first.
        self._unwound = False
        # The async imports, in the stubs' order (import K is stub fK), with
        # their callbacks and what the driver needs to run them.
        self._async_imports: list[tuple[HostFunc, Any]] = []
        self._plans: list[_Plan] = []
        self._plain: PlainImports | None = None
        for hf in host:
            self._define(hf, inst)
        self._helper: Helper | None = None
        self._base = 0  # address of the stubs' memory (0: no stubs, nothing suspends)
        if self._async_imports:
            self._helper = Helper(self._engine, self._ctx, self._async_imports, self._is64)
            self._helper.define_imports(self._linker, [hf for hf, _ in self._async_imports])
            self._base = self._helper.base

    # -- host functions -------------------------------------------------------

    def _define(self, hf: HostFunc, inst: Instance) -> None:
        if hf.is_async or hf.maybe_async:
            index = len(self._async_imports)
            cb = UNCHECKED_CALLBACK(self._async_callback(hf, index))
            self._async_imports.append((hf, cb))  # defined as the stub fK
            self._plans.append(_plan(hf))
            return
        if self._plain is None:
            self._plain = PlainImports(self, inst.caller)
            self._keep.append(self._plain)
        self._keep.append(self._plain.define(self._linker, hf))

    def _label(self, index: int) -> str:
        """The label of the async import of stub number `index`, else "nothing"."""
        if 0 <= index < len(self._async_imports):
            return self._async_imports[index][0].label
        return "nothing"

    def _async_callback(self, hf: HostFunc, index: int) -> Any:
        """The Python side of stub `index` (``slowK``): what the stub does not do
        in wasm. An unchecked host function: the arguments come in, and the
        results go out, through one wasmtime_val_raw_t array (4 C arguments
        instead of 6, and no conversion or check by wasmtime)."""
        params = raw_marshal_for(hf.param_kinds)
        results = raw_marshal_for(hf.result_kinds)
        nbytes = RAW_VAL_SIZE * len(hf.param_kinds)
        raw = RAW
        slot = self._trap_slot
        label = hf.label
        maybe = hf.maybe_async
        fn = hf.fn
        inst = self._inst
        me = index + 1  # this import in the stubs' MODE and PENDING words

        def callback(env: int, caller: int, args: int, size: int) -> int:
            try:
                base = self._base
                mode, pending_import = _MODE_PENDING.unpack_from(raw, base + MODE)
                if mode:
                    # A rewind, and the stub left it to us: hand over the result.
                    pending = self._pending
                    if mode != SLOW or pending is None or pending.host is not hf:
                        if mode != SLOW:
                            other = self._label(mode - 1)
                        else:
                            other = pending.host.label if pending is not None else "nothing"
                        raise _ProtocolError(
                            f"the rewind reached async import {label}, but {other} had "
                            "suspended: the module's Asyncify frames are inconsistent"
                        )
                    _U32.pack_into(raw, base + MODE, 0)
                    self._pending = None
                    slot.value = None
                    error = _call_abi_unchecked(*self._stop_rewind)
                    if error or slot.value:
                        raise_call_failure(
                            _trap_pointer(slot.value), _error_pointer(error), None, self._names
                        )
                    position = self._word.unpack_from(
                        raw, (_memory_data(*self._memory_words) or 0) + self._data
                    )[0]
                    if position != self._start:
                        raise self._rewind_position_error(position)
                    e = pending.error
                    if e is not None:
                        self._host_error = e
                        return trap_address(f"async import {label} raised {type(e).__name__}: {e}")
                    results.pack_into(args, pending.values)
                    return 0
                if pending_import:
                    other = self._label(pending_import - 1)
                    raise _ProtocolError(
                        f"async import {label} was called while the stack was unwinding for "
                        f"{other}: the code calling {other} is not instrumented by Asyncify "
                        "(list every async import in the transform's asyncify-imports)"
                    )
                awaitable: object = None
                if maybe:
                    # A "maybe async" import runs now; only an awaitable suspends.
                    values = params.unpack(args)
                    value = fn(inst.caller, *values) if hf.wants_caller else fn(*values)
                    if not inspect.isawaitable(value):
                        results.pack_into(args, hf.convert_result(value))
                        return 0
                    if not self._driving:
                        close_awaitable(value)  # cannot suspend here: the error below
                    awaitable = value
                if not self._driving:
                    raise WasyncError(
                        f"async import {label} was called outside an export call (during "
                        "instantiation, by the start function, or by the runtime's own "
                        "malloc call): the asyncify strategy can only suspend an export call"
                    )
                # Suspend: record the call; the stub starts the unwind when we return.
                if awaitable is None and nbytes:  # (the stubs record async def imports)
                    raw[base + ARGS : base + ARGS + nbytes] = raw[args : args + nbytes]
                self._awaitable = awaitable
                _U32.pack_into(raw, base + PENDING, me)
                _U32.pack_into(raw, base + UNWIND, 1)
                return 0  # no results: the frames are unwinding and ignore them
            except BaseException as e:  # noqa: BLE001 - must not unwind into C; re-raised after
                self._host_error = e
                return trap_address(f"async import {label}: {type(e).__name__}: {e}")

        return callback

    def _rewind_position_error(self, position: int) -> _ProtocolError:
        return _ProtocolError(
            f"after the rewind the Asyncify data position is {position}, not the buffer "
            f"start {self._start}: the module's frames were saved and restored "
            "inconsistently"
        )

    # -- the instance ---------------------------------------------------------

    def _instantiate(self) -> None:
        assert self._store is not None
        wmod = self._module.compiled(self._engine)
        raw = ffi.wasmtime_instance_t()
        trap = ctypes.POINTER(ffi.wasm_trap_t)()
        self._host_error = None
        error = ffi.wasmtime_linker_instantiate(
            self._linker.ptr(), self._ctx, wmod.ptr(), ctypes.byref(raw), ctypes.byref(trap)
        )
        raise_call_failure(trap, error, self._take_host_error(), self._names)
        self._raw_instance = raw
        self._funcs, self._memories = lookup_exports(self._ctx, raw, self._module, self._context)
        missing = [n for n in ASYNCIFY_EXPORTS if n not in self._funcs]
        if missing:  # exported with an unexpected (reference-typed) signature
            raise WasyncError(f"the module's Asyncify exports are malformed: {', '.join(missing)}")
        # The memory the module keeps its data in: memory 0 unless it was
        # transformed with another one (asyncify-memory, a secondary memory).
        binary = self._module.binary
        index = data_memory(binary) or 0
        self._memory_index = index
        name = next(
            (e.name for e in binary.exports if e.kind is ExternKind.MEMORY and e.index == index),
            None,
        )
        memory = self._memories.get(name) if name is not None else None
        if memory is None:
            # Without that memory the runtime cannot reach the buffer. That is fine
            # only if nothing can suspend (no async imports: the module may still
            # run Asyncify itself, inside wasm).
            if self._async_imports:
                raise WasyncError(
                    f"strategy 'asyncify' keeps the unwound frames in memory {index}, which "
                    "the module does not export: export it, or use strategy='fiber'"
                )
            self._prepare_abi()
            return
        # A memory the transform added for the data alone (wasync exports it as
        # "asyncify_memory"): the buffer is the whole of it.
        imported = sum(1 for i in binary.imports if i.kind is ExternKind.MEMORY)
        self._dedicated = (
            index >= imported and name is not None and (name.startswith("asyncify_memory"))
        )
        self._memory = memory
        self._memory_address = ctypes.addressof(memory._raw)
        self._memory_words = (word(self._ctx_address), word(self._memory_address))
        self._allocate(memory)

    def _allocate(self, memory: Memory) -> None:
        """Place the data buffer (see the class docstring) and write its header."""
        size = self._options.asyncify_stack_size
        if size <= self._header:
            raise ValueError(
                f"asyncify_stack_size must be larger than the {self._header}-byte header, "
                f"not {size}"
            )
        address = self._options.asyncify_data_address
        if address is not None:
            if address < 0 or address % 4 or address + size > memory.size:
                raise ValueError(
                    f"asyncify_data_address={address} with asyncify_stack_size={size}: the "
                    f"buffer must be 4-byte aligned and inside memory {self._memory_index} "
                    f"({memory.size} bytes)"
                )
        elif self._dedicated:
            address = 0
            size = min(size, memory.size)
        elif (
            self._memory_index == 0
            and "malloc" in self._funcs
            and self._funcs["malloc"][1:]
            == (
                (self._ptr_kind,),
                (self._ptr_kind,),
            )
        ):
            address = self._malloc(size)
        else:
            address = self._grow(memory, size)
        if address + size > memory.size:  # the header is accessed without checks
            raise WasyncError(
                f"the Asyncify data buffer at {address} ({size} bytes) does not fit in memory "
                f"{self._memory_index} ({memory.size} bytes): the module's malloc returned a bad "
                "pointer"
            )
        self._data = address
        self._start = address + self._header
        self._end = address + size
        self._fresh_header = self._word.pack(self._start) + self._word.pack(self._end)
        self._prepare_abi()
        self._write_header()

    def _malloc(self, size: int) -> int:
        call = self._new_call("malloc")
        call.set_args((size,))
        self._host_error = None
        self._invoke(call)
        address = int(call.results.unpack(call.address)[0]) & ((1 << (8 * self._word.size)) - 1)
        if address == 0:
            raise WasyncError(
                f"the module's malloc({size}) returned NULL for the Asyncify data buffer: "
                "lower asyncify_stack_size or pass asyncify_data_address"
            )
        return address

    def _grow(self, memory: Memory, size: int) -> int:
        raw = ctypes.byref(memory._raw)
        page = int(ffi.wasmtime_memory_page_size(self._ctx, raw))
        pages = -(-size // page)
        prev = ctypes.c_uint64()
        err = ffi.wasmtime_memory_grow(self._ctx, raw, pages, ctypes.byref(prev))
        if err:
            reason = take_error(err)
            raise WasyncError(
                f"cannot grow memory {self._memory_index} by {pages} page(s) for the "
                f"{size}-byte Asyncify data buffer ({reason}): lower asyncify_stack_size, "
                "export malloc, or pass asyncify_data_address"
            )
        return prev.value * page

    def _context(self) -> Any:
        if self._store is None:
            raise WasyncError("the instance is closed")
        return self._ctx

    def _take_host_error(self) -> BaseException | None:
        err, self._host_error = self._host_error, None
        return err

    # -- the data buffer ------------------------------------------------------

    def _header_address(self) -> int:
        # The buffer was checked to lie inside memory 0 when it was placed, and a
        # memory never shrinks; only its base address may move when it grows.
        if not self._memory_address:
            raise WasyncError("the instance has no Asyncify data buffer (memory 0 not exported)")
        return (_memory_data(*self._memory_words) or 0) + self._data

    def _read_header(self) -> tuple[int, int]:
        """The header's (position, end)."""
        position, end = self._pair.unpack_from(RAW, self._header_address())
        return position, end

    def _write_header(self) -> None:
        """Empty the buffer: position = start."""
        if self._memory_address:  # else there is no buffer: nothing suspends
            address = self._header_address()
            RAW[address : address + self._header] = self._fresh_header

    def _overflow(self, needed: int, *, exact: bool) -> AsyncifyStackOverflow:
        available = self._end - self._start
        amount = f"{needed} bytes" if exact else f"more than {available} bytes"
        return AsyncifyStackOverflow(
            f"the Asyncify data buffer is too small: unwinding the stack needed {amount}, "
            f"but {available} are available (raise asyncify_stack_size=, now "
            f"{self._end - self._data}); the memory after the buffer may have been "
            "overwritten",
            needed=needed,
            available=available,
        )

    # -- calling wasm -----------------------------------------------------------

    def _prepare_abi(self) -> None:
        """Arrays and ready-made call arguments for the Asyncify exports (their
        only argument is the data buffer's address, which never changes; none
        has both an argument and a result, so the array is never overwritten);
        then the helpers' connections."""
        for name in ASYNCIFY_EXPORTS:
            func, params, results = self._funcs[name]
            array = (ffi.wasmtime_val_raw_t * 1)()
            address = ctypes.addressof(array)
            if params:
                data = raw_marshal_for(params).pack((self._data,))
                RAW[address : address + len(data)] = data
            self._abi_arrays += [func, array]
            words = (
                word(self._ctx_address), word(ctypes.addressof(func)), word(address),
                word(max(len(params), len(results))), word(self._trap_slot_address),
            )  # fmt: skip
            self._abi[name] = (words, address if results else 0)
        self._stop_rewind = self._abi["asyncify_stop_rewind"][0]
        if self._helper is not None and self._memory is not None:
            info = self._module.export(self._memory.name)
            assert info is not None
            assert isinstance(info.type, Limits)
            self._helper.connect(
                {name: self._funcs[name][0] for name in ASYNCIFY_EXPORTS},
                self._memory._raw,
                info.type,
                {
                    name: (params, results)
                    for name, (_, params, results) in self._funcs.items()
                    if name not in ASYNCIFY_EXPORTS
                },
            )
            self._word.pack_into(RAW, self._base + DATA, self._data)

    def _call_abi(self, name: str) -> int:
        """Call one of the Asyncify exports; returns its i32 result (0 if none).
        A trap raises :class:`~wasync.Trap`."""
        words, result = self._abi[name]
        slot = self._trap_slot
        slot.value = None
        error = _call_abi_unchecked(*words)
        if error or slot.value:
            raise_call_failure(_trap_pointer(slot.value), _error_pointer(error), None, self._names)
        return int(_I32.unpack_from(RAW, result)[0]) if result else 0

    def _new_call(self, name: str, *, through_helper: bool = False) -> _ExportCall:
        """A call of export `name`: through its trampoline if asked for and the
        helpers are there, else directly."""
        func, params, results = self._funcs[name]
        via = None
        if through_helper and self._helper is not None:
            trampoline = self._helper.trampoline(name, func, (params, results))
            if trampoline is not None:
                via = (*trampoline, self._data, self._ptr_kind)
        return _ExportCall(func, params, results, self._ctx_address, self._trap_slot_address, via)

    def _invoke(self, call: _ExportCall) -> None:
        """Call an export once with its arguments; a trap or error raises (see
        raise_call_failure)."""
        slot = self._trap_slot
        slot.value = None
        args = call.args
        if args:
            address = call.address
            RAW[address : address + len(args)] = args
        error = _call_unchecked(*call.words)
        if error or slot.value:
            self._invoke_failed(error)

    def _begin(self) -> None:
        """The protocol state at the start of an export call."""
        self._host_error = None
        self._pending = None
        self._awaitable = None
        self._driving = True
        if self._base:
            _FLAGS.pack_into(RAW, self._base + MODE, 0, 0, 1, 0, 0)  # DRIVING = 1

    def _invoke_failed(self, error: int | None) -> None:
        """Raise what a failed export call left (the error, or the trap in the slot)."""
        slot = self._trap_slot
        if error or slot.value:
            raise_call_failure(
                _trap_pointer(slot.value), _error_pointer(error), self._take_host_error(),
                self._names,
            )  # fmt: skip

    def _call_failed(self, error: int | None) -> NoReturn:
        """Raise what a failed export call of the driver left: the trap (or the
        Python exception behind it), as an overflow or a protocol error when it
        is one."""
        if (
            self._base
            and self._host_error is None
            and _U32.unpack_from(RAW, self._base + STATUS)[0] == STATUS_REWIND_POSITION
        ):
            # The stubs trapped: the rewind did not bring the position back.
            self._host_error = self._rewind_position_error(self._read_header()[0])
        try:
            self._invoke_failed(error)
        except Trap as t:
            overflow = self._overflow_trap(t)
            if overflow is None:
                raise
            raise overflow from t
        raise WasyncError("the export call failed without a trap or an error")  # unreachable

    def _recover(self) -> None:
        """After a failed or abandoned call: back to the normal state with an empty
        buffer and clear stubs, so that the next call starts clean. Never raises."""
        if self._store is None:
            return
        if self._base:
            _FLAGS.pack_into(RAW, self._base + MODE, 0, 0, int(self._driving), 0, 0)
        try:
            self._write_header()  # first: stop_* traps if position > end
            state = self._call_abi("asyncify_get_state")
            if state == _UNWINDING:
                self._call_abi("asyncify_stop_unwind")
            elif state == _REWINDING:
                self._call_abi("asyncify_stop_rewind")
            self._write_header()
        except WasyncError:
            pass  # the memory is gone or the module is broken: the next call will say so

    # -- calls ----------------------------------------------------------------

    def _export_call(self, name: str) -> _ExportCall:
        call = self._calls.get(name)
        if call is None:
            found = self._funcs.get(name)
            if found is None:
                raise WasyncError(f"export {name!r} cannot be called (reference-typed signature)")
            if name in _PROTOCOL_EXPORTS:
                raise WasyncError(f"export {name!r} belongs to the Asyncify protocol")
            call = self._calls[name] = self._new_call(name, through_helper=True)
        return call

    async def call(self, name: str, args: tuple[object, ...]) -> object:
        self._context()  # not closed
        call = self._export_call(name)
        if self._driving:
            raise WasyncError(f"call to {name!r} while another call runs on this instance")
        call.set_args(args)
        self._write_header()
        self._begin()
        clean = False
        # The loop runs once per suspension, with everything inlined (a Python
        # call costs about 0.1 us here): one call into wasm (the export, through
        # its trampoline, which starts the rewind first from the second round
        # on), then the stubs' words and the trampoline's report are read from
        # memory at fixed addresses.
        slot = self._trap_slot
        words = call.words
        address = call.address
        packed = call.args
        size = len(packed)
        tail = call.tail
        tail_read = call.tail_struct.unpack_from if call.tail_struct is not None else None
        base = self._base
        mode_pending = _MODE_PENDING.unpack_from
        u32_pack = _U32.pack_into
        plans = self._plans
        args_address = base + ARGS
        results_address = self._helper.results if self._helper is not None else 0
        start = self._start
        try:
            while True:
                slot.value = None
                RAW[address : address + size] = packed
                error = _call_unchecked(*words)
                if error or slot.value:
                    self._call_failed(error)
                if tail_read is None:  # no trampoline: no async import can suspend
                    clean = True
                    return call.value()
                state, position, end = tail_read(RAW, tail)
                mode, pending = mode_pending(RAW, base + MODE)
                if not state and not pending:
                    clean = True
                    return call.value()
                if state != _UNWINDING or not pending or mode:
                    raise self._protocol_failure(name, state, pending, mode)
                # The stack is unwound: check the buffer held it, then run the coroutine.
                if position > end:
                    raise self._overflow(position - start, exact=True)
                if position == start:
                    # Every instrumented frame saves at least where it resumes.
                    raise WasyncError(
                        f"async import {self._label(pending - 1)} started an unwind, but no "
                        f"frame was saved: export {name!r} and the functions calling the import "
                        "are not instrumented by Asyncify (list every async import in the "
                        "transform's asyncify-imports); rewinding would run it twice"
                    )
                u32_pack(RAW, base + PENDING, 0)
                self._unwound = True  # stop_unwind is left out, see __init__
                hf, fn, how, read, single, int_pack, int_mask, results = plans[pending - 1]
                values: tuple[object, ...] = ()
                failure: BaseException | None = None
                try:
                    awaitable = self._awaitable
                    if awaitable is not None:
                        self._awaitable = None
                        value = await awaitable  # type: ignore[misc]
                    elif how == _AWAIT_CALL:
                        value = await fn(*read(RAW, args_address))
                    else:
                        value = await fn(self._inst.caller, *read(RAW, args_address))
                except Exception as e:  # noqa: BLE001 - raised inside wasm at the import
                    failure = e
                # First: closed meanwhile? (then the stubs' memory is gone)
                if self._store is None:
                    self._context()
                # Place the result for the stub, which hands it over on the rewind; an
                # exception, or a result that cannot be stored, goes to the Python
                # callback instead, which raises it inside wasm at the import (so the
                # caller sees the same result and backtrace as with the other strategies).
                handover = pending
                if failure is not None:
                    handover = SLOW
                elif single and int_pack is not None and value.__class__ is int:
                    int_pack(RAW, results_address, value & int_mask)
                else:
                    try:
                        values = (value,) if single else hf.convert_result(value)
                    except Exception as e:  # noqa: BLE001 - the wrong number of values
                        failure = e
                        handover = SLOW
                    else:
                        try:
                            results.pack_into(results_address, values)
                        except Exception:  # noqa: BLE001 - packed again by the callback, which reports it
                            handover = SLOW
                if handover == SLOW:
                    self._pending = _Pending(hf, values, failure)
                u32_pack(RAW, base + MODE, handover)
                self._unwound = False
                packed = call.rewind_args  # the trampoline starts the rewind
        finally:
            # Also on cancellation while awaiting: _recover stops the unwind, the
            # saved frames are simply dropped.
            self._driving = False
            self._unwound = False
            self._pending = None
            close_awaitable(self._awaitable)
            self._awaitable = None
            if clean:
                if self._base:
                    _U32.pack_into(RAW, self._base + DRIVING, 0)
                self._write_header()
            else:
                self._recover()

    def _overflow_trap(self, trap: Trap) -> AsyncifyStackOverflow | None:
        """A memory trap while our import was unwinding the stack is the buffer
        running off the end of memory."""
        if not self._base or trap.code != "MEMORY_OUT_OF_BOUNDS":
            return None
        mode, pending = _MODE_PENDING.unpack_from(RAW, self._base + MODE)
        if pending and not mode and self._call_abi("asyncify_get_state") == _UNWINDING:
            position = self._read_header()[0]
            needed = max(position - self._start, self._end - self._start) + 1
            return self._overflow(needed, exact=False)
        return None

    def _protocol_failure(self, name: str, state: int, pending: int, mode: int) -> WasyncError:
        """The error for an export call that returned in a state the protocol
        does not allow (`pending`, `mode`: the stubs' words)."""
        if state == _REWINDING and mode:
            suspended = self._pending.host.label if self._pending else self._label(mode - 1)
            err = WasyncError(
                f"export {name!r} returned while rewinding: the rewind did not reach async "
                f"import {suspended} (the functions on that path are not instrumented)"
            )
            if self._pending is not None and self._pending.error is not None:
                err.__cause__ = self._pending.error
            return err
        if state == _UNWINDING and not pending:
            return WasyncError(
                f"export {name!r} returned while unwinding, but no async import suspended "
                "(the module started an unwind of its own)"
            )
        if state == _NORMAL and pending:
            return WasyncError(
                f"async import {self._label(pending - 1)} started an unwind, but export "
                f"{name!r} returned normally: the functions between them are not "
                "instrumented by Asyncify (list every async import in the transform's "
                "asyncify-imports)"
            )
        return WasyncError(f"export {name!r} returned in unknown Asyncify state {state}")

    def call_nested(self, name: str, args: tuple[object, ...]) -> object:
        """Call an export synchronously from inside a plain import of this instance
        (the wasm code calls the host, the host calls back into wasm).

        If the nested call suspends in an async import, the unwind passes through
        the host frame: this returns zero values and the host function must return
        too (Binaryen's "tunnel" pattern); on the rewind the import is called again
        and calls back in the same way. A trap raises :class:`~wasync.Trap`."""
        if not self._driving:
            raise WasyncError("call_nested() is only possible inside an import of a running call")
        self._context()
        # Arrays of its own: the outer call's arguments are passed again on the rewind.
        self._export_call(name)  # checks the name
        call = self._new_call(name)
        if len(args) != call.n:
            raise TypeError(f"export {name!r} takes {call.n} arguments, got {len(args)}")
        call.set_args(args)
        if self._unwound:  # called while the outer call is suspended: see __init__
            self._call_abi("asyncify_stop_unwind")
            self._unwound = False
        self._invoke(call)
        return call.value()

    # -- the Backend protocol, continued --------------------------------------

    @property
    def data_address(self) -> int:
        """Address of the Asyncify data buffer's header in memory 0."""
        return self._data

    def memory(self, name: str) -> Memory | None:
        return self._memories.get(name)

    def close(self) -> None:
        self._funcs.clear()
        self._calls.clear()
        self._memories.clear()
        self._store = None
        self._linker = None  # type: ignore[assignment]
        self._keep.clear()
        self._helper = None
        self._base = 0  # the stubs' memory went with the store
        self._async_imports.clear()


def _export_func(inst: Instance, name: str) -> FuncType | None:
    info = inst.module.export(name)
    if info is None or info.kind is not ExternKind.FUNC or not isinstance(info.type, FuncType):
        return None
    return info.type


def _trap_pointer(address: int | None) -> Any:
    return ctypes.cast(address, ctypes.POINTER(ffi.wasm_trap_t)) if address else None


def _error_pointer(address: int | None) -> Any:
    return error_pointer(address) if address else None
