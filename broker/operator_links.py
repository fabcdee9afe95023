"""Every live operator connection, so a login that ends ends all of them at once (issue 11).

A token is a bearer credential: one operator may have it open in several tabs or clients. When
it stops being valid — logout on one connection, expiry, the account locked or disabled by an
admin — every connection holding it must stop receiving screens and chat and be closed, not only
the one that happened to send the next message. Two paths do it:

* in this process, at once: :meth:`OperatorLinks.end_token` after a logout;
* for what another process changes (the admin CLI locks or disables the account, revoking its
  tokens in the shared database) and for expiry: :meth:`OperatorLinks.check`, called by the
  server every ``operator_check_interval`` seconds (0.5 s by default, so ≤ 1 s end to end). It
  costs one primary-key lookup per distinct live token.

Ending a connection detaches the operator from every session first (no frame is routed to it
any more), then sends ``auth_required`` and closes the link with the policy close code.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from protocol import CLOSE_POLICY
from protocol.errors import ErrorCode
from protocol.messages import Error, Message

from .core import OperatorPeer
from .errors import RefusedError

log = logging.getLogger("broker.operators")


class Closable(Protocol):
    def send(self, message: Message) -> None: ...
    def close(self, code: int, reason: str) -> object: ...


class Authenticator(Protocol):
    def authenticate(self, token: str, *, now: float) -> object: ...


class Detacher(Protocol):
    """What the links need of the sessions: take an operator connection off every session
    (:meth:`broker.session_host.SessionHost.operator_detached`)."""

    def operator_detached(self, op: OperatorPeer) -> None: ...


class OperatorLinks:
    def __init__(self, sessions: Detacher) -> None:
        self.sessions = sessions
        self.refused: Callable[[ErrorCode], None] | None = None
        """Counts each refusal sent (the server's ``metrics.count_refusal``)."""
        self._links: dict[OperatorPeer, Closable] = {}

    def __len__(self) -> int:
        return len(self._links)

    def register(self, op: OperatorPeer, link: Closable) -> None:
        self._links[op] = link

    def unregister(self, op: OperatorPeer) -> None:
        self._links.pop(op, None)

    def tokens(self) -> set[str]:
        """The tokens of the live connections (the identity cache re-reads these, broker.operators)."""
        return {op.token for op in self._links if op.token is not None}

    def end_token(self, token: str, now: float, *, reason: str, keep: OperatorPeer | None = None) -> int:
        """End every connection authenticated with ``token`` (but ``keep``); returns how many."""
        return self._end(lambda op: op.token == token and op is not keep, now, reason)

    def check(self, accounts: Authenticator, now: float) -> int:
        """End the connections whose token expired or was revoked meanwhile (by any process)."""
        bad: set[str] = set()
        for token in {op.token for op in self._links if op.token is not None}:
            try:
                accounts.authenticate(token, now=now)
            except RefusedError:
                bad.add(token)
        expired = {
            op.token
            for op in self._links
            if op.token is not None and op.expires_at is not None and now >= op.expires_at
        }
        bad |= expired
        if not bad:
            return 0
        return self._end(lambda op: op.token in bad, now, "the login ended (expired, locked or disabled)")

    def _end(self, which: Callable[[OperatorPeer], bool], now: float, reason: str) -> int:
        ended = [(op, link) for op, link in self._links.items() if which(op)]
        for op, link in ended:
            name = op.name
            self.sessions.operator_detached(op)
            op.name = op.token = None
            op.expires_at = None
            link.send(Error(code=ErrorCode.AUTH_REQUIRED.value, message=f"{reason}: log in again"))
            if self.refused is not None:
                self.refused(ErrorCode.AUTH_REQUIRED)
            link.close(CLOSE_POLICY, ErrorCode.AUTH_REQUIRED.value)
            self._links.pop(op, None)
            log.info("closed an operator connection of %s: %s", name, reason)
        return len(ended)
