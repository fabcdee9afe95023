"""Fixtures of the console tests: one real broker per module, one Chromium per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext

from tests.browser import chromium, require_chromium
from tests.helpers import BrokerProcess

ALWAYS_OPEN = ("--hours", "00:00-00:00")


@pytest.fixture(scope="module")
def console_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    """``python -m broker serve`` serving ``broker/static`` on a free 127.0.0.1 port."""
    require_chromium()
    broker = BrokerProcess(tmp_path_factory.mktemp("console") / "broker", extra_args=ALWAYS_OPEN).start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def origin(console_broker: BrokerProcess) -> str:
    return f"https://127.0.0.1:{console_broker.port}"


@pytest.fixture
def browser(console_broker: BrokerProcess) -> Iterator[BrowserContext]:
    """Chromium trusting exactly the broker's server key (see tests/browser.py)."""
    with chromium(server_cert=Path(console_broker.data_dir) / "server.pem") as context:
        yield context
