"""wasync's exception hierarchy.

Every error a user can cause is raised as a subclass of :class:`WasyncError`::

    WasyncError
    ├── DecodeError        malformed binary: byte offset, section, function index
    ├── ValidationError    well-formed binary whose code does not type-check
    │                      (operand stack underflow, bad index, ...), or that
    │                      the engine rejects
    ├── LinkError          an import is missing, of the wrong kind or signature
    ├── Trap               the WebAssembly code trapped (message, wasm backtrace)
    │   └── AsyncifyStackOverflow   the Asyncify data buffer was too small
    ├── AsyncifyError      the Asyncify transform cannot instrument the module
    ├── InstanceBusy       a call is already running on the instance
    └── ReentrancyError    an import called back into its suspended instance

Errors carry their context as attributes so that tools can report them
precisely; ``str(error)`` renders that context in one line.
"""

from __future__ import annotations

__all__ = [
    "AsyncifyError",
    "AsyncifyStackOverflow",
    "DecodeError",
    "InstanceBusy",
    "LinkError",
    "ReentrancyError",
    "Trap",
    "ValidationError",
    "WasyncError",
]


class WasyncError(Exception):
    """Root of every exception wasync raises on purpose."""


class _LocatedError(WasyncError):
    """An error located in a binary: offset, section, function."""

    def __init__(
        self,
        message: str,
        *,
        offset: int | None = None,
        section: str | None = None,
        func_index: int | None = None,
        func_name: str | None = None,
    ) -> None:
        self.message = message
        self.offset = offset
        self.section = section
        self.func_index = func_index
        self.func_name = func_name
        super().__init__(self._render())

    def _render(self) -> str:
        where: list[str] = []
        if self.offset is not None:
            where.append(f"at byte offset {self.offset} (0x{self.offset:x})")
        if self.section is not None:
            where.append(f"in {self.section} section")
        if self.func_index is not None:
            name = f" {self.func_name!r}" if self.func_name else ""
            where.append(f"in function {self.func_index}{name}")
        return f"{self.message} ({', '.join(where)})" if where else self.message

    def locate(
        self,
        *,
        offset: int | None = None,
        section: str | None = None,
        func_index: int | None = None,
        func_name: str | None = None,
    ) -> None:
        """Fill in context that was not known where the error was raised."""
        if self.offset is None:
            self.offset = offset
        if self.section is None:
            self.section = section
        if self.func_index is None:
            self.func_index = func_index
        if self.func_name is None:
            self.func_name = func_name
        self.args = (self._render(),)

    def __str__(self) -> str:
        return self._render()


class DecodeError(_LocatedError):
    """The input is not a well-formed WebAssembly binary."""


class ValidationError(_LocatedError):
    """The binary is well-formed but its code does not type-check."""


class LinkError(WasyncError):
    """An import could not be satisfied: missing, wrong kind, wrong signature."""

    def __init__(self, message: str, *, module: str | None = None, name: str | None = None) -> None:
        self.module = module
        self.name = name
        where = f"import {module}.{name}: " if module is not None and name is not None else ""
        super().__init__(where + message)


class Trap(WasyncError):
    """WebAssembly code trapped. `frames` is the wasm backtrace, innermost first,
    as ``(function index, function name or None, module offset)`` triples."""

    def __init__(
        self,
        message: str,
        *,
        frames: tuple[tuple[int, str | None, int], ...] = (),
        code: str | None = None,
    ) -> None:
        self.message = message
        self.frames = frames
        self.code = code
        super().__init__(self._render())

    def backtrace(self) -> str:
        lines = []
        for index, name, offset in self.frames:
            label = f"{name} (function {index})" if name else f"function {index}"
            lines.append(f"  at {label}, module offset 0x{offset:x}")
        return "\n".join(lines)

    def _render(self) -> str:
        bt = self.backtrace()
        return f"{self.message}\nwasm backtrace:\n{bt}" if bt else self.message


class AsyncifyStackOverflow(Trap):
    """The Asyncify data buffer could not hold the unwound stack."""

    def __init__(self, message: str, *, needed: int, available: int) -> None:
        self.needed = needed
        self.available = available
        super().__init__(message)


class InstanceBusy(WasyncError):
    """A call is already running on this instance and the instance was created
    with ``on_busy="error"`` (an instance has one shadow stack in its memory, so
    calls on one instance never overlap)."""


class ReentrancyError(WasyncError):
    """An import called back into the instance that is suspended waiting for it."""


class AsyncifyError(WasyncError):
    """The Asyncify transform cannot instrument the module as asked (an unsupported
    construct, conflicting options); names the function and instruction."""
