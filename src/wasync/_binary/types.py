"""WebAssembly types: value, reference, heap, composite, limits, externals.

Value types are interned: the numeric types are members of :class:`NumType`
and reference types are small frozen dataclasses, so types compare with ``==``
and hash cheaply. Encoding-only details (the long ``0x63 ht`` spelling of a
nullable abstract reference, an explicit ``sub final`` prefix, a one-type
``rec`` group) are remembered for byte-exact re-encoding but ignored by
equality.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TypeAlias

__all__ = [
    "AbsHeap",
    "ArrayType",
    "CompType",
    "ExternKind",
    "FieldType",
    "FuncType",
    "GlobalType",
    "HeapType",
    "Limits",
    "NumType",
    "PackedType",
    "RecGroup",
    "RefType",
    "StorageType",
    "StructType",
    "SubType",
    "TableType",
    "TagType",
    "ValType",
]


class NumType(enum.Enum):
    """Numeric and vector value types, valued by their encoding byte."""

    I32 = 0x7F
    I64 = 0x7E
    F32 = 0x7D
    F64 = 0x7C
    V128 = 0x7B

    def __str__(self) -> str:
        return self.name.lower()


class PackedType(enum.Enum):
    """Packed storage types of struct and array fields."""

    I8 = 0x78
    I16 = 0x77

    def __str__(self) -> str:
        return self.name.lower()


class AbsHeap(enum.Enum):
    """Abstract heap types, valued by their encoding byte."""

    NOEXN = 0x74
    NOFUNC = 0x73
    NOEXTERN = 0x72
    NONE = 0x71
    FUNC = 0x70
    EXTERN = 0x6F
    ANY = 0x6E
    EQ = 0x6D
    I31 = 0x6C
    STRUCT = 0x6B
    ARRAY = 0x6A
    EXN = 0x69

    def __str__(self) -> str:
        return self.name.lower()


HeapType: TypeAlias = AbsHeap | int  # an abstract heap type or a type index


@dataclass(frozen=True, slots=True)
class RefType:
    """``(ref null? ht)``."""

    nullable: bool
    heap: HeapType
    # Encoded as `0x63 ht` although a one-byte shorthand exists (encoding only).
    long_form: bool = field(default=False, compare=False)

    def __str__(self) -> str:
        if self.nullable and isinstance(self.heap, AbsHeap) and not self.long_form:
            return f"{self.heap}ref"
        heap = f"${self.heap}" if isinstance(self.heap, int) else str(self.heap)
        return f"(ref {'null ' if self.nullable else ''}{heap})"


ValType: TypeAlias = NumType | RefType
StorageType: TypeAlias = ValType | PackedType

FUNCREF = RefType(True, AbsHeap.FUNC)
EXTERNREF = RefType(True, AbsHeap.EXTERN)
EXNREF = RefType(True, AbsHeap.EXN)


@dataclass(frozen=True, slots=True)
class FuncType:
    params: tuple[ValType, ...]
    results: tuple[ValType, ...]

    def __str__(self) -> str:
        p = " ".join(map(str, self.params))
        r = " ".join(map(str, self.results))
        return f"[{p}] -> [{r}]"


@dataclass(frozen=True, slots=True)
class FieldType:
    storage: StorageType
    mutable: bool

    @property
    def unpacked(self) -> ValType:
        """The operand type of the field: packed fields read as i32."""
        return NumType.I32 if isinstance(self.storage, PackedType) else self.storage


@dataclass(frozen=True, slots=True)
class StructType:
    fields: tuple[FieldType, ...]


@dataclass(frozen=True, slots=True)
class ArrayType:
    field: FieldType


CompType: TypeAlias = FuncType | StructType | ArrayType


@dataclass(frozen=True, slots=True)
class SubType:
    """A defined type: a composite type with its declared supertypes."""

    comp: CompType
    supertypes: tuple[int, ...] = ()
    final: bool = True
    # Written with an explicit `sub`/`sub final` prefix (encoding only).
    explicit: bool = field(default=False, compare=False)


@dataclass(frozen=True, slots=True)
class RecGroup:
    """A recursion group; a plain type is a group of one."""

    types: tuple[SubType, ...]
    # Written with the `rec` prefix (encoding only; always true for len != 1).
    explicit: bool = field(default=False, compare=False)


@dataclass(frozen=True, slots=True)
class Limits:
    """Limits of a memory or table; `is64` selects the i64 address type."""

    min: int
    max: int | None = None
    shared: bool = False
    is64: bool = False
    page_size_log2: int | None = None  # custom-page-sizes; None means the default

    @property
    def address_type(self) -> NumType:
        return NumType.I64 if self.is64 else NumType.I32


@dataclass(frozen=True, slots=True)
class TableType:
    elem: RefType
    limits: Limits


@dataclass(frozen=True, slots=True)
class GlobalType:
    type: ValType
    mutable: bool


@dataclass(frozen=True, slots=True)
class TagType:
    type_index: int
    attribute: int = 0


class ExternKind(enum.IntEnum):
    """Kinds of imports and exports, valued by their encoding byte."""

    FUNC = 0
    TABLE = 1
    MEMORY = 2
    GLOBAL = 3
    TAG = 4

    def __str__(self) -> str:
        return self.name.lower()
