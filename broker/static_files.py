"""The operator console's files, served by the broker on its one TLS port (no other web server).

Files are read from ``broker/static/`` once at start and served with a strict
Content-Security-Policy: scripts, styles and connections only from this origin, no inline
script, no third-party resources, no framing.
"""

from __future__ import annotations

import http
import mimetypes
from pathlib import Path

from websockets.datastructures import Headers
from websockets.http11 import Response

STATIC_DIR = Path(__file__).with_name("static")

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    "Cache-Control": "no-store",
}
TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
}


class StaticFiles:
    """An immutable in-memory map of URL path → (content type, body)."""

    def __init__(self, root: Path = STATIC_DIR) -> None:
        self.files: dict[str, tuple[str, bytes]] = {}
        if root.is_dir():
            for path in sorted(root.rglob("*")):
                if path.is_file() and not path.name.startswith("."):
                    rel = path.relative_to(root).as_posix()
                    ctype = (
                        TYPES.get(path.suffix)
                        or mimetypes.guess_type(path.name)[0]
                        or "application/octet-stream"
                    )
                    self.files["/" + rel] = (ctype, path.read_bytes())
        if "/index.html" in self.files:
            self.files["/"] = self.files["/index.html"]

    def response(self, path: str) -> Response | None:
        entry = self.files.get(path)
        if entry is None:
            return None
        ctype, body = entry
        return make_response(http.HTTPStatus.OK, body, ctype)


def make_response(status: http.HTTPStatus, body: bytes, content_type: str) -> Response:
    headers = Headers()
    headers["Content-Type"] = content_type
    headers["Content-Length"] = str(len(body))
    for name, value in SECURITY_HEADERS.items():
        headers[name] = value
    return Response(status.value, status.phrase, headers, body)
