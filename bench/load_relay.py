"""``python -m bench.loadgen relay``: relay sessions (an agent link and an operator link each) on the
broker, the bare relay or a raw TLS sink; throughput and paced phases, latency in this process's
clock.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import ssl
import struct
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from agent.receipts import decision_message
from bench.common import MiB, emit, percentile
from bench.load_io import MAX_SIZE, client_context, commands, recv_json, until_quit
from certs import load_private_key
from protocol import encode
from protocol.receipts import ConsentReceipt
from protocol.screen import HEADER_SIZE, RECT_HEADER_SIZE, Encoding, Rect, ScreenUpdate, encode_update

STAMP = struct.Struct("<Qd")  # seq, send time (time.perf_counter) at the start of the rect payload


LENGTH = struct.Struct(">I")
STALL = 0.5
"""Seconds a throughput sender waits for progress with a full window before it counts the updates
in flight as lost: the relay drops frames for a slow viewer and asks for one keyframe at a time, so
a window of dropped updates would otherwise wait for nothing."""


class Frames:
    """Screen updates of one size; the first 16 payload bytes carry (seq, send time)."""

    def __init__(self, size: int) -> None:
        payload_len = max(STAMP.size, size - HEADER_SIZE - RECT_HEADER_SIZE)
        self.size = HEADER_SIZE + RECT_HEADER_SIZE + payload_len
        rest = os.urandom(payload_len - STAMP.size)  # like encoded pixels: incompressible
        self.rest = rest
        self.prefix = {}
        for key in (False, True):
            rect = Rect(x=0, y=0, w=64, h=64, encoding=Encoding.JPEG, payload=bytes(payload_len))
            frame = encode_update(ScreenUpdate(seq=0, width=1920, height=1080, rects=(rect,), keyframe=key))
            self.prefix[key] = frame[: HEADER_SIZE + RECT_HEADER_SIZE]

    def build(self, seq: int, *, keyframe: bool) -> bytes:
        return b"".join((self.prefix[keyframe], STAMP.pack(seq, time.perf_counter()), self.rest))


OFFSET = HEADER_SIZE + RECT_HEADER_SIZE


class Session:
    def __init__(self, index: int) -> None:
        self.index = index
        self.agent: ClientConnection | None = None
        self.op: ClientConnection | None = None
        self.session_id = f"s{index}"
        self.sent = 0
        self.received = 0
        self.received_bytes = 0
        self.need_keyframe = False
        self.progress = asyncio.Event()
        self.update_latency: list[float] | None = None
        self.input_latency: list[float] | None = None
        self.input_sent: dict[int, float] = {}
        self.refresh_requests = 0
        self.forgiven = 0
        """Updates counted as lost at the last keyframe request (the relay dropped them: across
        processes the node link drops screen frames while its send buffer is full)."""
        self.tasks: list[asyncio.Task[None]] = []

    # readers run for the whole life of the process
    async def op_reader(self) -> None:
        assert self.op is not None
        with contextlib.suppress(ConnectionClosed):
            async for frame in self.op:
                if isinstance(frame, bytes):
                    self.received += 1
                    self.received_bytes += len(frame)
                    if self.update_latency is not None:
                        _, sent_at = STAMP.unpack_from(frame, OFFSET)
                        self.update_latency.append(time.perf_counter() - sent_at)
                    self.progress.set()

    async def agent_reader(self) -> None:
        assert self.agent is not None
        with contextlib.suppress(ConnectionClosed):
            async for frame in self.agent:
                if isinstance(frame, bytes):
                    continue
                kind, seq = _peek_type(frame)
                if kind == "input" and self.input_latency is not None:
                    sent_at = self.input_sent.pop(seq, None)
                    if sent_at is not None:
                        self.input_latency.append(time.perf_counter() - sent_at)
                elif kind == "screen_refresh":
                    self.refresh_requests += 1
                    self.need_keyframe = True
                    self.forgiven = self.sent - self.received

    async def keepalive(self) -> None:
        n = 0
        while True:
            await asyncio.sleep(15)
            n += 1
            for ws in (self.agent, self.op):
                if ws is not None:
                    with contextlib.suppress(ConnectionClosed):
                        await ws.send(json.dumps({"type": "ping", "id": f"k{n}", "time": time.time()}))

    def start_readers(self) -> None:
        self.tasks = [
            asyncio.create_task(self.op_reader()),
            asyncio.create_task(self.agent_reader()),
            asyncio.create_task(self.keepalive()),
        ]


def _peek_type(text: str) -> tuple[str, int]:
    message = json.loads(text)
    return str(message.get("type", "")), int(message.get("seq", -1) or -1)


async def setup_broker_session(
    s: Session,
    url: str,
    ca: str,
    agent: list[str],
    token: str,
    op_ctx: ssl.SSLContext,
    *,
    agent_url: str | None = None,
) -> None:
    """``agent_url``: the agent dials this broker process and the operator ``url`` (another process
    of a cluster: the session crosses the node link, docs/cluster.md §6a)."""
    serial, contract, pem = agent
    s.agent = await connect(
        f"{agent_url or url}/agent",
        ssl=client_context(ca, pem),
        ping_interval=None,
        compression=None,
        max_size=MAX_SIZE,
        open_timeout=30,
    )
    await s.agent.send(json.dumps({"type": "hello", "versions": [1], "role": "agent", "software": "bench"}))
    await recv_json(s.agent, "hello")
    await s.agent.send(json.dumps({"type": "agent_status", "machine_name": f"pc-{contract}"}))
    await s.agent.send(json.dumps({"type": "support_request", "id": "r1"}))
    # Claimed by session id, as an operator picking it from the queue: claims by support code are
    # rate limited per operator and address (10 and 30 a minute, broker.policy.CodeAttemptGuard).
    queued_id = (await recv_json(s.agent, "support_code"))["session_id"]
    s.op = await connect(
        f"{url}/operator",
        ssl=op_ctx,
        ping_interval=None,
        compression=None,
        max_size=MAX_SIZE,
        open_timeout=30,
    )
    await s.op.send(json.dumps({"type": "hello", "versions": [1], "role": "operator", "software": "bench"}))
    await recv_json(s.op, "hello")
    await s.op.send(json.dumps({"type": "auth", "id": "a1", "token": token}))
    await recv_json(s.op, "login_ok")
    if agent_url not in (None, url):
        await _until_queued(s.op, queued_id)
    scopes = ["screen:view", "input:control"]
    await s.op.send(json.dumps({"type": "claim", "id": "c1", "session_id": queued_id, "scopes": scopes}))
    s.session_id = (await recv_json(s.op, "claimed"))["session_id"]
    request = await recv_json(s.agent, "consent_request")
    receipt = ConsentReceipt(
        session_id=s.session_id,
        serial=serial,
        operator=request["operator"],
        decision="answered",
        asked=tuple(request["scopes"]),
        granted=tuple(request["scopes"]),
        denied=(),
        time=time.time(),
    )
    key = load_private_key(Path(pem).read_bytes())
    await s.agent.send(encode(decision_message(receipt, key, id="d1")).decode())
    while (await recv_json(s.op, "session_state"))["phase"] != "active":
        pass


async def _until_queued(op: ClientConnection, session_id: str, tries: int = 300) -> None:
    """Until the operator's process lists the request another process holds (its queue follows the
    bus, docs/cluster.md §6a): a claim by id before that would not know where the agent is."""
    for n in range(tries):
        await op.send(json.dumps({"type": "queue_list", "id": f"q{n}"}))
        queue = await recv_json(op, "queue")
        if any(entry["session_id"] == session_id for entry in queue["requests"]):
            return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"request {session_id} never reached the operator's queue")


async def setup_bare_session(s: Session, url: str, ca: str) -> None:
    ctx = client_context(ca)
    s.agent = await connect(
        f"{url}/a/{s.index}", ssl=ctx, ping_interval=None, compression=None, max_size=MAX_SIZE
    )
    s.op = await connect(
        f"{url}/o/{s.index}", ssl=ctx, ping_interval=None, compression=None, max_size=MAX_SIZE
    )


async def throughput(sessions: list[Session], frames: Frames, seconds: float, max_messages: int) -> float:
    """Each session sends as fast as it can with at most ~1 MiB in flight (the broker's per-viewer
    screen bound is 4 MiB, so nothing is dropped); returns the elapsed time."""
    window = max(2, MiB // frames.size)
    per_session = max(1, max_messages // len(sessions))
    t0 = time.perf_counter()
    deadline = t0 + seconds

    async def pump(s: Session) -> None:
        assert s.agent is not None
        limit = s.sent + per_session
        while s.sent < limit and time.perf_counter() < deadline:
            while s.sent - s.received - s.forgiven >= window:
                s.progress.clear()
                try:
                    async with asyncio.timeout(STALL):
                        await s.progress.wait()
                except TimeoutError:  # dropped without a keyframe request (one is under way)
                    s.forgiven = s.sent - s.received
                if time.perf_counter() >= deadline + 5:
                    return
            keyframe = s.need_keyframe or s.sent % 100 == 0
            s.need_keyframe = False
            await s.agent.send(frames.build(s.sent, keyframe=keyframe))
            s.sent += 1
        # Every update that still arrives belongs to this phase: wait while they come (a dropped one
        # never will: 2 s without progress ends the wait).
        drain_deadline = time.perf_counter() + 10
        while s.received < s.sent and time.perf_counter() < drain_deadline:
            s.progress.clear()
            try:
                async with asyncio.timeout(4 * STALL):
                    await s.progress.wait()
            except TimeoutError:
                break

    await asyncio.gather(*(pump(s) for s in sessions))
    return time.perf_counter() - t0


async def paced(
    sessions: list[Session], frames: Frames, seconds: float, rate: float, input_rate: float
) -> None:
    """Each session sends ``rate`` updates/s (and the operator ``input_rate`` input events/s)."""
    t0 = time.perf_counter()
    end = t0 + seconds

    async def ticks(per_second: float, phase: float) -> AsyncIterator[int]:
        """1, 2, … at ``t0 + phase + (k - 1) / per_second``, until the phase ends."""
        k = 0
        while (at := t0 + phase + k / per_second) < end:
            await asyncio.sleep(max(0.0, at - time.perf_counter()))
            k += 1
            yield k

    async def updates(s: Session, phase: float) -> None:
        assert s.agent is not None
        async for _ in ticks(rate, phase):
            keyframe = s.need_keyframe or s.sent % 100 == 0
            s.need_keyframe = False
            await s.agent.send(frames.build(s.sent, keyframe=keyframe))
            s.sent += 1

    async def inputs(s: Session, phase: float) -> None:
        assert s.op is not None
        async for k in ticks(input_rate, phase):
            s.input_sent[k] = time.perf_counter()
            await s.op.send(
                json.dumps(
                    {
                        "type": "input",
                        "session_id": s.session_id,
                        "seq": k,
                        "kind": "move",
                        "x": k % 1000,
                        "y": 5,
                    }
                )
            )

    jobs = []
    for s in sessions:
        jobs.append(updates(s, random.uniform(0, 1 / rate)))
        if input_rate > 0:
            jobs.append(inputs(s, random.uniform(0, 1 / input_rate)))
    await asyncio.gather(*jobs)
    await asyncio.sleep(0.5)  # let the last updates arrive


async def sink_throughput(
    url: str, ca: str, n: int, frames: Frames, seconds: float, max_messages: int
) -> tuple[int, int, float]:
    host, port = url.removeprefix("wss://").rsplit(":", 1)
    ctx = client_context(ca)
    conns = [await asyncio.open_connection(host, int(port), ssl=ctx) for _ in range(n)]
    per = max(1, max_messages // n)
    t0 = time.perf_counter()
    deadline = t0 + seconds
    counts = [0] * n

    async def pump(i: int) -> None:
        reader, writer = conns[i]
        head = LENGTH.pack(frames.size)
        while counts[i] < per and time.perf_counter() < deadline:
            writer.write(head)
            writer.write(frames.build(counts[i], keyframe=False))
            await writer.drain()
            counts[i] += 1
        writer.write(LENGTH.pack(0))
        await writer.drain()
        await reader.readexactly(2)

    await asyncio.gather(*(pump(i) for i in range(n)))
    elapsed = time.perf_counter() - t0
    for _, writer in conns:
        writer.close()
    total = sum(counts)
    return total, total * frames.size, elapsed


def _lat(values: list[float]) -> dict[str, float | int]:
    return {
        "n": len(values),
        "p50_ms": percentile(values, 50) * 1000,
        "p99_ms": percentile(values, 99) * 1000,
        "max_ms": max(values) * 1000 if values else float("nan"),
    }


async def run_relay(args: argparse.Namespace) -> None:
    queue = commands()
    sessions = [Session(args.first + i) for i in range(args.sessions)]
    url = args.url.rstrip("/")
    agent_url = (getattr(args, "agent_url", None) or url).rstrip("/")
    if args.target == "broker":
        manifest = json.loads(Path(args.manifest).read_text())
        op_ctx = client_context(args.ca)
        for s in sessions:  # one by one: the operator queue is broadcast on every request and claim
            await setup_broker_session(
                s,
                url,
                args.ca,
                manifest["agents"][s.index],
                manifest["operator_token"],
                op_ctx,
                agent_url=agent_url,
            )
    elif args.target == "bare":
        await asyncio.gather(*(setup_bare_session(s, url, args.ca) for s in sessions))
    if args.target != "sink":
        for s in sessions:
            s.start_readers()
    emit({"event": "ready", "sessions": len(sessions)})
    async for cmd in until_quit(queue, args.max_seconds):
        frames = Frames(int(cmd["size"]))
        seconds = float(cmd["seconds"])
        if args.target == "sink":
            messages, nbytes, elapsed = await sink_throughput(
                url, args.ca, len(sessions), frames, seconds, int(cmd["max_messages"])
            )
            emit({"event": "result", "messages": messages, "bytes": nbytes, "elapsed": elapsed})
            continue
        before = [(s.received, s.received_bytes, s.sent) for s in sessions]
        refresh_before = sum(s.refresh_requests for s in sessions)
        if cmd["cmd"] == "throughput":
            elapsed = await throughput(sessions, frames, seconds, int(cmd["max_messages"]))
        else:
            for s in sessions:
                s.update_latency = [] if cmd.get("measure", True) else None
                s.input_latency = [] if cmd.get("measure", True) else None
                s.input_sent.clear()
            t0 = time.perf_counter()
            await paced(sessions, frames, seconds, float(cmd["rate"]), float(cmd.get("input_rate", 0)))
            elapsed = time.perf_counter() - t0
        messages = sum(s.received - b[0] for s, b in zip(sessions, before, strict=True))
        nbytes = sum(s.received_bytes - b[1] for s, b in zip(sessions, before, strict=True))
        sent = sum(s.sent - b[2] for s, b in zip(sessions, before, strict=True))
        result: dict[str, Any] = {
            "event": "result",
            "messages": messages,
            "sent": sent,
            "bytes": nbytes,
            "elapsed": elapsed,
            "refresh_requests": sum(s.refresh_requests for s in sessions) - refresh_before,
        }
        if cmd["cmd"] == "paced" and cmd.get("measure", True):
            result["update_latency"] = _lat([v for s in sessions for v in s.update_latency or []])
            result["input_latency"] = _lat([v for s in sessions for v in s.input_latency or []])
            for s in sessions:
                s.update_latency = s.input_latency = None
        emit(result)
    for s in sessions:
        for task in s.tasks:
            task.cancel()
        for ws in (s.agent, s.op):
            if ws is not None:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(2):
                        await ws.close()
