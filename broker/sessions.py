"""Old home of the session manager; the sessions are now the pure core :mod:`broker.core` run by
:mod:`broker.session_host` (docs/session-core.md). The names other modules import stay here."""

from __future__ import annotations

from .core.state import AgentPeer, OperatorPeer, Session, SessionRules

__all__ = ["AgentPeer", "OperatorPeer", "Session", "SessionRules"]
