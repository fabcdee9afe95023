"""The node-to-node link: how an operator's session traffic reaches the process that holds the agent.

(docs/cluster.md §6: chosen over redirects.) One TLS 1.3 connection per pair of processes,
**mutually authenticated with the cluster's own CA** (:class:`ClusterCA`), a CA separate from the one
that issues agents' certificates: an agent's certificate fails the link's handshake, and a node's
certificate means nothing on the public ``/agent`` path. The peer's node id is the CN of its client
certificate — nothing in the stream can claim another.

Frames (:class:`FrameDecoder`, pure): ``kind`` (1 byte), session id length (1 byte), payload length
(4 bytes, big-endian), session id (ASCII), payload. Kinds: ``TEXT`` (a JSON control message, never
dropped), ``SCREEN`` (a binary screen update: "latest wins" — dropped while the link's send buffer is
above ``screen_high_water``, as the relay does for a slow viewer, DESIGN §5), ``END`` (the session
is over on the sender's side), ``KEYFRAME`` (the operator's process to the holder: a viewer of this
session fell behind here, its frames were dropped; payload: the operator connection's key). A
malformed or oversized frame closes the link (the other node reconnects); a well-formed frame of an
unknown kind (a newer node) is skipped; the link never buffers
control messages without bound either (past ``max_buffer`` the link is closed rather than grow).

Used by :mod:`broker.session_links`: the operator's process opens a link to the node holding the
session (its address from :class:`~.nodes.NodeTable`) and the holder feeds the frames into its core.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import ssl
import struct
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from certs.authority import CertificateAuthority
from certs.csr import build_csr, generate_private_key, private_key_to_pem

from ..errors import BrokerError
from ..tuning import set_connection_read_buffer
from .signals import check_node_id

__all__ = [
    "ClusterCA",
    "Frame",
    "FrameDecoder",
    "FrameKind",
    "Link",
    "LinkError",
    "LinkServer",
    "NodeCredentials",
    "dial",
    "encode_frame",
]

log = logging.getLogger(__name__)

HEADER: Final = struct.Struct(">BBI")
#: Largest payload of one frame: a keyframe of a 4K screen as JPEG fits with room (the agent's own
#: limit for a screen update is below it).
MAX_PAYLOAD: Final = 8 * 1024 * 1024
#: Send-buffer bytes above which screen frames are dropped (control frames still go).
DEFAULT_SCREEN_HIGH_WATER: Final = 1024 * 1024
#: Send-buffer bytes above which the link is closed instead of growing.
DEFAULT_MAX_BUFFER: Final = 32 * 1024 * 1024
#: TLS read buffer of a link (asyncio's own size). The broker makes every TLS connection's 2 KiB
#: (:mod:`broker.tuning`, for idle agents); a link carries the screen frames of many sessions, and
#: at 4 KiB a read the receiving process spent its time in ``recv`` and ``SSLObject.read`` calls
#: (``bench.cluster_relay``, docs/PERFORMANCE.md "Cross-process relay").
DEFAULT_READ_BUFFER: Final = 256 * 1024


class LinkError(BrokerError):
    """A link broke its framing rules or could not be set up."""


class FrameKind(enum.IntEnum):
    TEXT = 1
    SCREEN = 2
    END = 3
    KEYFRAME = 4


@dataclass(frozen=True, slots=True)
class Frame:
    kind: FrameKind
    session_id: str
    payload: bytes


def encode_frame(kind: FrameKind, session_id: str, payload: bytes = b"") -> bytes:
    sid = session_id.encode("ascii")
    if not 1 <= len(sid) <= 64 or len(payload) > MAX_PAYLOAD:
        raise LinkError("session id of 1–64 ASCII characters and a payload within MAX_PAYLOAD")
    return HEADER.pack(kind, len(sid), len(payload)) + sid + payload


class FrameDecoder:
    """Bytes in, frames out (sans-I/O). Raises :class:`LinkError` on the first bad frame; the caller
    closes the link."""

    def __init__(self, *, max_payload: int = MAX_PAYLOAD) -> None:
        self.max_payload = max_payload
        self._buffer = bytearray()
        self.skipped = 0
        """Well-formed frames of a kind this version does not know (a newer peer during a rolling
        upgrade): skipped, not fatal, so an upgrade never costs a link."""

    def feed(self, data: bytes) -> list[Frame]:
        buffer = self._buffer
        buffer += data
        frames: list[Frame] = []
        start = 0  # consumed bytes are dropped once per call, not once per frame
        try:
            while len(buffer) - start >= HEADER.size:
                kind, sid_len, size = HEADER.unpack_from(buffer, start)
                if not 1 <= sid_len <= 64 or size > self.max_payload:
                    raise LinkError("frame header out of bounds")
                body = start + HEADER.size + sid_len
                end = body + size
                if len(buffer) < end:
                    break
                if kind not in FrameKind._value2member_map_:
                    self.skipped += 1
                    start = end
                    continue
                sid_bytes = bytes(buffer[start + HEADER.size : body])
                if not sid_bytes.isascii() or not sid_bytes.replace(b"-", b"").replace(b"_", b"").isalnum():
                    raise LinkError("a session id is [A-Za-z0-9_-]")
                frames.append(Frame(FrameKind(kind), sid_bytes.decode("ascii"), bytes(buffer[body:end])))
                start = end
        finally:
            del buffer[:start]
        return frames


# -- certificates ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NodeCredentials:
    """What one process needs for its links: a server certificate for its listener (SAN = the address
    other nodes dial), a client certificate (CN = node id) to dial others, and the cluster CA."""

    node: str
    server_cert_pem: bytes
    server_key_pem: bytes
    client_cert_pem: bytes
    client_key_pem: bytes
    ca_pem: bytes


class ClusterCA:
    """The cluster's own CA (a :class:`certs.authority.CertificateAuthority` of its own, never the agents'
    CA). Its key belongs in the operators' secret store; each process gets its credentials at start."""

    def __init__(self, authority: CertificateAuthority) -> None:
        self.authority = authority

    @classmethod
    def create(cls, *, now: datetime, name: str = "ISP Remote Support cluster CA") -> ClusterCA:
        return cls(CertificateAuthority.create(common_name=name, now=now))

    def issue(self, node: str, *, host: str, now: datetime) -> NodeCredentials:
        check_node_id(node)
        server_cert, server_key = self.authority.issue_server_certificate([host], now=now)
        key = generate_private_key()
        client_cert = self.authority.sign_client_csr(
            build_csr(key, common_name=node), expected_common_name=node, now=now
        )
        return NodeCredentials(
            node=node,
            server_cert_pem=server_cert,
            server_key_pem=server_key,
            client_cert_pem=client_cert.public_bytes(serialization.Encoding.PEM),
            client_key_pem=private_key_to_pem(key),
            ca_pem=self.authority.cert_pem,
        )


def _load_chain(ctx: ssl.SSLContext, cert_pem: bytes, key_pem: bytes) -> None:
    """``load_cert_chain`` reads files only; the credentials live in memory, so go through a
    0600 temporary directory that is removed at once."""
    import tempfile
    from pathlib import Path

    from certs.files import write_secret_file

    with tempfile.TemporaryDirectory() as tmp:
        cert, key = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        write_secret_file(cert, cert_pem)
        write_secret_file(key, key_pem)
        ctx.load_cert_chain(cert, key)


def server_context(creds: NodeCredentials) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    _load_chain(ctx, creds.server_cert_pem, creds.server_key_pem)
    ctx.load_verify_locations(cadata=creds.ca_pem.decode())
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def client_context(creds: NodeCredentials) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    _load_chain(ctx, creds.client_cert_pem, creds.client_key_pem)
    ctx.load_verify_locations(cadata=creds.ca_pem.decode())
    return ctx


def _peer_node(ssl_object: ssl.SSLObject | None) -> str:
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    if not der:
        raise LinkError("no peer certificate")
    names = x509.load_der_x509_certificate(der).subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(names) != 1 or not isinstance(names[0].value, str):
        raise LinkError("the peer certificate names no node")
    return check_node_id(names[0].value)


# -- the link ---------------------------------------------------------------------------------------------

OnFrame = Callable[["Link", Frame], None]


class Link(asyncio.Protocol):
    """One established link (either side). ``peer`` is the other node's id: on the listening side the
    CN of the dialer's client certificate; on the dialing side the node it meant to reach, whose
    server certificate the cluster CA issued for exactly the address dialed."""

    def __init__(
        self,
        on_frame: OnFrame,
        *,
        dialed: str | None = None,
        on_ready: Callable[[Link], None] | None = None,
        on_lost: Callable[[Link], None] | None = None,
        screen_high_water: int = DEFAULT_SCREEN_HIGH_WATER,
        max_buffer: int = DEFAULT_MAX_BUFFER,
        read_buffer: int = DEFAULT_READ_BUFFER,
    ) -> None:
        self.on_frame = on_frame
        self.read_buffer = read_buffer
        self.on_ready = on_ready
        self.on_lost = on_lost
        self.screen_high_water = screen_high_water
        self.max_buffer = max_buffer
        self.dialed = dialed
        self.peer = ""
        self.decoder = FrameDecoder()
        self.transport: asyncio.Transport | None = None
        self.dropped_screens = 0
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        set_connection_read_buffer(transport, self.read_buffer)
        try:
            if self.dialed is not None:
                self.peer = check_node_id(self.dialed)
            else:
                self.peer = _peer_node(transport.get_extra_info("ssl_object"))
        except BrokerError as exc:  # LinkError, or InvalidSignal for a CN that is no node id
            log.warning("cluster link refused: %s", exc.message)
            transport.abort()
            return
        if not self.ready.done():
            self.ready.set_result(None)
        if self.on_ready is not None:
            self.on_ready(self)

    def data_received(self, data: bytes) -> None:
        try:
            frames = self.decoder.feed(data)
        except LinkError as exc:
            log.warning("cluster link from %s closed: %s", self.peer, exc.message)
            self.close()
            return
        for frame in frames:
            self.on_frame(self, frame)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(LinkError(f"link lost before it was ready: {exc}"))
        if self.on_lost is not None:
            self.on_lost(self)

    # sending

    def _buffered(self) -> int:
        return self.transport.get_write_buffer_size() if self.transport is not None else 0

    def send_text(self, session_id: str, payload: bytes) -> None:
        """A control message: always sent (the link closes rather than buffer past ``max_buffer``)."""
        self._write(encode_frame(FrameKind.TEXT, session_id, payload))

    def send_screen(self, session_id: str, payload: bytes) -> bool:
        """A screen update: False (dropped) while the send buffer is above ``screen_high_water``."""
        if self._buffered() > self.screen_high_water:
            self.dropped_screens += 1
            return False
        self._write(encode_frame(FrameKind.SCREEN, session_id, payload))
        return True

    def send_keyframe_request(self, session_id: str, key: bytes) -> None:
        """A viewer (``key``) of ``session_id`` fell behind on this side: the holder asks for a keyframe."""
        self._write(encode_frame(FrameKind.KEYFRAME, session_id, key))

    def send_end(self, session_id: str) -> None:
        self._write(encode_frame(FrameKind.END, session_id))

    def _write(self, data: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            raise LinkError(f"the link to {self.peer or '?'} is closed")
        if self._buffered() + len(data) > self.max_buffer:
            log.warning("cluster link to %s: send buffer over %d bytes, closing", self.peer, self.max_buffer)
            self.close()
            raise LinkError(f"the link to {self.peer} is overloaded")
        self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class LinkServer:
    """A process's listener for links from the other nodes."""

    def __init__(self, creds: NodeCredentials, on_frame: OnFrame) -> None:
        self.creds = creds
        self.on_frame = on_frame
        self.links: set[Link] = set()
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> int:
        loop = asyncio.get_running_loop()

        def factory() -> Link:
            # Counted once the handshake passed: a refused handshake never reaches connection_made.
            return Link(self.on_frame, on_ready=self.links.add, on_lost=self.links.discard)

        self._server = await loop.create_server(factory, host, port, ssl=server_context(self.creds))
        bound: int = self._server.sockets[0].getsockname()[1]
        return bound

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for link in list(self.links):
                link.close()
            await self._server.wait_closed()


async def dial(
    creds: NodeCredentials, node: str, host: str, port: int, on_frame: OnFrame, *, timeout: float = 5.0
) -> Link:
    """Open a link to ``node`` at ``host:port`` (from its heartbeat); the server must hold a
    certificate of the cluster CA for exactly that address."""
    loop = asyncio.get_running_loop()
    link_holder: list[Link] = []

    def factory() -> Link:
        link = Link(on_frame, dialed=node)
        link_holder.append(link)
        return link

    try:
        async with asyncio.timeout(timeout):
            await loop.create_connection(factory, host, port, ssl=client_context(creds), server_hostname=host)
    except (OSError, ssl.SSLError, TimeoutError) as exc:
        raise LinkError(f"no link to {host}:{port}: {exc}") from None
    link = link_holder[0]
    await link.ready
    return link
