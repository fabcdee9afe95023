"""The /operator path against hostile or careless clients: nothing before login, nothing but a
password change after a one-time password, and a cap on login attempts per address that comes
before the slow password hash."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pyotp
import pytest

from helpdesk import HelpdeskClient, HelpdeskError
from tests.helpers import InProcessBroker, in_process_broker


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[InProcessBroker]:
    async with in_process_broker(tmp_path / "broker", login_attempts_per_minute=5) as running:
        yield running


async def test_nothing_before_login_and_nothing_but_a_password_change_after_a_one_time_password(
    broker: InProcessBroker,
) -> None:
    created = broker.broker.accounts.create("ops", role="operator", now=time.time(), actor="test")
    async with HelpdeskClient(broker.url, ca_pem=broker.ca_pem()) as op:
        with pytest.raises(HelpdeskError) as before:
            await op.queue()
        assert before.value.code == "auth_required"
        code = pyotp.TOTP(pyotp.parse_uri(created.totp_uri).secret).now()
        info = await op.login("ops", created.initial_password, code)
        assert info.password_change_required
        with pytest.raises(HelpdeskError) as first:
            await op.queue()
        assert first.value.code == "not_allowed"
        with pytest.raises(HelpdeskError) as short:
            await op.change_password(created.initial_password, "short")
        assert short.value.code == "invalid_field"
        await op.change_password(created.initial_password, "a much better password")
        assert (await op.queue()).requests == ()
        await op.logout()
        with pytest.raises(HelpdeskError) as after:
            await op.queue()
        assert after.value.code == "auth_required"


async def test_login_attempts_per_address_are_capped_before_hashing(broker: InProcessBroker) -> None:
    async with HelpdeskClient(broker.url, ca_pem=broker.ca_pem()) as op:
        codes = []
        for _ in range(7):
            with pytest.raises(HelpdeskError) as refused:
                await op.login("nobody", "guess", "000000")
            codes.append((refused.value.code, refused.value.retry_after is not None))
    assert codes == [("login_failed", False)] * 5 + [("rate_limited", True)] * 2
