"""``ClusterPair``: an :class:`~tests.pair.AgentBrokerPair` whose broker process can die and whose
agent then resumes on another process of a cluster, which adopts the session from the database
(docs/cluster.md §6a) — the pure half of ``tests/e2e/test_cluster_failover.py``, on the fake clock.

The "database" is the dead core's session rows and audit (``CoreDriver.rows``/``audit``); the new
process reads them as the host does (``ClusterReads._adopt``: the row, the scope receipts in order
through :func:`broker.session_cluster.scopes_after`, the contract) and feeds ``SessionAdopted``.
"""

from __future__ import annotations

from agent.core import inputs
from broker.core import AgentPeer, SessionAdopted
from broker.session_cluster import open_question, scopes_after
from protocol.messages import Message, SupportRequest
from tests.pair import CONTRACT, AgentBrokerPair, OperatorEndpoint

__all__ = ["ClusterPair", "claimed_in_cluster"]


class ClusterPair(AgentBrokerPair):
    adopting = False
    """Set by :meth:`move_broker`: a resume the broker does not hold is adopted."""

    def move_broker(self) -> None:
        """The process holding the session dies (``kill -9``: it writes nothing more, its memory is
        gone) and the agent's connection breaks; a fresh core of another process on the same rows and
        audit. Call :meth:`connect` for the reconnect; operators re-link with a new :meth:`operator`
        and ``Watch``."""
        old = self.broker
        if self.link is not None:
            self.link = None
            if self.finished is None:
                self._agent_did(self.agent.handle(inputs.Disconnected(), self.now))
        self._to_broker.clear()
        self.broker = self._new_broker()
        self.broker.audit, self.broker.rows = old.audit, old.rows
        self.adopting = True

    def _to_broker_core(self, link: AgentPeer, message: Message) -> None:
        if (
            self.adopting
            and isinstance(message, SupportRequest)
            and message.resume is not None
            and message.resume not in self.broker.sessions
            and message.resume in self.broker.rows
            and "ended_at" not in self.broker.rows[message.resume]
        ):
            self.broker.feed(self._adopted(link, message), self.now)
        else:
            super()._to_broker_core(link, message)

    def _adopted(self, agent: AgentPeer, msg: SupportRequest) -> SessionAdopted:
        session_id = msg.resume or ""
        row = self.broker.rows[session_id]
        receipts = [
            (str(e.details["decision"]), tuple(e.details["granted"]), tuple(e.details["denied"]))
            for e in self.broker.audit
            if e.action == "consent.receipt" and e.subject == session_id and "viewer" not in e.details
        ]
        scopes, granted = scopes_after(receipts)
        return SessionAdopted(
            agent=agent,
            message=msg,
            contract_id=CONTRACT,
            operator=str(row["operator"]),
            operator_display=str(row["operator"]),
            started_at=float(row["started_at"]),
            scopes=scopes,
            granted=granted,
            decided=bool(receipts),
            question=open_question(
                (e.action, e.details) for e in self.broker.audit if e.subject == session_id
            ),
            subscriber=self.broker.subscribers.get(CONTRACT),
        )


def claimed_in_cluster(*scopes: str, **kw: object) -> tuple[ClusterPair, OperatorEndpoint]:
    """A :class:`ClusterPair` whose operator ("op") claimed with ``scopes``."""
    from protocol.messages import Claim, Claimed

    pair = ClusterPair(**kw)  # type: ignore[arg-type]
    op = pair.operator()
    code = pair.request()
    answers = [m for m in op.send(Claim(id="c1", code=code, scopes=scopes)) if isinstance(m, Claimed)]
    assert [m.session_id for m in answers] == [pair.session_id]
    return pair, op
