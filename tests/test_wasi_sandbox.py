"""The WASI sandbox: escapes from a preopened directory, under wasmtime and wasync.

``tests/data/wasi/sandbox.c`` tries every way out it has (``..``, absolute
paths, symlinks planted by the host or made by the guest, hard links,
renames) in groups chosen by ``argv[1]``.  Each group runs under wasmtime and
under wasync on every strategy in a fresh tree: the errnos (the program's
output) and the tree left behind must be identical, and nothing outside the
preopen may change: the canaries in ``root/outside`` keep their content and
modification times, and no entry appears or disappears there.

Also here: read-only preopens (``HostDir(readonly=True)`` against wasmtime's
read-only preopen), rights, and a directory swapped for a symlink to the
outside by the host while the guest keeps opening a file inside it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

from tests.support.wasi_harness import (
    CANARY,
    STRATEGIES,
    Outcome,
    Run,
    Strategy,
    fresh_root,
    host_dir,
    run_wasmtime,
    run_wasync,
    snapshot,
    text_diff,
    wasync_module,
)
from wasync._wasi._core import Wasi
from wasync._wasi._hostfs import HostDir

MODES = ["dotdot", "absolute", "host-symlinks", "guest-symlinks", "hardlinks", "rename", "rights"]


def outside_state(root: Path) -> list[tuple[str, int, int]]:
    """Every entry outside the sandbox (and the roots themselves): path, size, mtime."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root)
        if rel.parts and rel.parts[0] == "sandbox":
            continue
        for name in [".", *dirnames, *filenames]:
            if not rel.parts and name == "sandbox":
                continue
            p = Path(dirpath) / name
            st = p.lstat()
            out.append(((rel / name).as_posix(), st.st_size, st.st_mtime_ns))
    return sorted(out)


def canaries_intact(root: Path, before: list[tuple[str, int, int]]) -> None:
    assert (root / "outside" / "canary.txt").read_bytes() == CANARY
    assert (root / "outside" / "canary_dir" / "inner.txt").read_bytes() == CANARY
    assert outside_state(root) == before


def run_case(run: Run, root: Path, strategy: Strategy | None) -> Outcome:
    before = outside_state(root)
    outcome = run_wasmtime(run, root) if strategy is None else run_wasync(run, root, strategy)
    canaries_intact(root, before)
    # host paths (the absolute canary path given as an argument) vary per run
    outcome.stdout = outcome.stdout.replace(str(root).encode(), b"<root>")
    return outcome


def mode_run(mode: str, root: Path) -> Run:
    args: tuple[str, ...] = (mode,)
    if mode == "absolute":
        args = (mode, str(root / "outside" / "canary.txt"))
    return Run("sandbox", args)


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("mode", MODES)
def test_escapes(mode: str, strategy: Strategy, tmp_path: Path) -> None:
    ref_root = fresh_root(tmp_path, "wasmtime")
    expected = run_case(mode_run(mode, ref_root), ref_root, None)
    root = fresh_root(tmp_path, "wasync")
    actual = run_case(mode_run(mode, root), root, strategy)
    assert actual.stdout == expected.stdout, text_diff(expected.stdout, actual.stdout)
    assert actual.exit_code == expected.exit_code == 0
    assert actual.tree == expected.tree
    assert b"OPENED" not in actual.stdout.replace(b"OPENED (read", b"")  # nothing escaped


LINK_FOLLOW = """\
== hard links through symlinks
symlink("../outside/canary.txt", "/sandbox/g_rel") = 0
__wasi_path_link(3, ((__wasi_lookupflags_t)(1 << 0)), "g_rel", 3, "g_hard") -> EPERM
__wasi_path_link(3, ((__wasi_lookupflags_t)(1 << 0)), "host_rel_escape", 3, "hl4") -> EPERM
__wasi_path_link(3, ((__wasi_lookupflags_t)(1 << 0)), "host_abs_escape", 3, "hl5") -> EPERM
__wasi_path_link(3, ((__wasi_lookupflags_t)(1 << 0)), far, 3, "hl6") -> EPERM
__wasi_path_link(3, ((__wasi_lookupflags_t)(1 << 0)), "link_to_hello", 3, "hl7") -> OK
lstat /sandbox/hl7: file size=13 nlink=2
"""


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_link_follow(strategy: Strategy, tmp_path: Path) -> None:
    """path_link(SYMLINK_FOLLOW): wasmtime refuses the flag (EINVAL) where
    wasync follows the link, inside the sandbox only; not compared."""
    root = fresh_root(tmp_path, "wasync")
    actual = run_case(Run("sandbox", ("link-follow",)), root, strategy)
    assert actual.text() == LINK_FOLLOW, text_diff(LINK_FOLLOW.encode(), actual.stdout)


# wasmtime's read-only preopen refuses changes with EPERM (its directory and file
# permissions); HostDir(readonly=True) with EROFS, the errno of a read-only host
# file system. Lines where only that differs are compared as equal; these lines
# differ for reasons of their own:
READONLY_KNOWN = {
    # the file was opened read-only: wasync says so (EINVAL, as Linux and
    # wasmtime say for a read-only descriptor in a writable directory) before
    # asking the file system; wasmtime checks its file permissions first
    "ftruncate(fd, 0) = -1 EPERM": "ftruncate(fd, 0) = -1 EINVAL",
    # fd_allocate: ENOTSUP in wasmtime whatever the file (see test_wasi_conformance.py)
    "posix_fallocate = ENOTSUP": "posix_fallocate = EBADF",
}


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_readonly_preopen(strategy: Strategy, tmp_path: Path) -> None:
    run = Run("sandbox", ("readonly",), readonly=True)
    ref_root = fresh_root(tmp_path, "wasmtime")
    initial = snapshot(ref_root)
    expected = run_case(run, ref_root, None)
    root = fresh_root(tmp_path, "wasync")
    actual = run_case(run, root, strategy)
    assert actual.tree == expected.tree == initial
    want = expected.text().splitlines()
    got = actual.text().splitlines()
    assert len(got) == len(want), text_diff(expected.stdout, actual.stdout)
    for w, g in zip(want, got, strict=True):
        assert g == READONLY_KNOWN.get(w, w.replace("EPERM", "EROFS")), (w, g)
    # every change was refused
    assert "EROFS" in actual.text()
    assert "write: 6" not in actual.text()


# -- a directory swapped for a symlink while the guest uses it ------------------------


@pytest.mark.parametrize("swapper", ["task", "thread"])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_directory_swapped_for_symlink(strategy: Strategy, swapper: str, tmp_path: Path) -> None:
    """The guest opens ``swap/f.txt`` (O_RDWR|O_CREAT) and stats it over and over
    while the host keeps replacing the directory ``swap`` by a symlink to the
    outside and back (from an asyncio task between the guest's calls, or from a
    thread at any moment).  Every open either reaches the file inside or fails;
    nothing outside is read, created or changed.

    With the task, the HostDir works inline (offload=False), so that the swaps
    fall exactly between the guest's calls (its sched_yield gives the task one
    step per iteration); in worker threads its calls would race the task as
    the thread does, and which states they meet would be up to the scheduler
    (a loaded machine could make them all meet the same one)."""
    root = fresh_root(tmp_path, "wasync")
    sandbox = root / "sandbox"
    (sandbox / "swap").mkdir()
    (sandbox / "swap" / "f.txt").write_bytes(b"inside\n")
    (root / "outside" / "f.txt").write_bytes(CANARY)  # what an escape would open
    before = outside_state(root)
    swaps = 0
    stop = False

    def swap_once() -> None:
        nonlocal swaps
        os.rename(sandbox / "swap", sandbox / "swap_real")
        os.symlink("../outside", sandbox / "swap")
        os.unlink(sandbox / "swap")
        os.rename(sandbox / "swap_real", sandbox / "swap")
        swaps += 1

    def swap_half() -> None:
        os.rename(sandbox / "swap", sandbox / "swap_real")
        os.symlink("../outside", sandbox / "swap")

    def unswap_half() -> None:
        nonlocal swaps
        os.unlink(sandbox / "swap")
        os.rename(sandbox / "swap_real", sandbox / "swap")
        swaps += 1

    async def task_swapper() -> None:
        while not stop:
            swap_half()
            await asyncio.sleep(0)
            unswap_half()
            await asyncio.sleep(0)

    def thread_swapper() -> None:
        while not stop:
            swap_once()

    out, err = bytearray(), bytearray()

    async def main() -> int:
        nonlocal stop
        fs = HostDir(sandbox, offload=False) if swapper == "task" else host_dir(sandbox)
        wasi = Wasi(["sandbox", "loop", "300"], {}, {"/sandbox": fs}, stdout=out, stderr=err)
        loop = asyncio.get_running_loop()
        helper: asyncio.Future[None] = (
            loop.create_task(task_swapper())
            if swapper == "task"
            else loop.run_in_executor(None, thread_swapper)
        )
        try:
            return await wasi.run(wasync_module("sandbox", strategy), strategy=strategy)
        finally:
            stop = True
            await helper

    assert asyncio.run(main()) == 0
    assert out.decode() == "== loop\niterations=300 read a canary=0\n"
    canaries_intact(root, before)
    assert (root / "outside" / "f.txt").read_bytes() == CANARY
    assert (sandbox / "swap" / "f.txt").read_bytes() == b"inside\n"
    assert swaps > 0
    opened, refused = (int(x.split("=")[1]) for x in err.decode().split())
    assert opened + refused == 300
    if swapper == "task":
        # swapped between the guest's calls: it met both states
        # (with a thread, how often each is met is up to the scheduler)
        assert opened > 0
        assert refused > 0
    shutil.rmtree(root)
