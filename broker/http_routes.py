"""Plain HTTPS answers of the broker's one port (split from :mod:`broker.server`, which mixes
:class:`HttpRoutes` into its ``Broker``): ``/healthz``, ``/ca.pem``, ``/crl.pem`` and the console's
static files; the WebSocket paths go on to the handshake."""

from __future__ import annotations

import http
from collections.abc import Callable
from datetime import UTC, datetime

from websockets.http11 import Request, Response

from wire import WireConnection

from .pki import Pki
from .static_files import StaticFiles, make_response

__all__ = ["HttpRoutes"]


class HttpRoutes:
    """The HTTP side of :class:`broker.server.Broker` (which sets these attributes)."""

    clock: Callable[[], float]
    revoked: list[tuple[str, float]]
    pki: Pki
    static: StaticFiles
    _crl_cache: tuple[int, bytes] | None

    def _process_request(self, connection: WireConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path in ("/enroll", "/agent", "/operator"):
            return None
        if path == "/healthz":
            return connection.ws.reject(http.HTTPStatus.OK, "ok\n")
        if path == "/ca.pem":
            return _file_response(self.pki.ca.cert_pem, "application/x-pem-file")
        if path == "/crl.pem":
            return _file_response(self._crl(), "application/x-pem-file")
        return self.static.response(path) or connection.ws.reject(http.HTTPStatus.NOT_FOUND, "not found\n")

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
