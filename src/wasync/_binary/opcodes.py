"""The opcode table: the single source of truth for every WebAssembly instruction.

Each row of ``_TABLE`` gives one instruction of Wasm 3.0 (with threads, legacy
exception handling and wide arithmetic):

``code | name | immediates | stack effect | proposal``

* ``code`` is the opcode byte, or ``PREFIX:SUBCODE`` for prefixed instructions
  (the sub-code is a u32 LEB128 after the prefix byte).
* ``immediates`` lists the immediate operands by kind (see :class:`Imm`), in
  encoding order.
* ``stack effect`` is ``params -> results`` for instructions with a fixed type,
  or ``@rule`` for instructions typed by a rule of the validation algorithm
  (their types depend on immediates, on the module or on the operand stack;
  :mod:`wasync._ir.stack` implements each rule). In fixed effects ``A`` stands
  for the address type (``i32`` or ``i64``) of the instruction's memory,
  ``ref`` for any reference and ``any`` for any value; these only ever appear
  as popped operands, except ``A`` which :mod:`wasync._ir.stack` resolves.
* ``proposal`` names the feature that introduced the instruction.

Decoding, encoding, printing and stack typing all derive from this table;
nothing else in wasync lists opcodes.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field

from wasync._binary.leb import uleb

__all__ = [
    "OPS",
    "PREFIXES",
    "U32_IMMS",
    "Imm",
    "Op",
    "Shape",
    "op_by_code",
    "ops_named",
]


class Imm(enum.Enum):
    """Kinds of immediate operands."""

    BLOCKTYPE = "blocktype"  # 0x40, a value type, or an s33 type index
    LABEL = "label"  # u32 label index
    LABELS = "labels"  # br_table: vec(label) then the default label
    FUNC = "func"  # u32 function index
    TYPE = "type"  # u32 type index
    TABLE = "table"  # u32 table index
    MEMORY = "memory"  # u32 memory index
    LOCAL = "local"  # u32 local index
    GLOBAL = "global"  # u32 global index
    TAG = "tag"  # u32 tag index
    ELEM = "elem"  # u32 element segment index
    DATA = "data"  # u32 data segment index
    FIELD = "field"  # u32 struct field index
    COUNT = "count"  # u32 count (array.new_fixed)
    MEMARG = "memarg"  # alignment flags, optional memory index, u64 offset
    LANE = "lane"  # one lane-index byte
    SHUFFLE = "shuffle"  # sixteen lane-index bytes
    I32 = "i32"  # s32
    I64 = "i64"  # s64
    F32 = "f32"  # four bytes, little endian (kept as raw bits)
    F64 = "f64"  # eight bytes, little endian (kept as raw bits)
    V128 = "v128"  # sixteen bytes
    HEAPTYPE = "heaptype"  # s33 heap type, non-null reference (ref.test/ref.cast)
    NULLHEAPTYPE = "nullheaptype"  # same encoding, nullable reference
    VALTYPES = "valtypes"  # vec(valtype) (typed select)
    CATCHES = "catches"  # try_table: vec(catch clause)
    CASTFLAGS = "castflags"  # br_on_cast: one flags byte (bit 0: source nullable, bit 1: target)
    ZERO = "zero"  # a reserved 0x00 byte (atomic.fence)


# Every immediate whose encoding is a single u32 LEB128 index or count.
U32_IMMS = frozenset(
    {
        Imm.LABEL,
        Imm.FUNC,
        Imm.TYPE,
        Imm.TABLE,
        Imm.MEMORY,
        Imm.LOCAL,
        Imm.GLOBAL,
        Imm.TAG,
        Imm.ELEM,
        Imm.DATA,
        Imm.FIELD,
        Imm.COUNT,
    }
)


class Shape(enum.IntEnum):
    """How an instruction's immediates are laid out, for fast dispatch."""

    NONE = 0  # no immediates
    U32 = 1  # one u32
    U32_U32 = 2  # two u32s (call_indirect, struct.get, memory.copy, ...)
    MEMARG = 3
    I32 = 4
    I64 = 5
    F32 = 6
    F64 = 7
    BLOCK = 8  # blocktype, opens a block
    END = 9  # end
    BR_TABLE = 10
    OTHER = 11  # decoded immediate by immediate


PREFIXES = frozenset({0xFB, 0xFC, 0xFD, 0xFE})


@dataclass(frozen=True, eq=False, slots=True)
class Op:
    """One instruction of the table. Compared by identity: there is one per opcode."""

    id: int  # dense index into OPS
    name: str
    prefix: int | None  # 0xFB, 0xFC, 0xFD, 0xFE, or None for one-byte opcodes
    code: int
    imms: tuple[Imm, ...]
    params: tuple[str, ...] | None  # fixed effect, or None when typed by `rule`
    results: tuple[str, ...] | None
    rule: str | None
    proposal: str
    shape: Shape
    opcode_bytes: bytes = field(repr=False)  # canonical encoding of the opcode

    @property
    def mnemonic(self) -> str:
        """The name as printed in the text format."""
        return self.name

    @property
    def opens_block(self) -> bool:
        return self.shape is Shape.BLOCK or self.rule == "try_table"

    def __repr__(self) -> str:
        code = f"0x{self.code:02X}" if self.prefix is None else f"0x{self.prefix:02X} {self.code}"
        return f"<Op {self.name} {code}>"


_TABLE = """\
0x00     | unreachable                         |                                   | @unreachable               | mvp
0x01     | nop                                 |                                   | ->                         | mvp
0x02     | block                               | blocktype                         | @block                     | mvp
0x03     | loop                                | blocktype                         | @loop                      | mvp
0x04     | if                                  | blocktype                         | @if                        | mvp
0x05     | else                                |                                   | @else                      | mvp
0x06     | try                                 | blocktype                         | @try                       | legacy-exceptions
0x07     | catch                               | tag                               | @catch                     | legacy-exceptions
0x08     | throw                               | tag                               | @throw                     | exceptions
0x09     | rethrow                             | label                             | @rethrow                   | legacy-exceptions
0x0A     | throw_ref                           |                                   | @throw_ref                 | exceptions
0x0B     | end                                 |                                   | @end                       | mvp
0x0C     | br                                  | label                             | @br                        | mvp
0x0D     | br_if                               | label                             | @br_if                     | mvp
0x0E     | br_table                            | labels                            | @br_table                  | mvp
0x0F     | return                              |                                   | @return                    | mvp
0x10     | call                                | func                              | @call                      | mvp
0x11     | call_indirect                       | type table                        | @call_indirect             | mvp
0x12     | return_call                         | func                              | @return_call               | tail-call
0x13     | return_call_indirect                | type table                        | @return_call_indirect      | tail-call
0x14     | call_ref                            | type                              | @call_ref                  | function-references
0x15     | return_call_ref                     | type                              | @return_call_ref           | function-references
0x18     | delegate                            | label                             | @delegate                  | legacy-exceptions
0x19     | catch_all                           |                                   | @catch_all                 | legacy-exceptions
0x1A     | drop                                |                                   | @drop                      | mvp
0x1B     | select                              |                                   | @select                    | mvp
0x1C     | select                              | valtypes                          | @select_t                  | reference-types
0x1F     | try_table                           | blocktype catches                 | @try_table                 | exceptions
0x20     | local.get                           | local                             | @local.get                 | mvp
0x21     | local.set                           | local                             | @local.set                 | mvp
0x22     | local.tee                           | local                             | @local.tee                 | mvp
0x23     | global.get                          | global                            | @global.get                | mvp
0x24     | global.set                          | global                            | @global.set                | mvp
0x25     | table.get                           | table                             | @table.get                 | reference-types
0x26     | table.set                           | table                             | @table.set                 | reference-types
0x28     | i32.load                            | memarg                            | A -> i32                   | mvp
0x29     | i64.load                            | memarg                            | A -> i64                   | mvp
0x2A     | f32.load                            | memarg                            | A -> f32                   | mvp
0x2B     | f64.load                            | memarg                            | A -> f64                   | mvp
0x2C     | i32.load8_s                         | memarg                            | A -> i32                   | mvp
0x2D     | i32.load8_u                         | memarg                            | A -> i32                   | mvp
0x2E     | i32.load16_s                        | memarg                            | A -> i32                   | mvp
0x2F     | i32.load16_u                        | memarg                            | A -> i32                   | mvp
0x30     | i64.load8_s                         | memarg                            | A -> i64                   | mvp
0x31     | i64.load8_u                         | memarg                            | A -> i64                   | mvp
0x32     | i64.load16_s                        | memarg                            | A -> i64                   | mvp
0x33     | i64.load16_u                        | memarg                            | A -> i64                   | mvp
0x34     | i64.load32_s                        | memarg                            | A -> i64                   | mvp
0x35     | i64.load32_u                        | memarg                            | A -> i64                   | mvp
0x36     | i32.store                           | memarg                            | A i32 ->                   | mvp
0x37     | i64.store                           | memarg                            | A i64 ->                   | mvp
0x38     | f32.store                           | memarg                            | A f32 ->                   | mvp
0x39     | f64.store                           | memarg                            | A f64 ->                   | mvp
0x3A     | i32.store8                          | memarg                            | A i32 ->                   | mvp
0x3B     | i32.store16                         | memarg                            | A i32 ->                   | mvp
0x3C     | i64.store8                          | memarg                            | A i64 ->                   | mvp
0x3D     | i64.store16                         | memarg                            | A i64 ->                   | mvp
0x3E     | i64.store32                         | memarg                            | A i64 ->                   | mvp
0x3F     | memory.size                         | memory                            | -> A                       | mvp
0x40     | memory.grow                         | memory                            | A -> A                     | mvp
0x41     | i32.const                           | i32                               | -> i32                     | mvp
0x42     | i64.const                           | i64                               | -> i64                     | mvp
0x43     | f32.const                           | f32                               | -> f32                     | mvp
0x44     | f64.const                           | f64                               | -> f64                     | mvp
0x45     | i32.eqz                             |                                   | i32 -> i32                 | mvp
0x46     | i32.eq                              |                                   | i32 i32 -> i32             | mvp
0x47     | i32.ne                              |                                   | i32 i32 -> i32             | mvp
0x48     | i32.lt_s                            |                                   | i32 i32 -> i32             | mvp
0x49     | i32.lt_u                            |                                   | i32 i32 -> i32             | mvp
0x4A     | i32.gt_s                            |                                   | i32 i32 -> i32             | mvp
0x4B     | i32.gt_u                            |                                   | i32 i32 -> i32             | mvp
0x4C     | i32.le_s                            |                                   | i32 i32 -> i32             | mvp
0x4D     | i32.le_u                            |                                   | i32 i32 -> i32             | mvp
0x4E     | i32.ge_s                            |                                   | i32 i32 -> i32             | mvp
0x4F     | i32.ge_u                            |                                   | i32 i32 -> i32             | mvp
0x50     | i64.eqz                             |                                   | i64 -> i32                 | mvp
0x51     | i64.eq                              |                                   | i64 i64 -> i32             | mvp
0x52     | i64.ne                              |                                   | i64 i64 -> i32             | mvp
0x53     | i64.lt_s                            |                                   | i64 i64 -> i32             | mvp
0x54     | i64.lt_u                            |                                   | i64 i64 -> i32             | mvp
0x55     | i64.gt_s                            |                                   | i64 i64 -> i32             | mvp
0x56     | i64.gt_u                            |                                   | i64 i64 -> i32             | mvp
0x57     | i64.le_s                            |                                   | i64 i64 -> i32             | mvp
0x58     | i64.le_u                            |                                   | i64 i64 -> i32             | mvp
0x59     | i64.ge_s                            |                                   | i64 i64 -> i32             | mvp
0x5A     | i64.ge_u                            |                                   | i64 i64 -> i32             | mvp
0x5B     | f32.eq                              |                                   | f32 f32 -> i32             | mvp
0x5C     | f32.ne                              |                                   | f32 f32 -> i32             | mvp
0x5D     | f32.lt                              |                                   | f32 f32 -> i32             | mvp
0x5E     | f32.gt                              |                                   | f32 f32 -> i32             | mvp
0x5F     | f32.le                              |                                   | f32 f32 -> i32             | mvp
0x60     | f32.ge                              |                                   | f32 f32 -> i32             | mvp
0x61     | f64.eq                              |                                   | f64 f64 -> i32             | mvp
0x62     | f64.ne                              |                                   | f64 f64 -> i32             | mvp
0x63     | f64.lt                              |                                   | f64 f64 -> i32             | mvp
0x64     | f64.gt                              |                                   | f64 f64 -> i32             | mvp
0x65     | f64.le                              |                                   | f64 f64 -> i32             | mvp
0x66     | f64.ge                              |                                   | f64 f64 -> i32             | mvp
0x67     | i32.clz                             |                                   | i32 -> i32                 | mvp
0x68     | i32.ctz                             |                                   | i32 -> i32                 | mvp
0x69     | i32.popcnt                          |                                   | i32 -> i32                 | mvp
0x6A     | i32.add                             |                                   | i32 i32 -> i32             | mvp
0x6B     | i32.sub                             |                                   | i32 i32 -> i32             | mvp
0x6C     | i32.mul                             |                                   | i32 i32 -> i32             | mvp
0x6D     | i32.div_s                           |                                   | i32 i32 -> i32             | mvp
0x6E     | i32.div_u                           |                                   | i32 i32 -> i32             | mvp
0x6F     | i32.rem_s                           |                                   | i32 i32 -> i32             | mvp
0x70     | i32.rem_u                           |                                   | i32 i32 -> i32             | mvp
0x71     | i32.and                             |                                   | i32 i32 -> i32             | mvp
0x72     | i32.or                              |                                   | i32 i32 -> i32             | mvp
0x73     | i32.xor                             |                                   | i32 i32 -> i32             | mvp
0x74     | i32.shl                             |                                   | i32 i32 -> i32             | mvp
0x75     | i32.shr_s                           |                                   | i32 i32 -> i32             | mvp
0x76     | i32.shr_u                           |                                   | i32 i32 -> i32             | mvp
0x77     | i32.rotl                            |                                   | i32 i32 -> i32             | mvp
0x78     | i32.rotr                            |                                   | i32 i32 -> i32             | mvp
0x79     | i64.clz                             |                                   | i64 -> i64                 | mvp
0x7A     | i64.ctz                             |                                   | i64 -> i64                 | mvp
0x7B     | i64.popcnt                          |                                   | i64 -> i64                 | mvp
0x7C     | i64.add                             |                                   | i64 i64 -> i64             | mvp
0x7D     | i64.sub                             |                                   | i64 i64 -> i64             | mvp
0x7E     | i64.mul                             |                                   | i64 i64 -> i64             | mvp
0x7F     | i64.div_s                           |                                   | i64 i64 -> i64             | mvp
0x80     | i64.div_u                           |                                   | i64 i64 -> i64             | mvp
0x81     | i64.rem_s                           |                                   | i64 i64 -> i64             | mvp
0x82     | i64.rem_u                           |                                   | i64 i64 -> i64             | mvp
0x83     | i64.and                             |                                   | i64 i64 -> i64             | mvp
0x84     | i64.or                              |                                   | i64 i64 -> i64             | mvp
0x85     | i64.xor                             |                                   | i64 i64 -> i64             | mvp
0x86     | i64.shl                             |                                   | i64 i64 -> i64             | mvp
0x87     | i64.shr_s                           |                                   | i64 i64 -> i64             | mvp
0x88     | i64.shr_u                           |                                   | i64 i64 -> i64             | mvp
0x89     | i64.rotl                            |                                   | i64 i64 -> i64             | mvp
0x8A     | i64.rotr                            |                                   | i64 i64 -> i64             | mvp
0x8B     | f32.abs                             |                                   | f32 -> f32                 | mvp
0x8C     | f32.neg                             |                                   | f32 -> f32                 | mvp
0x8D     | f32.ceil                            |                                   | f32 -> f32                 | mvp
0x8E     | f32.floor                           |                                   | f32 -> f32                 | mvp
0x8F     | f32.trunc                           |                                   | f32 -> f32                 | mvp
0x90     | f32.nearest                         |                                   | f32 -> f32                 | mvp
0x91     | f32.sqrt                            |                                   | f32 -> f32                 | mvp
0x92     | f32.add                             |                                   | f32 f32 -> f32             | mvp
0x93     | f32.sub                             |                                   | f32 f32 -> f32             | mvp
0x94     | f32.mul                             |                                   | f32 f32 -> f32             | mvp
0x95     | f32.div                             |                                   | f32 f32 -> f32             | mvp
0x96     | f32.min                             |                                   | f32 f32 -> f32             | mvp
0x97     | f32.max                             |                                   | f32 f32 -> f32             | mvp
0x98     | f32.copysign                        |                                   | f32 f32 -> f32             | mvp
0x99     | f64.abs                             |                                   | f64 -> f64                 | mvp
0x9A     | f64.neg                             |                                   | f64 -> f64                 | mvp
0x9B     | f64.ceil                            |                                   | f64 -> f64                 | mvp
0x9C     | f64.floor                           |                                   | f64 -> f64                 | mvp
0x9D     | f64.trunc                           |                                   | f64 -> f64                 | mvp
0x9E     | f64.nearest                         |                                   | f64 -> f64                 | mvp
0x9F     | f64.sqrt                            |                                   | f64 -> f64                 | mvp
0xA0     | f64.add                             |                                   | f64 f64 -> f64             | mvp
0xA1     | f64.sub                             |                                   | f64 f64 -> f64             | mvp
0xA2     | f64.mul                             |                                   | f64 f64 -> f64             | mvp
0xA3     | f64.div                             |                                   | f64 f64 -> f64             | mvp
0xA4     | f64.min                             |                                   | f64 f64 -> f64             | mvp
0xA5     | f64.max                             |                                   | f64 f64 -> f64             | mvp
0xA6     | f64.copysign                        |                                   | f64 f64 -> f64             | mvp
0xA7     | i32.wrap_i64                        |                                   | i64 -> i32                 | mvp
0xA8     | i32.trunc_f32_s                     |                                   | f32 -> i32                 | mvp
0xA9     | i32.trunc_f32_u                     |                                   | f32 -> i32                 | mvp
0xAA     | i32.trunc_f64_s                     |                                   | f64 -> i32                 | mvp
0xAB     | i32.trunc_f64_u                     |                                   | f64 -> i32                 | mvp
0xAC     | i64.extend_i32_s                    |                                   | i32 -> i64                 | mvp
0xAD     | i64.extend_i32_u                    |                                   | i32 -> i64                 | mvp
0xAE     | i64.trunc_f32_s                     |                                   | f32 -> i64                 | mvp
0xAF     | i64.trunc_f32_u                     |                                   | f32 -> i64                 | mvp
0xB0     | i64.trunc_f64_s                     |                                   | f64 -> i64                 | mvp
0xB1     | i64.trunc_f64_u                     |                                   | f64 -> i64                 | mvp
0xB2     | f32.convert_i32_s                   |                                   | i32 -> f32                 | mvp
0xB3     | f32.convert_i32_u                   |                                   | i32 -> f32                 | mvp
0xB4     | f32.convert_i64_s                   |                                   | i64 -> f32                 | mvp
0xB5     | f32.convert_i64_u                   |                                   | i64 -> f32                 | mvp
0xB6     | f32.demote_f64                      |                                   | f64 -> f32                 | mvp
0xB7     | f64.convert_i32_s                   |                                   | i32 -> f64                 | mvp
0xB8     | f64.convert_i32_u                   |                                   | i32 -> f64                 | mvp
0xB9     | f64.convert_i64_s                   |                                   | i64 -> f64                 | mvp
0xBA     | f64.convert_i64_u                   |                                   | i64 -> f64                 | mvp
0xBB     | f64.promote_f32                     |                                   | f32 -> f64                 | mvp
0xBC     | i32.reinterpret_f32                 |                                   | f32 -> i32                 | mvp
0xBD     | i64.reinterpret_f64                 |                                   | f64 -> i64                 | mvp
0xBE     | f32.reinterpret_i32                 |                                   | i32 -> f32                 | mvp
0xBF     | f64.reinterpret_i64                 |                                   | i64 -> f64                 | mvp
0xC0     | i32.extend8_s                       |                                   | i32 -> i32                 | sign-extension
0xC1     | i32.extend16_s                      |                                   | i32 -> i32                 | sign-extension
0xC2     | i64.extend8_s                       |                                   | i64 -> i64                 | sign-extension
0xC3     | i64.extend16_s                      |                                   | i64 -> i64                 | sign-extension
0xC4     | i64.extend32_s                      |                                   | i64 -> i64                 | sign-extension
0xD0     | ref.null                            | heaptype                          | @ref.null                  | reference-types
0xD1     | ref.is_null                         |                                   | @ref.is_null               | reference-types
0xD2     | ref.func                            | func                              | @ref.func                  | reference-types
0xD3     | ref.eq                              |                                   | ref ref -> i32             | gc
0xD4     | ref.as_non_null                     |                                   | @ref.as_non_null           | function-references
0xD5     | br_on_null                          | label                             | @br_on_null                | function-references
0xD6     | br_on_non_null                      | label                             | @br_on_non_null            | function-references
0xFB:0   | struct.new                          | type                              | @struct.new                | gc
0xFB:1   | struct.new_default                  | type                              | @struct.new_default        | gc
0xFB:2   | struct.get                          | type field                        | @struct.get                | gc
0xFB:3   | struct.get_s                        | type field                        | @struct.get                | gc
0xFB:4   | struct.get_u                        | type field                        | @struct.get                | gc
0xFB:5   | struct.set                          | type field                        | @struct.set                | gc
0xFB:6   | array.new                           | type                              | @array.new                 | gc
0xFB:7   | array.new_default                   | type                              | @array.new_default         | gc
0xFB:8   | array.new_fixed                     | type count                        | @array.new_fixed           | gc
0xFB:9   | array.new_data                      | type data                         | @array.new_data            | gc
0xFB:10  | array.new_elem                      | type elem                         | @array.new_elem            | gc
0xFB:11  | array.get                           | type                              | @array.get                 | gc
0xFB:12  | array.get_s                         | type                              | @array.get                 | gc
0xFB:13  | array.get_u                         | type                              | @array.get                 | gc
0xFB:14  | array.set                           | type                              | ref i32 any ->             | gc
0xFB:15  | array.len                           |                                   | ref -> i32                 | gc
0xFB:16  | array.fill                          | type                              | ref i32 any i32 ->         | gc
0xFB:17  | array.copy                          | type type                         | ref i32 ref i32 i32 ->     | gc
0xFB:18  | array.init_data                     | type data                         | ref i32 i32 i32 ->         | gc
0xFB:19  | array.init_elem                     | type elem                         | ref i32 i32 i32 ->         | gc
0xFB:20  | ref.test                            | heaptype                          | ref -> i32                 | gc
0xFB:21  | ref.test                            | nullheaptype                      | ref -> i32                 | gc
0xFB:22  | ref.cast                            | heaptype                          | @ref.cast                  | gc
0xFB:23  | ref.cast                            | nullheaptype                      | @ref.cast                  | gc
0xFB:24  | br_on_cast                          | castflags label heaptype heaptype | @br_on_cast                | gc
0xFB:25  | br_on_cast_fail                     | castflags label heaptype heaptype | @br_on_cast_fail           | gc
0xFB:26  | any.convert_extern                  |                                   | @any.convert_extern        | gc
0xFB:27  | extern.convert_any                  |                                   | @extern.convert_any        | gc
0xFB:28  | ref.i31                             |                                   | i32 -> (ref i31)           | gc
0xFB:29  | i31.get_s                           |                                   | ref -> i32                 | gc
0xFB:30  | i31.get_u                           |                                   | ref -> i32                 | gc
0xFC:0   | i32.trunc_sat_f32_s                 |                                   | f32 -> i32                 | nontrapping-fptoint
0xFC:1   | i32.trunc_sat_f32_u                 |                                   | f32 -> i32                 | nontrapping-fptoint
0xFC:2   | i32.trunc_sat_f64_s                 |                                   | f64 -> i32                 | nontrapping-fptoint
0xFC:3   | i32.trunc_sat_f64_u                 |                                   | f64 -> i32                 | nontrapping-fptoint
0xFC:4   | i64.trunc_sat_f32_s                 |                                   | f32 -> i64                 | nontrapping-fptoint
0xFC:5   | i64.trunc_sat_f32_u                 |                                   | f32 -> i64                 | nontrapping-fptoint
0xFC:6   | i64.trunc_sat_f64_s                 |                                   | f64 -> i64                 | nontrapping-fptoint
0xFC:7   | i64.trunc_sat_f64_u                 |                                   | f64 -> i64                 | nontrapping-fptoint
0xFC:8   | memory.init                         | data memory                       | A i32 i32 ->               | bulk-memory
0xFC:9   | data.drop                           | data                              | ->                         | bulk-memory
0xFC:10  | memory.copy                         | memory memory                     | @memory.copy               | bulk-memory
0xFC:11  | memory.fill                         | memory                            | A i32 A ->                 | bulk-memory
0xFC:12  | table.init                          | elem table                        | @table.init                | bulk-memory
0xFC:13  | elem.drop                           | elem                              | ->                         | bulk-memory
0xFC:14  | table.copy                          | table table                       | @table.copy                | bulk-memory
0xFC:15  | table.grow                          | table                             | @table.grow                | reference-types
0xFC:16  | table.size                          | table                             | @table.size                | reference-types
0xFC:17  | table.fill                          | table                             | @table.fill                | reference-types
0xFC:19  | i64.add128                          |                                   | i64 i64 i64 i64 -> i64 i64 | wide-arithmetic
0xFC:20  | i64.sub128                          |                                   | i64 i64 i64 i64 -> i64 i64 | wide-arithmetic
0xFC:21  | i64.mul_wide_s                      |                                   | i64 i64 -> i64 i64         | wide-arithmetic
0xFC:22  | i64.mul_wide_u                      |                                   | i64 i64 -> i64 i64         | wide-arithmetic
0xFD:0   | v128.load                           | memarg                            | A -> v128                  | simd
0xFD:1   | v128.load8x8_s                      | memarg                            | A -> v128                  | simd
0xFD:2   | v128.load8x8_u                      | memarg                            | A -> v128                  | simd
0xFD:3   | v128.load16x4_s                     | memarg                            | A -> v128                  | simd
0xFD:4   | v128.load16x4_u                     | memarg                            | A -> v128                  | simd
0xFD:5   | v128.load32x2_s                     | memarg                            | A -> v128                  | simd
0xFD:6   | v128.load32x2_u                     | memarg                            | A -> v128                  | simd
0xFD:7   | v128.load8_splat                    | memarg                            | A -> v128                  | simd
0xFD:8   | v128.load16_splat                   | memarg                            | A -> v128                  | simd
0xFD:9   | v128.load32_splat                   | memarg                            | A -> v128                  | simd
0xFD:10  | v128.load64_splat                   | memarg                            | A -> v128                  | simd
0xFD:11  | v128.store                          | memarg                            | A v128 ->                  | simd
0xFD:12  | v128.const                          | v128                              | -> v128                    | simd
0xFD:13  | i8x16.shuffle                       | shuffle                           | v128 v128 -> v128          | simd
0xFD:14  | i8x16.swizzle                       |                                   | v128 v128 -> v128          | simd
0xFD:15  | i8x16.splat                         |                                   | i32 -> v128                | simd
0xFD:16  | i16x8.splat                         |                                   | i32 -> v128                | simd
0xFD:17  | i32x4.splat                         |                                   | i32 -> v128                | simd
0xFD:18  | i64x2.splat                         |                                   | i64 -> v128                | simd
0xFD:19  | f32x4.splat                         |                                   | f32 -> v128                | simd
0xFD:20  | f64x2.splat                         |                                   | f64 -> v128                | simd
0xFD:21  | i8x16.extract_lane_s                | lane                              | v128 -> i32                | simd
0xFD:22  | i8x16.extract_lane_u                | lane                              | v128 -> i32                | simd
0xFD:23  | i8x16.replace_lane                  | lane                              | v128 i32 -> v128           | simd
0xFD:24  | i16x8.extract_lane_s                | lane                              | v128 -> i32                | simd
0xFD:25  | i16x8.extract_lane_u                | lane                              | v128 -> i32                | simd
0xFD:26  | i16x8.replace_lane                  | lane                              | v128 i32 -> v128           | simd
0xFD:27  | i32x4.extract_lane                  | lane                              | v128 -> i32                | simd
0xFD:28  | i32x4.replace_lane                  | lane                              | v128 i32 -> v128           | simd
0xFD:29  | i64x2.extract_lane                  | lane                              | v128 -> i64                | simd
0xFD:30  | i64x2.replace_lane                  | lane                              | v128 i64 -> v128           | simd
0xFD:31  | f32x4.extract_lane                  | lane                              | v128 -> f32                | simd
0xFD:32  | f32x4.replace_lane                  | lane                              | v128 f32 -> v128           | simd
0xFD:33  | f64x2.extract_lane                  | lane                              | v128 -> f64                | simd
0xFD:34  | f64x2.replace_lane                  | lane                              | v128 f64 -> v128           | simd
0xFD:35  | i8x16.eq                            |                                   | v128 v128 -> v128          | simd
0xFD:36  | i8x16.ne                            |                                   | v128 v128 -> v128          | simd
0xFD:37  | i8x16.lt_s                          |                                   | v128 v128 -> v128          | simd
0xFD:38  | i8x16.lt_u                          |                                   | v128 v128 -> v128          | simd
0xFD:39  | i8x16.gt_s                          |                                   | v128 v128 -> v128          | simd
0xFD:40  | i8x16.gt_u                          |                                   | v128 v128 -> v128          | simd
0xFD:41  | i8x16.le_s                          |                                   | v128 v128 -> v128          | simd
0xFD:42  | i8x16.le_u                          |                                   | v128 v128 -> v128          | simd
0xFD:43  | i8x16.ge_s                          |                                   | v128 v128 -> v128          | simd
0xFD:44  | i8x16.ge_u                          |                                   | v128 v128 -> v128          | simd
0xFD:45  | i16x8.eq                            |                                   | v128 v128 -> v128          | simd
0xFD:46  | i16x8.ne                            |                                   | v128 v128 -> v128          | simd
0xFD:47  | i16x8.lt_s                          |                                   | v128 v128 -> v128          | simd
0xFD:48  | i16x8.lt_u                          |                                   | v128 v128 -> v128          | simd
0xFD:49  | i16x8.gt_s                          |                                   | v128 v128 -> v128          | simd
0xFD:50  | i16x8.gt_u                          |                                   | v128 v128 -> v128          | simd
0xFD:51  | i16x8.le_s                          |                                   | v128 v128 -> v128          | simd
0xFD:52  | i16x8.le_u                          |                                   | v128 v128 -> v128          | simd
0xFD:53  | i16x8.ge_s                          |                                   | v128 v128 -> v128          | simd
0xFD:54  | i16x8.ge_u                          |                                   | v128 v128 -> v128          | simd
0xFD:55  | i32x4.eq                            |                                   | v128 v128 -> v128          | simd
0xFD:56  | i32x4.ne                            |                                   | v128 v128 -> v128          | simd
0xFD:57  | i32x4.lt_s                          |                                   | v128 v128 -> v128          | simd
0xFD:58  | i32x4.lt_u                          |                                   | v128 v128 -> v128          | simd
0xFD:59  | i32x4.gt_s                          |                                   | v128 v128 -> v128          | simd
0xFD:60  | i32x4.gt_u                          |                                   | v128 v128 -> v128          | simd
0xFD:61  | i32x4.le_s                          |                                   | v128 v128 -> v128          | simd
0xFD:62  | i32x4.le_u                          |                                   | v128 v128 -> v128          | simd
0xFD:63  | i32x4.ge_s                          |                                   | v128 v128 -> v128          | simd
0xFD:64  | i32x4.ge_u                          |                                   | v128 v128 -> v128          | simd
0xFD:65  | f32x4.eq                            |                                   | v128 v128 -> v128          | simd
0xFD:66  | f32x4.ne                            |                                   | v128 v128 -> v128          | simd
0xFD:67  | f32x4.lt                            |                                   | v128 v128 -> v128          | simd
0xFD:68  | f32x4.gt                            |                                   | v128 v128 -> v128          | simd
0xFD:69  | f32x4.le                            |                                   | v128 v128 -> v128          | simd
0xFD:70  | f32x4.ge                            |                                   | v128 v128 -> v128          | simd
0xFD:71  | f64x2.eq                            |                                   | v128 v128 -> v128          | simd
0xFD:72  | f64x2.ne                            |                                   | v128 v128 -> v128          | simd
0xFD:73  | f64x2.lt                            |                                   | v128 v128 -> v128          | simd
0xFD:74  | f64x2.gt                            |                                   | v128 v128 -> v128          | simd
0xFD:75  | f64x2.le                            |                                   | v128 v128 -> v128          | simd
0xFD:76  | f64x2.ge                            |                                   | v128 v128 -> v128          | simd
0xFD:77  | v128.not                            |                                   | v128 -> v128               | simd
0xFD:78  | v128.and                            |                                   | v128 v128 -> v128          | simd
0xFD:79  | v128.andnot                         |                                   | v128 v128 -> v128          | simd
0xFD:80  | v128.or                             |                                   | v128 v128 -> v128          | simd
0xFD:81  | v128.xor                            |                                   | v128 v128 -> v128          | simd
0xFD:82  | v128.bitselect                      |                                   | v128 v128 v128 -> v128     | simd
0xFD:83  | v128.any_true                       |                                   | v128 -> i32                | simd
0xFD:84  | v128.load8_lane                     | memarg lane                       | A v128 -> v128             | simd
0xFD:85  | v128.load16_lane                    | memarg lane                       | A v128 -> v128             | simd
0xFD:86  | v128.load32_lane                    | memarg lane                       | A v128 -> v128             | simd
0xFD:87  | v128.load64_lane                    | memarg lane                       | A v128 -> v128             | simd
0xFD:88  | v128.store8_lane                    | memarg lane                       | A v128 ->                  | simd
0xFD:89  | v128.store16_lane                   | memarg lane                       | A v128 ->                  | simd
0xFD:90  | v128.store32_lane                   | memarg lane                       | A v128 ->                  | simd
0xFD:91  | v128.store64_lane                   | memarg lane                       | A v128 ->                  | simd
0xFD:92  | v128.load32_zero                    | memarg                            | A -> v128                  | simd
0xFD:93  | v128.load64_zero                    | memarg                            | A -> v128                  | simd
0xFD:94  | f32x4.demote_f64x2_zero             |                                   | v128 -> v128               | simd
0xFD:95  | f64x2.promote_low_f32x4             |                                   | v128 -> v128               | simd
0xFD:96  | i8x16.abs                           |                                   | v128 -> v128               | simd
0xFD:97  | i8x16.neg                           |                                   | v128 -> v128               | simd
0xFD:98  | i8x16.popcnt                        |                                   | v128 -> v128               | simd
0xFD:99  | i8x16.all_true                      |                                   | v128 -> i32                | simd
0xFD:100 | i8x16.bitmask                       |                                   | v128 -> i32                | simd
0xFD:101 | i8x16.narrow_i16x8_s                |                                   | v128 v128 -> v128          | simd
0xFD:102 | i8x16.narrow_i16x8_u                |                                   | v128 v128 -> v128          | simd
0xFD:103 | f32x4.ceil                          |                                   | v128 -> v128               | simd
0xFD:104 | f32x4.floor                         |                                   | v128 -> v128               | simd
0xFD:105 | f32x4.trunc                         |                                   | v128 -> v128               | simd
0xFD:106 | f32x4.nearest                       |                                   | v128 -> v128               | simd
0xFD:107 | i8x16.shl                           |                                   | v128 i32 -> v128           | simd
0xFD:108 | i8x16.shr_s                         |                                   | v128 i32 -> v128           | simd
0xFD:109 | i8x16.shr_u                         |                                   | v128 i32 -> v128           | simd
0xFD:110 | i8x16.add                           |                                   | v128 v128 -> v128          | simd
0xFD:111 | i8x16.add_sat_s                     |                                   | v128 v128 -> v128          | simd
0xFD:112 | i8x16.add_sat_u                     |                                   | v128 v128 -> v128          | simd
0xFD:113 | i8x16.sub                           |                                   | v128 v128 -> v128          | simd
0xFD:114 | i8x16.sub_sat_s                     |                                   | v128 v128 -> v128          | simd
0xFD:115 | i8x16.sub_sat_u                     |                                   | v128 v128 -> v128          | simd
0xFD:116 | f64x2.ceil                          |                                   | v128 -> v128               | simd
0xFD:117 | f64x2.floor                         |                                   | v128 -> v128               | simd
0xFD:118 | i8x16.min_s                         |                                   | v128 v128 -> v128          | simd
0xFD:119 | i8x16.min_u                         |                                   | v128 v128 -> v128          | simd
0xFD:120 | i8x16.max_s                         |                                   | v128 v128 -> v128          | simd
0xFD:121 | i8x16.max_u                         |                                   | v128 v128 -> v128          | simd
0xFD:122 | f64x2.trunc                         |                                   | v128 -> v128               | simd
0xFD:123 | i8x16.avgr_u                        |                                   | v128 v128 -> v128          | simd
0xFD:124 | i16x8.extadd_pairwise_i8x16_s       |                                   | v128 -> v128               | simd
0xFD:125 | i16x8.extadd_pairwise_i8x16_u       |                                   | v128 -> v128               | simd
0xFD:126 | i32x4.extadd_pairwise_i16x8_s       |                                   | v128 -> v128               | simd
0xFD:127 | i32x4.extadd_pairwise_i16x8_u       |                                   | v128 -> v128               | simd
0xFD:128 | i16x8.abs                           |                                   | v128 -> v128               | simd
0xFD:129 | i16x8.neg                           |                                   | v128 -> v128               | simd
0xFD:130 | i16x8.q15mulr_sat_s                 |                                   | v128 v128 -> v128          | simd
0xFD:131 | i16x8.all_true                      |                                   | v128 -> i32                | simd
0xFD:132 | i16x8.bitmask                       |                                   | v128 -> i32                | simd
0xFD:133 | i16x8.narrow_i32x4_s                |                                   | v128 v128 -> v128          | simd
0xFD:134 | i16x8.narrow_i32x4_u                |                                   | v128 v128 -> v128          | simd
0xFD:135 | i16x8.extend_low_i8x16_s            |                                   | v128 -> v128               | simd
0xFD:136 | i16x8.extend_high_i8x16_s           |                                   | v128 -> v128               | simd
0xFD:137 | i16x8.extend_low_i8x16_u            |                                   | v128 -> v128               | simd
0xFD:138 | i16x8.extend_high_i8x16_u           |                                   | v128 -> v128               | simd
0xFD:139 | i16x8.shl                           |                                   | v128 i32 -> v128           | simd
0xFD:140 | i16x8.shr_s                         |                                   | v128 i32 -> v128           | simd
0xFD:141 | i16x8.shr_u                         |                                   | v128 i32 -> v128           | simd
0xFD:142 | i16x8.add                           |                                   | v128 v128 -> v128          | simd
0xFD:143 | i16x8.add_sat_s                     |                                   | v128 v128 -> v128          | simd
0xFD:144 | i16x8.add_sat_u                     |                                   | v128 v128 -> v128          | simd
0xFD:145 | i16x8.sub                           |                                   | v128 v128 -> v128          | simd
0xFD:146 | i16x8.sub_sat_s                     |                                   | v128 v128 -> v128          | simd
0xFD:147 | i16x8.sub_sat_u                     |                                   | v128 v128 -> v128          | simd
0xFD:148 | f64x2.nearest                       |                                   | v128 -> v128               | simd
0xFD:149 | i16x8.mul                           |                                   | v128 v128 -> v128          | simd
0xFD:150 | i16x8.min_s                         |                                   | v128 v128 -> v128          | simd
0xFD:151 | i16x8.min_u                         |                                   | v128 v128 -> v128          | simd
0xFD:152 | i16x8.max_s                         |                                   | v128 v128 -> v128          | simd
0xFD:153 | i16x8.max_u                         |                                   | v128 v128 -> v128          | simd
0xFD:155 | i16x8.avgr_u                        |                                   | v128 v128 -> v128          | simd
0xFD:156 | i16x8.extmul_low_i8x16_s            |                                   | v128 v128 -> v128          | simd
0xFD:157 | i16x8.extmul_high_i8x16_s           |                                   | v128 v128 -> v128          | simd
0xFD:158 | i16x8.extmul_low_i8x16_u            |                                   | v128 v128 -> v128          | simd
0xFD:159 | i16x8.extmul_high_i8x16_u           |                                   | v128 v128 -> v128          | simd
0xFD:160 | i32x4.abs                           |                                   | v128 -> v128               | simd
0xFD:161 | i32x4.neg                           |                                   | v128 -> v128               | simd
0xFD:163 | i32x4.all_true                      |                                   | v128 -> i32                | simd
0xFD:164 | i32x4.bitmask                       |                                   | v128 -> i32                | simd
0xFD:167 | i32x4.extend_low_i16x8_s            |                                   | v128 -> v128               | simd
0xFD:168 | i32x4.extend_high_i16x8_s           |                                   | v128 -> v128               | simd
0xFD:169 | i32x4.extend_low_i16x8_u            |                                   | v128 -> v128               | simd
0xFD:170 | i32x4.extend_high_i16x8_u           |                                   | v128 -> v128               | simd
0xFD:171 | i32x4.shl                           |                                   | v128 i32 -> v128           | simd
0xFD:172 | i32x4.shr_s                         |                                   | v128 i32 -> v128           | simd
0xFD:173 | i32x4.shr_u                         |                                   | v128 i32 -> v128           | simd
0xFD:174 | i32x4.add                           |                                   | v128 v128 -> v128          | simd
0xFD:177 | i32x4.sub                           |                                   | v128 v128 -> v128          | simd
0xFD:181 | i32x4.mul                           |                                   | v128 v128 -> v128          | simd
0xFD:182 | i32x4.min_s                         |                                   | v128 v128 -> v128          | simd
0xFD:183 | i32x4.min_u                         |                                   | v128 v128 -> v128          | simd
0xFD:184 | i32x4.max_s                         |                                   | v128 v128 -> v128          | simd
0xFD:185 | i32x4.max_u                         |                                   | v128 v128 -> v128          | simd
0xFD:186 | i32x4.dot_i16x8_s                   |                                   | v128 v128 -> v128          | simd
0xFD:188 | i32x4.extmul_low_i16x8_s            |                                   | v128 v128 -> v128          | simd
0xFD:189 | i32x4.extmul_high_i16x8_s           |                                   | v128 v128 -> v128          | simd
0xFD:190 | i32x4.extmul_low_i16x8_u            |                                   | v128 v128 -> v128          | simd
0xFD:191 | i32x4.extmul_high_i16x8_u           |                                   | v128 v128 -> v128          | simd
0xFD:192 | i64x2.abs                           |                                   | v128 -> v128               | simd
0xFD:193 | i64x2.neg                           |                                   | v128 -> v128               | simd
0xFD:195 | i64x2.all_true                      |                                   | v128 -> i32                | simd
0xFD:196 | i64x2.bitmask                       |                                   | v128 -> i32                | simd
0xFD:199 | i64x2.extend_low_i32x4_s            |                                   | v128 -> v128               | simd
0xFD:200 | i64x2.extend_high_i32x4_s           |                                   | v128 -> v128               | simd
0xFD:201 | i64x2.extend_low_i32x4_u            |                                   | v128 -> v128               | simd
0xFD:202 | i64x2.extend_high_i32x4_u           |                                   | v128 -> v128               | simd
0xFD:203 | i64x2.shl                           |                                   | v128 i32 -> v128           | simd
0xFD:204 | i64x2.shr_s                         |                                   | v128 i32 -> v128           | simd
0xFD:205 | i64x2.shr_u                         |                                   | v128 i32 -> v128           | simd
0xFD:206 | i64x2.add                           |                                   | v128 v128 -> v128          | simd
0xFD:209 | i64x2.sub                           |                                   | v128 v128 -> v128          | simd
0xFD:213 | i64x2.mul                           |                                   | v128 v128 -> v128          | simd
0xFD:214 | i64x2.eq                            |                                   | v128 v128 -> v128          | simd
0xFD:215 | i64x2.ne                            |                                   | v128 v128 -> v128          | simd
0xFD:216 | i64x2.lt_s                          |                                   | v128 v128 -> v128          | simd
0xFD:217 | i64x2.gt_s                          |                                   | v128 v128 -> v128          | simd
0xFD:218 | i64x2.le_s                          |                                   | v128 v128 -> v128          | simd
0xFD:219 | i64x2.ge_s                          |                                   | v128 v128 -> v128          | simd
0xFD:220 | i64x2.extmul_low_i32x4_s            |                                   | v128 v128 -> v128          | simd
0xFD:221 | i64x2.extmul_high_i32x4_s           |                                   | v128 v128 -> v128          | simd
0xFD:222 | i64x2.extmul_low_i32x4_u            |                                   | v128 v128 -> v128          | simd
0xFD:223 | i64x2.extmul_high_i32x4_u           |                                   | v128 v128 -> v128          | simd
0xFD:224 | f32x4.abs                           |                                   | v128 -> v128               | simd
0xFD:225 | f32x4.neg                           |                                   | v128 -> v128               | simd
0xFD:227 | f32x4.sqrt                          |                                   | v128 -> v128               | simd
0xFD:228 | f32x4.add                           |                                   | v128 v128 -> v128          | simd
0xFD:229 | f32x4.sub                           |                                   | v128 v128 -> v128          | simd
0xFD:230 | f32x4.mul                           |                                   | v128 v128 -> v128          | simd
0xFD:231 | f32x4.div                           |                                   | v128 v128 -> v128          | simd
0xFD:232 | f32x4.min                           |                                   | v128 v128 -> v128          | simd
0xFD:233 | f32x4.max                           |                                   | v128 v128 -> v128          | simd
0xFD:234 | f32x4.pmin                          |                                   | v128 v128 -> v128          | simd
0xFD:235 | f32x4.pmax                          |                                   | v128 v128 -> v128          | simd
0xFD:236 | f64x2.abs                           |                                   | v128 -> v128               | simd
0xFD:237 | f64x2.neg                           |                                   | v128 -> v128               | simd
0xFD:239 | f64x2.sqrt                          |                                   | v128 -> v128               | simd
0xFD:240 | f64x2.add                           |                                   | v128 v128 -> v128          | simd
0xFD:241 | f64x2.sub                           |                                   | v128 v128 -> v128          | simd
0xFD:242 | f64x2.mul                           |                                   | v128 v128 -> v128          | simd
0xFD:243 | f64x2.div                           |                                   | v128 v128 -> v128          | simd
0xFD:244 | f64x2.min                           |                                   | v128 v128 -> v128          | simd
0xFD:245 | f64x2.max                           |                                   | v128 v128 -> v128          | simd
0xFD:246 | f64x2.pmin                          |                                   | v128 v128 -> v128          | simd
0xFD:247 | f64x2.pmax                          |                                   | v128 v128 -> v128          | simd
0xFD:248 | i32x4.trunc_sat_f32x4_s             |                                   | v128 -> v128               | simd
0xFD:249 | i32x4.trunc_sat_f32x4_u             |                                   | v128 -> v128               | simd
0xFD:250 | f32x4.convert_i32x4_s               |                                   | v128 -> v128               | simd
0xFD:251 | f32x4.convert_i32x4_u               |                                   | v128 -> v128               | simd
0xFD:252 | i32x4.trunc_sat_f64x2_s_zero        |                                   | v128 -> v128               | simd
0xFD:253 | i32x4.trunc_sat_f64x2_u_zero        |                                   | v128 -> v128               | simd
0xFD:254 | f64x2.convert_low_i32x4_s           |                                   | v128 -> v128               | simd
0xFD:255 | f64x2.convert_low_i32x4_u           |                                   | v128 -> v128               | simd
0xFD:256 | i8x16.relaxed_swizzle               |                                   | v128 v128 -> v128          | relaxed-simd
0xFD:257 | i32x4.relaxed_trunc_f32x4_s         |                                   | v128 -> v128               | relaxed-simd
0xFD:258 | i32x4.relaxed_trunc_f32x4_u         |                                   | v128 -> v128               | relaxed-simd
0xFD:259 | i32x4.relaxed_trunc_f64x2_s_zero    |                                   | v128 -> v128               | relaxed-simd
0xFD:260 | i32x4.relaxed_trunc_f64x2_u_zero    |                                   | v128 -> v128               | relaxed-simd
0xFD:261 | f32x4.relaxed_madd                  |                                   | v128 v128 v128 -> v128     | relaxed-simd
0xFD:262 | f32x4.relaxed_nmadd                 |                                   | v128 v128 v128 -> v128     | relaxed-simd
0xFD:263 | f64x2.relaxed_madd                  |                                   | v128 v128 v128 -> v128     | relaxed-simd
0xFD:264 | f64x2.relaxed_nmadd                 |                                   | v128 v128 v128 -> v128     | relaxed-simd
0xFD:265 | i8x16.relaxed_laneselect            |                                   | v128 v128 v128 -> v128     | relaxed-simd
0xFD:266 | i16x8.relaxed_laneselect            |                                   | v128 v128 v128 -> v128     | relaxed-simd
0xFD:267 | i32x4.relaxed_laneselect            |                                   | v128 v128 v128 -> v128     | relaxed-simd
0xFD:268 | i64x2.relaxed_laneselect            |                                   | v128 v128 v128 -> v128     | relaxed-simd
0xFD:269 | f32x4.relaxed_min                   |                                   | v128 v128 -> v128          | relaxed-simd
0xFD:270 | f32x4.relaxed_max                   |                                   | v128 v128 -> v128          | relaxed-simd
0xFD:271 | f64x2.relaxed_min                   |                                   | v128 v128 -> v128          | relaxed-simd
0xFD:272 | f64x2.relaxed_max                   |                                   | v128 v128 -> v128          | relaxed-simd
0xFD:273 | i16x8.relaxed_q15mulr_s             |                                   | v128 v128 -> v128          | relaxed-simd
0xFD:274 | i16x8.relaxed_dot_i8x16_i7x16_s     |                                   | v128 v128 -> v128          | relaxed-simd
0xFD:275 | i32x4.relaxed_dot_i8x16_i7x16_add_s |                                   | v128 v128 v128 -> v128     | relaxed-simd
0xFE:0   | memory.atomic.notify                | memarg                            | A i32 -> i32               | threads
0xFE:1   | memory.atomic.wait32                | memarg                            | A i32 i64 -> i32           | threads
0xFE:2   | memory.atomic.wait64                | memarg                            | A i64 i64 -> i32           | threads
0xFE:3   | atomic.fence                        | zero                              | ->                         | threads
0xFE:16  | i32.atomic.load                     | memarg                            | A -> i32                   | threads
0xFE:17  | i64.atomic.load                     | memarg                            | A -> i64                   | threads
0xFE:18  | i32.atomic.load8_u                  | memarg                            | A -> i32                   | threads
0xFE:19  | i32.atomic.load16_u                 | memarg                            | A -> i32                   | threads
0xFE:20  | i64.atomic.load8_u                  | memarg                            | A -> i64                   | threads
0xFE:21  | i64.atomic.load16_u                 | memarg                            | A -> i64                   | threads
0xFE:22  | i64.atomic.load32_u                 | memarg                            | A -> i64                   | threads
0xFE:23  | i32.atomic.store                    | memarg                            | A i32 ->                   | threads
0xFE:24  | i64.atomic.store                    | memarg                            | A i64 ->                   | threads
0xFE:25  | i32.atomic.store8                   | memarg                            | A i32 ->                   | threads
0xFE:26  | i32.atomic.store16                  | memarg                            | A i32 ->                   | threads
0xFE:27  | i64.atomic.store8                   | memarg                            | A i64 ->                   | threads
0xFE:28  | i64.atomic.store16                  | memarg                            | A i64 ->                   | threads
0xFE:29  | i64.atomic.store32                  | memarg                            | A i64 ->                   | threads
0xFE:30  | i32.atomic.rmw.add                  | memarg                            | A i32 -> i32               | threads
0xFE:31  | i64.atomic.rmw.add                  | memarg                            | A i64 -> i64               | threads
0xFE:32  | i32.atomic.rmw8.add_u               | memarg                            | A i32 -> i32               | threads
0xFE:33  | i32.atomic.rmw16.add_u              | memarg                            | A i32 -> i32               | threads
0xFE:34  | i64.atomic.rmw8.add_u               | memarg                            | A i64 -> i64               | threads
0xFE:35  | i64.atomic.rmw16.add_u              | memarg                            | A i64 -> i64               | threads
0xFE:36  | i64.atomic.rmw32.add_u              | memarg                            | A i64 -> i64               | threads
0xFE:37  | i32.atomic.rmw.sub                  | memarg                            | A i32 -> i32               | threads
0xFE:38  | i64.atomic.rmw.sub                  | memarg                            | A i64 -> i64               | threads
0xFE:39  | i32.atomic.rmw8.sub_u               | memarg                            | A i32 -> i32               | threads
0xFE:40  | i32.atomic.rmw16.sub_u              | memarg                            | A i32 -> i32               | threads
0xFE:41  | i64.atomic.rmw8.sub_u               | memarg                            | A i64 -> i64               | threads
0xFE:42  | i64.atomic.rmw16.sub_u              | memarg                            | A i64 -> i64               | threads
0xFE:43  | i64.atomic.rmw32.sub_u              | memarg                            | A i64 -> i64               | threads
0xFE:44  | i32.atomic.rmw.and                  | memarg                            | A i32 -> i32               | threads
0xFE:45  | i64.atomic.rmw.and                  | memarg                            | A i64 -> i64               | threads
0xFE:46  | i32.atomic.rmw8.and_u               | memarg                            | A i32 -> i32               | threads
0xFE:47  | i32.atomic.rmw16.and_u              | memarg                            | A i32 -> i32               | threads
0xFE:48  | i64.atomic.rmw8.and_u               | memarg                            | A i64 -> i64               | threads
0xFE:49  | i64.atomic.rmw16.and_u              | memarg                            | A i64 -> i64               | threads
0xFE:50  | i64.atomic.rmw32.and_u              | memarg                            | A i64 -> i64               | threads
0xFE:51  | i32.atomic.rmw.or                   | memarg                            | A i32 -> i32               | threads
0xFE:52  | i64.atomic.rmw.or                   | memarg                            | A i64 -> i64               | threads
0xFE:53  | i32.atomic.rmw8.or_u                | memarg                            | A i32 -> i32               | threads
0xFE:54  | i32.atomic.rmw16.or_u               | memarg                            | A i32 -> i32               | threads
0xFE:55  | i64.atomic.rmw8.or_u                | memarg                            | A i64 -> i64               | threads
0xFE:56  | i64.atomic.rmw16.or_u               | memarg                            | A i64 -> i64               | threads
0xFE:57  | i64.atomic.rmw32.or_u               | memarg                            | A i64 -> i64               | threads
0xFE:58  | i32.atomic.rmw.xor                  | memarg                            | A i32 -> i32               | threads
0xFE:59  | i64.atomic.rmw.xor                  | memarg                            | A i64 -> i64               | threads
0xFE:60  | i32.atomic.rmw8.xor_u               | memarg                            | A i32 -> i32               | threads
0xFE:61  | i32.atomic.rmw16.xor_u              | memarg                            | A i32 -> i32               | threads
0xFE:62  | i64.atomic.rmw8.xor_u               | memarg                            | A i64 -> i64               | threads
0xFE:63  | i64.atomic.rmw16.xor_u              | memarg                            | A i64 -> i64               | threads
0xFE:64  | i64.atomic.rmw32.xor_u              | memarg                            | A i64 -> i64               | threads
0xFE:65  | i32.atomic.rmw.xchg                 | memarg                            | A i32 -> i32               | threads
0xFE:66  | i64.atomic.rmw.xchg                 | memarg                            | A i64 -> i64               | threads
0xFE:67  | i32.atomic.rmw8.xchg_u              | memarg                            | A i32 -> i32               | threads
0xFE:68  | i32.atomic.rmw16.xchg_u             | memarg                            | A i32 -> i32               | threads
0xFE:69  | i64.atomic.rmw8.xchg_u              | memarg                            | A i64 -> i64               | threads
0xFE:70  | i64.atomic.rmw16.xchg_u             | memarg                            | A i64 -> i64               | threads
0xFE:71  | i64.atomic.rmw32.xchg_u             | memarg                            | A i64 -> i64               | threads
0xFE:72  | i32.atomic.rmw.cmpxchg              | memarg                            | A i32 i32 -> i32           | threads
0xFE:73  | i64.atomic.rmw.cmpxchg              | memarg                            | A i64 i64 -> i64           | threads
0xFE:74  | i32.atomic.rmw8.cmpxchg_u           | memarg                            | A i32 i32 -> i32           | threads
0xFE:75  | i32.atomic.rmw16.cmpxchg_u          | memarg                            | A i32 i32 -> i32           | threads
0xFE:76  | i64.atomic.rmw8.cmpxchg_u           | memarg                            | A i64 i64 -> i64           | threads
0xFE:77  | i64.atomic.rmw16.cmpxchg_u          | memarg                            | A i64 i64 -> i64           | threads
0xFE:78  | i64.atomic.rmw32.cmpxchg_u          | memarg                            | A i64 i64 -> i64           | threads
"""

_EFFECT_TOKEN = re.compile(r"\(ref [a-z0-9]+\)|[A-Za-z0-9_]+")


def _shape(name: str, imms: tuple[Imm, ...], rule: str | None) -> Shape:
    if name == "end":
        return Shape.END
    if name == "delegate":  # closes a block: keep it off the index fast path
        return Shape.OTHER
    if imms == (Imm.BLOCKTYPE,):
        return Shape.BLOCK
    if not imms:
        return Shape.NONE
    if len(imms) == 1 and imms[0] in U32_IMMS:
        return Shape.U32
    if len(imms) == 2 and imms[0] in U32_IMMS and imms[1] in U32_IMMS:
        return Shape.U32_U32
    simple: dict[tuple[Imm, ...], Shape] = {
        (Imm.MEMARG,): Shape.MEMARG,
        (Imm.I32,): Shape.I32,
        (Imm.I64,): Shape.I64,
        (Imm.F32,): Shape.F32,
        (Imm.F64,): Shape.F64,
        (Imm.LABELS,): Shape.BR_TABLE,
    }
    return simple.get(imms, Shape.OTHER)


def _parse_table() -> tuple[Op, ...]:
    ops: list[Op] = []
    for lineno, line in enumerate(_TABLE.splitlines(), 1):
        if not line.strip():
            continue
        cells = [c.strip() for c in line.split("|")]
        if len(cells) != 5:
            raise RuntimeError(f"opcode table line {lineno}: expected 5 columns: {line!r}")
        code_s, name, imm_s, effect, proposal = cells
        if ":" in code_s:
            pre_s, sub_s = code_s.split(":")
            prefix: int | None = int(pre_s, 16)
            code = int(sub_s)
        else:
            prefix, code = None, int(code_s, 16)
        imms = tuple(Imm(k) for k in imm_s.split())
        rule: str | None = None
        params: tuple[str, ...] | None = None
        results: tuple[str, ...] | None = None
        if effect.startswith("@"):
            rule = effect[1:]
        else:
            left, arrow, right = effect.partition("->")
            if not arrow:
                raise RuntimeError(f"opcode table line {lineno}: bad effect {effect!r}")
            params = tuple(_EFFECT_TOKEN.findall(left))
            results = tuple(_EFFECT_TOKEN.findall(right))
        opcode_bytes = bytes([code]) if prefix is None else bytes([prefix]) + uleb(code)
        ops.append(
            Op(
                id=len(ops),
                name=name,
                prefix=prefix,
                code=code,
                imms=imms,
                params=params,
                results=results,
                rule=rule,
                proposal=proposal,
                shape=_shape(name, imms, rule),
                opcode_bytes=opcode_bytes,
            )
        )
    return tuple(ops)


OPS: tuple[Op, ...] = _parse_table()

# One-byte opcodes by byte; prefixed opcodes by prefix, then sub-code.
BY_BYTE: list[Op | None] = [None] * 256
BY_PREFIX: dict[int, dict[int, Op]] = {p: {} for p in PREFIXES}
_BY_NAME: dict[str, list[Op]] = {}
for _op in OPS:
    if _op.prefix is None:
        if BY_BYTE[_op.code] is not None:
            raise RuntimeError(f"duplicate opcode 0x{_op.code:02X}")
        BY_BYTE[_op.code] = _op
    else:
        if _op.code in BY_PREFIX[_op.prefix]:
            raise RuntimeError(f"duplicate opcode 0x{_op.prefix:02X} {_op.code}")
        BY_PREFIX[_op.prefix][_op.code] = _op
    _BY_NAME.setdefault(_op.name, []).append(_op)
del _op


def op_by_code(prefix: int | None, code: int) -> Op | None:
    """The instruction with this encoding, or None."""
    if prefix is None:
        return BY_BYTE[code] if 0 <= code < 256 else None
    table = BY_PREFIX.get(prefix)
    return None if table is None else table.get(code)


def ops_named(name: str) -> tuple[Op, ...]:
    """Every instruction printed as `name` (``select``, ``ref.test`` and ``ref.cast``
    have two encodings each)."""
    return tuple(_BY_NAME.get(name, ()))
