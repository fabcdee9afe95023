"""A deliberately slow viewer (issue: relay behaviour under load), against a real broker over TLS.

One agent sends a stream of screen updates and chat lines; one operator's connection stops
reading entirely; a supervisor watches normally. The agent is never held up, the slow viewer's
queue stays within its bound, the agent is asked for a keyframe, the fast viewer sees the
latest frame, and control messages reach both viewers complete and in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pyotp
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from agent.identity import Identity
from broker.core import SessionRules
from helpdesk import HelpdeskClient
from protocol.messages import Chat
from protocol.screen import peek_header
from tests.helpers import InProcessBroker, grant_as_asked, in_process_broker
from tests.raw_session import next_json, screen_frame

MAX_FRAMES = 2000
"""Upper bound of the stream (125 MiB): the loop stops as soon as the slow viewer is behind, which
takes as many frames as loopback's kernel buffers absorb (a few MiB here)."""
CHAT_EVERY = 25
FRAME_BYTES = 64 * 1024


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[InProcessBroker]:
    async with in_process_broker(
        tmp_path / "broker", service_hours="00:00-00:00", session_rules=SessionRules(consent_timeout=30)
    ) as running:
        yield running


async def _operator(broker: InProcessBroker, name: str, role: str) -> tuple[str, str]:
    """Create an operator, log in once to set a password; returns (password, TOTP secret)."""
    created = await broker.broker.accounts.create(name, role=role, now=time.time(), actor="test")
    secret = pyotp.parse_uri(created.totp_uri).secret
    return created.initial_password, secret


async def test_slow_viewer_does_not_slow_anyone_and_memory_stays_bounded(
    broker: InProcessBroker, tmp_path: Path
) -> None:
    # A subscriber's agent, enrolled for real.
    identity: Identity = await broker.enroll_agent("C-9", tmp_path / "agent")
    agent = await connect(
        f"{broker.url}/agent",
        ssl=broker.client_context(cert=identity.cert_path, key=identity.key_path),
        ping_interval=None,
        max_size=None,
    )
    await agent.send(json.dumps({"type": "hello", "versions": [1], "role": "agent"}))
    await next_json(agent, "hello")
    await agent.send(json.dumps({"type": "support_request", "id": "r1"}))
    code = (await next_json(agent, "support_code"))["code"]

    # The slow operator claims, then stops reading (its client buffers one frame at most).
    slow_pw, slow_secret = await _operator(broker, "slow", "operator")
    # A tiny receive buffer, so that "not reading" shows up at once instead of after megabytes of
    # kernel buffering on loopback.
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.connect(("127.0.0.1", broker.broker.port))
    slow = await connect(
        f"{broker.url}/operator", ssl=broker.client_context(), sock=raw, ping_interval=None, max_queue=1
    )
    await slow.send(json.dumps({"type": "hello", "versions": [1], "role": "operator"}))
    await next_json(slow, "hello")
    totp = pyotp.TOTP(slow_secret).now()
    await slow.send(
        json.dumps({"type": "login", "id": "l", "name": "slow", "password": slow_pw, "totp": totp})
    )
    await next_json(slow, "login_ok")
    new_pw = slow_pw + "-changed-1"
    await slow.send(
        json.dumps({"type": "change_password", "id": "p", "old_password": slow_pw, "new_password": new_pw})
    )
    await next_json(slow, "ok")
    await slow.send(json.dumps({"type": "claim", "id": "c", "code": code, "scopes": ["screen:view"]}))
    session = (await next_json(slow, "claimed"))["session_id"]

    # The agent grants view with a signed receipt.
    request = await next_json(agent, "consent_request")
    assert request["scopes"] == ["screen:view"]
    await agent.send(grant_as_asked(request, session, identity))
    await slow.send(json.dumps({"type": "watch", "id": "w", "session_id": session}))
    await next_json(slow, "session_state")
    # From here on the slow viewer reads nothing.

    # A supervisor watches at full speed.
    sup_pw, sup_secret = await _operator(broker, "fast", "supervisor")
    fast = HelpdeskClient(broker.url, ca_pem=broker.ca_pem())
    await fast.connect()
    await fast.login("fast", sup_pw, pyotp.TOTP(sup_secret).now())
    await fast.change_password(sup_pw, sup_pw + "-changed-1")
    await fast.watch(session)
    await fast.wait_state(session, lambda s: s.phase == "active")

    refreshes = 0

    async def agent_reader() -> None:
        nonlocal refreshes
        with contextlib.suppress(ConnectionClosed):
            while True:
                message = await next_json(agent, "screen_refresh")
                if message.get("behind"):
                    refreshes += 1

    reader = asyncio.create_task(agent_reader())
    slow_sender = next(
        v.peer.sender for v in broker.broker.sessions.sessions[session].viewers if v.name == "slow"
    )
    bound = slow_sender.max_control_bytes + slow_sender.max_screen_bytes
    peak = 0
    fast_last_seq = -1

    async def fast_reader() -> None:
        nonlocal fast_last_seq
        while True:
            fast_last_seq = peek_header(await fast.screen.get()).seq

    fast_task = asyncio.create_task(fast_reader())
    sent_chats: list[str] = []
    last = 0
    for seq in range(MAX_FRAMES):
        await agent.send(screen_frame(seq, FRAME_BYTES, keyframe=seq % 100 == 0))
        if seq % CHAT_EVERY == 0:
            sent_chats.append(f"line {seq}")
            await agent.send(json.dumps({"type": "chat", "session_id": session, "text": sent_chats[-1]}))
        peak = max(peak, slow_sender.queued_bytes)
        last = seq
        if slow_sender.queue is not None and slow_sender.queue.dropped_updates and refreshes and seq >= 100:
            break
        await asyncio.sleep(0)
    last += 1
    await agent.send(screen_frame(last, FRAME_BYTES, keyframe=True))

    # The agent kept sending while the slow viewer read nothing: it was never held up by it.
    # The fast viewer got every chat line in order and the final keyframe.
    chats: list[str] = []
    while len(chats) < len(sent_chats):
        message = await fast.next_event(Chat, timeout=30)
        assert isinstance(message, Chat)
        chats.append(message.text)
    assert chats == sent_chats
    for _ in range(300):
        if fast_last_seq == last:
            break
        await asyncio.sleep(0.1)
    assert fast_last_seq == last
    fast_task.cancel()

    assert peak <= bound
    queue = slow_sender.queue  # made when the slow viewer's transport first pushed back
    assert queue is not None
    assert queue.screen_bytes <= queue.max_screen_bytes
    assert queue.dropped_updates > 0
    assert refreshes >= 1  # the agent was asked for a keyframe for the slow viewer
    # ... and the drops are on /metrics: the viewer fell behind at least once (its queue was full).
    registry = broker.broker.metrics.registry
    assert (registry.get_sample_value("broker_relay_drops_total", {"reason": "queue_full"}) or 0) >= 1
    relayed = registry.get_sample_value("broker_relay_bytes_total", {"direction": "to_operator"}) or 0
    assert relayed >= 10 * FRAME_BYTES  # before anyone fell behind, frames went out whole

    # When the slow viewer finally reads, every control message is there, in order.
    slow_chats: list[str] = []
    while len(slow_chats) < len(sent_chats):
        frame = await asyncio.wait_for(slow.recv(), 30)
        if isinstance(frame, str) and json.loads(frame)["type"] == "chat":
            slow_chats.append(json.loads(frame)["text"])
    assert slow_chats == chats

    reader.cancel()
    await fast.close()
    await slow.close()
    await agent.close()
