"""Host functions: resolving the ``imports`` mapping against a module's imports."""

from __future__ import annotations

import inspect
import types
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from wasync._binary.types import ExternKind, FuncType
from wasync._errors import LinkError
from wasync._runtime._ffi import func_kinds

if TYPE_CHECKING:
    from wasync._runtime._module import Module

__all__ = ["HostFunc", "async_import", "maybe_async", "resolve_imports", "with_caller"]

_F = TypeVar("_F", bound=Callable[..., Any])
_CALLER_FLAG = "__wasync_caller__"
_ASYNC_FLAG = "__wasync_async__"
_MAYBE_FLAG = "__wasync_maybe_async__"


def with_caller(fn: _F) -> _F:
    """Mark a host function as wanting the :class:`~wasync.Caller` (the calling
    instance: its memory and exports) as its first argument."""
    setattr(fn, _CALLER_FLAG, True)
    return fn


def async_import(fn: _F) -> _F:
    """Mark a plain callable that returns an awaitable as an async import
    (``async def`` functions are recognised without it)."""
    setattr(fn, _ASYNC_FLAG, True)
    return fn


def maybe_async(fn: _F) -> _F:
    """Mark a plain callable that returns *either* its result (no suspension, at
    the cost of a plain import) *or* an awaitable (the wasm code is suspended
    until it completes, as for an ``async def`` import).

    For imports that usually have their answer at hand and only sometimes wait,
    such as a read served from a buffer unless the buffer is empty. The callable
    itself runs where plain imports run (on the worker thread under the "thread"
    strategy); only the awaitable runs on the event loop."""
    setattr(fn, _MAYBE_FLAG, True)
    return fn


def _is_async(fn: Callable[..., Any]) -> bool:
    if getattr(fn, _ASYNC_FLAG, False):
        return True
    target = getattr(fn, "func", fn)  # functools.partial
    if inspect.iscoroutinefunction(target):
        return True
    return inspect.iscoroutinefunction(type(fn).__call__)  # an object with `async def __call__`


@dataclass(frozen=True, slots=True)
class HostFunc:
    """One resolved function import."""

    module: str
    name: str
    type: FuncType
    fn: Callable[..., Any]
    is_async: bool  # always returns an awaitable: every call suspends
    wants_caller: bool
    param_kinds: tuple[int, ...]
    result_kinds: tuple[int, ...]
    maybe_async: bool = False  # returns a value (no suspension) or an awaitable

    @property
    def label(self) -> str:
        return f"{self.module}.{self.name}"

    def convert_result(self, value: object) -> tuple[object, ...]:
        """The host function's return value as a tuple matching the results."""
        n = len(self.result_kinds)
        if n == 0:
            if value is not None:
                raise TypeError(
                    f"import {self.label} returns nothing, but the host returned {value!r}"
                )
            return ()
        if n == 1:
            return (value,)
        if not isinstance(value, (tuple, list)) or len(value) != n:
            raise TypeError(
                f"import {self.label} returns {n} values, but the host returned {value!r}"
            )
        return tuple(value)


def resolve_imports(
    module: Module, imports: Mapping[str, Mapping[str, Callable[..., Any]]] | None
) -> list[HostFunc]:
    """Match `imports` against the module's function imports, before anything runs.

    Raises :class:`~wasync.LinkError` for a missing import, a value that is not
    callable, a callable whose parameter count cannot take the import's
    parameters, or an import of a kind the runtime cannot provide."""
    imports = imports or {}
    out: list[HostFunc] = []
    seen: dict[tuple[str, str], FuncType] = {}
    for imp in module.imports:
        if imp.kind is not ExternKind.FUNC:
            raise LinkError(
                f"the module imports a {imp.kind}; wasync can only provide function imports "
                "(export the memory from the module instead)",
                module=imp.module,
                name=imp.name,
            )
        assert isinstance(imp.type, FuncType)
        earlier = seen.get((imp.module, imp.name))
        if earlier is not None:
            # The same name imported twice (legal wasm): one definition serves both.
            if earlier != imp.type:
                raise LinkError(
                    f"imported twice with different signatures ({earlier} and {imp.type}); "
                    "one host function cannot provide both",
                    module=imp.module,
                    name=imp.name,
                )
            continue
        seen[(imp.module, imp.name)] = imp.type
        namespace = imports.get(imp.module)
        if namespace is None or imp.name not in namespace:
            have = ", ".join(sorted(namespace)) if namespace else "nothing"
            raise LinkError(
                f"missing: expected a callable {imp.type} (imports[{imp.module!r}] has {have})",
                module=imp.module,
                name=imp.name,
            )
        fn = namespace[imp.name]
        if not callable(fn):
            raise LinkError(f"not callable: {fn!r}", module=imp.module, name=imp.name)
        wants_caller = bool(getattr(fn, _CALLER_FLAG, False))
        maybe = bool(getattr(fn, _MAYBE_FLAG, False))
        _check_arity(fn, len(imp.type.params) + wants_caller, imp.module, imp.name, imp.type)
        try:
            params = func_kinds(imp.type.params, f"import {imp.module}.{imp.name}")
            results = func_kinds(imp.type.results, f"import {imp.module}.{imp.name}")
        except LinkError as e:
            raise LinkError(str(e)) from None
        out.append(
            HostFunc(
                imp.module,
                imp.name,
                imp.type,
                fn,
                not maybe and _is_async(fn),
                wants_caller,
                params,
                results,
                maybe,
            )
        )
    # Entries the module does not import are fine: one mapping may serve many modules.
    return out


# What _check_arity found per callable: its signature (None: it has none) and,
# per positional argument count, whether the signature takes that many. Keyed by
# the function (for a bound method: the function it binds, whose signature it
# shares whatever it is bound to), weakly: closures made per instance go with
# their instance. inspect.signature and Signature.bind cost about 20 us a call,
# for every import of every instance otherwise.
_Arity = tuple[inspect.Signature | None, dict[int, bool]]
_ARITY: weakref.WeakKeyDictionary[Callable[..., Any], _Arity] = weakref.WeakKeyDictionary()
_BOUND_ARITY: weakref.WeakKeyDictionary[Callable[..., Any], _Arity] = weakref.WeakKeyDictionary()


def _arity_entry(fn: Callable[..., Any]) -> _Arity:
    if isinstance(fn, types.MethodType):
        cache, key = _BOUND_ARITY, fn.__func__
    elif isinstance(fn, types.FunctionType):
        cache, key = _ARITY, fn
    else:  # partials, callable objects, builtins: their signature may change
        return _signature_or_none(fn), {}
    entry = cache.get(key)
    if entry is None:
        entry = cache[key] = (_signature_or_none(fn), {})
    return entry


def _signature_or_none(fn: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):
        return None  # builtins without a signature: checked when called


def _check_arity(fn: Callable[..., Any], n: int, module: str, name: str, ft: FuncType) -> None:
    sig, takes = _arity_entry(fn)
    if sig is None:
        return
    ok = takes.get(n)
    if ok is None:
        try:
            sig.bind(*range(n))
            ok = True
        except TypeError:
            ok = False
        takes[n] = ok
    if not ok:
        raise LinkError(
            f"the host function {getattr(fn, '__name__', fn)!r}{sig} cannot take "
            f"{n} positional argument(s) for {ft}",
            module=module,
            name=name,
        )
