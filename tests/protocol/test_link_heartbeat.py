"""Heartbeats below the JSON layer (issue 15, docs/heartbeat.md), on a fake clock.

The agent's heartbeat is a WebSocket Ping frame: the client core asks for one (``SendPing``), the
server core only hears that a control frame arrived (``frame_received``). An agent of the previous
version still sends a JSON ``ping`` every 20 s and must still get its ``pong``.
"""

from __future__ import annotations

import pytest

from protocol.codec import decode, encode
from protocol.limits import DEFAULT_LIMITS, Limits
from protocol.link import CLOSE_GOING_AWAY, Closing, Event, Link, LinkState, SendPing
from protocol.messages import Ping, Pong
from tests.helpers_link import START, FakeClock, LinkPair

LEGACY_AGENT = Limits(heartbeat_interval=20.0, idle_timeout=65.0)
"""What an agent before issue 15 ran with: a JSON ``ping`` every 20 s."""


def _frame_pair(limits: Limits = DEFAULT_LIMITS) -> tuple[Link, Link, FakeClock]:
    """An agent link that heartbeats with Ping frames and a broker link, both open."""
    clock = FakeClock()
    client = Link(is_client=True, role="agent", now=clock.now, limits=limits, ping_frames=True)
    server = Link(is_client=False, role="broker", now=clock.now, expect_role="agent", limits=limits)
    for frame in client.data_to_send():
        server.receive(frame, clock.now)
    for frame in server.data_to_send():
        client.receive(frame, clock.now)
    assert client.state is LinkState.OPEN
    assert server.state is LinkState.OPEN
    return client, server, clock


def _fire(link: Link, now: float) -> list[Event]:
    timer = link.next_timer()
    return link.handle_timer(now) if timer is not None and timer <= now else []


def test_defaults_come_from_the_nat_evidence() -> None:
    # docs/heartbeat.md: Ping frame every 300 s, broker gives up after two missed plus a minute.
    assert DEFAULT_LIMITS.heartbeat_interval == 300.0
    assert DEFAULT_LIMITS.idle_timeout == 660.0


def test_frame_heartbeat_asks_the_adapter_for_a_ping_frame_and_sends_no_json() -> None:
    client, server, clock = _frame_pair()
    assert client.next_timer() == START + 300.0
    assert _fire(client, clock.advance(299.9)) == []
    assert _fire(client, clock.advance(0.1)) == [SendPing()]
    assert client.data_to_send() == []  # nothing for the JSON layer
    # The Ping frame reaches the broker 0.1 s later (its WebSocket layer answers it).
    server.frame_received(clock.advance(0.1))
    assert server.data_to_send() == []
    assert server.next_timer() == START + 300.1 + 660.0
    client.pong_received(clock.advance(0.1))
    assert client.rtt == pytest.approx(0.2)
    assert client.next_timer() == START + 600.0


def test_ping_frames_alone_keep_a_link_open_for_hours() -> None:
    client, server, clock = _frame_pair()
    json_frames = 0
    for _ in range(24):  # two hours, one heartbeat every 300 s, nothing else said
        now = clock.advance(300.0)
        events = _fire(client, now)
        assert events == [SendPing()]
        server.frame_received(now)
        client.pong_received(now)
        assert _fire(server, now) == []
        json_frames += len(client.data_to_send()) + len(server.data_to_send())
    assert client.state is LinkState.OPEN
    assert server.state is LinkState.OPEN
    assert json_frames == 0


def test_a_silent_agent_is_dropped_exactly_at_the_idle_timeout() -> None:
    _client, server, clock = _frame_pair()
    server.frame_received(clock.advance(300.0))  # its last heartbeat
    last = clock.now
    assert server.next_timer() == last + 660.0
    assert _fire(server, clock.advance(659.999)) == []
    assert _fire(server, clock.advance(0.001)) == [Closing(CLOSE_GOING_AWAY, "idle_timeout")]
    assert server.state is LinkState.CLOSED
    server.frame_received(clock.advance(1.0))  # a late frame changes nothing
    assert server.next_timer() is None


def test_the_agent_gives_up_on_a_broker_whose_pongs_stop() -> None:
    client, _, clock = _frame_pair()
    assert _fire(client, clock.advance(300.0)) == [SendPing()]
    client.pong_received(clock.now)
    last = clock.now
    for _ in range(2):  # two more Pings, never answered
        assert _fire(client, clock.advance(300.0)) == [SendPing()]
    assert client.next_timer() == last + 660.0
    assert _fire(client, clock.advance(60.0)) == [Closing(CLOSE_GOING_AWAY, "idle_timeout")]


def test_a_pong_without_a_ping_only_proves_liveness() -> None:
    client, _, clock = _frame_pair()
    client.pong_received(clock.advance(10.0))  # unsolicited Pong (RFC 6455 §5.5.3)
    assert client.rtt is None
    assert client.next_timer() == START + 300.0


def test_previous_agents_json_ping_every_20_s_is_still_answered() -> None:
    pair = LinkPair.create(client_limits=LEGACY_AGENT, server_limits=DEFAULT_LIMITS)
    pair.open()
    pongs = 0
    for _ in range(90):  # half an hour of the old heartbeat
        client_events, server_events = pair.advance(20.0)
        assert client_events == server_events == []
        frames = pair.client.data_to_send()
        assert [type(decode(f)) for f in frames] == [Ping]
        for frame in frames:
            assert pair.server.receive(frame, pair.clock.now) == []  # nothing for the application
        answers = pair.server.data_to_send()
        assert [type(decode(a)) for a in answers] == [Pong]
        for answer in answers:
            pair.client.receive(answer, pair.clock.now)
        pongs += len(answers)
    assert pongs == 90
    assert pair.client.state is LinkState.OPEN
    assert pair.server.state is LinkState.OPEN
    assert pair.client.rtt == 0.0


def test_json_ping_still_answered_on_a_link_whose_client_uses_frames() -> None:
    # A console page (JSON ping) and an agent (frames) reach the same broker code.
    _, server, clock = _frame_pair()
    assert server.receive(encode(Ping(id="c9", time=START + 5.0)), clock.advance(5.0)) == []
    assert [decode(f) for f in server.data_to_send()] == [Pong(id="c9", time=START + 5.0)]
