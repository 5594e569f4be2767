"""Standard input's synchronous reads (Input.read_now): what a read can be
served with at once, without suspending the program."""

from __future__ import annotations

import asyncio
import io

from wasync._wasi._streams import make_input


def test_bytes_are_at_hand_on_any_thread() -> None:
    src = make_input(b"hello world")
    assert src.read_now(5, off_loop=False) == b"hello"
    assert src.read_now(1, off_loop=True) == b" "

    async def rest() -> bytes:
        return await src.read(100)

    assert asyncio.run(rest()) == b"world"
    assert src.read_now(5, off_loop=False) == b""  # the end


def test_no_stdin_is_at_its_end() -> None:
    assert make_input(None).read_now(5, off_loop=True) == b""


def test_files_always_wait() -> None:
    assert make_input(io.BytesIO(b"data")).read_now(4, off_loop=False) is None


def test_stream_reader_serves_what_was_read_ahead_on_the_loop() -> None:
    async def main() -> None:
        reader = asyncio.StreamReader()
        src = make_input(reader)
        assert src.read_now(4, off_loop=False) is None  # nothing read ahead yet
        reader.feed_data(b"abcdef")
        reader.feed_eof()
        await src.wait_ready()  # what poll_oneoff does: reads ahead
        assert src.read_now(4, off_loop=True) is None  # the loop's objects: not off it
        assert src.read_now(4, off_loop=False) == b"abcd"
        assert await src.read(10) == b"ef"
        assert await src.read(10) == b""
        assert src.read_now(4, off_loop=False) == b""  # the end, at once

    asyncio.run(main())
