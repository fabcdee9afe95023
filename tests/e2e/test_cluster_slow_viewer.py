"""A slow viewer across processes (docs/cluster.md §6a, "Slow viewer across processes"): two real
broker processes on PostgreSQL and NATS, the agent's connection on broker-1, the operator on
broker-2. The agent is a real enrolled identity speaking the wire protocol itself, so that it can
send large incompressible frames (the test pattern's deltas are a few hundred bytes: filling a
viewer's 4 MiB queue with them would take minutes).

- The operator's socket stops being read until broker-2's queue for it is full: broker-2 drops the
  frames and tells broker-1 over the link; broker-1 asks the agent for a keyframe (``behind``).
  Once the operator reads again it gets that keyframe and then the current frames.
- A peer node holding a valid cluster certificate sends keyframe requests for an unknown session,
  with unknown or malformed keys, for a connection that watches nothing, and in a flood: the junk
  does nothing, the flood costs the agent at most one keyframe request per interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from agent.identity import load_identity
from broker.cluster.ca_files import node_credentials
from broker.cluster.link import Frame, FrameKind, Link, dial, encode_frame
from broker.session_links import KEYFRAME_INTERVAL, Envelope
from protocol import encode
from protocol.messages import QueueList, Watch
from protocol.screen import FLAG_KEYFRAME, peek_header
from tests.e2e.cluster import Cluster, cluster_database, start_cluster
from tests.helpers import BrokerProcess, add_operator, grant_as_asked
from tests.raw_session import next_json, screen_frame

pytestmark = pytest.mark.e2e

FRAME_BYTES = 64 * 1024
MAX_FRAMES = 1000
"""Upper bound of the stream (62 MiB); it stops as soon as the agent is asked for a keyframe."""
PACE = 0.01
"""Seconds between two frames: ~6 MB/s, far below what the link carries, so the link itself never
drops a frame (that would make broker-1 ask for a keyframe on its own, without broker-2's word)."""
FLOOD_BURSTS = 200
"""The hostile peer's flood: this many bursts of 10 keyframe requests, ``PACE`` apart."""


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    yield from cluster_database()


@pytest.fixture(scope="module")
def cluster(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    running = start_cluster(database_url, tmp_path_factory.mktemp("cluster"), count=2)
    try:
        yield running
    finally:
        running.stop()


def _context(cluster: Cluster, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=cluster.data_dir / "ca.pem")
    if cert is not None and key is not None:
        ctx.load_cert_chain(cert, key)
    return ctx


@dataclass
class AgentSide:
    """The agent's connection on broker-1; ``refreshes`` lists the ``behind`` flag of every
    ``screen_refresh`` it was sent, in order."""

    ws: ClientConnection
    session: str
    refreshes: list[bool] = field(default_factory=list)
    answer: bool = False
    """Answer every ``behind`` request with a keyframe (the core then may ask again)."""
    seq: int = 0
    reader: asyncio.Task[None] | None = None

    async def send_frame(self, *, keyframe: bool) -> int:
        self.seq += 1
        await self.ws.send(screen_frame(self.seq, FRAME_BYTES, keyframe=keyframe))
        return self.seq

    async def read(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                frame = await self.ws.recv()
                if not isinstance(frame, str):
                    continue
                message = json.loads(frame)
                if message["type"] != "screen_refresh":
                    continue
                self.refreshes.append(bool(message.get("behind")))
                if message.get("behind") and self.answer:
                    await self.send_frame(keyframe=True)

    async def until(self, count: int, *, behind: bool) -> int:
        """Wait for the ``count``-th refresh with this flag; its index in :attr:`refreshes`."""
        for _ in range(600):  # an event to wait for, not a duration to assert
            found = [i for i, b in enumerate(self.refreshes) if b is behind]
            if len(found) >= count:
                return found[count - 1]
            await asyncio.sleep(0.05)
        raise AssertionError(f"the agent was never sent refresh #{count} (behind={behind}): {self.refreshes}")


async def _operator(broker: BrokerProcess, name: str, *, rcvbuf: int | None = None) -> ClientConnection:
    """A logged-in operator on ``broker`` with a raw client (``rcvbuf``: a tiny receive buffer, so
    that not reading shows at once instead of after megabytes of kernel buffering)."""
    account = add_operator(broker, name)
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    raw.connect(("127.0.0.1", broker.port))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=broker.data_dir / "ca.pem")
    ws = await connect(
        f"{broker.url}/operator", ssl=ctx, sock=raw, ping_interval=None, max_queue=1, max_size=None
    )
    await ws.send(json.dumps({"type": "hello", "versions": [1], "role": "operator"}))
    await next_json(ws, "hello")
    login = {"name": name, "password": account.password, "totp": account.totp()}
    await ws.send(json.dumps({"type": "login", "id": "l", **login}))
    await next_json(ws, "login_ok")
    new = account.password + "-changed-1"
    change = {"old_password": account.password, "new_password": new}
    await ws.send(json.dumps({"type": "change_password", "id": "p", **change}))
    await next_json(ws, "ok")
    return ws


@contextlib.asynccontextmanager
async def _session(
    cluster: Cluster, tmp_path: Path, contract: str, op: ClientConnection
) -> AsyncIterator[AgentSide]:
    """The agent on broker-1 asks for support; ``op`` (on broker-2) claims and watches it; the
    subscriber grants ``screen:view`` with a signed receipt; the agent sends a first keyframe."""
    cluster.enroll(tmp_path / "agent", contract, via=0)
    identity = load_identity(tmp_path / "agent")
    assert identity is not None
    agent = await connect(
        f"{cluster.brokers[0].url}/agent",
        ssl=_context(cluster, identity.cert_path, identity.key_path),
        ping_interval=None,
        max_size=None,
    )
    try:
        await agent.send(json.dumps({"type": "hello", "versions": [1], "role": "agent"}))
        await next_json(agent, "hello")
        await agent.send(json.dumps({"type": "support_request", "id": "r1"}))
        code = (await next_json(agent, "support_code"))["code"]
        await op.send(json.dumps({"type": "claim", "id": "c", "code": code, "scopes": ["screen:view"]}))
        session = (await next_json(op, "claimed"))["session_id"]
        request = await next_json(agent, "consent_request")
        assert request["scopes"] == ["screen:view"]
        await agent.send(grant_as_asked(request, session, identity))
        await op.send(json.dumps({"type": "watch", "id": "w", "session_id": session}))
        while (await next_json(op, "session_state"))["phase"] != "active":
            pass
        side = AgentSide(agent, session)
        side.reader = asyncio.create_task(side.read())
        await side.send_frame(keyframe=True)
        try:
            yield side
        finally:
            side.reader.cancel()
    finally:
        await agent.close()


async def test_a_viewer_behind_on_its_own_process_gets_a_keyframe_from_the_agent(
    cluster: Cluster, tmp_path: Path
) -> None:
    slow = await _operator(cluster.brokers[1], "slowvk", rcvbuf=4096)
    async with _session(cluster, tmp_path, "C-VK-1", slow) as agent:
        assert True not in agent.refreshes
        # From here on the operator reads nothing; the agent streams large deltas.
        for _ in range(MAX_FRAMES):
            await agent.send_frame(keyframe=False)
            if True in agent.refreshes:
                break
            await asyncio.sleep(PACE)
        # broker-2 dropped frames for its operator and said so; broker-1 asked the agent for a
        # keyframe, as for a slow viewer of its own (without broker-2's word: never, the loop ends).
        assert True in agent.refreshes, f"no keyframe asked for after {agent.seq} frames"
        keyframe = await agent.send_frame(keyframe=True)
        current = [await agent.send_frame(keyframe=False) for _ in range(3)]

        # The operator reads again: after what the kernel held, the keyframe, then the current frames.
        seen: list[tuple[int, bool]] = []
        while not seen or seen[-1][0] != current[-1]:
            data = await asyncio.wait_for(slow.recv(), 30)
            if isinstance(data, bytes):
                header = peek_header(data)
                seen.append((header.seq, bool(header.flags & FLAG_KEYFRAME)))
        at = seen.index((keyframe, True))
        assert [seq for seq, _ in seen[at + 1 :]] == current
        before = [seq for seq, _ in seen[:at]]
        assert before == sorted(before)
        assert before[-1] < keyframe - 1  # deltas were dropped in between: only a keyframe could resume
        assert agent.refreshes.count(True) == 1
    await slow.close()


class PeerReceived:
    """What broker-1 sends the hostile peer over the link (its answers to the peer's 'operators')."""

    def __init__(self) -> None:
        self.frames: list[Frame] = []

    def __call__(self, link: Link, frame: Frame) -> None:
        self.frames.append(frame)

    async def state_for(self, key: str) -> None:
        for _ in range(600):
            if any(
                f.payload.startswith(f"{key}\n".encode()) and b"session_state" in f.payload
                for f in self.frames
            ):
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"no session state for {key} over the link")


def _envelope(key: str, message: Watch | QueueList) -> bytes:
    return msgspec.msgpack.encode(
        Envelope(
            key=key,
            name="mallory",
            display_name="Mallory",
            role="supervisor",
            address="192.0.2.66",
            message=encode(message),
        )
    )


async def test_a_hostile_peers_keyframe_requests_do_nothing_harmful(cluster: Cluster, tmp_path: Path) -> None:
    op = await _operator(cluster.brokers[1], "fastvk")
    async with _session(cluster, tmp_path, "C-VK-2", op) as agent:
        listen = cluster.brokers[0].extra_args[cluster.brokers[0].extra_args.index("--cluster-listen") + 1]
        host, _, port = listen.rpartition(":")
        creds = node_credentials(cluster.data_dir, "intruder", host="127.0.0.1")
        received = PeerReceived()
        link = await dial(creds, "broker-1", host, int(port), received)
        session = agent.session

        # A watching 'supervisor' of the peer: the agent is asked for a keyframe for a new viewer.
        link.send_text(session, _envelope("h1", Watch(id="w1", session_id=session)))
        viewers = agent.refreshes.count(False)
        await received.state_for("h1")
        await agent.until(viewers + 1, behind=False)
        # Junk: an unknown session, unknown and malformed keys, a connection that watches nothing.
        link.send_text(session, _envelope("h2", QueueList(id="q2")))
        junk = [
            ("nosuchsession", b"h1"),
            (session, b"nobody"),
            (session, b"h1" * 40),
            (session, b"\xff\xfe\n"),
            (session, b""),
            (session, b"h2"),
        ]
        for sid, key in junk:
            link.send_keyframe_request(sid, key)
        # A marker: one more viewer (the agent's refreshes are in the order broker-1 sent them).
        link.send_text(session, _envelope("h3", Watch(id="w3", session_id=session)))
        marker = await agent.until(viewers + 2, behind=False)
        assert True not in agent.refreshes[: marker + 1], agent.refreshes

        # A flood from a real viewer's key, the agent answering every request with a keyframe.
        agent.answer = True
        started = time.monotonic()
        assert link.transport is not None
        burst = b"".join(encode_frame(FrameKind.KEYFRAME, session, b"h1") for _ in range(10))
        for _ in range(FLOOD_BURSTS):  # spread out, so that the agent's keyframes come in between
            link.transport.write(burst)
            await asyncio.sleep(PACE)
        first = await agent.until(1, behind=True)
        second = await agent.until(2, behind=True)  # the coalesced rest: one request, after the interval
        link.send_text(session, _envelope("h4", Watch(id="w4", session_id=session)))
        end = await agent.until(viewers + 3, behind=False)
        elapsed = time.monotonic() - started
        asked = agent.refreshes[marker + 1 : end].count(True)
        assert first < second < end
        # At most one request per interval (and one at once): 2,000 requests did not make 2,000 keyframes.
        print(f"flood: {asked} keyframe requests to the agent in {elapsed:.2f} s")
        assert asked <= 2 + int(elapsed / KEYFRAME_INTERVAL), (asked, elapsed)
        # The link stayed up and still serves the peer's real operators.
        assert link.transport is not None
        assert not link.transport.is_closing()
        link.close()
    await op.close()
