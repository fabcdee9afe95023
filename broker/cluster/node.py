"""One object the broker's server owns for everything cluster-wide (docs/cluster.md §7).

:class:`ClusterNode` puts the building blocks together so that wiring the server is a few lines:

- the bus (:func:`~broker.cluster.open_bus`: NATS when a URL is configured, else the in-process
  :class:`~.bus.LocalBus` of the embedded single process, which needs nothing);
- the node table and heartbeat (:class:`~.nodes.NodeWatch`): this node's heartbeat every 5 s with its
  counts and link address, and nodes silent for 15 s marked offline in the database
  (``storage.presence.mark_node_offline``, idempotent: several processes doing it at once is harmless);
- presence (:meth:`ClusterNode.agent_online`, :meth:`ClusterNode.holder`);
- cuts (:meth:`ClusterNode.on_cut`, :meth:`ClusterNode.publish_cut`): the server closes the matching
  agent connections with ``cert_revoked`` / ``subscriber_terminated`` (:func:`cut_code`);
- session signals (:class:`~.signals.SessionRequested`, :class:`~.signals.ConsentChanged`);
- a hook on :attr:`~.bus.BusState.RECOVERED` (signals may have been missed while the bus was lost:
  re-read revoked serials, the queue);
- optionally the node-to-node link's listener (:class:`~.link.LinkServer`), whose address goes into
  the heartbeat.

Signals are at-most-once and the database is the state of record: a publish while the bus is not
ready is logged and dropped (the caller's database write already happened; the polls and the
``RECOVERED`` hook catch up), never raised into the server.

:func:`publish_cut_once` is for the admin CLI, which runs outside the broker: a short-lived bus that
sends one :class:`~.signals.CutAgent` so that ``cert revoke`` / ``subscriber terminate`` cut an agent
held by any process within a second (without NATS the broker's revocation poll does it, as today).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, NamedTuple

from protocol.errors import ErrorCode

from . import open_bus
from .bus import DEFAULT_HEARTBEAT_INTERVAL, Bus, BusState, BusUnavailable
from .link import Frame, Link, LinkServer, NodeCredentials, OnFrame
from .nodes import DEFAULT_SILENCE, NodeInfo, NodeWatch
from .signals import (
    DEFAULT_PREFIX,
    AgentPresence,
    ConsentChanged,
    CutAgent,
    InvalidSignal,
    NodeHeartbeat,
    SessionRequested,
    Signal,
    new_node_id,
)

if TYPE_CHECKING:
    from ..storage import Storage

__all__ = [
    "ClusterConfig",
    "ClusterNode",
    "CutPublisher",
    "CutReason",
    "NodeCounts",
    "cut_code",
    "publish_cut_once",
]

log = logging.getLogger(__name__)

CutReason = Literal["revoked", "terminated", "suspended"]
Callback = Callable[..., Awaitable[None] | None]


class NodeCounts(NamedTuple):
    """What this node holds, for its heartbeat (other nodes' tables, metrics, logs)."""

    agents: int = 0
    operators: int = 0
    sessions: int = 0


def cut_code(signal: CutAgent) -> ErrorCode:
    """The error code an agent connection is closed with for this cut: the same codes the broker's
    revocation poll and contract checks use today (``cert_revoked``, ``subscriber_suspended``,
    ``subscriber_terminated``)."""
    if signal.reason == "revoked":
        return ErrorCode.CERT_REVOKED
    if signal.reason == "suspended":
        return ErrorCode.SUBSCRIBER_SUSPENDED
    return ErrorCode.SUBSCRIBER_TERMINATED


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterConfig:
    """The cluster settings of one broker process (``serve --nats --node-id --cluster-listen``)."""

    node_id: str | None = None
    """This process's name on the bus and in presence rows; ``None``: :func:`new_node_id` (unique per
    start, so a restarted process's old presence rows are never taken for its own)."""

    nats_url: str | None = None
    """``nats://host:4222`` (several comma-separated); ``None``: the in-process bus (one process)."""

    prefix: str = DEFAULT_PREFIX
    """Subject prefix: clusters sharing one NATS server use different ones."""

    link_listen: tuple[str, int] | None = None
    """Where this process listens for node-to-node links (``--cluster-listen IP:PORT``; port 0 picks
    one); ``None``: no link listener (single process). Needs ``link_credentials``."""

    link_credentials: NodeCredentials | None = None
    """This node's certificates from the cluster CA (:meth:`~.link.ClusterCA.issue`)."""

    heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL
    """Seconds between this node's heartbeats."""

    silence: float = DEFAULT_SILENCE
    """Seconds without a heartbeat after which another node is gone (its agents marked offline)."""


class ClusterNode:
    """The server's handle on the cluster. Build, register callbacks, :meth:`start`; :meth:`close` at
    shutdown. Callbacks may be plain functions or coroutines; one that raises is logged and counted
    (``bus.stats.handler_errors``) and the others still run."""

    def __init__(
        self,
        config: ClusterConfig,
        *,
        storage: Storage | None = None,
        counts: Callable[[], NodeCounts] = NodeCounts,
        on_link_frame: OnFrame | None = None,
        bus: Bus | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        """
        :param storage: where gone nodes' agents are marked offline (``None``: nobody marks them).
        :param counts: this node's counts, read for every heartbeat.
        :param on_link_frame: frames arriving on the node-to-node link (with ``link_listen``).
        :param bus: a bus to use instead of the configured one (tests: :class:`~.bus.LocalBus` nodes
            on one :class:`~.bus.LocalHub`).
        """
        if config.link_listen is not None and config.link_credentials is None:
            raise ValueError("a link listener needs the node's cluster credentials")
        self.config = config
        self.bus: Bus = (
            bus
            if bus is not None
            else open_bus(config.nats_url, node=config.node_id or new_node_id(), prefix=config.prefix)
        )
        self.node = self.bus.node
        self.storage = storage
        self.counts = counts
        self.wall_clock = wall_clock
        self.started_at = wall_clock()
        self.link_address = ""
        """``host:port`` of this node's link listener once started (in the heartbeat)."""
        self._on_link_frame = on_link_frame
        self._link_server: LinkServer | None = None
        self._gone_hooks: list[Callback] = []
        self._recovered_hooks: list[Callback] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.watch = NodeWatch(
            self.bus,
            describe=self._describe,
            on_gone=self._gone,
            interval=config.heartbeat_interval,
            silence=config.silence,
        )
        self.bus.on_state(self._state_changed)

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Mark this node's old presence rows offline, open the link listener, start the bus and the
        heartbeat. Returns at once even when NATS does not answer yet (:attr:`ready` says when)."""
        if self.storage is not None:
            await self.storage.presence.mark_node_offline(self.node, now=self.wall_clock())
        if self.config.link_listen is not None and self.config.link_credentials is not None:
            host, port = self.config.link_listen
            self._link_server = LinkServer(self.config.link_credentials, self._link_frame)
            bound = await self._link_server.start(host, port)
            self.link_address = f"[{host}]:{bound}" if ":" in host else f"{host}:{bound}"
        await self.bus.start()
        self.watch.start()

    async def close(self) -> None:
        await self.watch.close()
        if self._link_server is not None:
            await self._link_server.close()
            self._link_server = None
        await self.bus.close()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    @property
    def state(self) -> BusState:
        return self.bus.state

    @property
    def ready(self) -> bool:
        return self.bus.state.ready

    # -- presence ----------------------------------------------------------------------------------

    async def agent_online(self, serial: str, contract_id: str, online: bool) -> bool:
        """Tell every node that this node now holds (or no longer holds) the agent. Call after the
        presence row is written. False when the bus could not take it (logged; the row is the record)."""
        return await self._publish(
            AgentPresence(
                node=self.node, at=self.wall_clock(), serial=serial, contract_id=contract_id, online=online
            )
        )

    def holder(self, serial: str) -> str | None:
        """The node holding this agent as far as the signals tell (this node included); ``None``:
        unknown (ask the database)."""
        return self.watch.table.holder(serial)

    def nodes(self) -> list[NodeInfo]:
        """The nodes alive (this one included once its first heartbeat went round)."""
        return self.watch.table.alive()

    def address(self, node: str) -> str | None:
        """Where node ``node``'s link listener is (from its heartbeat)."""
        return self.watch.table.address(node)

    def on_gone(self, callback: Callable[[list[str]], Awaitable[None] | None]) -> None:
        """Also call ``callback(nodes)`` when nodes fell silent (after their agents were marked
        offline), e.g. to show "reconnecting" on sessions held there."""
        self._gone_hooks.append(callback)

    # -- cuts --------------------------------------------------------------------------------------

    def on_cut(self, callback: Callable[[CutAgent], Awaitable[None] | None]) -> None:
        """``callback(signal)`` for every cut, from any node (this one included): close each agent
        connection whose serial is in ``signal.serials`` or whose contract is ``signal.contract_id``,
        with :func:`cut_code`."""
        self.bus.subscribe(CutAgent, callback)

    async def publish_cut(
        self,
        *,
        serials: tuple[str, ...] = (),
        contract_id: str | None = None,
        reason: CutReason = "revoked",
    ) -> bool:
        """After the database says so (certificate revoked, contract terminated or suspended): cut the
        agent on whichever node holds it. Raises :class:`~.signals.InvalidSignal` for an invalid cut."""
        return await self._publish(cut_signal(self.node, serials, contract_id, reason, self.wall_clock()))

    # -- sessions ----------------------------------------------------------------------------------

    def on_session_requested(self, callback: Callable[[SessionRequested], Awaitable[None] | None]) -> None:
        self.bus.subscribe(SessionRequested, callback)

    async def session_requested(self, session_id: str, contract_id: str) -> bool:
        """A subscriber asked for support here (第31条①): every node's operators re-read the queue."""
        return await self._publish(
            SessionRequested(
                node=self.node, at=self.wall_clock(), session_id=session_id, contract_id=contract_id
            )
        )

    def on_consent_changed(self, callback: Callable[[ConsentChanged], Awaitable[None] | None]) -> None:
        self.bus.subscribe(ConsentChanged, callback)

    async def consent_changed(self, session_id: str, granted: tuple[str, ...]) -> bool:
        """After the receipt is stored: the node serving the operator re-reads it at once."""
        return await self._publish(
            ConsentChanged(node=self.node, at=self.wall_clock(), session_id=session_id, granted=granted)
        )

    def on_recovered(self, callback: Callable[[], Awaitable[None] | None]) -> None:
        """``callback()`` each time the bus comes back after a loss: re-read what may have been missed
        (revoked serials, the queue, presence)."""
        self._recovered_hooks.append(callback)

    # -- internals ---------------------------------------------------------------------------------

    async def _publish(self, signal: Signal) -> bool:
        try:
            await self.bus.publish(signal)
        except BusUnavailable as exc:
            log.warning("cluster %s: %s not sent (%s)", self.node, type(signal).__name__, exc.message)
            return False
        return True

    def _describe(self, at: float) -> NodeHeartbeat:
        counts = self.counts()
        return NodeHeartbeat(
            node=self.node,
            at=at,
            started_at=self.started_at,
            agents=counts.agents,
            operators=counts.operators,
            sessions=counts.sessions,
            address=self.link_address,
        )

    async def _gone(self, nodes: list[str]) -> None:
        if self.storage is not None:
            now = self.wall_clock()
            for node in nodes:
                try:
                    marked = await self.storage.presence.mark_node_offline(node, now=now)
                except Exception as exc:  # the database is away: the hooks still run; agents reconnect
                    log.warning(
                        "cluster %s: marking silent node %s offline failed (%s)",
                        self.node,
                        node,
                        type(exc).__name__,
                    )
                    continue
                log.warning(
                    "cluster %s: node %s is silent; %d of its agents marked offline", self.node, node, marked
                )
        for hook in list(self._gone_hooks):
            await self._run(hook, nodes)

    def _state_changed(self, state: BusState) -> None:
        if state is BusState.RECOVERED:
            for hook in list(self._recovered_hooks):
                task = asyncio.ensure_future(self._run(hook))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _run(self, hook: Callback, *args: object) -> None:
        try:
            result = hook(*args)
            if inspect.isawaitable(result):
                await result
        except Exception:
            self.bus.stats.handler_errors += 1
            log.exception("cluster %s: hook %r failed", self.node, hook)

    def _link_frame(self, link: Link, frame: Frame) -> None:
        if self._on_link_frame is not None:
            self._on_link_frame(link, frame)


def cut_signal(
    node: str, serials: tuple[str, ...], contract_id: str | None, reason: CutReason, at: float
) -> CutAgent:
    """A validated cut (raises :class:`~.signals.InvalidSignal` for nothing to cut or a bad field)."""
    if not serials and not contract_id:
        raise InvalidSignal("a cut names serials or a contract")
    return CutAgent(node=node, at=at, serials=tuple(serials), contract_id=contract_id, reason=reason)


class CutPublisher:
    """For the admin CLI: connect to NATS *before* the database transaction (:meth:`start` returns at
    once, the connection is made meanwhile), publish one :class:`~.signals.CutAgent` right after the
    commit (:meth:`publish`), :meth:`close`. Shortens the time between the commit and the cut."""

    def __init__(self, nats_url: str, *, prefix: str = DEFAULT_PREFIX, timeout: float = 2.0) -> None:
        from .nats_bus import NatsBus

        self.node = f"cli-{new_node_id()}"[:64]
        self.url = nats_url
        self.timeout = timeout
        self.bus = NatsBus(
            self.node, url=nats_url, prefix=prefix, connect_timeout=timeout, reconnect_wait=0.2
        )

    async def start(self) -> None:
        await self.bus.start()

    async def publish(
        self, *, serials: tuple[str, ...] = (), contract_id: str | None = None, reason: CutReason = "revoked"
    ) -> bool:
        """False when NATS does not answer within ``timeout`` (the brokers' poll then cuts)."""
        signal = cut_signal(self.node, serials, contract_id, reason, time.time())
        try:
            if not await self.bus.wait_ready(self.timeout):
                log.warning("NATS at %s does not answer: the brokers' revocation poll will cut", self.url)
                return False
            await self.bus.publish(signal)
            await self.bus.flush(self.timeout)
            return True
        except BusUnavailable:
            return False

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.bus.close()


async def publish_cut_once(
    nats_url: str | None,
    *,
    serials: tuple[str, ...] = (),
    contract_id: str | None = None,
    reason: CutReason = "revoked",
    prefix: str = DEFAULT_PREFIX,
    timeout: float = 2.0,
) -> bool:
    """For the admin CLI, after its database transaction committed: connect to NATS, send one
    :class:`~.signals.CutAgent`, wait until the server has it, close. False when there is no NATS
    (``nats_url`` is ``None``) or it does not answer within ``timeout`` seconds: then the brokers'
    revocation poll cuts the agent within its interval, as in the single process."""
    if not nats_url:
        return False
    cut_signal("cli", serials, contract_id, reason, time.time())  # an invalid cut raises before connecting
    publisher = CutPublisher(nats_url, prefix=prefix, timeout=timeout)
    try:
        await publisher.start()
        return await publisher.publish(serials=serials, contract_id=contract_id, reason=reason)
    except BusUnavailable:
        return False
    finally:
        await publisher.close()
