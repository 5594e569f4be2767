"""Mutated binaries: every outcome is a clean decode or a wasync error, quickly."""

from __future__ import annotations

import time
from functools import cache

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import wasync
from tests.conftest import wat
from wasync._binary.leb import uleb

SEEDS = [
    """(module
      (type $t (func (param i32) (result i32)))
      (import "env" "f" (func $imp (type $t)))
      (memory 1) (table 2 funcref) (global $g (mut i32) (i32.const 0))
      (func $a (export "a") (type $t)
        (block (result i32)
          (loop (br_if 0 (i32.eqz (local.get 0))))
          (if (result i32) (local.get 0)
            (then (call $imp (i32.load offset=8 (local.get 0))))
            (else (call_indirect (type $t) (i32.const 1) (i32.const 0))))))
      (func (param f64) (result v128) (local i64)
        (v128.const i32x4 1 2 3 4) (f64x2.splat (local.get 0))
        (i8x16.shuffle 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15))
      (elem (i32.const 0) $a $imp)
      (data (i32.const 0) "abcdef"))""",
    """(module
      (type $s (struct (field (mut i32)) (field i64)))
      (rec (type $a (sub (struct))) (type $b (sub $a (struct (field f32)))))
      (tag $e (param i32))
      (func (param (ref null $s)) (result i32)
        (block $h (result i32)
          (try_table (catch $e $h) (throw $e (struct.get $s 0 (local.get 0)))))
        (br_on_null 0 (local.get 0)) drop drop (i32.const 0)))""",
]


@cache
def seeds() -> list[bytes]:
    return [wat(s) for s in SEEDS]


def decode_everything(data: bytes) -> None:
    """Decode the module, every body, and type every function."""
    m = wasync.decode_module(data)
    mt = wasync.ModuleTypes.from_module(m)
    for f in range(m.num_imported_funcs, m.num_imported_funcs + len(m.codes)):
        wasync.type_function(m, f, module_types=mt)
    wasync.features_used(m)
    wasync.encode_module(m)


def check(data: bytes) -> None:
    t0 = time.perf_counter()
    try:
        decode_everything(data)
    except wasync.WasyncError as e:
        message = str(e)
    else:
        message = "decoded"
    assert message
    assert time.perf_counter() - t0 < 2.0, "decoding a small input took too long"


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.integers(0, len(SEEDS) - 1), st.data())
def test_truncated(seed: int, data: st.DataObject) -> None:
    b = seeds()[seed]
    n = data.draw(st.integers(0, len(b)))
    check(b[:n])


@FUZZ
@given(
    st.integers(0, len(SEEDS) - 1),
    st.lists(st.tuples(st.integers(0), st.integers(0, 255)), min_size=1, max_size=6),
)
def test_flipped_bytes(seed: int, flips: list[tuple[int, int]]) -> None:
    b = bytearray(seeds()[seed])
    for where, value in flips:
        b[8 + where % (len(b) - 8)] = value
    check(bytes(b))


@FUZZ
@given(st.integers(0, len(SEEDS) - 1), st.integers(0), st.integers(1, 6))
def test_stretched_leb(seed: int, where: int, extra: int) -> None:
    """Turn one byte into a longer LEB128 (continuation bits set), shifting the rest."""
    b = seeds()[seed]
    i = 8 + where % (len(b) - 8)
    value = b[i] & 0x7F
    stretched = bytes([value | 0x80] + [0x80] * (extra - 1) + [0x00])
    check(b[:i] + stretched + b[i + 1 :])


@FUZZ
@given(st.integers(0, len(SEEDS) - 1), st.integers(0), st.integers(0, 2**32 - 1))
def test_huge_lengths(seed: int, where: int, length: int) -> None:
    """Replace one byte with a large LEB128 length: must fail fast, not allocate."""
    b = seeds()[seed]
    i = 8 + where % (len(b) - 8)
    check(b[:i] + uleb(length) + b[i + 1 :])


@FUZZ
@given(st.binary(min_size=0, max_size=200))
def test_random_bytes_after_header(tail: bytes) -> None:
    check(b"\x00asm\x01\x00\x00\x00" + tail)
