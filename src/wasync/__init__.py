"""wasync: let synchronous WebAssembly call asynchronous Python.

The binary toolkit under everything else:

* :func:`decode_module` / :func:`encode_module` read and write a whole module
  (:class:`BinaryModule`); function bodies stay raw until decoded, and what
  nobody changed is written back byte for byte.
* :func:`decode_body` turns a body into :class:`Instr` objects driven by the
  one opcode table (:data:`OPCODES`), and :func:`encode_body` writes it back.
* :func:`type_body` computes the operand-stack types before every instruction.
* :func:`instantiate` runs a :class:`Module` whose imports may be ``async def``
  functions, with the "fiber", "asyncify" or "thread" strategy; exports are
  awaited (``await inst.exports.main(1, 2)``).
* Errors derive from :class:`WasyncError`: :class:`DecodeError` for malformed
  binaries (with byte offset, section and function), :class:`ValidationError`
  for code that does not type-check.
"""

from wasync._asyncify.api import AsyncifyReport, asyncify, asyncify_with_report
from wasync._asyncify.options import AsyncifyOptions
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
from wasync._errors import (
    AsyncifyError,
    AsyncifyStackOverflow,
    DecodeError,
    InstanceBusy,
    LinkError,
    ReentrancyError,
    Trap,
    ValidationError,
    WasyncError,
)
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
from wasync._runtime._host import async_import, maybe_async, with_caller
from wasync._runtime._instance import (
    Caller,
    Exports,
    Instance,
    Memory,
    MemoryAccessError,
    Strategy,
    instantiate,
)
from wasync._runtime._module import ExportInfo, ImportInfo, Module
from wasync._wasi._abi import Errno as WasiErrno
from wasync._wasi._abi import Filetype as WasiFiletype
from wasync._wasi._core import ProcExit, Wasi
from wasync._wasi._fs import DirEntry, File, FileStat, FileSystem, FsError, OpenMode
from wasync._wasi._hostfs import HostDir
from wasync._wasi._memfs import MemoryFS

__version__ = "0.1.0"

__all__ = [
    "BOT",
    "OPCODES",
    "AbsHeap",
    "ArrayType",
    "AsyncifyError",
    "AsyncifyOptions",
    "AsyncifyReport",
    "AsyncifyStackOverflow",
    "BinaryModule",
    "Body",
    "Caller",
    "Catch",
    "ConstExpr",
    "CustomSection",
    "Data",
    "DecodeError",
    "DirEntry",
    "Element",
    "Export",
    "ExportInfo",
    "Exports",
    "ExternKind",
    "FieldType",
    "File",
    "FileStat",
    "FileSystem",
    "FsError",
    "FuncBody",
    "FuncType",
    "Global",
    "GlobalType",
    "HeapType",
    "HostDir",
    "Imm",
    "Import",
    "ImportInfo",
    "Instance",
    "InstanceBusy",
    "Instr",
    "Limits",
    "LinkError",
    "MemArg",
    "Memory",
    "MemoryAccessError",
    "MemoryFS",
    "Module",
    "ModuleSummary",
    "ModuleTypes",
    "NumType",
    "Op",
    "OpenMode",
    "PackedType",
    "ProcExit",
    "RecGroup",
    "ReentrancyError",
    "RefType",
    "SectionId",
    "SegmentMode",
    "StackTyping",
    "Strategy",
    "StructType",
    "SubType",
    "Table",
    "TableType",
    "TagType",
    "Trap",
    "ValType",
    "ValidationError",
    "Wasi",
    "WasiErrno",
    "WasiFiletype",
    "WasyncError",
    "__version__",
    "async_import",
    "asyncify",
    "asyncify_with_report",
    "decode_body",
    "decode_expr",
    "decode_module",
    "encode_body",
    "encode_instrs",
    "encode_module",
    "features_used",
    "instantiate",
    "maybe_async",
    "op_by_code",
    "ops_named",
    "summarize",
    "type_body",
    "type_function",
    "with_caller",
]
