"""The ``wasync`` command line: thin over the library."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from wasync._errors import WasyncError
from wasync._inspect import ModuleSummary, summarize

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["main"]


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise SystemExit(f"wasync: cannot read {path}: {e.strerror or e}") from None


def _print_summary(path: str, s: ModuleSummary, *, functions: bool) -> None:
    out = sys.stdout.write
    out(f"{path}: {s.size:,} bytes, WebAssembly binary version 1\n\n")
    out("sections:\n")
    out(f"  {'section':<24} {'offset':>10} {'size':>12}\n")
    for sec in s.sections:
        label = f'custom "{sec.name}"' if sec.custom else sec.name
        out(f"  {label:<24} {sec.offset:>#10x} {sec.size:>12,}\n")
    out("\ncounts:\n")
    for key, value in s.counts.items():
        out(f"  {key:<20} {value:>8,}\n")
    out(f"\nimports ({len(s.imports)}):\n")
    for module, name, desc in s.imports:
        out(f"  {module}.{name}: {desc}\n")
    out(f"\nexports ({len(s.exports)}):\n")
    for name, desc in s.exports:
        out(f"  {name}: {desc}\n")
    scope = "module and code" if functions else "module structure; --functions adds the code"
    out(f"\nfeatures ({scope}): {', '.join(s.features) or 'none beyond the MVP'}\n")
    if functions:
        out(f"\nfunctions ({len(s.functions)}):\n")
        out(f"  {'index':>6}  {'body bytes':>10}  {'instrs':>8}  name / type\n")
        for f in s.functions:
            name = f.name or ""
            if f.imported:
                out(f"  {f.index:>6}  {'import':>10}  {'':>8}  {name} {f.type}\n")
            else:
                out(f"  {f.index:>6}  {f.body_size:>10,}  {f.instructions:>8,}  {name} {f.type}\n")


def _cmd_inspect(args: argparse.Namespace) -> int:
    data = _read(args.file)
    summary = summarize(data, functions=args.functions)
    if args.json:
        doc = asdict(summary)
        for f in doc["functions"]:
            f["type"] = str(f["type"])
        json.dump(doc, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    else:
        _print_summary(args.file, summary, functions=args.functions)
    return 0


def _cmd_asyncify(args: argparse.Namespace) -> int:
    from wasync._asyncify.api import asyncify_with_report  # noqa: PLC0415
    from wasync._asyncify.options import AsyncifyOptions  # noqa: PLC0415

    data = _read(args.file)
    pass_args = [a.removeprefix("--pass-arg=") for a in args.pass_arg]
    options = AsyncifyOptions.from_cli(
        imports=args.imports,
        ignore_imports=args.ignore_imports,
        ignore_indirect=args.ignore_indirect,
        addlist=args.addlist,
        removelist=args.removelist,
        onlylist=args.onlylist,
        propagate_addlist=args.propagate_addlist,
        asserts=args.asserts,
        verbose=args.verbose,
        import_globals=args.import_globals,
        export_globals=args.export_globals,
        memory=args.memory,
        precise_indirect=args.precise_indirect,
        pass_args=pass_args,
        base_dir=Path(args.file).parent,
    )
    out, report = asyncify_with_report(data, options)
    for warning in report.warnings:
        sys.stderr.write(f"wasync: warning: {warning}\n")
    if options.verbose:
        for line in report.log:
            sys.stderr.write(line + "\n")
        for f, why in report.instrumented.items():
            sys.stderr.write(f"[asyncify] instrumented {report.names.get(f, f)}: {why}\n")
    try:
        Path(args.output).write_bytes(out)
    except OSError as e:
        raise SystemExit(f"wasync: cannot write {args.output}: {e.strerror or e}") from None
    sys.stderr.write(f"wasync: {args.output}: {report.summary()}\n")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from wasync._demo import run_demo  # noqa: PLC0415 - keeps wasmtime out of other commands

    return run_demo()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="wasync",
        description="Let synchronous WebAssembly call asynchronous Python.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    ins = sub.add_parser(
        "inspect",
        help="summarize a .wasm file",
        description="Print a module's sections, counts, imports, exports and features.",
    )
    ins.add_argument("file", metavar="FILE.wasm")
    ins.add_argument(
        "--functions",
        action="store_true",
        help="decode every body: list functions with names, body sizes and instruction counts",
    )
    ins.add_argument("--json", action="store_true", help="machine-readable output")
    ins.set_defaults(run=_cmd_inspect)
    asy = sub.add_parser(
        "asyncify",
        help="make a module's imports able to suspend (Binaryen's Asyncify, same ABI)",
        description=(
            "Transform FILE.wasm so that calls to the given imports can unwind the "
            "stack into linear memory and rewind it later. Binaryen's spelling of the "
            "options works too: --pass-arg=asyncify-imports@env.sleep, @file lists."
        ),
    )
    asy.add_argument("file", metavar="IN.wasm")
    asy.add_argument("-o", "--output", required=True, metavar="OUT.wasm")
    asy.add_argument(
        "--imports",
        action="append",
        metavar="LIST",
        help="imports that may suspend, 'module.name' with * wildcards, comma-separated "
        "or @file (default: every import)",
    )
    asy.add_argument("--ignore-imports", action="store_true", help="no import may suspend")
    asy.add_argument(
        "--ignore-indirect", action="store_true", help="assume indirect calls never suspend"
    )
    asy.add_argument(
        "--precise-indirect",
        action="store_true",
        help="an indirect call only reaches referenced functions of its type (wasync only)",
    )
    asy.add_argument("--addlist", action="append", metavar="LIST", help="always instrument")
    asy.add_argument("--removelist", action="append", metavar="LIST", help="never instrument")
    asy.add_argument("--onlylist", action="append", metavar="LIST", help="instrument only these")
    asy.add_argument("--propagate-addlist", action="store_true")
    asy.add_argument("--asserts", action="store_true")
    asy.add_argument("--import-globals", action="store_true")
    asy.add_argument("--export-globals", action="store_true")
    asy.add_argument("--memory", metavar="NAME", help="the exported memory holding the data")
    asy.add_argument(
        "--pass-arg",
        "-pa",
        action="append",
        default=[],
        metavar="KEY@VALUE",
        help="a Binaryen pass argument, e.g. asyncify-imports@env.sleep",
    )
    asy.add_argument(
        "--verbose", action="store_true", help="explain why each function is instrumented"
    )
    asy.set_defaults(run=_cmd_asyncify)
    demo = sub.add_parser("demo", help="run the built-in demonstration")
    demo.set_defaults(run=_cmd_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        code: int = args.run(args)
    except WasyncError as e:
        sys.stderr.write(f"wasync: error: {e}\n")
        return 1
    except BrokenPipeError:  # pragma: no cover - `wasync inspect x | head`
        return 0
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
