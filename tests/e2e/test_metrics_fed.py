"""``/metrics`` of a real broker process fed by real traffic (issue 15, docs/cluster.md §3): relay
bytes after screen frames, storage latency after a session, failed handshakes by kind, refusals by
code. What an operator of the service would check on the scrape; every counter read back with
Prometheus' own parser."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.heartbeat_cost import make_cert
from helpdesk.canvas import Canvas
from tests.broker.cluster.test_front_door import scrape
from tests.e2e.screen_sessions import HEIGHT, WIDTH, live_session, until_keyframe_sized, x_env
from tests.helpers import BrokerProcess, wait_until
from tests.x11 import xvfb


@pytest.fixture
def display() -> Iterator[str]:
    with xvfb(WIDTH, HEIGHT) as d:
        yield d


def _value(metrics: dict[str, float], key: str) -> float:
    return metrics.get(key, 0.0)


@pytest.mark.x11
@pytest.mark.e2e
async def test_a_session_feeds_relay_bytes_handshakes_and_storage_latency(
    broker: BrokerProcess, display: str, tmp_path: Path
) -> None:
    before = scrape(broker.port)
    assert _value(before, "broker_relay_bytes_total{direction=to_operator}") == 0
    async with live_session(
        broker,
        tmp_path,
        x_env(display),
        scopes=["screen:view"],
        answer="a",
        granted=lambda s: s.scopes.get("screen:view") == "granted",
    ) as live:
        _, key_bytes = await until_keyframe_sized(live.op, Canvas())
        during = scrape(broker.port)
        # The screen went through this process to the operator: at least the keyframe we received.
        assert during["broker_relay_bytes_total{direction=to_operator}"] >= key_bytes
        # The session's control messages to the agent (state, consent question, refreshes).
        assert during["broker_relay_bytes_total{direction=to_agent}"] > 0
        # The agent (admitted certificate) and the operator's console each completed a handshake.
        assert during["broker_handshakes_total{outcome=ok,path=agent}"] >= 1
        assert during["broker_handshakes_total{outcome=ok,path=operator}"] >= 1
        # The session host's ordered writer (audit, session row, receipt) and its reads (the
        # subscriber, the agent's certificate for the receipt) were timed.
        assert during["broker_storage_seconds_count{op=write}"] > before.get(
            "broker_storage_seconds_count{op=write}", 0
        )
        assert during["broker_storage_seconds_count{op=read}"] > 0
        assert _value(during, "broker_storage_errors_total{op=write}") == 0
        live.support.type("/end")
        await live.op.wait_state(live.session, lambda s: s.phase == "ended")

    # The session's end is written too (its summary row and audit entry): more writes timed.
    wait_until(
        lambda: (
            scrape(broker.port)["broker_storage_seconds_count{op=write}"]
            > during["broker_storage_seconds_count{op=write}"]
        ),
        timeout=30,
        what="the session's end to be written",
    )
    after = scrape(broker.port)
    assert after["broker_storage_seconds_sum{op=write}"] > 0
    assert after["broker_relay_drops_total{reason=no_consent}"] == 0


# -- failed handshakes ---------------------------------------------------------------------------------


def _unknown_identity(tmp_path: Path) -> tuple[Path, Path]:
    """A client certificate of a CA the broker never heard of (self-signed)."""
    directory = tmp_path / "intruder"
    directory.mkdir()
    return make_cert(directory, "intruder")


def _upgrade(
    port: int, request: bytes, *, cert: tuple[Path, Path] | None = None, until: bytes | None = None
) -> bytes:
    """One TLS connection sending ``request``; what came back until the end (or ``until``; empty
    when TLS failed)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if cert is not None:
        ctx.load_cert_chain(*cert)
    data = b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        try:
            with ctx.wrap_socket(raw) as tls:
                tls.sendall(request)
                while chunk := tls.recv(65536):
                    data += chunk
                    if until is not None and until in data:
                        break
        except (ssl.SSLError, ConnectionError):
            pass  # TLS 1.3: the server's alert about our certificate arrives after our handshake
    return data


UPGRADE = (
    b"GET /agent HTTP/1.1\r\nHost: broker\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def _grows(port: int, key: str, start: float) -> float:
    """The counter's value once it went above ``start`` (scraped until then)."""
    value: float = wait_until(
        lambda: ((v := scrape(port).get(key, 0.0)) > start and v) or None,
        timeout=30,
        what=f"{key} above {start}",
    )
    return value


@pytest.mark.e2e
def test_failed_handshakes_and_refused_certificates_are_counted(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    tls_failed = "broker_handshakes_total{outcome=failed,path=tls}"
    agent_failed = "broker_handshakes_total{outcome=failed,path=agent}"
    start = scrape(broker.port)
    assert _value(start, tls_failed) == 0
    assert _value(start, agent_failed) == 0

    # A certificate of an unknown CA: the TLS handshake itself fails (no path was ever sent).
    assert b"101" not in _upgrade(broker.port, UPGRADE, cert=_unknown_identity(tmp_path))
    assert _grows(broker.port, tls_failed, 0) == 1

    # Plain HTTP on the TLS port: no TLS at all.
    with socket.create_connection(("127.0.0.1", broker.port), timeout=10) as raw:
        raw.sendall(b"GET /agent HTTP/1.1\r\nHost: broker\r\n\r\n")
        raw.settimeout(10)
        try:
            while raw.recv(65536):
                pass
        except (TimeoutError, ConnectionError):
            pass
    assert _grows(broker.port, tls_failed, 1) == 2

    # No certificate on /agent: TLS and the upgrade succeed, the broker refuses the agent.
    answer = _upgrade(broker.port, UPGRADE, until=b"cert_required")
    assert answer.startswith(b"HTTP/1.1 101")
    assert b"cert_required" in answer
    assert _grows(broker.port, agent_failed, 0) == 1
    metrics = scrape(broker.port)
    assert metrics["broker_refusals_total{code=cert_required}"] >= 1

    # A GET on /agent that is no WebSocket upgrade: answered (not 101) and counted as failed.
    answer = _upgrade(broker.port, b"GET /agent HTTP/1.1\r\nHost: broker\r\nConnection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 4")
    assert _grows(broker.port, agent_failed, 1) == 2

    # Plain HTTP answers are no handshakes: /healthz and a 404 change nothing.
    _upgrade(broker.port, b"GET /healthz HTTP/1.1\r\nHost: broker\r\nConnection: close\r\n\r\n")
    _upgrade(broker.port, b"GET /nothing HTTP/1.1\r\nHost: broker\r\nConnection: close\r\n\r\n")
    metrics = scrape(broker.port)
    assert metrics[tls_failed] == 2
    assert metrics[agent_failed] == 2
    assert _value(metrics, "broker_handshakes_total{outcome=failed,path=operator}") == 0
