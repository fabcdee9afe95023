"""A fake UPnP Internet Gateway Device on 127.0.0.1 (SSDP responder + description server), shared
by the router tests and the inventory end-to-end test. Nothing is ever sent to the multicast group."""

from __future__ import annotations

import contextlib
import http.server
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from .fakes import fixture_text

LOOPBACK = "127.0.0.1"
DESCRIPTION = fixture_text("router", "igd_description.xml").encode("utf-8")
SSDP_TEMPLATE = fixture_text("router", "ssdp_response.txt")


@dataclass
class FakeGateway:
    """A UDP SSDP responder and an HTTP description server, both bound to 127.0.0.1."""

    udp: socket.socket
    http: http.server.ThreadingHTTPServer
    requests: list[str] = field(default_factory=list)
    searches: list[bytes] = field(default_factory=list)
    replies: Callable[[int], list[bytes]] = lambda _http_port: []
    body: bytes = DESCRIPTION

    @property
    def target(self) -> tuple[str, int]:
        return (LOOPBACK, self.udp.getsockname()[1])

    @property
    def http_port(self) -> int:
        return int(self.http.server_address[1])


@contextlib.contextmanager
def running_gateway() -> Iterator[FakeGateway]:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind((LOOPBACK, 0))
    udp.settimeout(0.1)

    holder: list[FakeGateway] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            gw = holder[0]
            gw.requests.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", 'text/xml; charset="utf-8"')
            self.send_header("Content-Length", str(len(gw.body)))
            self.end_headers()
            self.wfile.write(gw.body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer((LOOPBACK, 0), Handler)
    gw = FakeGateway(udp=udp, http=server)
    holder.append(gw)
    stop = threading.Event()

    def responder() -> None:
        while not stop.is_set():
            try:
                data, addr = udp.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            gw.searches.append(data)
            for reply in gw.replies(gw.http_port):
                udp.sendto(reply, addr)

    threads = [
        threading.Thread(target=responder, daemon=True),
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True),
    ]
    for t in threads:
        t.start()
    try:
        yield gw
    finally:
        stop.set()
        server.shutdown()
        server.server_close()
        for t in threads:
            t.join(timeout=5)
        udp.close()


def ssdp_reply(location: str) -> bytes:
    text = SSDP_TEMPLATE.replace("http://{host}:{port}/rootDesc.xml", location)
    return text.encode("ascii")
