"""Prometheus metrics of one broker process, and its readiness (docs/cluster.md "Operations").

:class:`BrokerMetrics` owns a registry of its own (never the process-global one, so two brokers in
one test process do not collide) with what an operator of the service watches: agents and operators
connected, sessions by phase, relay bytes and drops, handshakes, refusals by error code, storage
latency, and the cluster bus (state, signals). :func:`render` is the body of ``GET /metrics``;
:func:`readiness` the body of a readiness check (``GET /readyz``): ready only while the database
answers and the bus is connected (or recovered).

Label values come from closed sets (phases, directions, error codes, bus states, signal kinds), so a
hostile client cannot grow the number of series. No metric carries a contract ID, serial, address or
anything a session carries (第33条).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final, Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from protocol.errors import ErrorCode
from wire.slots import HandshakeSlots

from .cluster.bus import Bus, BusState
from .cluster.signals import SIGNAL_TYPES
from .gc_metrics import GcCollector
from .storage.db import Database

__all__ = [
    "CONTENT_TYPE",
    "PHASES",
    "BrokerMetrics",
    "Check",
    "Readiness",
    "probe_storage",
    "readiness",
    "render",
]

CONTENT_TYPE: Final = CONTENT_TYPE_LATEST

#: Session phases (``protocol.messages.SessionPhase``), each always exported, 0 when empty.
PHASES: Final = ("waiting", "consent", "active", "ended")

#: Storage latency buckets in seconds: a SQLite read is ~0.1 ms, a durable write 1–3 ms, PostgreSQL
#: 0.5–2 ms here (docs/storage.md); the top buckets catch a lock wait or a slow network.
STORAGE_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)

#: How long a readiness probe waits for the database.
DEFAULT_PROBE_TIMEOUT: Final = 2.0

Direction = Literal["to_agent", "to_operator"]
DropReason = Literal["stale_frame", "queue_full", "no_consent"]
HandshakePath = Literal["agent", "operator", "enroll", "tls"]
"""``tls``: the TLS handshake itself failed, before any path was sent."""
StorageOp = Literal["read", "write", "probe"]

_ERROR_CODES: Final = frozenset(code.value for code in ErrorCode)


class _BusCollector(Collector):
    """Reads a bus's state and counters at scrape time (the bus knows nothing of Prometheus)."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus

    def collect(self) -> Iterator[Metric]:
        state = GaugeMetricFamily(
            "broker_bus_state", "Cluster bus state (1 for the current one)", labels=["state"]
        )
        for s in BusState:
            state.add_metric([s.value], 1.0 if self.bus.state is s else 0.0)
        yield state
        stats = self.bus.stats
        kinds = [t.__name__ for t in SIGNAL_TYPES]
        published = CounterMetricFamily(
            "broker_bus_signals_published", "Signals this process published", labels=["kind"]
        )
        received = CounterMetricFamily(
            "broker_bus_signals_received", "Signals this process received", labels=["kind"]
        )
        for kind in kinds:
            published.add_metric([kind], stats.published.get(kind, 0))
            received.add_metric([kind], stats.received.get(kind, 0))
        yield published
        yield received
        yield CounterMetricFamily(
            "broker_bus_invalid_messages",
            "Messages on the bus that were not valid signals",
            value=stats.invalid,
        )
        yield CounterMetricFamily(
            "broker_bus_handler_errors", "Signal handlers that raised", value=stats.handler_errors
        )
        yield CounterMetricFamily(
            "broker_bus_losses", "Times the bus connection was lost", value=stats.losses
        )


class BrokerMetrics:
    """The metrics of one broker process. The host calls the ``set_*``/``count_*`` methods where the
    events happen (docs/cluster.md lists where); reading them costs nothing until a scrape."""

    def __init__(self, node: str, *, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self.info = Gauge("broker_info", "This broker process (always 1)", ["node"], registry=r)
        self.info.labels(node=node).set(1)
        r.register(GcCollector())
        self.agents = Gauge("broker_agents_connected", "Agents connected to this process", registry=r)
        self.operators = Gauge("broker_operators_connected", "Operator links on this process", registry=r)
        self.sessions = Gauge(
            "broker_sessions", "Support sessions on this process by phase", ["phase"], registry=r
        )
        for phase in PHASES:
            self.sessions.labels(phase=phase).set(0)
        self.relay_bytes = Counter(
            "broker_relay_bytes", "Session bytes relayed, by direction", ["direction"], registry=r
        )
        self.relay_drops = Counter(
            "broker_relay_drops", "Relay messages dropped, by reason", ["reason"], registry=r
        )
        for direction in ("to_agent", "to_operator"):
            self.relay_bytes.labels(direction=direction)
        for reason in ("stale_frame", "queue_full", "no_consent"):
            self.relay_drops.labels(reason=reason)
        self.handshakes = Counter(
            "broker_handshakes",
            "TLS WebSocket handshakes, by path and outcome",
            ["path", "outcome"],
            registry=r,
        )
        self.refusals = Counter("broker_refusals", "Refusals sent, by error code", ["code"], registry=r)
        self.refused_full = Counter(
            "broker_connections_refused_full",
            "Connections closed at accept: the process's file descriptors are at the ceiling",
            registry=r,
        )
        self.tls_resumed = Counter(
            "broker_tls_resumed",
            "Agent connections on a resumed TLS session (a ticket of this or another process), "
            "admitted or refused",
            registry=r,
        )
        self.storage_latency = Histogram(
            "broker_storage_seconds",
            "Storage transaction latency",
            ["op"],
            buckets=STORAGE_BUCKETS,
            registry=r,
        )
        self.storage_errors = Counter(
            "broker_storage_errors", "Storage operations that failed", ["op"], registry=r
        )

    # -- what the host calls -------------------------------------------------------------------------

    def set_connected(self, *, agents: int, operators: int) -> None:
        self.agents.set(agents)
        self.operators.set(operators)

    def set_sessions(self, by_phase: Mapping[str, int]) -> None:
        """Every phase's count (missing phases are 0)."""
        unknown = set(by_phase) - set(PHASES)
        if unknown:
            raise ValueError(f"unknown session phases: {sorted(unknown)}")
        for phase in PHASES:
            self.sessions.labels(phase=phase).set(by_phase.get(phase, 0))

    def count_relay(self, direction: Direction, nbytes: int) -> None:
        self.relay_bytes.labels(direction=direction).inc(nbytes)

    def count_drop(self, reason: DropReason, n: int = 1) -> None:
        self.relay_drops.labels(reason=reason).inc(n)

    def count_handshake(self, path: HandshakePath, *, ok: bool) -> None:
        self.handshakes.labels(path=path, outcome="ok" if ok else "failed").inc()

    def count_refused_full(self) -> None:
        """A connection closed at accept (``wire.listener``: RLIMIT_NOFILE minus the reserve)."""
        self.refused_full.inc()

    def count_refusal(self, code: ErrorCode | str) -> None:
        """One refusal by its stable code; a string that is no :class:`ErrorCode` counts as ``internal``
        (so the label set stays closed)."""
        value = code.value if isinstance(code, ErrorCode) else code
        self.refusals.labels(code=value if value in _ERROR_CODES else ErrorCode.INTERNAL.value).inc()

    @contextmanager
    def time_storage(self, op: StorageOp) -> Iterator[None]:
        """``with metrics.time_storage("write"): await storage…`` — latency, and failures counted."""
        start = time.perf_counter()
        try:
            yield
        except BaseException:
            self.storage_errors.labels(op=op).inc()
            raise
        finally:
            self.storage_latency.labels(op=op).observe(time.perf_counter() - start)

    def watch_bus(self, bus: Bus) -> None:
        self.registry.register(_BusCollector(bus))

    def watch_slots(self, slots: HandshakeSlots) -> None:
        self.registry.register(_SlotCollector(slots))

    def watch_pool(self, db: Database) -> None:
        self.registry.register(_PoolCollector(db))


class _PoolCollector(Collector):
    """The PostgreSQL connection pool (``Database.pool_stats``), read at scrape time: whether
    transactions wait for a connection, and how long. Nothing on SQLite (no pool)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def collect(self) -> Iterator[Metric]:
        stats = self.db.pool_stats()
        if not stats:
            return
        connections = GaugeMetricFamily(
            "broker_storage_pool_connections", "Database connections of this process", labels=["state"]
        )
        connections.add_metric(["open"], stats.get("pool_size", 0))
        connections.add_metric(["idle"], stats.get("pool_available", 0))
        yield connections
        yield GaugeMetricFamily(
            "broker_storage_pool_waiting",
            "Transactions waiting for a free database connection (one that gave up is counted until the"
            " next connection is returned)",
            value=stats.get("requests_waiting", 0),
        )
        yield CounterMetricFamily(
            "broker_storage_pool_queued",
            "Transactions that had to wait for a free database connection",
            value=stats.get("requests_queued", 0),
        )
        yield CounterMetricFamily(
            "broker_storage_pool_wait_seconds",
            "Time transactions spent waiting for a free database connection",
            value=stats.get("requests_wait_ms", 0) / 1000,
        )
        yield CounterMetricFamily(
            "broker_storage_pool_timeouts",
            "Transactions that got no database connection in time (storage_unavailable)",
            value=stats.get("requests_errors", 0),
        )
        yield CounterMetricFamily(
            "broker_storage_pool_connections_lost",
            "Database connections found broken (server gone, network cut) and replaced",
            value=stats.get("connections_lost", 0) + stats.get("returns_bad", 0),
        )


class _SlotCollector(Collector):
    """The listener's TLS handshake slots (:mod:`wire.slots`), read at scrape time."""

    def __init__(self, slots: HandshakeSlots) -> None:
        self.slots = slots

    def collect(self) -> Iterator[Metric]:
        s = self.slots
        yield GaugeMetricFamily(
            "broker_handshakes_in_progress", "TLS handshakes under way (holding a slot)", value=s.in_progress
        )
        yield GaugeMetricFamily(
            "broker_handshakes_waiting", "Connections waiting for a TLS handshake slot", value=s.waiting
        )
        closed = CounterMetricFamily(
            "broker_handshakes_unserved",
            "Connections closed without TLS work: waited too long for a slot, or too many waited",
            labels=["reason"],
        )
        closed.add_metric(["expired"], s.stats.expired)
        closed.add_metric(["overflow"], s.stats.overflowed)
        yield closed
        yield GaugeMetricFamily(
            "broker_handshake_longest_wait_seconds",
            "The longest wait for a slot of a connection that got one",
            value=s.stats.longest_wait,
        )


def render(metrics: BrokerMetrics) -> bytes:
    """The Prometheus text exposition (``Content-Type:`` :data:`CONTENT_TYPE`)."""
    return generate_latest(metrics.registry)


# -- readiness -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True, slots=True)
class Readiness:
    checks: tuple[Check, ...]

    @property
    def ready(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def status(self) -> int:
        """HTTP status for ``/readyz``: 200 ready, 503 not (a load balancer stops sending new
        connections; established ones stay)."""
        return 200 if self.ready else 503

    def body(self) -> bytes:
        return json.dumps(
            {"ready": self.ready, "checks": {c.name: {"ok": c.ok, "detail": c.detail} for c in self.checks}},
            ensure_ascii=False,
        ).encode()


async def probe_storage(
    db: Database, *, timeout: float = DEFAULT_PROBE_TIMEOUT, metrics: BrokerMetrics | None = None
) -> Check:
    """One read (``SELECT 1``) within ``timeout``: the database answers, or why not. The
    detail names the failure's kind only (a driver's message may carry a host or user name)."""

    async def one() -> None:
        async with db.read_statement() as tx:
            await tx.fetchone("SELECT 1")

    start = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            await one()
    except TimeoutError:
        ok, detail = False, f"no answer within {timeout:g} s"
    except Exception as exc:
        ok, detail = False, f"unavailable ({type(exc).__name__})"
    else:
        ok, detail = True, f"{db.dialect} answers in {(time.perf_counter() - start) * 1000:.1f} ms"
    if metrics is not None:
        metrics.storage_latency.labels(op="probe").observe(time.perf_counter() - start)
        if not ok:
            metrics.storage_errors.labels(op="probe").inc()
    return Check("storage", ok, detail)


def bus_check(bus: Bus | None) -> Check:
    if bus is None:
        return Check("bus", True, "single process: no cluster bus")
    return Check("bus", bus.state.ready, bus.state.value)


async def readiness(
    *,
    db: Database,
    bus: Bus | None,
    timeout: float = DEFAULT_PROBE_TIMEOUT,
    metrics: BrokerMetrics | None = None,
) -> Readiness:
    """Ready = the database answers within ``timeout`` and the bus (if any) is connected/recovered.
    ``/healthz`` stays "the process runs"; this is what a load balancer or orchestrator asks before
    sending new agents here."""
    return Readiness((await probe_storage(db, timeout=timeout, metrics=metrics), bus_check(bus)))
