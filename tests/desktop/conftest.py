"""The desktop tests' broker (as the end-to-end tests': open around the clock, a 20 s consent timeout)
and a private Xvfb screen."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import BrokerProcess
from tests.x11 import xvfb

ALWAYS_OPEN = ("--hours", "00:00-00:00")


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    proc = BrokerProcess(tmp_path / "broker", extra_args=(*ALWAYS_OPEN, "--consent-timeout", "20")).start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def display() -> Iterator[str]:
    with xvfb(1024, 768) as name:
        yield name
