"""Signals: round trips, validation of hostile bytes, size limits; the in-process bus."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from broker.cluster.bus import BusState, BusUnavailable, LocalBus, LocalHub
from broker.cluster.signals import (
    MAX_SIGNAL_BYTES,
    AgentPresence,
    ConsentChanged,
    CutAgent,
    InvalidSignal,
    NodeHeartbeat,
    SessionRequested,
    Signal,
    WakeUp,
    decode_signal,
    encode_signal,
    new_node_id,
    subject_for,
)

T = 1_764_000_000.25
P = {"kind": "presence", "node": "a", "at": 1.0, "serial": "1", "contract_id": "C", "online": True}

EXAMPLES: list[Signal] = [
    NodeHeartbeat(
        node="a", at=T, started_at=T - 60, agents=3, operators=1, sessions=1, address="10.0.0.1:9443"
    ),
    AgentPresence(node="a", at=T, serial="1A2B", contract_id="C-1001", online=True),
    SessionRequested(node="a", at=T, session_id="sAbC_123-x", contract_id="C-1001"),
    ConsentChanged(node="a", at=T, session_id="sAbC_123-x", granted=("screen:view", "inventory:os")),
    CutAgent(node="a", at=T, serials=("1A2B", "FF"), reason="revoked"),
    CutAgent(node="a", at=T, contract_id="C-1001", reason="terminated"),
    WakeUp(node="a", at=T, target="b", topic="session", ref="sAbC_123-x"),
]


@pytest.mark.parametrize("signal", EXAMPLES, ids=lambda s: type(s).__name__)
def test_every_signal_round_trips(signal: Signal) -> None:
    data = encode_signal(signal)
    assert len(data) < 256
    assert decode_signal(data) == signal


def test_subjects() -> None:
    assert subject_for("isp.broker", EXAMPLES[0]) == "isp.broker.heartbeat"
    assert subject_for("isp.broker", EXAMPLES[4]) == "isp.broker.cut_agent"
    assert subject_for("isp.broker", EXAMPLES[-1]) == "isp.broker.wake_up.b"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xff\xfe",
        msgspec.msgpack.encode({"kind": "unknown", "node": "a", "at": 1.0}),
        msgspec.msgpack.encode(P)[:-1],
        msgspec.msgpack.encode(
            {"kind": "presence", "node": "a.b", "at": 1.0, "serial": "1", "contract_id": "C", "online": True}
        ),
        msgspec.msgpack.encode({"kind": "cut_agent", "node": "a", "at": 1.0, "serials": ["x y"]}),
        msgspec.msgpack.encode({"kind": "cut_agent", "node": "a", "at": 1.0, "reason": "because"}),
        msgspec.msgpack.encode(
            {"kind": "wake_up", "node": "a", "at": 1.0, "target": "*", "topic": "session"}
        ),
        msgspec.msgpack.encode(
            {"kind": "presence", "node": "a", "at": -1.0, "serial": "1", "contract_id": "C", "online": True}
        ),
        msgspec.msgpack.encode(
            {
                "kind": "presence",
                "node": "a",
                "at": 1.0,
                "serial": "1",
                "contract_id": "C",
                "online": True,
                "screen": "x",
            }
        ),
        b"\x00" * (MAX_SIGNAL_BYTES + 1),
    ],
)
def test_hostile_bytes_are_refused_with_a_clear_error(data: bytes) -> None:
    with pytest.raises(InvalidSignal):
        decode_signal(data)


def test_a_signal_that_would_be_dropped_is_not_sent() -> None:
    with pytest.raises(InvalidSignal):
        encode_signal(AgentPresence(node="a b", at=T, serial="1", contract_id="C", online=True))
    # The types hold no bytes and their lists are bounded: nothing large passes, screen data least of all.
    with pytest.raises(InvalidSignal):
        encode_signal(CutAgent(node="a", at=T, serials=tuple(f"{i:X}" for i in range(17))))
    with pytest.raises(InvalidSignal):
        encode_signal(NodeHeartbeat(node="a", at=T, started_at=T, address="x" * 5000))


def test_node_ids_are_subject_tokens_and_unique() -> None:
    ids = {new_node_id() for _ in range(50)}
    assert len(ids) == 50
    for node in ids:
        encode_signal(NodeHeartbeat(node=node, at=T, started_at=T))


def state_of(bus: LocalBus) -> BusState:
    return bus.state  # a call, so that mypy does not narrow the state across awaits


async def test_local_buses_on_one_hub_behave_like_nodes() -> None:
    hub = LocalHub()
    a, b = LocalBus("a", hub=hub), LocalBus("b", hub=hub)
    got: dict[str, list[Signal]] = {"a": [], "b": []}
    for bus in (a, b):
        for kind in {type(s) for s in EXAMPLES}:
            bus.subscribe(kind, got[bus.node].append)
    with pytest.raises(BusUnavailable):
        await a.publish(EXAMPLES[0])
    await a.start()
    await b.start()
    assert a.state is BusState.CONNECTED
    assert a.state.ready
    for signal in EXAMPLES:
        await a.publish(signal)
    assert got["b"] == []  # delivered on a later turn of the loop, as from the network
    await asyncio.sleep(0)
    # Broadcasts reach both nodes, the sender too; the wake-up for "b" only b.
    assert got["b"] == EXAMPLES
    assert got["a"] == EXAMPLES[:-1]
    assert a.stats.published["WakeUp"] == 1
    assert b.stats.received["CutAgent"] == 2
    await a.close()
    await b.close()
    assert state_of(a) is BusState.CLOSED
    assert not a.state.ready


async def test_a_failing_handler_does_not_stop_the_others() -> None:
    bus = LocalBus()
    seen: list[Signal] = []

    def broken(signal: CutAgent) -> None:
        raise RuntimeError("boom")

    async def slow(signal: CutAgent) -> None:
        await asyncio.sleep(0)
        seen.append(signal)

    bus.subscribe(CutAgent, broken)
    bus.subscribe(CutAgent, slow)
    await bus.start()
    await bus.publish(EXAMPLES[4])
    for _ in range(3):
        await asyncio.sleep(0)
    assert seen == [EXAMPLES[4]]
    assert bus.stats.handler_errors == 1
    await bus.close()


def test_open_bus_picks_the_implementation() -> None:
    from broker.cluster import open_bus
    from broker.cluster.nats_bus import NatsBus
    from broker.errors import BrokerError

    local = open_bus(None)
    assert isinstance(local, LocalBus)
    assert local.node  # a generated node id
    nats = open_bus("nats://127.0.0.1:4222", node="n1", prefix="x.y")
    assert isinstance(nats, NatsBus)
    assert (nats.node, nats.prefix) == ("n1", "x.y")
    with pytest.raises(BrokerError):
        open_bus("http://127.0.0.1:4222")
    with pytest.raises(InvalidSignal):
        open_bus("nats://127.0.0.1:4222", node="bad node")
