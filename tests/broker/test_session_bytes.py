"""Issue 14: ``session.end`` carries real byte counts both ways, through a real broker over TLS.

A real enrolled agent (raw WebSocket, so the test sees every frame it receives) shares 5 screen
updates; a real operator (the helpdesk client) receives them and sends 3 input events; then the
operator ends the session. The audit entry ``session.end`` and the session row must say exactly how
many screen bytes went to the viewer and how many bytes of session messages went to the agent.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pyotp
import pytest
from websockets.asyncio.client import connect

from helpdesk import HelpdeskClient
from protocol.messages import InputEvent
from protocol.screen import Encoding, Rect, ScreenUpdate, encode_update
from tests.helpers import InProcessBroker, grant_as_asked, in_process_broker

LINK_TYPES = frozenset({"hello", "ping", "pong"})
"""Messages of the link itself, not of the session: not counted in bytes_to_agent."""


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[InProcessBroker]:
    async with in_process_broker(tmp_path / "broker", service_hours="00:00-00:00") as running:
        yield running


def _frame(seq: int, size: int) -> bytes:
    rect = Rect(x=0, y=0, w=8, h=8, encoding=Encoding.PNG, payload=bytes([seq]) * size)
    return encode_update(ScreenUpdate(seq=seq, width=640, height=400, rects=(rect,), keyframe=seq == 0))


async def test_session_end_counts_the_bytes_sent_both_ways(broker: InProcessBroker, tmp_path: Path) -> None:
    identity = await broker.enroll_agent("C-7", tmp_path / "agent")
    agent = await connect(
        f"{broker.url}/agent",
        ssl=broker.client_context(cert=identity.cert_path, key=identity.key_path),
        ping_interval=None,
        max_size=None,
    )
    received: list[str] = []  # every text frame of the session the agent received

    async def next_of(kind: str) -> dict[str, Any]:
        while True:
            frame = await asyncio.wait_for(agent.recv(), 30)
            if isinstance(frame, str):
                message: dict[str, Any] = json.loads(frame)
                if message["type"] not in LINK_TYPES:
                    received.append(frame)
                if message["type"] == kind:
                    return message

    await agent.send(json.dumps({"type": "hello", "versions": [1], "role": "agent"}))
    await next_of("hello")
    await agent.send(json.dumps({"type": "support_request", "id": "r1"}))
    code = (await next_of("support_code"))["code"]

    created = await broker.broker.accounts.create("olga", role="operator", now=time.time(), actor="test")
    secret = pyotp.parse_uri(created.totp_uri).secret
    op = HelpdeskClient(broker.url, ca_pem=broker.ca_pem())
    await op.connect()
    await op.login("olga", created.initial_password, pyotp.TOTP(secret).now())
    await op.change_password(created.initial_password, created.initial_password + "-changed-1")
    claimed = await op.claim(code=code, scopes=("screen:view", "input:control"))
    session = claimed.session_id

    request = await next_of("consent_request")
    assert tuple(request["scopes"]) == ("screen:view", "input:control")
    await agent.send(grant_as_asked(request, session, identity))
    await op.wait_state(session, lambda s: s.scopes.get("input:control") == "granted")

    frames = [_frame(seq, 1000 + 100 * seq) for seq in range(5)]
    for frame in frames:
        await agent.send(frame)
    for _ in frames:
        await asyncio.wait_for(op.screen.get(), 30)
    for i in range(3):
        await op.send_input(session, "move", x=i, y=i)
    for _ in range(3):
        await next_of("input")

    await op.end(session)
    await next_of("session_state")  # the last one: ended
    while json.loads(received[-1]).get("phase") != "ended":
        await next_of("session_state")

    entry = None
    for _ in range(300):  # written by the session host's writer task
        ends = [e for e in await broker.store.audit.entries(subject=session) if e.action == "session.end"]
        if ends:
            entry = ends[0]
            break
        await asyncio.sleep(0.05)
    assert entry is not None
    assert entry.details["bytes_to_operator"] == sum(len(f) for f in frames) > 0
    assert entry.details["bytes_to_agent"] == sum(len(t.encode()) for t in received) > 0
    assert entry.details["inputs"] == 3
    inputs = [json.loads(t) for t in received if json.loads(t)["type"] == InputEvent.__struct_config__.tag]
    assert len(inputs) == 3
    await op.close()
    await agent.close()
