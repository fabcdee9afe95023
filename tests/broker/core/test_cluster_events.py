"""The session core's side of the cluster (docs/cluster.md §6a), on the fake clock: codes and the
第18条⑤ window decided by the shared database (the event carries the result), claims the database
decided, the queue of other processes, adoption of a session whose process died, and the hand-over
of claimed sessions when a cluster process stops."""

from __future__ import annotations

from broker.core import (
    AgentPeer,
    ClusterQueue,
    CodeClaimed,
    OperatorAttached,
    OperatorPeer,
    SessionAdopted,
    SessionCore,
    SharedRequest,
    Shutdown,
    Subscriber,
    SupportRequested,
    VoidCode,
)
from broker.policy import CodeAttemptGuard, parse_hours
from protocol.messages import (
    Claim,
    Claimed,
    Error,
    Queue,
    QueueEntry,
    SessionState,
    SupportCodeIssued,
    SupportRequest,
)
from protocol.session import Phase

from .driver import CoreDriver, Recorder
from .test_sessions import T0

ACTIVE = Subscriber(status="active")


def _driver() -> CoreDriver:
    core = SessionCore(hours=parse_hours("00:00-00:00"), code_guard=CodeAttemptGuard())
    return CoreDriver(core, now=T0)


def _agent() -> tuple[AgentPeer, Recorder]:
    out = Recorder()
    return AgentPeer(peer=out, serial="ab12", contract_id="C-1", machine_name="pc"), out


def _operator(name: str = "alice") -> tuple[OperatorPeer, Recorder]:
    out = Recorder()
    return OperatorPeer(
        peer=out, address="192.0.2.7", name=name, display_name=name.title(), role="operator"
    ), out


def _error(out: Recorder) -> Error:
    error = out.last(Error)
    assert isinstance(error, Error)
    return error


def _request(driver: CoreDriver, agent: AgentPeer, shared: SharedRequest) -> None:
    driver.feed(
        SupportRequested(
            agent=agent, message=SupportRequest(id="r"), subscriber=ACTIVE, recent_requests=0, shared=shared
        )
    )


def test_the_code_and_session_id_are_the_databases() -> None:
    driver = _driver()
    agent, out = _agent()
    _request(driver, agent, SharedRequest(limit_wait=None, session_id="sDbFirst1", code="424242"))
    issued = out.last(SupportCodeIssued)
    assert isinstance(issued, SupportCodeIssued)
    assert (issued.session_id, issued.code) == ("sDbFirst1", "424242")
    assert driver.core.by_code == {}  # claims go through the database, never this map
    # Ended unclaimed (the subscriber's PC asks again): the old code is voided on every process.
    _request(driver, agent, SharedRequest(limit_wait=None, session_id="sDbSecond", code="111111"))
    voided = [c for c in driver.commands if isinstance(c, VoidCode)]
    assert [c.session_id for c in voided] == ["sDbFirst1"]


def test_the_shared_window_refuses_with_its_wait() -> None:
    driver = _driver()
    agent, out = _agent()
    _request(driver, agent, SharedRequest(limit_wait=1234.0))
    error = out.last(Error)
    assert isinstance(error, Error)
    assert (error.code, error.retry_after) == ("rate_limited", 1234.0)
    assert driver.sessions == {}


def test_a_claim_the_database_refused_keeps_its_code_and_a_wrong_code_is_audited() -> None:
    driver = _driver()
    op, out = _operator()
    refusal = Error(code="code_invalid", message="no waiting request has this code")
    driver.feed(
        CodeClaimed(operator=op, message=Claim(id="c", code="000000"), session_id=None, refusal=refusal)
    )
    assert (_error(out).code, [e.action for e in driver.audit]) == ("code_invalid", ["claim.failed"])
    locked = Error(code="account_locked", message="locked", retry_after=900.0)
    driver.feed(
        CodeClaimed(operator=op, message=Claim(id="d", code="000000"), session_id=None, refusal=locked)
    )
    error = out.last(Error)
    assert isinstance(error, Error)
    assert (error.code, error.retry_after) == ("account_locked", 900.0)
    assert [e.action for e in driver.audit] == ["claim.failed"]  # a lockout is not a wrong code


def test_a_claim_the_database_granted_attaches_the_operator() -> None:
    driver = _driver()
    agent, _ = _agent()
    _request(driver, agent, SharedRequest(limit_wait=None, session_id="sDbFirst1", code="424242"))
    op, out = _operator()
    driver.feed(
        CodeClaimed(operator=op, message=Claim(id="c", code="424242"), session_id="sDbFirst1", node="node-1")
    )
    claimed = out.last(Claimed)
    assert isinstance(claimed, Claimed)
    assert claimed.session_id == "sDbFirst1"
    assert driver.sessions["sDbFirst1"].phase is Phase.CONSENT
    # A code of a request this process does not hold: refused, not attached.
    driver.feed(
        CodeClaimed(operator=op, message=Claim(id="e", code="555555"), session_id="sElsewher", node="node-2")
    )
    assert _error(out).code == "not_found"


def test_the_queue_shows_other_processes_requests_oldest_first() -> None:
    driver = _driver()
    op, out = _operator()
    driver.feed(OperatorAttached(operator=op))
    agent, _ = _agent()
    _request(driver, agent, SharedRequest(limit_wait=None, session_id="sHereOne1", code="424242"))
    elsewhere = QueueEntry(
        session_id="sThereOne", contract_id="C-9", machine_name="", created_at=T0 - 5, expires_at=T0 + 595
    )
    driver.feed(ClusterQueue(entries=(elsewhere,)))
    queue = out.last(Queue)
    assert isinstance(queue, Queue)
    assert [e.session_id for e in queue.requests] == ["sThereOne", "sHereOne1"]


def _adopted(agent: AgentPeer, *, granted: tuple[str, ...]) -> SessionAdopted:
    return SessionAdopted(
        agent=agent,
        message=SupportRequest(id="r", resume="sMovedOne"),
        contract_id="C-1",
        operator="alice",
        operator_display="Alice",
        started_at=T0 - 100,
        scopes=(("screen:view", "granted"), ("input:control", "denied")),
        granted=granted,
        decided=True,
    )


def test_an_adopted_session_has_the_receipts_scopes_and_waits_for_its_operator() -> None:
    driver = _driver()
    driver.rows["sMovedOne"] = {"operator": "alice", "started_at": T0 - 100}  # written by the dead process
    agent, out = _agent()
    driver.feed(_adopted(agent, granted=("screen:view",)))
    session = driver.sessions["sMovedOne"]
    assert session.phase is Phase.ACTIVE
    assert session.granted == frozenset({"screen:view"})
    assert session.agent is agent
    state = out.last(SessionState)
    assert isinstance(state, SessionState)
    assert state.scopes == {"screen:view": "granted", "input:control": "denied"}
    assert [e.action for e in driver.audit] == ["session.adopted", "session.agent_back"]
    # The operator does not re-link within the grace: the session ends (operator_lost).
    driver.advance(T0 + 31)
    assert driver.sessions.get("sMovedOne") is None or driver.sessions["sMovedOne"].phase is Phase.ENDED
    assert driver.rows["sMovedOne"]["ended_at"] == T0 + 30


def test_a_stopping_cluster_process_hands_claimed_sessions_over() -> None:
    driver = _driver()
    agent, _ = _agent()
    _request(driver, agent, SharedRequest(limit_wait=None, session_id="sDbFirst1", code="424242"))
    other, _ = _agent()
    other.serial, other.contract_id = "cd34", "C-2"
    _request(driver, other, SharedRequest(limit_wait=None, session_id="sWaitOne1", code="777777"))
    op, _ = _operator()
    driver.feed(
        CodeClaimed(operator=op, message=Claim(id="c", code="424242"), session_id="sDbFirst1", node="node-1")
    )
    driver.feed(Shutdown(handoff=True))
    actions = [(e.action, e.subject) for e in driver.audit if e.action in ("session.handoff", "session.end")]
    assert actions == [("session.handoff", "sDbFirst1"), ("session.end", "sWaitOne1")]
