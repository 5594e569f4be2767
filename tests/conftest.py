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
    """Print the counts collected by the corpus tests (spec suite, Asyncify differential)."""
    import sys  # noqa: PLC0415

    for module, title in (
        ("tests.test_spec_corpus", "spec test suite"),
        ("tests.test_asyncify_differential", "Asyncify differential"),
    ):
        mod = sys.modules.get(module)
        report = getattr(mod, "REPORT", None)
        if not report:
            continue
        terminalreporter.section(title)
        for key, value in sorted(report.items()):
            terminalreporter.write_line(f"{key}: {value:,}")
        for key, seconds in sorted(getattr(mod, "TIMES", {}).items()):
            terminalreporter.write_line(f"time in {key}: {seconds:.1f} s")
