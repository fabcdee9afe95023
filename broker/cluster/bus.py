"""The cluster bus: typed signals between broker processes, with a state a readiness check can read.

Two implementations of one interface (:class:`Bus`):

- :class:`LocalBus` — in the process, for the embedded single-process default (``./scripts/serve``:
  no NATS, nothing to configure). Several ``LocalBus`` on one :class:`LocalHub` behave like nodes of
  one cluster (used by tests of the wiring).
- :class:`broker.cluster.nats_bus.NatsBus` — on NATS (nats-py), for many processes and nodes.

Both deliver every signal to every subscribed node **including the sender** (a revocation published
on node A cuts an agent held on node A through the same handler as on node B), and a signal
addressed to one node (:class:`~.signals.WakeUp`) only to that node. Handlers are plain callbacks
registered per signal type; one that returns an awaitable is awaited; one that raises is logged and
counted, and the bus carries on. Signals are at-most-once: a node that is cut off from NATS misses
what was sent meanwhile, so each handler's state of record is the database, and on
:attr:`BusState.RECOVERED` the host re-reads what it may have missed (revoked serials, the queue).
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, TypeVar

from ..errors import BrokerError
from .signals import (
    SIGNAL_TYPES,
    InvalidSignal,
    Signal,
    WakeUp,
    check_node_id,
    decode_signal,
    encode_signal,
)

__all__ = [
    "DEFAULT_HEARTBEAT_INTERVAL",
    "Bus",
    "BusState",
    "BusStats",
    "BusUnavailable",
    "HandlerBus",
    "Handlers",
    "LocalBus",
    "LocalHub",
]

log = logging.getLogger(__name__)

#: Seconds between two :class:`~.signals.NodeHeartbeat` of a process; a node silent for three
#: intervals is taken as gone (its agents reconnect elsewhere on their own).
DEFAULT_HEARTBEAT_INTERVAL: Final = 5.0

S = TypeVar("S", bound=Signal)
Handler = Callable[[S], Awaitable[None] | None]
StateListener = Callable[["BusState"], None]


class BusUnavailable(BrokerError):
    """Nothing to publish through: the bus has not connected yet, or is closed. (While a connection
    is *lost*, NATS buffers what is published and sends it on recovery.)"""


class BusState(enum.Enum):
    """Where the bus stands; :attr:`ready` is what a readiness check reports.

    CONNECTING → CONNECTED → LOST → RECOVERED → LOST → … → CLOSED. ``RECOVERED`` is ready like
    ``CONNECTED``, and tells the host that signals may have been missed while ``LOST``.
    """

    CONNECTING = "connecting"
    CONNECTED = "connected"
    LOST = "lost"
    RECOVERED = "recovered"
    CLOSED = "closed"

    @property
    def ready(self) -> bool:
        return self in (BusState.CONNECTED, BusState.RECOVERED)


@dataclass(slots=True)
class BusStats:
    """Counters the metrics module reads (``broker.metrics``); only ever increase."""

    published: dict[str, int] = field(default_factory=dict)
    received: dict[str, int] = field(default_factory=dict)
    invalid: int = 0
    """Messages on our subjects that were not valid signals (dropped)."""
    handler_errors: int = 0
    losses: int = 0
    """How often the connection was lost."""

    def count(self, table: dict[str, int], kind: str) -> None:
        table[kind] = table.get(kind, 0) + 1


class Bus(Protocol):
    """What the broker's host sees of the cluster bus."""

    node: str

    @property
    def state(self) -> BusState: ...

    @property
    def stats(self) -> BusStats: ...

    def subscribe(self, signal_type: type[S], handler: Handler[S]) -> None:
        """Call ``handler`` with every signal of this type this node receives (several per type allowed)."""
        ...

    def on_state(self, listener: StateListener) -> None:
        """Call ``listener`` with each new state (to re-read the database on ``RECOVERED``)."""
        ...

    async def start(self) -> None:
        """Begin connecting; returns at once (the state says when the bus is ready)."""
        ...

    async def publish(self, signal: Signal) -> None:
        """Send a signal to every node (or to ``signal.target``). Raises
        :class:`~.signals.InvalidSignal` for an invalid or oversized signal, :class:`BusUnavailable`
        before the first connection and after close."""
        ...

    async def close(self) -> None: ...


class Handlers:
    """The per-type handler table and the state bookkeeping both implementations share."""

    def __init__(self, node: str) -> None:
        self.node = check_node_id(node)
        self.table: dict[type[Any], list[Handler[Any]]] = {t: [] for t in SIGNAL_TYPES}
        self.listeners: list[StateListener] = []
        self.stats = BusStats()
        self.state = BusState.CONNECTING
        self.state_since = time.monotonic()
        self._tasks: set[asyncio.Task[None]] = set()

    def add(self, signal_type: type[S], handler: Handler[S]) -> None:
        if signal_type not in self.table:
            raise TypeError(f"{signal_type!r} is not a signal type")
        self.table[signal_type].append(handler)

    def set_state(self, state: BusState) -> None:
        if state is self.state:
            return
        if state is BusState.LOST:
            self.stats.losses += 1
        log.info("cluster bus %s: %s → %s", self.node, self.state.value, state.value)
        self.state = state
        self.state_since = time.monotonic()
        for listener in list(self.listeners):
            try:
                listener(state)
            except Exception:
                log.exception("cluster bus state listener failed")

    def deliver_bytes(self, data: bytes) -> None:
        """Validate and dispatch one message from the wire; invalid ones are dropped and counted."""
        try:
            signal = decode_signal(data)
        except InvalidSignal as exc:
            self.stats.invalid += 1
            log.warning("cluster bus %s dropped a message: %s", self.node, exc.message)
            return
        self.deliver(signal)

    def deliver(self, signal: Signal) -> None:
        if isinstance(signal, WakeUp) and signal.target != self.node:
            return
        self.stats.count(self.stats.received, type(signal).__name__)
        for handler in self.table[type(signal)]:
            try:
                result = handler(signal)
            except Exception:
                self.stats.handler_errors += 1
                log.exception("cluster bus handler for %s failed", type(signal).__name__)
                continue
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(self._await(result, type(signal).__name__))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _await(self, result: Awaitable[None], kind: str) -> None:
        try:
            await result
        except Exception:
            self.stats.handler_errors += 1
            log.exception("cluster bus handler for %s failed", kind)

    async def drain(self) -> None:
        """Wait for handler coroutines still running (at close)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


class HandlerBus:
    """What both buses (:class:`LocalBus`, :class:`~.nats_bus.NatsBus`) share of the :class:`Bus`
    protocol: the node id, the state, the counters and the subscriptions, all kept in one
    :class:`Handlers`."""

    def __init__(self, node: str) -> None:
        self._handlers = Handlers(node)
        self.node = self._handlers.node

    @property
    def state(self) -> BusState:
        return self._handlers.state

    @property
    def stats(self) -> BusStats:
        return self._handlers.stats

    def subscribe(self, signal_type: type[S], handler: Handler[S]) -> None:
        self._handlers.add(signal_type, handler)

    def on_state(self, listener: StateListener) -> None:
        self._handlers.listeners.append(listener)


class LocalHub:
    """The 'server' of in-process buses: what one publishes, every bus on the hub receives."""

    def __init__(self) -> None:
        self.buses: list[LocalBus] = []


class LocalBus(HandlerBus):
    """The bus of the embedded single-process broker, or one node of an in-process test cluster.

    Signals go through the same encode/decode as on NATS (so a signal that NATS would drop fails here
    too) and are delivered on the next turn of the event loop, never inside :meth:`publish`, as they
    would be from the network.
    """

    def __init__(self, node: str = "local", *, hub: LocalHub | None = None) -> None:
        super().__init__(node)
        self.hub = hub if hub is not None else LocalHub()

    async def start(self) -> None:
        if self not in self.hub.buses:
            self.hub.buses.append(self)
        self._handlers.set_state(BusState.CONNECTED)

    async def publish(self, signal: Signal) -> None:
        if not self._handlers.state.ready:
            # The same contract as NATS before the first connection: nothing to send through.
            raise BusUnavailable(f"the bus of {self.node} is {self._handlers.state.value}")
        data = encode_signal(signal)
        self._handlers.stats.count(self._handlers.stats.published, type(signal).__name__)
        loop = asyncio.get_running_loop()
        for bus in list(self.hub.buses):
            loop.call_soon(bus._handlers.deliver_bytes, data)

    async def close(self) -> None:
        if self in self.hub.buses:
            self.hub.buses.remove(self)
        self._handlers.set_state(BusState.CLOSED)
        await self._handlers.drain()
