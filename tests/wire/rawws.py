"""A hand-made WebSocket client over real TLS, for hostile and conformance tests.

It writes frames byte by byte as RFC 6455 §5.2 lays them out, so a test can send what a well-behaved
library never would: invalid UTF-8, reserved bits and opcodes, unmasked frames, oversize or
fragmented control frames, a header announcing 8 MiB that never comes, a PING flood that never reads.
"""

from __future__ import annotations

import asyncio
import base64
import os
import ssl
import struct
from dataclasses import dataclass

TEXT, BINARY, CONT, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bool = True,
    length: int | None = None,
) -> bytes:
    """One frame; ``length`` announces a payload length other than ``len(payload)`` (a frame that
    is only begun); ``rsv`` is the three reserved bits (0-7)."""
    size = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    bit = 0x80 if mask else 0
    if size < 126:
        head += bytes([bit | size])
    elif size < 1 << 16:
        head += bytes([bit | 126]) + struct.pack("!H", size)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", size)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return struct.pack("!H", code) + reason


@dataclass
class Frame:
    fin: bool
    opcode: int
    payload: bytes

    @property
    def close_code(self) -> int | None:
        return struct.unpack("!H", self.payload[:2])[0] if len(self.payload) >= 2 else None


class RawWebSocket:
    """``await RawWebSocket.open(port, path, ctx)``; then :meth:`send`, :meth:`recv`, :meth:`closed_with`."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(
        cls, port: int, path: str, ctx: ssl.SSLContext, *, read_limit: int = 1 << 16
    ) -> RawWebSocket:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                "127.0.0.1", port, ssl=ctx, server_hostname="127.0.0.1", limit=read_limit
            ),
            10,
        )
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await asyncio.wait_for(self.writer.drain(), 10)

    async def recv(self, timeout: float = 10.0) -> Frame:
        """The next frame (EOF raises ``asyncio.IncompleteReadError``)."""

        async def read() -> Frame:
            b0, b1 = await self.reader.readexactly(2)
            size = b1 & 0x7F
            if size == 126:
                size = struct.unpack("!H", await self.reader.readexactly(2))[0]
            elif size == 127:
                size = struct.unpack("!Q", await self.reader.readexactly(8))[0]
            assert not b1 & 0x80, "a server never masks its frames"
            return Frame(bool(b0 & 0x80), b0 & 0x0F, await self.reader.readexactly(size))

        return await asyncio.wait_for(read(), timeout)

    async def recv_json_text(self, timeout: float = 10.0) -> str:
        """The next data frame's text, skipping control frames."""
        while True:
            got = await self.recv(timeout)
            if got.opcode == TEXT:
                return got.payload.decode()
            assert got.opcode in (PING, PONG), got

    async def closed_with(self, timeout: float = 10.0) -> int | None:
        """Read until the server's close frame: its code (None when the connection ended without one)."""
        try:
            while True:
                got = await self.recv(timeout)
                if got.opcode == CLOSE:
                    return got.close_code if got.payload else 1005
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            return None

    async def at_eof(self, timeout: float = 10.0) -> bool:
        """True when the server closed the TCP connection within ``timeout`` (after any frames)."""
        try:
            while await asyncio.wait_for(self.reader.read(65536), timeout):
                pass
        except (ConnectionError, ssl.SSLError):
            pass
        return True

    def abort(self) -> None:
        self.writer.transport.abort()
