"""TCP keepalive in the kernel: keeps home routers' NAT/conntrack state alive at no CPU cost.

An idle agent connection carries nothing for minutes. A NAT or stateful firewall on the path
forgets a TCP connection that was idle longer than its timeout, and then the next packet is dropped
or answered with a reset. RFC 5382 REQ-5 says that timeout must be at least 2 h 4 min, but shorter
ones are deployed (docs/heartbeat.md cites what was found: 180 s, 300 s, 1 h). A keepalive probe
is a bare ACK sent and answered by the kernels of both ends: it refreshes the NAT entry without
waking the broker or the agent, and a peer that stopped answering (power cut, cable pulled) makes
the kernel report the connection dead after ``idle + count × interval`` seconds.
"""

from __future__ import annotations

import logging
import socket
import sys

log = logging.getLogger("wire.keepalive")

KEEPALIVE_IDLE = 60
"""Seconds of silence before the first probe: half the shortest TCP idle timeout found (120 s)."""
KEEPALIVE_INTERVAL = 10
"""Seconds between unanswered probes."""
KEEPALIVE_COUNT = 3
"""Unanswered probes after which the kernel drops the connection (dead after 60 + 3 × 10 = 90 s)."""


def set_tcp_keepalive(
    sock: socket.socket | object | None,
    *,
    idle: int = KEEPALIVE_IDLE,
    interval: int = KEEPALIVE_INTERVAL,
    count: int = KEEPALIVE_COUNT,
) -> bool:
    """Turn keepalive on with these timings where the OS lets us; False when it could not be set.
    Linux and Windows (since 10 1709) have ``TCP_KEEPIDLE``; macOS calls it ``TCP_KEEPALIVE``."""
    setsockopt = getattr(sock, "setsockopt", None)
    if setsockopt is None:
        return False
    try:
        setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        idle_option = getattr(socket, "TCP_KEEPIDLE", None)
        if idle_option is None and sys.platform == "darwin":
            idle_option = getattr(socket, "TCP_KEEPALIVE", None)
        if idle_option is not None:
            setsockopt(socket.IPPROTO_TCP, idle_option, idle)
        for name, value in (("TCP_KEEPINTVL", interval), ("TCP_KEEPCNT", count)):
            option = getattr(socket, name, None)
            if option is not None:
                setsockopt(socket.IPPROTO_TCP, option, value)
    except OSError as exc:
        log.debug("TCP keepalive not set: %s", exc)
        return False
    return True
