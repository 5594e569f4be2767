"""Reader for WebAssembly spec-test ``.wast`` scripts.

The reader has three layers:

1. An s-expression tokenizer/parser for the WAT/WAST lexical syntax (:func:`tokenize`,
   :func:`parse_sexprs`).  It handles line comments ``;;``, nested block comments
   ``(; ... ;)``, strings with every escape (decoded to ``bytes``), annotations ``(@name ...)``
   (kept as ordinary lists whose head atom is ``@name``) and keeps numbers, keywords, ids and
   reserved tokens as raw :class:`Atom` text.  It is iterative, so nesting depth is unbounded.

2. A structural reader for the script language (:func:`parse_wast`) producing
   :class:`WastCommand` objects with their modules (:class:`WastModule`), actions
   (:class:`Action`) and expected results.

3. Helpers for the test suite: :func:`iter_modules`, :func:`module_bytes` (text modules go
   through ``wasmtime.wat2wasm`` with an on-disk cache, after the two small compatibility
   rewrites of :func:`wat_for_wasmtime`) and :func:`spec_files`.

Value conventions (see :class:`NumValue`):

* integers are stored as their unsigned two's complement bit pattern: ``(i32.const -1)`` is
  ``0xFFFF_FFFF`` and ``(i64.const -1)`` is ``0xFFFF_FFFF_FFFF_FFFF``;
* floats are stored as their exact IEEE-754 bit pattern (``f32`` as a 32-bit int, ``f64`` as a
  64-bit int), so NaN payloads and signed zeros survive; decimal and hexadecimal literals are
  rounded exactly (round to nearest, ties to even), without double rounding;
* ``nan:canonical`` / ``nan:arithmetic`` results are :class:`NanPattern` objects;
* ``v128`` values keep their lanes, and ``V128Value.data`` holds the 16 little-endian bytes
  whenever no lane is a NaN pattern.

Module and instance names are kept exactly as written, including the ``$`` (``"$M"``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import struct
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Final

import wasmtime

from tests.support.corpus import atomic_write

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

__all__ = [
    "Action",
    "Atom",
    "Either",
    "Expected",
    "NanPattern",
    "NumValue",
    "RefValue",
    "SExpr",
    "SList",
    "Str",
    "Token",
    "V128Value",
    "Value",
    "WastCommand",
    "WastError",
    "WastModule",
    "WastSyntaxError",
    "WatConversionError",
    "cache_dir",
    "decode_string",
    "iter_modules",
    "module_bytes",
    "parse_float_bits",
    "parse_int_bits",
    "parse_sexprs",
    "parse_wast",
    "parse_wast_file",
    "spec_files",
    "tokenize",
    "wat_for_wasmtime",
]

REPO_ROOT: Final = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------------------------
# Errors


class WastError(Exception):
    """Base class of the reader's errors; carries the script path and 1-based line."""

    def __init__(self, message: str, path: str = "", line: int = 0) -> None:
        self.message = message
        self.path = path
        self.line = line
        where = f"{path or '<wast>'}:{line}" if line else (path or "<wast>")
        super().__init__(f"{where}: {message}")


class WastSyntaxError(WastError):
    """The script is not well-formed (lexically, or as a WAST command)."""


class WatConversionError(WastError):
    """``wasmtime.wat2wasm`` rejected the text of a module."""


# --------------------------------------------------------------------------------------------
# Tokens and s-expressions


@dataclass(frozen=True, slots=True)
class Atom:
    """A keyword, id, number or reserved token, as raw source text."""

    text: str
    line: int
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Str:
    """A string literal; ``value`` is the decoded bytes."""

    value: bytes
    line: int
    start: int
    end: int


@dataclass(slots=True)
class SList:
    """A parenthesised list.  ``start``/``end`` delimit its exact source text."""

    items: list[SExpr]
    line: int
    start: int
    end: int
    annotation: bool = False

    @property
    def head(self) -> str | None:
        """The first item's text if it is an atom (``module``, ``@custom``, ...)."""
        if self.items and isinstance(self.items[0], Atom):
            return self.items[0].text
        return None

    def plain(self) -> list[SExpr]:
        """The items without annotations (``(@a ...)`` may appear between any tokens)."""
        return [i for i in self.items if not (isinstance(i, SList) and i.annotation)]

    @property
    def keyword(self) -> str | None:
        """The head atom ignoring annotations: ``((@a) module ...)`` has keyword ``module``."""
        for item in self.items:
            if isinstance(item, SList) and item.annotation:
                continue
            return item.text if isinstance(item, Atom) else None
        return None


SExpr = Atom | Str | SList


@dataclass(frozen=True, slots=True)
class Token:
    """A lexical token.

    ``kind`` is ``"("`` (``text`` is ``""``), ``"(@"`` (an annotation opener, ``text`` is the
    annotation name), ``")"``, ``"atom"`` or ``"string"`` (``value`` holds the decoded bytes).
    Whitespace and comments are not reported.
    """

    kind: str
    text: str
    line: int
    start: int
    end: int
    value: bytes = b""


_STRING_PAT: Final = r'"(?:[^"\\\x00-\x1f\x7f]|\\[^\x00-\x1f\x7f])*"'
# A token is a maximal run of non-delimiter characters and embedded strings.  ``;;`` starts a
# line comment even right after a token; a single ``;`` is a token character (it occurs in
# the reserved tokens of annotations).
_TOKEN_BODY: Final = rf'(?:[^ \t\n\r()";\x00-\x1f\x7f]|;(?!;)|{_STRING_PAT})'
# Spacing (whitespace and line comments) is folded into the front of every match; the
# empty last alternative matches at the end of input or before an illegal character.
_LEX_RE: Final = re.compile(
    r"(?P<sp>(?:[ \t\n\r]+|;;[^\n\r]*)*)"
    r"(?:(?P<bc>\(;)"
    r"|(?P<an>\(@)"
    r"|(?P<lp>\()"
    r"|(?P<rp>\))"
    rf"|(?P<tok>{_TOKEN_BODY}+)"
    r"|(?P<none>))"
)
_ANNOT_NAME_RE: Final = re.compile(rf"{_TOKEN_BODY}*")
_STRING_RE: Final = re.compile(_STRING_PAT)
_BLOCK_COMMENT_RE: Final = re.compile(r"\(;|;\)")
_ESCAPE_RE: Final = re.compile(
    r"\\(?:(?P<hex>[0-9a-fA-F]{2})|u\{(?P<uni>[0-9a-fA-F](?:_?[0-9a-fA-F])*)\}"
    r"|(?P<chr>[tnr\"'\\]))"
)
_SIMPLE_ESCAPES: Final = {"t": b"\t", "n": b"\n", "r": b"\r", '"': b'"', "'": b"'", "\\": b"\\"}


def decode_string(raw: str, path: str = "", line: int = 0) -> bytes:
    """Decode a string literal including its quotes (``'"a\\n"'``) into bytes."""
    if len(raw) < 2 or raw[0] != '"' or raw[-1] != '"':
        raise WastSyntaxError(f"not a string literal: {raw!r}", path, line)
    body = raw[1:-1]
    if "\\" not in body:
        return body.encode("utf-8")
    out = bytearray()
    pos = 0
    while True:
        i = body.find("\\", pos)
        if i < 0:
            out += body[pos:].encode("utf-8")
            return bytes(out)
        out += body[pos:i].encode("utf-8")
        m = _ESCAPE_RE.match(body, i)
        if m is None:
            raise WastSyntaxError(f"illegal escape in string: {body[i : i + 4]!r}", path, line)
        if m["hex"] is not None:
            out.append(int(m["hex"], 16))
        elif m["uni"] is not None:
            cp = int(m["uni"].replace("_", ""), 16)
            if cp >= 0x110000 or 0xD800 <= cp < 0xE000:
                raise WastSyntaxError(f"\\u escape is not a scalar value: {cp:#x}", path, line)
            out += chr(cp).encode("utf-8")
        else:
            out += _SIMPLE_ESCAPES[m["chr"]]
        pos = m.end()


# Lexer output: (kind, text, line, start, end, decoded string bytes or None).
_Lexeme = tuple[str, str, int, int, int, bytes | None]


def _lex(text: str, path: str) -> Iterator[_Lexeme]:
    """The tokenizer proper; yields plain tuples (fast), see :func:`tokenize`."""
    pos = 0
    line = 1
    n = len(text)
    match = _LEX_RE.match
    count = text.count
    while True:
        m = match(text, pos)
        assert m is not None  # every alternative may follow the (possibly empty) spacing
        start = m.end("sp")
        if start > pos:
            line += count("\n", pos, start)
        kind = m.lastgroup
        end = m.end()
        if kind == "tok":
            tok = m.group("tok")
            if tok[0] == '"' and _STRING_RE.fullmatch(tok):
                yield "string", tok, line, start, end, decode_string(tok, path, line)
            else:
                yield "atom", tok, line, start, end, None
        elif kind == "lp":
            yield "(", "", line, start, end, None
        elif kind == "rp":
            yield ")", "", line, start, end, None
        elif kind == "an":
            name = _ANNOT_NAME_RE.match(text, end)
            assert name is not None  # the pattern accepts the empty string
            end = name.end()
            yield "(@", name.group(), line, start, end, None
        elif kind == "bc":
            depth = 1
            while depth:
                c = _BLOCK_COMMENT_RE.search(text, end)
                if c is None:
                    raise WastSyntaxError("unterminated block comment", path, line)
                depth += 1 if c.group() == "(;" else -1
                end = c.end()
            line += count("\n", start, end)
        elif start >= n:
            return
        else:
            ch = text[start]
            if ch == '"':
                raise WastSyntaxError(
                    "unterminated string (or control character in it)", path, line
                )
            raise WastSyntaxError(f"illegal character {ch!r}", path, line)
        pos = end


def tokenize(text: str, path: str = "") -> Iterator[Token]:
    """Yield the tokens of ``text``; raise :class:`WastSyntaxError` on lexical errors."""
    for kind, tok, line, start, end, value in _lex(text, path):
        yield Token(kind, tok, line, start, end, value if value is not None else b"")


def parse_sexprs(text: str, path: str = "") -> list[SExpr]:
    """Parse ``text`` into its top-level s-expressions (without recursion)."""
    top: list[SExpr] = []
    # Each open list: (items, line, start offset, is annotation).
    stack: list[tuple[list[SExpr], int, int, bool]] = []
    items = top
    for kind, tok, line, start, end, value in _lex(text, path):
        if kind == "atom":
            items.append(Atom(tok, line, start, end))
        elif kind == "string":
            assert value is not None
            items.append(Str(value, line, start, end))
        elif kind == "(":
            stack.append((items, line, start, False))
            items = []
        elif kind == "(@":
            stack.append((items, line, start, True))
            items = [Atom("@" + tok, line, start + 1, end)]
        else:  # ")"
            if not stack:
                raise WastSyntaxError("unexpected ')'", path, line)
            parent, open_line, open_start, annotation = stack.pop()
            parent.append(SList(items, open_line, open_start, end, annotation))
            items = parent
    if stack:
        raise WastSyntaxError("unclosed '(' (missing ')' before end of input)", path, stack[-1][1])
    return top


# --------------------------------------------------------------------------------------------
# Values


@dataclass(frozen=True, slots=True)
class NumValue:
    """A number: ``type`` is i32/i64/f32/f64, ``bits`` the unsigned bit pattern."""

    type: str
    bits: int

    @property
    def signed(self) -> int:
        """The bits read as a two's complement integer (meaningful for i32/i64)."""
        width = 32 if self.type in ("i32", "f32") else 64
        return self.bits - (1 << width) if self.bits >> (width - 1) else self.bits


@dataclass(frozen=True, slots=True)
class NanPattern:
    """A result pattern ``nan:canonical`` or ``nan:arithmetic`` for an f32/f64."""

    type: str
    kind: str


@dataclass(frozen=True, slots=True)
class V128Value:
    """A ``v128.const``: ``shape`` like ``i32x4``, one entry per lane.

    ``data`` is the 16-byte little-endian encoding, or None when a lane is a NaN pattern.
    """

    shape: str
    lanes: tuple[NumValue | NanPattern, ...]
    data: bytes | None

    @property
    def type(self) -> str:
        return "v128"


@dataclass(frozen=True, slots=True)
class RefValue:
    """A reference constant or pattern.

    ``type`` is the head keyword: ``ref.null``, ``ref.extern``, ``ref.host``, ``ref.func``,
    ``ref.struct``, ``ref.array``, ``ref.i31``, ``ref.eq``, ``ref.any``, ``ref`` ...
    ``value`` is the optional argument: the heap type (str) of ``ref.null``, the host index
    (int) of ``ref.extern N`` / ``ref.host N``, else None (a bare pattern: "any such ref").
    """

    type: str
    value: int | str | None


@dataclass(frozen=True, slots=True)
class Either:
    """``(either r1 r2 ...)``: the result must match one of the alternatives."""

    options: tuple[Expected, ...]


Value = NumValue | V128Value | RefValue
"""An argument constant."""

Expected = NumValue | NanPattern | V128Value | RefValue | Either
"""An expected result (constant or pattern)."""


_INT_RE: Final = re.compile(r"([+-]?)(?:0x([0-9a-fA-F](?:_?[0-9a-fA-F])*)|([0-9](?:_?[0-9])*))\Z")
_DEC_FLOAT_RE: Final = re.compile(
    r"([0-9](?:_?[0-9])*)(?:\.([0-9](?:_?[0-9])*)?)?(?:[eE]([+-]?[0-9](?:_?[0-9])*))?\Z"
)
_HEX_FLOAT_RE: Final = re.compile(
    r"0x([0-9a-fA-F](?:_?[0-9a-fA-F])*)(?:\.([0-9a-fA-F](?:_?[0-9a-fA-F])*)?)?"
    r"(?:[pP]([+-]?[0-9](?:_?[0-9])*))?\Z"
)
_NAT_RE: Final = re.compile(r"(?:0x[0-9a-fA-F](?:_?[0-9a-fA-F])*|[0-9](?:_?[0-9])*)\Z")
_NAN_PAYLOAD_RE: Final = re.compile(r"nan:0x([0-9a-fA-F](?:_?[0-9a-fA-F])*)\Z")
# (mantissa bits, exponent bits) of each float type.
_INF: Final = float("inf")
_FLOAT_FORMATS: Final = {"f32": (23, 8), "f64": (52, 11)}
_V128_SHAPES: Final = frozenset({"i8x16", "i16x8", "i32x4", "i64x2", "f32x4", "f64x2"})
_INT_WIDTHS: Final = {"i8": 8, "i16": 16, "i32": 32, "i64": 64}


def parse_int_bits(text: str, width: int) -> int:
    """Parse an integer literal (``-1``, ``0xff``, ``1_000``) into ``width`` unsigned bits.

    Accepts the range of both uN and sN (``-2**(width-1)`` .. ``2**width - 1``; an explicit
    ``+`` sign limits it to ``2**(width-1) - 1`` as in the spec).  Raises ValueError.
    """
    m = _INT_RE.match(text)
    if m is None:
        raise ValueError(f"malformed integer literal {text!r}")
    sign, hexdigits, decdigits = m.groups()
    v = int(hexdigits, 16) if hexdigits is not None else int(decdigits)
    if sign == "-":
        if v > 1 << (width - 1):
            raise ValueError(f"i{width} constant out of range: {text!r}")
        return -v & ((1 << width) - 1)
    limit = 1 << (width - 1) if sign == "+" else 1 << width
    if v >= limit:
        raise ValueError(f"i{width} constant out of range: {text!r}")
    return v


def _round_to_bits(num: int, den: int, mbits: int, ebits: int) -> int | None:
    """Bits of the positive rational ``num/den`` rounded to nearest even; None on overflow."""
    bias = (1 << (ebits - 1)) - 1
    emin = 1 - bias
    e = num.bit_length() - den.bit_length()  # floor(log2(num/den)) is e or e - 1
    if (num < den << e) if e >= 0 else (num << -e < den):
        e -= 1
    e = max(e, emin)
    shift = mbits - e  # scale so that the significand is an integer with mbits fraction bits
    if shift >= 0:
        q, r = divmod(num << shift, den)
        d = den
    else:
        d = den << -shift
        q, r = divmod(num, d)
    if 2 * r > d or (2 * r == d and q & 1):
        q += 1
    if q >> (mbits + 1):  # rounding carried into the next binade
        q >>= 1
        e += 1
    if q >> mbits == 0:  # subnormal (e == emin)
        return q
    if e > bias:
        return None
    return ((e + bias) << mbits) | (q - (1 << mbits))


def parse_float_bits(text: str, type_: str) -> int:
    """Parse a float literal into the IEEE bit pattern of ``type_`` (``"f32"``/``"f64"``).

    Handles decimal and hex floats (with ``_``), ``inf``, ``nan`` and ``nan:0xPAYLOAD``.
    Raises ValueError for malformed or out-of-range literals (NaN patterns are not literals).
    """
    return _parse_float(text, type_, fast=True)


def _parse_float(text: str, type_: str, *, fast: bool) -> int:
    """:func:`parse_float_bits`; ``fast=False`` forces the exact rational rounding path."""
    mbits, ebits = _FLOAT_FORMATS[type_]
    sign_bit = 0
    body = text
    if body[:1] in ("+", "-"):
        sign_bit = 1 << (mbits + ebits) if body[0] == "-" else 0
        body = body[1:]
    exp_all = ((1 << ebits) - 1) << mbits
    if body == "inf":
        return sign_bit | exp_all
    if body == "nan":
        return sign_bit | exp_all | (1 << (mbits - 1))
    if body.startswith("nan:"):
        m = _NAN_PAYLOAD_RE.match(body)
        if m is None:
            raise ValueError(f"malformed NaN literal {text!r}")
        payload = int(m[1].replace("_", ""), 16)
        if not 0 < payload < 1 << mbits:
            raise ValueError(f"NaN payload out of range for {type_}: {text!r}")
        return sign_bit | exp_all | payload
    hexadecimal = body.startswith("0x")
    m = (_HEX_FLOAT_RE if hexadecimal else _DEC_FLOAT_RE).match(body)
    if m is None:
        raise ValueError(f"malformed float literal {text!r}")
    int_part = m[1].replace("_", "")
    frac = (m[2] or "").replace("_", "")
    exp = int((m[3] or "0").replace("_", ""))
    literal = (int_part, frac, exp, hexadecimal)
    bits = _float_fast(literal, type_) if fast else None
    if bits is None:
        bits = _float_exact(literal, mbits, ebits)
    if bits is None:
        raise ValueError(f"{type_} constant out of range: {text!r}")
    return sign_bit | bits


# An unsigned float literal: (integer digits, fraction digits, exponent, is hexadecimal).
_FloatLiteral = tuple[str, str, int, bool]


def _float_fast(literal: _FloatLiteral, type_: str) -> int | None:
    """Bits via Python's correctly rounded ``float``/``float.fromhex``, or None if unsure.

    f64 is exact.  f32 is taken only when the f64 value is itself an f32 value: the true
    value is then within half an f64 ulp of it, far from any f32 rounding boundary, so there
    is no double rounding.  Anything else (and overflow) goes to :func:`_float_exact`.
    """
    int_part, frac, exp, hexadecimal = literal
    try:
        if hexadecimal:
            d = float.fromhex(f"0x{int_part}.{frac or '0'}p{exp}")
        else:
            d = float(f"{int_part}.{frac or '0'}e{exp}")
    except OverflowError:
        return None
    if d == _INF:
        return None
    if type_ == "f64":
        return int.from_bytes(struct.pack("<d", d), "little")
    try:
        packed = struct.pack("<f", d)
    except OverflowError:
        return None
    if struct.unpack("<f", packed)[0] != d:
        return None
    return int.from_bytes(packed, "little")


def _float_exact(literal: _FloatLiteral, mbits: int, ebits: int) -> int | None:
    """Bits of the (unsigned) literal by exact rational rounding; None on overflow."""
    int_part, frac, exp, hexadecimal = literal
    if hexadecimal:
        num = int(int_part + frac, 16)
        exp2 = exp - 4 * len(frac)
        if num == 0 or num.bit_length() + exp2 < -2000:
            return 0
        if num.bit_length() + exp2 > 2000:
            return None
        den = 1
        if exp2 >= 0:
            num <<= exp2
        else:
            den <<= -exp2
    else:
        digits = (int_part + frac).lstrip("0")
        exp10 = exp - len(frac)
        if not digits or len(digits) + exp10 < -400:
            return 0
        if len(digits) + exp10 > 400:
            return None
        num = int(digits)
        den = 1
        if exp10 >= 0:
            num *= 10**exp10
        else:
            den = 10**-exp10
    return _round_to_bits(num, den, mbits, ebits)


# --------------------------------------------------------------------------------------------
# Script data model


@dataclass(slots=True)
class WastModule:
    """A module in a script.

    ``form`` is how its contents are given:

    * ``"text"``: ``text`` is the WAT source, exactly the source span of the ``(module ...)``
      form (for a ``(module definition ...)`` the ``definition`` keyword is blanked out with
      spaces, so offsets and lines are unchanged and ``wat2wasm`` accepts it);
    * ``"binary"``: ``binary`` holds the concatenated strings of ``(module binary ...)``;
    * ``"quote"``: ``quote`` holds the concatenated strings of ``(module quote ...)``, decoded
      as UTF-8 with ``surrogateescape`` (encode back the same way for the raw bytes);
    * ``"instance"``: ``(module instance $I $M)`` makes instance ``name`` of the module
      definition ``instance_of`` (None: the most recent module; a single name is the
      instance's own name, as in the reference interpreter's grammar).

    ``definition`` is True for ``(module definition $M? ...)`` (Wasm 3.0 scripts): the module
    is only defined, not instantiated; its contents are still in one of the forms above.
    """

    form: str
    name: str | None
    line: int
    path: str = ""
    definition: bool = False
    text: str | None = None
    binary: bytes | None = None
    quote: str | None = None
    instance_of: str | None = None

    @property
    def quote_bytes(self) -> bytes | None:
        """The raw bytes of a quote module (they need not be valid UTF-8)."""
        return None if self.quote is None else self.quote.encode("utf-8", "surrogateescape")


@dataclass(frozen=True, slots=True)
class Action:
    """``(invoke $M? "name" arg*)`` or ``(get $M? "name")``."""

    kind: str
    module: str | None
    name: str
    args: tuple[Value, ...]
    line: int


@dataclass(slots=True)
class WastCommand:
    """A script command.

    ``kind`` is its head keyword (``module``, ``register``, ``invoke``, ``get``,
    ``assert_return``, ``assert_trap``, ``assert_malformed``, ``thread``, ``wait`` ...).

    * ``module``: the module of ``module`` commands and of assertions on a module;
    * ``action``: for ``invoke``/``get`` and assertions on an action;
    * ``expected``: the results of ``assert_return``;
    * ``message``: the failure text of ``assert_*`` (None if the assertion has none);
    * ``name``: the module of ``register`` / the id of ``thread``, ``wait``, ``script``,
      ``input``, ``output``;
    * ``register_as``: the import name of ``register``;
    * ``file``: the file name of ``input`` / ``output``;
    * ``shared``: the modules shared into a ``thread``;
    * ``commands``: the commands nested in ``thread`` / ``script``;
    * ``text``: the exact source text of the command; ``sexpr`` its s-expression.
    """

    kind: str
    line: int
    path: str
    text: str
    sexpr: SList
    module: WastModule | None = None
    action: Action | None = None
    expected: tuple[Expected, ...] = ()
    message: str | None = None
    name: str | None = None
    register_as: str | None = None
    file: str | None = None
    shared: tuple[str, ...] = ()
    commands: tuple[WastCommand, ...] = ()


# --------------------------------------------------------------------------------------------
# Script reader

_ACTION_KINDS: Final = frozenset({"invoke", "get"})


def _is_id(node: SExpr | None) -> bool:
    return isinstance(node, Atom) and node.text.startswith("$") and len(node.text) > 1


class _Reader:
    """Turns top-level s-expressions into commands; one per parsed file."""

    def __init__(self, source: str, path: str) -> None:
        self.source = source
        self.path = path

    def error(self, node: SExpr, message: str) -> WastSyntaxError:
        return WastSyntaxError(message, self.path, node.line)

    def utf8(self, node: Str, what: str) -> str:
        try:
            return node.value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self.error(node, f"{what} is not valid UTF-8: {node.value!r}") from exc

    # ---- commands

    def commands(self, nodes: Iterable[SExpr]) -> list[WastCommand]:
        out = []
        for node in nodes:
            if isinstance(node, SList) and node.annotation:
                continue
            if not isinstance(node, SList):
                raise self.error(node, "expected a command '(...)'")
            out.append(self.command(node))
        return out

    def command(self, sl: SList) -> WastCommand:
        kind = sl.keyword
        if kind is None:
            raise self.error(sl, "a command must start with a keyword")
        cmd = WastCommand(kind, sl.line, self.path, self.source[sl.start : sl.end], sl)
        args = sl.plain()[1:]
        if kind == "module":
            cmd.module = self.module(sl)
        elif kind in _ACTION_KINDS:
            cmd.action = self.action(sl)
        elif kind == "register":
            if not args or not isinstance(args[0], Str):
                raise self.error(sl, "register: expected a name string")
            cmd.register_as = self.utf8(args[0], "register name")
            if len(args) > 2 or (len(args) == 2 and not _is_id(args[1])):
                raise self.error(sl, "register: expected '(register \"name\" $module?)'")
            cmd.name = args[1].text if len(args) == 2 and isinstance(args[1], Atom) else None
        elif kind.startswith("assert_"):
            self.assertion(cmd, args)
        elif kind == "thread":
            rest = args
            if rest and _is_id(rest[0]):
                cmd.name = self.atom_text(rest[0])
                rest = rest[1:]
            if rest and isinstance(rest[0], SList) and rest[0].keyword == "shared":
                names = []
                for item in rest[0].plain()[1:]:
                    parts = item.plain() if isinstance(item, SList) else []
                    if (
                        len(parts) != 2
                        or not isinstance(parts[0], Atom)
                        or parts[0].text != "module"
                        or not _is_id(parts[1])
                    ):
                        raise self.error(item, "thread: expected '(shared (module $id)*)'")
                    names.append(self.atom_text(parts[1]))
                cmd.shared = tuple(names)
                rest = rest[1:]
            cmd.commands = tuple(self.commands(rest))
        elif kind == "wait":
            if len(args) != 1 or not _is_id(args[0]):
                raise self.error(sl, "wait: expected '(wait $thread)'")
            cmd.name = self.atom_text(args[0])
        elif kind == "script":
            rest = args
            if rest and _is_id(rest[0]):
                cmd.name = self.atom_text(rest[0])
                rest = rest[1:]
            cmd.commands = tuple(self.commands(rest))
        elif kind in ("input", "output"):
            rest = args
            if rest and _is_id(rest[0]):
                cmd.name = self.atom_text(rest[0])
                rest = rest[1:]
            if len(rest) > 1 or (rest and not isinstance(rest[0], Str)):
                raise self.error(sl, f"{kind}: expected '({kind} $id? \"file\")'")
            if rest and isinstance(rest[0], Str):
                cmd.file = self.utf8(rest[0], "file name")
            elif kind == "input":
                raise self.error(sl, "input: missing file name")
        else:
            raise self.error(sl, f"unknown command {kind!r}")
        return cmd

    def atom_text(self, node: SExpr) -> str:
        if not isinstance(node, Atom):
            raise self.error(node, "expected an atom")
        return node.text

    def assertion(self, cmd: WastCommand, args: list[SExpr]) -> None:
        if not args or not isinstance(args[0], SList):
            raise self.error(cmd.sexpr, f"{cmd.kind}: expected a module or an action")
        target = args[0]
        rest = args[1:]
        if target.keyword == "module":
            cmd.module = self.module(target)
        elif target.keyword in _ACTION_KINDS:
            cmd.action = self.action(target)
        else:
            raise self.error(target, f"{cmd.kind}: expected a module or an action")
        if cmd.kind == "assert_return":
            if cmd.action is None:
                raise self.error(target, "assert_return: expected an action")
            cmd.expected = tuple(self.expected(node) for node in rest)
            return
        if rest and isinstance(rest[-1], Str):
            cmd.message = self.utf8(rest[-1], "failure message")
            rest = rest[:-1]
        if rest:
            raise self.error(rest[0], f"{cmd.kind}: unexpected {type(rest[0]).__name__}")

    # ---- modules

    def module(self, sl: SList) -> WastModule:
        items = sl.plain()
        i = 1
        definition = False
        blank: Atom | None = None
        if i < len(items) and isinstance(items[i], Atom):
            word = items[i]
            assert isinstance(word, Atom)
            if word.text == "instance":
                return self.instance(sl)
            if word.text == "definition":
                definition = True
                blank = word
                i += 1
        name: str | None = None
        if i < len(items) and _is_id(items[i]):
            name = self.atom_text(items[i])
            i += 1
        mod = WastModule("text", name, sl.line, self.path, definition)
        mode = items[i] if i < len(items) else None
        if isinstance(mode, Atom) and mode.text in ("binary", "quote"):
            parts = items[i + 1 :]
            data = bytearray()
            for part in parts:
                if not isinstance(part, Str):
                    raise self.error(part, f"module {mode.text}: expected strings only")
                data += part.value
            if mode.text == "binary":
                mod.form = "binary"
                mod.binary = bytes(data)
            else:
                mod.form = "quote"
                mod.quote = data.decode("utf-8", "surrogateescape")
            return mod
        text = self.source[sl.start : sl.end]
        if blank is not None:
            a, b = blank.start - sl.start, blank.end - sl.start
            text = text[:a] + " " * (b - a) + text[b:]
        mod.text = text
        return mod

    def instance(self, sl: SList) -> WastModule:
        names = sl.plain()[2:]
        if len(names) > 2 or not all(_is_id(n) for n in names):
            raise self.error(sl, "expected '(module instance $instance? $definition?)'")
        texts = [self.atom_text(n) for n in names]
        return WastModule(
            "instance",
            texts[0] if texts else None,
            sl.line,
            self.path,
            instance_of=texts[1] if len(texts) > 1 else None,
        )

    # ---- actions and values

    def action(self, sl: SList) -> Action:
        kind = sl.keyword
        assert kind is not None
        items = sl.plain()[1:]
        module: str | None = None
        if items and _is_id(items[0]):
            module = self.atom_text(items[0])
            items = items[1:]
        if not items or not isinstance(items[0], Str):
            raise self.error(sl, f"{kind}: expected an export name string")
        name = self.utf8(items[0], "export name")
        args = tuple(self.value(node) for node in items[1:])
        if kind == "get" and args:
            raise self.error(sl, "get: takes no arguments")
        return Action(kind, module, name, args, sl.line)

    def value(self, node: SExpr) -> Value:
        result = self.expected(node, patterns=False)
        assert not isinstance(result, (NanPattern, Either))
        return result

    def expected(self, node: SExpr, patterns: bool = True) -> Expected:
        head = node.keyword if isinstance(node, SList) else None
        if not isinstance(node, SList) or head is None:
            raise self.error(node, "expected a constant '(type.const ...)'")
        args = node.plain()[1:]
        if head in ("i32.const", "i64.const", "f32.const", "f64.const"):
            type_ = head[:3]
            if len(args) != 1:
                raise self.error(node, f"{head}: expected one literal")
            return self.number(type_, args[0], patterns)
        if head == "v128.const":
            return self.v128(node, args, patterns)
        if head == "ref" or head.startswith("ref."):
            if len(args) > 1:
                raise self.error(node, f"{head}: too many arguments")
            if not args:
                return RefValue(head, None)
            arg = self.atom_text(args[0])
            if head != "ref.null" and _NAT_RE.match(arg):
                return RefValue(head, int(arg.replace("_", ""), 0))
            return RefValue(head, arg)
        if head == "either" and patterns:
            if not args:
                raise self.error(node, "either: expected at least one result")
            return Either(tuple(self.expected(a) for a in args))
        raise self.error(node, f"unknown constant {head!r}")

    def number(self, type_: str, node: SExpr, patterns: bool) -> NumValue | NanPattern:
        text = self.atom_text(node)
        if type_[0] == "f" and text in ("nan:canonical", "nan:arithmetic"):
            if not patterns:
                raise self.error(node, f"{text} is a result pattern, not a constant")
            return NanPattern(type_, text[4:])
        try:
            if type_[0] == "i":
                return NumValue(type_, parse_int_bits(text, _INT_WIDTHS[type_]))
            return NumValue(type_, parse_float_bits(text, type_))
        except ValueError as exc:
            raise self.error(node, str(exc)) from exc

    def v128(self, node: SList, args: list[SExpr], patterns: bool) -> V128Value:
        if not args:
            raise self.error(node, "v128.const: missing lane shape")
        shape = self.atom_text(args[0])
        if shape not in _V128_SHAPES:
            raise self.error(node, f"v128.const: unknown shape {shape!r}")
        lane_type, _, count_text = shape.partition("x")
        count = int(count_text)
        width = 128 // count
        lanes_nodes = args[1:]
        if len(lanes_nodes) != count:
            raise self.error(
                node, f"v128.const {shape}: expected {count} lanes, got {len(lanes_nodes)}"
            )
        lanes: list[NumValue | NanPattern] = []
        for lane in lanes_nodes:
            if lane_type[0] == "f":
                lanes.append(self.number(lane_type, lane, patterns))
            else:
                text = self.atom_text(lane)
                try:
                    lanes.append(NumValue(lane_type, parse_int_bits(text, width)))
                except ValueError as exc:
                    raise self.error(lane, str(exc)) from exc
        data: bytes | None = None
        if all(isinstance(lane, NumValue) for lane in lanes):
            data = b"".join(
                lane.bits.to_bytes(width // 8, "little")
                for lane in lanes
                if isinstance(lane, NumValue)
            )
        return V128Value(shape, tuple(lanes), data)


_MODULE_FIELDS: Final = frozenset(
    {
        "type",
        "rec",
        "import",
        "func",
        "table",
        "memory",
        "global",
        "export",
        "start",
        "elem",
        "data",
        "tag",
    }
)


def parse_wast(text: str, path: str = "") -> list[WastCommand]:
    """Parse a ``.wast`` script into its commands.  ``path`` is used in error messages.

    A script made only of module fields (``(func) (memory 0)``, as in ``inline-module.wast``)
    is one inline text module: a single ``module`` command whose text is the whole script.
    """
    top = parse_sexprs(text, path)
    forms = [n for n in top if not (isinstance(n, SList) and n.annotation)]
    if forms and all(isinstance(n, SList) and n.keyword in _MODULE_FIELDS for n in forms):
        first = forms[0]
        whole = SList(top, first.line, 0, len(text))
        mod = WastModule("text", None, first.line, path, text=text)
        return [WastCommand("module", first.line, path, text, whole, module=mod)]
    return _Reader(text, path).commands(top)


def parse_wast_file(path: str | os.PathLike[str]) -> list[WastCommand]:
    """Read (as UTF-8) and parse a ``.wast`` file."""
    p = Path(path)
    return parse_wast(p.read_text(encoding="utf-8"), str(p))


def iter_modules(commands: Iterable[WastCommand]) -> Iterator[tuple[WastCommand, WastModule]]:
    """Yield ``(command, module)`` for every module, in source order, including modules in
    assertions and in nested ``thread`` / ``script`` blocks (``command`` is the innermost
    command holding the module)."""
    stack: list[Iterator[WastCommand]] = [iter(commands)]
    while stack:
        cmd = next(stack[-1], None)
        if cmd is None:
            stack.pop()
            continue
        if cmd.module is not None:
            yield cmd, cmd.module
        if cmd.commands:
            stack.append(iter(cmd.commands))


def spec_files(root: str | os.PathLike[str]) -> list[Path]:
    """All ``.wast`` files under ``root`` (recursively), sorted by path."""
    return sorted(p for p in Path(root).rglob("*.wast") if p.is_file())


# --------------------------------------------------------------------------------------------
# Module bytes (wat2wasm with an on-disk cache)


def cache_dir() -> Path:
    """``$WASYNC_TEST_CACHE/wast`` (default ``<repo>/.cache/wast``)."""
    base = os.environ.get("WASYNC_TEST_CACHE")
    return (Path(base) if base else REPO_ROOT / ".cache") / "wast"


@lru_cache(maxsize=1)
def _wasmtime_version() -> str:
    try:
        return metadata.version("wasmtime")
    except metadata.PackageNotFoundError:  # pragma: no cover - wasmtime is a dependency
        return str(getattr(wasmtime, "__version__", "unknown"))


def _cache_write(target: Path, data: bytes) -> None:
    """Best-effort :func:`~tests.support.corpus.atomic_write`: the cache is only an
    optimisation (read-only checkout, full disk, ...)."""
    with contextlib.suppress(OSError):
        atomic_write(target, data)


# Characters the ``wast`` crate behind ``wasmtime.wat2wasm`` refuses in source text
# ("likely-confusing unicode character"), although the spec allows them in strings.
_CONFUSING_RE: Final = re.compile("[\u202a\u202b\u202d\u202e\u2066-\u2069\u206c]")
_FOLDED_TRY_RE: Final = re.compile(r"\(try(?=[ \t\n\r()]|\(;)")


def wat_for_wasmtime(text: str) -> str:
    """Rewrite a module's WAT so that ``wasmtime.wat2wasm`` accepts it, keeping its meaning
    and its line structure:

    * the bidi-control characters the ``wast`` crate rejects (they can only occur inside
      strings and comments) become ``\\u{...}`` escapes;
    * the folded legacy-exceptions form ``(try bt (do i*) (catch $t i*)* (catch_all i*)?)`` /
      ``(try bt (do i*) (delegate l))``, which that parser lacks, is unfolded into the flat
      form ``try bt i* catch $t i* ... end`` / ``try bt i* delegate l`` that it has.
    """
    text = _CONFUSING_RE.sub(lambda m: f"\\u{{{ord(m.group()):x}}}", text)
    if _FOLDED_TRY_RE.search(text) is None:
        return text
    edits: list[tuple[int, int, str]] = []  # (start, end, replacement), non-overlapping
    pending: list[SExpr] = list(parse_sexprs(text))
    while pending:
        node = pending.pop()
        if not isinstance(node, SList):
            continue
        pending.extend(node.items)
        parts = node.plain()
        clauses = [p for p in parts if isinstance(p, SList) and p.keyword in _TRY_CLAUSES]
        if node.keyword != "try" or not any(c.keyword == "do" for c in clauses):
            continue
        edits.append((node.start, node.start + 1, " "))
        delegate = False
        for clause in clauses:
            head = clause.plain()[0]
            assert isinstance(head, Atom)
            edits.append((clause.start, clause.start + 1, " "))
            if clause.keyword == "do":
                edits.append((head.start, head.end, " " * (head.end - head.start)))
            delegate = delegate or clause.keyword == "delegate"
            edits.append((clause.end - 1, clause.end, " "))
        edits.append((node.end - 1, node.end, " " if delegate else " end "))
    out = []
    pos = 0
    for start, end, replacement in sorted(edits):
        out.append(text[pos:start])
        out.append(replacement)
        pos = end
    out.append(text[pos:])
    return "".join(out)


_TRY_CLAUSES: Final = frozenset({"do", "catch", "catch_all", "delegate"})


def _wat2wasm_cached(text: str) -> bytes | str:
    """The binary for ``text``, or wat2wasm's error message.  Both outcomes are cached."""
    key = hashlib.sha256(
        f"wasmtime {_wasmtime_version()}\0".encode() + text.encode("utf-8", "surrogatepass")
    ).hexdigest()
    folder = cache_dir() / key[:2]
    ok_path = folder / f"{key}.wasm"
    err_path = folder / f"{key}.err"
    try:
        return ok_path.read_bytes()
    except OSError:
        pass
    try:
        return err_path.read_text(encoding="utf-8")
    except OSError:
        pass
    try:
        wasm = bytes(wasmtime.wat2wasm(text))
    except wasmtime.WasmtimeError as exc:
        message = str(exc) or type(exc).__name__
        _cache_write(err_path, message.encode("utf-8"))
        return message
    _cache_write(ok_path, wasm)
    return wasm


def module_bytes(mod: WastModule) -> bytes | None:
    """The binary of a module.

    * ``binary``: its bytes (whatever they are: malformed ones are test input);
    * ``text``: ``wasmtime.wat2wasm`` of its text (after :func:`wat_for_wasmtime`; cached on
      disk, see :func:`cache_dir`);
      raises :class:`WatConversionError` (with file and line) if the text does not parse;
    * ``quote`` and ``instance``: None (quote modules test the text format; instances have no
      module of their own).
    """
    if mod.form == "binary":
        return mod.binary
    if mod.form != "text":
        return None
    assert mod.text is not None
    result = _wat2wasm_cached(wat_for_wasmtime(mod.text))
    if isinstance(result, str):
        raise WatConversionError(f"wat2wasm failed: {result}", mod.path, mod.line)
    return result
