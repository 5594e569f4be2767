"""Real-world binaries from the npm registry round-trip byte for byte.

Each module is fetched once with ``npm pack`` into the test cache; the test
skips (visibly) only when npm is not installed.
"""

from __future__ import annotations

import time

import pytest

import wasync
from tests.support.corpus import REAL_WORLD, NpmWasm

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("pkg", REAL_WORLD, ids=[p.spec for p in REAL_WORLD])
def test_real_world_module_round_trips(pkg: NpmWasm, capsys: pytest.CaptureFixture[str]) -> None:
    data = pkg.fetch().read_bytes()
    if pkg.size is not None:
        assert len(data) == pkg.size, f"{pkg.spec}: unexpected file size (pin broken?)"
    t0 = time.perf_counter()
    m = wasync.decode_module(data)
    assert wasync.encode_module(m) == data
    t1 = time.perf_counter()
    assert {i.module for i in m.imports} == set(pkg.import_modules)

    mt = wasync.ModuleTypes.from_module(m)
    nimp = m.num_imported_funcs
    instructions = 0
    for i, code in enumerate(m.codes):
        body = m.body(nimp + i)
        instructions += len(body.instrs)
        assert wasync.encode_body(body) == code.raw, f"function {nimp + i}"
        wasync.type_function(m, nimp + i, body=body, module_types=mt)
    t2 = time.perf_counter()

    # The canonical writer produces a module that decodes to the same model.
    again = wasync.decode_module(wasync.encode_module(m, canonical=True))
    assert again.types == m.types
    assert again.imports == m.imports
    assert again.exports == m.exports
    assert again.elements == m.elements
    assert again.datas == m.datas
    assert [c.raw for c in again.codes] == [c.raw for c in m.codes]
    with capsys.disabled():
        print(
            f"\n{pkg.spec} {pkg.path}: {len(data):,} bytes, {len(m.codes):,} bodies, "
            f"{instructions:,} instructions; lazy round trip {t1 - t0:.2f}s, "
            f"bodies decoded + typed + re-encoded {t2 - t1:.2f}s"
        )
