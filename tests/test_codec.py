"""Unit tests of the module reader and writer and of the function IR."""

from __future__ import annotations

import time

import pytest

import wasync
from tests.conftest import wat
from wasync import DecodeError, NumType
from wasync._binary.leb import uleb, uleb_padded

SAMPLE = """
(module
  (type $t (func (param i32) (result i32)))
  (import "env" "f" (func $imp (type $t)))
  (import "env" "mem" (memory 1 10))
  (import "env" "g" (global $g (mut i64)))
  (table 4 funcref)
  (global $h (mut f32) (f32.const 1.5))
  (tag $e (param i32))
  (func $id (export "id") (type $t) (local.get 0))
  (func $loop (param i32 i64) (result i64) (local f64 v128)
    (block $b (result i64)
      (loop $l
        (br_if $b (i64.const 7) (i32.eqz (local.get 0)))
        (local.set 0 (i32.sub (local.get 0) (i32.const 1)))
        (drop (call $imp (local.get 0)))
        (br $l))
      (i64.const 0)))
  (elem (i32.const 0) func $id $loop)
  (elem declare func $imp)
  (data (i32.const 16) "hello")
  (data "passive")
  (start $id2)
  (func $id2)
  (@custom "my-section" (after code) "payload")
)
"""


def test_decode_sample_structure() -> None:
    data = wat(SAMPLE)
    m = wasync.decode_module(data)
    assert m.num_imported_funcs == 1
    assert [i.name for i in m.imports] == ["f", "mem", "g"]
    assert [e.name for e in m.exports] == ["id"]
    assert len(m.functions) == len(m.codes) == 3
    assert m.start == 3
    assert m.tags[0].type_index == 1
    assert [d.init for d in m.datas] == [b"hello", b"passive"]
    assert m.elements[0].items == (1, 2)
    assert m.elements[1].mode is wasync.SegmentMode.DECLARATIVE
    assert any(c.name == "my-section" and c.data == b"payload" for c in m.customs)
    assert m.func_type(2) == wasync.FuncType((NumType.I32, NumType.I64), (NumType.I64,))


def test_write_is_byte_identical_and_canonical_matches() -> None:
    data = wat(SAMPLE)
    m = wasync.decode_module(data)
    assert wasync.encode_module(m) == data
    assert wasync.encode_module(m, canonical=True) == data


def test_every_body_round_trips_through_ir() -> None:
    data = wat(SAMPLE)
    m = wasync.decode_module(data)
    for i in range(m.num_imported_funcs, m.num_imported_funcs + len(m.codes)):
        body = m.body(i)
        assert wasync.encode_body(body) == m.codes[i - m.num_imported_funcs].raw


def test_changed_section_is_re_encoded() -> None:
    m = wasync.decode_module(wat(SAMPLE))
    m.exports.append(wasync.Export("loop", wasync.ExternKind.FUNC, 2))
    again = wasync.decode_module(wasync.encode_module(m))
    assert [e.name for e in again.exports] == ["id", "loop"]


def test_replaced_body_is_written() -> None:
    m = wasync.decode_module(wat(SAMPLE))
    body = m.body(1)
    body.instrs[:0] = [
        wasync.Instr(wasync.ops_named("i32.const")[0], 5),
        wasync.Instr(wasync.ops_named("drop")[0]),
    ]
    m.codes[0] = wasync.FuncBody(body.encode())
    again = wasync.decode_module(wasync.encode_module(m))
    assert [str(i) for i in again.body(1).instrs] == ["i32.const 5", "drop", "local.get 0", "end"]


def _module_with_padded_call() -> tuple[bytes, bytes]:
    """A module whose body calls function 0 with a 5-byte padded index, like
    wasm-ld output; returns (module, the canonical module)."""

    def build(call_index: bytes) -> bytes:
        body = b"\x00" + b"\x10" + call_index + b"\x0b"
        code = uleb(1) + uleb(len(body)) + body
        return (
            b"\x00asm\x01\x00\x00\x00"
            + b"\x01\x04\x01\x60\x00\x00"
            + b"\x03\x02\x01\x00"
            + b"\x0a"
            + uleb(len(code))
            + code
        )

    return build(uleb_padded(0, 5)), build(b"\x00")


def test_padded_leb_immediates_survive_ir_round_trip() -> None:
    padded, canonical = _module_with_padded_call()
    m = wasync.decode_module(padded)
    body = m.body(0)
    assert str(body.instrs[0]) == "call 0"
    assert wasync.encode_body(body) == m.codes[0].raw
    assert wasync.encode_module(m) == padded
    # A re-made instruction has no memory of the padding.
    body.instrs[0] = wasync.Instr(body.instrs[0].op, 0)
    m.codes[0] = wasync.FuncBody(body.encode())
    assert wasync.encode_module(m) == canonical


def test_canonical_mode_rewrites_padded_section_sizes() -> None:
    data = wat('(module (func (export "f")))')
    # Re-pad the export section's size to 5 bytes.
    m = wasync.decode_module(data)
    raw, _ = m._raw[wasync.SectionId.EXPORT]
    size = raw[1]
    padded_section = bytes([raw[0]]) + uleb_padded(size, 5) + raw[2:]
    padded = data.replace(raw, padded_section)
    m2 = wasync.decode_module(padded)
    assert wasync.encode_module(m2) == padded
    assert wasync.encode_module(m2, canonical=True) == data


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "magic header not detected"),
        (b"\x00asn\x01\x00\x00\x00", "magic header not detected"),
        (b"\x00asm\x02\x00\x00\x00", "unknown binary version"),
        (b"\x00asm\x01\x00\x00", "truncated version"),
        (b"\x00asm\x01\x00\x00\x00\x0e\x00", "malformed section id 14"),
        (b"\x00asm\x01\x00\x00\x00\x01\x05\x00", "section size mismatch"),
        (b"\x00asm\x01\x00\x00\x00\x03\x01\x00\x01\x01\x00", "out of order"),
        (b"\x00asm\x01\x00\x00\x00\x03\x02\x01\x00", "inconsistent lengths"),
        (b"\x00asm\x01\x00\x00\x00\x02\x03\x01\x00\x00", "unexpected end"),
        (b"\x00asm\x01\x00\x00\x00\x01\x04\x01\x60\x05\x00", "length out of bounds"),
    ],
)
def test_malformed_modules(data: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message) as info:
        wasync.decode_module(data)
    assert info.value.offset is not None


def test_error_names_offset_section_and_function() -> None:
    data = bytearray(wat(SAMPLE))
    m = wasync.decode_module(bytes(data))
    second = m.codes[1]
    # The first instruction after the local declarations of $loop: make it illegal.
    locals_len = len(second.raw) - len(wasync.encode_instrs(m.body(2).instrs))
    at = second.offset + locals_len
    data[at] = 0xFF
    bad = wasync.decode_module(bytes(data))
    with pytest.raises(DecodeError) as info:
        bad.body(2)
    e = info.value
    assert (e.offset, e.section, e.func_index) == (at, "code", 2)
    assert f"byte offset {at}" in str(e)
    assert "function 2" in str(e)


def test_data_count_required_for_memory_init() -> None:
    data = wat(
        """(module (memory 1) (data "x")
             (func (memory.init 0 (i32.const 0) (i32.const 0) (i32.const 1))))"""
    )
    m = wasync.decode_module(data)
    assert m.data_count == 1
    m.data_count = None
    m.present.discard(wasync.SectionId.DATA_COUNT)
    m2 = wasync.decode_module(wasync.encode_module(m))
    with pytest.raises(DecodeError, match="data count section required"):
        m2.body(0)


@pytest.mark.parametrize("depth", [100_000])
def test_deep_nesting_has_no_recursion_limit(depth: int) -> None:
    body = b"\x00" + b"\x02\x40" * depth + b"\x0b" * depth + b"\x0b"
    code = uleb(1) + uleb(len(body)) + body
    data = (
        b"\x00asm\x01\x00\x00\x00\x01\x04\x01\x60\x00\x00\x03\x02\x01\x00"
        + b"\x0a"
        + uleb(len(code))
        + code
    )
    t0 = time.perf_counter()
    m = wasync.decode_module(data)
    b = m.body(0)
    typing = wasync.type_function(m, 0, body=b)
    assert len(b.instrs) == 2 * depth + 1
    assert typing.block_end[0] == 2 * depth - 1
    assert wasync.encode_body(b) == m.codes[0].raw
    # Truncated in the middle of the nest: an error, not a recursion crash.
    with pytest.raises(DecodeError):
        wasync.decode_body(body[:depth])
    assert time.perf_counter() - t0 < 30


def test_instr_equality_and_text() -> None:
    add = wasync.ops_named("i32.add")[0]
    assert wasync.Instr(add) == wasync.Instr(add)
    assert hash(wasync.Instr(add)) == hash(wasync.Instr(add))
    load = wasync.ops_named("i64.load")[0]
    ins = wasync.Instr(load, wasync.MemArg(3, 16, 1))
    assert str(ins) == "i64.load 1 offset=16 align=8"
    assert wasync.Instr(load, wasync.MemArg(3, 16)) != ins


def test_huge_local_declarations_are_not_materialised() -> None:
    """A body may declare up to 2^32 - 1 locals: typing must not build a list of them."""
    body = (
        b"\x02" + uleb(2**32 - 2) + b"\x7e" + b"\x01\x7d" + b"\x20" + uleb(2**32 - 2) + b"\x1a\x0b"
    )
    code = uleb(1) + uleb(len(body)) + body
    data = (
        b"\x00asm\x01\x00\x00\x00\x01\x04\x01\x60\x00\x00\x03\x02\x01\x00\x0a"
        + uleb(len(code))
        + code
    )
    m = wasync.decode_module(data)
    b = m.body(0)
    types = b.local_types()
    assert len(types) == 2**32 - 1
    assert (types[0], types[2**32 - 3], types[2**32 - 2]) == (NumType.I64, NumType.I64, NumType.F32)
    typing = wasync.type_function(m, 0, body=b)
    assert typing.types_before(1) == (NumType.F32,)
    too_many = b"\x02" + uleb(2**32 - 1) + b"\x7e" + b"\x01\x7d" + b"\x0b"
    with pytest.raises(DecodeError, match="too many locals"):
        wasync.decode_body(too_many)
