"""The module model: every section of a WebAssembly binary as Python objects.

Entries are frozen dataclasses held in plain lists; change a module by
replacing, appending or removing entries. Function bodies stay raw bytes until
someone asks for their instructions (:meth:`FuncBody.decode`), and a body, a
section or a custom section that nobody changed is written back byte for byte
(see :func:`wasync._binary.encode_module`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TypeAlias

from wasync._binary.names import function_names
from wasync._binary.types import (
    ExternKind,
    FuncType,
    GlobalType,
    Limits,
    RecGroup,
    RefType,
    SubType,
    TableType,
    TagType,
)
from wasync._errors import DecodeError
from wasync._ir.instr import Body, Instr, decode_body, decode_expr

__all__ = [
    "BinaryModule",
    "Body",
    "ConstExpr",
    "CustomSection",
    "Data",
    "Element",
    "Export",
    "FuncBody",
    "Global",
    "Import",
    "ImportDesc",
    "SectionId",
    "SegmentMode",
    "Table",
]


class SectionId(enum.IntEnum):
    CUSTOM = 0
    TYPE = 1
    IMPORT = 2
    FUNCTION = 3
    TABLE = 4
    MEMORY = 5
    GLOBAL = 6
    EXPORT = 7
    START = 8
    ELEMENT = 9
    CODE = 10
    DATA = 11
    DATA_COUNT = 12
    TAG = 13

    def __str__(self) -> str:
        return self.name.lower().replace("_", "")


# The order in which known sections must appear.
SECTION_ORDER: tuple[SectionId, ...] = (
    SectionId.TYPE,
    SectionId.IMPORT,
    SectionId.FUNCTION,
    SectionId.TABLE,
    SectionId.MEMORY,
    SectionId.TAG,
    SectionId.GLOBAL,
    SectionId.EXPORT,
    SectionId.START,
    SectionId.ELEMENT,
    SectionId.DATA_COUNT,
    SectionId.CODE,
    SectionId.DATA,
)

ImportDesc: TypeAlias = int | TableType | Limits | GlobalType | TagType
"""What an import brings: a type index (functions), a table, memory, global or tag type."""


@dataclass(frozen=True, slots=True)
class Import:
    module: str
    name: str
    kind: ExternKind
    desc: ImportDesc


@dataclass(frozen=True, slots=True)
class Export:
    name: str
    kind: ExternKind
    index: int


@dataclass(frozen=True, slots=True)
class ConstExpr:
    """A constant expression, kept as its encoding (including the final ``end``)."""

    raw: bytes

    def instrs(self) -> list[Instr]:
        """Decode the expression into instructions (the final ``end`` included)."""
        return decode_expr(self.raw)


@dataclass(frozen=True, slots=True)
class Table:
    type: TableType
    init: ConstExpr | None = None  # Wasm 3.0 tables may carry an initializer


@dataclass(frozen=True, slots=True)
class Global:
    type: GlobalType
    init: ConstExpr


class SegmentMode(enum.Enum):
    ACTIVE = "active"
    PASSIVE = "passive"
    DECLARATIVE = "declarative"


@dataclass(frozen=True, slots=True)
class Element:
    """An element segment. `items` are function indices when `flags` says so
    (encodings 0 to 3) and constant expressions otherwise (4 to 7)."""

    mode: SegmentMode
    type: RefType
    items: tuple[int, ...] | tuple[ConstExpr, ...]
    table: int = 0
    offset: ConstExpr | None = None
    flags: int = 0  # the binary encoding (0..7) the segment was read with

    @property
    def uses_exprs(self) -> bool:
        return bool(self.flags & 4)


@dataclass(frozen=True, slots=True)
class Data:
    mode: SegmentMode
    init: bytes
    memory: int = 0
    offset: ConstExpr | None = None
    flags: int = 0  # the binary encoding (0..2) the segment was read with


@dataclass(frozen=True, slots=True)
class CustomSection:
    name: str
    data: bytes  # the payload after the name
    # The known section this one follows in the binary (None: before all of them).
    after: SectionId | None = None
    # The section's original bytes (id and size included), written back as they
    # were while they still encode this name and payload.
    raw: bytes | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, eq=False, slots=True)
class FuncBody:
    """A function body (locals and code). `raw` is its encoding; `offset` where it
    started in the binary it was read from (for error messages)."""

    raw: bytes
    offset: int = 0

    def decode(self, *, func_index: int | None = None) -> Body:
        """Decode locals and instructions into IR."""
        return decode_body(self.raw, base=self.offset, func_index=func_index)


@dataclass(eq=False)
class BinaryModule:
    """A WebAssembly module. Index spaces (functions, tables, memories, globals,
    tags) start with the imports of that kind, as in the binary."""

    types: list[RecGroup] = field(default_factory=list)
    imports: list[Import] = field(default_factory=list)
    functions: list[int] = field(default_factory=list)  # type index per defined function
    tables: list[Table] = field(default_factory=list)
    memories: list[Limits] = field(default_factory=list)
    tags: list[TagType] = field(default_factory=list)
    globals: list[Global] = field(default_factory=list)
    exports: list[Export] = field(default_factory=list)
    start: int | None = None
    elements: list[Element] = field(default_factory=list)
    data_count: int | None = None  # None: no data count section
    codes: list[FuncBody] = field(default_factory=list)
    datas: list[Data] = field(default_factory=list)
    customs: list[CustomSection] = field(default_factory=list)
    version: int = 1
    # Known sections present in the binary even when empty (written back as such).
    present: set[SectionId] = field(default_factory=set)
    # Original bytes of each known section and a snapshot of what was decoded from
    # it: a section whose entries still equal the snapshot is written back as is.
    _raw: dict[SectionId, tuple[bytes, object]] = field(default_factory=dict, repr=False)

    # -- index spaces ---------------------------------------------------------

    def type_list(self) -> list[SubType]:
        """All defined types in index order (rec groups flattened)."""
        return [t for group in self.types for t in group.types]

    def imports_of(self, kind: ExternKind) -> list[Import]:
        return [i for i in self.imports if i.kind is kind]

    @property
    def num_imported_funcs(self) -> int:
        return sum(1 for i in self.imports if i.kind is ExternKind.FUNC)

    def func_type_indices(self) -> list[int]:
        """The type index of every function, imported ones first."""
        out = [i.desc for i in self.imports if isinstance(i.desc, int)]
        return out + list(self.functions)

    def func_type(self, func_index: int) -> FuncType:
        """The signature of function `func_index` (imports included)."""
        types = self.type_list()
        comp = types[self.func_type_indices()[func_index]].comp
        if not isinstance(comp, FuncType):
            raise TypeError(f"function {func_index} has a non-function type")
        return comp

    def body(self, func_index: int) -> Body:
        """Decode the body of function `func_index` (an index in the function
        index space, so imported functions come first and have no body)."""
        nimp = self.num_imported_funcs
        if not nimp <= func_index < nimp + len(self.codes):
            raise IndexError(
                f"function {func_index} has no body (imports: 0..{nimp - 1}, "
                f"defined: {nimp}..{nimp + len(self.codes) - 1})"
            )
        code = self.codes[func_index - nimp]
        try:
            return decode_body(
                code.raw,
                base=code.offset,
                func_index=func_index,
                has_data_count=self.data_count is not None,
            )
        except DecodeError as e:
            e.locate(section="code", func_name=self.function_names().get(func_index))
            raise

    def function_names(self) -> dict[int, str]:
        """Function names from the ``name`` custom section (empty if absent or
        malformed: custom sections are never an error)."""
        for custom in self.customs:
            if custom.name == "name":
                return function_names(custom.data)
        return {}
