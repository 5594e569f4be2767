"""Standard input and output of a WASI program: where its bytes come from and go.

Outputs answer synchronously when they can (a buffer, a file, a stream whose
transport is not backed up), so ``printf`` does not suspend the program; an
asyncio stream that needs draining, or an async callback, makes the write wait.
Inputs likewise answer at once when they have the bytes at hand (``bytes``, or
what a stream read ahead): :meth:`Input.read_now`.

Everything works under asyncio and trio except asyncio's own streams
(``asyncio.StreamReader``/``StreamWriter``), which need asyncio's loop: their
:attr:`Input.needs_asyncio`/:attr:`Output.needs_asyncio` says what to pass
instead, and :class:`~wasync.Wasi` raises it when run under trio.
"""

from __future__ import annotations

import asyncio
import inspect
import io
import sys
from typing import IO, TYPE_CHECKING, Any, ClassVar, Literal, TypeAlias

from wasync._wasi._aio import run_in_thread

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = ["Input", "InputSpec", "Output", "OutputSpec", "make_input", "make_output"]

InputSpec: TypeAlias = (
    "bytes | bytearray | asyncio.StreamReader | IO[bytes] | Literal['inherit'] | None"
)
OutputSpec: TypeAlias = (
    "bytearray | asyncio.StreamWriter | IO[bytes] | Callable[[bytes], Any] "
    "| Literal['inherit'] | None"
)


class Output:
    """Where a program's writes go; ``write`` returns None when done, or an
    awaitable to wait for."""

    #: For an output that only works under asyncio: the error to raise elsewhere.
    needs_asyncio: ClassVar[str | None] = None

    def write(self, data: bytes) -> Awaitable[None] | None:
        return None

    def isatty(self) -> bool:
        """Whether the bytes go to a terminal (the guest then sees a character
        device, as ``isatty()`` reports it)."""
        return False


def _is_terminal(file: object) -> bool:
    try:
        return bool(file.isatty())  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        return False


class _Collect(Output):
    def __init__(self, buffer: bytearray) -> None:
        self._buffer = buffer

    def write(self, data: bytes) -> None:
        self._buffer += data


class _File(Output):
    def __init__(self, file: IO[bytes]) -> None:
        self._file = file

    def write(self, data: bytes) -> None:
        self._file.write(data)
        self._file.flush()

    def isatty(self) -> bool:
        return _is_terminal(self._file)


class _Inherit(Output):
    """The host process's own stdout/stderr (looked up at write time, so that a
    replaced ``sys.stdout`` is honoured)."""

    def __init__(self, name: Literal["stdout", "stderr"]) -> None:
        self._name = name

    def write(self, data: bytes) -> None:
        stream = getattr(sys, self._name)
        buffer = getattr(stream, "buffer", None)
        if buffer is not None:
            stream.flush()
            buffer.write(data)
            buffer.flush()
        else:  # a text stream (pytest's capture, StringIO)
            stream.write(data.decode("utf-8", "replace"))
            stream.flush()

    def isatty(self) -> bool:
        return _is_terminal(getattr(sys, self._name))


class _Writer(Output):
    """An asyncio StreamWriter: written at once, drained only when its
    transport's buffer is above the high-water mark."""

    needs_asyncio = (
        "an asyncio.StreamWriter needs asyncio; under trio pass a callable instead "
        "(it may be async, such as a trio stream's send_all), or a bytearray, "
        "a binary file, 'inherit' or None"
    )

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer

    def write(self, data: bytes) -> Awaitable[None] | None:
        self._writer.write(data)
        transport = self._writer.transport
        high = transport.get_write_buffer_limits()[1]
        if transport.get_write_buffer_size() > high:
            return self._writer.drain()
        return None


class _Callback(Output):
    def __init__(self, fn: Callable[[bytes], Any]) -> None:
        self._fn = fn

    def write(self, data: bytes) -> Awaitable[None] | None:
        result = self._fn(data)
        return result if inspect.isawaitable(result) else None


def make_output(spec: OutputSpec, name: Literal["stdout", "stderr"]) -> Output:
    """An :class:`Output` for what the user passed as `name`."""
    if spec is None:
        return Output()
    if spec == "inherit":
        return _Inherit(name)
    if isinstance(spec, bytearray):
        return _Collect(spec)
    if isinstance(spec, asyncio.StreamWriter):
        return _Writer(spec)
    if isinstance(spec, (io.IOBase, io.BufferedIOBase)) or hasattr(spec, "write"):
        return _File(spec)  # type: ignore[arg-type]
    if callable(spec):
        return _Callback(spec)
    raise TypeError(
        f"{name}: expected None, 'inherit', a bytearray, an asyncio.StreamWriter, a binary "
        f"file or a callable, not {type(spec).__name__}"
    )


class Input:
    """Where a program's reads come from."""

    #: For an input that only works under asyncio: the error to raise elsewhere.
    needs_asyncio: ClassVar[str | None] = None

    async def read(self, n: int) -> bytes:
        """Up to `n` bytes; b"" at the end."""
        return b""

    def read_now(self, n: int, *, off_loop: bool) -> bytes | None:
        """What :meth:`read` would return, if it is at hand; None if the read has
        to wait. `off_loop`: called on a thread other than the event loop's (the
        "thread" strategy), where the loop's objects must not be touched."""
        return b""

    def ready(self) -> bool:
        """Whether a read would return at once (data or the end)."""
        return True

    async def wait_ready(self) -> None:
        """Return when :meth:`ready` is true."""

    def isatty(self) -> bool:
        """Whether the bytes come from a terminal."""
        return False


class _Bytes(Input):
    def __init__(self, data: bytes | bytearray) -> None:
        self._data = memoryview(bytes(data))
        self._pos = 0

    async def read(self, n: int) -> bytes:
        return self._take(n)

    def read_now(self, n: int, *, off_loop: bool) -> bytes:
        return self._take(n)

    def _take(self, n: int) -> bytes:
        chunk = bytes(self._data[self._pos : self._pos + n])
        self._pos += len(chunk)
        return chunk


class _Reader(Input):
    """An asyncio StreamReader; bytes read ahead for readiness are kept."""

    needs_asyncio = (
        "an asyncio.StreamReader needs asyncio; under trio pass bytes, a binary file "
        "(such as os.fdopen(fd, 'rb') on a pipe: read on a worker thread), 'inherit' or None"
    )

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader
        self._ahead = b""
        self._eof = False

    async def read(self, n: int) -> bytes:
        if self._ahead:
            chunk, self._ahead = self._ahead[:n], self._ahead[n:]
            return chunk
        if self._eof:
            return b""
        chunk = await self._reader.read(n)
        self._eof = not chunk
        return chunk

    def read_now(self, n: int, *, off_loop: bool) -> bytes | None:
        if off_loop or not (self._ahead or self._eof):
            return None  # (the reader's own buffer is not looked into)
        chunk, self._ahead = self._ahead[:n], self._ahead[n:]
        return chunk

    def ready(self) -> bool:
        return bool(self._ahead) or self._eof or self._reader.at_eof()

    async def wait_ready(self) -> None:
        if not self.ready():
            self._ahead = await self._reader.read(65536)
            self._eof = not self._ahead


class _BlockingFile(Input):
    """A binary file (or the process's stdin): read on a worker thread."""

    def __init__(self, file: IO[bytes] | None) -> None:
        self._file = file

    async def read(self, n: int) -> bytes:
        file = self._file if self._file is not None else sys.stdin.buffer
        read1 = getattr(file, "read1", None)
        fn = read1 if read1 is not None else file.read
        return bytes(await run_in_thread(fn, n))

    def read_now(self, n: int, *, off_loop: bool) -> None:
        return None  # a file or terminal may block: always on a worker thread

    def isatty(self) -> bool:
        return _is_terminal(self._file if self._file is not None else sys.stdin)


def make_input(spec: InputSpec) -> Input:
    """An :class:`Input` for what the user passed as stdin."""
    if spec is None:
        return Input()
    if spec == "inherit":
        return _BlockingFile(None)
    if isinstance(spec, (bytes, bytearray)):
        return _Bytes(spec)
    if isinstance(spec, asyncio.StreamReader):
        return _Reader(spec)
    if hasattr(spec, "read"):
        return _BlockingFile(spec)
    raise TypeError(
        "stdin: expected None, 'inherit', bytes, an asyncio.StreamReader or a binary file, "
        f"not {type(spec).__name__}"
    )
