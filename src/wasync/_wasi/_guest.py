"""The WASI functions' access to a program's linear memory.

:class:`wasync.Memory` checks and finds the memory through wasmtime-py's
wrapped C functions on every access (~2.6 us each); a WASI call makes two to
four accesses. :class:`GuestMemory` asks wasmtime for the memory's base and
size through two raw C calls with prebuilt pointer arguments and reads and
writes through the process-wide byte view ``RAW`` (well under 1 us per access),
and hands out :meth:`GuestMemory.views` of guest buffers, so that a file read
lands in guest memory with no intermediate copy.

Where the runtime's :class:`~wasync.Memory` does not have the shape this relies
on, it falls back to the public ``read``/``write`` (and no views).
"""

from __future__ import annotations

import ctypes
from typing import TYPE_CHECKING, Any

from wasync._runtime._ffi import RAW, ffi, raw_function, word
from wasync._runtime._instance import MemoryAccessError

if TYPE_CHECKING:
    from collections.abc import Callable

    from wasync._runtime._instance import Memory

__all__ = ["GuestMemory"]


def _raw_functions() -> tuple[Any, Any]:
    try:
        size = raw_function("wasmtime_memory_data_size", ctypes.c_size_t, release_gil=False)
        data = raw_function("wasmtime_memory_data", ctypes.c_void_p, release_gil=False)
    except (AttributeError, OSError):  # pragma: no cover - a wasmtime without them
        return None, None
    return size, data


# size_t wasmtime_memory_data_size(ctx, memory), uint8_t *wasmtime_memory_data(ctx,
# memory): called with word() arguments only.
_size_of, _data_of = _raw_functions()


class GuestMemory:
    """Bounds-checked reads, writes and buffer views of one instance's memory.

    Every access asks for the current base and size (the memory may have grown
    since the last call) and goes through the memory's context getter, which
    raises once the instance is closed."""

    __slots__ = (
        "_base",
        "_context",
        "_ctx",
        "_ctx_word",
        "_memory",
        "_raw_word",
        "_size",
        "fast",
        "name",
    )

    def __init__(self, memory: Memory) -> None:
        self._memory = memory
        self.name = memory.name
        context: Callable[[], Any] | None = getattr(memory, "_ctx", None)
        raw = getattr(memory, "_raw", None)
        self.fast = (
            _size_of is not None and callable(context) and isinstance(raw, ffi.wasmtime_memory_t)
        )
        self._context: Callable[[], Any] = context if callable(context) else _no_context
        self._ctx: object = None
        self._ctx_word: Any = None
        self._base = 0
        self._size = -1
        self._raw_word: Any = None
        if self.fast:
            assert isinstance(raw, ffi.wasmtime_memory_t)
            self._raw_word = word(ctypes.addressof(raw))

    def _span(self) -> tuple[int, int]:
        """(base address, size in bytes) of the memory now."""
        ctx = self._context()  # WasyncError once the instance is closed
        if ctx is not self._ctx:
            address = ctypes.cast(ctx, ctypes.c_void_p).value or 0
            self._ctx_word = word(address)
            self._ctx = ctx
            self._size = -1
        size: int = _size_of(self._ctx_word, self._raw_word)
        if size != self._size:
            # Memories only grow, and only a growth moves one: the same size is
            # the same memory, at the same address, as last time.
            self._base = _data_of(self._ctx_word, self._raw_word) or 0
            self._size = size
        return self._base, size

    def _fault(self, ptr: int, n: int, size: int) -> MemoryAccessError:
        return MemoryAccessError(
            f"memory {self.name!r}: access of {n} bytes at {ptr} is outside its {size} bytes"
        )

    # As Memory.read/write: an empty access is never checked.

    def read(self, ptr: int, n: int) -> bytes:
        """`n` bytes at address `ptr`."""
        if not self.fast or not n:
            return self._memory.read(ptr, n)
        base, size = self._span()
        if ptr < 0 or n < 0 or ptr + n > size:
            raise self._fault(ptr, n, size)
        return bytes(RAW[base + ptr : base + ptr + n])

    def write(self, ptr: int, data: bytes) -> None:
        """Store `data` at address `ptr`."""
        n = len(data)
        if not self.fast or not n:
            self._memory.write(ptr, data)
            return
        base, size = self._span()
        if ptr < 0 or ptr + n > size:
            raise self._fault(ptr, n, size)
        RAW[base + ptr : base + ptr + n] = data

    def views(self, spans: list[tuple[int, int]]) -> list[memoryview] | None:
        """Writable views of the guest buffers ``(address, length)``, all checked
        first (MemoryAccessError); None where views are not available.

        A view points into the memory as it is now: use it before anything can
        run the program (or grow its memory) again, and never from another
        thread that may outlive the call."""
        if not self.fast:
            return None
        base, size = self._span()
        out = []
        for ptr, n in spans:
            if n and ptr + n > size:  # ptr and n are unsigned: never negative
                raise self._fault(ptr, n, size)
            out.append(RAW[base + ptr : base + ptr + n] if n else _EMPTY)
        return out


_EMPTY = memoryview(bytearray())


def _no_context() -> Any:  # pragma: no cover - only without the fast path
    return None
