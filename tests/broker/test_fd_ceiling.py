"""A real ``python -m broker serve`` at its open-file limit (lowered with ``prlimit`` while it runs):
connections past the ceiling are reset at once and counted on ``/metrics``, the broker logs one line
(no traceback per refused accept, as asyncio's own accept loop does at EMFILE), and it serves again
as soon as connections go away."""

from __future__ import annotations

import resource
import socket

from tests.broker.cluster.test_front_door import scrape
from tests.helpers import BrokerProcess, closed_by_server, wait_until

LIMIT = 300


def test_a_broker_at_its_file_limit_refuses_new_connections_and_recovers(
    broker_process: BrokerProcess,
) -> None:
    assert broker_process.proc is not None
    pid = broker_process.proc.pid
    _soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (LIMIT, hard))
    assert scrape(broker_process.port)["broker_connections_refused_full_total{}"] == 0
    socks: list[socket.socket] = []
    try:
        # Silent TCP clients (no ClientHello yet): each holds one descriptor of the broker. 250 is
        # under the per-address cap (256), so only the file limit refuses them.
        socks = [socket.create_connection(("127.0.0.1", broker_process.port), timeout=5) for _ in range(250)]
        refused = closed_by_server(socks, wait=1.0)
        assert 50 <= len(refused) < 250  # the ceiling is 300 - 128 = 172 descriptors in all
    finally:
        for s in socks:
            s.close()
    # Served again once they are gone: /metrics answers, and counts every refused connection.
    early: list[ConnectionError] = []  # scrapes the broker reset before it had seen the closes
    metrics = wait_until(
        lambda: _scrape_or_none(broker_process.port, early), what="the broker to answer again"
    )
    assert metrics["broker_connections_refused_full_total{}"] == len(refused) + len(early)
    assert broker_process.output is not None
    log = broker_process.output.text()
    assert log.count("refusing new connections") == 1, log
    assert "Traceback" not in log
    assert "accept() failed" not in log  # the ceiling kept accept() itself from failing


def _scrape_or_none(port: int, resets: list[ConnectionError]) -> dict[str, float] | None:
    """``/metrics``, or None while the broker has not yet seen the closes: still at its ceiling, it
    resets a new connection (and counts it), as a monitoring system would see and retry."""
    try:
        return scrape(port)
    except ConnectionError as exc:
        resets.append(exc)
        return None
