"""The sweep of orphaned sessions in a cluster (docs/cluster.md §6a).

A claimed session's grace timer lives in the memory of the process holding it. When that process
dies (``kill -9``, a power cut) and the agent never comes back, nobody holds the timer and the session
row would stay open for ever. Every live process therefore looks, every ``interval`` seconds, at the
open session rows and ends those

- whose holding node (the row's ``node``, set at the claim, moved by an adoption) is not alive (no
  heartbeat within the silence: :class:`broker.cluster.nodes.NodeTable`), and
- whose agent is not connected to a live node (its presence row), and
- whose grace has passed: the agent was last seen (presence ``last_seen``) at least ``grace`` seconds
  ago, **and** this process has seen the row orphaned for at least ``grace`` seconds of its own
  monotonic clock (so a wall clock that differs between processes cannot end a session early).

The end is what a grace expiry writes (``session.end``, ``ended_by`` broker, reason ``agent_lost``,
in the row's transaction with the audit entry), plus ``held_by`` and ``swept_by``. It is one
conditional ``UPDATE … WHERE ended_at IS NULL AND node = <the dead holder>``: of two sweepers only one
ends it, and an adoption that moved the row first (``SessionLog.adopted``) wins over the sweep.

A process only sweeps while its bus is ready and has been for ``settle`` seconds (the node silence):
before that its table of live nodes is still filling up and every other node would look dead.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Final

from wire.tasks import stop_task

from .cluster.nodes import DEFAULT_SILENCE
from .storage import Storage
from .storage.repo_records import OpenSession

__all__ = ["SWEEP_BATCH", "SWEEP_INTERVAL", "SessionSweep", "Swept"]

log = logging.getLogger("broker.sessions")

SWEEP_INTERVAL: Final = 60.0
"""Seconds between two sweeps of each process (``serve --session-sweep``). An orphaned session ends
between one and two intervals after its holder fell silent (15 s) and its grace passed."""

SWEEP_BATCH: Final = 1000
"""Open session rows read per sweep at most (oldest first); more are read at the next sweeps."""

REASON: Final = "agent_lost"
"""The reason a grace expiry writes (``broker.core.core``): the agent did not come back."""


@dataclass(frozen=True, slots=True)
class Swept:
    """A session this process ended in a sweep."""

    session_id: str
    contract_id: str
    operator: str
    held_by: str


class SessionSweep:
    def __init__(
        self,
        storage: Storage,
        *,
        node: str,
        live_nodes: Callable[[], Iterable[str]],
        ready: Callable[[], bool],
        grace: float,
        on_swept: Callable[[Swept], Awaitable[None] | None] | None = None,
        interval: float = SWEEP_INTERVAL,
        settle: float = DEFAULT_SILENCE,
        batch: int = SWEEP_BATCH,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """
        :param live_nodes: the nodes heard from within the silence (``ClusterNode.nodes``).
        :param ready: whether the bus is up (``ClusterNode.ready``): no sweep while it is not.
        :param grace: the session rules' grace (``serve --grace``).
        :param interval: seconds between sweeps (:data:`SWEEP_INTERVAL`).
        :param settle: seconds the bus must have been ready before a sweep (the node silence).
        :param batch: open rows read per sweep at most (:data:`SWEEP_BATCH`).
        :param clock: wall clock (the rows' times); ``monotonic`` for how long a row looked orphaned.
        """
        if interval <= 0 or grace < 0 or settle < 0 or batch < 1:
            raise ValueError("interval and batch must be positive, grace and settle not negative")
        self.storage = storage
        self.node = node
        self.live_nodes = live_nodes
        self.ready = ready
        self.grace = grace
        self.on_swept = on_swept
        self.interval = interval
        self.settle = settle
        self.batch = batch
        self.clock = clock
        self.monotonic = monotonic
        self._ready_since: float | None = None
        self._suspects: dict[str, tuple[str, float]] = {}
        """Session id → (its dead holder, when this process first saw it orphaned)."""
        self._task: asyncio.Task[None] | None = None

    def _orphaned(self, row: OpenSession, live: set[str]) -> bool:
        holder = row.record.node
        if holder in live:
            return False
        return not (row.agent_online and row.agent_node in live)

    async def sweep(self) -> list[Swept]:
        """One pass: the sessions ended now (by this process)."""
        mono = self.monotonic()
        if not self.ready():
            self._ready_since = None
            self._suspects.clear()
            return []
        if self._ready_since is None:
            self._ready_since = mono
        if mono - self._ready_since < self.settle:
            return []
        live = {*self.live_nodes(), self.node}
        rows = await self.storage.sessions.open_sessions(limit=self.batch)
        suspects: dict[str, tuple[str, float]] = {}
        swept: list[Swept] = []
        for row in rows:
            record = row.record
            if not self._orphaned(row, live):
                continue
            holder, first = self._suspects.get(record.id, (record.node, mono))
            if holder != record.node:
                holder, first = record.node, mono
            suspects[record.id] = (holder, first)
            now = self.clock()
            seen = row.agent_seen if row.agent_seen is not None else record.started_at
            if mono - first < self.grace or now - seen < self.grace:
                continue
            ended = await self.storage.sessions.ended(
                record.id,
                now=now,
                by="broker",
                reason=REASON,
                bytes_to_agent=0,
                bytes_to_operator=0,
                held_by=holder,
                details={
                    "started_at": record.started_at,
                    "ended_at": now,
                    "duration": round(now - record.started_at, 3),
                    "held_by": holder,
                    "swept_by": self.node,
                    "agent_last_seen": row.agent_seen,
                    "bytes_counted": False,
                },
            )
            suspects.pop(record.id, None)
            if not ended:
                continue  # another sweeper, an adoption or the holder itself came first
            log.warning(
                "session %s ended: its process %s is gone and its agent did not come back", record.id, holder
            )
            done = Swept(record.id, record.contract_id, record.operator, holder)
            swept.append(done)
            if self.on_swept is not None:
                try:
                    result = self.on_swept(done)
                    if inspect.isawaitable(result):
                        await result
                except Exception:
                    log.exception("telling about the swept session %s failed", record.id)
        self._suspects = suspects
        return swept

    def start(self) -> None:
        if self._task is None:
            name = f"session-sweep-{self.node}"
            self._task = asyncio.get_running_loop().create_task(self._run(), name=name)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.sweep()
            except Exception:  # a database away now: the next sweep tries again
                log.exception("session sweep failed")

    async def close(self) -> None:
        if self._task is not None:
            await stop_task(self._task, what="session sweep")
            self._task = None
