"""WASI under trio as under asyncio: sockets and descriptor readiness
(``poll_oneoff`` on sockets, with clocks), standard streams of every kind trio
can serve, cancellation, and the error for asyncio's own streams.

Each test runs the same program under both libraries and expects the same
outcome; the conformance suite (tests/test_wasi_conformance.py) runs programs
against wasmtime's WASI under trio too, and tests/test_wasi_backends.py the
file system backends.
"""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import trio

import wasync
from tests.support.corpus import compile_c
from tests.support.wasi_harness import LIBRARIES, Library, Strategy, build, host_dir
from wasync._wasi import _aio
from wasync._wasi._core import Wasi
from wasync._wasi._hostfs import HostDir

STRATEGIES: tuple[Strategy, ...] = ("fiber", "thread", "asyncify")

# A server on the listening socket preopened as fd 3: poll() with a timeout
# and nothing to accept, accept(), a non-blocking recv() that would block, poll()
# on two sockets at once, then an upper-casing echo until the client's EOF.
ECHO_C = r"""
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static long long mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

int main(void) {
  struct pollfd p[2] = {{3, POLLIN, 0}, {-1, POLLIN, 0}};
  long long t0 = mono_ms();
  int r = poll(p, 1, 30);
  printf("poll(listener, 30ms) = %d, waited >= 30ms: %d\n", r, mono_ms() - t0 >= 30);
  puts("ready to accept");
  fflush(stdout);
  int conn = accept(3, NULL, NULL);
  printf("accept: %s\n", conn >= 0 ? "ok" : "failed");
  int flags = fcntl(conn, F_GETFL);
  fcntl(conn, F_SETFL, flags | O_NONBLOCK);
  char buf[64];
  ssize_t n = recv(conn, buf, sizeof buf, 0);
  printf("non-blocking recv = %zd, EAGAIN: %d\n", n, n < 0 && errno == EAGAIN);
  fcntl(conn, F_SETFL, flags);
  send(conn, "ready\n", 6, 0);
  p[1].fd = conn;
  r = poll(p, 2, 5000);
  printf("poll(listener, conn) = %d: listener %d, conn %d\n", r, !!(p[0].revents & POLLIN),
         !!(p[1].revents & POLLIN));
  size_t total = 0;
  while ((n = recv(conn, buf, sizeof buf, 0)) > 0) {
    for (ssize_t i = 0; i < n; i++) buf[i] = (char)toupper((unsigned char)buf[i]);
    send(conn, buf, (size_t)n, 0);
    total += (size_t)n;
  }
  printf("echoed %zu bytes, then %zd\n", total, n);
  shutdown(conn, SHUT_WR);
  close(conn);
  return 0;
}
"""

ECHO_OUT = """\
poll(listener, 30ms) = 0, waited >= 30ms: 1
ready to accept
accept: ok
non-blocking recv = -1, EAGAIN: 1
poll(listener, conn) = 1: listener 0, conn 1
echoed 12 bytes, then 0
"""

# stdin to stdout, upper-cased; the count to stderr.
CAT_C = r"""
#include <ctype.h>
#include <stdio.h>
#include <unistd.h>

int main(void) {
  char buf[4096];
  size_t total = 0;
  ssize_t n;
  while ((n = read(0, buf, sizeof buf)) > 0) {
    for (ssize_t i = 0; i < n; i++) buf[i] = (char)toupper((unsigned char)buf[i]);
    write(1, buf, (size_t)n);
    total += (size_t)n;
  }
  fprintf(stderr, "read %zu bytes, then %zd\n", total, n);
  return n < 0;
}
"""


@cache
def _wasm(source: str, strategy: Strategy) -> bytes:
    wasm = compile_c(source)
    if strategy == "asyncify":
        return wasync.asyncify(wasm, imports=["wasi_snapshot_preview1.*"])
    return wasm


def module(source: str, strategy: Strategy) -> wasync.Module:
    return wasync.Module(_wasm(source, strategy))


def sleeper(strategy: Strategy) -> wasync.Module:
    if strategy == "asyncify":
        return wasync.Module(_asyncified_sleeper())
    return wasync.Module(build("sleeper"))


@cache
def _asyncified_sleeper() -> bytes:
    return wasync.asyncify(build("sleeper"), imports=["wasi_snapshot_preview1.*"])


def run_in(library: Library, fn: Callable[[], Awaitable[Any]]) -> Any:
    if library == "trio":
        return trio.run(fn)

    async def main() -> Any:
        return await fn()

    return asyncio.run(main())


async def sleep(seconds: float) -> None:
    """The running library's sleep."""
    await _aio.current().sleep(seconds)


def open_fds() -> set[int]:
    """This process's descriptors, but wasmtime's memory images of compiled
    modules (memfds that live as long as their modules)."""
    out = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:  # the directory's own descriptor, closed meanwhile
            continue
        if not target.startswith("/memfd:"):
            out.add(int(name))
    return out


needs_proc = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")


# -- the poll primitive ------------------------------------------------------------------------


@pytest.mark.parametrize("library", LIBRARIES)
def test_wait_any(library: Library) -> None:
    """poll_oneoff's wait: the first of several waits, a failed wait (looked
    at again, not raised), a deadline; a cancelled wait raises the library's
    own cancellation, not an exception group."""

    async def main() -> None:
        aio = _aio.current()
        assert aio.name == library
        done: list[str] = []
        failures = [0]

        async def never() -> None:
            await aio.sleep_forever()

        async def soon() -> None:
            await aio.sleep(0.02)
            done.append("soon")

        async def fails() -> None:
            failures[0] += 1
            if failures[0] == 1:
                raise ValueError("a wait that fails")
            await aio.sleep_forever()

        start = time.monotonic()
        got = await aio.wait_any([never, soon], lambda: None, lambda: done[-1] if done else None)
        assert got == "soon"
        assert time.monotonic() - start < 1

        deadline = time.monotonic() + 0.05

        def after() -> float:
            return max(0.0, deadline - time.monotonic())

        def due() -> str | None:
            return "due" if time.monotonic() >= deadline else None

        for waits in ([fails], [fails, never], []):
            failures[0] = 0
            deadline = time.monotonic() + 0.05
            assert await aio.wait_any(waits, after, due) == "due"
            assert failures[0] in ((0,) if not waits else (1, 2))

        cancelled: list[BaseException] = []

        async def cancelled_poll() -> None:
            try:
                await aio.wait_any([never, never], lambda: None, lambda: None)
            except BaseException as e:
                cancelled.append(e)
                raise

        if library == "trio":
            with trio.move_on_after(0.02):
                await cancelled_poll()
            assert [type(e) for e in cancelled] == [trio.Cancelled]
        else:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.02):
                    await cancelled_poll()
            assert [type(e) for e in cancelled] == [asyncio.CancelledError]

    run_in(library, main)


# -- sockets and readiness --------------------------------------------------------------------


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("library", LIBRARIES)
def test_socket_echo_server(library: Library, strategy: Strategy) -> None:
    """sock_accept, sock_recv (blocking and non-blocking), sock_send,
    sock_shutdown, and poll_oneoff on sockets with a timeout, on one socket
    and on two at once; the client is a plain thread."""
    prog = module(ECHO_C, strategy)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    out = bytearray()
    ready = threading.Event()
    replies: list[bytes] = []

    def stdout(data: bytes) -> None:
        out.extend(data)
        if b"ready to accept" in out:
            ready.set()

    def client() -> None:
        if not ready.wait(30):
            return
        with socket.create_connection(("127.0.0.1", port), timeout=30) as c:
            got = b""
            while not got.endswith(b"ready\n"):
                chunk = c.recv(100)
                assert chunk
                got += chunk
            c.sendall(b"hello, world")
            c.shutdown(socket.SHUT_WR)
            reply = b""
            while chunk := c.recv(100):
                reply += chunk
            replies.append(reply)

    async def main() -> int:
        wasi = Wasi(["echo"], stdout=stdout, sockets=[listener])
        return await wasi.run(prog, strategy=strategy)

    t = threading.Thread(target=client)
    t.start()
    try:
        code = run_in(library, main)
    finally:
        ready.set()
        t.join(30)
        listener.close()
    assert out.decode() == ECHO_OUT
    assert code == 0
    assert replies == [b"HELLO, WORLD"]


# -- standard streams -------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["fiber", "thread"])
@pytest.mark.parametrize("library", LIBRARIES)
def test_stdio_kinds(library: Library, strategy: Strategy, tmp_path: Path) -> None:
    """bytes and a pipe (a binary file: read on a thread) in; a bytearray, an
    async callable and a binary file out."""
    prog = module(CAT_C, strategy)
    data = b"some input\n" * 2000  # more than one read, more than a pipe buffer
    err = bytearray()
    chunks: list[bytes] = []

    async def collect(chunk: bytes) -> None:
        await sleep(0)  # a real await, under the running library
        chunks.append(chunk)

    async def from_bytes() -> int:
        return await Wasi(["cat"], stdin=data, stdout=collect, stderr=err).run(
            prog, strategy=strategy
        )

    assert run_in(library, from_bytes) == 0
    assert b"".join(chunks) == data.upper()
    assert err == f"read {len(data)} bytes, then 0\n".encode()

    r, w = os.pipe()

    def feed() -> None:
        with os.fdopen(w, "wb") as f:
            f.write(data)

    feeder = threading.Thread(target=feed)
    feeder.start()
    err.clear()
    target = tmp_path / "out"
    with os.fdopen(r, "rb") as stdin, target.open("wb") as stdout:

        async def from_pipe() -> int:
            return await Wasi(["cat"], stdin=stdin, stdout=stdout, stderr=err).run(
                prog, strategy=strategy
            )

        assert run_in(library, from_pipe) == 0
    feeder.join()
    assert target.read_bytes() == data.upper()
    assert err == f"read {len(data)} bytes, then 0\n".encode()


@pytest.mark.parametrize("library", LIBRARIES)
def test_inherited_stdout(library: Library, capsys: pytest.CaptureFixture[str]) -> None:
    prog = module(CAT_C, "fiber")

    async def main() -> int:
        wasi = Wasi(["cat"], stdin=b"inherited\n", stdout="inherit", stderr="inherit")
        return await wasi.run(prog, strategy="fiber")

    assert run_in(library, main) == 0
    captured = capsys.readouterr()
    assert captured.out == "INHERITED\n"
    assert captured.err == "read 10 bytes, then 0\n"


class _Transport:
    def is_closing(self) -> bool:
        return True


def test_asyncio_streams_are_refused_under_trio() -> None:
    """asyncio's StreamReader/StreamWriter need asyncio: under trio, run()
    says so, and what to pass instead, before anything runs."""
    loop = asyncio.new_event_loop()
    reader = asyncio.StreamReader(loop=loop)
    writer = asyncio.StreamWriter(_Transport(), None, None, loop)  # type: ignore[arg-type]
    loop.close()
    prog = module(CAT_C, "fiber")

    async def run(**stdio: Any) -> None:
        await Wasi(["cat"], **stdio).run(prog, strategy="fiber")

    with pytest.raises(TypeError, match=r"stdin: an asyncio.StreamReader needs asyncio; .*bytes"):
        trio.run(lambda: run(stdin=reader))
    with pytest.raises(TypeError, match=r"stdout: an asyncio.StreamWriter needs asyncio; .*callab"):
        trio.run(lambda: run(stdin=b"", stdout=writer))
    with pytest.raises(TypeError, match=r"stderr: an asyncio.StreamWriter"):
        trio.run(lambda: run(stdin=b"", stderr=writer))


# -- cancellation -----------------------------------------------------------------------------


def cancelled_after(library: Library, seconds: float, fn: Callable[[], Awaitable[Any]]) -> float:
    """Run `fn` under `library` with a deadline of `seconds`; assert that the
    deadline cancelled it; how long it took."""
    start = time.perf_counter()
    if library == "trio":

        async def trio_main() -> None:
            with trio.move_on_after(seconds) as scope:
                await fn()
                pytest.fail("not cancelled")
            assert scope.cancelled_caught

        trio.run(trio_main)
    else:

        async def asyncio_main() -> None:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(seconds):
                    await fn()

        asyncio.run(asyncio_main())
    return time.perf_counter() - start


@pytest.fixture
def closed_fds_check() -> Iterator[None]:
    before = open_fds()
    yield
    assert open_fds() <= before, "descriptors leaked"


@needs_proc
@pytest.mark.usefixtures("closed_fds_check")
@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("library", LIBRARIES)
def test_cancel_while_sleeping(library: Library, strategy: Strategy, tmp_path: Path) -> None:
    """A program in a one-second poll_oneoff sleep is cancelled at once; its
    descriptors are closed, and the Wasi's event loop is left clean."""
    (tmp_path / "hello.txt").write_bytes(b"hello, world\n")
    prog = sleeper(strategy)
    fs = host_dir(tmp_path)
    assert isinstance(fs, HostDir)
    out = bytearray()
    wasi = Wasi(["sleeper"], {}, {"/sandbox": fs}, stdout=out)
    elapsed = cancelled_after(library, 0.2, lambda: wasi.run(prog, strategy=strategy))
    fs.close()
    assert elapsed < 0.9, f"the cancellation took {elapsed:.2f} s"
    assert out == b""  # cancelled before the print after the sleep
    assert wasi._fds == {}  # every descriptor closed


@needs_proc
@pytest.mark.usefixtures("closed_fds_check")
@pytest.mark.parametrize("strategy", ["fiber", "asyncify"])
@pytest.mark.parametrize("library", LIBRARIES)
def test_cancel_while_accepting(library: Library, strategy: Strategy) -> None:
    prog = module(ECHO_C, strategy)
    listener = socket.create_server(("127.0.0.1", 0))
    out = bytearray()
    wasi = Wasi(["echo"], stdout=out, sockets=[listener])
    try:
        elapsed = cancelled_after(library, 0.3, lambda: wasi.run(prog, strategy=strategy))
    finally:
        listener.close()
    assert elapsed < 2
    assert out.decode().endswith("ready to accept\n")  # blocked in accept()
    # the listener (closed by the Wasi) and no connection
    assert wasi._fds == {}


@needs_proc
@pytest.mark.usefixtures("closed_fds_check")
@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("library", LIBRARIES)
def test_cancel_while_polling_two_sockets(library: Library, strategy: Strategy) -> None:
    """Cancelled in a poll_oneoff on two sockets (under trio: two waits in a
    nursery), the program ends and its connection is closed: the client sees
    the end of the stream."""
    prog = module(ECHO_C, strategy)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    out = bytearray()
    ready, greeted = threading.Event(), threading.Event()
    after: list[bytes] = []

    def stdout(data: bytes) -> None:
        out.extend(data)
        if b"ready to accept" in out:
            ready.set()

    def client() -> None:
        if not ready.wait(30):
            return
        with socket.create_connection(("127.0.0.1", port), timeout=30) as c:
            got = b""
            while not got.endswith(b"ready\n"):
                chunk = c.recv(100)
                assert chunk
                got += chunk
            greeted.set()  # the server now polls the listener and this connection
            after.append(c.recv(100))  # nothing is sent: b"" once the Wasi closes it

    wasi = Wasi(["echo"], stdout=stdout, sockets=[listener])
    t = threading.Thread(target=client)
    t.start()
    try:
        elapsed = cancelled_after(library, 0.5, lambda: wasi.run(prog, strategy=strategy))
    finally:
        ready.set()
        t.join(30)
        listener.close()
    assert greeted.is_set()
    assert after == [b""]
    assert elapsed < 2
    assert wasi._fds == {}


@pytest.mark.parametrize("strategy", ["fiber", "thread"])
@pytest.mark.parametrize("library", LIBRARIES)
def test_cancel_while_reading_a_pipe(library: Library, strategy: Strategy) -> None:
    """A read from a binary-file stdin blocks a thread, not the loop; the read
    is abandoned when cancelled (the thread ends when the pipe does)."""
    prog = module(CAT_C, strategy)
    r, w = os.pipe()
    closer = threading.Timer(1.0, os.close, (w,))  # the abandoned read's end
    closer.start()
    try:
        with os.fdopen(r, "rb") as stdin:
            wasi = Wasi(["cat"], stdin=stdin, stdout=bytearray())
            elapsed = cancelled_after(library, 0.2, lambda: wasi.run(prog, strategy=strategy))
    finally:
        closer.join()
    if library == "trio":
        assert elapsed < 0.9  # (asyncio.run waits for its default executor's threads)


@pytest.mark.parametrize("library", LIBRARIES)
def test_polls_alongside_other_tasks(library: Library) -> None:
    """While a program waits in poll_oneoff, the loop runs other tasks: 20
    programs sleeping one second each take about one second together."""
    prog = sleeper("fiber")

    async def one(i: int, tmp: Path) -> None:
        out = bytearray()
        wasi = Wasi(["sleeper", str(i)], {}, {"/sandbox": host_dir(tmp)}, stdout=out)
        assert await wasi.run(prog, strategy="fiber") == 0
        assert out.decode() == f"{i} read 13: hello, world\n"

    async def main_trio(tmp: Path) -> None:
        async with trio.open_nursery() as nursery:
            for i in range(20):
                nursery.start_soon(one, i, tmp)

    async def main_asyncio(tmp: Path) -> None:
        await asyncio.gather(*(one(i, tmp) for i in range(20)))

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        (tmp / "hello.txt").write_bytes(b"hello, world\n")
        start = time.perf_counter()
        main = main_trio if library == "trio" else main_asyncio
        run_in(library, lambda: main(tmp))
        elapsed = time.perf_counter() - start
    assert 1.0 <= elapsed < 3.0, f"{elapsed:.2f} s"
