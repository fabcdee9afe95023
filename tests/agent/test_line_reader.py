"""Reading the subscriber's typed lines: ``LineReader`` over a real pipe and a text stream, and the
router password not echoed on a real pseudo-terminal (``hidden_input``).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import time
from typing import TextIO

from agent.line_reader import (
    LineReader,
    hidden_input,
)
from tests.agent.prompting import Pipe

# -- LineReader over a real pipe -------------------------------------------------------------------


async def test_line_reader_reads_lines(pipe: Pipe) -> None:
    reader = LineReader(pipe.reader_file)
    pipe.write("first\nsecond line\r\n日本語\n")
    assert await reader.readline(2.0) == "first"
    assert await reader.readline(2.0) == "second line"
    assert await reader.readline(2.0) == "日本語"
    assert not reader.at_eof


async def test_line_reader_timeout_is_not_eof(pipe: Pipe) -> None:
    reader = LineReader(pipe.reader_file)
    started = time.monotonic()
    assert await reader.readline(0.1) is None
    assert time.monotonic() - started >= 0.09
    assert not reader.at_eof
    pipe.write("late\n")
    assert await reader.readline(2.0) == "late"


async def test_line_reader_reports_eof(pipe: Pipe) -> None:
    reader = LineReader(pipe.reader_file)
    pipe.write("last without newline")
    pipe.close_writer()
    assert await reader.readline(2.0) == "last without newline"
    assert await reader.readline(2.0) is None
    assert reader.at_eof
    assert await reader.readline(None) is None  # and at once from then on
    assert reader.error is None


async def test_line_reader_keeps_at_most_max_line_characters(pipe: Pipe) -> None:
    reader = LineReader(pipe.reader_file, max_line=10)
    pipe.write("x" * 100 + "\nok\n")
    assert await reader.readline(2.0) == "x" * 10
    assert await reader.readline(2.0) == "ok"


async def test_line_reader_on_a_text_stream() -> None:
    reader = LineReader(io.StringIO("one\ntwo\n"))
    assert await reader.readline(2.0) == "one"
    assert await reader.readline(2.0) == "two"
    assert await reader.readline(2.0) is None
    assert reader.at_eof


# -- the router password is not echoed (a real pseudo-terminal) -----------------------------------


def _drain(fd: int) -> bytes:
    os.set_blocking(fd, False)
    out = b""
    with contextlib.suppress(BlockingIOError, OSError):
        while chunk := os.read(fd, 4096):
            out += chunk
    return out


async def test_a_secret_typed_into_a_terminal_is_not_echoed_and_echo_comes_back() -> None:
    master, slave = os.openpty()
    tty: TextIO = os.fdopen(slave, "r", encoding="utf-8")
    try:
        reader = LineReader(tty)
        with hidden_input(tty) as hidden:
            assert hidden
            os.write(master, "ルータ-pw1\n".encode())
            assert await reader.readline(2.0) == "ルータ-pw1"
        os.write(master, b"account-name\n")
        assert await reader.readline(2.0) == "account-name"
        screen = _drain(master)
        assert "ルータ-pw1".encode() not in screen  # what the subscriber sees on the terminal
        assert b"account-name" in screen
    finally:
        os.close(master)
        await asyncio.sleep(0.05)
        tty.close()


def test_a_pipe_has_no_echo_to_hide(pipe: Pipe) -> None:
    with hidden_input(pipe.reader_file) as hidden:
        assert not hidden
