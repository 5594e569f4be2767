"""The public API is exactly what ``wasync.__all__`` says."""

from __future__ import annotations

import wasync


def test_all_names_exist_and_are_public() -> None:
    for name in wasync.__all__:
        assert hasattr(wasync, name), name
    assert len(set(wasync.__all__)) == len(wasync.__all__)


def test_nothing_public_is_left_out() -> None:
    public = {
        n
        for n in dir(wasync)
        if not n.startswith("_") and not isinstance(getattr(wasync, n), type(wasync))
    }
    assert public <= set(wasync.__all__), public - set(wasync.__all__)


def test_exception_hierarchy() -> None:
    assert issubclass(wasync.DecodeError, wasync.WasyncError)
    assert issubclass(wasync.ValidationError, wasync.WasyncError)
    assert issubclass(wasync.WasyncError, Exception)
