"""The public runtime API: instantiate, Instance, Exports, Memory, Caller."""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, NoReturn, Protocol

from wasync._binary.types import ExternKind, FuncType
from wasync._errors import InstanceBusy, ReentrancyError, WasyncError
from wasync._runtime import _aio
from wasync._runtime._ffi import ffi
from wasync._runtime._host import resolve_imports
from wasync._runtime._module import Module

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Iterator, Mapping

    from wasync._runtime._host import HostFunc

__all__ = [
    "Caller",
    "Exports",
    "Instance",
    "InstanceOptions",
    "Memory",
    "MemoryAccessError",
    "Strategy",
    "instantiate",
]

Strategy = Literal["auto", "asyncify", "fiber", "thread"]


class MemoryAccessError(WasyncError, IndexError):
    """A host read or write outside the instance's linear memory."""


class Memory:
    """An instance's linear memory, read and written by the host.

    Safe to use while the instance is suspended in an import (the wasm code is
    not running then). The memory may grow between calls: every access checks
    the current size."""

    def __init__(self, ctx: Callable[[], Any], raw: Any, name: str) -> None:
        self._ctx = ctx
        self._raw = raw
        self.name = name

    @property
    def size(self) -> int:
        """Current size in bytes."""
        return int(ffi.wasmtime_memory_data_size(self._ctx(), ctypes.byref(self._raw)))

    def __len__(self) -> int:
        return self.size

    def _base(self, ptr: int, n: int) -> int:
        ctx = self._ctx()
        size = int(ffi.wasmtime_memory_data_size(ctx, ctypes.byref(self._raw)))
        if ptr < 0 or n < 0 or ptr + n > size:
            raise MemoryAccessError(
                f"memory {self.name!r}: access of {n} bytes at {ptr} is outside its {size} bytes"
            )
        data = ffi.wasmtime_memory_data(ctx, ctypes.byref(self._raw))
        return ctypes.addressof(data.contents) + ptr

    def read(self, ptr: int, n: int) -> bytes:
        """`n` bytes at address `ptr`."""
        return ctypes.string_at(self._base(ptr, n), n) if n else b""

    def write(self, ptr: int, data: bytes | bytearray | memoryview) -> None:
        """Store `data` at address `ptr`."""
        b = bytes(data)
        if b:
            ctypes.memmove(self._base(ptr, len(b)), b, len(b))

    def read_u32(self, ptr: int) -> int:
        return int.from_bytes(self.read(ptr, 4), "little")

    def write_u32(self, ptr: int, value: int) -> None:
        self.write(ptr, (value & 0xFFFF_FFFF).to_bytes(4, "little"))

    def read_cstring(self, ptr: int, limit: int = 1 << 20) -> bytes:
        """The NUL-terminated bytes at `ptr` (without the NUL)."""
        n = min(limit, self.size - ptr)
        chunk = self.read(ptr, max(n, 0))
        end = chunk.find(b"\0")
        if end < 0:
            raise MemoryAccessError(f"no NUL terminator within {n} bytes of {ptr}")
        return chunk[:end]


class Backend(Protocol):
    """What each strategy implements for one instance."""

    strategy: str

    async def call(self, name: str, args: tuple[object, ...]) -> object: ...
    def memory(self, name: str) -> Memory | None: ...
    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class InstanceOptions:
    """Options of :func:`instantiate` (all keyword-only there)."""

    on_busy: Literal["wait", "error"] = "wait"
    # fiber: yield to the event loop every N ms of running wasm (None: never).
    yield_every_ms: float | None = None
    # asyncify: size of the unwind buffer, and where it lives (None: allocated).
    asyncify_stack_size: int = 1 << 20
    asyncify_data_address: int | None = None


class Caller:
    """What a host function marked with :func:`~wasync.with_caller` receives."""

    def __init__(self, instance: Instance) -> None:
        self.instance = instance

    @property
    def memory(self) -> Memory:
        mem = self.instance.memory
        if mem is None:
            raise WasyncError("the instance exports no memory")
        return mem


class Exports:
    """Attribute and item access to an instance's exported functions, as coroutines:
    ``await inst.exports.main(1, 2)`` or ``await inst.exports["main"](1, 2)``."""

    def __init__(self, instance: Instance) -> None:
        self._instance = instance
        self._cache: dict[str, Callable[..., Coroutine[Any, Any, Any]]] = {}

    def __getattr__(self, name: str) -> Callable[..., Coroutine[Any, Any, Any]]:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"the module exports no function {name!r}") from None

    def __getitem__(self, name: str) -> Callable[..., Coroutine[Any, Any, Any]]:
        fn = self._cache.get(name)
        if fn is not None:
            return fn
        info = self._instance.module.export(name)
        if info is None or info.kind is not ExternKind.FUNC:
            raise KeyError(name)
        call_export = self._instance.call

        def call(*args: object) -> Coroutine[Any, Any, Any]:
            return call_export(name, *args)  # the coroutine itself: one await level less

        call.__name__ = name
        call.__qualname__ = f"exports.{name}"
        self._cache[name] = call
        return call

    def __iter__(self) -> Iterator[str]:
        return (e.name for e in self._instance.module.exports if e.kind is ExternKind.FUNC)

    def __dir__(self) -> list[str]:
        return list(self)


class Instance:
    """A running instance. Calls are serialized (the module's shadow stack lives
    in its memory): a second call waits, or raises :class:`~wasync.InstanceBusy`
    with ``on_busy="error"``."""

    def __init__(self, module: Module, options: InstanceOptions) -> None:
        self.module = module
        self.options = options
        self.exports = Exports(self)
        self._backend: Backend | None = None
        self._lock: _aio.AsyncLock | None = None
        self._active: object | None = None  # the task running a call
        self._current_task: Callable[[], object] = _aio.current_task
        self._arity = {
            e.name: len(e.type.params)
            for e in module.exports
            if e.kind is ExternKind.FUNC and isinstance(e.type, FuncType)
        }
        self.caller = Caller(self)

    @property
    def strategy(self) -> str:
        return self._require().strategy

    def _require(self) -> Backend:
        if self._backend is None:
            raise WasyncError("the instance is closed")
        return self._backend

    @property
    def memory(self) -> Memory | None:
        """The exported memory (the one named "memory", else the first), or None."""
        backend = self._require()
        mems = [e.name for e in self.module.exports if e.kind is ExternKind.MEMORY]
        if not mems:
            return None
        return backend.memory("memory" if "memory" in mems else mems[0])

    async def call(self, name: str, *args: object) -> Any:
        """Call the exported function `name`; returns None, a value, or a tuple."""
        backend = self._backend
        if backend is None:
            raise WasyncError("the instance is closed")
        arity = self._arity.get(name)
        if arity is None or len(args) != arity:
            self._bad_call(name, args)
        lock = self._lock
        if lock is None:
            lock = self._lock = _aio.new_lock()
            self._current_task = _aio.current_task_function()
        task = self._current_task()
        if self._active is not None:
            if self._active is task:
                raise ReentrancyError(
                    f"call to {name!r} from inside an import of the same instance "
                    "while it is suspended"
                )
            if self.options.on_busy == "error":
                raise InstanceBusy(f"a call is already running on this instance (calling {name!r})")
        await lock.acquire()
        self._active = task
        try:
            return await backend.call(name, args)
        finally:
            self._active = None
            lock.release()

    def _bad_call(self, name: str, args: tuple[object, ...]) -> NoReturn:
        info = self.module.export(name)
        if info is None or info.kind is not ExternKind.FUNC:
            raise WasyncError(f"the module exports no function {name!r}")
        assert isinstance(info.type, FuncType)
        raise TypeError(
            f"{name}{info.type} takes {len(info.type.params)} arguments, got {len(args)}"
        )

    def close(self) -> None:
        """Release the store (and thread) behind the instance."""
        if self._backend is not None:
            self._backend.close()
            self._backend = None

    def __repr__(self) -> str:
        state = self._backend.strategy if self._backend else "closed"
        return f"<wasync.Instance of {self.module!r} ({state})>"


async def instantiate(
    module: Module | bytes,
    imports: Mapping[str, Mapping[str, Callable[..., Any]]] | None = None,
    *,
    strategy: Strategy = "auto",
    on_busy: Literal["wait", "error"] = "wait",
    yield_every_ms: float | None = None,
    asyncify_stack_size: int = 1 << 20,
    asyncify_data_address: int | None = None,
) -> Instance:
    """Instantiate `module` with `imports` (``{"env": {"name": callable}}``; a
    callable may be ``async def`` or plain) using one of the strategies:

    * ``"fiber"``: wasmtime suspends the native wasm stack (no transform needed);
    * ``"asyncify"``: for modules transformed by Asyncify (wasync or Binaryen);
    * ``"thread"``: the instance runs on a worker thread that blocks while the
      event loop runs the import;
    * ``"auto"``: ``"asyncify"`` if the module has the Asyncify ABI, else ``"fiber"``.

    Missing imports or imports of the wrong shape raise :class:`~wasync.LinkError`
    before anything runs."""
    if not isinstance(module, Module):
        module = Module(module)
    host = resolve_imports(module, imports)
    if strategy == "auto":
        strategy = "asyncify" if module.has_asyncify_abi else "fiber"
    options = InstanceOptions(on_busy, yield_every_ms, asyncify_stack_size, asyncify_data_address)
    if on_busy not in ("wait", "error"):
        raise ValueError(f"on_busy must be 'wait' or 'error', not {on_busy!r}")
    if yield_every_ms is not None and strategy != "fiber":
        raise ValueError("yield_every_ms (the CPU guard) needs strategy='fiber'")
    inst = Instance(module, options)
    inst._backend = await _make_backend(strategy, inst, host)
    return inst


async def _make_backend(strategy: str, inst: Instance, host: list[HostFunc]) -> Backend:
    if strategy == "fiber":
        from wasync._runtime._fiber import FiberBackend  # noqa: PLC0415 - strategies load lazily

        return await FiberBackend.create(inst, host)
    if strategy == "asyncify":
        from wasync._runtime._asyncify import AsyncifyBackend  # noqa: PLC0415

        return await AsyncifyBackend.create(inst, host)
    if strategy == "thread":
        from wasync._runtime._thread import ThreadBackend  # noqa: PLC0415

        return await ThreadBackend.create(inst, host)
    raise ValueError(f"unknown strategy {strategy!r}: use 'auto', 'asyncify', 'fiber' or 'thread'")
