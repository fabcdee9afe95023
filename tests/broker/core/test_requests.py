"""Support requests and claims in the session core (fake clock, no store): refusals by rule and
their aggregated audit (第18条, 第20条/第21条, 別記1, 第18条⑤), codes single use, expiry and the
code-guess lockout, consent per scope with default deny."""

from __future__ import annotations

from broker.core import AgentPeer, OperatorPeer, SessionCore, SessionRules, Subscriber, SupportRequested
from broker.policy import CodeAttemptGuard, parse_hours
from protocol.messages import Claim, Error, SupportCodeIssued, SupportRequest

from .driver import CoreDriver, Recorder
from .test_sessions import T0, World, make_world

# T0 = 2027-01-15 08:00 UTC = 17:00 in Tokyo.


def _agent(driver: CoreDriver, contract: str = "C-1") -> tuple[AgentPeer, Recorder]:
    out = Recorder()
    return AgentPeer(peer=out, serial="ab12", contract_id=contract, machine_name="pc"), out


def _driver(hours: str = "00:00-00:00", **rules: float) -> CoreDriver:
    core = SessionCore(hours=parse_hours(hours), code_guard=CodeAttemptGuard(), rules=SessionRules(**rules))  # type: ignore[arg-type]
    return CoreDriver(core, now=T0)


def _refusal(out: Recorder) -> Error:
    error = out.last(Error)
    assert isinstance(error, Error)
    return error


def test_an_unknown_or_terminated_contract_is_refused_and_audited() -> None:
    driver = _driver()
    agent, out = _agent(driver)
    driver.support_request(agent, SupportRequest(id="r"), T0)
    assert _refusal(out).code == "subscriber_terminated"
    driver.subscribers["C-1"] = Subscriber(status="terminated")
    driver.support_request(agent, SupportRequest(id="r"), T0 + 61)
    assert _refusal(out).code == "subscriber_terminated"
    refused = [e for e in driver.audit if e.action == "support.refused"]
    assert [e.details["code"] for e in refused] == ["subscriber_terminated", "subscriber_terminated"]
    assert driver.sessions == {}


def test_a_suspension_refuses_until_it_ends() -> None:
    driver = _driver()
    driver.subscribers["C-1"] = Subscriber(status="suspended", suspended_until=T0 + 100)
    agent, out = _agent(driver)
    driver.support_request(agent, SupportRequest(id="r"), T0)
    error = _refusal(out)
    assert (error.code, error.retry_after) == ("subscriber_suspended", 100)
    driver.support_request(agent, SupportRequest(id="r2"), T0 + 100)
    assert isinstance(out.messages[-1], SupportCodeIssued)


def test_outside_service_hours_the_answer_says_when_it_opens() -> None:
    driver = _driver("09:00-17:00")  # closed at 17:00 Tokyo = T0
    driver.subscribers["C-1"] = Subscriber(status="active")
    agent, out = _agent(driver)
    driver.support_request(agent, SupportRequest(id="r"), T0)
    error = _refusal(out)
    assert error.code == "service_closed"
    assert error.retry_after == 16 * 3600  # 09:00 the next morning


def test_five_requests_an_hour_then_refused_and_the_refusals_audited_in_aggregate() -> None:
    driver = _driver()
    driver.subscribers["C-1"] = Subscriber(status="active")
    agent, out = _agent(driver)
    for i in range(5):
        driver.support_request(agent, SupportRequest(id=f"r{i}"), T0 + i)
        assert isinstance(out.messages[-1], SupportCodeIssued)
    for i in range(100):
        driver.support_request(agent, SupportRequest(id=f"x{i}"), T0 + 10 + i * 0.1)
        assert _refusal(out).code == "rate_limited"
    refused = [e for e in driver.audit if e.action == "support.refused"]
    assert [e.details["count"] for e in refused] == [1]  # one row a minute per agent and reason
    driver.support_request(agent, SupportRequest(id="late"), T0 + 80)
    assert [e.details["count"] for e in driver.audit if e.action == "support.refused"] == [1, 100]
    driver.support_request(agent, SupportRequest(id="next-hour"), T0 + 3605)
    assert isinstance(out.messages[-1], SupportCodeIssued)


def test_a_count_that_lags_behind_the_writer_does_not_let_a_flood_through() -> None:
    """The host reads the count while its writer may still hold the newest requests: the core adds
    the requests it accepted since the count was read (SupportRequested.counted_at)."""
    driver = _driver()
    agent, out = _agent(driver)
    issued = 0
    for i in range(50):
        event = SupportRequested(
            agent=agent,
            message=SupportRequest(id=f"r{i}"),
            subscriber=Subscriber(status="active"),
            recent_requests=0,  # the store saw none of them yet
            counted_at=T0,
        )
        driver.feed(event, T0 + i * 0.01)
        issued += isinstance(out.messages[-1], SupportCodeIssued)
    assert issued == 5


def test_a_code_is_single_use_and_expires(tmp_path: object) -> None:
    world = make_world()
    session = world.request(T0)
    code = _code(world)
    world.manager.operator_message(world.op, Claim(id="c", code=code, scopes=("screen:view",)), T0 + 1)
    assert world.manager.sessions[session].operator == "op"
    other_out = Recorder()
    other = OperatorPeer(peer=other_out, address="10.0.0.2", name="kim", display_name="Kim", role="operator")
    world.manager.operator_attached(other)
    world.manager.operator_message(other, Claim(id="c2", code=code, scopes=("screen:view",)), T0 + 2)
    assert _refusal(other_out).code == "code_invalid"
    world.request(T0 + 10)  # a new request, a new code
    late = _code(world)
    world.manager.operator_message(other, Claim(id="c3", code=late, scopes=("screen:view",)), T0 + 10 + 600)
    assert _refusal(other_out).code == "code_invalid"
    assert [e.action for e in world.store.audit_entries() if e.action == "claim.failed"] == [
        "claim.failed"
    ] * 2


def _code(world: World) -> str:
    issued = world.agent_out.last(SupportCodeIssued)
    assert isinstance(issued, SupportCodeIssued)
    return issued.code


def test_guessing_codes_locks_the_operator_out() -> None:
    world = make_world()
    world.request(T0)
    code = _code(world)
    wrong = "000000" if code != "000000" else "111111"
    for i in range(10):
        world.manager.operator_message(world.op, Claim(id=f"g{i}", code=wrong, scopes=()), T0 + 1 + i * 7)
        assert _refusal(world.op_out).code == "code_invalid"
    world.manager.operator_message(world.op, Claim(id="right", code=code, scopes=()), T0 + 80)
    assert _refusal(world.op_out).code == "account_locked"  # even the right code, while locked


def test_consent_is_per_scope_and_what_is_not_granted_is_denied() -> None:
    world = make_world()
    session, request = world.claim(("screen:view", "input:control", "inventory:os"))
    world.decide(session, ("screen:view",), request.scopes, T0 + 2)
    assert world.state().scopes == {
        "screen:view": "granted",
        "input:control": "denied",
        "inventory:os": "denied",
    }
    assert world.manager.sessions[session].granted == frozenset({"screen:view"})
