"""Steps of a raw (hand-driven) agent or operator WebSocket in a test: the next JSON message of a
kind, and a screen update of a given size, as the slow-viewer tests on one process and across
processes both drive them."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

from websockets.asyncio.client import ClientConnection

from protocol.screen import Encoding, Rect, ScreenUpdate, encode_update


async def next_json(ws: ClientConnection, kind: str) -> dict[str, Any]:
    """Next text message of ``kind`` (binary frames and other types are skipped), 30 s per read."""
    while True:
        frame = await asyncio.wait_for(ws.recv(), 30)
        if isinstance(frame, str):
            message: dict[str, Any] = json.loads(frame)
            if message["type"] == kind:
                return message


def screen_frame(seq: int, size: int, *, keyframe: bool) -> bytes:
    """A 640×400 screen update carrying ``size`` bytes of incompressible payload (like real pixels)."""
    rect = Rect(x=0, y=0, w=16, h=16, encoding=Encoding.PNG, payload=os.urandom(size))
    return encode_update(ScreenUpdate(seq=seq, width=640, height=400, rects=(rect,), keyframe=keyframe))
