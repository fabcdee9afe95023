"""The broker's side of the cluster (docs/cluster.md §7, steps 1–3, 6 and 9), mixed into
:class:`broker.server.Broker` as :class:`ClusterHost`.

- :attr:`ClusterHost.cluster`, the process's one :class:`~broker.cluster.node.ClusterNode`: NATS with
  ``serve --nats``, else the in-process bus (one process, nothing to run). Built and started in
  ``start()`` before the session host, closed in ``close()``.
- Presence: every agent that connects or leaves this process is announced (``AgentPresence``).
- Cuts (第18条, 第20条/第21条): a ``CutAgent`` from any process (the admin CLI, another broker)
  closes the matching agent connections this process holds, at once, with the code the revocation
  poll uses; the poll stays as the safety net, and when the bus comes back after a loss the revoked
  serials are read again at once (a cut may have been missed meanwhile).
- Login and enrollment limits per address, shared by every process on the database
  (:class:`SharedAddressLimit`).
- Metrics (:class:`~broker.metrics.BrokerMetrics`) and the readiness probe: a lost database or bus is
  logged once when it goes and once when it comes back.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING

from protocol import CLOSE_POLICY
from protocol.messages import Error
from wire.tasks import stop_task

from .cluster.bus import BusState
from .cluster.ca_files import node_credentials
from .cluster.link import Frame
from .cluster.link import Link as NodeLink
from .cluster.node import ClusterConfig, ClusterNode, NodeCounts, cut_code
from .cluster.ops import OpsEndpoints
from .cluster.signals import CutAgent
from .config import BrokerConfig
from .metrics import PHASES, BrokerMetrics
from .peers import AgentConnection
from .policy import RateLimit
from .session_links import SessionLinks
from .session_sweep import SessionSweep
from .storage import Storage
from .storage.guards import SharedLimits

if TYPE_CHECKING:
    from .operator_links import OperatorLinks
    from .session_host import SessionHost

__all__ = ["CUT_MESSAGES", "ClusterHost", "SharedAddressLimit"]

log = logging.getLogger("broker")

CUT_MESSAGES = {
    "revoked": "この証明書は失効しました / this certificate has been revoked",
    "terminated": "契約は解約されました / the contract is terminated",
    "suspended": "サービスは停止中です（第18条） / the service is suspended (第18条)",
}
"""What the agent is told when a cut closes its connection (Japanese first, English fallback)."""


class SharedAddressLimit:
    """At most ``limit`` attempts per client address per ``window`` seconds, counted in the shared
    database (``SharedLimits``, key ``<name>:addr:<ip>``) so that spreading attempts over the processes
    gains nothing (第18条⑤'s style of limit, docs/cluster.md §2).

    An in-memory window of the same size is checked first: an address already over the limit on this
    process is refused without touching the database, so a flood costs at most ``limit`` database
    writes per address per window per process. Before :meth:`attach`, or while the database fails,
    only the in-memory window counts (the attempt itself then meets the same failure)."""

    def __init__(self, name: str, limit: int, window: float) -> None:
        self.name = name
        self.limit = limit
        self.window = window
        self.local = RateLimit(limit, window)
        self.shared: SharedLimits | None = None

    def attach(self, shared: SharedLimits) -> None:
        self.shared = shared

    async def hit(self, address: str, now: float) -> float | None:
        """Count one attempt: None if it may go on, else the seconds until one more fits."""
        if (retry := self.local.check(address, now)) is not None:
            return retry
        self.local.record(address, now)
        if self.shared is None:
            return None
        try:
            return await self.shared.hit(
                f"{self.name}:addr:{address}", limit=self.limit, window=self.window, now=now
            )
        except Exception as exc:  # a full disk, PostgreSQL away: the in-memory window still holds, and
            # the login or enrollment itself answers storage_unavailable honestly
            log.warning(
                "shared %s limit not counted: the database failed (%s)", self.name, type(exc).__name__
            )
            return None


class ClusterHost:
    """The cluster half of :class:`broker.server.Broker` (its lifecycle calls :meth:`_cluster_start`
    and :meth:`_cluster_close`)."""

    config: BrokerConfig
    clock: Callable[[], float]
    storage: Storage
    agents: dict[str, set[AgentConnection]]
    agent_count: int
    revoked: list[tuple[str, float]]
    sessions: SessionHost
    operator_links: OperatorLinks
    cluster: ClusterNode
    """This process's handle on the cluster (docs/cluster.md §7); exists once ``start()`` ran."""
    metrics: BrokerMetrics
    _login_attempts: SharedAddressLimit
    _enroll_attempts: SharedAddressLimit
    _ops_endpoints: OpsEndpoints

    async def _refresh_revoked(self) -> None:
        raise NotImplementedError

    def _cluster_init(self) -> None:
        """In ``__init__``: what exists before ``start()``."""
        self.metrics = BrokerMetrics(self.config.node)
        self._login_attempts = SharedAddressLimit("login", self.config.login_attempts_per_minute, 60.0)
        self._enroll_attempts = SharedAddressLimit("enroll", self.config.enroll_attempts_per_minute, 60.0)
        self._cluster_tasks: set[asyncio.Task[None]] = set()
        self._ready_logged: bool | None = None

    async def _cluster_start(self) -> None:
        """After the storage is open, before the session host: the bus, presence, cuts, limits."""
        self.metrics.watch_pool(self.storage.db)
        limits = SharedLimits(self.storage.db)
        self._login_attempts.attach(limits)
        self._enroll_attempts.attach(limits)
        listen = self.config.cluster_listen
        credentials = None
        if listen is not None:  # from the cluster CA in the shared data dir (broker.cluster.ca_files)
            credentials = await asyncio.to_thread(
                node_credentials, self.config.data_dir, self.config.node, host=listen[0]
            )
        self._link_credentials = credentials
        self._link_handlers: list[Callable[[NodeLink, Frame], None]] = []
        self.cluster = ClusterNode(
            ClusterConfig(
                node_id=self.config.node,
                nats_url=self.config.nats_url,
                prefix=self.config.nats_prefix,
                link_listen=listen,
                link_credentials=credentials,
            ),
            storage=self.storage,
            counts=self._node_counts,
            on_link_frame=self._link_frame,
        )
        self.cluster.on_cut(self._cut)
        self.cluster.on_recovered(self._revocations_now)
        self.cluster.on_gone(self._nodes_gone)
        self.cluster.bus.on_state(self._bus_state)
        # It marks this node's own old presence rows offline (after a crash), then connects; NATS
        # not answering yet is not an error: /readyz says 503 until it does.
        await self.cluster.start()
        ops = self._ops_endpoints_for_host()
        ops.watch_bus(self.cluster.bus)
        ops.on_probe = self._probe_result

    def _link_frame(self, link: NodeLink, frame: Frame) -> None:
        """A frame from another node's link (session traffic: broker.session_links)."""
        for handler in self._link_handlers:
            handler(link, frame)

    async def _cluster_sessions(self, host: SessionHost) -> None:
        """With ``--nats``, sessions across processes (docs/cluster.md §6a): the queue of the whole
        cluster, operator on one process and agent on another over the node link, adoption and
        hand-over. One process (no ``--nats``) keeps its waiting requests in its own core."""
        if self.config.nats_url is None:
            return
        if self._link_credentials is not None:
            links = SessionLinks(host, credentials=self._link_credentials, address=self.cluster.address)
            self._link_handlers.append(links.on_listener_frame)
            host.links = links
        self.cluster.on_session_requested(lambda signal: host.session_signal(signal.session_id, signal.node))
        self.cluster.on_recovered(host.refresh_queue)
        host.signals = self.cluster
        await host.refresh_queue()
        cluster = self.cluster
        self._sweep = SessionSweep(
            self.storage,
            node=self.config.node,
            live_nodes=lambda: [n.node for n in cluster.nodes()],
            ready=lambda: cluster.ready,
            grace=self.config.session_rules.grace,
            on_swept=host.swept,
            interval=self.config.session_sweep_interval,
        )
        self._sweep.start()

    @property
    def clustered(self) -> bool:
        """Part of a cluster (``--nats``): a claimed session outlives this process."""
        return self.config.nats_url is not None

    def _cluster_listening(self) -> None:
        """Once the listener is up: the readiness probe runs from now on (not before: a start that
        fails has nothing to cancel)."""
        self._ops_endpoints_for_host().start(self.storage.db)

    async def _cluster_close(self) -> None:
        ops: OpsEndpoints | None = getattr(self, "_ops_endpoints", None)
        if ops is not None:
            await ops.close()
        sweep: SessionSweep | None = getattr(self, "_sweep", None)
        if sweep is not None:
            await sweep.close()
        cluster: ClusterNode | None = getattr(self, "cluster", None)
        if cluster is not None:
            await cluster.close()
        for task in list(self._cluster_tasks):
            task.cancel()
        for task in list(self._cluster_tasks):
            await stop_task(task, what="cluster task")

    def _ops_endpoints_for_host(self) -> OpsEndpoints:
        ops: OpsEndpoints | None = getattr(self, "_ops_endpoints", None)
        if ops is None:
            ops = OpsEndpoints(self.metrics, metrics_from=self.config.metrics_from)
            self._ops_endpoints = ops
        return ops

    # -- presence ---------------------------------------------------------------------------------

    def _presence_changed(self, serial: str, contract_id: str, *, online: bool) -> None:
        """Tell every process that this one holds (or no longer holds) the agent; a bus that is not
        ready drops it (logged): the presence row is the record."""
        cluster: ClusterNode | None = getattr(self, "cluster", None)
        if cluster is None:
            return
        self._spawn(cluster.agent_online(serial, contract_id, online))

    def _spawn(self, coro: object) -> None:
        task = asyncio.ensure_future(coro)  # type: ignore[call-overload]
        self._cluster_tasks.add(task)
        task.add_done_callback(self._cluster_tasks.discard)

    def _node_counts(self) -> NodeCounts:
        sessions: SessionHost | None = getattr(self, "sessions", None)
        links: OperatorLinks | None = getattr(self, "operator_links", None)
        return NodeCounts(
            agents=self.agent_count,
            operators=len(links) if links is not None else 0,
            sessions=len(sessions.sessions) if sessions is not None else 0,
        )

    def _nodes_gone(self, nodes: list[str]) -> None:
        log.warning("cluster: node(s) %s fell silent; their agents are marked offline", ", ".join(nodes))

    # -- cuts -------------------------------------------------------------------------------------

    def _cut(self, signal: CutAgent) -> None:
        """Close every agent connection of this process that the cut names (by serial or contract)."""
        code = cut_code(signal)
        serials = set(signal.serials)
        cut = 0
        for serial, conns in list(self.agents.items()):
            for conn in list(conns):
                if serial in serials or (
                    signal.contract_id is not None and conn.contract_id == signal.contract_id
                ):
                    conn.pump.send(Error(code=code.value, message=CUT_MESSAGES[signal.reason]))
                    conn.pump.close(CLOSE_POLICY, code.value)
                    self.metrics.count_refusal(code)
                    cut += 1
        # Logged on every process, also when it held none (cuts are rare; the line shows the signal came).
        log.info("cluster: cut %d agent connection(s) (%s, from %s)", cut, code.value, signal.node)
        if signal.reason == "revoked" or signal.reason == "terminated":
            self._spawn(self._refresh_revoked_logged())  # the CRL and the next admissions

    async def _refresh_revoked_logged(self) -> None:
        try:
            await self._refresh_revoked()
        except Exception as exc:  # the poll tries again
            log.warning("reading revoked certificates failed (%s)", type(exc).__name__)

    async def _revocations_now(self) -> None:
        """The bus came back: a cut may have been missed meanwhile; apply the database's list now."""
        await self._refresh_revoked()
        revoked = {serial for serial, _ in self.revoked}
        for serial in revoked & self.agents.keys():
            self._cut(CutAgent(node=self.cluster.node, at=self.clock(), serials=(serial,), reason="revoked"))

    # -- readiness and metrics --------------------------------------------------------------------

    def _bus_state(self, state: BusState) -> None:
        if state is BusState.LOST:
            log.error("cluster bus lost (NATS): not ready; cuts and presence wait for it to return")
        elif state is BusState.RECOVERED:
            log.warning("cluster bus recovered (NATS): ready again")

    def _probe_result(self, ok: bool, detail: str) -> None:
        if ok is self._ready_logged:
            return
        if not ok:
            log.error("database unreachable: not ready (%s)", detail)
        elif self._ready_logged is not None:
            log.warning("database answers again: ready")
        self._ready_logged = ok

    def _refresh_metrics(self) -> None:
        """At each scrape: the gauges read from what this process holds now."""
        links: OperatorLinks | None = getattr(self, "operator_links", None)
        self.metrics.set_connected(
            agents=self.agent_count,
            operators=len(links) if links is not None else 0,
        )
        sessions: SessionHost | None = getattr(self, "sessions", None)
        if sessions is not None:
            phases = Counter(str(s.phase) for s in sessions.sessions.values())
            self.metrics.set_sessions({p: n for p, n in phases.items() if p in PHASES})
