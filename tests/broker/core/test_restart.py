"""Restart of the subscriber's PC (issue 16), in the session manager with a fake clock:
``restart_request`` only with ``system:restart`` granted, and an announced restart keeps the
session for the restart grace instead of the normal grace."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.core import AgentPeer, SessionRules
from protocol.messages import Error, RestartNotice, RestartRequest, SessionState, SupportRequest

from .driver import Recorder
from .test_sessions import T0, World, make_world


@pytest.fixture
def world(tmp_path: Path) -> World:
    return make_world(tmp_path)


def test_a_restart_request_without_system_restart_is_refused(world: World) -> None:
    session, request = world.claim(("screen:view", "system:restart"))
    world.decide(session, ("screen:view",), request.scopes, T0 + 2)
    world.manager.operator_message(world.op, RestartRequest(id="r", session_id=session), T0 + 3)
    error = world.op_out.last(Error)
    assert isinstance(error, Error)
    assert error.code == "consent_required"
    assert not any(isinstance(m, RestartRequest) for m in world.agent_out.messages)


def test_a_granted_restart_request_reaches_the_agent_and_is_audited(world: World) -> None:
    session, request = world.claim(("system:restart",))
    world.decide(session, ("system:restart",), request.scopes, T0 + 2)
    world.manager.operator_message(world.op, RestartRequest(id="r", session_id=session), T0 + 3)
    sent = world.agent_out.last(RestartRequest)
    assert isinstance(sent, RestartRequest)
    assert sent.session_id == session
    assert "restart.request" in world.actions()


def test_a_restart_notice_without_the_scope_is_refused(world: World) -> None:
    session, request = world.claim(("screen:view",))
    world.decide(session, ("screen:view",), request.scopes, T0 + 2)
    world.manager.agent_message(world.agent, RestartNotice(id="n", session_id=session), T0 + 3)
    error = world.agent_out.last(Error)
    assert isinstance(error, Error)
    assert error.code == "consent_required"
    assert world.manager.sessions[session].restart_until is None


def test_an_announced_restart_keeps_the_session_for_the_restart_grace(world: World) -> None:
    rules = SessionRules()
    session, request = world.claim(("system:restart",))
    world.decide(session, ("system:restart",), request.scopes, T0 + 2)
    world.manager.agent_message(world.agent, RestartNotice(id="n", session_id=session), T0 + 3)
    state = world.state()
    assert state.restart_until == T0 + 3 + rules.restart_grace  # the console shows "restarting"
    world.manager.agent_disconnected(world.agent, T0 + 4)
    world.manager.tick(T0 + 4 + rules.grace + 1)  # the normal grace is over: still kept
    assert session in world.manager.sessions
    back_out = Recorder()
    back = AgentPeer(peer=back_out, serial=world.agent.serial, contract_id="C-1")
    world.manager.support_request(back, SupportRequest(id="again", resume=session), T0 + 300)
    state = world.state()
    assert (state.phase, state.restart_until, state.operator) == ("active", None, "Op")
    assert state.scopes == {"system:restart": "withdrawn"}  # nothing carries over, even unsigned


def test_a_pc_that_does_not_come_back_ends_the_session_after_the_restart_grace(world: World) -> None:
    rules = SessionRules()
    session, request = world.claim(("system:restart",))
    world.decide(session, ("system:restart",), request.scopes, T0 + 2)
    world.manager.agent_message(world.agent, RestartNotice(id="n", session_id=session), T0 + 3)
    world.manager.agent_disconnected(world.agent, T0 + 4)
    world.manager.tick(T0 + 3 + rules.restart_grace - 1)
    assert session in world.manager.sessions
    world.manager.tick(T0 + 3 + rules.restart_grace)
    ended = world.op_out.last(SessionState)
    assert isinstance(ended, SessionState)
    assert (ended.phase, ended.reason) == ("ended", "agent_lost")
