"""wasync's Asyncify beyond Binaryen: what Binaryen 108 rejects or gets wrong.

Every case runs the untransformed module on plain wasmtime and the transformed one
under :class:`tests.support.asyncify_driver.Runner`, where every import call
suspends (unwind, the host runs, rewind by calling the export again): the results
must be identical and the suspensions must have happened. Where Binaryen can read
the input, a second test shows what it does with it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest
import wasmtime

import wasync
from tests.conftest import wat
from tests.support.asyncify_driver import HostContext, Runner, WasmValue
from tests.support.binaryen import BinaryenError, binaryen_asyncify
from wasync._binary.types import EXTERNREF
from wasync._ir.stack import type_function
from wasync._runtime._module import WASM_FEATURES

Host = dict[tuple[str, str], Callable[..., Any]]


def times_ten(ctx: HostContext, x: int) -> int:
    del ctx
    return x * 10


SLEEP: Host = {("env", "sleep"): times_ten}


def differential(
    source: str,
    calls: Sequence[tuple[str, list[WasmValue]]],
    *,
    host: Host = SLEEP,
    **options: Any,
) -> tuple[Runner, list[list[WasmValue]]]:
    """Run `calls` on the original and on the transformed module: same results,
    and at least one suspension per call. Returns the transformed run."""
    plain = wat(source)
    out = wasync.asyncify(plain, **options)
    original = Runner(plain, host, asyncify=False, memory0="memory")
    runner = Runner(out, host, asyncify=True, memory0="memory")
    results = []
    for name, args in calls:
        expected = original.call(name, args)
        before = runner.suspensions
        got = runner.call(name, args)
        assert got == expected, name
        assert runner.suspensions > before, f"{name} did not suspend"
        results.append(got)
    return runner, results


def binaryen_rejects(source: str, message: str) -> None:
    with pytest.raises(BinaryenError, match=message):
        binaryen_asyncify(source, opt="")


# --------------------------------------------------------------------------------------------
# call_ref


CALL_REF = """(module
  (import "env" "sleep" (func $sleep (param i32) (result i32)))
  (memory (export "memory") 1)
  (type $ft (func (param i32) (result i32)))
  (elem declare func $inc $dbl)
  (func $inc (type $ft) (i32.add (call $sleep (local.get 0)) (i32.const 1)))
  (func $dbl (type $ft) (i32.mul (local.get 0) (i32.const 2)))
  (func (export "f") (param i32) (result i32) (local $r (ref null $ft)) (local $g (ref $ft))
    (local.set $r (ref.func $inc))
    (local.set $g (ref.func $dbl))
    ;; the function reference of the outer call_ref sits on the stack below a
    ;; suspending call_ref and a suspending call
    (call_ref $ft
      (i32.add (call_ref $ft (local.get 0) (local.get $r)) (call $sleep (i32.const 5)))
      (local.get $g))
    (call_ref $ft (local.get $r)))
  (func (export "pick") (param i32) (result i32)
    (call_ref $ft (i32.const 3)
      (select (result (ref $ft)) (ref.func $inc) (ref.func $dbl) (local.get 0)))))"""


def test_call_ref_to_a_suspending_function() -> None:
    _, results = differential(
        CALL_REF, [("f", [("i32", 7)]), ("pick", [("i32", 1)]), ("f", [("i32", 1)])]
    )
    assert results[0] == [("i32", ((70 + 1 + 50) * 2) * 10 + 1)]
    assert results[1] == [("i32", 31)]


def test_call_ref_ignore_indirect_is_not_a_site() -> None:
    # With ignore_indirect, call_ref is not a site (as Binaryen's call_indirect):
    # "pick" (defined function 3) is not instrumented, and in "f" (2) only the
    # direct call is a site.
    _, report = wasync.asyncify_with_report(wat(CALL_REF), ignore_indirect=True)
    assert {report.names[f] for f in report.instrumented} == {"inc", "2"}
    assert report.call_sites == 2
    _, report = wasync.asyncify_with_report(wat(CALL_REF))
    assert {report.names[f] for f in report.instrumented} == {"inc", "2", "3"}
    assert report.call_sites == 6


def test_binaryen_cannot_run_call_ref() -> None:
    # Binaryen 108 leaves call_ref uninstrumented (and writes it in a pre-standard
    # encoding that wasmtime refuses).
    try:
        out = binaryen_asyncify(CALL_REF, opt="")
    except BinaryenError:
        return
    with pytest.raises(wasmtime.WasmtimeError):
        wasmtime.Module.validate(wasmtime.Engine(_all_features()), out)


def _all_features() -> wasmtime.Config:
    cfg = wasmtime.Config()
    for feature in WASM_FEATURES:
        setattr(cfg, feature, True)
    return cfg


# --------------------------------------------------------------------------------------------
# References live across a suspension

EXTERNREF_LOCAL = """(module
  (import "env" "sleep" (func $sleep (param i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "g") (param externref) (result externref) (local $x externref)
     (local.set $x (local.get 0))
     (drop (call $sleep (i32.const 3)))
     (local.get $x)))"""


def test_externref_local_and_parameter() -> None:
    differential(EXTERNREF_LOCAL, [("g", [("ref.extern", 42)]), ("g", [("ref.extern", "text")])])


def test_binaryen_rejects_reference_locals() -> None:
    binaryen_rejects(EXTERNREF_LOCAL, "does not yet support non-number types")


GC = """(module
  (import "env" "sleep" (func $sleep (param i32) (result i32)))
  (memory (export "memory") 1)
  (type $pair (struct (field i32) (field (mut i32))))
  (type $arr (array (mut i32)))
  (type $ft (func (param i32) (result i32)))
  (elem declare func $id)
  (func $id (type $ft) (local.get 0))
  ;; Non-nullable results: an unwind must return a dummy value of these types.
  (func $mk (param i32) (result (ref $pair))
    (struct.new $pair (call $sleep (local.get 0)) (local.get 0)))
  (func $mkfn (param i32) (result (ref $ft))
    (drop (call $sleep (local.get 0))) (ref.func $id))
  (func $mkany (param i32) (result (ref any))
    (ref.i31 (call $sleep (local.get 0))))
  (func $mkarr (param i32) (result (ref $arr))
    (array.new $arr (local.get 0) (call $sleep (i32.const 2))))
  (func $mkext (param externref) (result (ref extern))
    (drop (call $sleep (i32.const 1))) (ref.as_non_null (local.get 0)))
  (func (export "h") (param i32) (result i32)
    (local $p (ref $pair)) (local $q (ref null $pair)) (local $a anyref) (local $e eqref)
    (local.set $p (call $mk (local.get 0)))
    (local.set $a (call $mkany (i32.const 4)))
    (local.set $e (ref.i31 (i32.const 9)))
    (struct.set $pair 1 (local.get $p) (call $sleep (i32.const 6)))
    ;; a non-nullable struct, an i31 and a typed function reference on the stack
    ;; below suspending calls
    (i32.add
      (i32.add
        (struct.get $pair 1 (local.get $p))
        (struct.get $pair 0 (call $mk (i32.const 2))))
      (i32.add
        (i32.add
          (i31.get_s (ref.cast (ref i31) (local.get $a)))
          (call_ref $ft (call $sleep (i32.const 7)) (call $mkfn (i32.const 1))))
        (i32.add
          (i31.get_u (ref.cast (ref i31) (local.get $e)))
          (array.get $arr (call $mkarr (i32.const 3)) (i32.const 2))))))
  (func (export "ext") (param externref) (result externref)
    (call $mkext (local.get 0))))"""


def test_gc_references_and_non_nullable_values() -> None:
    differential(GC, [("h", [("i32", 5)]), ("ext", [("ref.extern", "x")])])


EXNREF = """(module
  (import "env" "sleep" (func $sleep (param i32) (result i32)))
  (memory (export "memory") 1)
  (tag $e (param i32))
  (func (export "x") (param i32) (result i32) (local $x exnref)
    (local.set $x
      (block $h (result exnref)
        (try_table (catch_all_ref $h) (throw $e (local.get 0)))
        (unreachable)))
    (drop (call $sleep (i32.const 1)))
    (block $c (result i32)
      (try_table (catch $e $c) (throw_ref (local.get $x)))
      (unreachable))
    (call $sleep)))"""


def test_exnref_local() -> None:
    differential(EXNREF, [("x", [("i32", 4)])])


RECURSIVE = """(module
  (import "env" "sleep" (func $sleep (param i32) (result i32)))
  (memory (export "memory") 1)
  (type $box (struct (field i32)))
  (func $rec (export "rec") (param $n i32) (param $s externref) (result i32)
    (local $b (ref null $box))
    (local.set $b (struct.new $box (i32.mul (local.get $n) (i32.const 3))))
    (if (result i32) (i32.eqz (local.get $n))
      (then (call $sleep (i32.const 1)))
      (else
        (i32.add
          (call $rec (i32.sub (local.get $n) (i32.const 1)) (local.get $s))
          (i32.add
            (struct.get $box 0 (local.get $b))
            (ref.is_null (local.get $s))))))))"""


def test_many_frames_with_references_reuse_their_slots() -> None:
    plain = wat(RECURSIVE)
    out = wasync.asyncify(plain)
    m = wasync.decode_module(out)
    assert len(m.tables) == 2  # one per heap type saved: extern, $box
    # Export the tables and their stack pointers to look at them after the calls.
    sp_globals = list(range(len(m.globals) - 2, len(m.globals)))
    for k in range(2):
        m.exports.append(wasync.Export(f"t{k}", wasync.ExternKind.TABLE, k))
        m.exports.append(wasync.Export(f"sp{k}", wasync.ExternKind.GLOBAL, sp_globals[k]))
    runner = Runner(wasync.encode_module(m), SLEEP, asyncify=True, memory0="memory")
    original = Runner(plain, SLEEP, asyncify=False, memory0="memory")
    frames = 0
    for n in (0, 3, 40, 40, 5):
        frames = max(frames, n + 1)  # the deepest suspension so far
        args: list[WasmValue] = [("i32", n), ("ref.extern", n)]
        assert runner.call("rec", args) == original.call("rec", args)
        for k in range(2):
            assert runner.get(f"sp{k}") == ("i32", 0)
            table = runner.exports[f"t{k}"]
            assert isinstance(table, wasmtime.Table)
            size = table.size(runner.store)
            assert frames <= size <= 2 * frames + 1  # grown as needed, then reused
            if m.tables[k].type.elem == EXTERNREF:  # wasmtime-py cannot read anyref
                # Slots are cleared once restored (no stale references kept alive).
                assert [table.get(runner.store, i) for i in range(size)] == [None] * size
    assert runner.suspensions == 5


def test_references_without_instrumentation_change_nothing() -> None:
    # No reference live across a call that may suspend: no table, no global added.
    source = """(module
      (import "env" "sleep" (func $sleep (param i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "f") (param externref) (result i32)
        (drop (call $sleep (ref.is_null (local.get 0))))
        (i32.const 1)))"""
    out = wasync.asyncify(wat(source))
    m = wasync.decode_module(out)
    assert not m.tables
    assert len(m.globals) == 2


# --------------------------------------------------------------------------------------------
# Exceptions: try_table and legacy try/catch/catch_all/delegate

TRY_TABLE = """(module
  (import "env" "sleep" (func $sleep (param i32) (result i32)))
  (memory (export "memory") 1)
  (tag $e (param i32))
  (tag $f (param i32 i64))
  ;; suspension inside the try body; the exception thrown after resuming is
  ;; caught, its value flows to a block result (through the spill locals)
  (func (export "body") (param i32) (result i32)
    (i32.add (i32.const 1000)
      (block $h (result i32)
        (try_table (result i32) (catch $e $h)
          (call $sleep (local.get 0))
          (if (i32.gt_u (local.get 0) (i32.const 2))
            (then (throw $e (i32.add (call $sleep (i32.const 7)) (local.get 0)))))
          (i32.const 1)
          (i32.add))))
    )
  ;; two values and an exnref through a catch_ref, suspension in the code the
  ;; catch branches to, then throw_ref of the saved exnref caught outside
  (func $inner (param i32) (result i32) (local $x exnref) (local $a i32)
    (block $h (result i32 i64 exnref)
      (try_table (catch_ref $f $h)
        (drop (call $sleep (local.get 0)))
        (throw $f (local.get 0) (i64.const 5)))
      (unreachable))
    (local.set $x)
    (drop)
    (local.set $a)
    (drop (call $sleep (local.get $a)))
    (if (local.get $a) (then (throw_ref (local.get $x))))
    (i32.const -1))
  (func (export "handler") (param i32) (result i32)
    (block $h (result i32 i64)
      (try_table (result i32) (catch $f $h)
        (call $inner (local.get 0)))
      (return))
    (drop)
    (i32.add (call $sleep (i32.const 1)))))"""


COPIED_TRY_TABLE = """(module
  (import "env" "sleep" (func $sleep (param i32) (result i32)))
  (memory (export "memory") 1)
  (tag $e (param i32))
  (type $p (func (param i32) (result i32)))
  ;; a try_table without a site (copied as it is) whose catch carries a value to
  ;; a block that contains a site (its values live in spill locals): the catch
  ;; goes through a trampoline; the try_table takes a parameter
  (func (export "f") (param i32) (result i32)
    (block $b (result i32)
      (drop (call $sleep (local.get 0)))
      (i32.const 5)
      try_table (type $p) (catch $e $b)
        local.get 0
        i32.add
        local.get 0
        if (type $p)
          throw $e
        end
      end
      (i32.add (call $sleep (i32.const 3))))))"""


def test_copied_try_table_catching_into_a_suspending_block() -> None:
    differential(COPIED_TRY_TABLE, [("f", [("i32", 0)]), ("f", [("i32", 4)])])


def test_try_table_suspending_in_the_body_and_in_the_handler() -> None:
    differential(
        TRY_TABLE,
        [
            ("body", [("i32", 1)]),
            ("body", [("i32", 5)]),
            ("handler", [("i32", 3)]),
            ("handler", [("i32", 0)]),
        ],
    )


LEGACY = """(module
  (import "env" "sleep" (func $sleep (param i32) (result i32)))
  (memory (export "memory") 1)
  (tag $e (param i32))
  ;; suspension in the body; exception after resuming caught by catch $e
  (func (export "body") (param i32) (result i32)
    try (result i32)
      (drop (call $sleep (local.get 0)))
      (throw $e (i32.mul (call $sleep (i32.const 2)) (local.get 0)))
    catch $e
      (i32.add (i32.const 1))
    end)
  ;; suspension inside a catch body, then rethrow (caught by the caller), or a
  ;; branch out of the handler to the try's label with a value
  (func $cleanup (param i32) (result i32)
    try $t (result i32)
      (throw $e (local.get 0))
    catch $e
      (local.set 0 (i32.add (call $sleep (i32.const 4))))
      (br_if $t (i32.const 77) (i32.eq (local.get 0) (i32.const 40)))
      rethrow $t
    catch_all
      (i32.const 0)
    end)
  (func (export "handler") (param i32) (result i32)
    try (result i32)
      (call $cleanup (local.get 0))
    catch $e
      (i32.add (i32.const 5000))
    end)
  ;; catch_all with a suspension, then rethrow
  (func $all (param i32) (result i32)
    try $outer (result i32)
      (drop (call $sleep (i32.const 1)))
      (throw $e (local.get 0))
    catch $e
      (local.set 0)
      try (result i32)
        (throw $e (i32.add (local.get 0) (i32.const 1)))
      catch_all
        (drop (call $sleep (i32.const 9)))
        rethrow 0
      end
    end)
  (func (export "all") (param i32) (result i32)
    try (result i32)
      (call $all (local.get 0))
    catch $e
    end))"""


def test_legacy_try_suspending_in_body_and_handlers() -> None:
    # This wasmtime has no legacy exceptions: the original cannot run, the output
    # can (every try that contains a site became a try_table). Expected values
    # worked out by hand.
    out = wasync.asyncify(wat(LEGACY))
    assert "try" not in _op_names(out)  # no legacy `try` left
    runner = Runner(out, SLEEP, asyncify=True, memory0="memory")
    expected = {
        ("body", 3): 20 * 3 + 1,  # caught after two suspensions
        ("handler", 2): 5002,  # 2 + 40 != 40: rethrown, caught by the caller
        ("handler", 0): 77,  # 0 + 40 == 40: br_if out of the handler
        ("all", 6): 7,  # rethrown from a catch_all after a suspension
    }
    for (name, arg), value in expected.items():
        before = runner.suspensions
        assert runner.call(name, [("i32", arg)]) == [("i32", value)], name
        assert runner.suspensions > before


def _op_names(wasm: bytes) -> set[str]:
    m = wasync.decode_module(wasm)
    nimp = m.num_imported_funcs
    return {ins.op.name for f in range(nimp, nimp + len(m.codes)) for ins in m.body(f).instrs}


def test_try_delegate_around_a_suspension_is_kept() -> None:
    # try ... delegate stays a legacy try (with its block type emptied); the
    # delegate to a try turned into try_table lands on that try_table.
    source = """(module
      (import "env" "sleep" (func $sleep (param i32) (result i32)))
      (memory (export "memory") 1)
      (tag $e (param i32))
      (func (export "f") (param i32) (result i32)
        try $outer (result i32)
          try (result i32)
            (call $sleep (local.get 0))
          delegate $outer
        catch $e
        end))"""
    out = wasync.asyncify(wat(source))
    m = wasync.decode_module(out)
    f = m.num_imported_funcs
    names = [ins.op.name for ins in m.body(f).instrs]
    assert "delegate" in names
    assert "try_table" in names
    type_function(m, f)  # structurally valid


def test_binaryen_on_exceptions() -> None:
    # Binaryen 108 cannot read try_table, and crashes on a call that may
    # suspend inside a catch body ("unexpected expression type").
    with pytest.raises(BinaryenError):
        binaryen_asyncify(TRY_TABLE, opt="")
    with pytest.raises(BinaryenError, match="unexpected expression type"):
        binaryen_asyncify(LEGACY, opt="")


# --------------------------------------------------------------------------------------------
# Overflow of the data buffer

DEEP = """(module
  (import "env" "sleep" (func $sleep (param i32) (result i32)))
  (memory (export "memory") 1)
  (func $rec (export "rec") (param $n i32) (result i32) (local $a i64) (local $b f64)
    (local.set $a (i64.extend_i32_u (local.get $n)))
    (local.set $b (f64.convert_i32_u (local.get $n)))
    (if (result i32) (local.get $n)
      (then
        (i32.add (call $rec (i32.sub (local.get $n) (i32.const 1)))
          (i32.add (i32.wrap_i64 (local.get $a)) (i32.trunc_f64_u (local.get $b)))))
      (else (call $sleep (i32.const 0))))))"""

BUFFER, ROOM, SENTINEL = 1024, 64, b"\xaa" * 4096


def unwind_into_a_small_buffer(wasm: bytes) -> tuple[bytes, bool]:
    """Call rec(50), unwinding at the bottom into a buffer with ROOM bytes: the
    memory after the buffer's end, and whether asyncify_stop_unwind trapped."""
    store = wasmtime.Store(wasmtime.Engine(_all_features()))
    module = wasmtime.Module(store.engine, wasm)
    linker = wasmtime.Linker(store.engine)

    def sleep(caller: wasmtime.Caller, x: int) -> int:
        start = caller["asyncify_start_unwind"]
        assert isinstance(start, wasmtime.Func)
        start(caller, BUFFER)
        return x

    ty = wasmtime.FuncType([wasmtime.ValType.i32()], [wasmtime.ValType.i32()])
    linker.define_func("env", "sleep", ty, sleep, access_caller=True)
    inst = linker.instantiate(store, module)
    exports = inst.exports(store)
    mem = exports["memory"]
    assert isinstance(mem, wasmtime.Memory)
    end = BUFFER + 8 + ROOM
    mem.write(store, (BUFFER + 8).to_bytes(4, "little") + end.to_bytes(4, "little"), BUFFER)
    mem.write(store, SENTINEL, end)
    rec = exports["rec"]
    assert isinstance(rec, wasmtime.Func)
    rec(store, 50)
    state = exports["asyncify_get_state"]
    assert isinstance(state, wasmtime.Func)
    assert state(store) == 1  # unwinding
    stop = exports["asyncify_stop_unwind"]
    assert isinstance(stop, wasmtime.Func)
    try:
        stop(store)
        trapped = False
    except wasmtime.Trap:
        trapped = True
    return bytes(mem.read(store, end, end + len(SENTINEL))), trapped


def test_overflow_never_writes_past_the_buffer() -> None:
    after, trapped = unwind_into_a_small_buffer(wasync.asyncify(wat(DEEP)))
    assert trapped
    assert after == SENTINEL


def test_binaryen_overflow_writes_past_the_buffer() -> None:
    # Binaryen issue #3839: frames are written past the end, noticed only later.
    after, trapped = unwind_into_a_small_buffer(binaryen_asyncify(DEEP, opt="-O1"))
    assert trapped
    assert after != SENTINEL


# --------------------------------------------------------------------------------------------
# Tail calls

TAIL = """(module
  (import "env" "sleep" (func $sleep (param i32) (result i32)))
  (memory (export "memory") 1)
  ;; $even/$odd tail-call each other n times, then (when asked) suspend at the
  ;; bottom; $count tail-calls itself
  (func $even (export "even") (param $n i32) (param $acc i64) (param $s i32) (result i64)
    (local $k i64)
    (local.set $k (i64.mul (local.get $acc) (i64.const 3)))
    (if (i32.eqz (local.get $n))
      (then
        (if (local.get $s)
          (then (return (i64.add (local.get $k)
            (i64.extend_i32_u (call $sleep (local.get $s)))))))
        (return (local.get $acc))))
    (return_call $odd (i32.sub (local.get $n) (i32.const 1))
      (i64.add (local.get $acc) (i64.extend_i32_u (local.get $n))) (local.get $s)))
  (func $odd (param $n i32) (param $acc i64) (param $s i32) (result i64)
    (if (i32.eqz (local.get $n))
      (then (return (i64.sub (i64.const 0) (i64.extend_i32_u
        (call $sleep (i32.add (local.get $s) (i32.wrap_i64 (local.get $acc)))))))))
    (return_call $even (i32.sub (local.get $n) (i32.const 1))
      (i64.xor (local.get $acc) (i64.extend_i32_u (local.get $n))) (local.get $s)))
  (func $count (export "count") (param $n i32) (param $s i32) (result i32)
    (if (i32.eqz (local.get $n)) (then (return (call $sleep (local.get $s)))))
    (return_call $count (i32.sub (local.get $n) (i32.const 1)) (local.get $s)))
  ;; a normal caller of a tail-calling function, with a live local
  (func (export "outer") (param $n i32) (result i64) (local $x i64)
    (local.set $x (i64.extend_i32_u (local.get $n)))
    (i64.add (call $even (local.get $n) (i64.const 0) (i32.const 2)) (local.get $x))))"""


def test_tail_calls_suspending_deep_in_a_chain() -> None:
    runner, _ = differential(
        TAIL,
        [
            ("even", [("i32", 10), ("i64", 1), ("i32", 1)]),
            ("even", [("i32", 100_001), ("i64", 5), ("i32", 3)]),
            ("count", [("i32", 200_000), ("i32", 4)]),
            ("outer", [("i32", 7)]),
            ("outer", [("i32", 8)]),
        ],
    )
    # Frames carry their owner: one frame per suspension here (the tail calls
    # left none behind).
    assert runner.suspensions == 5


def test_deep_tail_recursion_stays_a_tail_call() -> None:
    # 1,000,000 tail calls without a suspension: no stack growth (a call + return
    # rewrite would overflow wasmtime's stack).
    out = wasync.asyncify(wat(TAIL))
    names = _op_names(out)
    assert "return_call" in names
    runner = Runner(out, SLEEP, asyncify=True, memory0="memory")
    args: list[WasmValue] = [("i32", 1_000_000), ("i64", 0), ("i32", 0)]
    plain = Runner(wat(TAIL), SLEEP, asyncify=False, memory0="memory")
    assert runner.call("even", args) == plain.call("even", args)
    assert runner.call("count", [("i32", 1_000_000), ("i32", 0)]) == [("i32", 0)]
    assert runner.suspensions == 1  # count's sleep(0) at the bottom


def test_binaryen_rejects_tail_calls() -> None:
    binaryen_rejects(TAIL, "tail calls not yet supported")


TAIL_INDIRECT = """(module
  (import "env" "sleep" (func $sleep (param i32) (result i32)))
  (memory (export "memory") 1)
  (type $step (func (param i32 i64 i32) (result i64)))
  (type $cnt (func (param i32 i32) (result i32)))
  (table $t 4 funcref)
  (elem (table $t) (i32.const 0) func $even $odd $count)
  (elem declare func $odd $even)
  ;; as in TAIL, but $even reaches $odd through the table and $odd reaches
  ;; $even through a function reference; $count tail-calls itself through the
  ;; table
  (func $even (export "even") (type $step) (local $k i64)
    (local.set $k (i64.mul (local.get 1) (i64.const 3)))
    (if (i32.eqz (local.get 0))
      (then
        (if (local.get 2)
          (then (return (i64.add (local.get $k)
            (i64.extend_i32_u (call $sleep (local.get 2)))))))
        (return (local.get 1))))
    (return_call_indirect $t (type $step) (i32.sub (local.get 0) (i32.const 1))
      (i64.add (local.get 1) (i64.extend_i32_u (local.get 0))) (local.get 2)
      (i32.const 1)))
  (func $odd (type $step)
    (if (i32.eqz (local.get 0))
      (then (return (i64.sub (i64.const 0) (i64.extend_i32_u
        (call $sleep (i32.add (local.get 2) (i32.wrap_i64 (local.get 1)))))))))
    (return_call_ref $step (i32.sub (local.get 0) (i32.const 1))
      (i64.xor (local.get 1) (i64.extend_i32_u (local.get 0))) (local.get 2)
      (ref.func $even)))
  (func $count (export "count") (type $cnt)
    (if (i32.eqz (local.get 0)) (then (return (call $sleep (local.get 1)))))
    (return_call_indirect $t (type $cnt) (i32.sub (local.get 0) (i32.const 1)) (local.get 1)
      (i32.const 2)))
  (func (export "outer") (param $n i32) (result i64) (local $x i64)
    (local.set $x (i64.extend_i32_u (local.get $n)))
    (i64.add (call $even (local.get $n) (i64.const 0) (i32.const 2)) (local.get $x))))"""


def test_indirect_tail_calls_suspending_deep_in_a_chain() -> None:
    """``return_call_indirect`` and ``return_call_ref`` stay tail calls: the
    frame of whichever instrumented function of the type is on top is handed
    over to on a rewind."""
    runner, _ = differential(
        TAIL_INDIRECT,
        [
            ("even", [("i32", 10), ("i64", 1), ("i32", 1)]),
            ("even", [("i32", 100_001), ("i64", 5), ("i32", 3)]),
            ("count", [("i32", 200_000), ("i32", 4)]),
            ("outer", [("i32", 7)]),
            ("outer", [("i32", 8)]),
        ],
    )
    assert runner.suspensions == 5
    names = _op_names(wasync.asyncify(wat(TAIL_INDIRECT)))
    assert {"return_call_indirect", "return_call_ref"} <= names
    args: list[WasmValue] = [("i32", 1_000_000), ("i64", 0), ("i32", 0)]
    plain = Runner(wat(TAIL_INDIRECT), SLEEP, asyncify=False, memory0="memory")
    assert runner.call("even", args) == plain.call("even", args)


TAIL_TO_IMPORT = """(module
  (import "env" "sleep" (func $sleep (param i32) (result i32)))
  (memory (export "memory") 1)
  (type $t (func (param i32) (result i32)))
  (table 2 funcref)
  (elem (i32.const 0) func $sleep $twice)
  (func $twice (type $t) (i32.mul (local.get 0) (i32.const 2)))
  ;; a tail call straight to the import, and one through the table that may
  ;; land on it
  (func $direct (export "direct") (param i32) (result i32) (local $y i32)
    (local.set $y (i32.add (local.get 0) (i32.const 1)))
    (return_call $sleep (local.get $y)))
  (func (export "indirect") (param i32) (param i32) (result i32)
    (return_call_indirect (type $t) (local.get 0) (local.get 1)))
  (func (export "outer") (param i32) (result i32) (local $z i32)
    (local.set $z (i32.mul (local.get 0) (i32.const 100)))
    (i32.add (call $direct (local.get 0)) (local.get $z))))"""


def test_tail_calls_to_an_import_that_suspends() -> None:
    """An import leaves no frame to hand over to, so a tail call that may reach
    one becomes a call and ``return`` (one frame deeper, once)."""
    differential(
        TAIL_TO_IMPORT,
        [
            ("direct", [("i32", 4)]),
            ("outer", [("i32", 3)]),
            ("indirect", [("i32", 6), ("i32", 0)]),
        ],
    )
    runner = Runner(wasync.asyncify(wat(TAIL_TO_IMPORT)), SLEEP, asyncify=True, memory0="memory")
    assert runner.call("indirect", [("i32", 6), ("i32", 1)]) == [("i32", 12)]
    assert runner.suspensions == 0
