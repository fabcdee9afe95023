"""TLS session resumption for the agent's reconnects, on Python 3.11's asyncio.

After a broker restart every agent reconnects at once and the storm is bound by full TLS
handshakes (docs/PERFORMANCE.md: ~350 a second per broker process). A resumed TLS 1.3 handshake
(RFC 8446 §2.2, PSK with (EC)DHE, so forward secrecy is kept) skips the broker's certificate
signature and its verification of the agent's certificate chain.

asyncio offers no way to hand a saved ``ssl.SSLSession`` to a new connection:
``loop.create_connection(ssl=ctx)`` builds its ``SSLObject`` with ``ctx.wrap_bio(…)`` and passes
no ``session`` (CPython 3.11 ``asyncio/sslproto.py``; no later version adds one), and an
``SSLSocket`` cannot be handed to asyncio at all. ``SSLContext.sslobject_class`` (documented,
since 3.7) is the seam: the context builds every ``SSLObject`` through that class's ``_create``,
so a subclass offers the last session here. ``_create`` is private API of the ``ssl`` module; if a
future Python changes it, :func:`enable_resumption` falls back to full handshakes (it checks the
signature first), never to a failed connection.

Safe by construction: OpenSSL only resumes a session with a server that holds the ticket's key
(every broker process of one data dir shares it, changed daily: ``broker.ticketkeys``) and the
client still verifies nothing less (the session carries the verified server certificate). A broker
that cannot decrypt the ticket (another deployment, a key changed since, ``--tls-ticket-period 0``)
simply does a full handshake.
"""

from __future__ import annotations

import inspect
import logging
import ssl
from typing import Any

log = logging.getLogger("agent.tls")


class SessionCache:
    """The agent's last TLS session with the broker (one broker URL per agent)."""

    __slots__ = ("offered", "resumed", "session")

    def __init__(self) -> None:
        self.session: ssl.SSLSession | None = None
        self.offered = 0
        self.resumed = 0

    def remember(self, ssl_object: ssl.SSLObject | None) -> None:
        """Keep the connection's session for the next connect. With TLS 1.3 the ticket arrives
        after the handshake, so call this once the broker has answered (its ``hello``)."""
        if ssl_object is None:
            return
        if ssl_object.session_reused:
            self.resumed += 1
        session = ssl_object.session
        if session is not None and session.has_ticket:
            self.session = session


def enable_resumption(ctx: ssl.SSLContext, cache: SessionCache) -> bool:
    """Make every connection made with ``ctx`` offer ``cache.session``; False if not possible."""
    base = ctx.sslobject_class
    create = getattr(base, "_create", None)
    if create is None or "session" not in inspect.signature(create).parameters:
        log.info("TLS session resumption not available on this Python")
        return False

    class ResumingSSLObject(base):  # type: ignore[misc, valid-type]
        @classmethod
        def _create(cls, *args: Any, **kwargs: Any) -> ssl.SSLObject:
            if kwargs.get("session") is None and not kwargs.get("server_side") and cache.session is not None:
                kwargs["session"] = cache.session
                cache.offered += 1
            obj: ssl.SSLObject = super()._create(*args, **kwargs)
            return obj

    ctx.sslobject_class = ResumingSSLObject
    return True
