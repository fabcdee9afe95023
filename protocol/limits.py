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
        Seconds between the client's heartbeats (a WebSocket Ping frame from the agent, a JSON
        ``ping`` from other clients), 300 s. Keeping home routers' NAT state alive is the job of
        TCP keepalive in the kernel every 60 s (:mod:`wire.keepalive`), which costs no process any
        CPU; this heartbeat only proves the peer's process is alive (docs/heartbeat.md).
    idle_timeout:
        Seconds without anything from the peer (message, Ping or Pong frame) after which the
        connection is closed: 660 s, two heartbeats plus a minute. Agents of earlier versions send a
        JSON ``ping`` every 20 s and are kept alive by it as before.
    """

    max_text_bytes: int = 64 * 1024
    max_binary_bytes: int = 8 * 1024 * 1024
    max_bad_messages: int = 10
    heartbeat_interval: float = 300.0
    idle_timeout: float = 660.0


DEFAULT_LIMITS = Limits()
