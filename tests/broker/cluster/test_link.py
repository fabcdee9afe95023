"""The node-to-node link: mutual TLS with the cluster's own CA, frames multiplexed by session,
screen frames dropped for a slow peer while control frames are kept, hostile frames close the link."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from broker import tuning
from broker.cluster.link import (
    DEFAULT_READ_BUFFER,
    MAX_PAYLOAD,
    ClusterCA,
    Frame,
    FrameDecoder,
    FrameKind,
    Link,
    LinkError,
    LinkServer,
    NodeCredentials,
    client_context,
    dial,
    encode_frame,
)

NOW = datetime.now(UTC)


@pytest.fixture(scope="module")
def cluster_ca() -> ClusterCA:
    return ClusterCA.create(now=NOW)


@pytest.fixture(scope="module")
def creds(cluster_ca: ClusterCA) -> tuple[NodeCredentials, NodeCredentials]:
    return cluster_ca.issue("node-a", host="127.0.0.1", now=NOW), cluster_ca.issue(
        "node-b", host="127.0.0.1", now=NOW
    )


class Received:
    def __init__(self) -> None:
        self.frames: list[tuple[str, Frame]] = []
        self.event = asyncio.Event()

    def __call__(self, link: Link, frame: Frame) -> None:
        self.frames.append((link.peer, frame))
        self.event.set()

    async def until(self, count: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.frames) < count:
            self.event.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"got {len(self.frames)} of {count} frames")
            await asyncio.wait_for(self.event.wait(), remaining)


@pytest.fixture
async def node_b(
    creds: tuple[NodeCredentials, NodeCredentials],
) -> AsyncIterator[tuple[LinkServer, int, Received]]:
    received = Received()
    server = LinkServer(creds[1], received)
    port = await server.start("127.0.0.1", 0)
    try:
        yield server, port, received
    finally:
        await server.close()


async def test_frames_cross_the_link_in_order_with_the_senders_identity(
    creds: tuple[NodeCredentials, NodeCredentials], node_b: tuple[LinkServer, int, Received]
) -> None:
    server, port, received = node_b
    back = Received()
    link = await dial(creds[0], "node-b", "127.0.0.1", port, back)
    assert link.peer == "node-b"
    link.send_text("s1", b'{"type":"input"}')
    assert link.send_screen("s2", b"\x01" * 70_000)
    link.send_text("s2", b'{"type":"chat"}')
    link.send_end("s1")
    await received.until(4)
    assert [(peer, f.kind, f.session_id) for peer, f in received.frames] == [
        ("node-a", FrameKind.TEXT, "s1"),
        ("node-a", FrameKind.SCREEN, "s2"),
        ("node-a", FrameKind.TEXT, "s2"),
        ("node-a", FrameKind.END, "s1"),
    ]
    assert received.frames[1][1].payload == b"\x01" * 70_000
    # Both ways on one connection: node B answers on the link it received.
    (server_link,) = server.links
    server_link.send_text("s1", b'{"type":"state"}')
    await back.until(1)
    assert back.frames[0][0] == "node-b"
    link.close()


async def test_a_certificate_of_another_ca_gets_no_link(node_b: tuple[LinkServer, int, Received]) -> None:
    """An agent's certificate (the agents' CA) or none at all: the handshake fails; nothing arrives."""
    server, port, received = node_b
    other = ClusterCA.create(now=NOW, name="agents CA").issue("node-x", host="127.0.0.1", now=NOW)
    server_ca = server.creds.ca_pem
    intruder = NodeCredentials(
        node="node-x",
        server_cert_pem=other.server_cert_pem,
        server_key_pem=other.server_key_pem,
        client_cert_pem=other.client_cert_pem,
        client_key_pem=other.client_key_pem,
        ca_pem=server_ca,  # it trusts the cluster CA, but its own certificate is not from it
    )

    async def attempt() -> None:
        link = await dial(intruder, "node-b", "127.0.0.1", port, Received())
        link.send_text("s1", b"{}")  # TLS 1.3: the server's refusal may arrive just after
        await asyncio.sleep(0.5)
        link.send_text("s1", b"{}")

    with pytest.raises(LinkError):
        await attempt()
    no_cert = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    no_cert.load_verify_locations(cadata=server_ca.decode())
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=no_cert, server_hostname="127.0.0.1")
        writer.write(encode_frame(FrameKind.TEXT, "s1", b"{}"))
        await asyncio.sleep(0.5)
        writer.close()
    except (ssl.SSLError, ConnectionError):
        pass
    assert received.frames == []
    assert server.links == set()


async def test_a_slow_peer_loses_screen_frames_never_control_frames(
    creds: tuple[NodeCredentials, NodeCredentials], node_b: tuple[LinkServer, int, Received]
) -> None:
    server, port, received = node_b
    link = await dial(creds[0], "node-b", "127.0.0.1", port, Received())
    await asyncio.sleep(0.05)
    (server_link,) = server.links
    assert server_link.transport is not None
    server_link.transport.pause_reading()  # node B stops reading (a slow process)
    sent_screens = sum(link.send_screen("s1", b"\x02" * 65_536) for _ in range(200))
    for i in range(50):
        link.send_text("s1", f'{{"i":{i}}}'.encode())
    assert link.dropped_screens > 0
    assert sent_screens + link.dropped_screens == 200
    server_link.transport.resume_reading()
    await received.until(sent_screens + 50)
    texts = [f.payload for _, f in received.frames if f.kind is FrameKind.TEXT]
    assert texts == [f'{{"i":{i}}}'.encode() for i in range(50)]
    link.close()


@pytest.mark.parametrize(
    "data",
    [
        b"\x09\x00\x00\x00\x00\x00",  # unknown kind, and no session id
        b"\x01\x00\x00\x00\x00\x00",  # empty session id
        bytes([1, 2]) + (MAX_PAYLOAD + 1).to_bytes(4, "big") + b"s1",  # too large
        b"\x01\x02\x00\x00\x00\x00s.",  # not a session id
    ],
)
def test_hostile_frames_are_refused(data: bytes) -> None:
    with pytest.raises(LinkError):
        FrameDecoder().feed(data)


def test_a_frame_of_an_unknown_kind_is_skipped_not_fatal() -> None:
    # A newer node (rolling upgrade) may send a kind this version does not know: the frame is
    # skipped whole, the ones around it still decode, and the link stays up.
    unknown = bytes([9, 2]) + (3).to_bytes(4, "big") + b"s1" + b"new"
    data = encode_frame(FrameKind.TEXT, "s1", b"a") + unknown + encode_frame(FrameKind.END, "s2")
    decoder = FrameDecoder()
    frames = [f for i in range(len(data)) for f in decoder.feed(data[i : i + 1])]
    assert frames == [Frame(FrameKind.TEXT, "s1", b"a"), Frame(FrameKind.END, "s2", b"")]
    assert decoder.skipped == 1
    with pytest.raises(LinkError):  # still bounded: an unknown kind cannot announce a huge payload
        FrameDecoder().feed(bytes([9, 2]) + (MAX_PAYLOAD + 1).to_bytes(4, "big") + b"s1")


def test_frames_decode_across_reads() -> None:
    data = encode_frame(FrameKind.TEXT, "s1", b"hello") + encode_frame(FrameKind.END, "s2")
    decoder = FrameDecoder()
    frames = [f for i in range(len(data)) for f in decoder.feed(data[i : i + 1])]
    assert frames == [Frame(FrameKind.TEXT, "s1", b"hello"), Frame(FrameKind.END, "s2", b"")]
    with pytest.raises(LinkError):
        encode_frame(FrameKind.TEXT, "", b"")


def test_credentials_make_tls_1_3_contexts(creds: tuple[NodeCredentials, NodeCredentials]) -> None:
    ctx = client_context(creds[0])
    assert ctx.minimum_version is ssl.TLSVersion.TLSv1_3
    assert b"BEGIN CERTIFICATE" in creds[0].client_cert_pem


async def test_a_link_reads_with_its_own_buffer_when_the_process_keeps_idle_ones_small(
    creds: tuple[NodeCredentials, NodeCredentials], node_b: tuple[LinkServer, int, Received]
) -> None:
    """The broker sets every TLS connection's read buffer to 4 KiB (idle agents); a link carries
    many sessions' screens and reads 256 KiB at a time on both ends (bench.cluster_relay)."""
    server, port, _ = node_b
    before = tuning.set_tls_read_buffer(4096)
    try:
        link = await dial(creds[0], "node-b", "127.0.0.1", port, Received())
        await asyncio.sleep(0.05)
        (server_link,) = server.links
        for end in (link, server_link):
            assert end.transport is not None
            assert end.transport._ssl_protocol.max_size == DEFAULT_READ_BUFFER  # type: ignore[attr-defined]
        link.close()
    finally:
        tuning.set_tls_read_buffer(before)


def test_many_frames_in_one_read_decode_in_order_and_keep_the_partial_tail() -> None:
    frames = [encode_frame(FrameKind.SCREEN, f"s{i}", bytes([i]) * 1000) for i in range(20)]
    data = b"".join(frames)
    decoder = FrameDecoder()
    first = decoder.feed(data[:-10])
    assert [f.session_id for f in first] == [f"s{i}" for i in range(19)]
    assert all(f.payload == bytes([i]) * 1000 for i, f in enumerate(first))
    (last,) = decoder.feed(data[-10:])
    assert last == Frame(FrameKind.SCREEN, "s19", bytes([19]) * 1000)
