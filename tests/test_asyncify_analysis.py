"""Asyncify's analysis and options against Binaryen.

* Binaryen's lit inputs (``../shared/binaryen-asyncify-tests/lit``): for every
  module of every file and every ``RUN`` line's pass arguments, the set of
  functions wasync instruments equals the set Binaryen instruments, read two
  ways: from the file's ``CHECK`` lines (Binaryen at the upstream commit: a
  function is instrumented when its output contains ``$__asyncify_unwind``),
  and from the real ``wasm-opt --asyncify`` installed here (Binaryen 108), run
  on the very binary wasync analyses. Binaryen 108 predates some behaviour of
  the upstream commit (no ``asyncify-propagate-addlist``; lists split on
  commas only, so a one-name-per-line file is one long name; no multiple
  memories; memory64 output fails its validator, so it runs with ``-n``): the
  comparison with it uses the options 108 actually applies.
* The README's summary table, function by function.
* Binaryen's verbose output (``asyncify_verbose.wast``), line by line.
* Option parsing (pass-argument spellings, response files, Binaryen's list
  splitting), conflicts, warnings, names, the in-wasm runtime rules, wasync's
  extensions (tail calls, ``call_ref``) and precise indirect calls.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path

import pytest
import wasmtime

import wasync
from tests.conftest import SHARED, wat
from wasync._asyncify.analysis import analyze, binaryen_function_names, resolve_memory
from wasync._asyncify.options import (
    AsyncifyOptions,
    handle_bracketing,
    split_list,
    trim,
    wildcard_match,
)

LIT = SHARED / "binaryen-asyncify-tests" / "lit"
NL_FILE = LIT / "asyncify-foo,bar-nl.txt"


# -- reading Binaryen's lit files ----------------------------------------------


def _skip_comment_or_string(text: str, j: int) -> int | None:
    """The position after a comment or string starting at `j`, or None."""
    if text.startswith(";;", j):
        end = text.find("\n", j)
        return len(text) if end < 0 else end
    if text.startswith("(;", j):
        depth, j = 1, j + 2
        while depth:
            if text.startswith("(;", j):
                depth, j = depth + 1, j + 2
            elif text.startswith(";)", j):
                depth, j = depth - 1, j + 2
            else:
                j += 1
        return j
    if text[j] == '"':
        j += 1
        while text[j] != '"':
            j += 2 if text[j] == "\\" else 1
        return j + 1
    return None


def _strip_comments(text: str) -> str:
    out: list[str] = []
    j = 0
    while j < len(text):
        after = _skip_comment_or_string(text, j)
        if after is None:
            out.append(text[j])
            j += 1
        else:
            if text[j] == '"':
                out.append(text[j:after])
            else:
                out.append(" ")
            j = after
    return "".join(out)


def split_modules(text: str) -> list[tuple[str, str]]:
    """Each top-level form as (its text without comments, the source from its
    start to the next form: it holds the form's CHECK comments)."""
    spans: list[tuple[int, int]] = []
    depth = start = j = 0
    while j < len(text):
        after = _skip_comment_or_string(text, j)
        if after is not None and text[j] != '"':
            j = after
            continue
        if after is not None:
            j = after
            continue
        if text[j] == "(":
            if depth == 0:
                start = j
            depth += 1
        elif text[j] == ")":
            depth -= 1
            if depth == 0:
                spans.append((start, j + 1))
        j += 1
    out = []
    for k, (a, b) in enumerate(spans):
        end = spans[k + 1][0] if k + 1 < len(spans) else len(text)
        out.append((_strip_comments(text[a:b]), text[a:end]))
    return out


def checked_functions(chunk: str, prefix: str) -> dict[str, bool]:
    """Function name -> instrumented, from a module's CHECK lines."""
    funcs: dict[str, bool] = {}
    current: str | None = None
    for line in chunk.splitlines():
        m = re.match(r"\s*;; (\w+)(-NEXT)?:\s?(.*)$", line)
        if m is None or m.group(1) != prefix:
            continue
        fm = re.match(r"\s*\(func \$(\S+)", m.group(3))
        if m.group(2) is None:
            current = fm.group(1) if fm else None
            if current is not None:
                funcs[current] = False
        elif current is not None and "$__asyncify_unwind" in m.group(3):
            funcs[current] = True
    return funcs


def run_lines(text: str) -> list[tuple[list[str], str]]:
    """(pass arguments, CHECK prefix) of every RUN line."""
    runs = []
    for line in text.splitlines():
        m = re.match(r";; RUN: (.*)", line)
        if m is None:
            continue
        command = m.group(1).split("|")[0]
        args = [
            t.split("=", 1)[1].replace("%S", str(LIT))
            for t in shlex.split(command)
            if t.startswith("--pass-arg=")
        ]
        pm = re.search(r"--check-prefix[= ](\w+)", m.group(1))
        runs.append((args, pm.group(1) if pm else "CHECK"))
    return runs


def wasm_opt() -> str:
    exe = shutil.which("wasm-opt")
    if exe is None:
        pytest.skip("wasm-opt (Binaryen) is not on PATH")
    return exe


def to_wasm(module_text: str) -> bytes:
    """Compile a lit module: with wasmtime's parser after rewriting Binaryen's
    tuple locals (unused, or set from a multivalue call: dropped instead), else
    (legacy exception handling with Binaryen's ``pop``) with wasm-opt itself."""
    fixed = re.sub(
        r"\(local (\$[\w-]+) \(tuple ([^)]*)\)\)",
        lambda m: " ".join(
            f"(local {m.group(1)}_{i} {t})" for i, t in enumerate(m.group(2).split())
        ),
        module_text,
    )
    fixed = fixed.replace("(local.set $x (call $import-mv))", "(drop (drop (call $import-mv)))")
    try:
        return wat(fixed)
    except wasmtime.WasmtimeError:
        pass
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "m.wat", Path(tmp) / "m.wasm"
        src.write_text(module_text)
        subprocess.run(
            [wasm_opt(), "--all-features", str(src), "-g", "-o", str(out)],
            check=True,
            capture_output=True,
        )
        return out.read_bytes()


@cache
def binaryen_108(wasm: bytes, args: tuple[str, ...]) -> tuple[frozenset[str], str]:
    """Functions ``wasm-opt --asyncify`` instruments (by name), and its stderr."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "m.wasm"
        src.write_bytes(wasm)
        proc = subprocess.run(
            [
                wasm_opt(),
                "--all-features",
                "-n",  # 108's memory64 output does not validate; the choice is still right
                "--asyncify",
                *(f"--pass-arg={a}" for a in args),
                str(src),
                "-S",
                "-o",
                "-",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
    assert proc.returncode == 0, proc.stderr
    instrumented: set[str] = set()
    current: str | None = None
    for line in proc.stdout.splitlines():
        m = re.match(r" \(func \$(\S+)", line)
        if m:
            current = m.group(1)
        elif line.startswith(" ("):
            current = None
        elif current is not None and "$__asyncify_unwind" in line:
            instrumented.add(current)
    return frozenset(instrumented), proc.stderr


def _lit_cases() -> list[tuple[str, int, tuple[str, ...], str]]:
    if not LIT.is_dir():
        return []
    cases = []
    for path in sorted(LIT.glob("*.wast")):
        text = path.read_text()
        for index, _ in enumerate(split_modules(text)):
            for args, prefix in run_lines(text):
                if args == ["asyncify-verbose"]:
                    continue  # checked against its log output below
                cases.append((path.name, index, tuple(args), prefix))
    return cases


LIT_CASES = _lit_cases()


@cache
def lit_module(file: str, index: int) -> tuple[bytes, str]:
    if not LIT.is_dir():
        pytest.skip(f"Binaryen's lit tests not found at {LIT}")
    module_text, chunk = split_modules((LIT / file).read_text())[index]
    return to_wasm(module_text), chunk


def options_applied_by_108(options: AsyncifyOptions, args: tuple[str, ...]) -> AsyncifyOptions:
    """What Binaryen 108 makes of these arguments: no propagate-addlist, and
    lists split on commas only."""
    options = dataclasses.replace(options, propagate_addlist=False)
    for arg in args:
        key, _, value = arg.partition("@")
        if value.startswith("@"):
            text = trim(Path(value[1:]).read_text())
            as_108 = tuple(handle_bracketing(text.split(",")))
            if key in ("asyncify-removelist", "asyncify-blacklist"):
                options = dataclasses.replace(options, removelist=as_108)
            elif key in ("asyncify-onlylist", "asyncify-whitelist"):
                options = dataclasses.replace(options, onlylist=as_108)
            elif key == "asyncify-addlist":
                options = dataclasses.replace(options, addlist=as_108)
    return options


def test_lit_cases_found() -> None:
    if not LIT.is_dir():
        pytest.skip(f"Binaryen's lit tests not found at {LIT}")
    # 23 modules (plus the verbose one, checked separately), 27 RUN lines' worth.
    assert len({(f, i) for f, i, _, _ in LIT_CASES}) == 23
    assert len(LIT_CASES) == 27


@pytest.mark.parametrize(
    ("file", "index", "args", "prefix"),
    LIT_CASES,
    ids=[f"{f.removesuffix('.wast')}#{i}:{','.join(a)}" for f, i, a, _ in LIT_CASES],
)
def test_lit_instrumented_functions(
    file: str, index: int, args: tuple[str, ...], prefix: str
) -> None:
    wasm, chunk = lit_module(file, index)
    module = wasync.decode_module(wasm)
    options = AsyncifyOptions.from_pass_args(args)
    result = analyze(module, options)
    ours = {result.names[f] for f in result.instrumented}
    assert set(result.instrumented) <= set(range(module.num_imported_funcs, len(result.names)))

    # Binaryen at the upstream commit, from the CHECK lines.
    checked = checked_functions(chunk, prefix)
    defined = set(result.names[module.num_imported_funcs :])
    assert defined <= set(checked), "every defined function has CHECK lines"
    assert ours == {name for name, inst in checked.items() if inst}

    # Binaryen 108, the tool installed here.
    if (
        len(module.memories) + sum(1 for i in module.imports if i.kind is wasync.ExternKind.MEMORY)
        > 1
    ):
        pytest.skip("Binaryen 108 cannot read a module with several memories")
    as_108 = options_applied_by_108(options, args)
    theirs, _ = binaryen_108(wasm, args)
    expected_108 = analyze(module, as_108).instrumented
    assert theirs == {result.names[f] for f in expected_108}
    if as_108 == options:
        assert theirs == ours


# The README's summary of the lit table: (file, module, instrumented, not instrumented).
README_TABLE = [
    ("asyncify_enable-multivalue.wast", 0, {"first_event", "work"},
     {"do_sleep", "second_event", "stuff", "never_sleep"}),
    ("asyncify_enable-multivalue.wast", 1, {"calls-import", "calls-import2-if-else", "calls-loop",
     "calls-mix", "calls-mix-deep", "calls-import2-if-else-oneside"},
     {"calls-nothing", "boring", "boring-deep"}),
    ("asyncify_pass-arg=asyncify-addlist@foo.wast", 0, {"foo"}, {"bar", "nothing"}),
    ("asyncify_pass-arg=asyncify-addlist@foo_pass-arg=asyncify-propagate-addlist.wast", 0,
     {"foo", "call_foo"}, set()),
    ("asyncify_pass-arg=asyncify-blacklist@foo,bar.wast", 0, {"baz", "other2"},
     {"foo", "bar", "other1"}),
    ("asyncify_pass-arg=asyncify-onlylist@foo,bar.wast", 0, {"foo", "bar"},
     {"baz", "other1", "other2"}),
    ("asyncify_pass-arg=asyncify-eh.wast", 0, {"foo"}, set()),
]  # fmt: skip


@pytest.mark.parametrize(("file", "index", "yes", "no"), README_TABLE)
def test_readme_table(file: str, index: int, yes: set[str], no: set[str]) -> None:
    wasm, _ = lit_module(file, index)
    module = wasync.decode_module(wasm)
    args = next(a for f, i, a, _ in LIT_CASES if f == file and i == index)
    result = analyze(module, AsyncifyOptions.from_pass_args(args))
    ours = {result.names[f] for f in result.instrumented}
    assert yes <= ours
    assert not (no & ours)


def test_readme_table_imports_and_indirect() -> None:
    wasm, _ = lit_module("asyncify_pass-arg=asyncify-imports@env.import,env.import2.wast", 1)
    module = wasync.decode_module(wasm)
    every = analyze(module)
    listed = analyze(module, AsyncifyOptions(imports=("env.import", "env.import2")))
    only_import3 = {"calls-import2-if-else", "calls-import2-if-else-oneside",
                    "calls-import2-if-else-oneside2", "calls-loop"}  # fmt: skip
    names = every.names
    assert {names[f] for f in every.instrumented - listed.instrumented} == only_import3
    assert {"calls-nothing", "boring", "boring-deep"}.isdisjoint(
        names[f] for f in every.instrumented
    )

    wasm, _ = lit_module("asyncify_pass-arg=asyncify-ignore-imports.wast", 0)
    result = analyze(wasync.decode_module(wasm), AsyncifyOptions(ignore_imports=True))
    assert {result.names[f] for f in result.instrumented} == {"calls-indirect"}

    wasm, _ = lit_module("asyncify_pass-arg=asyncify-ignore-indirect.wast", 0)
    module = wasync.decode_module(wasm)
    result = analyze(module, AsyncifyOptions(ignore_indirect=True))
    defined = set(result.names[module.num_imported_funcs :])
    assert {result.names[f] for f in result.instrumented} == defined - {"calls-indirect"}


def test_verbose_log_matches_binaryen() -> None:
    text = (LIT / "asyncify_verbose.wast").read_text() if LIT.is_dir() else ""
    if not text:
        pytest.skip("lit tests not found")
    wasm, _chunk = lit_module("asyncify_verbose.wast", 0)
    result = analyze(wasync.decode_module(wasm), AsyncifyOptions(verbose=True))
    expected = [line.split(";; CHECK: ", 1)[1] for line in text.splitlines() if "CHECK: [" in line]
    assert result.log == expected
    assert result.reasons[1] == "calls import env.import"
    assert result.reasons[2] == "calls calls-a-import which can change state"
    assert result.reasons[5] == "cannot change state (calls nothing that can)"


def test_warnings_match_binaryen_108() -> None:
    wasm, _ = lit_module(
        "asyncify_pass-arg=asyncify-asserts_pass-arg=asyncify-onlylist@waka.wast", 0
    )
    result = analyze(wasync.decode_module(wasm), AsyncifyOptions(onlylist=("waka",)))
    assert result.warnings == ["Asyncify onlylist contained a non-existing function name: 'waka'"]
    _, stderr = binaryen_108(wasm, ("asyncify-onlylist@waka",))
    assert "onlylist contained a non-existing function name: waka" in stderr
    assert result.instrumented == frozenset()


# -- options ------------------------------------------------------------------


def test_binaryen_string_helpers() -> None:
    assert trim("  a,b \n\t\0") == "  a,b"
    assert split_list("a,b,,c,") == (["a", "b", "", "c"], True)
    assert split_list(",a") == (["", "a"], True)
    assert split_list("") == ([], True)
    assert split_list("a,b\nc") == (["a,b", "c"], False)
    assert split_list("a\n\nb") == (["a", "", "b"], False)
    assert split_list("a,b\n") == (["a", "b\n"], True)  # a final newline is no line split
    assert handle_bracketing(["foo(int", " double)", "bar", "", "x<a", "b>"]) == [
        "foo(int, double)",
        "bar",
        "x<a,b>",
    ]
    with pytest.raises(wasync.AsyncifyError, match="failed to parse lists"):
        handle_bracketing(["foo(int"])
    assert wildcard_match("env.*", "env.sleep")
    assert wildcard_match("*", "")
    assert wildcard_match("a*b*c", "abxbc")
    assert wildcard_match("f*d_*", "fd_write_x")
    assert not wildcard_match("env.*", "wasi.env.x")
    assert not wildcard_match("a*b", "ab c")
    assert wildcard_match("a.b", "a.b")
    assert not wildcard_match("a.b", "axb")  # '.' is literal
    assert wildcard_match("x*", "x\ny")


def test_pass_arg_spellings(tmp_path: Path) -> None:
    o = AsyncifyOptions.from_pass_args(
        [
            "--pass-arg=asyncify-imports@env.sleep,wasi_snapshot_preview1.fd_*",
            "-pa",
            "asyncify-ignore-indirect",
            "--pass-arg",
            "asyncify-removelist@foo(int, double),bar",
            "asyncify-asserts",
            "--asyncify",
            "inline-max-size@5",  # another pass's argument: ignored
        ]
    )
    assert o.imports == ("env.sleep", "wasi_snapshot_preview1.fd_*")
    assert o.ignore_indirect
    assert o.asserts
    assert not o.verbose
    assert o.removelist == ("foo(int, double)", "bar")
    # The imports list is not bracket-joined.
    assert AsyncifyOptions.from_pass_args(["asyncify-imports@a(b,c)"]).imports == ("a(b", "c)")

    # Presence is what counts, except for ignore-imports.
    assert AsyncifyOptions.from_pass_args(["asyncify-ignore-indirect@"]).ignore_indirect
    assert not AsyncifyOptions.from_pass_args(["asyncify-ignore-imports@"]).ignore_imports
    assert AsyncifyOptions.from_pass_args(["asyncify-ignore-imports@x"]).ignore_imports
    # A later argument replaces an earlier one.
    assert AsyncifyOptions.from_pass_args(["asyncify-addlist@a", "asyncify-addlist@b"]).addlist == (
        "b",
    )
    # An empty imports list is no list: every import.
    assert AsyncifyOptions.from_pass_args(["asyncify-imports@"]).imports is None
    assert AsyncifyOptions.from_pass_args(["asyncify-imports@ \n"]).imports is None
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    assert AsyncifyOptions.from_pass_args([f"asyncify-imports@@{empty}"]).imports is None

    # Old names, and precedence of the new ones.
    with pytest.raises(wasync.AsyncifyError, match="only-list together with another list"):
        AsyncifyOptions.from_pass_args(["asyncify-blacklist@a", "asyncify-onlylist@b"])
    o = AsyncifyOptions.from_pass_args(["asyncify-removelist@a", "asyncify-blacklist@b"])
    assert o.removelist == ("a",)
    o = AsyncifyOptions.from_pass_args(["asyncify-removelist@", "asyncify-blacklist@b"])
    assert o.removelist == ("b",)
    assert AsyncifyOptions.from_pass_args(["asyncify-whitelist@w"]).onlylist == ("w",)
    assert AsyncifyOptions.from_pass_args(["asyncify-relocatable"]).import_globals
    assert AsyncifyOptions.from_pass_args(["asyncify-export-globals"]).export_globals

    o = AsyncifyOptions.from_pass_args(
        ["asyncify-in-secondary-memory", "asyncify-secondary-memory-size@ 3pages"]
    )
    assert (o.in_secondary_memory, o.secondary_memory_size) == (True, 3)
    o = AsyncifyOptions.from_pass_args(["asyncify-memory@mem2", "asyncify-propagate-addlist"])
    assert (o.memory, o.propagate_addlist) == ("mem2", True)
    assert AsyncifyOptions.from_pass_args(["asyncify-precise-indirect"]).precise_indirect


def test_blacklist_with_old_name_and_whitelist_conflict() -> None:
    # asyncify-blacklist and asyncify-whitelist: Binaryen reads both lists, so
    # together they conflict like their new names.
    with pytest.raises(wasync.AsyncifyError, match="only-list"):
        AsyncifyOptions.from_pass_args(["asyncify-blacklist@a", "asyncify-whitelist@b", "x"])


def test_response_files(tmp_path: Path) -> None:
    if not NL_FILE.is_file():
        pytest.skip("lit tests not found")
    o = AsyncifyOptions.from_pass_args([f"asyncify-onlylist@@{NL_FILE}"])
    assert o.onlylist == ("foo", "bar")
    o = AsyncifyOptions.from_pass_args([f"asyncify-blacklist@@{NL_FILE.name}"], base_dir=LIT)
    assert o.removelist == ("foo", "bar")
    # One per line: commas belong to the names, empty lines stay (and warn).
    (tmp_path / "names.txt").write_text("f(a, b)\n\ng\n")
    o = AsyncifyOptions.from_pass_args(["asyncify-addlist@@names.txt"], base_dir=tmp_path)
    assert o.addlist == ("f(a, b)", "", "g")
    # A single line: commas split it.
    (tmp_path / "one.txt").write_text("env.a,env.b*\n")
    o = AsyncifyOptions.from_pass_args(["asyncify-imports@@one.txt"], base_dir=tmp_path)
    assert o.imports == ("env.a", "env.b*")
    # CRLF files keep their '\r' (Binaryen reads them as they are).
    (tmp_path / "crlf.txt").write_bytes(b"a\r\nb\r\n")
    o = AsyncifyOptions.from_pass_args(["asyncify-addlist@@crlf.txt"], base_dir=tmp_path)
    assert o.addlist == ("a\r", "b")
    with pytest.raises(wasync.AsyncifyError, match=r"Failed opening 'missing\.txt'"):
        AsyncifyOptions.from_pass_args(["asyncify-addlist@@missing.txt"], base_dir=tmp_path)


def test_option_errors() -> None:
    with pytest.raises(wasync.AsyncifyError, match="only-list together with another list"):
        AsyncifyOptions(onlylist=("a",), addlist=("b",))
    with pytest.raises(wasync.AsyncifyError, match="only-list together with another list"):
        AsyncifyOptions.from_pass_args(["asyncify-onlylist@a", "asyncify-removelist@b"])
    with pytest.raises(wasync.AsyncifyError, match="cannot be used together"):
        AsyncifyOptions(import_globals=True, export_globals=True)
    with pytest.raises(wasync.AsyncifyError, match="unknown Asyncify pass argument"):
        AsyncifyOptions.from_pass_args(["asyncify-onlylst@a"])
    with pytest.raises(wasync.AsyncifyError, match="not a pass argument"):
        AsyncifyOptions.from_pass_args(["-O3"])
    with pytest.raises(wasync.AsyncifyError, match="sequence of names, not a string"):
        AsyncifyOptions(addlist="foo")  # type: ignore[arg-type]
    with pytest.raises(wasync.AsyncifyError, match="must be a bool"):
        AsyncifyOptions(asserts=1)  # type: ignore[arg-type]
    with pytest.raises(wasync.AsyncifyError, match="page count"):
        AsyncifyOptions(secondary_memory_size=-1)
    with pytest.raises(wasync.AsyncifyError, match="expected a number"):
        AsyncifyOptions.from_pass_args(
            ["asyncify-in-secondary-memory", "asyncify-secondary-memory-size@x"]
        )
    # The documented but unread argument is accepted.
    AsyncifyOptions.from_pass_args(["asyncify-ignore-unwind-from-catch"])
    assert issubclass(wasync.AsyncifyError, wasync.WasyncError)


def test_from_cli(tmp_path: Path) -> None:
    (tmp_path / "more.txt").write_text("env.c\nenv.d\n")
    o = AsyncifyOptions.from_cli(
        imports=["env.sleep,wasi_snapshot_preview1.fd_*", "@more.txt"],
        ignore_indirect=True,
        addlist="main,run(a, b)",
        propagate_addlist=True,
        memory="mem",
        precise_indirect=True,
        base_dir=tmp_path,
    )
    assert o.imports == ("env.sleep", "wasi_snapshot_preview1.fd_*", "env.c", "env.d")
    assert o.addlist == ("main", "run(a, b)")
    assert o.ignore_indirect
    assert o.propagate_addlist
    assert o.precise_indirect
    assert o.memory == "mem"
    assert AsyncifyOptions.from_cli(imports="").imports is None  # as Binaryen: every import
    # Pass arguments first, flags on top.
    o = AsyncifyOptions.from_cli(
        removelist="x", pass_args=["asyncify-removelist@y", "asyncify-asserts"]
    )
    assert (o.removelist, o.asserts) == (("x",), True)
    o = AsyncifyOptions.from_cli(in_secondary_memory=True, secondary_memory_size="4")
    assert o.secondary_memory_size == 4
    with pytest.raises(wasync.AsyncifyError, match="only-list"):
        AsyncifyOptions.from_cli(onlylist="a", removelist="b")


def test_to_pass_args_round_trip() -> None:
    for o in [
        AsyncifyOptions(),
        AsyncifyOptions(imports=("env.a", "env.b*"), ignore_indirect=True, asserts=True),
        AsyncifyOptions(imports=(), removelist=("f(a, b)", "g*")),
        AsyncifyOptions(onlylist=("main",), verbose=True, import_globals=True),
        AsyncifyOptions(addlist=("x",), propagate_addlist=True, export_globals=True),
        AsyncifyOptions(in_secondary_memory=True, secondary_memory_size=7, precise_indirect=True),
        AsyncifyOptions(memory="m"),
    ]:
        back = AsyncifyOptions.from_pass_args(o.to_pass_args())
        if o.imports == ():
            assert back == dataclasses.replace(o, imports=None, ignore_imports=True)
        else:
            assert back == o


# -- names and lists ------------------------------------------------------------


UNNAMED = bytes(
    wat(
        """(module
        (import "env" "a" (func))
        (import "env" "b" (func))
        (func call 0) (func call 2) (func))"""
    )
)


def _without_names(data: bytes) -> bytes:
    module = wasync.decode_module(data)
    module.customs = [c for c in module.customs if c.name != "name"]
    return wasync.encode_module(module)


def test_names_of_unnamed_functions() -> None:
    module = wasync.decode_module(_without_names(UNNAMED))
    assert binaryen_function_names(module) == ["fimport$0", "fimport$1", "0", "1", "2"]
    # Defined functions are named by their index among defined functions.
    result = analyze(module, AsyncifyOptions(onlylist=("0", "fimport*", "2")))
    assert result.instrumented == {2, 4}
    assert result.warnings == ["Asyncify onlylist contained a non-matching pattern: 'fimport*'"]
    result = analyze(module, AsyncifyOptions(removelist=("fimport$0*",)))
    assert result.instrumented == frozenset()
    assert result.reasons[0] == "import env.a cannot unwind: in the removelist ('fimport$0*')"
    with pytest.raises(wasync.AsyncifyError, match="imported function name"):
        analyze(module, AsyncifyOptions(removelist=("fimport$0",)))


def test_names_deduplicated_like_binaryen() -> None:
    module = wasync.decode_module(wat("""(module (func $f) (func $g) (func) (func $1))"""))
    names = binaryen_function_names(module)
    assert names[:2] == ["f", "g"]
    assert names[3] == "1"
    assert names[2] == "2"  # defined index 2 is free
    # Generated names avoid names from the name section: "1" is taken.
    m2 = wasync.decode_module(wat("(module (func) (func) (func $1))"))
    assert binaryen_function_names(m2) == ["0", "1_2", "1"]


def test_list_warnings_and_errors() -> None:
    module = wasync.decode_module(UNNAMED)  # wat2wasm names nothing here: same names
    w = analyze(module, AsyncifyOptions(removelist=("nope", "x*", "1", "f*", "1*"))).warnings
    # Names warn at once, patterns at the end, in sorted order. A pattern only
    # counts as used when it is the first to match a function that no plain
    # name of the list matches: "1*" matches function "1" only, which "1" names.
    assert w == [
        "Asyncify removelist contained a non-existing function name: 'nope'",
        "Asyncify removelist contained a non-matching pattern: '1*'",
        "Asyncify removelist contained a non-matching pattern: 'x*'",
    ]
    w = analyze(module, AsyncifyOptions(removelist=("*", "1*"))).warnings
    assert w == ["Asyncify removelist contained a non-matching pattern: '1*'"]
    # Add-list patterns count matches on imports; only-list patterns do not.
    assert analyze(module, AsyncifyOptions(addlist=("fimport$1*",))).warnings == []
    assert analyze(module, AsyncifyOptions(onlylist=("fimport$1*",))).warnings == [
        "Asyncify onlylist contained a non-matching pattern: 'fimport$1*'"
    ]
    with pytest.raises(wasync.AsyncifyError, match="imported function name"):
        analyze(module, AsyncifyOptions(addlist=("fimport$0",)))
    with pytest.raises(wasync.AsyncifyError, match="found in the add-list and in the remove-list"):
        analyze(module, AsyncifyOptions(addlist=("1",), removelist=("*",)))
    with pytest.raises(wasync.AsyncifyError, match="found in the add-list and in the remove-list"):
        analyze(module, AsyncifyOptions(addlist=("fimport*",), removelist=("*$0",)))


def test_list_precedence() -> None:
    data = wat(
        """(module
        (import "env" "sleep" (func $sleep))
        (import "env" "other" (func $other))
        (func $a call $sleep)
        (func $b call $a)
        (func $c call $b)
        (func $d call $other)
        (func $e)
        (func $f call $e))"""
    )
    module = wasync.decode_module(data)

    def inst(**kw: object) -> set[str]:
        r = analyze(module, AsyncifyOptions(**kw))  # type: ignore[arg-type]
        return {r.names[f] for f in r.instrumented}

    assert inst() == {"a", "b", "c", "d"}
    assert inst(imports=("env.sl*",)) == {"a", "b", "c"}
    assert inst(imports=()) == set()
    assert inst(ignore_imports=True) == set()
    assert inst(imports=("env.other",), ignore_imports=True) == {"d"}  # the list wins
    # The remove-list stops propagation through the removed function.
    assert inst(removelist=("b",)) == {"a", "d"}
    # ... and applies to imports matched by patterns.
    assert inst(removelist=("sl*",)) == {"d"}
    # The add-list adds without propagating, unless asked to.
    assert inst(addlist=("e",)) == {"a", "b", "c", "d", "e"}
    assert inst(addlist=("e",), propagate_addlist=True) == {"a", "b", "c", "d", "e", "f"}
    assert inst(addlist=("e",), removelist=("f",), propagate_addlist=True) == {
        "a", "b", "c", "d", "e"
    }  # fmt: skip
    # The only-list overrides everything.
    assert inst(onlylist=("e", "c")) == {"c", "e"}
    r = analyze(module, AsyncifyOptions(addlist=("e",), removelist=("b",)))
    assert r.reasons[module.num_imported_funcs + 4] == "in the addlist"
    assert r.reasons[module.num_imported_funcs + 1] == "in the removelist"
    assert r.unwinding_imports == {0, 1}
    assert r.added_from_list == {6}


# -- the in-wasm runtime ---------------------------------------------------------

RUNTIME = """(module
  (import "asyncify" "start_unwind" (func $start_unwind (param i32)))
  (import "asyncify" "stop_unwind" (func $stop_unwind))
  (import "asyncify" "start_rewind" (func $start_rewind (param i32)))
  (import "asyncify" "stop_rewind" (func $stop_rewind))
  (import "env" "log" (func $log (param i32)))
  (memory 1)
  (global $sleeping (mut i32) (i32.const 0))
  (func $sleep
    (if (i32.eqz (global.get $sleeping))
      (then (global.set $sleeping (i32.const 1)) (call $start_unwind (i32.const 16)))
      (else (global.set $sleeping (i32.const 0)) (call $stop_rewind))))
  (func $work (call $log (i32.const 1)) (call $sleep) (call $log (i32.const 2)))
  (func $main (export "main") (call $work))
  (func $resume (export "resume")
    (call $stop_unwind) (call $start_rewind (i32.const 16)) (call $main))
  (func $pure (call $log (i32.const 3))))"""


def test_in_wasm_runtime() -> None:
    module = wasync.decode_module(wat(RUNTIME))
    r = analyze(module, AsyncifyOptions(imports=()))
    names = r.names
    idx = {n: i for i, n in enumerate(names)}
    assert {names[f] for f in r.instrumented} == {"work", "main"}
    assert r.runtime_imports == {0: "start_unwind", 1: "stop_unwind", 2: "start_rewind",
                                 3: "stop_rewind"}  # fmt: skip
    sleep_body = module.body(idx["sleep"]).instrs
    calls = [i for i in sleep_body if i.op.name == "call"]
    assert [r.changes_state_at(idx["sleep"], c) for c in calls] == [True, True]
    resume_calls = [i for i in module.body(idx["resume"]).instrs if i.op.name == "call"]
    assert [r.changes_state_at(idx["resume"], c) for c in resume_calls] == [False, False, True]
    assert analyze(module, AsyncifyOptions(imports=())).log == []  # only when verbose
    assert r.top_most_runtime == {idx["sleep"]}
    assert r.bottom_most_runtime == {idx["resume"]}
    assert idx["sleep"] in r.can_change_state  # a call to it is a call site
    assert idx["resume"] not in r.can_change_state
    assert r.unwinding_imports == frozenset()
    assert "top-most runtime" in r.reasons[idx["sleep"]]
    assert "bottom-most runtime" in r.reasons[idx["resume"]]
    assert "in-wasm runtime import asyncify.start_unwind" in r.reasons[0]
    # With every import unwinding, $log's callers join; the runtime rules hold.
    r = analyze(module)
    assert {names[f] for f in r.instrumented} == {"work", "main", "pure"}
    # The only-list overrides the runtime rules, except that top-most is never
    # instrumented.
    r = analyze(module, AsyncifyOptions(onlylist=("sleep", "resume")))
    assert {names[f] for f in r.instrumented} == {"resume"}
    # Remove-list patterns see the runtime imports under their new names.
    assert analyze(module, AsyncifyOptions(removelist=("asyncify_stop_*",))).warnings == []
    # Any other asyncify.* import is an error (Binaryen's doc mentions
    # asyncify.get_state, but its code rejects it).
    bad = wat('(module (import "asyncify" "get_state" (func (result i32))))')
    with pytest.raises(wasync.AsyncifyError, match="unidentified asyncify import: get_state"):
        analyze(wasync.decode_module(bad))


def test_in_wasm_runtime_matches_binaryen_108() -> None:
    data = wat(RUNTIME)
    module = wasync.decode_module(data)
    for args in [(), ("asyncify-ignore-imports",), ("asyncify-onlylist@sleep,resume",)]:
        r = analyze(module, AsyncifyOptions.from_pass_args(args))
        theirs, _ = binaryen_108(data, args)
        assert theirs == {r.names[f] for f in r.instrumented}, args


# -- indirect calls, tail calls, call_ref -----------------------------------------

INDIRECT = """(module
  (type $v (func))
  (type $i (func (param i32)))
  (import "env" "sleep" (func $sleep))
  (import "env" "log" (func $log (param i32)))
  (table $t 4 funcref)
  (elem (table $t) (i32.const 0) func $sleeper $quiet $logger)
  (func $sleeper (type $v) (call $sleep))
  (func $quiet (type $v))
  (func $logger (type $i) (call $log (local.get 0)))
  (func $unlisted (type $v) (call $sleep))
  (func $calls-v (call_indirect $t (type $v) (i32.const 0)))
  (func $calls-i (call_indirect $t (type $i) (i32.const 1) (i32.const 2)))
  (func $calls-ref (call_ref $i (i32.const 1) (ref.func $logger2)))
  (func $logger2 (type $i))
  (func $tail-v (return_call_indirect $t (type $v) (i32.const 0)))
  (func $tail-direct (return_call $sleeper))
  (func $tail-quiet (return_call $quiet))
  (func $calls-calls-i (call $calls-i)))"""


def test_indirect_and_tail_calls() -> None:
    module = wasync.decode_module(wat(INDIRECT))
    r = analyze(module)
    idx = {n: i for i, n in enumerate(r.names)}
    inst = {r.names[f] for f in r.instrumented}
    assert inst == {"sleeper", "logger", "unlisted", "calls-v", "calls-i", "calls-ref",
                    "tail-v", "tail-direct", "calls-calls-i"}  # fmt: skip
    assert r.reasons[idx["calls-v"]] == "calls indirectly (call_indirect)"
    assert r.reasons[idx["calls-ref"]] == "calls indirectly (call_ref)"
    assert r.reasons[idx["tail-direct"]] == "calls sleeper which can change state"
    r = analyze(module, AsyncifyOptions(ignore_indirect=True))
    inst = {r.names[f] for f in r.instrumented}
    assert inst == {"sleeper", "logger", "unlisted", "tail-direct"}
    assert r.reasons[idx["calls-v"]] == "cannot change state (its indirect calls are ignored)"
    # Indirect calls of add-list functions count even with ignore-indirect.
    r = analyze(module, AsyncifyOptions(ignore_indirect=True, addlist=("calls-v",)))
    body = module.body(idx["calls-v"])
    site = next(i for i in body.instrs if i.op.name == "call_indirect")
    assert r.changes_state_at(idx["calls-v"], site)
    assert not r.changes_state_at(idx["calls-i"], site)


def test_precise_indirect() -> None:
    module = wasync.decode_module(wat(INDIRECT))
    r = analyze(module, AsyncifyOptions(precise_indirect=True))
    assert r.precise
    assert r.warnings == []
    idx = {n: i for i, n in enumerate(r.names)}
    inst = {r.names[f] for f in r.instrumented}
    # $v reaches $sleeper (unwinds); $i reaches $logger (calls the import
    # env.log, which may unwind with every import unwinding).
    assert inst == {"sleeper", "logger", "unlisted", "calls-v", "calls-i", "calls-ref",
                    "tail-v", "tail-direct", "calls-calls-i"}  # fmt: skip
    # call_ref $i reaches $logger and $logger2 (both referenced, type $i).
    assert r.indirect_targets[("ref", 1)] == {idx["logger"], idx["logger2"]}
    # Only env.sleep unwinds: calls through $i cannot.
    r = analyze(module, AsyncifyOptions(precise_indirect=True, imports=("env.sleep",)))
    inst = {r.names[f] for f in r.instrumented}
    assert inst == {"sleeper", "unlisted", "calls-v", "tail-v", "tail-direct"}
    assert r.indirect_targets[("table", 0, 0)] == {idx["sleeper"], idx["quiet"]}
    assert r.indirect_sites == {("table", 0, 0): True, ("table", 0, 1): False, ("ref", 1): False}
    assert r.reasons[idx["calls-v"]] == (
        "calls indirectly (call_indirect of type 0), which can reach sleeper, "
        "which can change state"
    )
    body = module.body(idx["calls-i"])
    site = next(i for i in body.instrs if i.op.name == "call_indirect")
    assert not r.changes_state_at(idx["calls-i"], site)
    conservative = analyze(module, AsyncifyOptions(imports=("env.sleep",)))
    assert conservative.changes_state_at(idx["calls-i"], site)
    # Precise indirect calls propagate like direct ones, also to the log.
    r = analyze(
        module, AsyncifyOptions(precise_indirect=True, imports=("env.sleep",), verbose=True)
    )
    assert (
        "[asyncify] calls-v can change the state due to an indirect call that can reach sleeper"
        in r.log
    )


def test_precise_indirect_falls_back() -> None:
    exported = INDIRECT.replace("(table $t 4 funcref)", '(table $t (export "t") 4 funcref)')
    module = wasync.decode_module(wat(exported))
    r = analyze(module, AsyncifyOptions(precise_indirect=True, imports=("env.sleep",)))
    inst = {r.names[f] for f in r.instrumented}
    # call_indirect through an exported table: conservative; call_ref stays precise.
    assert {"calls-v", "calls-i", "tail-v"} <= inst
    assert "calls-ref" not in inst
    idx = {n: i for i, n in enumerate(r.names)}
    assert "imported/exported table 0" in r.reasons[idx["calls-i"]]

    # A reference can come in from outside: every indirect call is conservative.
    foreign = INDIRECT.replace(
        "(func $calls-calls-i",
        '(func (export "set") (param funcref) (table.set $t (i32.const 3) (local.get 0)))\n'
        "(func $calls-calls-i",
    )
    module = wasync.decode_module(wat(foreign))
    r = analyze(module, AsyncifyOptions(precise_indirect=True, imports=("env.sleep",)))
    assert not r.precise
    assert len(r.warnings) == 1
    assert "export 'set' takes a reference parameter" in r.warnings[0]
    assert {"calls-i", "calls-ref"} <= {r.names[f] for f in r.instrumented}

    # ignore_indirect wins over precise_indirect.
    r = analyze(
        wasync.decode_module(wat(INDIRECT)),
        AsyncifyOptions(precise_indirect=True, ignore_indirect=True),
    )
    assert not r.precise
    assert {r.names[f] for f in r.instrumented} == {"sleeper", "logger", "unlisted", "tail-direct"}


def test_precise_indirect_subtypes() -> None:
    # With GC subtyping, an indirect call of a non-final type also reaches
    # functions of its declared subtypes (here with a covariant result type).
    data = wat(
        """(module
        (type $sup (sub (func (result anyref))))
        (type $sub (sub $sup (func (result i31ref))))
        (type $fin (func (result i31ref)))
        (import "env" "sleep" (func $sleep))
        (table 3 funcref)
        (elem (i32.const 0) func $s $o)
        (func $s (type $sub) (call $sleep) (ref.i31 (i32.const 0)))
        (func $o (type $fin) (call $sleep) (ref.i31 (i32.const 0)))
        (func $c (drop (call_indirect (type $sup) (i32.const 0))))
        (func $d (drop (call_indirect (type $fin) (i32.const 0)))))"""
    )
    r = analyze(wasync.decode_module(data), AsyncifyOptions(precise_indirect=True))
    assert r.precise
    assert {r.names[f] for f in r.instrumented} == {"s", "o", "c", "d"}
    assert r.indirect_targets[("table", 0, 0)] == {1}  # $s only: $o's type is final
    # Types compare by structure (indices erased): $fin and $sub look alike,
    # so the call through $fin is assumed to reach both (sound, not exact).
    assert r.indirect_targets[("table", 0, 2)] == {1, 2}


# -- memory ---------------------------------------------------------------------


def test_resolve_memory() -> None:
    one = wasync.decode_module(wat("(module (memory 1))"))
    none = wasync.decode_module(wat("(module)"))
    two = wasync.decode_module(
        wat('(module (memory $a 1) (memory $b (export "memory") 1) (memory $c (export "c") 1))')
    )
    assert resolve_memory(one, AsyncifyOptions(memory="whatever")) == 0
    assert resolve_memory(none, AsyncifyOptions()) is None
    assert resolve_memory(one, AsyncifyOptions(in_secondary_memory=True)) is None
    assert resolve_memory(two, AsyncifyOptions()) == 1
    assert resolve_memory(two, AsyncifyOptions(memory="c")) == 2
    assert resolve_memory(two, AsyncifyOptions(memory="0")) == 0
    with pytest.raises(wasync.AsyncifyError, match="asyncify-memory@memory"):
        resolve_memory(two, AsyncifyOptions(memory="nope"))
    assert analyze(two, AsyncifyOptions(memory="c")).memory == 2
