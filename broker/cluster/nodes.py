"""What a process knows about the other processes of its cluster, from their signals.

:class:`NodeTable` is pure (time is an argument, STYLE "time is an argument"): the host feeds it the
:class:`~.signals.NodeHeartbeat` and :class:`~.signals.AgentPresence` signals it receives and arms a
timer at :meth:`NodeTable.next_timer`; :meth:`NodeTable.handle_timer` returns the nodes that fell
silent, whose agents the host then marks offline in the database (``storage.presence
.mark_node_offline``, idempotent, so several processes doing it at once is harmless) — their agents
reconnect to the other processes by themselves.

It also answers "which node holds the agent with certificate S" (for a claim or a revocation) and
"where do I reach node N" (the node-to-node link's address). The database remains the state of
record; this table is a cache that a process rebuilds from signals within one heartbeat interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from wire.tasks import stop_task

from .bus import DEFAULT_HEARTBEAT_INTERVAL, Bus, BusUnavailable
from .signals import AgentPresence, NodeHeartbeat

__all__ = ["DEFAULT_SILENCE", "NodeInfo", "NodeTable", "NodeWatch"]

log = logging.getLogger(__name__)

#: A node silent this long is gone: three heartbeats at the default 5 s interval.
DEFAULT_SILENCE: Final = 15.0

#: Agents remembered at most (a cluster of 10 nodes × 100,000 agents); beyond it the oldest entries
#: are forgotten, which only costs a database lookup.
MAX_AGENTS: Final = 1_000_000


@dataclass(frozen=True, slots=True)
class NodeInfo:
    node: str
    address: str
    started_at: float
    agents: int
    operators: int
    sessions: int
    last_seen: float
    """Our clock when its last heartbeat arrived (never the sender's clock)."""


class NodeTable:
    def __init__(self, me: str, *, silence: float = DEFAULT_SILENCE, max_agents: int = MAX_AGENTS) -> None:
        """
        :param me: this process's node id (never reported as gone).
        :param silence: seconds without a heartbeat after which a node is gone.
        :param max_agents: agent → node entries kept at most.
        """
        if silence <= 0 or max_agents < 1:
            raise ValueError("silence and max_agents must be positive")
        self.me = me
        self.silence = silence
        self.max_agents = max_agents
        self._nodes: dict[str, NodeInfo] = {}
        self._holder: dict[str, str] = {}

    def heartbeat(self, hb: NodeHeartbeat, now: float) -> bool:
        """Note a heartbeat; True if the node is new to us (joined or came back)."""
        new = hb.node not in self._nodes
        self._nodes[hb.node] = NodeInfo(
            node=hb.node,
            address=hb.address,
            started_at=hb.started_at,
            agents=hb.agents,
            operators=hb.operators,
            sessions=hb.sessions,
            last_seen=now,
        )
        return new

    def presence(self, signal: AgentPresence) -> None:
        """An agent came online on, or left, ``signal.node``. A late 'offline' from a node the agent
        has already left (it reconnected elsewhere first) does not erase the newer holder."""
        if signal.online:
            self._holder.pop(signal.serial, None)
            self._holder[signal.serial] = signal.node
            while len(self._holder) > self.max_agents:
                del self._holder[next(iter(self._holder))]
        elif self._holder.get(signal.serial) == signal.node:
            del self._holder[signal.serial]

    def holder(self, serial: str) -> str | None:
        """The node holding this agent, as far as the signals tell (None: ask the database)."""
        node = self._holder.get(serial)
        return node if node is not None and (node == self.me or node in self._nodes) else None

    def address(self, node: str) -> str | None:
        info = self._nodes.get(node)
        return info.address if info is not None and info.address else None

    def alive(self) -> list[NodeInfo]:
        return sorted(self._nodes.values(), key=lambda n: n.node)

    def next_timer(self) -> float | None:
        """When the next node would fall silent (None: no other node known)."""
        others = [n.last_seen for n in self._nodes.values() if n.node != self.me]
        return min(others) + self.silence if others else None

    def handle_timer(self, now: float) -> list[str]:
        """Forget the nodes silent for ``silence`` seconds, and the agents they held; their ids."""
        gone = [
            n.node for n in self._nodes.values() if n.node != self.me and now - n.last_seen >= self.silence
        ]
        for node in gone:
            del self._nodes[node]
        if gone:
            dead = set(gone)
            for serial in [s for s, n in self._holder.items() if n in dead]:
                del self._holder[serial]
        return sorted(gone)


class NodeWatch:
    """The asyncio side of :class:`NodeTable`: publishes this node's heartbeat every ``interval``
    seconds, feeds received heartbeats and presence into the table, and calls ``on_gone(nodes)``
    when nodes fall silent (the host marks their agents offline in the database)."""

    def __init__(
        self,
        bus: Bus,
        *,
        describe: Callable[[float], NodeHeartbeat],
        on_gone: Callable[[list[str]], Awaitable[None] | None],
        interval: float = DEFAULT_HEARTBEAT_INTERVAL,
        silence: float = DEFAULT_SILENCE,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        """
        :param describe: this node's heartbeat at a wall-clock time (counts, address).
        :param interval: seconds between heartbeats; ``silence`` should be ≥ 3 of them.
        :param clock: monotonic clock for silences; ``wall_clock`` for the ``at`` field only.
        """
        if interval <= 0 or silence < interval:
            raise ValueError("interval must be positive and silence at least one interval")
        self.bus = bus
        self.table = NodeTable(bus.node, silence=silence)
        self.describe = describe
        self.on_gone = on_gone
        self.interval = interval
        self.clock = clock
        self.wall_clock = wall_clock
        self._task: asyncio.Task[None] | None = None
        bus.subscribe(NodeHeartbeat, self._heartbeat)
        bus.subscribe(AgentPresence, self.table.presence)

    def _heartbeat(self, signal: NodeHeartbeat) -> None:
        self.table.heartbeat(signal, self.clock())

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"node-watch-{self.bus.node}")

    async def _run(self) -> None:
        while True:
            if self.bus.state.ready:
                with contextlib.suppress(BusUnavailable):  # closed meanwhile
                    await self.bus.publish(self.describe(self.wall_clock()))
            gone = self.table.handle_timer(self.clock())
            if gone:
                try:
                    result = self.on_gone(gone)
                    if inspect.isawaitable(result):
                        await result
                except Exception:
                    log.exception("handling gone nodes %s failed", gone)
            await asyncio.sleep(self.interval)

    async def close(self) -> None:
        if self._task is not None:
            await stop_task(self._task, what="node watch")
            self._task = None
