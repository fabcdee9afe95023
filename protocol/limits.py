"""Named limits of the protocol, with their defaults in one place.

Every input from the network is hostile until validated (DESIGN §4): sizes are checked before
parsing, string fields carry a maximum length in their type, and a connection that keeps sending
bad messages is closed. Adapters pass a :class:`Limits` to the cores; tests pass small ones.
"""

from __future__ import annotations

from dataclasses import dataclass

PROTOCOL_VERSION = 1
"""The only version this code speaks. ``hello`` offers a list; the broker picks the highest common."""

SUPPORTED_VERSIONS: tuple[int, ...] = (1,)

MAX_INPUT_TEXT = 256
"""Longest ``text`` of one ``input`` event (a pasted line, not a document), in characters: the wire
type of ``InputEvent.text``; the agent's injector takes that same type (one definition)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Per-connection limits.

    max_text_bytes:
        Largest JSON control message accepted (64 KiB). A CSR is about 0.5 KiB and a consent
        receipt under 2 KiB; an inventory report stays well below this. The broker's listener also
        refuses any larger WebSocket message (1009, from the frame header) until the peer is
        authenticated (docs/hardening.md).
    max_binary_bytes:
        Largest binary frame (screen update), 8 MiB: a full 4K frame as PNG fits.
    max_bad_messages:
        The bad message that closes the connection: each one before it gets an ``error`` and
        the connection stays; with the default 10, nine are tolerated.
    heartbeat_interval:
        Seconds between the client's ``ping`` messages.
    idle_timeout:
        Seconds without any message from the peer after which the connection is closed.
    """

    max_text_bytes: int = 64 * 1024
    max_binary_bytes: int = 8 * 1024 * 1024
    max_bad_messages: int = 10
    heartbeat_interval: float = 20.0
    idle_timeout: float = 65.0


DEFAULT_LIMITS = Limits()
