"""Issue 11 item 7 (broker side): everyone who sees the screen is in ``session_state.viewers``,
sent to the agent and to every viewer whenever someone joins or leaves; the join is audited.
Also the permission table in the manager (a viewer's refresh never reaches the agent) and the
end of every connection of an expired login (broker.operator_links)."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.core import OperatorPeer
from broker.operator_links import OperatorLinks
from protocol.messages import Error, Message, ScreenRefresh, SessionState, Viewer, Watch
from tests.broker.core.driver import Recorder
from tests.broker.core.test_sessions import T0, World, make_world


@pytest.fixture
def world(tmp_path: Path) -> World:
    return make_world(tmp_path)


def _supervisor(world: World, name: str = "sam") -> tuple[OperatorPeer, Recorder]:
    out = Recorder()
    sup = OperatorPeer(
        peer=out, address="127.0.0.1", name=name, display_name=f"{name.title()} (SV)", role="supervisor"
    )
    world.manager.operator_attached(sup)
    return sup, out


def _states(out: Recorder) -> list[SessionState]:
    return [m for m in out.messages if isinstance(m, SessionState)]


def test_a_supervisor_joining_is_sent_to_the_agent_and_the_operator(world: World) -> None:
    session, request = world.claim(("screen:view",))
    world.decide(session, ("screen:view",), request.scopes, T0 + 2)
    assert _states(world.agent_out)[-1].viewers == (Viewer(name="Op", role="operator", read_only=False),)
    sup, sup_out = _supervisor(world)
    world.manager.operator_message(sup, Watch(id="w", session_id=session), T0 + 3)
    both = (
        Viewer(name="Op", role="operator", read_only=False),
        Viewer(name="Sam (SV)", role="supervisor", read_only=True),
    )
    assert _states(world.agent_out)[-1].viewers == both
    assert _states(world.op_out)[-1].viewers == both
    assert _states(sup_out)[-1].viewers == both
    join = [e for e in world.store.audit_entries(subject=session) if e.action == "session.supervise"]
    assert len(join) == 1
    assert join[0].details["viewers"] == ["Op", "Sam (SV)"]

    # Leaving is announced too.
    world.manager.operator_detached(sup, T0 + 4)
    assert _states(world.agent_out)[-1].viewers == both[:1]
    assert _states(world.op_out)[-1].viewers == both[:1]


def test_a_viewers_monitor_switch_never_reaches_the_agent(world: World) -> None:
    session, request = world.claim(("screen:view",))
    world.decide(session, ("screen:view",), request.scopes, T0 + 2)
    sup, sup_out = _supervisor(world)
    world.manager.operator_message(sup, Watch(id="w", session_id=session), T0 + 3)
    before = [m for m in world.agent_out.messages if isinstance(m, ScreenRefresh)]
    world.manager.operator_message(sup, ScreenRefresh(session_id=session, monitor=2), T0 + 4)
    error = sup_out.last(Error)
    assert isinstance(error, Error)
    assert error.code == "not_allowed"
    world.manager.operator_message(sup, ScreenRefresh(session_id=session, monitor=3), T0 + 4.5)
    refused = [e for e in world.store.audit_entries(subject=session) if e.action == "viewer.refused"]
    assert len(refused) == 1  # audited once a minute per viewer and kind, with a count
    assert refused[0].actor == "operator:sam"
    assert refused[0].details["kind"] == "monitor_switch"
    after = [m for m in world.agent_out.messages if isinstance(m, ScreenRefresh)]
    assert after == before
    assert all(m.monitor is None for m in after)
    # A keyframe request (no monitor) changes nothing on the PC: a viewer may send it.
    world.manager.operator_message(sup, ScreenRefresh(session_id=session, behind=True), T0 + 5)
    last = world.agent_out.last(ScreenRefresh)
    assert isinstance(last, ScreenRefresh)
    assert last.monitor is None
    assert len([m for m in world.agent_out.messages if isinstance(m, ScreenRefresh)]) == len(before) + 1


class _Link:
    def __init__(self) -> None:
        self.sent: list[Message] = []
        self.closed: tuple[int, str] | None = None

    def send(self, message: Message) -> None:
        self.sent.append(message)

    def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


class _Accounts:
    def authenticate(self, token: str, *, now: float) -> object:
        return object()  # every token is still valid in the store: only the expiry ends it


def test_an_expired_login_ends_every_connection_holding_it(world: World) -> None:
    session, request = world.claim(("screen:view",))
    world.decide(session, ("screen:view",), request.scopes, T0 + 2)
    links = OperatorLinks(world.manager)
    world.op.token, world.op.expires_at = "t" * 32, T0 + 100
    twin_out = Recorder()
    twin = OperatorPeer(
        peer=twin_out, address="::1", name="op", display_name="Op", role="operator", token="t" * 32
    )
    twin.expires_at = T0 + 100
    world.manager.operator_attached(twin)
    world.manager.operator_message(twin, Watch(id="w", session_id=session), T0 + 3)
    first, second = _Link(), _Link()
    links.register(world.op, first)
    links.register(twin, second)
    assert links.check(_Accounts(), T0 + 99) == 0
    assert links.check(_Accounts(), T0 + 100) == 2
    for link in (first, second):
        assert link.closed == (1008, "auth_required")
        assert isinstance(link.sent[-1], Error)
    assert world.manager.sessions[session].viewers == set()
    assert len(links) == 0
