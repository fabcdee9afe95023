"""One TLS session-ticket key for every broker process that shares the data dir, changed once a period.

Why (docs/cluster.md §5b, docs/PERFORMANCE.md): after a ``kill -9``, a restart or an upgrade, the
agents of the lost process reconnect to the others at once, and the survivors' CPU goes first to
full TLS handshakes. With one ticket key for the cluster, an agent's ticket from any process
resumes at any other (``agent.tls_session``): half the broker's handshake cost, and half the
agent's. The session carries the agent's certificate; the broker still admits it only by that
certificate's record in the database (revoked, expired, contract ended: refused as before,
:mod:`broker.admission`).

The secret: 32 random bytes in ``<data dir>/tls-ticket.key`` (0600, created atomically on first
start, like ``audit.key``; the processes of a cluster already share the data dir). The keys of
period *n* (``BrokerConfig.tls_ticket_period``, 24 hours by default; every process computes *n*
from its clock, so they change together) are HKDF-SHA256(secret, "…tls ticket v1 n"), and a ticket
lives one period: a ticket from the previous period is not accepted any more (OpenSSL takes one
key at a time), and that agent makes one full handshake. Stolen keys would let someone who also
captured a ticket resume as that agent until the period ends, which the data dir's CA key would let
him do anyway; the traffic keys stay forward-secret (TLS 1.3 resumption with ECDHE).
``tls_ticket_period = 0`` keeps OpenSSL's own random keys per process (the behaviour before).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from certs import read_or_create_secret
from protocol.errors import ErrorCode
from wire.tls_tickets import TICKET_KEYS_BYTES, install_ticket_keys, set_ticket_lifetime

from .errors import BrokerError

log = logging.getLogger("broker")

TICKET_SECRET_FILE: Final = "tls-ticket.key"  # noqa: S105 (a file name)
SECRET_BYTES: Final = 32
MAX_PERIOD: Final = 7 * 86_400.0
"""A ticket may not live longer (RFC 8446 §4.6.1)."""


class TicketKeyError(BrokerError):
    """The ticket secret file exists but cannot be read or is malformed."""

    code = ErrorCode.INTERNAL


@dataclass(frozen=True, slots=True)
class TicketKeys:
    secret: bytes
    period: float
    """Seconds each key is used, and a ticket's lifetime."""

    def index(self, now: float) -> int:
        return int(now // self.period)

    def keys(self, now: float) -> bytes:
        """Key name, HMAC key and AES key of the period holding ``now``."""
        info = b"isp-remote-support tls ticket v1 %d" % self.index(now)
        return HKDF(algorithm=hashes.SHA256(), length=TICKET_KEYS_BYTES, salt=None, info=info).derive(
            self.secret
        )

    def until_next(self, now: float) -> float:
        """Seconds from ``now`` to the next change of key."""
        return (self.index(now) + 1) * self.period - now


def load_ticket_keys(data_dir: Path, period: float) -> TicketKeys | None:
    """The cluster's ticket keys from ``data_dir`` (creating the secret on first start); None
    when ``period`` is 0 (per-process keys)."""
    if period == 0:
        return None
    if not 1.0 <= period <= MAX_PERIOD:
        raise ValueError("tls_ticket_period is 0 (off) or 1 s to 7 days")
    path = data_dir / TICKET_SECRET_FILE
    try:
        secret, _ = read_or_create_secret(path, SECRET_BYTES)
    except OSError as exc:
        raise TicketKeyError(f"cannot read the TLS ticket key {path}: {exc.strerror}") from None
    except ValueError:
        raise TicketKeyError(f"the TLS ticket key {path} is malformed") from None
    return TicketKeys(secret, period)


def share_tickets(ctx: ssl.SSLContext, keys: TicketKeys, now: float) -> bool:
    """Install the period's keys and the ticket lifetime on the listener's context; False (and a
    log line) where this Python cannot: the process then keeps keys of its own."""
    if install_ticket_keys(ctx, keys.keys(now)) and set_ticket_lifetime(ctx, max(1, int(keys.period))):
        return True
    log.warning("TLS tickets are not shared with the other processes: agents resume only here")
    return False


async def rotate_ticket_keys(ctx: ssl.SSLContext, keys: TicketKeys, clock: Callable[[], float]) -> None:
    """Install each new period's keys when it begins, until cancelled."""
    while True:
        await asyncio.sleep(max(1.0, keys.until_next(clock()) + 0.01))
        install_ticket_keys(ctx, keys.keys(clock()))
