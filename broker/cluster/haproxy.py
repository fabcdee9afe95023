"""The cluster's front door: an HAProxy configuration for N broker processes (DESIGN §6).

TCP mode with TLS passed through: HAProxy never holds a key and never sees a byte of a session in
clear; each agent's TLS handshake, client certificate included, ends at a broker process, so mutual
TLS stays end to end (an agent's certificate is checked by the broker against revocation, as with
one process). Health checks are TLS connections to ``GET /healthz`` (``check-ssl verify none``: the
check only asks whether the process answers; no client certificate is needed for ``/healthz``).

``balance leastconn``: agents hold long connections, so the process with the fewest gets the next
one (round robin would leave a restarted process nearly empty). No stickiness is needed: any agent
and any operator may land on any process (docs/cluster.md).

    python -m broker.cluster.haproxy --listen 127.0.0.1:443 --backend 127.0.0.1:9001 \
        --backend 127.0.0.1:9002 --backend 127.0.0.1:9003 > /etc/haproxy/haproxy.cfg

``scripts/cluster haproxy-config`` wraps this. The client address: in TCP mode the broker sees
HAProxy's address; ``--send-proxy`` adds the PROXY protocol v2 header so that the per-address limits
and the audit see the subscriber's address: start the brokers with ``serve --proxy-protocol-from``
HAProxy's address (``--source`` fixes it), docs/cluster.md §5.
"""

from __future__ import annotations

import argparse
import ipaddress
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from protocol.errors import ErrorCode

from ..errors import BrokerError

__all__ = ["Backend", "FrontDoor", "HAProxyConfigError", "main", "parse_address", "render"]

_NAME_RE: Final = re.compile(r"^[A-Za-z0-9_.-]{1,32}\Z")


class HAProxyConfigError(BrokerError):
    """A front-door setting that cannot be written into a configuration."""

    code = ErrorCode.INVALID_FIELD


def parse_address(text: str) -> tuple[str, int]:
    """``host:port`` / ``[v6]:port`` with an IP literal host (no names: a configuration must not
    depend on DNS at start) and a port 1–65535."""
    match = re.match(r"^\[([0-9A-Fa-f:.]+)\]:(\d{1,5})\Z", text) or re.match(r"^([0-9.]+):(\d{1,5})\Z", text)
    if match is None:
        raise HAProxyConfigError(f"an address is IP:port or [IPv6]:port, not {text!r}")
    host, port = match.group(1), int(match.group(2))
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise HAProxyConfigError(f"not an IP address: {host!r}") from None
    if not 1 <= port <= 65535:
        raise HAProxyConfigError(f"port out of range: {port}")
    return host, port


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True, slots=True)
class Backend:
    name: str
    host: str
    port: int

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.name):
            raise HAProxyConfigError(f"a backend name is 1–32 of [A-Za-z0-9_.-], not {self.name!r}")
        parse_address(_hostport(self.host, self.port))


@dataclass(frozen=True, slots=True)
class FrontDoor:
    """Everything the generated configuration depends on; defaults for one node of the cluster."""

    listen: tuple[str, int]
    """Where agents and consoles connect (the public ``wss://`` port, 443 in production)."""
    backends: tuple[Backend, ...]
    check_interval: float = 2.0
    """Seconds between health checks of each process."""
    fall: int = 2
    """Failed checks before a process is taken out (a killed process: out after ~4 s)."""
    rise: int = 2
    """Passed checks before it is taken back."""
    connect_timeout: float = 5.0
    idle_timeout: float = 720.0
    """Seconds a connection may carry no data before HAProxy closes it (``timeout client`` /
    ``server``). Must exceed the agents' application heartbeat with a margin (docs/cluster.md:
    300 s heartbeat → 720 s); too short and idle agents are cut and reconnect in a loop."""
    keepalive_idle: float = 60.0
    """TCP keepalive towards the agents (``option clitcpka``): seconds of silence before the kernel
    sends a probe. This, not an application message, keeps home routers' NAT entries alive, at no
    CPU cost to the brokers (docs/cluster.md, "Heartbeat interval")."""
    keepalive_interval: float = 10.0
    """Seconds between unanswered probes."""
    keepalive_count: int = 3
    """Unanswered probes after which the connection is closed (a dead PC: gone after
    ``keepalive_idle + keepalive_count × keepalive_interval`` = 90 s)."""
    maxconn: int = 200_000
    """Connections HAProxy accepts at once (each uses two file descriptors in HAProxy)."""
    stats_socket: str | None = None
    """A UNIX socket for ``show stat`` (health of each process); mode 600."""
    send_proxy: bool = False
    """PROXY protocol v2 to the brokers (``send-proxy-v2``, health checks included): start the
    brokers with ``serve --proxy-protocol-from <HAProxy's address>`` so that they read it."""
    source: str | None = None
    """The address HAProxy connects to the brokers from (``source``); what ``--proxy-protocol-from``
    names. ``None``: the kernel picks it."""
    extra_global: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.backends:
            raise HAProxyConfigError("at least one broker process is needed")
        names = [b.name for b in self.backends]
        if len(set(names)) != len(names):
            raise HAProxyConfigError("backend names must be unique")
        if self.check_interval <= 0 or self.connect_timeout <= 0 or self.idle_timeout <= 0:
            raise HAProxyConfigError("intervals and timeouts must be positive")
        if self.keepalive_idle < 1 or self.keepalive_interval < 1 or self.keepalive_count < 1:
            raise HAProxyConfigError("TCP keepalive settings must be at least 1")
        if self.fall < 1 or self.rise < 1 or self.maxconn < 1:
            raise HAProxyConfigError("fall, rise and maxconn must be positive")
        if self.source is not None:
            try:
                ipaddress.ip_address(self.source)
            except ValueError:
                raise HAProxyConfigError(f"the source is an IP address, not {self.source!r}") from None
        if self.stats_socket is not None and not re.match(r"^/[A-Za-z0-9_./-]{1,200}\Z", self.stats_socket):
            raise HAProxyConfigError(f"the stats socket is an absolute path, not {self.stats_socket!r}")


def _ms(seconds: float) -> str:
    return f"{int(seconds * 1000)}ms"


def render(door: FrontDoor) -> str:
    """The HAProxy configuration text (HAProxy ≥ 2.2 syntax; tested with Debian's 2.6)."""
    g = [
        "global",
        f"    maxconn {door.maxconn}",
        "    log stdout format raw local0 info",
    ]
    if door.stats_socket:
        g.append(f"    stats socket {door.stats_socket} mode 600 level admin")
    g += [f"    {line}" for line in door.extra_global]
    proxy = " send-proxy-v2 check-send-proxy" if door.send_proxy else ""
    lines = [
        "# Generated by broker.cluster.haproxy (docs/cluster.md): TCP mode, TLS passed through.",
        *g,
        "",
        "defaults",
        "    mode tcp",
        "    log global",
        "    option tcplog",
        "    option dontlognull",
        f"    timeout connect {_ms(door.connect_timeout)}",
        f"    timeout client {_ms(door.idle_timeout)}",
        f"    timeout server {_ms(door.idle_timeout)}",
        f"    timeout check {_ms(door.connect_timeout)}",
        "    option clitcpka",
        f"    clitcpka-idle {int(door.keepalive_idle)}s",
        f"    clitcpka-intvl {int(door.keepalive_interval)}s",
        f"    clitcpka-cnt {door.keepalive_count}",
        "",
        "frontend brokers",
        f"    bind {_hostport(*door.listen)}",
        "    default_backend brokers",
        "",
        "backend brokers",
        "    balance leastconn",
        *([f"    source {door.source}"] if door.source else []),
        "    option httpchk",
        "    http-check send meth GET uri /healthz ver HTTP/1.1 hdr Host broker",
        "    http-check expect status 200",
        f"    default-server check check-ssl verify none inter {_ms(door.check_interval)}"
        f" fall {door.fall} rise {door.rise}{proxy}",
    ]
    lines += [f"    server {b.name} {_hostport(b.host, b.port)}" for b in door.backends]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m broker.cluster.haproxy",
        description="Write an HAProxy configuration (TCP, TLS passthrough) for N broker processes.",
    )
    parser.add_argument("--listen", default="127.0.0.1:8443", help="IP:port agents connect to")
    parser.add_argument("--backend", action="append", default=[], help="IP:port of a broker (repeat)")
    parser.add_argument("--ports", help="shorthand: 9001-9003 = brokers on 127.0.0.1 at these ports")
    parser.add_argument("--stats-socket", default=None)
    parser.add_argument("--idle-timeout", type=float, default=720.0)
    parser.add_argument("--keepalive-idle", type=float, default=60.0)
    parser.add_argument("--check-interval", type=float, default=2.0)
    parser.add_argument(
        "--maxconn", type=int, default=200_000, help="connections (HAProxy needs 2 descriptors each)"
    )
    parser.add_argument(
        "--send-proxy", action="store_true", help="PROXY v2 (brokers: serve --proxy-protocol-from)"
    )
    parser.add_argument("--source", default=None, help="IP HAProxy connects to the brokers from")
    args = parser.parse_args(argv)
    try:
        addresses = [parse_address(a) for a in args.backend]
        if args.ports:
            match = re.match(r"^(\d{1,5})-(\d{1,5})\Z", args.ports)
            if match is None or int(match.group(1)) > int(match.group(2)):
                raise HAProxyConfigError(f"--ports is FIRST-LAST, not {args.ports!r}")
            first, last = int(match.group(1)), int(match.group(2))
            if last - first >= 64:
                raise HAProxyConfigError("at most 64 processes per node")
            addresses += [parse_address(f"127.0.0.1:{p}") for p in range(first, last + 1)]
        door = FrontDoor(
            listen=parse_address(args.listen),
            backends=tuple(Backend(f"broker{i + 1}", h, p) for i, (h, p) in enumerate(addresses)),
            stats_socket=args.stats_socket,
            idle_timeout=args.idle_timeout,
            keepalive_idle=args.keepalive_idle,
            check_interval=args.check_interval,
            send_proxy=args.send_proxy,
            source=args.source,
            maxconn=args.maxconn,
        )
    except HAProxyConfigError as exc:
        print(f"error [{exc.code.value}]: {exc.message}", file=sys.stderr)
        return 2
    sys.stdout.write(render(door))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
