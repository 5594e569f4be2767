from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wasync import DecodeError
from wasync._binary.leb import (
    leb_is_canonical,
    read_sleb,
    read_uleb,
    sleb,
    uleb,
    uleb_padded,
)


@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_uleb32_round_trip(value: int) -> None:
    enc = uleb(value)
    assert read_uleb(enc, 0, 32) == (value, len(enc))
    assert leb_is_canonical(enc, 0, len(enc), signed=False)


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_sleb64_round_trip(value: int) -> None:
    enc = sleb(value)
    assert read_sleb(enc, 0, 64) == (value, len(enc))
    assert leb_is_canonical(enc, 0, len(enc), signed=True)


@given(st.integers(min_value=0, max_value=2**32 - 1), st.integers(min_value=0, max_value=4))
def test_padded_uleb_reads_back_and_is_flagged(value: int, extra: int) -> None:
    width = len(uleb(value)) + extra
    if width > 5:
        return
    enc = uleb_padded(value, width)
    assert read_uleb(enc, 0, 32) == (value, width)
    assert leb_is_canonical(enc, 0, width, signed=False) == (extra == 0)


@pytest.mark.parametrize(
    ("data", "bits", "message"),
    [
        (b"\x80\x80\x80\x80\x80\x00", 32, "integer representation too long"),
        (b"\x80\x80\x80\x80\x10", 32, "integer too large"),
        (b"\xff\xff\xff\xff\x0f", 32, None),
        (b"\x80", 32, "unexpected end"),
        (b"", 32, "unexpected end"),
        (b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 64, None),
        (b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x02", 64, "integer too large"),
    ],
)
def test_uleb_limits(data: bytes, bits: int, message: str | None) -> None:
    if message is None:
        assert read_uleb(data, 0, bits)[0] == (1 << bits) - 1
    else:
        with pytest.raises(DecodeError, match=message):
            read_uleb(data, 0, bits)


@pytest.mark.parametrize(
    ("data", "bits", "value"),
    [
        (b"\xff\xff\xff\xff\x07", 32, 2**31 - 1),
        (b"\x80\x80\x80\x80\x78", 32, -(2**31)),
        (b"\x7f", 32, -1),
        (b"\xff\x7f", 32, -1),  # padded, still valid
        (b"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x7f", 64, -(2**63)),
        (b"\xc0\xbb\x78", 33, -123456),
    ],
)
def test_sleb_values(data: bytes, bits: int, value: int) -> None:
    assert read_sleb(data, 0, bits) == (value, len(data))


@pytest.mark.parametrize(
    ("data", "bits"),
    [
        (b"\xff\xff\xff\xff\x0f", 32),  # sign bits disagree in the last byte
        (b"\x80\x80\x80\x80\x70", 32),
        (b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 64),
        (b"\x80\x80\x80\x80\x80\x80\x80\x80\x80\x7e", 64),
    ],
)
def test_sleb_too_large(data: bytes, bits: int) -> None:
    with pytest.raises(DecodeError, match="integer too large"):
        read_sleb(data, 0, bits)


def test_non_canonical_signed_detection() -> None:
    assert not leb_is_canonical(b"\xff\x7f", 0, 2, signed=True)  # -1 padded
    assert not leb_is_canonical(b"\x80\x00", 0, 2, signed=True)  # 0 padded
    assert leb_is_canonical(b"\xc0\x00", 0, 2, signed=True)  # 64 needs two bytes
    assert leb_is_canonical(b"\xbf\x7f", 0, 2, signed=True)  # -65 needs two bytes
