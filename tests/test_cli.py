from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import wat
from wasync.cli import main

MODULE = """(module
  (import "env" "sleep" (func $sleep (param i32)))
  (memory (export "memory") 1 2 shared)
  (func $work (export "work") (param i32) (result i32) (local i64)
    (call $sleep (local.get 0)) (i32.atomic.load (i32.const 0)))
  (func (export "simd") (result v128) (v128.const i64x2 1 2)))"""


@pytest.fixture
def wasm_file(tmp_path: Path) -> Path:
    p = tmp_path / "m.wasm"
    p.write_bytes(wat(MODULE))
    return p


def test_inspect_summary(wasm_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(wasm_file)]) == 0
    out = capsys.readouterr().out
    assert "env.sleep: func [i32] -> []" in out
    assert "work: func 1" in out
    assert "memory: memory 0" in out
    for section in ("type", "import", "function", "memory", "export", "code"):
        assert f"\n  {section} " in out
    assert "threads" in out  # the shared memory


def test_inspect_functions_lists_names_sizes_and_counts(
    wasm_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["inspect", "--functions", str(wasm_file)]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if "work" in x and "[i32] -> [i32]" in x)
    index, size, count = line.split()[:3]
    assert index == "1"
    assert int(size) > 0
    assert count == "5"  # local.get, call, i32.const, i32.atomic.load, end
    assert "simd" in out  # features found in the code
    assert "sleep" in out


def test_inspect_json(wasm_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", "--json", "--functions", str(wasm_file)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["counts"]["functions"] == 3
    assert [f["name"] for f in doc["functions"]] == ["sleep", "work", None]


def test_inspect_malformed_file_is_a_clean_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.wasm"
    bad.write_bytes(b"\x00asm\x01\x00\x00\x00\x01\x09\x01")
    assert main(["inspect", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("wasync: error: section size mismatch")
    assert "byte offset 8" in err


def test_inspect_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="cannot read"):
        main(["inspect", str(tmp_path / "nope.wasm")])


def test_console_entry_point_and_demo() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "wasync", "demo"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert "round trip: module identical, body identical" in proc.stdout
    assert "DecodeError: illegal opcode 0xff" in proc.stdout
    for strategy in ("fiber", "thread", "asyncify"):
        line = next(x for x in proc.stdout.splitlines() if x.strip().startswith(strategy))
        assert "results all 28" in line
