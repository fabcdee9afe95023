"""Process-wide tuning of the broker's per-connection memory (DESIGN §7, docs/PERFORMANCE.md).

Idle agents are the broker's main memory cost. asyncio's TLS transport gives every connection a
read buffer of ``asyncio.sslproto.SSLProtocol.max_size`` bytes (256 KiB in CPython 3.11-3.13),
allocated and zeroed when the connection is made, so 10,000 idle agents hold 2.5 GiB of buffers
that are empty nearly all the time. The buffer is only the chunk read from the socket per call
(the TLS records are reassembled by OpenSSL), so idle and control-only connections do well with
2 KiB, and a connection that starts streaming screen updates is given a large one again
(:func:`set_connection_read_buffer`); ``bench`` measured no loss of relay throughput that way and
about 250 KiB less per idle connection (see docs/PERFORMANCE.md for the figures of this machine).
2 KiB rather than 4: 2 KiB less per idle agent (42.6 → 40.6 KiB at 10,000 agents), for about 0.2 %
of a core more per 10,000 idle agents; a whole TLS 1.3 handshake flight of an agent (P-256
certificate) still arrives in one read.

Everything here is process-wide (a class attribute, the interpreter's switch interval), so it is
applied once, before the listener starts, by ``python -m broker serve`` (``--tls-read-buffer``)
or by the benchmark's launcher.
"""

from __future__ import annotations

import asyncio.sslproto
import sys
from dataclasses import dataclass

KiB = 1024

DEFAULT_TLS_READ_BUFFER = 2 * KiB
"""Enough for an idle agent's heartbeat, its handshake flights and a usual control message in one read."""

MIN_TLS_READ_BUFFER = 1 * KiB
MAX_TLS_READ_BUFFER = 1024 * KiB


def tls_read_buffer() -> int:
    """The TLS read buffer size new connections of this process get, in bytes."""
    return int(asyncio.sslproto.SSLProtocol.max_size)


def set_tls_read_buffer(size: int = DEFAULT_TLS_READ_BUFFER) -> int:
    """Set the per-connection TLS read buffer for connections made from now on; returns the old size.

    Sizes outside 1 KiB-1 MiB are refused with ``ValueError``: smaller ones cost a system call per
    few KiB of a screen update, larger ones only cost memory.
    """
    if not MIN_TLS_READ_BUFFER <= size <= MAX_TLS_READ_BUFFER:
        raise ValueError(
            f"TLS read buffer must be {MIN_TLS_READ_BUFFER}-{MAX_TLS_READ_BUFFER} bytes, not {size}"
        )
    old = tls_read_buffer()
    asyncio.sslproto.SSLProtocol.max_size = size  # a documented class attribute
    return old


def set_connection_read_buffer(transport: asyncio.BaseTransport, size: int) -> bool:
    """Give one live TLS connection a different read buffer (e.g. an agent whose session starts
    streaming screen updates), leaving every idle one small; returns False for a non-TLS transport.

    asyncio grows the buffer on the next read when ``max_size`` exceeds it (``SSLProtocol.get_buffer``);
    the instance attribute shadows the class default. Relies on the TLS transport's
    ``_ssl_protocol`` (CPython 3.11-3.13).
    """
    if not MIN_TLS_READ_BUFFER <= size <= MAX_TLS_READ_BUFFER:
        raise ValueError(
            f"TLS read buffer must be {MIN_TLS_READ_BUFFER}-{MAX_TLS_READ_BUFFER} bytes, not {size}"
        )
    protocol = getattr(transport, "_ssl_protocol", None)
    if not isinstance(protocol, asyncio.sslproto.SSLProtocol):
        return False
    protocol.max_size = size  # type: ignore[misc]  # shadows the class default for this connection
    return True


@dataclass(frozen=True, slots=True, kw_only=True)
class Tuning:
    """What :func:`apply` sets; ``None`` leaves the interpreter's default."""

    tls_read_buffer: int | None = DEFAULT_TLS_READ_BUFFER
    """Bytes of TLS read buffer per connection (asyncio's default: 256 KiB)."""

    switch_interval: float | None = None
    """``sys.setswitchinterval`` in seconds. The broker runs one event loop thread (argon2 and
    SQLite work in a few worker threads), so this only matters while a login hashes; measured
    in docs/PERFORMANCE.md, not changed by default."""


def apply(tuning: Tuning | None = None) -> Tuning:
    """Apply ``tuning`` (default: :class:`Tuning()`) to this process; returns what was in force before."""
    tuning = tuning or Tuning()
    before = Tuning(tls_read_buffer=tls_read_buffer(), switch_interval=sys.getswitchinterval())
    if tuning.tls_read_buffer is not None:
        set_tls_read_buffer(tuning.tls_read_buffer)
    if tuning.switch_interval is not None:
        sys.setswitchinterval(tuning.switch_interval)
    return before
