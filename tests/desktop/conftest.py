"""The broker most end-to-end tests use: open around the clock (the service-hours rule of 別記1
has its own test) and a 20 s consent timeout."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import BrokerProcess

ALWAYS_OPEN = ("--hours", "00:00-00:00")


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    proc = BrokerProcess(tmp_path / "broker", extra_args=(*ALWAYS_OPEN, "--consent-timeout", "20")).start()
    try:
        yield proc
    finally:
        proc.stop()
