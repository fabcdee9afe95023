"""Fixtures shared by every test package; the helpers themselves live in ``tests/helpers.py``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agent.inventory.gateway import FakeGateway, running_gateway
from tests.helpers import BrokerProcess


@pytest.fixture
def broker_process(tmp_path: Path) -> Iterator[BrokerProcess]:
    """A real ``python -m broker serve`` on a free 127.0.0.1 port with an empty data dir."""
    broker = BrokerProcess(tmp_path / "broker").start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def gateway() -> Iterator[FakeGateway]:
    """A fake UPnP router on 127.0.0.1 (SSDP + description XML); see tests/agent/inventory/gateway.py."""
    with running_gateway() as gw:
        yield gw
