"""Reading the ``name`` custom section (function names only, leniently).

Custom sections are not validated by engines, so a malformed name section is
not an error: whatever could be read before the damage is returned.
"""

from __future__ import annotations

from wasync._binary.leb import read_uleb
from wasync._errors import DecodeError

__all__ = ["function_name_entries", "function_names"]

_FUNCTION_NAMES = 1


def function_name_entries(payload: bytes, errors: str = "replace") -> list[tuple[int, str]]:
    """The function-names subsection's (index, name) pairs in encoding order,
    repeats included; `errors` is how invalid UTF-8 is decoded."""
    entries: list[tuple[int, str]] = []
    pos = 0
    try:
        while pos < len(payload):
            sub_id = payload[pos]
            size, pos = read_uleb(payload, pos + 1)
            end = pos + size
            if end > len(payload):
                break
            if sub_id == _FUNCTION_NAMES:
                count, p = read_uleb(payload, pos, end=end)
                for _ in range(count):
                    index, p = read_uleb(payload, p, end=end)
                    n, p = read_uleb(payload, p, end=end)
                    if p + n > end:
                        break
                    entries.append((index, payload[p : p + n].decode("utf-8", errors=errors)))
                    p += n
            pos = end
    except (DecodeError, IndexError):
        pass
    return entries


def function_names(payload: bytes) -> dict[int, str]:
    """Map function index to name from a ``name`` section payload."""
    return dict(function_name_entries(payload))
