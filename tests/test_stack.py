"""Operand-stack typing on hand-written functions with known answers."""

from __future__ import annotations

import pytest

import wasync
from tests.conftest import wat
from wasync import BOT, ValidationError


def typed(text: str, func: int = -1) -> list[tuple[str, str, bool]]:
    """(instruction, stack before it, unreachable?) for one function of a module."""
    m = wasync.decode_module(wat(text))
    index = func if func >= 0 else m.num_imported_funcs + len(m.codes) - 1
    body = m.body(index)
    typing = wasync.type_function(m, index, body=body)
    return [
        (str(ins), " ".join(map(str, typing.types_before(i))), bool(typing.unreachable[i]))
        for i, ins in enumerate(body.instrs)
    ]


def stacks(text: str) -> list[str]:
    return [s for _, s, _ in typed(text)]


def test_straight_line_and_blocks_with_params() -> None:
    got = typed(
        """(module (type $bt (func (param i32 i64) (result f32)))
        (func (param i32) (result f32)
          local.get 0  i64.const 3
          block (type $bt)  drop drop f32.const 1  end))"""
    )
    assert got == [
        ("local.get 0", "", False),
        ("i64.const 3", "i32", False),
        ("block 0", "i32 i64", False),
        ("drop", "i32 i64", False),
        ("drop", "i32", False),
        ("f32.const 1065353216", "", False),
        ("end", "f32", False),
        ("end", "f32", False),
    ]


def test_unreachable_code_is_polymorphic() -> None:
    got = typed(
        """(module (func (result i32)
          i64.const 1
          block (result i32)
            unreachable
            i32.add
            select
            i32.const 2
            br 0
            f32.const 0
          end
          drop drop i32.const 0))"""
    )
    assert got[3] == ("i32.add", "i64", True)
    assert got[4] == ("select", "i64 i32", True)
    assert got[5] == ("i32.const 2", f"i64 {BOT}", True)
    assert got[7][2] is True
    end = got[8]
    assert end[0] == "end"
    assert end[1] == "i64 f32"  # what was pushed after `br` is still tracked
    assert got[9] == ("drop", "i64 i32", False)


def test_if_else_and_br_table() -> None:
    got = stacks(
        """(module (func (param i32) (result i32)
          (block $a (result i32)
            (block $b (result i32)
              (br_table $a $b (i32.const 7) (local.get 0))))
          (if (result i32) (then (i32.const 1)) (else (i32.const 2)))))"""
    )
    assert got == ["", "", "", "i32", "i32 i32", "", "i32", "i32", "", "i32", "", "i32", "i32"]


def test_calls_and_multi_value() -> None:
    got = typed(
        """(module
          (type $two (func (param i32) (result i64 f64)))
          (table 1 funcref)
          (func $f (type $two) (i64.const 1) (f64.const 2))
          (func (result i64 f64)
            (call $f (i32.const 1)) drop drop
            (call_indirect (type $two) (i32.const 5) (i32.const 0))))"""
    )
    assert [s for _, s, _ in got] == ["", "i32", "i64 f64", "i64", "", "i32", "i32 i32", "i64 f64"]


def test_exceptions_try_table_and_legacy_try() -> None:
    got = stacks(
        """(module (tag $e (param i32 f32))
          (func (result i32)
            (block $h (result i32 f32)
              (try_table (catch $e $h) (throw $e (i32.const 1) (f32.const 2)))
              unreachable)
            drop))"""
    )
    assert got == ["", "", "", "i32", "i32 f32", "", "", "", "i32 f32", "i32"]
    legacy = stacks(
        """(module (tag $e (param i64))
          (func (result i64)
            try (result i64)
              i64.const 1
            catch $e
            catch_all
              i64.const 2
            end))"""
    )
    assert legacy == ["", "", "i64", "i64", "", "i64", "i64"]  # `catch $e` pushes the i64


def test_gc_and_function_references() -> None:
    got = stacks(
        """(module
          (type $pt (struct (field i32) (field (mut i8))))
          (type $arr (array (mut f64)))
          (type $fn (func (param i32) (result i32)))
          (func $sq (type $fn) (i32.mul (local.get 0) (local.get 0)))
          (elem declare func $sq)
          (func (result i32)
            (struct.new $pt (i32.const 1) (i32.const 2))
            (struct.get_s $pt 1)
            (array.new $arr (f64.const 0) (i32.const 3))
            (array.get $arr (i32.const 0))
            drop
            (call_ref $fn (i32.const 4) (ref.func $sq))
            i32.add))"""
    )
    assert got[3] == "(ref $0)"  # struct.get_s: the struct reference
    assert got[4] == "i32"  # a packed i8 field reads as i32
    assert got[7] == "i32 (ref $1)"
    assert got[9] == "i32 f64"
    assert got[12] == "i32 i32 (ref $2)"  # call_ref: argument and typed reference
    assert got[13] == "i32 i32"


def test_memory64_address_types() -> None:
    got = stacks(
        """(module (memory i64 1)
          (func (result i64)
            (drop (i32.load (i64.const 8)))
            (memory.grow (i64.const 1))))"""
    )
    assert got == ["", "i64", "i32", "", "i64", "i64"]


def test_underflow_is_a_validation_error() -> None:
    ok = wat("(module (func (result i32) (i32.const 1)))")
    m = wasync.decode_module(ok)
    body = m.body(0)
    body.instrs.insert(0, wasync.Instr(wasync.ops_named("drop")[0]))
    with pytest.raises(ValidationError, match="underflow") as info:
        wasync.type_function(m, 0, body=body)
    assert info.value.func_index == 0


def test_unknown_local_is_a_validation_error() -> None:
    m = wasync.decode_module(wat("(module (func (local i32) (drop (local.get 0))))"))
    body = m.body(0)
    body.instrs[0] = wasync.Instr(body.instrs[0].op, 9)
    with pytest.raises(ValidationError, match="unknown local 9"):
        wasync.type_function(m, 0, body=body)
