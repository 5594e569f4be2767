"""C programs compiled with a real toolchain (zig cc, wasm32-wasi) round-trip."""

from __future__ import annotations

from pathlib import Path

import pytest

import wasync
from tests.support.corpus import c_programs, compile_c

pytestmark = pytest.mark.slow

PROGRAMS = c_programs()
BUILDS = [("-O0", True), ("-O2", True), ("-Os", True), ("-O2", False)]


@pytest.mark.parametrize(
    ("opt", "strip"), BUILDS, ids=[f"{o}{'' if s else '-g'}" for o, s in BUILDS]
)
@pytest.mark.parametrize("program", PROGRAMS, ids=[p.stem for p in PROGRAMS])
def test_c_program_round_trips(program: Path, opt: str, strip: bool) -> None:
    data = compile_c(program, opt=opt, strip=strip)
    m = wasync.decode_module(data)
    assert wasync.encode_module(m) == data
    mt = wasync.ModuleTypes.from_module(m)
    nimp = m.num_imported_funcs
    for i, code in enumerate(m.codes):
        body = m.body(nimp + i)
        assert wasync.encode_body(body) == code.raw, f"function {nimp + i}"
        wasync.type_function(m, nimp + i, body=body, module_types=mt)
    assert any(i.module == "wasi_snapshot_preview1" for i in m.imports)
    if not strip:
        # Unstripped builds carry DWARF and a name section, kept byte for byte.
        assert {c.name for c in m.customs} >= {"name", ".debug_info"}
        assert "_start" in m.function_names().values()
