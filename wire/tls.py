"""What the lean server reads from asyncio's TLS transport, and what it lets go of.

asyncio keeps the peer certificate as a dict (``get_extra_info("peercert")``, about 1.2 KiB with
our client certificates) for the life of the connection, though the broker needs only its serial
once, at connect. OpenSSL keeps the certificate itself, so nothing is lost by dropping the dict.
Relies on the TLS transport's ``_ssl_protocol._extra`` (CPython 3.11-3.13); on anything else it
does nothing.
"""

from __future__ import annotations

import asyncio


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
