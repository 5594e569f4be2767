"""Shared fixtures: paths to the shared corpora and a WAT compiler."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
SPEC_ROOT = SHARED / "spec-testsuite"


def wat(text: str) -> bytes:
    """Compile WebAssembly text with wasmtime's parser (knows every proposal)."""
    import wasmtime  # noqa: PLC0415 - imported where needed: slow to load

    return bytes(wasmtime.wat2wasm(text))


@pytest.fixture(scope="session")
def spec_root() -> Path:
    if not SPEC_ROOT.is_dir():
        pytest.skip(f"spec test suite not found at {SPEC_ROOT} (../shared beside the repo)")
    return SPEC_ROOT
