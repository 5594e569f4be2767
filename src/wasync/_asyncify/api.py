"""The public face of the transform: ``wasync.asyncify`` and its report."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

from wasync._asyncify.analysis import analyze
from wasync._asyncify.options import AsyncifyOptions
from wasync._asyncify.transform import transform_module
from wasync._binary.decode import decode_module
from wasync._binary.encode import encode_module
from wasync._binary.types import ExternKind

__all__ = ["AsyncifyReport", "asyncify", "asyncify_with_report"]


@dataclass(frozen=True)
class AsyncifyReport:
    """What a transform did, for tooling: which functions were instrumented and
    why, how many call sites, and what it cost in bytes."""

    functions: int  # defined functions in the module
    instrumented: dict[int, str]  # function index -> why it was instrumented
    not_instrumented: dict[int, str]  # function index -> why not (defined functions)
    names: dict[int, str]  # function index -> Binaryen-style name
    unwinding_imports: tuple[str, ...]  # "module.name" of the imports that may unwind
    call_sites: int  # calls instrumented
    input_size: int
    output_size: int
    seconds: float
    warnings: tuple[str, ...] = ()
    log: tuple[str, ...] = field(default=(), repr=False)  # verbose explanations

    @property
    def bytes_added(self) -> int:
        return self.output_size - self.input_size

    @property
    def size_ratio(self) -> float:
        return self.output_size / self.input_size if self.input_size else 0.0

    def summary(self) -> str:
        return (
            f"instrumented {len(self.instrumented)} of {self.functions} functions "
            f"({self.call_sites} call sites); {self.input_size:,} -> {self.output_size:,} bytes "
            f"({self.size_ratio:.2f}x) in {self.seconds:.2f} s"
        )


def _options(options: AsyncifyOptions | None, fields: dict[str, Any]) -> AsyncifyOptions:
    if options is None:
        return AsyncifyOptions(**fields)
    return replace(options, **fields) if fields else options


def asyncify_with_report(
    wasm: bytes, options: AsyncifyOptions | None = None, **fields: Any
) -> tuple[bytes, AsyncifyReport]:
    """Like :func:`asyncify`, also returning an :class:`AsyncifyReport`."""
    t0 = time.perf_counter()
    opts = _options(options, fields)
    m = decode_module(wasm)
    nimp = m.num_imported_funcs
    bodies = [m.body(nimp + i) for i in range(len(m.codes))]
    analysis = analyze(m, opts, bodies=bodies)
    sites = 0
    for f in analysis.instrumented:
        sites += sum(1 for ins in bodies[f - nimp].instrs if analysis.changes_state_at(f, ins))
    # Read before the transform, which may remove imports (an in-wasm runtime's).
    func_imports = [i for i in m.imports if i.kind is ExternKind.FUNC]
    transform_module(
        m,
        instrumented=analysis.instrumented,
        is_call_site=analysis.changes_state_at,
        memory=analysis.memory,
        secondary_memory_pages=opts.secondary_memory_size if opts.in_secondary_memory else None,
        export_globals=opts.export_globals,
        import_globals=opts.import_globals,
        runtime_imports=analysis.runtime_imports,
        changes_state=analysis.can_change_state,
        asserts_in=(
            [
                f
                for f in range(nimp, nimp + len(bodies))
                if f not in analysis.instrumented
                and f not in analysis.top_most_runtime
                and f not in analysis.bottom_most_runtime
            ]
            if opts.asserts
            else ()
        ),
    )
    out = encode_module(m)
    defined = range(nimp, nimp + len(bodies))
    report = AsyncifyReport(
        functions=len(bodies),
        instrumented={f: analysis.reasons.get(f, "") for f in sorted(analysis.instrumented)},
        not_instrumented={
            f: analysis.reasons.get(f, "") for f in defined if f not in analysis.instrumented
        },
        names=dict(enumerate(analysis.names)),
        unwinding_imports=tuple(
            sorted(
                f"{func_imports[i].module}.{func_imports[i].name}"
                for i in analysis.unwinding_imports
            )
        ),
        call_sites=sites,
        input_size=len(wasm),
        output_size=len(out),
        seconds=time.perf_counter() - t0,
        warnings=tuple(analysis.warnings),
        log=tuple(analysis.log),
    )
    return out, report


def asyncify(wasm: bytes, options: AsyncifyOptions | None = None, **fields: Any) -> bytes:
    """Transform `wasm` so that its call stack can be unwound into linear memory
    and rewound (Binaryen's Asyncify, same ABI): the imports named by `imports`
    (all of them by default) may then suspend under the "asyncify" runtime
    strategy or any other Asyncify runtime.

    Options come as an :class:`AsyncifyOptions` and/or its fields as keywords::

        wasync.asyncify(wasm, imports=["env.sleep", "wasi_snapshot_preview1.fd_*"])

    Raises :class:`~wasync.AsyncifyError` for what cannot be done (naming the
    function and instruction), never writing an invalid module."""
    return asyncify_with_report(wasm, options, **fields)[0]
