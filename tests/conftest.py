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


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the spec-suite counts collected by tests/test_spec_corpus.py."""
    import sys  # noqa: PLC0415

    mod = sys.modules.get("tests.test_spec_corpus")
    report = getattr(mod, "REPORT", None)
    if not report:
        return
    terminalreporter.section("spec test suite")
    for key, value in sorted(report.items()):
        terminalreporter.write_line(f"{key}: {value:,}")
