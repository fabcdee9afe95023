"""The /operator path against hostile or careless clients: nothing before login, nothing but a
password change after a one-time password, and a cap on login attempts per address that comes
before the slow password hash."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pyotp
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from helpdesk import HelpdeskClient, HelpdeskError
from tests.helpers import InProcessBroker, in_process_broker


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[InProcessBroker]:
    async with in_process_broker(tmp_path / "broker", login_attempts_per_minute=5) as running:
        yield running


async def test_nothing_before_login_and_nothing_but_a_password_change_after_a_one_time_password(
    broker: InProcessBroker,
) -> None:
    created = await broker.broker.accounts.create("ops", role="operator", now=time.time(), actor="test")
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


async def test_messages_sent_during_a_login_are_answered_in_order_and_a_flood_is_cut(
    broker: InProcessBroker,
) -> None:
    created = await broker.broker.accounts.create("ops2", role="operator", now=time.time(), actor="test")
    totp = pyotp.TOTP(pyotp.parse_uri(created.totp_uri).secret).now()
    login = {"type": "login", "id": "l", "name": "ops2", "password": created.initial_password, "totp": totp}
    hello = {"type": "hello", "versions": [1], "role": "operator"}
    async with connect(f"{broker.url}/operator", ssl=broker.client_context()) as ws:
        await ws.send(json.dumps(hello))
        assert json.loads(await ws.recv())["type"] == "hello"
        # A login (argon2 in a thread), then a request right behind it: answered after the login.
        await ws.send(json.dumps(login))
        await ws.send(json.dumps({"type": "queue_list", "id": "q"}))
        first, second = json.loads(await ws.recv()), json.loads(await ws.recv())
        assert (first["type"], first["id"]) == ("login_ok", "l")
        assert (second["type"], second["id"], second["code"]) == ("error", "q", "not_allowed")
    async with connect(f"{broker.url}/operator", ssl=broker.client_context()) as ws:
        await ws.send(json.dumps(hello))
        await ws.recv()
        # Hundreds of messages while a login hashes: the link is closed, not queued without bound.
        await ws.send(json.dumps({**login, "id": "l2"}))
        for i in range(200):
            await ws.send(json.dumps({"type": "queue_list", "id": f"q{i}"}))
        replies, closed = await _until_closed(ws)
    assert closed.rcvd is not None
    assert (closed.rcvd.code, closed.rcvd.reason) == (1008, "rate_limited")
    assert any(r.get("code") == "rate_limited" for r in replies)


async def _until_closed(ws: ClientConnection) -> tuple[list[dict[str, object]], ConnectionClosed]:
    """Every message until the broker closes the connection, and how it closed it."""
    replies: list[dict[str, object]] = []
    for _ in range(1000):
        try:
            replies.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
        except ConnectionClosed as closed:
            return replies, closed
    raise AssertionError("the broker never closed the connection")
