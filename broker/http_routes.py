"""Plain HTTPS answers of the broker's one port (split from :mod:`broker.server`, which mixes
:class:`HttpRoutes` into its ``Broker``): ``/healthz``, ``/readyz``, ``/metrics``, ``/ca.pem``,
``/crl.pem`` and the console's static files; the WebSocket paths go on to the handshake."""

from __future__ import annotations

import http
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from websockets.http11 import Request, Response

from wire import WireConnection

from .cluster.ops import OpsEndpoints
from .metrics import BrokerMetrics
from .pki import Pki
from .static_files import StaticFiles, make_response

if TYPE_CHECKING:
    from .config import BrokerConfig
    from .storage.db import Database

__all__ = ["HttpRoutes"]


class HttpRoutes:
    """The HTTP side of :class:`broker.server.Broker` (which sets these attributes)."""

    clock: Callable[[], float]
    revoked: list[tuple[str, float]]
    pki: Pki
    static: StaticFiles
    _crl_cache: tuple[int, bytes] | None
    config: BrokerConfig

    def _process_request(self, connection: WireConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path in ("/enroll", "/agent", "/operator"):
            return None
        if path == "/healthz":
            return connection.ws.reject(http.HTTPStatus.OK, "ok\n")
        if path == "/metrics":
            return make_response(*self._ops().metrics_answer(connection.peer))
        if path == "/readyz":
            cluster: Any = getattr(self, "cluster", None)
            return make_response(*self._ops().readyz_answer(self._ops_database(), cluster and cluster.bus))
        if path == "/ca.pem":
            return _file_response(self.pki.ca.cert_pem, "application/x-pem-file")
        if path == "/crl.pem":
            return _file_response(self._crl(), "application/x-pem-file")
        return self.static.response(path) or connection.ws.reject(http.HTTPStatus.NOT_FOUND, "not found\n")

    def _ops(self) -> OpsEndpoints:
        """``/metrics`` and ``/readyz`` (docs/cluster.md §3) over the host's ``metrics`` and ``cluster``
        (:class:`broker.cluster_host.ClusterHost`); the gauges are read from the host at each call."""
        ops: OpsEndpoints | None = getattr(self, "_ops_endpoints", None)
        metrics: BrokerMetrics | None = getattr(self, "metrics", None)
        if ops is None:
            ops = OpsEndpoints(
                metrics if metrics is not None else BrokerMetrics(self.config.node),
                metrics_from=self.config.metrics_from,
            )
            self._ops_endpoints = ops
        cluster: Any = getattr(self, "cluster", None)
        ops.watch_bus(cluster.bus if cluster is not None else None)
        refresh: Any = getattr(self, "_refresh_metrics", None)
        if refresh is not None:
            refresh()
        else:
            agents: dict[str, set[Any]] = getattr(self, "agents", {})
            ops.metrics.agents.set(sum(len(c) for c in agents.values()))
        return ops

    def _ops_database(self) -> Database:
        """What ``/readyz`` probes: the host's storage, else (before the storage wiring) the SQLite
        file the broker uses, through a read-only connection of its own."""
        storage: Any = getattr(self, "storage", None)
        if storage is not None:
            db: Database = storage.db
            return db
        fallback: Database | None = getattr(self, "_ops_fallback_db", None)
        if fallback is None:
            from .storage.sqlite import SQLiteDatabase

            fallback = SQLiteDatabase(self.config.db_path)
            self._ops_fallback_db = fallback
        return fallback

    def _crl(self) -> bytes:
        revoked = self.revoked  # kept current by the broker's revocation watch
        if self._crl_cache is None or self._crl_cache[0] != len(revoked):
            pem = self.pki.ca.build_crl(
                [(int(serial, 16), datetime.fromtimestamp(at, UTC)) for serial, at in revoked],
                now=datetime.fromtimestamp(self.clock(), UTC),
                crl_number=len(revoked) + 1,
            )
            self._crl_cache = (len(revoked), pem)
        return self._crl_cache[1]


def _file_response(body: bytes, content_type: str) -> Response:
    return make_response(http.HTTPStatus.OK, body, content_type)
