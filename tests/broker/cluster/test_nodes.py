"""The node table: who is alive, who holds which agent, who fell silent (fake clock, no sockets)."""

from __future__ import annotations

import pytest

from broker.cluster.nodes import NodeTable
from broker.cluster.signals import AgentPresence, NodeHeartbeat


def hb(node: str, at: float = 0.0, address: str = "") -> NodeHeartbeat:
    return NodeHeartbeat(node=node, at=at, started_at=0.0, agents=1, address=address)


def presence(node: str, serial: str, online: bool) -> AgentPresence:
    return AgentPresence(node=node, at=0.0, serial=serial, contract_id="C-1", online=online)


def test_a_silent_node_is_gone_after_the_silence_and_takes_its_agents_with_it() -> None:
    table = NodeTable("a", silence=15.0)
    assert table.next_timer() is None
    assert table.heartbeat(hb("a"), now=100.0)  # ourselves: never reported gone
    assert table.heartbeat(hb("b", address="10.0.0.2:9443"), now=100.0)
    assert table.heartbeat(hb("c"), now=101.0)
    assert not table.heartbeat(hb("b", address="10.0.0.2:9443"), now=105.0)
    table.presence(presence("b", "AA", online=True))
    table.presence(presence("c", "CC", online=True))
    assert table.holder("AA") == "b"
    assert table.address("b") == "10.0.0.2:9443"
    assert table.address("c") is None
    assert table.next_timer() == 116.0  # c, last seen at 101
    assert table.handle_timer(115.9) == []
    assert table.handle_timer(116.0) == ["c"]
    assert table.holder("CC") is None
    assert table.next_timer() == 120.0
    assert table.handle_timer(500.0) == ["b"]
    assert [n.node for n in table.alive()] == ["a"]
    assert table.next_timer() is None


def test_a_late_offline_from_the_old_node_does_not_hide_the_new_holder() -> None:
    table = NodeTable("a")
    for node in ("a", "b", "c"):
        table.heartbeat(hb(node), now=0.0)
    table.presence(presence("b", "AA", online=True))
    table.presence(presence("c", "AA", online=True))  # reconnected to c before b noticed
    table.presence(presence("b", "AA", online=False))
    assert table.holder("AA") == "c"
    table.presence(presence("c", "AA", online=False))
    assert table.holder("AA") is None


def test_the_agent_table_is_bounded() -> None:
    table = NodeTable("a", max_agents=2)
    table.heartbeat(hb("b"), now=0.0)
    for serial in ("A1", "A2", "A3"):
        table.presence(presence("b", serial, online=True))
    assert table.holder("A1") is None
    assert table.holder("A3") == "b"
    with pytest.raises(ValueError, match="positive"):
        NodeTable("a", silence=0)
