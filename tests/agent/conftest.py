"""Fixtures of the agent tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.agent.prompting import Pipe


@pytest.fixture
async def pipe() -> AsyncIterator[Pipe]:
    p = Pipe()
    try:
        yield p
    finally:
        p.close_writer()  # the reader thread sees EOF and ends
        await asyncio.sleep(0.05)
        p.reader_file.close()
