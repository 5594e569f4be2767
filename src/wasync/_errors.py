"""wasync's exception hierarchy.

Every error a user can cause is raised as a subclass of :class:`WasyncError`::

    WasyncError
    ├── DecodeError        malformed binary: byte offset, section, function index
    └── ValidationError    well-formed binary whose code does not type-check
                           (operand stack underflow, bad index, ...)

Errors carry their context as attributes so that tools can report them
precisely; ``str(error)`` renders that context in one line.
"""

from __future__ import annotations

__all__ = ["DecodeError", "ValidationError", "WasyncError"]


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
