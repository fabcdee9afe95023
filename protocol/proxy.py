"""PROXY protocol version 2: the header a TCP load balancer (HAProxy ``send-proxy-v2``) puts before the
client's bytes, so that the broker behind it sees the subscriber's address instead of the balancer's
(per-address caps and limits, audit; docs/cluster.md §5, wiring step 7).

Pure (no I/O): :func:`parse_proxy_header` takes the bytes received so far and answers ``None`` (need
more), a :class:`ProxyHeader` (with how many bytes it took: the rest is the client's TLS handshake), or
raises a :class:`RemoteProtocolError` with a stable code. Only version 2 (binary) is accepted; the
text version 1 and anything else are refused. The specification is HAProxy's
``doc/proxy-protocol.txt`` ("The PROXY protocol, Versions 1 & 2"):

- 12-byte signature ``\\r\\n\\r\\n\\0\\r\\nQUIT\\n``; byte 13: version (high nibble, 2) and command
  (low nibble: 0 LOCAL, 1 PROXY); byte 14: address family (high nibble: 0 UNSPEC, 1 INET, 2 INET6,
  3 UNIX) and transport (low nibble: 0 UNSPEC, 1 STREAM, 2 DGRAM); bytes 15–16: length of the rest,
  big-endian.
- Addresses: INET 4+4+2+2 bytes, INET6 16+16+2+2, UNIX 108+108; then TLVs (type, 2-byte length,
  value) to the end of the declared length.
- LOCAL (the balancer's own health checks) and UNSPEC/UNIX: the receiver uses the connection's own
  addresses (``source`` is ``None``). A datagram transport is refused (this is a TCP listener).

Hostile input: the signature is checked byte by byte as bytes arrive (a peer that is not a balancer is
refused after its first byte, not after 16); the declared length is bounded (:data:`MAX_HEADER_BYTES`)
before anything is buffered; TLVs must tile the rest exactly.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import Final, Literal

from .errors import ErrorCode, MalformedMessage, MessageTooLarge, UnsupportedVersion

__all__ = [
    "MAX_HEADER_BYTES",
    "SIGNATURE",
    "ProxyHeader",
    "encode_proxy_header",
    "parse_proxy_header",
]

#: The first 12 bytes of every version 2 header.
SIGNATURE: Final = b"\r\n\r\n\x00\r\nQUIT\n"

_FIXED: Final = struct.Struct(">12sBBH")
FIXED_BYTES: Final = _FIXED.size  # 16

#: Largest header accepted, fixed part included: IPv6 addresses (36) plus 476 bytes of TLVs. HAProxy
#: sends none unless ``proxy-v2-options`` asks, and with TLS passed through it has nothing (no SNI
#: it terminated, no client certificate) worth sending; the format allows 16 + 65,535.
MAX_HEADER_BYTES: Final = 16 + 512

_FAMILY_LENGTHS: Final = {0x1: 12, 0x2: 36, 0x3: 216}
_INET: Final = struct.Struct(">4s4sHH")
_INET6: Final = struct.Struct(">16s16sHH")


@dataclass(frozen=True, slots=True, kw_only=True)
class ProxyHeader:
    command: Literal["local", "proxy"]
    """``local``: the balancer speaks for itself (health check); ``proxy``: it relays a client."""
    source: tuple[str, int] | None
    """The client's address and port; ``None``: use the connection's own (LOCAL, UNSPEC, UNIX)."""
    destination: tuple[str, int] | None
    """The address the client connected to (the balancer's front door)."""
    length: int
    """Bytes the header took; what follows belongs to the client."""
    tlvs: tuple[tuple[int, bytes], ...] = ()
    """Type-length-value extensions, in order (not interpreted here)."""


def parse_proxy_header(
    data: bytes | bytearray | memoryview, *, max_bytes: int = MAX_HEADER_BYTES
) -> ProxyHeader | None:
    """The header at the start of ``data``; ``None`` while it is incomplete. Raises
    :class:`~.errors.MalformedMessage` (``malformed``) for anything that is not a version 2 header,
    :class:`~.errors.UnsupportedVersion` for another version, :class:`~.errors.MessageTooLarge`
    (``too_large``) for a declared length over ``max_bytes`` — each as soon as the bytes show it."""
    view = bytes(data[: max(FIXED_BYTES, max_bytes)])
    head = view[: len(SIGNATURE)]
    if head != SIGNATURE[: len(head)]:
        raise MalformedMessage("not a PROXY protocol v2 header", code=ErrorCode.MALFORMED)
    if len(view) < FIXED_BYTES:
        return None
    _, ver_cmd, fam, rest = _FIXED.unpack_from(view)
    if ver_cmd >> 4 != 0x2:
        raise UnsupportedVersion(f"PROXY protocol version {ver_cmd >> 4} (only 2 is read)")
    command = ver_cmd & 0x0F
    if command not in (0x0, 0x1):
        raise MalformedMessage(f"unknown PROXY command {command}")
    total = FIXED_BYTES + rest
    if total > max_bytes:
        raise MessageTooLarge(f"a PROXY header of {total} bytes is over {max_bytes}")
    if len(view) < total:
        return None
    body = view[FIXED_BYTES:total]
    family, transport = fam >> 4, fam & 0x0F
    if family > 0x3 or transport > 0x2:
        raise MalformedMessage(f"unknown PROXY address family/transport 0x{fam:02x}")
    if transport == 0x2:
        raise MalformedMessage("a datagram PROXY header on a stream listener")
    addr_len = _FAMILY_LENGTHS.get(family, 0)
    if len(body) < addr_len:
        raise MalformedMessage(f"{len(body)} bytes cannot hold the addresses (need {addr_len})")
    tlvs = _parse_tlvs(body[addr_len:])
    if command == 0x0:
        return ProxyHeader(command="local", source=None, destination=None, length=total, tlvs=tlvs)
    source = destination = None
    if family == 0x1:
        src, dst, sport, dport = _INET.unpack_from(body)
        source = (str(ipaddress.IPv4Address(src)), sport)
        destination = (str(ipaddress.IPv4Address(dst)), dport)
    elif family == 0x2:
        src, dst, sport, dport = _INET6.unpack_from(body)
        source = (_ipv6(src), sport)
        destination = (_ipv6(dst), dport)
    return ProxyHeader(command="proxy", source=source, destination=destination, length=total, tlvs=tlvs)


def _ipv6(packed: bytes) -> str:
    """An IPv4-mapped IPv6 address (``::ffff:a.b.c.d``, what a dual-stack balancer sends for an IPv4
    client) as the IPv4 address, so that limits count one client under one name."""
    address = ipaddress.IPv6Address(packed)
    return str(address.ipv4_mapped) if address.ipv4_mapped is not None else str(address)


def _parse_tlvs(data: bytes) -> tuple[tuple[int, bytes], ...]:
    out: list[tuple[int, bytes]] = []
    at = 0
    while at < len(data):
        if len(data) - at < 3:
            raise MalformedMessage("a truncated PROXY TLV header")
        kind, size = data[at], int.from_bytes(data[at + 1 : at + 3], "big")
        if at + 3 + size > len(data):
            raise MalformedMessage("a PROXY TLV runs past the header")
        out.append((kind, data[at + 3 : at + 3 + size]))
        at += 3 + size
    return tuple(out)


def encode_proxy_header(
    source: tuple[str, int] | None,
    destination: tuple[str, int] | None = None,
    *,
    tlvs: tuple[tuple[int, bytes], ...] = (),
) -> bytes:
    """A version 2 header (tests, and a balancer written in Python): PROXY with both addresses of one
    family, or LOCAL when ``source`` is ``None``."""
    tail = b"".join(bytes([kind]) + len(value).to_bytes(2, "big") + value for kind, value in tlvs)
    if source is None:
        return _FIXED.pack(SIGNATURE, 0x20, 0x00, len(tail)) + tail
    destination = destination or (("::" if ":" in source[0] else "0.0.0.0"), 0)  # noqa: S104
    src, dst = ipaddress.ip_address(source[0]), ipaddress.ip_address(destination[0])
    if src.version != dst.version:
        raise ValueError("source and destination must be of one address family")
    if src.version == 4:
        body = _INET.pack(src.packed, dst.packed, source[1], destination[1])
        fam = 0x11
    else:
        body = _INET6.pack(src.packed, dst.packed, source[1], destination[1])
        fam = 0x21
    return _FIXED.pack(SIGNATURE, 0x21, fam, len(body) + len(tail)) + body + tail
