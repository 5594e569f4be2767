"""The ``wasync`` command line: thin over the library."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

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


def _dir_spec(spec: str) -> tuple[str, str]:
    """``HOST[::GUEST]`` (wasmtime's spelling); the guest path defaults to HOST."""
    host, sep, guest = spec.partition("::")
    if not host or (sep and not guest):
        raise SystemExit(f"wasync: --dir expects HOST[::GUEST], got {spec!r}")
    return host, guest if sep else host


def _env_spec(spec: str) -> tuple[str, str]:
    """``NAME=VALUE``, or ``NAME`` to pass this process's value on."""
    name, sep, value = spec.partition("=")
    if not name:
        raise SystemExit(f"wasync: --env expects NAME=VALUE or NAME, got {spec!r}")
    if not sep:
        if name not in os.environ:
            raise SystemExit(f"wasync: --env {name}: not set in this environment")
        value = os.environ[name]
    return name, value


def _listen_spec(spec: str) -> socket.socket:
    host, sep, port = spec.rpartition(":")
    if not sep or not port.isdigit():
        raise SystemExit(f"wasync: --listen expects HOST:PORT, got {spec!r}")
    try:
        sock = socket.create_server((host or "127.0.0.1", int(port)), reuse_port=False)
    except OSError as e:
        raise SystemExit(f"wasync: --listen {spec}: {e.strerror or e}") from None
    return sock


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(os.environ.get("WASYNC_CACHE_DIR", str(Path(base) / "wasync")))


def _asyncified(data: bytes, imports: list[str]) -> bytes:
    """`data` transformed so that the given imports can suspend, cached on disk
    by the input's hash, the import list and wasync's version."""
    from wasync import __version__  # noqa: PLC0415
    from wasync._asyncify.api import asyncify  # noqa: PLC0415

    key = hashlib.sha256(data)
    key.update(json.dumps([imports, __version__]).encode())
    path = _cache_dir() / "asyncify" / f"{key.hexdigest()}.wasm"
    try:
        return path.read_bytes()
    except OSError:
        pass
    out = asyncify(data, imports=imports)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(out)
        tmp.replace(path)
    except OSError as e:  # a read-only home: run anyway
        sys.stderr.write(f"wasync: warning: cannot cache the transformed module: {e}\n")
    return out


def _cmd_run(args: argparse.Namespace) -> int:
    import asyncio  # noqa: PLC0415

    from wasync._errors import Trap  # noqa: PLC0415
    from wasync._runtime._module import Module  # noqa: PLC0415
    from wasync._wasi._core import Wasi  # noqa: PLC0415
    from wasync._wasi._hostfs import HostDir  # noqa: PLC0415

    data = _read(args.file)
    strategy = args.strategy
    if args.asyncify:
        if strategy not in ("auto", "asyncify"):
            raise SystemExit("wasync: --asyncify runs the transformed module: strategy 'asyncify'")
        data = _asyncified(data, ["wasi_snapshot_preview1.*"])
        strategy = "asyncify"
    preopens: dict[str, Any] = {}
    for spec, readonly in [(d, False) for d in args.dir] + [(d, True) for d in args.ro_dir]:
        host, guest = _dir_spec(spec)
        if guest in preopens:
            raise SystemExit(f"wasync: the guest directory {guest!r} is given twice")
        if not os.path.isdir(host):
            raise SystemExit(f"wasync: --dir {spec}: {host!r} is not a directory")
        # One program on its own event loop: nothing else waits behind a file
        # operation, so it runs inline (a thread hop costs ~80 us a call).
        preopens[guest] = HostDir(host, readonly=readonly, offload=args.offload)
    env = dict(_env_spec(e) for e in args.env)
    sockets = [_listen_spec(s) for s in args.listen]
    module = Module(data)
    wasi = Wasi(
        [args.argv0 or args.file, *args.args],
        env,
        preopens,
        stdin="inherit",
        stdout="inherit",
        stderr="inherit",
        sockets=sockets,
    )
    try:
        return asyncio.run(wasi.run(module, strategy=strategy)) & 0xFF
    except Trap as e:
        sys.stderr.write(f"wasync: error: the program trapped: {e}\n")
        return 134  # as wasmtime does: the status of an abort
    except KeyboardInterrupt:
        return 130


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
    run = sub.add_parser(
        "run",
        help="run a WASI command (wasm32-wasi program) with its I/O on asyncio",
        description=(
            "Run PROGRAM.wasm's _start with an async WASI (preview1) implemented by wasync: "
            "arguments, environment, preopened directories, stdio and sockets. The exit "
            "status is the program's."
        ),
    )
    run.add_argument("file", metavar="PROGRAM.wasm")
    run.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS", help="the program's")
    run.add_argument(
        "--dir",
        action="append",
        default=[],
        metavar="HOST[::GUEST]",
        help="give the program the host directory HOST, at GUEST (default: HOST)",
    )
    run.add_argument(
        "--ro-dir",
        action="append",
        default=[],
        metavar="HOST[::GUEST]",
        help="as --dir, read-only",
    )
    run.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME[=VALUE]",
        help="set an environment variable (NAME alone: pass this process's value on)",
    )
    run.add_argument(
        "--listen",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="preopen a listening TCP socket (after the directories) for sock_accept",
    )
    run.add_argument(
        "--strategy",
        choices=["auto", "fiber", "thread", "asyncify"],
        default="auto",
        help="how the program is suspended while the host waits (default: auto)",
    )
    run.add_argument(
        "--asyncify",
        action="store_true",
        help="transform the WASI imports with wasync's Asyncify first (cached) and run "
        "the result with strategy 'asyncify'",
    )
    run.add_argument(
        "--offload",
        action="store_true",
        help="run file system calls on worker threads instead of inline on the event loop",
    )
    run.add_argument("--argv0", metavar="NAME", help="the program's argv[0] (default: PROGRAM)")
    run.set_defaults(run=_cmd_run)
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
