"""A hostile agent sends screen updates whose payloads are not images (issue 12, item 9): the
operator's ``helpdesk watch`` reports each bad update and keeps going, and a good update after them is
saved. The agent is a real enrolled certificate speaking the protocol by hand; broker and helpdesk are
real processes on 127.0.0.1 over TLS."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from PIL import Image
from websockets.asyncio.client import ClientConnection, connect

from agent.receipts import decision_message
from protocol.codec import encode
from protocol.receipts import ConsentReceipt
from protocol.screen import Encoding, Rect, ScreenUpdate, encode_update
from tests.e2e.conftest import ALWAYS_OPEN
from tests.e2e.test_helpdesk_cli import helpdesk, helpdesk_login
from tests.helpers import BrokerProcess, add_operator
from tests.wire.serving import assert_still_serves, client_context, enrolled_identity


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    proc = BrokerProcess(tmp_path / "broker", extra_args=ALWAYS_OPEN).start()
    try:
        yield proc
    finally:
        proc.stop()


async def _next(ws: ClientConnection, kind: str) -> dict[str, Any]:
    while True:
        frame = await asyncio.wait_for(ws.recv(), 30)
        if isinstance(frame, str) and (message := json.loads(frame))["type"] == kind:
            result: dict[str, Any] = message
            return result


def _update(seq: int, payload: bytes, encoding: Encoding = Encoding.PNG) -> bytes:
    rect = Rect(x=0, y=0, w=4, h=4, encoding=encoding, payload=payload)
    return encode_update(ScreenUpdate(seq=seq, width=4, height=4, rects=(rect,), keyframe=True))


def _png() -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.full((4, 4, 3), 200, dtype=np.uint8), "RGB").save(out, "PNG")
    return out.getvalue()


async def test_watch_reports_bad_screen_updates_and_keeps_going(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    identity = await enrolled_identity(broker, tmp_path, "C-EVIL")
    key = serialization.load_pem_private_key(identity.key_path.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    account = add_operator(broker, "eve")
    state = tmp_path / "op" / "session.json"
    ctx = client_context(broker, cert=identity.cert_path, key=identity.key_path)
    async with connect(f"{broker.url}/agent", ssl=ctx, ping_interval=None) as agent:
        await agent.send(json.dumps({"type": "hello", "versions": [1], "role": "agent"}))
        await _next(agent, "hello")
        await agent.send(json.dumps({"type": "support_request", "id": "r1"}))
        issued = await _next(agent, "support_code")

        logged_in = await asyncio.to_thread(
            helpdesk_login, broker, state, "eve", account.totp(), f"{account.password}\neve-new-password-1\n"
        )
        assert logged_in.returncode == 0, logged_in.stderr
        claimed = await asyncio.to_thread(helpdesk, state, "claim", issued["code"], "--scope", "screen:view")
        assert claimed.returncode == 0, claimed.stderr
        session = claimed.stdout.strip()

        asked = await _next(agent, "consent_request")
        receipt = ConsentReceipt(
            session_id=session,
            serial=identity.serial,
            operator=asked["operator"],
            decision="answered",
            asked=tuple(asked["scopes"]),
            granted=tuple(asked["scopes"]),
            denied=(),
            time=time.time(),
        )
        decision = decision_message(receipt, key, id="d1")
        await agent.send(encode(decision).decode())

        out = tmp_path / "screens"
        watcher: list[subprocess.CompletedProcess[str]] = []
        thread = threading.Thread(
            target=lambda: watcher.append(
                helpdesk(state, "watch", session, "--out", str(out), "--updates", "1")
            )
        )
        thread.start()
        await _next(agent, "screen_refresh")  # the viewer is attached: updates are relayed now
        hostile = [
            _update(1, b"not an image at all"),  # PIL.UnidentifiedImageError before
            _update(2, _png()[:40]),  # a truncated PNG: OSError / SyntaxError before
            _update(3, b"\x78\x9c broken zlib", Encoding.RAW_RGB_ZLIB),  # zlib.error before
        ]
        for frame in hostile:
            await agent.send(frame)
        await agent.send(_update(4, _png()))
        await asyncio.to_thread(thread.join, 60)
    assert watcher, "watch did not finish"
    result = watcher[0]
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout.count("bad screen update skipped") == len(hostile), result.stdout
    assert "1 updates" in result.stdout
    saved = np.asarray(Image.open(out / "screen.png").convert("RGB"))
    assert (saved == 200).all()
    await assert_still_serves(broker, tmp_path)
