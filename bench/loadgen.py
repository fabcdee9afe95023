"""Load generators, each in its own process: ``python -m bench.loadgen MODE …``.

``idle``     thousands of simulated agents with real client certificates speaking the real protocol
             (hello, agent_status, then heartbeats), reconnecting after a drop with the agent's
             own backoff (exponential, full jitter). Against the broker or the bare echo server.
             Heartbeats (``--heartbeat json|frame|none``, ``--interval``; switched at run time by
             ``{"cmd": "heartbeat", "mode": …, "interval": …}``): a JSON ``ping`` (agents before
             issue 15) or a WebSocket Ping frame (since), from one scheduler per process that sends
             ``connected / interval`` a second round-robin, each at its own time, evenly spread.
``relay``    S sessions, each an agent link and an operator link (claimed with a support code and a
             signed consent receipt on the broker; joined by path on the bare relay; a single TLS
             stream for the raw TLS sink). Runs throughput (windowed, so the broker never has to
             drop) or paced (updates/s) phases on command, measuring latency agent → operator and
             operator input → agent in this process's own clock.
``enroll``   full enrollments (``agent.enroll.enroll``) with a few in flight, or bare TLS WebSocket
             connects against the echo server (the baseline).

Commands arrive as JSON lines on stdin; results and a status line every half second go to stdout.
Every loop is bounded by a count and a deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import random
import shutil
import ssl
import struct
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from agent.backoff import Backoff
from bench.common import MiB, emit, percentile, raise_nofile
from broker import tuning
from certs import load_private_key, sign
from protocol.receipts import ConsentReceipt, receipt_bytes
from protocol.screen import HEADER_SIZE, RECT_HEADER_SIZE, Encoding, Rect, ScreenUpdate, encode_update

HEARTBEAT = 20.0
STABLE_AFTER = 30.0  # as agent.connection: a connection that lasted this long resets the backoff
PERMANENT = {"cert_revoked", "cert_unknown", "subscriber_terminated", "cert_required"}
MAX_SIZE = 8 * MiB
STAMP = struct.Struct("<Qd")  # seq, send time (time.perf_counter) at the start of the rect payload
LENGTH = struct.Struct(">I")


def client_context(ca: str, pem: str | None = None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_verify_locations(cafile=ca)
    if pem is not None:
        ctx.load_cert_chain(pem)
    return ctx


def commands() -> asyncio.Queue[dict[str, Any]]:
    """Lines of stdin as a queue; EOF becomes ``{"cmd": "quit"}``."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    def pump() -> None:
        for line in sys.stdin:
            if line.strip():
                loop.call_soon_threadsafe(queue.put_nowait, json.loads(line))
        loop.call_soon_threadsafe(queue.put_nowait, {"cmd": "quit"})

    threading.Thread(target=pump, daemon=True).start()
    return queue


async def recv_json(ws: ClientConnection, kind: str, timeout: float = 30.0) -> dict[str, Any]:
    """The next text message of ``kind``; others are skipped."""
    async with asyncio.timeout(timeout):
        while True:
            frame = await ws.recv()
            if isinstance(frame, str):
                message: dict[str, Any] = json.loads(frame)
                if message.get("type") == kind:
                    return message
                if message.get("type") == "error":
                    raise RuntimeError(f"waiting for {kind}: {message}")


# -- idle agents ------------------------------------------------------------------------------------


class IdleAgents:
    def __init__(self, args: argparse.Namespace, agents: list[list[str]]) -> None:
        self.url = args.url.rstrip("/") + ("/agent" if args.protocol == "broker" else "/echo")
        self.protocol = args.protocol
        self.ca = args.ca
        self.agents = agents
        self.sem = asyncio.Semaphore(args.concurrency)
        self.tasks: list[asyncio.Task[None]] = []
        self.connected = 0
        self.connects = 0
        self.attempts = 0
        self.failed = 0
        self.gave_up = 0
        self.drops = 0
        self.pings = 0
        self.live: dict[int, ClientConnection] = {}
        self.mode: str = args.heartbeat
        self.interval: float = args.interval

    def status(self) -> dict[str, Any]:
        return {
            "event": "status",
            "t": time.time(),
            "started": len(self.tasks),
            "connected": self.connected,
            "connects": self.connects,
            "attempts": self.attempts,
            "failed": self.failed,
            "gave_up": self.gave_up,
            "drops": self.drops,
            "pings": self.pings,
        }

    def start(self, n: int) -> None:
        while len(self.tasks) < min(n, len(self.agents)):
            self.tasks.append(asyncio.create_task(self.agent(len(self.tasks))))

    async def _open(self, ctx: ssl.SSLContext, name: str) -> ClientConnection:
        ws = await connect(
            self.url,
            ssl=ctx,
            ping_interval=None,
            compression=None,
            open_timeout=15,
            close_timeout=5,
            max_size=MAX_SIZE,
        )
        try:
            await ws.send(
                json.dumps({"type": "hello", "versions": [1], "role": "agent", "software": "bench"})
            )
            await recv_json(ws, "hello", timeout=15)
            await ws.send(
                json.dumps({"type": "agent_status", "machine_name": name, "agent_version": "bench"})
            )
        except BaseException:
            await ws.close()
            raise
        return ws

    async def agent(self, index: int) -> None:
        _serial, contract, pem = self.agents[index]
        ctx = client_context(self.ca, pem)
        backoff = Backoff()
        while True:
            started = time.monotonic()
            try:
                async with self.sem:
                    self.attempts += 1
                    ws = await self._open(ctx, f"pc-{contract}")
            except (OSError, WebSocketException, TimeoutError, RuntimeError) as exc:
                self.failed += 1
                if any(code in str(exc) for code in PERMANENT):
                    self.gave_up += 1
                    return
                await asyncio.sleep(backoff.next_delay())
                continue
            self.connected += 1
            self.connects += 1
            self.live[index] = ws
            try:
                await self._serve(ws)
            finally:
                self.live.pop(index, None)
                self.connected -= 1
                self.drops += 1
            if ws.close_reason in PERMANENT:
                self.gave_up += 1
                return
            if time.monotonic() - started >= STABLE_AFTER:
                backoff.reset()
            await asyncio.sleep(backoff.next_delay())

    async def _serve(self, ws: ClientConnection) -> None:
        """Read (and drop) what the server sends until the connection ends; heartbeats are sent by
        :meth:`heartbeats`."""
        with contextlib.suppress(ConnectionClosed):
            async for _ in ws:
                pass

    async def heartbeats(self) -> None:
        """``connected / interval`` heartbeats a second over the live connections, round-robin, each
        at its own time (as independent agents' heartbeats arrive, not in bursts the server could
        take in one read)."""
        order: list[int] = []
        position = 0
        n = 0
        due = time.monotonic()
        while True:
            live = len(self.live)
            if self.mode == "none" or self.interval <= 0 or not live:
                await asyncio.sleep(0.1)
                due = time.monotonic()
                continue
            setting = (self.mode, self.interval)
            due += self.interval / live
            delay = due - time.monotonic()
            if delay < -1.0:  # fell behind (a stall): do not catch up in a burst
                due = time.monotonic()
            while delay > 0 and (self.mode, self.interval) == setting:
                await asyncio.sleep(min(delay, 0.1))  # a switch of heartbeat takes effect at once
                delay = due - time.monotonic()
            if (self.mode, self.interval) != setting:
                due = time.monotonic()
                continue
            if position >= len(order):
                order, position = list(self.live), 0
            ws = self.live.get(order[position])
            position += 1
            if ws is None:
                continue
            n += 1
            try:
                if self.mode == "frame":
                    waiter = asyncio.ensure_future(await ws.ping())
                    waiter.add_done_callback(_ignore_outcome)
                else:
                    await ws.send(json.dumps({"type": "ping", "id": f"c{n}", "time": time.time()}))
            except (ConnectionClosed, RuntimeError):
                continue
            self.pings += 1


def _ignore_outcome(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # a Pong that never came (connection closed): retrieved, not logged


async def run_idle(args: argparse.Namespace) -> None:
    manifest = json.loads(Path(args.manifest).read_text())
    agents = manifest["agents"][args.start : args.start + args.count]
    idle = IdleAgents(args, agents)
    queue = commands()

    async def report() -> None:
        while True:
            emit(idle.status())
            await asyncio.sleep(0.5)

    reporter = asyncio.create_task(report())
    beats = asyncio.create_task(idle.heartbeats())
    async for cmd in until_quit(queue, args.max_seconds):
        if cmd["cmd"] == "connect":
            idle.start(int(cmd["n"]))
        elif cmd["cmd"] == "heartbeat":
            idle.mode, idle.interval = str(cmd["mode"]), float(cmd["interval"])
    reporter.cancel()
    beats.cancel()
    emit(idle.status())
    for task in idle.tasks:
        task.cancel()
    await asyncio.gather(*idle.tasks, return_exceptions=True)


async def until_quit(
    queue: asyncio.Queue[dict[str, Any]], max_seconds: float
) -> AsyncIterator[dict[str, Any]]:
    """The harness's commands until "quit" or ``max_seconds``: every load loop stops by itself."""
    deadline = time.monotonic() + max_seconds
    while time.monotonic() < deadline:
        try:
            async with asyncio.timeout(deadline - time.monotonic()):
                cmd = await queue.get()
        except TimeoutError:
            return
        if cmd["cmd"] == "quit":
            return
        yield cmd


# -- relay sessions ---------------------------------------------------------------------------------


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
    s: Session, url: str, ca: str, agent: list[str], token: str, op_ctx: ssl.SSLContext
) -> None:
    serial, contract, pem = agent
    s.agent = await connect(
        f"{url}/agent",
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
    data = receipt_bytes(receipt)
    await s.agent.send(
        json.dumps(
            {
                "type": "consent_decision",
                "id": "d1",
                "session_id": s.session_id,
                "receipt": data.decode(),
                "signature": base64.b64encode(sign(key, data)).decode(),
            }
        )
    )
    while (await recv_json(s.op, "session_state"))["phase"] != "active":
        pass


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
            while s.sent - s.received >= window:
                s.progress.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(5):
                        await s.progress.wait()
                if time.perf_counter() >= deadline + 5:
                    return
            keyframe = s.need_keyframe or s.sent % 100 == 0
            s.need_keyframe = False
            await s.agent.send(frames.build(s.sent, keyframe=keyframe))
            s.sent += 1
        drain_deadline = time.perf_counter() + 10
        while s.received < s.sent and time.perf_counter() < drain_deadline:
            s.progress.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1):
                    await s.progress.wait()

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
    if args.target == "broker":
        manifest = json.loads(Path(args.manifest).read_text())
        op_ctx = client_context(args.ca)
        for s in sessions:  # one by one: the operator queue is broadcast on every request and claim
            await setup_broker_session(
                s, url, args.ca, manifest["agents"][s.index], manifest["operator_token"], op_ctx
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
                    await asyncio.wait_for(ws.close(), 2)


# -- enrollment -------------------------------------------------------------------------------------


async def run_enroll(args: argparse.Namespace) -> None:
    from agent.enroll import enroll

    items: list[list[str]] = json.loads(Path(args.tokens).read_text()) if args.tokens else []
    count = args.count
    done = 0
    failed = 0
    sem = asyncio.Semaphore(args.concurrency)
    tmp = Path(tempfile.mkdtemp(prefix="bench-enroll-"))
    ctx = client_context(args.ca)

    async def one(i: int) -> None:
        nonlocal done, failed
        async with sem:
            try:
                if args.baseline:
                    async with connect(
                        f"{args.url}/echo", ssl=ctx, ping_interval=None, compression=None, open_timeout=30
                    ) as ws:
                        await ws.send('{"type":"hello"}')
                        await ws.recv()
                else:
                    contract, token = items[i]
                    await enroll(
                        broker_url=args.url,
                        contract_id=contract,
                        token=token,
                        ca_fingerprint=args.fingerprint,
                        data_dir=tmp / str(i),
                        confirm=lambda _: True,
                        machine_name=f"pc-{i}",
                    )
                done += 1
            except Exception as exc:  # counted and reported, the run goes on
                failed += 1
                if failed <= 3:
                    print(f"enroll {i} failed: {exc!r}", file=sys.stderr)

    n = count if args.baseline else min(count, len(items))
    t0 = time.perf_counter()
    try:
        async with asyncio.timeout(args.max_seconds):
            await asyncio.gather(*(one(i) for i in range(n)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    emit({"event": "result", "done": done, "failed": failed, "elapsed": time.perf_counter() - t0})


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen")
    sub = parser.add_subparsers(dest="mode", required=True)
    idle = sub.add_parser("idle")
    idle.add_argument("--protocol", choices=("broker", "echo"), default="broker")
    idle.add_argument("--start", type=int, default=0)
    idle.add_argument("--count", type=int, required=True)
    idle.add_argument("--concurrency", type=int, default=50, help="handshakes in flight")
    idle.add_argument("--heartbeat", choices=("json", "frame", "none"), default="json")
    idle.add_argument(
        "--interval", type=float, default=HEARTBEAT, help="seconds between an agent's heartbeats"
    )
    relay = sub.add_parser("relay")
    relay.add_argument("--target", choices=("broker", "bare", "sink"), required=True)
    relay.add_argument("--sessions", type=int, default=1)
    relay.add_argument("--first", type=int, default=0, help="index of the first agent / session")
    enroll = sub.add_parser("enroll")
    enroll.add_argument("--tokens", default=None, help="JSON list of [contract, token]")
    enroll.add_argument("--fingerprint", default="")
    enroll.add_argument("--count", type=int, default=100)
    enroll.add_argument("--concurrency", type=int, default=4)
    enroll.add_argument(
        "--baseline", action="store_true", help="bare TLS WebSocket connects to the echo server"
    )
    for p in (idle, relay, enroll):
        p.add_argument("--url", required=True)
        p.add_argument("--ca", required=True)
        p.add_argument("--manifest", default=None)
        p.add_argument("--max-seconds", type=float, default=900.0)
    args = parser.parse_args()
    raise_nofile()
    tuning.set_tls_read_buffer(tuning.DEFAULT_TLS_READ_BUFFER)  # keeps the load processes small
    run: dict[str, Callable[[argparse.Namespace], Any]] = {
        "idle": run_idle,
        "relay": run_relay,
        "enroll": run_enroll,
    }
    asyncio.run(run[args.mode](args))


if __name__ == "__main__":
    main()
