"""Compiled modules and the engines they are compiled for."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import wasmtime

from wasync._binary.decode import decode_module
from wasync._binary.types import ExternKind, FuncType, GlobalType, Limits, TableType, TagType
from wasync._errors import ValidationError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from wasync._binary.module import BinaryModule

__all__ = ["ASYNCIFY_EXPORTS", "WASM_FEATURES", "ExportInfo", "ImportInfo", "Module", "engine_for"]

# The exports a module transformed by Asyncify has (Binaryen's ABI).
ASYNCIFY_EXPORTS = (
    "asyncify_start_unwind",
    "asyncify_stop_unwind",
    "asyncify_start_rewind",
    "asyncify_stop_rewind",
    "asyncify_get_state",
)

# Every proposal wasmtime implements that the spec test suite uses.
WASM_FEATURES = (
    "wasm_threads",
    "wasm_reference_types",
    "wasm_simd",
    "wasm_relaxed_simd",
    "wasm_bulk_memory",
    "wasm_multi_value",
    "wasm_multi_memory",
    "wasm_memory64",
    "wasm_tail_call",
    "wasm_function_references",
    "wasm_gc",
    "wasm_exceptions",
    "wasm_wide_arithmetic",
    "wasm_custom_page_sizes",
)
_engines: dict[bool, wasmtime.Engine] = {}
_engines_lock = threading.Lock()


def engine_for(*, epochs: bool) -> wasmtime.Engine:
    """The process-wide engine, with or without epoch interruption (the CPU
    guard needs it; it costs a check at every loop header, so it is opt-in)."""
    with _engines_lock:
        engine = _engines.get(epochs)
        if engine is None:
            cfg = wasmtime.Config()
            for feature in WASM_FEATURES:
                setattr(cfg, feature, True)
            cfg.epoch_interruption = epochs
            engine = _engines[epochs] = wasmtime.Engine(cfg)
        return engine


@dataclass(frozen=True, slots=True)
class ImportInfo:
    module: str
    name: str
    kind: ExternKind
    type: FuncType | TableType | Limits | GlobalType | TagType

    def __str__(self) -> str:
        return f"{self.module}.{self.name} ({self.kind} {self.type})"


@dataclass(frozen=True, slots=True)
class ExportInfo:
    name: str
    kind: ExternKind
    type: FuncType | TableType | Limits | GlobalType | TagType | None


class Module:
    """A WebAssembly module ready to instantiate with :func:`wasync.instantiate`.

    Decoding happens here (malformed input raises :class:`~wasync.DecodeError`);
    compilation happens on first instantiation and is cached per engine."""

    def __init__(self, wasm: bytes, *, name: str | None = None) -> None:
        self.wasm = bytes(wasm)
        self.name = name
        self.binary: BinaryModule = decode_module(self.wasm)
        types = self.binary.type_list()
        self.imports: tuple[ImportInfo, ...] = tuple(
            ImportInfo(i.module, i.name, i.kind, _desc_type(i.desc, types))
            for i in self.binary.imports
        )
        func_types = self.binary.func_type_indices()
        self.exports: tuple[ExportInfo, ...] = tuple(
            ExportInfo(
                e.name, e.kind, _export_type(self.binary, e.kind, e.index, types, func_types)
            )
            for e in self.binary.exports
        )
        self._export_index = {e.name: e for e in self.exports}
        self._compiled: dict[int, wasmtime.Module] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_file(cls, path: str | Path) -> Module:
        p = Path(path)
        return cls(p.read_bytes(), name=p.name)

    @classmethod
    def from_bytes(cls, data: bytes, *, name: str | None = None) -> Module:
        return cls(data, name=name)

    @classmethod
    def from_wat(cls, text: str, *, name: str | None = None) -> Module:
        """Compile WebAssembly text (with wasmtime's parser)."""
        try:
            return cls(bytes(wasmtime.wat2wasm(text)), name=name)
        except wasmtime.WasmtimeError as e:
            raise ValidationError(f"cannot parse WebAssembly text: {e}") from None

    @property
    def has_asyncify_abi(self) -> bool:
        """Whether the module exports Binaryen's Asyncify functions."""
        names = {e.name for e in self.exports if e.kind is ExternKind.FUNC}
        return all(n in names for n in ASYNCIFY_EXPORTS)

    def export(self, name: str) -> ExportInfo | None:
        return self._export_index.get(name)

    def compiled(self, engine: wasmtime.Engine) -> wasmtime.Module:
        """The wasmtime module for `engine` (compiled once per engine)."""
        key = id(engine)
        with self._lock:
            mod = self._compiled.get(key)
            if mod is None:
                try:
                    mod = wasmtime.Module(engine, self.wasm)
                except wasmtime.WasmtimeError as e:
                    first = str(e).splitlines()[0]
                    raise ValidationError(f"wasmtime rejected the module: {first}") from None
                self._compiled[key] = mod
            return mod

    def __repr__(self) -> str:
        label = f" {self.name!r}" if self.name else ""
        return f"<wasync.Module{label}: {len(self.imports)} imports, {len(self.exports)} exports>"


def _desc_type(
    desc: object, types: Sequence[object]
) -> FuncType | TableType | Limits | GlobalType | TagType:
    if isinstance(desc, int):
        comp = getattr(types[desc], "comp", None) if desc < len(types) else None
        if not isinstance(comp, FuncType):
            raise ValidationError(f"import of type {desc}, which is not a function type")
        return comp
    assert isinstance(desc, (TableType, Limits, GlobalType, TagType))
    return desc


def _export_type(
    m: BinaryModule, kind: ExternKind, index: int, types: Sequence[object], func_types: list[int]
) -> FuncType | TableType | Limits | GlobalType | TagType | None:
    if kind is ExternKind.FUNC and index < len(func_types):
        comp = getattr(types[func_types[index]], "comp", None)
        return comp if isinstance(comp, FuncType) else None
    if kind is ExternKind.MEMORY:
        mems = [i.desc for i in m.imports if isinstance(i.desc, Limits)] + list(m.memories)
        return mems[index] if index < len(mems) else None
    return None
