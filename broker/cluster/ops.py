"""``GET /metrics`` and ``GET /readyz`` of a broker process (docs/cluster.md §3), as the HTTP routes
call them.

The listener answers plain HTTP synchronously (``wire.server.ProcessRequest``), while readiness needs
an awaited database read. So :class:`OpsEndpoints` probes the database in a task of its own every
``probe_interval`` seconds (started on the first ``/readyz``, or by the host) and answers from the
last result; the bus state is read live. A probe result older than ``3 × probe_interval + timeout``
counts as not ready (the probe itself is stuck). A flood of ``/readyz`` therefore costs no database
work at all.

``/metrics`` answers only to the configured addresses (``serve --metrics-from``; default loopback
only, :data:`DEFAULT_METRICS_FROM`): the numbers say how busy the service is and which error codes
it sends, nothing a subscriber needs. Others get 403. Behind HAProxy with PROXY v2 the address is
the scraper's own (``wire.proxied``), so the front door does not open it to the Internet.
"""

from __future__ import annotations

import asyncio
import http
import ipaddress
import time
from collections.abc import Callable, Iterable
from typing import Final

from wire.tasks import stop_task

from ..metrics import (
    CONTENT_TYPE,
    DEFAULT_PROBE_TIMEOUT,
    BrokerMetrics,
    Check,
    Readiness,
    bus_check,
    probe_storage,
    render,
)
from ..storage.db import Database
from .bus import Bus

__all__ = ["DEFAULT_METRICS_FROM", "OpsAnswer", "OpsEndpoints"]

#: Who may scrape ``/metrics`` unless configured otherwise: this machine only (the same default as
#: ``broker.config.DEFAULT_METRICS_FROM``).
DEFAULT_METRICS_FROM: Final = ("127.0.0.1/8", "::1")

OpsAnswer = tuple[http.HTTPStatus, bytes, str]
"""Status, body, content type: what the HTTP route turns into a response."""


class OpsEndpoints:
    def __init__(
        self,
        metrics: BrokerMetrics,
        *,
        metrics_from: Iterable[str] = DEFAULT_METRICS_FROM,
        probe_interval: float = 2.0,
        probe_timeout: float = DEFAULT_PROBE_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """
        :param metrics_from: addresses or networks allowed to read ``/metrics`` (``ValueError`` for
            anything else).
        :param probe_interval: seconds between database probes for ``/readyz``.
        """
        self.metrics = metrics
        self.allowed = tuple(ipaddress.ip_network(a, strict=False) for a in metrics_from)
        self.probe_interval = probe_interval
        self.probe_timeout = probe_timeout
        self.clock = clock
        self.last: tuple[float, Check] | None = None
        self._db: Database | None = None
        self._task: asyncio.Task[None] | None = None
        self._bus: Bus | None = None
        self.on_probe: Callable[[bool, str], None] | None = None
        """Called with each probe's result (the host logs a change: database lost, back)."""

    # -- /metrics ----------------------------------------------------------------------------------

    def allowed_peer(self, peer: str) -> bool:
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.allowed)

    def watch_bus(self, bus: Bus | None) -> None:
        """Export this bus's state and counters (once; the host's bus never changes)."""
        if bus is not None and self._bus is None:
            self._bus = bus
            self.metrics.watch_bus(bus)

    def metrics_answer(self, peer: str) -> OpsAnswer:
        if not self.allowed_peer(peer):
            return http.HTTPStatus.FORBIDDEN, b"forbidden\n", "text/plain; charset=utf-8"
        return http.HTTPStatus.OK, render(self.metrics), CONTENT_TYPE

    # -- /readyz -----------------------------------------------------------------------------------

    def start(self, db: Database) -> None:
        """Probe ``db`` from now on (idempotent; a later call with another database switches)."""
        self._db = db
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._probe_loop(), name="readiness-probe")

    async def _probe_loop(self) -> None:
        while True:
            if self._db is not None:
                check = await probe_storage(self._db, timeout=self.probe_timeout, metrics=self.metrics)
                self.last = (self.clock(), check)
                if self.on_probe is not None:
                    self.on_probe(check.ok, check.detail)
            await asyncio.sleep(self.probe_interval)

    def readiness(self, bus: Bus | None) -> Readiness:
        """From the last probe and the bus as it is now."""
        if self.last is None:
            storage = Check("storage", False, "not probed yet")
        else:
            at, check = self.last
            if self.clock() - at > 3 * self.probe_interval + self.probe_timeout:
                storage = Check("storage", False, "probe result is stale")
            else:
                storage = check
        return Readiness((storage, bus_check(bus)))

    def readyz_answer(self, db: Database, bus: Bus | None) -> OpsAnswer:
        self.start(db)
        ready = self.readiness(bus)
        status = http.HTTPStatus.OK if ready.ready else http.HTTPStatus.SERVICE_UNAVAILABLE
        return status, ready.body(), "application/json"

    async def close(self) -> None:
        if self._task is not None:
            await stop_task(self._task, what="readiness probe")
            self._task = None
