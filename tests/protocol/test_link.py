"""The sans-I/O link: hello negotiation, heartbeats, idle timeout, bad input; all on a fake clock."""

from __future__ import annotations

import json

import pytest

from protocol.codec import decode, encode
from protocol.errors import ErrorCode, InvalidState, MessageTooLarge, UnexpectedMessage
from protocol.limits import Limits
from protocol.link import (
    CLOSE_GOING_AWAY,
    CLOSE_NORMAL,
    CLOSE_POLICY,
    BinaryReceived,
    Closing,
    Event,
    Link,
    LinkState,
    Opened,
    Received,
    Rejected,
)
from protocol.messages import AgentStatus, Error, Hello, Ping, Pong
from tests.helpers_link import START, LinkPair

SMALL = Limits(
    max_text_bytes=1024,
    max_binary_bytes=100,
    max_bad_messages=3,
    heartbeat_interval=20.0,
    idle_timeout=65.0,
)


def _closings(events: list[Event]) -> list[Closing]:
    return [e for e in events if isinstance(e, Closing)]


def _errors(frames: list[bytes]) -> list[Error]:
    return [m for m in map(decode, frames) if isinstance(m, Error)]


def _server(limits: Limits = SMALL) -> Link:
    return Link(is_client=False, role="broker", now=START, limits=limits)


def _state(link: Link) -> LinkState:
    """Read the state through a call, so mypy does not narrow it across transitions."""
    return link.state


def _hello(*versions: int, role: str = "agent") -> bytes:
    return json.dumps({"type": "hello", "versions": list(versions), "role": role}).encode()


# -- hello -----------------------------------------------------------------------------------------


def test_client_sends_hello_first_and_server_waits() -> None:
    pair = LinkPair.create(client_versions=(1,))
    assert pair.server.data_to_send() == []
    frames = pair.client.data_to_send()
    assert [decode(f) for f in frames] == [Hello(versions=(1,), role="agent", software="test-agent/1")]


def test_hello_picks_the_highest_common_version() -> None:
    pair = LinkPair.create(client_versions=(1, 2, 3, 5), server_versions=(2, 3, 4))
    client_events, server_events = pair.pump()
    assert server_events == [Opened(3, "agent", "test-agent/1")]
    assert client_events == [Opened(3, "broker", "test-broker/1")]
    assert pair.client.version == pair.server.version == 3
    assert pair.client.state is pair.server.state is LinkState.OPEN
    assert pair.client.peer_role == "broker"
    assert pair.server.peer_role == "agent"
    # The server answers with exactly one version.
    assert decode(pair.server_frames[0]) == Hello(versions=(3,), role="broker", software="test-broker/1")


def test_no_common_version_closes_both_sides() -> None:
    pair = LinkPair.create(client_versions=(2, 3), server_versions=(1,))
    client_events, server_events = pair.pump()
    assert _closings(server_events) == [Closing(CLOSE_POLICY, "unsupported_version")]
    assert _closings(client_events) == [Closing(CLOSE_POLICY, "unsupported_version")]
    assert [e.message for e in client_events if isinstance(e, Received)] == [
        Error(code="unsupported_version", message="no common protocol version in [2, 3]")
    ]
    assert pair.client.state is pair.server.state is LinkState.CLOSED
    assert pair.client.version is None


def test_client_refuses_a_server_hello_with_several_versions() -> None:
    client = Link(is_client=True, role="agent", now=START, versions=(1, 2))
    events = client.receive(encode(Hello(versions=(1, 2), role="broker")), START)
    assert _closings(events) == [Closing(CLOSE_POLICY, "unsupported_version")]
    assert client.state is LinkState.CLOSED


def test_wrong_peer_role_is_refused() -> None:
    pair = LinkPair.create(client_role="operator", expect_role="agent")
    _, server_events = pair.pump()
    assert _closings(server_events) == [Closing(CLOSE_POLICY, "unexpected_message")]
    assert pair.server.state is LinkState.CLOSED
    assert _closings(pair.client_events) == [Closing(CLOSE_POLICY, "unexpected_message")]


def test_expected_role_is_accepted() -> None:
    pair = LinkPair.create(client_role="agent", expect_role="agent")
    pair.open()


def test_message_before_hello_is_fatal() -> None:
    server = _server()
    events = server.receive(encode(Ping(id="c1", time=START)), START)
    assert isinstance(events[0], Rejected)
    assert isinstance(events[0].error, UnexpectedMessage)
    assert events[1:] == [Closing(CLOSE_POLICY, "unexpected_message")]
    assert server.state is LinkState.CLOSED
    assert [e.code for e in _errors(server.data_to_send())] == ["unexpected_message"]


def test_garbage_before_hello_closes_with_its_code() -> None:
    server = _server()
    events = server.receive(b"not json", START)
    assert _closings(events) == [Closing(CLOSE_POLICY, "malformed")]
    assert [e.code for e in _errors(server.data_to_send())] == ["malformed"]


def test_second_hello_is_rejected_but_link_stays_open() -> None:
    pair = LinkPair.create(limits=SMALL)
    pair.open()
    events = pair.server.receive(_hello(1), pair.clock.now)
    assert len(events) == 1
    assert isinstance(events[0], Rejected)
    assert events[0].error.code is ErrorCode.UNEXPECTED_MESSAGE
    assert pair.server.state is LinkState.OPEN
    assert pair.server.version == 1
    assert [e.code for e in _errors(pair.server.data_to_send())] == ["unexpected_message"]


def test_send_before_hello_raises_invalid_state() -> None:
    server = _server()
    with pytest.raises(InvalidState) as info:
        server.send(AgentStatus(machine_name="pc"))
    assert info.value.code.value == "invalid_state"
    assert server.data_to_send() == []


def test_error_may_be_sent_before_hello() -> None:
    server = _server()
    server.send(Error(code="service_closed"))
    assert [decode(f) for f in server.data_to_send()] == [Error(code="service_closed")]


def test_send_after_close_raises_invalid_state() -> None:
    pair = LinkPair.create()
    pair.open()
    assert pair.client.close() == Closing(CLOSE_NORMAL, "")
    with pytest.raises(InvalidState):
        pair.client.send(Error(code="internal"))


def test_application_messages_flow_after_hello() -> None:
    pair = LinkPair.create()
    pair.open()
    status = AgentStatus(machine_name="pc-01", display=True)
    pair.client.send(status)
    _, server_events = pair.pump()
    assert server_events == [Received(status)]


def test_next_id_is_unique_per_side() -> None:
    pair = LinkPair.create()
    ids = [pair.client.next_id() for _ in range(3)] + [pair.server.next_id() for _ in range(3)]
    assert len(set(ids)) == 6


# -- heartbeats and idle timeout --------------------------------------------------------------------


def test_client_pings_after_heartbeat_interval_and_measures_rtt() -> None:
    pair = LinkPair.create(limits=SMALL)
    pair.open()
    assert pair.client.next_timer() == START + 20.0
    assert pair.server.next_timer() == START + 65.0
    assert pair.client.rtt is None

    pair.advance(19.9)
    assert pair.client.data_to_send() == []  # not yet

    pair.advance(0.1)
    frames = pair.client.data_to_send()
    assert [decode(f) for f in frames] == [Ping(id="c1", time=START + 20.0)]

    # The ping arrives at the server 0.25 s later; the server answers with the same time.
    pair.clock.advance(0.25)
    assert pair.server.receive(frames[0], pair.clock.now) == []
    answer = pair.server.data_to_send()
    assert [decode(f) for f in answer] == [Pong(id="c1", time=START + 20.0)]
    pair.clock.advance(0.25)
    assert pair.client.receive(answer[0], pair.clock.now) == []
    assert pair.client.rtt == pytest.approx(0.5)

    # Next ping is one interval after the last one was sent.
    assert pair.client.next_timer() == START + 40.0
    # The server's idle deadline moved with the ping.
    assert pair.server.next_timer() == START + 20.25 + 65.0


def test_heartbeats_keep_a_quiet_link_alive() -> None:
    pair = LinkPair.create(limits=SMALL)
    pair.open()
    for _ in range(30):  # 10 minutes of nothing but heartbeats
        client_events, server_events = pair.advance(20.0)
        assert client_events == server_events == []
        pair.pump()
    assert pair.client.state is pair.server.state is LinkState.OPEN
    assert pair.client.rtt == 0.0


def test_idle_timeout_closes_with_reason() -> None:
    pair = LinkPair.create(limits=SMALL)
    pair.open()
    # The server stops answering: the client's pings go nowhere.
    for _ in range(3):
        events, _ = pair.advance(20.0)
        assert events == []
        pair.client.data_to_send()
    assert pair.client.next_timer() == START + 65.0
    events, _ = pair.advance(4.999)
    assert events == []
    events, _ = pair.advance(0.001)
    assert events == [Closing(CLOSE_GOING_AWAY, "idle_timeout")]
    assert pair.client.state is LinkState.CLOSED
    assert pair.client.next_timer() is None
    assert pair.client.handle_timer(pair.clock.now + 100) == []


def test_server_idle_timeout_when_client_goes_silent() -> None:
    pair = LinkPair.create(limits=SMALL)
    pair.open()
    assert pair.server.handle_timer(START + 64.9) == []
    assert pair.server.handle_timer(START + 65.0) == [Closing(CLOSE_GOING_AWAY, "idle_timeout")]


def test_idle_timeout_applies_before_hello() -> None:
    server = _server()
    assert server.next_timer() == START + 65.0
    assert server.handle_timer(START + 65.0) == [Closing(CLOSE_GOING_AWAY, "idle_timeout")]


def test_server_never_pings() -> None:
    pair = LinkPair.create(limits=SMALL)
    pair.open()
    pair.server.handle_timer(START + 30.0)
    assert pair.server.data_to_send() == []


# -- bad input --------------------------------------------------------------------------------------


def test_bad_messages_get_errors_then_too_many_errors() -> None:
    pair = LinkPair.create(limits=SMALL)
    pair.open()
    now = pair.clock.now
    first = pair.server.receive(b'{"type":"nope"}', now)
    assert [type(e) for e in first] == [Rejected]
    second = pair.server.receive(b"{", now)
    assert [type(e) for e in second] == [Rejected]
    assert _state(pair.server) is LinkState.OPEN
    assert [e.code for e in _errors(pair.server.data_to_send())] == ["unknown_type", "malformed"]

    third = pair.server.receive(b'{"type":"ping"}', now)
    assert isinstance(third[0], Rejected)
    assert third[1:] == [Closing(CLOSE_POLICY, "too_many_errors")]
    assert _state(pair.server) is LinkState.CLOSED
    assert [e.code for e in _errors(pair.server.data_to_send())] == ["invalid_field"]
    # Closed: further input is ignored, nothing more is said.
    assert pair.server.receive(b"{", now) == []
    assert pair.server.data_to_send() == []


def test_errors_reach_the_peer_as_received_errors() -> None:
    pair = LinkPair.create(limits=SMALL)
    pair.open()
    pair.server.receive(b'{"type":"nope"}', pair.clock.now)
    client_events, _ = pair.pump()
    assert len(client_events) == 1
    assert isinstance(client_events[0], Received)
    error = client_events[0].message
    assert isinstance(error, Error)
    assert error.code == "unknown_type"


def test_oversize_text_is_rejected() -> None:
    pair = LinkPair.create(limits=SMALL)
    pair.open()
    events = pair.server.receive(b" " * 1025, pair.clock.now)
    assert isinstance(events[0], Rejected)
    assert isinstance(events[0].error, MessageTooLarge)


def test_binary_frame_before_hello_is_fatal() -> None:
    server = _server()
    events = server.receive_binary(b"\x00" * 10, START)
    assert _closings(events) == [Closing(CLOSE_POLICY, "unexpected_message")]
    assert server.state is LinkState.CLOSED


def test_binary_frames_after_hello() -> None:
    pair = LinkPair.create(limits=SMALL)
    pair.open()
    assert pair.server.receive_binary(b"x" * 100, pair.clock.now) == [BinaryReceived(b"x" * 100)]
    events = pair.server.receive_binary(b"x" * 101, pair.clock.now)
    assert len(events) == 1
    assert isinstance(events[0], Rejected)
    assert events[0].error.code.value == "too_large"
    assert pair.server.state is LinkState.OPEN
    assert [e.code for e in _errors(pair.server.data_to_send())] == ["too_large"]


def test_receiving_resets_the_idle_deadline() -> None:
    pair = LinkPair.create(limits=SMALL)
    pair.open()
    pair.server.receive_binary(b"x", START + 50.0)
    assert pair.server.next_timer() == START + 115.0


def test_non_utf8_frame_is_rejected_not_raised() -> None:
    pair = LinkPair.create(limits=SMALL)
    pair.open()
    events = pair.server.receive(b'{"type":"agent_status","machine_name":"\xff"}', pair.clock.now)
    assert isinstance(events[0], Rejected)
