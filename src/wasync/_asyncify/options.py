"""Asyncify options: the typed options object and Binaryen's spellings of them.

:class:`AsyncifyOptions` holds one field per option of Binaryen's Asyncify
pass, plus wasync's own ``precise_indirect``. Two parsers build it:

* :meth:`AsyncifyOptions.from_pass_args` reads Binaryen's ``--pass-arg``
  strings (``asyncify-imports@env.sleep,env.x``), so that build scripts written
  for ``wasm-opt --asyncify`` keep working;
* :meth:`AsyncifyOptions.from_cli` reads wasync's own command-line flags.

Both follow Binaryen (version 108 and later, up to the commit the shared lit
tests come from) to the letter, including its surprises:

* A pass argument is ``KEY@VALUE``; without ``@`` the value is ``"1"``. A later
  argument with the same key replaces an earlier one.
* Flags are tested for presence only (``asyncify-ignore-indirect@`` with an
  empty value still ignores indirect calls), except ``asyncify-ignore-imports``,
  whose value must be non-empty to take effect.
* A list value that starts with ``@`` names a file holding the list (a
  "response file"; ``asyncify-imports@@list.txt``: the first ``@`` separates
  key and value). ``@-`` reads standard input. Relative paths are relative to
  ``base_dir`` (default: the current directory). Binaryen has no response
  files for the whole argument list: ``@@file`` is only this per-value form.
* Trailing whitespace (and NUL) is trimmed from a list, leading whitespace is
  kept. If the list then contains a newline, it is split on newlines (one entry
  per line, empty lines kept as empty entries, commas are part of names);
  otherwise on commas, after which the function lists (not the imports list)
  re-join entries whose brackets ``( < [ {`` are unbalanced, so
  ``foo(int, double),bar`` is two names. Empty comma-separated entries vanish.
  Unbalanced brackets are an error.
* An empty imports list (``asyncify-imports@``, or an empty file) means *every*
  import may unwind, as if it had not been given.
* ``asyncify-removelist`` falls back to its old name ``asyncify-blacklist`` when
  empty or absent, and ``asyncify-onlylist`` to ``asyncify-whitelist``.
* ``asyncify-relocatable`` is the old name of ``asyncify-import-globals``.
* An only-list together with a remove- or add-list is an error.
* Binaryen's documentation mentions ``asyncify-ignore-unwind-from-catch`` and
  bare ``import-globals``/``export-globals``, but its code reads neither: they
  are accepted and ignored (the last two are not asyncify keys at all).

Names in the lists are matched by :mod:`wasync._asyncify.analysis`.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from wasync._errors import AsyncifyError

if TYPE_CHECKING:
    import os

__all__ = [
    "PASS_ARG_KEYS",
    "AsyncifyOptions",
    "handle_bracketing",
    "read_possible_response_file",
    "split_list",
    "trim",
    "wildcard_match",
]

# Every pass-argument key Binaryen's Asyncify pass reads (plus the documented
# but unread `asyncify-ignore-unwind-from-catch`).
PASS_ARG_KEYS: frozenset[str] = frozenset(
    {
        "asyncify-imports",
        "asyncify-ignore-imports",
        "asyncify-ignore-indirect",
        "asyncify-removelist",
        "asyncify-blacklist",
        "asyncify-addlist",
        "asyncify-propagate-addlist",
        "asyncify-onlylist",
        "asyncify-whitelist",
        "asyncify-asserts",
        "asyncify-verbose",
        "asyncify-import-globals",
        "asyncify-relocatable",
        "asyncify-export-globals",
        "asyncify-in-secondary-memory",
        "asyncify-secondary-memory-size",
        "asyncify-memory",
        "asyncify-ignore-unwind-from-catch",
        # wasync's own, so that one pass-argument list can say everything.
        "asyncify-precise-indirect",
    }
)

_MAX_PAGES_32 = 65536


# -- Binaryen's string helpers ------------------------------------------------

_TRIM_CHARS = " \t\n\v\f\r\0"


def trim(text: str) -> str:
    """Binaryen's ``String::trim``: drop trailing whitespace and NULs only."""
    return text.rstrip(_TRIM_CHARS)


def _split_on(text: str, delim: str) -> list[str]:
    # Binaryen's loop: no empty entry after a trailing delimiter, but one for
    # a leading or doubled delimiter.
    parts: list[str] = []
    last = 0
    while last < len(text):
        nxt = text.find(delim, last)
        if nxt < 0:
            nxt = len(text)
        parts.append(text[last:nxt])
        last = nxt + len(delim)
    return parts


def split_list(text: str) -> tuple[list[str], bool]:
    """Binaryen's ``String::Split(text, NewLineOr(","))``: split on newlines if
    there is one before the last character, otherwise on commas. Returns the
    parts and whether brackets still need handling (comma mode)."""
    first = text.find("\n")
    if first >= 0 and first != len(text) - 1:
        return _split_on(text, "\n"), False
    return _split_on(text, ","), True


def handle_bracketing(parts: Sequence[str]) -> list[str]:
    """Binaryen's ``handleBracketingOperators``: re-join comma-split parts whose
    brackets are unbalanced (``foo(int`` + ``double)``), dropping empty parts."""
    out: list[str] = []
    last = ""
    nesting = 0
    for part in parts:
        if not part:
            continue
        for c in part:
            if c in "(<[{":
                nesting += 1
            elif c in ")>]}":
                nesting -= 1
        last = part if not last else last + "," + part
        if nesting == 0:
            out.append(last)
            last = ""
    if nesting != 0:
        raise AsyncifyError(
            "Asyncify: failed to parse lists (unbalanced brackets in "
            f"{','.join(p for p in parts if p)!r})"
        )
    return out


@lru_cache(maxsize=4096)
def _wildcard_regex(pattern: str) -> re.Pattern[str]:
    return re.compile(".*".join(map(re.escape, pattern.split("*"))), re.DOTALL)


def wildcard_match(pattern: str, value: str) -> bool:
    """Binaryen's ``String::wildcardMatch``: ``*`` matches any run of characters
    (including none), everything else itself; the whole value must match."""
    if "*" not in pattern:
        return pattern == value
    return _wildcard_regex(pattern).fullmatch(value) is not None


def read_possible_response_file(value: str, base_dir: str | os.PathLike[str] | None = None) -> str:
    """Binaryen's ``read_possible_response_file``: ``@path`` is replaced by the
    file's contents (read as text, line endings untouched); ``@-`` reads stdin."""
    if not value.startswith("@"):
        return value
    name = value[1:]
    if name == "-":
        return sys.stdin.read()
    path = Path(name)
    if base_dir is not None and not path.is_absolute():
        path = Path(base_dir) / path
    try:
        with open(path, encoding="utf-8", errors="surrogateescape", newline="") as f:
            return f.read()
    except OSError as e:
        raise AsyncifyError(f"Failed opening '{name}': {e.strerror or e}") from None


def _parse_list(
    value: str, *, base_dir: str | os.PathLike[str] | None, brackets: bool
) -> tuple[str, ...]:
    """A list value as Binaryen reads it: response file, trim, split, brackets."""
    parts, needs_brackets = split_list(trim(read_possible_response_file(value, base_dir)))
    if brackets and needs_brackets:
        parts = handle_bracketing(parts)
    return tuple(parts)


def _stoi(text: str, key: str) -> int:
    # std::stoi: leading whitespace, optional sign, digits; the rest is ignored.
    m = re.match(r"[ \t\n\v\f\r]*([+-]?\d+)", text)
    if m is None:
        raise AsyncifyError(f"{key}: expected a number, got {text!r}")
    return int(m.group(1))


# -- the options --------------------------------------------------------------


def _names(value: object, field_name: str) -> tuple[str, ...]:
    if isinstance(value, str):
        raise AsyncifyError(
            f"AsyncifyOptions.{field_name} must be a sequence of names, not a string "
            f"(use AsyncifyOptions.from_cli({field_name}=...) to split {value!r})"
        )
    if not isinstance(value, Iterable):
        raise AsyncifyError(f"AsyncifyOptions.{field_name} must be a sequence of names")
    out = tuple(value)
    for item in out:
        if not isinstance(item, str):
            raise AsyncifyError(f"AsyncifyOptions.{field_name}: {item!r} is not a string")
    return out


_LISTS = ("removelist", "addlist", "onlylist")


@dataclass(frozen=True, kw_only=True)
class AsyncifyOptions:
    """Every option of Binaryen's Asyncify pass (``--pass-arg`` names in brackets).

    imports [``asyncify-imports``]
        ``module.base`` patterns (``*`` wildcards) of the imports that may start
        an unwind or rewind. None: not given, so every import may (unless
        `ignore_imports`). An empty tuple: no import may. The ``asyncify.*``
        runtime imports are always handled as the in-wasm runtime.
    ignore_imports [``asyncify-ignore-imports``]
        No import may unwind; only matters when `imports` is None.
    ignore_indirect [``asyncify-ignore-indirect``]
        Indirect calls (``call_indirect``, ``call_ref`` and their tail-call
        forms) are assumed never to unwind.
    removelist / addlist / onlylist [``asyncify-removelist`` (``-blacklist``),
    ``asyncify-addlist``, ``asyncify-onlylist`` (``-whitelist``)]
        Function names (``*`` wildcards) never instrumented / always
        instrumented / the only ones instrumented. The only-list cannot be
        combined with the other two.
    propagate_addlist [``asyncify-propagate-addlist``]
        Callers of add-list functions are instrumented too (transitively).
    asserts [``asyncify-asserts``], verbose [``asyncify-verbose``]
        Extra runtime checks; explain every decision.
    import_globals [``asyncify-import-globals``, ``asyncify-relocatable``],
    export_globals [``asyncify-export-globals``]
        Import ``__asyncify_state``/``__asyncify_data`` from ``env``, or export
        them. Not both.
    memory [``asyncify-memory``]
        When the module has several memories: the export name of the one that
        holds the Asyncify data (Binaryen's default: ``"memory"``). wasync
        also accepts a memory index when no memory is exported under that name.
    in_secondary_memory [``asyncify-in-secondary-memory``],
    secondary_memory_size [``asyncify-secondary-memory-size``]
        Keep the data in a new memory of that many pages instead.
    precise_indirect [wasync only; pass argument ``asyncify-precise-indirect``]
        An indirect call can only reach functions of its type that the module
        makes references to (see :mod:`wasync._asyncify.analysis`).
    """

    imports: tuple[str, ...] | None = None
    ignore_imports: bool = False
    ignore_indirect: bool = False
    removelist: tuple[str, ...] = ()
    addlist: tuple[str, ...] = ()
    onlylist: tuple[str, ...] = ()
    propagate_addlist: bool = False
    asserts: bool = False
    verbose: bool = False
    import_globals: bool = False
    export_globals: bool = False
    memory: str | None = None
    in_secondary_memory: bool = False
    secondary_memory_size: int = 1
    precise_indirect: bool = False

    def __post_init__(self) -> None:
        if self.imports is not None:
            object.__setattr__(self, "imports", _names(self.imports, "imports"))
        for name in _LISTS:
            object.__setattr__(self, name, _names(getattr(self, name), name))
        for f in fields(self):
            if f.type == "bool" and not isinstance(getattr(self, f.name), bool):
                raise AsyncifyError(f"AsyncifyOptions.{f.name} must be a bool")
        if self.memory is not None and not isinstance(self.memory, str):
            raise AsyncifyError("AsyncifyOptions.memory must be a string (a memory export name)")
        size = self.secondary_memory_size
        if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= _MAX_PAGES_32:
            raise AsyncifyError(
                f"AsyncifyOptions.secondary_memory_size must be a page count in "
                f"0..{_MAX_PAGES_32}, got {size!r}"
            )
        if self.onlylist and (self.removelist or self.addlist):
            raise AsyncifyError(
                "It makes no sense to use both an asyncify only-list together with another list."
            )
        if self.import_globals and self.export_globals:
            raise AsyncifyError(
                "asyncify-import-globals and asyncify-export-globals cannot be used "
                "together (the globals cannot be both imported and exported)"
            )

    # -- Binaryen's spelling --------------------------------------------------

    @classmethod
    def from_pass_args(
        cls,
        args: Sequence[str],
        *,
        base_dir: str | os.PathLike[str] | None = None,
    ) -> AsyncifyOptions:
        """Options from Binaryen pass arguments.

        Each item is ``KEY@VALUE`` or ``KEY``, optionally written as wasm-opt
        takes it: ``--pass-arg=KEY@VALUE``, or ``--pass-arg``/``-pa`` followed by
        ``KEY@VALUE`` as the next item. A bare ``--asyncify`` is accepted and
        ignored. Keys of other passes (without the ``asyncify-`` prefix) are
        ignored as Binaryen ignores them; unknown ``asyncify-*`` keys are an
        error (Binaryen would silently ignore a misspelt option). List values
        starting with ``@`` are read from that file, relative to `base_dir`.
        """
        return cls._from_arg_map(_collect_pass_args(args), base_dir=base_dir)

    @classmethod
    def _from_arg_map(
        cls, arg_map: Mapping[str, str], *, base_dir: str | os.PathLike[str] | None
    ) -> AsyncifyOptions:
        def get(key: str) -> str:
            return arg_map.get(key, "")

        def has(key: str) -> bool:
            return key in arg_map

        imports_text = trim(read_possible_response_file(get("asyncify-imports"), base_dir))
        imports: tuple[str, ...] | None = None
        if imports_text:
            imports = tuple(split_list(imports_text)[0])
        remove_raw = get("asyncify-removelist") or get("asyncify-blacklist")
        only_raw = get("asyncify-onlylist") or get("asyncify-whitelist")
        size = 1
        if has("asyncify-in-secondary-memory") and has("asyncify-secondary-memory-size"):
            size = _stoi(get("asyncify-secondary-memory-size"), "asyncify-secondary-memory-size")
        return cls(
            imports=imports,
            ignore_imports=get("asyncify-ignore-imports") != "",
            ignore_indirect=has("asyncify-ignore-indirect"),
            removelist=_parse_list(remove_raw, base_dir=base_dir, brackets=True),
            addlist=_parse_list(get("asyncify-addlist"), base_dir=base_dir, brackets=True),
            onlylist=_parse_list(only_raw, base_dir=base_dir, brackets=True),
            propagate_addlist=has("asyncify-propagate-addlist"),
            asserts=has("asyncify-asserts"),
            verbose=has("asyncify-verbose"),
            import_globals=has("asyncify-import-globals") or has("asyncify-relocatable"),
            export_globals=has("asyncify-export-globals"),
            memory=arg_map["asyncify-memory"] if has("asyncify-memory") else None,
            in_secondary_memory=has("asyncify-in-secondary-memory"),
            secondary_memory_size=size,
            precise_indirect=has("asyncify-precise-indirect"),
        )

    # -- wasync's command line ------------------------------------------------

    @classmethod
    def from_cli(
        cls,
        *,
        imports: str | Sequence[str] | None = None,
        ignore_imports: bool = False,
        ignore_indirect: bool = False,
        addlist: str | Sequence[str] | None = None,
        removelist: str | Sequence[str] | None = None,
        onlylist: str | Sequence[str] | None = None,
        propagate_addlist: bool = False,
        asserts: bool = False,
        verbose: bool = False,
        import_globals: bool = False,
        export_globals: bool = False,
        memory: str | None = None,
        in_secondary_memory: bool = False,
        secondary_memory_size: int | str | None = None,
        precise_indirect: bool = False,
        pass_args: Sequence[str] = (),
        base_dir: str | os.PathLike[str] | None = None,
    ) -> AsyncifyOptions:
        """Options from wasync's CLI flags (``--imports 'env.sleep,wasi_*.fd_*'``,
        ``--ignore-indirect``, ``--addlist @names.txt``, ...).

        A list flag is a string in Binaryen's list syntax (commas or newlines,
        ``@file``), or a sequence of such strings (a flag given several times),
        whose entries are concatenated. An empty imports list means every
        import, as in Binaryen. `pass_args` are Binaryen pass arguments read
        first; the flags given here override them (flags only switch options
        on).
        """
        base = (
            cls._from_arg_map(_collect_pass_args(pass_args), base_dir=base_dir)
            if pass_args
            else cls()
        )

        def lst(value: str | Sequence[str] | None, *, brackets: bool) -> tuple[str, ...] | None:
            if value is None:
                return None
            texts = [value] if isinstance(value, str) else list(value)
            out: list[str] = []
            for text in texts:
                if brackets:
                    out += _parse_list(text, base_dir=base_dir, brackets=True)
                else:
                    body = trim(read_possible_response_file(text, base_dir))
                    if body:
                        out += split_list(body)[0]
            return tuple(out)

        imp = lst(imports, brackets=False)
        size = base.secondary_memory_size
        if secondary_memory_size is not None:
            size = (
                _stoi(secondary_memory_size, "--secondary-memory-size")
                if isinstance(secondary_memory_size, str)
                else secondary_memory_size
            )
        removes = lst(removelist, brackets=True)
        adds = lst(addlist, brackets=True)
        onlys = lst(onlylist, brackets=True)
        return cls(
            imports=(imp or None) if imports is not None else base.imports,
            ignore_imports=ignore_imports or base.ignore_imports,
            ignore_indirect=ignore_indirect or base.ignore_indirect,
            removelist=removes if removes is not None else base.removelist,
            addlist=adds if adds is not None else base.addlist,
            onlylist=onlys if onlys is not None else base.onlylist,
            propagate_addlist=propagate_addlist or base.propagate_addlist,
            asserts=asserts or base.asserts,
            verbose=verbose or base.verbose,
            import_globals=import_globals or base.import_globals,
            export_globals=export_globals or base.export_globals,
            memory=memory if memory is not None else base.memory,
            in_secondary_memory=in_secondary_memory or base.in_secondary_memory,
            secondary_memory_size=size,
            precise_indirect=precise_indirect or base.precise_indirect,
        )

    def to_pass_args(self) -> list[str]:
        """These options as Binaryen pass arguments (for ``wasm-opt --asyncify``;
        names containing newlines cannot be expressed and are an error)."""
        out: list[str] = []

        def join(key: str, items: tuple[str, ...]) -> None:
            if any("\n" in i for i in items):
                raise AsyncifyError(f"{key}: a name with a newline cannot be a pass argument")
            out.append(f"{key}@{','.join(items)}")

        if self.imports:
            join("asyncify-imports", self.imports)
        for flag, key in (
            # An empty imports tuple (no import may unwind) is Binaryen's
            # ignore-imports: its empty imports list would mean all imports.
            (self.ignore_imports or self.imports == (), "asyncify-ignore-imports"),
            (self.ignore_indirect, "asyncify-ignore-indirect"),
        ):
            if flag:
                out.append(key)
        for key, items in (
            ("asyncify-removelist", self.removelist),
            ("asyncify-addlist", self.addlist),
            ("asyncify-onlylist", self.onlylist),
        ):
            if items:
                join(key, items)
        for flag, key in (
            (self.propagate_addlist, "asyncify-propagate-addlist"),
            (self.asserts, "asyncify-asserts"),
            (self.verbose, "asyncify-verbose"),
            (self.import_globals, "asyncify-import-globals"),
            (self.export_globals, "asyncify-export-globals"),
            (self.in_secondary_memory, "asyncify-in-secondary-memory"),
            (self.precise_indirect, "asyncify-precise-indirect"),
        ):
            if flag:
                out.append(key)
        if self.memory is not None:
            out.append(f"asyncify-memory@{self.memory}")
        if self.in_secondary_memory and self.secondary_memory_size != 1:
            out.append(f"asyncify-secondary-memory-size@{self.secondary_memory_size}")
        return out


def _collect_pass_args(args: Sequence[str]) -> dict[str, str]:
    """Parse pass-argument items into Binaryen's key -> value map."""
    if isinstance(args, str):
        raise AsyncifyError("pass arguments must be a sequence of strings, not one string")
    out: dict[str, str] = {}
    items = list(args)
    i = 0
    while i < len(items):
        item = items[i]
        i += 1
        if item in ("--pass-arg", "-pa"):
            if i >= len(items):
                raise AsyncifyError(f"{item} needs an argument (KEY@VALUE)")
            item = items[i]
            i += 1
        elif item.startswith(("--pass-arg=", "-pa=")):
            item = item.split("=", 1)[1]
        elif item == "--asyncify":
            continue
        elif item.startswith("-"):
            raise AsyncifyError(f"not a pass argument: {item!r}")
        key, sep, value = item.partition("@")
        if not sep:
            value = "1"
        if key.startswith("asyncify-") and key not in PASS_ARG_KEYS:
            known = ", ".join(sorted(PASS_ARG_KEYS))
            raise AsyncifyError(f"unknown Asyncify pass argument {key!r} (known: {known})")
        out[key] = value
    return out
