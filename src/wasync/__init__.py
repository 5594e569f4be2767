"""wasync: let synchronous WebAssembly call asynchronous Python.

The binary toolkit under everything else:

* :func:`decode_module` / :func:`encode_module` read and write a whole module
  (:class:`BinaryModule`); function bodies stay raw until decoded, and what
  nobody changed is written back byte for byte.
* :func:`decode_body` turns a body into :class:`Instr` objects driven by the
  one opcode table (:data:`OPCODES`), and :func:`encode_body` writes it back.
* :func:`type_body` computes the operand-stack types before every instruction.
* Errors derive from :class:`WasyncError`: :class:`DecodeError` for malformed
  binaries (with byte offset, section and function), :class:`ValidationError`
  for code that does not type-check.
"""

from wasync._binary.decode import decode_module
from wasync._binary.encode import encode_module
from wasync._binary.module import (
    BinaryModule,
    ConstExpr,
    CustomSection,
    Data,
    Element,
    Export,
    FuncBody,
    Global,
    Import,
    SectionId,
    SegmentMode,
    Table,
)
from wasync._binary.opcodes import OPS as OPCODES
from wasync._binary.opcodes import Imm, Op, op_by_code, ops_named
from wasync._binary.types import (
    AbsHeap,
    ArrayType,
    ExternKind,
    FieldType,
    FuncType,
    GlobalType,
    HeapType,
    Limits,
    NumType,
    PackedType,
    RecGroup,
    RefType,
    StructType,
    SubType,
    TableType,
    TagType,
    ValType,
)
from wasync._errors import DecodeError, ValidationError, WasyncError
from wasync._inspect import ModuleSummary, features_used, summarize
from wasync._ir.instr import (
    Body,
    Catch,
    Instr,
    MemArg,
    decode_body,
    decode_expr,
    encode_body,
    encode_instrs,
)
from wasync._ir.stack import BOT, ModuleTypes, StackTyping, type_body, type_function

__version__ = "0.1.0"

__all__ = [
    "BOT",
    "OPCODES",
    "AbsHeap",
    "ArrayType",
    "BinaryModule",
    "Body",
    "Catch",
    "ConstExpr",
    "CustomSection",
    "Data",
    "DecodeError",
    "Element",
    "Export",
    "ExternKind",
    "FieldType",
    "FuncBody",
    "FuncType",
    "Global",
    "GlobalType",
    "HeapType",
    "Imm",
    "Import",
    "Instr",
    "Limits",
    "MemArg",
    "ModuleSummary",
    "ModuleTypes",
    "NumType",
    "Op",
    "PackedType",
    "RecGroup",
    "RefType",
    "SectionId",
    "SegmentMode",
    "StackTyping",
    "StructType",
    "SubType",
    "Table",
    "TableType",
    "TagType",
    "ValType",
    "ValidationError",
    "WasyncError",
    "__version__",
    "decode_body",
    "decode_expr",
    "decode_module",
    "encode_body",
    "encode_instrs",
    "encode_module",
    "features_used",
    "op_by_code",
    "ops_named",
    "summarize",
    "type_body",
    "type_function",
]
