"""The broker's TLS profile, what the lean server reads from asyncio's TLS transport, and what it
lets go of.

asyncio keeps the peer certificate as a dict (``get_extra_info("peercert")``, about 1.2 KiB with
our client certificates) for the life of the connection, though the broker needs only its serial
once, at connect. OpenSSL keeps the certificate itself, so nothing is lost by dropping the dict.
Relies on the TLS transport's ``_ssl_protocol._extra`` (CPython 3.11-3.13); on anything else it
does nothing.
"""

from __future__ import annotations

import asyncio
import ssl

MOZILLA_INTERMEDIATE_TLS12_CIPHERS = ":".join(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    )
)
"""TLS 1.2 suites of Mozilla's "intermediate" server profile (version 5.7), without the DHE ones (we
load no DH parameters): forward secret and AEAD only; no CBC suite (LUCKY13), no SHA-1 MAC. TLS 1.3
suites are all AEAD and stay OpenSSL's default."""


def harden_server_context(ctx: ssl.SSLContext) -> ssl.SSLContext:
    """Apply the broker's TLS profile (Mozilla "intermediate", docs/hardening.md) to ``ctx``:
    TLS 1.2 and 1.3 only, AEAD suites only, no compression or renegotiation; returns ``ctx``."""
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(MOZILLA_INTERMEDIATE_TLS12_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    return ctx


def peer_serial(transport: asyncio.BaseTransport) -> str | None:
    """Serial (lower-case hex) of the verified client certificate, or None when none was sent."""
    peercert = transport.get_extra_info("peercert")
    if not peercert or "serialNumber" not in peercert:
        return None
    return format(int(peercert["serialNumber"], 16), "x")


def forget_peercert(transport: asyncio.BaseTransport) -> None:
    protocol = getattr(transport, "_ssl_protocol", None)
    extra = getattr(protocol, "_extra", None)
    if isinstance(extra, dict):
        extra.pop("peercert", None)


def session_resumed(transport: asyncio.BaseTransport) -> bool:
    """Whether the connection's TLS handshake resumed an earlier session (a ticket)."""
    ssl_object = transport.get_extra_info("ssl_object")
    return bool(getattr(ssl_object, "session_reused", False))
