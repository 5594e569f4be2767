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


@pytest.fixture(scope="module")
def cli_echo() -> bytes:
    from tests.support.corpus import compile_c  # noqa: PLC0415

    return compile_c(Path(__file__).parent / "data" / "wasi_cli" / "cli_echo.c")


@pytest.mark.parametrize("how", [[], ["--strategy", "thread"], ["--asyncify"]])
def test_run_wasi_program(cli_echo: bytes, tmp_path: Path, how: list[str]) -> None:
    """`wasync run`: arguments, --env, stdin, --dir HOST::GUEST, stderr and the
    exit status reach the program and come back, on each strategy."""
    prog = tmp_path / "echo.wasm"
    prog.write_bytes(cli_echo)
    work = tmp_path / "work"
    work.mkdir()
    (work / "in.txt").write_text("hello, wasi")
    cache = tmp_path / "cache"
    proc = subprocess.run(
        [sys.executable, "-m", "wasync.cli", "run", *how, "--dir", f"{work}::/work",
         "--env", "GREETING=hi there", str(prog), "one", "two words", "7"],
        input=b"a line of input\n",
        capture_output=True,
        timeout=120,
        check=False,
        env={"WASYNC_CACHE_DIR": str(cache), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert proc.returncode == 7, proc.stderr.decode()
    assert proc.stdout.decode().splitlines() == [
        "arg[1]=one",
        "arg[2]=two words",
        "arg[3]=7",
        "GREETING=hi there",
        "stdin: a line of input",
        "escape: refused",
    ]
    assert proc.stderr.decode() == "copied 11 bytes\n"
    assert (work / "out.txt").read_text() == "HELLO, WASI"
    if how == ["--asyncify"]:
        assert len(list((cache / "asyncify").glob("*.wasm"))) == 1  # cached for the next run


def test_run_reports_bad_options_and_traps(tmp_path: Path) -> None:
    trapping = tmp_path / "trap.wasm"
    trapping.write_bytes(
        wat('(module (memory (export "memory") 1) (func (export "_start") unreachable))')
    )
    proc = subprocess.run(
        [sys.executable, "-m", "wasync.cli", "run", str(trapping)],
        capture_output=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 134
    assert "trapped" in proc.stderr.decode()
    assert "Traceback" not in proc.stderr.decode()
    with pytest.raises(SystemExit, match="not a directory"):
        main(["run", "--dir", str(tmp_path / "missing"), str(trapping)])
    with pytest.raises(SystemExit, match=r"HOST\[::GUEST\]"):
        main(["run", "--dir", "x::", str(trapping)])
    no_start = tmp_path / "lib.wasm"
    no_start.write_bytes(wat('(module (memory (export "memory") 1))'))
    assert main(["run", str(no_start)]) == 1  # a clean "no _start" error
