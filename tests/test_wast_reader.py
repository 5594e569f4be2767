"""Tests of the ``.wast`` script reader in ``tests/support/wast.py``."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal, localcontext
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import wasmtime
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support import wast
from tests.support.wast import (
    Atom,
    Either,
    NanPattern,
    NumValue,
    RefValue,
    SList,
    Str,
    V128Value,
    WastCommand,
    WastSyntaxError,
    WatConversionError,
    decode_string,
    iter_modules,
    module_bytes,
    parse_float_bits,
    parse_int_bits,
    parse_sexprs,
    parse_wast,
    parse_wast_file,
    spec_files,
    tokenize,
    wat_for_wasmtime,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

REPO = Path(__file__).resolve().parents[1]
SPEC_ROOT = REPO.parent / "shared" / "spec-testsuite"


USER_CACHE = os.environ.get("WASYNC_TEST_CACHE")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Unit tests use a throw-away wat2wasm cache (the corpus test uses the real one)."""
    monkeypatch.setenv("WASYNC_TEST_CACHE", str(tmp_path / "cache"))


def wat(text: str) -> bytes:
    return bytes(wasmtime.wat2wasm(text))


def only(text: str) -> SList:
    """The single top-level list of ``text``."""
    (node,) = parse_sexprs(text)
    assert isinstance(node, SList)
    return node


def atoms(node: SList) -> list[str]:
    return [i.text for i in node.items if isinstance(i, Atom)]


def one_command(text: str) -> WastCommand:
    (cmd,) = parse_wast(text, "t.wast")
    return cmd


def result_of(text: str) -> object:
    """The single expected result of ``(assert_return (invoke "f") <text>)``."""
    cmd = one_command(f'(assert_return (invoke "f") {text})')
    (result,) = cmd.expected
    return result


def arg_of(text: str) -> object:
    cmd = one_command(f'(invoke "f" {text})')
    assert cmd.action is not None
    (arg,) = cmd.action.args
    return arg


# --------------------------------------------------------------------------------------------
# Tokenizer


class TestStrings:
    def test_simple_escapes(self) -> None:
        assert decode_string(r'"\n\t\r\\\'\""') == b"\n\t\r\\'\""

    def test_hex_escapes_are_raw_bytes(self) -> None:
        assert decode_string(r'"\00\ff\7F\80a"') == b"\x00\xff\x7f\x80a"

    def test_unicode_escapes_are_utf8(self) -> None:
        assert decode_string(r'"\u{41}\u{e9}\u{1F600}\u{10_FFFF}"') == (
            "A\u00e9\U0001f600\U0010ffff".encode()
        )

    def test_plain_unicode_is_utf8(self) -> None:
        assert decode_string('"Heiße Würstchen"') == "Heiße Würstchen".encode()

    @pytest.mark.parametrize(
        "raw", [r'"\q"', r'"\0"', r'"\u{}"', r'"\u{D800}"', r'"\u{110000}"', r'"\u{_1}"']
    )
    def test_bad_escapes(self, raw: str) -> None:
        with pytest.raises(WastSyntaxError, match="escape"):
            decode_string(raw, "f.wast", 3)

    def test_string_token_is_decoded(self) -> None:
        node = only('(data "a\\62c" "")')
        assert node.items[1:] == [Str(b"abc", 1, 6, 13), Str(b"", 1, 14, 16)]

    def test_unterminated_string_reports_line(self) -> None:
        with pytest.raises(WastSyntaxError, match=r"x\.wast:2: unterminated string"):
            parse_sexprs('(module)\n(data "abc\n")', "x.wast")

    def test_control_character_in_string_is_an_error(self) -> None:
        with pytest.raises(WastSyntaxError, match="unterminated string"):
            parse_sexprs('(data "a\tb")')


class TestComments:
    def test_line_comments(self) -> None:
        node = only(";; c1\n(a ;; c2 (\n b);; c3")
        assert atoms(node) == ["a", "b"]

    def test_line_comment_right_after_token(self) -> None:
        assert atoms(only("(a;;comment\nb)")) == ["a", "b"]

    def test_block_comments_nest(self) -> None:
        node = only("(a (; x (; y ;) z ;) b (;;) c (;;;;;;) d (;(((( ;) e)")
        assert atoms(node) == ["a", "b", "c", "d", "e"]

    def test_block_comment_holds_line_comment_and_quotes(self) -> None:
        assert atoms(only('(a (;x;;y";) b)')) == ["a", "b"]

    def test_line_comment_hides_block_opener(self) -> None:
        assert atoms(only("(a ;; (;\n b)")) == ["a", "b"]

    def test_lines_counted_through_comments(self) -> None:
        top = parse_sexprs("(; 1\n2\n;)\n;; 4\n(x)\n(;\n;) (y\n)")
        assert [n.line for n in top] == [5, 7]

    def test_unterminated_block_comment(self) -> None:
        with pytest.raises(WastSyntaxError, match=r":2: unterminated block comment"):
            parse_sexprs("(a)\n(; (; ;)\n", "f.wast")

    def test_comments_spec_file_shape(self) -> None:
        text = "( ;;comment\nmodule;;comment\n);;comment\n(;comment;)((;c;)\nmodule(;c;)\n(;c;))"
        cmds = parse_wast(text)
        assert [c.kind for c in cmds] == ["module", "module"]
        assert cmds[0].text == "( ;;comment\nmodule;;comment\n)"
        assert [c.line for c in cmds] == [1, 4]


class TestTokens:
    def test_token_kinds_and_positions(self) -> None:
        toks = list(tokenize('(i32.const -0x1_0)\n  "s" (@a b)'))
        assert [(t.kind, t.text, t.line, t.start, t.end) for t in toks] == [
            ("(", "", 1, 0, 1),
            ("atom", "i32.const", 1, 1, 10),
            ("atom", "-0x1_0", 1, 11, 17),
            (")", "", 1, 17, 18),
            ("string", '"s"', 2, 21, 24),
            ("(@", "a", 2, 25, 28),
            ("atom", "b", 2, 29, 30),
            (")", "", 2, 30, 31),
        ]
        assert toks[4].value == b"s"

    def test_reserved_tokens_with_embedded_strings(self) -> None:
        node = only('(@a x-y$yz"aa"-2 $"id" "s"x)')
        assert atoms(node) == ["@a", 'x-y$yz"aa"-2', '$"id"', '"s"x']

    def test_illegal_character(self) -> None:
        with pytest.raises(WastSyntaxError, match=r":2: illegal character '\\x01'"):
            parse_sexprs("(a)\n(b \x01)", "f.wast")

    def test_unbalanced_parens(self) -> None:
        with pytest.raises(WastSyntaxError, match=r":2: unexpected '\)'"):
            parse_sexprs("(a)\n)", "f.wast")
        with pytest.raises(WastSyntaxError, match=r":2: unclosed"):
            parse_sexprs("(a)\n(b (c)\n", "f.wast")

    def test_deep_nesting_needs_no_recursion(self) -> None:
        depth = 200_000
        node = only("(" * depth + "x" + ")" * depth)
        for _ in range(depth - 1):
            (inner,) = node.items
            assert isinstance(inner, SList)
            node = inner
        assert atoms(node) == ["x"]

    def test_spans(self) -> None:
        text = '  (a (b "c"))  (d)'
        first, second = parse_sexprs(text)
        assert isinstance(first, SList)
        assert isinstance(second, SList)
        assert text[first.start : first.end] == '(a (b "c"))'
        assert text[second.start : second.end] == "(d)"


class TestAnnotations:
    def test_annotation_is_a_flagged_list(self) -> None:
        node = only('(module (@name "m") (func))')
        ann = node.items[1]
        assert isinstance(ann, SList)
        assert ann.annotation
        assert ann.head == "@name"
        assert ann.items[1] == Str(b"m", 1, 15, 18)
        assert [i.head for i in node.plain() if isinstance(i, SList)] == ["func"]

    def test_annotation_contents_are_arbitrary_tokens(self) -> None:
        node = only("(@a , ; ] [ }} }x{ ({) ,{{};}] ;)")
        assert atoms(node) == ["@a", ",", ";", "]", "[", "}}", "}x{", ",{{};}]", ";"]
        inner = node.items[7]
        assert isinstance(inner, SList)
        assert atoms(inner) == ["{"]

    def test_nested_and_odd_annotation_names(self) -> None:
        node = only('(@a (@x) (@) (@"str" 1) (@(@(@))))')
        heads = [i.head for i in node.items if isinstance(i, SList)]
        assert heads == ["@x", "@", '@"str"', "@"]

    def test_keyword_skips_annotations(self) -> None:
        cmd = one_command("((@a) module (@a) $m (@a) (func (@b)))")
        assert cmd.kind == "module"
        assert cmd.module is not None
        assert cmd.module.name == "$m"
        assert module_bytes(cmd.module) == wat("(module $m (func))")

    def test_annotation_between_commands(self) -> None:
        assert [c.kind for c in parse_wast('(@a) (module) (@b "x")')] == ["module"]


# --------------------------------------------------------------------------------------------
# Constants


class TestIntegers:
    @pytest.mark.parametrize(
        ("text", "width", "bits"),
        [
            ("0", 32, 0),
            ("-1", 32, 0xFFFF_FFFF),
            ("-1", 64, 0xFFFF_FFFF_FFFF_FFFF),
            ("4294967295", 32, 0xFFFF_FFFF),
            ("-2147483648", 32, 0x8000_0000),
            ("0x8000_0000", 32, 0x8000_0000),
            ("-0x8000_0000_0000_0000", 64, 1 << 63),
            ("1_000_000", 32, 1_000_000),
            ("+0x7fffffff", 32, 0x7FFF_FFFF),
            ("-0", 64, 0),
            ("0xFf", 8, 255),
            ("-128", 8, 0x80),
        ],
    )
    def test_twos_complement_bits(self, text: str, width: int, bits: int) -> None:
        assert parse_int_bits(text, width) == bits

    @pytest.mark.parametrize(
        ("text", "width"),
        [
            ("4294967296", 32),
            ("-2147483649", 32),
            ("+0x80000000", 32),
            ("0x1_0000_0000_0000_0000", 64),
            ("1__0", 32),
            ("_1", 32),
            ("1_", 32),
            ("0x", 32),
            ("1.0", 32),
            ("256", 8),
        ],
    )
    def test_rejected(self, text: str, width: int) -> None:
        with pytest.raises(ValueError, match=r"integer literal|out of range"):
            parse_int_bits(text, width)

    def test_signed_view(self) -> None:
        value = arg_of("(i64.const -5)")
        assert value == NumValue("i64", 2**64 - 5)
        assert isinstance(value, NumValue)
        assert value.signed == -5


class TestFloats:
    @pytest.mark.parametrize(
        ("text", "type_", "bits"),
        [
            ("0", "f32", 0),
            ("-0", "f32", 0x8000_0000),
            ("-0.0", "f64", 1 << 63),
            ("1", "f32", 0x3F80_0000),
            ("1.5", "f64", 0x3FF8_0000_0000_0000),
            ("1.", "f32", 0x3F80_0000),
            ("1e1", "f32", 0x4120_0000),
            ("0.1", "f32", 0x3DCC_CCCD),
            ("0.1", "f64", 0x3FB9_9999_9999_999A),
            ("1_000.000_1", "f64", struct.unpack("<Q", struct.pack("<d", 1000.0001))[0]),
            ("inf", "f32", 0x7F80_0000),
            ("-inf", "f64", 0xFFF0_0000_0000_0000),
            ("+inf", "f64", 0x7FF0_0000_0000_0000),
            ("nan", "f32", 0x7FC0_0000),
            ("-nan", "f32", 0xFFC0_0000),
            ("nan", "f64", 0x7FF8_0000_0000_0000),
            ("nan:0x1", "f32", 0x7F80_0001),
            ("-nan:0x7f_ffff", "f32", 0xFFFF_FFFF),
            ("nan:0x200000", "f32", 0x7FA0_0000),
            ("nan:0x4000000000000", "f64", 0x7FF4_0000_0000_0000),
            ("-nan:0xf_ffff_ffff_ffff", "f64", 0xFFFF_FFFF_FFFF_FFFF),
            ("0x1p-149", "f32", 1),
            ("0x1p-150", "f32", 0),  # tie: rounds to even (zero)
            ("0x1.8p-149", "f32", 2),  # tie: rounds to even (2)
            ("0x1p-1074", "f64", 1),
            ("0x1.fffffep127", "f32", 0x7F7F_FFFF),
            ("-0x1.fffffep+127", "f32", 0xFF7F_FFFF),
            ("0x1.fffffefffffffffp127", "f32", 0x7F7F_FFFF),
            ("0x1.fffffffffffffp1023", "f64", 0x7FEF_FFFF_FFFF_FFFF),
            ("0x1.000001p0", "f32", 0x3F80_0000),  # exact tie: even
            ("0x1.000003p0", "f32", 0x3F80_0002),  # exact tie: even (up)
            # Just above a tie, but the f64 nearest to it *is* the tie: no double rounding.
            ("0x1.000001000000001p0", "f32", 0x3F80_0001),
            ("1.000000059604644775390625", "f32", 0x3F80_0000),  # 1 + 2**-24: tie, even
            ("1.000000059604644775390625000000000001", "f32", 0x3F80_0001),
            ("0x0.0000000000001p-1022", "f64", 1),
            ("0xA.Bp-1", "f32", 0x40AB_0000),
            ("0x1_0.8", "f64", 0x4030_8000_0000_0000),
            ("1e-46", "f32", 0),
            ("1e-400", "f64", 0),
            ("0e99999999", "f64", 0),
            ("123456789e-3", "f64", struct.unpack("<Q", struct.pack("<d", 123456.789))[0]),
        ],
    )
    def test_bits(self, text: str, type_: str, bits: int) -> None:
        assert parse_float_bits(text, type_) == bits
        if not text.lstrip("+-").startswith(("nan", "inf")):
            assert wast._parse_float(text, type_, fast=False) == bits

    @pytest.mark.parametrize(
        ("text", "type_"),
        [
            ("0x1p128", "f32"),
            ("1e39", "f32"),
            ("3.4028236e38", "f32"),
            ("1e309", "f64"),
            ("0x1p1024", "f64"),
            ("1e99999999", "f64"),
            ("nan:0x0", "f32"),
            ("nan:0x80_0000", "f32"),
            ("nan:0x10000000000000", "f64"),
            ("nan:canonical", "f32"),
            ("1e", "f32"),
            (".5", "f32"),
            ("0x.8", "f32"),
            ("1__0", "f64"),
            ("infinity", "f64"),
            ("0x1P+", "f64"),
        ],
    )
    def test_rejected(self, text: str, type_: str) -> None:
        with pytest.raises(ValueError, match=r"malformed|out of range"):
            parse_float_bits(text, type_)


class TestConstantForms:
    def test_nan_patterns_are_results_only(self) -> None:
        assert result_of("(f32.const nan:canonical)") == NanPattern("f32", "canonical")
        assert result_of("(f64.const nan:arithmetic)") == NanPattern("f64", "arithmetic")
        with pytest.raises(WastSyntaxError, match=r"t\.wast:1: nan:canonical is a result"):
            arg_of("(f32.const nan:canonical)")

    def test_nan_payload_constant(self) -> None:
        assert result_of("(f32.const -nan:0x1)") == NumValue("f32", 0xFF80_0001)

    def test_v128_integer_shapes(self) -> None:
        v = arg_of("(v128.const i8x16 -1 0 1 2 3 4 5 6 7 8 9 10 11 12 13 0xff)")
        assert isinstance(v, V128Value)
        assert v.type == "v128"
        assert v.data == bytes([255, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 255])
        v = arg_of("(v128.const i16x8 -1 1 0x1234 0 0 0 0 -32768)")
        assert isinstance(v, V128Value)
        assert v.data == bytes.fromhex("ffff0100341200000000000000000080")
        v = arg_of("(v128.const i32x4 -1 1 0x0102_0304 4_294_967_295)")
        assert isinstance(v, V128Value)
        assert v.data == bytes.fromhex("ffffffff0100000004030201ffffffff")
        v = arg_of("(v128.const i64x2 -2 0x0102030405060708)")
        assert isinstance(v, V128Value)
        assert v.data == bytes.fromhex("feffffffffffffff0807060504030201")
        assert v.lanes == (NumValue("i64", 2**64 - 2), NumValue("i64", 0x0102030405060708))

    def test_v128_float_shapes(self) -> None:
        v = arg_of("(v128.const f32x4 1 -0 nan:0x1 -inf)")
        assert isinstance(v, V128Value)
        assert v.data == struct.pack("<4I", 0x3F80_0000, 0x8000_0000, 0x7F80_0001, 0xFF80_0000)
        v = arg_of("(v128.const f64x2 0x1p-1074 -1.5)")
        assert isinstance(v, V128Value)
        assert v.data == struct.pack("<2Q", 1, 0xBFF8_0000_0000_0000)

    def test_v128_lane_patterns(self) -> None:
        v = result_of("(v128.const f32x4 nan:canonical 1 nan:arithmetic 0)")
        assert isinstance(v, V128Value)
        assert v.data is None
        assert v.lanes == (
            NanPattern("f32", "canonical"),
            NumValue("f32", 0x3F80_0000),
            NanPattern("f32", "arithmetic"),
            NumValue("f32", 0),
        )

    @pytest.mark.parametrize(
        "text",
        [
            "(v128.const i32x4 1 2 3)",
            "(v128.const i32x4 1 2 3 4 5)",
            "(v128.const i32x5 1 2 3 4 5)",
            "(v128.const i8x16 256 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0)",
            "(v128.const f32x4 1 2 3 x)",
            "(v128.const)",
        ],
    )
    def test_v128_rejected(self, text: str) -> None:
        with pytest.raises(WastSyntaxError, match=r"t\.wast:1: "):
            arg_of(text)

    def test_refs(self) -> None:
        assert arg_of("(ref.null func)") == RefValue("ref.null", "func")
        assert arg_of("(ref.null extern)") == RefValue("ref.null", "extern")
        assert arg_of("(ref.extern 1)") == RefValue("ref.extern", 1)
        assert arg_of("(ref.host 0x10)") == RefValue("ref.host", 16)
        for head in (
            "ref.func",
            "ref.struct",
            "ref.array",
            "ref.i31",
            "ref.eq",
            "ref.any",
            "ref.extern",
            "ref.null",
            "ref",
        ):
            assert result_of(f"({head})") == RefValue(head, None)

    def test_either(self) -> None:
        r = result_of("(either (i32.const 1) (v128.const i64x2 0 -1) (ref.null any))")
        assert r == Either(
            (
                NumValue("i32", 1),
                V128Value(
                    "i64x2",
                    (NumValue("i64", 0), NumValue("i64", 2**64 - 1)),
                    bytes(8) + b"\xff" * 8,
                ),
                RefValue("ref.null", "any"),
            )
        )
        with pytest.raises(WastSyntaxError, match="unknown constant 'either'"):
            arg_of("(either (i32.const 1))")

    @pytest.mark.parametrize(
        "text",
        [
            "(i32.const)",
            "(i32.const 1 2)",
            "(i32.const 1.5)",
            "(i64.const 0x1_0000_0000_0000_0000)",
            "(f32.const 1e39)",
            "(i32.add)",
            "i32",
            '"s"',
            "(ref.extern 1 2)",
        ],
    )
    def test_bad_constants(self, text: str) -> None:
        with pytest.raises(WastSyntaxError, match=r"t\.wast:1: "):
            arg_of(text)


def _wat_const_bits(type_: str, literal: str) -> int:
    """What wasmtime's WAT parser makes of ``(type_.const literal)`` (oracle for the tests)."""
    wasm = wasmtime.wat2wasm(f"(module (global {type_} ({type_}.const {literal})))")
    size = {"f32": 4, "f64": 8}[type_]
    assert wasm[-1] == 0x0B
    return int.from_bytes(wasm[-1 - size : -1], "little")


def _nearest_f32_bits(value: Fraction) -> int | None:
    """Brute-force oracle: the f32 nearest to ``value`` >= 0 (ties to even); None: overflow."""
    approx = float(value)
    if approx > 3.5e38:
        return None
    start = struct.unpack("<I", struct.pack("<f", min(approx, 3.4028234663852886e38)))[0]
    candidates = range(max(start - 2, 0), min(start + 3, 0x7F80_0001))

    def exact(bits: int) -> Fraction:
        if bits == 0x7F80_0000:  # "infinity" sits where the next binade would start
            return Fraction(2) ** 128
        return Fraction(struct.unpack("<f", struct.pack("<I", bits))[0])

    best = min(candidates, key=lambda b: (abs(exact(b) - value), b & 1))
    return None if best == 0x7F80_0000 else best


_digits = st.text("0123456789", min_size=1, max_size=22)
_hexdigits = st.text("0123456789abcdefABCDEF", min_size=1, max_size=16)


@st.composite
def _float_literals(draw: st.DrawFn) -> str:
    if draw(st.booleans()):
        text = draw(_digits)
        if draw(st.booleans()):
            text += "." + draw(st.text("0123456789", max_size=22))
        if draw(st.booleans()):
            text += "e" + str(draw(st.integers(-60, 40)))
    else:
        text = "0x" + draw(_hexdigits)
        if draw(st.booleans()):
            text += "." + draw(st.text("0123456789abcdef", max_size=16))
        if draw(st.booleans()):
            text += "p" + str(draw(st.integers(-200, 100)))
    return draw(st.sampled_from(["", "-", "+"])) + text


@st.composite
def _f32_near_ties(draw: st.DrawFn) -> str:
    """Hex/decimal literals exactly at, just below or just above the midpoint of two f32s."""
    bits = draw(st.integers(0, 0x7F7F_FFFE))
    low = struct.unpack("<f", struct.pack("<I", bits))[0]
    high = struct.unpack("<f", struct.pack("<I", bits + 1))[0]
    mid = Fraction((low + high) / 2)  # the f64 sum is exact
    nudge = draw(st.sampled_from([0, -1, 1]))
    if draw(st.booleans()):
        # Hex: mid * 2**200 is an integer; add the nudge in that last place.
        num = mid * 2**200
        assert num.denominator == 1
        return f"0x{num.numerator + nudge:x}p-200"
    with localcontext() as ctx:
        ctx.prec = 2000
        value = Decimal(mid.numerator) / Decimal(mid.denominator)  # exact: den is 2**k
        exponent = value.as_tuple().exponent
        assert isinstance(exponent, int)
        value += Decimal(nudge).scaleb(min(exponent, 0) - 40)
        return format(value, "f")


class TestFloatOracles:
    @settings(max_examples=300, deadline=None)
    @given(_float_literals(), st.sampled_from(["f32", "f64"]))
    def test_matches_wasmtime(self, literal: str, type_: str) -> None:
        try:
            expected: int | None = _wat_const_bits(type_, literal)
        except wasmtime.WasmtimeError:
            expected = None
        try:
            got: int | None = parse_float_bits(literal, type_)
        except ValueError:
            got = None
        assert got == expected
        if got is not None:
            assert wast._parse_float(literal, type_, fast=False) == got

    @settings(max_examples=300, deadline=None)
    @given(_f32_near_ties())
    def test_f32_ties_exactly(self, literal: str) -> None:
        got = parse_float_bits(literal, "f32")
        body = literal.lstrip("+-")
        if body.startswith("0x"):
            mant, _, exp = body[2:].partition("p")
            whole, _, frac = mant.partition(".")
            value = Fraction(int(whole + frac, 16)) * Fraction(2) ** (int(exp or 0) - 4 * len(frac))
        else:
            value = Fraction(body)
        assert got == _nearest_f32_bits(value)
        assert got == wast._parse_float(literal, "f32", fast=False)
        assert got == _wat_const_bits("f32", literal)

    @settings(max_examples=200, deadline=None)
    @given(st.integers(-(2**63), 2**64 - 1), st.sampled_from(["dec", "hex"]))
    def test_i64_matches_wasmtime(self, value: int, style: str) -> None:
        literal = str(value) if style == "dec" else ("-" if value < 0 else "") + hex(abs(value))
        wasm = wasmtime.wat2wasm(f"(module (global i64 (i64.const {literal})))")
        # header, then the global section: id 6, size, count 1, i64 (0x7e), const (0), i64.const
        assert wasm[8] == 6
        assert wasm[10:14] == b"\x01\x7e\x00\x42"
        pos = 14
        result = shift = 0
        while True:
            byte = wasm[pos]
            result |= (byte & 0x7F) << shift
            shift += 7
            pos += 1
            if not byte & 0x80:
                break
        if byte & 0x40:
            result -= 1 << shift
        assert parse_int_bits(literal, 64) == result & (2**64 - 1)


# --------------------------------------------------------------------------------------------
# Commands and modules

SCRIPT = r"""
(module $M1 (func (export "f") (param i32) (result i32) (local.get 0)))
(module binary "\00asm" "\01\00\00\00")
(module $B binary "\00asm\01\00\00\00")
(module quote "(func" " (export \"q\"))")
(module definition $D (memory 1))
(module definition $DB binary "\00asm\01\00\00\00")
(module instance $I $D)
(module instance $J)
(register "m1" $M1)
(register "last")
(invoke $M1 "f" (i32.const -1))
(get "g")
(assert_return (invoke "f" (i32.const 7)) (i32.const 7))
(assert_return (get $M1 "g") (i64.const -1) (f32.const nan:canonical))
(assert_return (invoke "h"))
(assert_trap (invoke "f" (f64.const 0x1p-1)) "unreachable")
(assert_trap (module (func $f unreachable) (start $f)) "unreachable")
(assert_exhaustion (invoke "loop") "call stack exhausted")
(assert_malformed (module quote "(func") "unexpected end")
(assert_malformed (module binary "\00asm") "unexpected end")
(assert_invalid (module (func (result i32))) "type mismatch")
(assert_unlinkable (module (import "x" "y" (func))) "unknown import")
(assert_exception (invoke "throw"))
(assert_suspension (invoke "suspend") "unhandled")
(thread $T1 (shared (module $M1) (module $B))
  (register "mem" $M1)
  (module $Inner (memory 1))
  (assert_return (invoke $Inner "x") (ref.null extern))
)
(wait $T1)
"""


class TestCommands:
    def test_kinds_and_lines(self) -> None:
        cmds = parse_wast(SCRIPT, "s.wast")
        assert [(c.kind, c.line) for c in cmds] == [
            ("module", 2),
            ("module", 3),
            ("module", 4),
            ("module", 5),
            ("module", 6),
            ("module", 7),
            ("module", 8),
            ("module", 9),
            ("register", 10),
            ("register", 11),
            ("invoke", 12),
            ("get", 13),
            ("assert_return", 14),
            ("assert_return", 15),
            ("assert_return", 16),
            ("assert_trap", 17),
            ("assert_trap", 18),
            ("assert_exhaustion", 19),
            ("assert_malformed", 20),
            ("assert_malformed", 21),
            ("assert_invalid", 22),
            ("assert_unlinkable", 23),
            ("assert_exception", 24),
            ("assert_suspension", 25),
            ("thread", 26),
            ("wait", 31),
        ]
        assert all(c.path == "s.wast" for c in cmds)
        assert cmds[8].text == '(register "m1" $M1)'

    def test_module_forms(self) -> None:
        mods = [c.module for c in parse_wast(SCRIPT)[:8]]
        assert all(m is not None for m in mods)
        m1, b0, b1, q, d, db, i, j = (m for m in mods if m is not None)
        assert (m1.form, m1.name, m1.line) == ("text", "$M1", 2)
        assert m1.text == '(module $M1 (func (export "f") (param i32) (result i32) (local.get 0)))'
        assert (b0.form, b0.name, b0.binary) == ("binary", None, b"\0asm\1\0\0\0")
        assert (b1.form, b1.name, b1.binary) == ("binary", "$B", b"\0asm\1\0\0\0")
        assert (q.form, q.quote, q.quote_bytes) == (
            "quote",
            '(func (export "q"))',
            b'(func (export "q"))',
        )
        assert (d.form, d.name, d.definition) == ("text", "$D", True)
        assert d.text == "(module " + " " * len("definition") + " $D (memory 1))"
        assert (db.form, db.name, db.definition, db.binary) == (
            "binary",
            "$DB",
            True,
            b"\0asm\1\0\0\0",
        )
        assert (i.form, i.name, i.instance_of) == ("instance", "$I", "$D")
        assert (j.form, j.name, j.instance_of) == ("instance", "$J", None)
        assert not m1.definition

    def test_actions_and_results(self) -> None:
        cmds = parse_wast(SCRIPT)
        reg, reg_last, inv, get = cmds[8:12]
        assert (reg.register_as, reg.name) == ("m1", "$M1")
        assert (reg_last.register_as, reg_last.name) == ("last", None)
        assert inv.action == wast.Action("invoke", "$M1", "f", (NumValue("i32", 2**32 - 1),), 12)
        assert get.action == wast.Action("get", None, "g", (), 13)
        ret = cmds[13]
        assert ret.action is not None
        assert ret.action.module == "$M1"
        assert ret.expected == (NumValue("i64", 2**64 - 1), NanPattern("f32", "canonical"))
        assert cmds[14].expected == ()
        assert cmds[12].message is None

    def test_assertion_payloads(self) -> None:
        cmds = {c.line: c for c in parse_wast(SCRIPT)}
        trap = cmds[17]
        assert trap.action is not None
        assert trap.action.args == (NumValue("f64", 0x3FE0_0000_0000_0000),)
        assert trap.message == "unreachable"
        trap_module = cmds[18]
        assert trap_module.module is not None
        assert trap_module.module.form == "text"
        assert trap_module.action is None
        assert cmds[20].module is not None
        assert cmds[20].module.form == "quote"
        assert cmds[20].message == "unexpected end"
        assert cmds[21].module is not None
        assert cmds[21].module.binary == b"\0asm"
        assert cmds[24].message is None
        assert cmds[25].message == "unhandled"

    def test_thread_and_wait(self) -> None:
        cmds = parse_wast(SCRIPT)
        thread, wait = cmds[-2:]
        assert (thread.name, thread.shared) == ("$T1", ("$M1", "$B"))
        assert [(c.kind, c.line) for c in thread.commands] == [
            ("register", 27),
            ("module", 28),
            ("assert_return", 29),
        ]
        assert thread.commands[2].expected == (RefValue("ref.null", "extern"),)
        assert wait.name == "$T1"

    def test_iter_modules_includes_nested(self) -> None:
        pairs = list(iter_modules(parse_wast(SCRIPT)))
        assert [(c.kind, m.line) for c, m in pairs] == [
            ("module", 2),
            ("module", 3),
            ("module", 4),
            ("module", 5),
            ("module", 6),
            ("module", 7),
            ("module", 8),
            ("module", 9),
            ("assert_trap", 18),
            ("assert_malformed", 20),
            ("assert_malformed", 21),
            ("assert_invalid", 22),
            ("assert_unlinkable", 23),
            ("module", 28),
        ]

    def test_script_meta_commands(self) -> None:
        cmds = parse_wast('(script $S (module) (invoke "f")) (input $S "a.wast") (output "o")')
        assert [(c.kind, c.name, c.file) for c in cmds] == [
            ("script", "$S", None),
            ("input", "$S", "a.wast"),
            ("output", None, "o"),
        ]
        assert [c.kind for c in cmds[0].commands] == ["module", "invoke"]
        assert len(list(iter_modules(cmds))) == 1

    def test_inline_module_script(self) -> None:
        (cmd,) = parse_wast('(func) (memory 0) (func (export "f"))', "inline.wast")
        assert cmd.kind == "module"
        assert cmd.module is not None
        assert module_bytes(cmd.module) == wat('(module (func) (memory 0) (func (export "f")))')

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("(module)\n(frobnicate)", r"f\.wast:2: unknown command 'frobnicate'"),
            ("(module)\nfoo", r"f\.wast:2: expected a command"),
            ('\n\n(assert_return (invoke "f" (i32.const 1.5)))', r"f\.wast:3: malformed integer"),
            ("(invoke)", r"f\.wast:1: invoke: expected an export name"),
            ('(get "g" (i32.const 1))', r"f\.wast:1: get: takes no arguments"),
            ("(assert_return (module) (i32.const 1))", r"assert_return: expected an action"),
            ('(assert_trap (invoke "f") "a" "b")', r"assert_trap: unexpected Str"),
            ("(assert_invalid)", r"assert_invalid: expected a module or an action"),
            ('(module binary "\\00" 1)', r"module binary: expected strings only"),
            ("(module instance $a $b $c)", r"module instance"),
            ("(register $M)", r"register: expected a name string"),
            ('(invoke "\\ff")', r"export name is not valid UTF-8"),
            ("(thread $T (shared (memory $m)))", r"thread: expected"),
            ("(wait)", r"wait: expected"),
            ("((i32.const 1))", r"a command must start with a keyword"),
        ],
    )
    def test_errors_carry_file_and_line(self, text: str, message: str) -> None:
        with pytest.raises(WastSyntaxError, match=message) as info:
            parse_wast(text, "f.wast")
        assert info.value.path == "f.wast"
        assert info.value.line >= 1


class TestModuleBytes:
    def test_text_binary_quote_instance(self) -> None:
        cmds = parse_wast(SCRIPT, "s.wast")
        mods = [m for _, m in iter_modules(cmds)]
        m1, b0, _, quote, definition, _, instance = mods[:7]
        assert module_bytes(m1) == wat(
            '(module $M1 (func (export "f") (param i32) (result i32) (local.get 0)))'
        )
        assert module_bytes(b0) == b"\0asm\1\0\0\0"
        assert module_bytes(quote) is None
        assert module_bytes(instance) is None
        assert module_bytes(definition) == wat("(module $D (memory 1))")

    def test_bad_text_reports_file_and_line(self) -> None:
        cmds = parse_wast("(module)\n\n(module (func (i32.frob)))", "bad.wast")
        mod = cmds[1].module
        assert mod is not None
        with pytest.raises(WatConversionError, match=r"bad\.wast:3: wat2wasm failed") as info:
            module_bytes(mod)
        assert "i32.frob" in str(info.value)

    def test_cache_is_used(self, tmp_path: Path) -> None:
        mod = one_command("(module (memory 3))").module
        assert mod is not None
        first = module_bytes(mod)
        cached = list((tmp_path / "cache" / "wast").rglob("*.wasm"))
        assert len(cached) == 1
        assert cached[0].read_bytes() == first
        # A second read comes from the file (prove it by planting other bytes there).
        cached[0].write_bytes(b"\0asmPLANTED")
        assert module_bytes(mod) == b"\0asmPLANTED"
        assert not list((tmp_path / "cache").rglob("*.tmp"))

    def test_failures_are_cached_too(self, tmp_path: Path) -> None:
        mod = one_command("(module (func (i32.frob)))").module
        assert mod is not None
        for _ in range(2):
            with pytest.raises(WatConversionError, match=r"i32\.frob"):
                module_bytes(mod)
        assert len(list((tmp_path / "cache" / "wast").rglob("*.err"))) == 1

    def test_concurrent_threads(self, tmp_path: Path) -> None:
        mods = [one_command(f"(module (memory {i % 4}))").module for i in range(64)]
        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(lambda m: module_bytes(m) if m else None, mods))
        for i, result in enumerate(results):
            assert result == wat(f"(module (memory {i % 4}))")
        assert len(list((tmp_path / "cache" / "wast").rglob("*.wasm"))) == 4
        assert not list((tmp_path / "cache").rglob("*.tmp"))

    def test_concurrent_processes(self, tmp_path: Path) -> None:
        script = (
            "from tests.support.wast import parse_wast, iter_modules, module_bytes\n"
            "text = ' '.join(f'(module (memory {i}) (func (export \"{i}\")))' for i in range(40))\n"
            "for _, m in iter_modules(parse_wast(text)):\n"
            "    assert module_bytes(m)[:4] == b'\\0asm'\n"
        )
        procs = [
            subprocess.Popen([sys.executable, "-c", script], cwd=REPO, env=os.environ.copy())
            for _ in range(3)
        ]
        assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
        assert len(list((tmp_path / "cache" / "wast").rglob("*.wasm"))) == 40
        assert not list((tmp_path / "cache").rglob("*.tmp"))

    def test_unwritable_cache_still_converts(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        blocker = tmp_path / "file"
        blocker.write_text("not a directory")
        monkeypatch.setenv("WASYNC_TEST_CACHE", str(blocker))
        mod = one_command("(module (memory 2))").module
        assert mod is not None
        assert module_bytes(mod) == wat("(module (memory 2))")

    def test_cache_dir_default(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("WASYNC_TEST_CACHE")
        assert wast.cache_dir() == REPO / ".cache" / "wast"


class TestWatForWasmtime:
    def test_folded_legacy_try_is_unfolded(self) -> None:
        folded = """(module (tag $e (param i32))
          (func (export "f") (result i32)
            (try $l (result i32)
              (do (throw $e (i32.const 1)))
              (catch $e)
              (catch_all (try (do (rethrow $l)) (delegate 0)) (i32.const 2)))))"""
        flat = """(module (tag $e (param i32))
          (func (export "f") (result i32)
            try $l (result i32)
              (throw $e (i32.const 1))
              catch $e
              catch_all try (rethrow $l) delegate 0 (i32.const 2) end))"""
        rewritten = wat_for_wasmtime(folded)
        assert rewritten.count("\n") == folded.count("\n")
        assert wat(rewritten) == wat(flat)

    def test_try_table_untouched(self) -> None:
        text = "(module (func (try_table (do))))"
        assert wat_for_wasmtime(text) == text

    def test_confusing_unicode_is_escaped(self) -> None:
        text = '(module (func (export "a\u202eb\u2066")))'
        rewritten = wat_for_wasmtime(text)
        assert rewritten == '(module (func (export "a\\u{202e}b\\u{2066}")))'
        wasm = wasmtime.wat2wasm(rewritten)
        assert "a\u202eb\u2066".encode() in wasm


# --------------------------------------------------------------------------------------------
# The spec test suite


def test_spec_files_sorted_and_recursive(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    for name in ("z.wast", "a.wast", "b/c.wast", "b/d.wat", "b/e.wast"):
        (tmp_path / name).write_text("(module)")
    assert [p.relative_to(tmp_path).as_posix() for p in spec_files(tmp_path)] == [
        "a.wast",
        "b/c.wast",
        "b/e.wast",
        "z.wast",
    ]
    assert parse_wast_file(tmp_path / "a.wast")[0].path == str(tmp_path / "a.wast")


def _walk(commands: tuple[WastCommand, ...] | list[WastCommand]) -> Iterator[WastCommand]:
    stack = list(reversed(commands))
    while stack:
        cmd = stack.pop()
        yield cmd
        stack.extend(reversed(cmd.commands))


@pytest.mark.slow
def test_spec_corpus(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Every script parses; every module is accounted for."""
    if not SPEC_ROOT.is_dir():
        pytest.skip(f"spec test suite not found at {SPEC_ROOT}")
    # Use the real on-disk cache (shared between runs) instead of the per-test one.
    if USER_CACHE:
        monkeypatch.setenv("WASYNC_TEST_CACHE", USER_CACHE)
    else:
        monkeypatch.delenv("WASYNC_TEST_CACHE")
    begin = time.monotonic()
    files = spec_files(SPEC_ROOT)
    counts: Counter[str] = Counter()
    wat_failures: Counter[str] = Counter()
    commands: Counter[str] = Counter()
    problems: list[str] = []
    for path in files:
        rel = path.relative_to(SPEC_ROOT).as_posix()
        try:
            cmds = parse_wast_file(path)
        except WastSyntaxError as exc:
            problems.append(f"parse error: {exc}")
            continue
        counts["files"] += 1
        for cmd in _walk(cmds):
            commands[cmd.kind] += 1
            if cmd.kind == "assert_return" and cmd.action is None:
                problems.append(f"{rel}:{cmd.line}: assert_return without an action")
        for cmd, mod in iter_modules(cmds):
            counts["modules"] += 1
            counts[f"form {mod.form}"] += 1
            if mod.definition:
                counts["definitions"] += 1
            where = f"{rel}:{mod.line} ({cmd.kind})"
            if mod.form == "binary":
                data = module_bytes(mod)
                assert data is not None
                if data.startswith(b"\0asm"):
                    counts["binary with magic"] += 1
                elif cmd.kind.startswith("assert_malformed"):
                    counts["binary without magic (assert_malformed)"] += 1
                else:
                    problems.append(f"{where}: binary module does not start with \\0asm")
            elif mod.form == "text":
                try:
                    data = module_bytes(mod)
                except WatConversionError as exc:
                    if cmd.kind in ("assert_malformed", "assert_invalid"):
                        wat_failures[cmd.kind] += 1
                    else:
                        problems.append(f"{where}: {exc}")
                    continue
                assert data is not None
                assert data.startswith(b"\0asm"), where
                counts["text converted"] += 1
            elif mod.form == "quote":
                assert mod.quote is not None
                if cmd.kind.startswith("assert_malformed"):
                    counts["quote (assert_malformed)"] += 1
                else:
                    counts["quote (other)"] += 1
            else:
                assert mod.form == "instance", where
    elapsed = time.monotonic() - begin
    summary = [
        f"spec corpus: {counts['files']}/{len(files)} files parsed in {elapsed:.1f}s",
        *(f"  {key}: {value}" for key, value in sorted(counts.items()) if key != "files"),
        f"  wat2wasm failures by command: {dict(wat_failures) or 'none'}",
        "  commands: " + ", ".join(f"{k}={v}" for k, v in commands.most_common()),
    ]
    with capsys.disabled():
        print("\n" + "\n".join(summary))
    assert not problems, "\n".join(problems[:50])
    # Sanity floors (the pinned suite has 268 files and about 7500 modules).
    assert counts["files"] >= 260
    assert counts["modules"] >= 7000
    assert counts["text converted"] >= 5000
    assert counts["form binary"] >= 700
    assert counts["form quote"] >= 1000
    assert commands["assert_return"] >= 50_000
