"""Operations on real broker processes: ``/metrics`` and ``/readyz``; the PROXY v2 header from Debian's
HAProxy (the broker sees the client's address, not HAProxy's); two processes sharing one port with
``--reuse-port``, both taking agents."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from broker.cluster.haproxy import Backend, FrontDoor, render
from tests.helpers import PYTHON, BrokerProcess, enrolled_agent, run_agent, start_agent, wait_until

from .natsserver import free_port
from .test_haproxy import HAProxy, show_stat


def https_get(port: int, path: str, *, source: str | None = None) -> tuple[int, bytes]:
    """One GET over a fresh TLS connection (the broker's certificate is not checked: tests only)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection(
            ("127.0.0.1", port), timeout=10, source_address=(source, 0) if source else None
        ) as raw,
        ctx.wrap_socket(raw) as tls,
    ):
        tls.sendall(f"GET {path} HTTP/1.1\r\nHost: broker\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := tls.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def scrape(port: int) -> dict[str, float]:
    """``/metrics`` parsed with Prometheus' own parser: sample name{labels} → value."""
    status, body = https_get(port, "/metrics")
    assert status == 200, body
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}"] = sample.value
    return out


def node_of(metrics: dict[str, float]) -> str:
    (key,) = [k for k in metrics if k.startswith("broker_info{")]
    return key.split("node=")[1].rstrip("}")


@pytest.fixture
def stoppers() -> Iterator[list[object]]:
    things: list[object] = []
    try:
        yield things
    finally:
        for thing in reversed(things):
            thing.stop()  # type: ignore[attr-defined]


@pytest.mark.e2e
def test_metrics_and_readiness_of_a_real_broker(tmp_path: Path, stoppers: list[object]) -> None:
    broker = BrokerProcess(tmp_path / "broker", extra_args=("--node-id", "node-m")).start()
    stoppers.append(broker)
    metrics = scrape(broker.port)
    assert metrics["broker_info{node=node-m}"] == 1
    assert metrics["broker_agents_connected{}"] == 0
    assert metrics["broker_sessions{phase=active}"] == 0
    # Readiness: the first answer may come before the first database probe; then ready.
    _, body = wait_until(
        lambda: (r := https_get(broker.port, "/readyz"))[0] == 200 and r, timeout=30, what="/readyz 200"
    )
    answer = json.loads(body)
    assert answer["ready"] is True
    assert answer["checks"]["storage"]["ok"] is True
    assert answer["checks"]["storage"]["detail"].startswith("sqlite answers")
    assert answer["checks"]["bus"]["detail"] == "connected"
    # An agent connects: the gauge a dashboard shows counts it.
    serial = enrolled_agent(broker, tmp_path / "agent", "C-MET")
    stoppers.append(start_agent(tmp_path / "agent"))
    wait_until(lambda: broker.agent_state(serial) == "online", what="agent online")
    wait_until(lambda: scrape(broker.port)["broker_agents_connected{}"] == 1, what="gauge at 1")


@pytest.mark.e2e
def test_metrics_answer_only_configured_addresses(tmp_path: Path, stoppers: list[object]) -> None:
    broker = BrokerProcess(tmp_path / "broker", extra_args=("--metrics-from", "10.9.8.7")).start()
    stoppers.append(broker)
    status, body = https_get(broker.port, "/metrics")
    assert (status, body) == (403, b"forbidden\n")
    assert https_get(broker.port, "/healthz")[0] == 200  # the rest still answers
    bad = broker.cli("serve", "--metrics-from", "not-an-ip", check=False)
    assert bad.returncode == 2
    assert "not an IP address or network" in bad.stderr


@pytest.mark.e2e
def test_haproxy_with_proxy_v2_the_broker_sees_the_client_address(
    tmp_path: Path, stoppers: list[object]
) -> None:
    """HAProxy connects to the broker from 127.0.0.5 and sends PROXY v2; the agent's connection is
    audited with its own address (127.0.0.1), not HAProxy's. A direct client still works, and a
    connection from the front door's address without a header is closed before TLS."""
    front_door = "127.0.0.5"
    broker = BrokerProcess(tmp_path / "broker", extra_args=("--proxy-protocol-from", front_door)).start()
    stoppers.append(broker)
    front = free_port()
    stats = tmp_path / "haproxy.sock"
    door = FrontDoor(
        listen=("127.0.0.1", front),
        backends=(Backend("broker1", "127.0.0.1", broker.port),),
        check_interval=0.5,
        maxconn=1000,
        stats_socket=str(stats),
        send_proxy=True,
        source=front_door,
    )
    haproxy = HAProxy(render(door), tmp_path)
    haproxy.start()
    stoppers.append(haproxy)
    # Health checks carry a PROXY v2 LOCAL header: the broker answers them.
    wait_until(lambda: stats.exists() and show_stat(stats) == {"broker1": "UP"}, what="broker1 UP")

    args = broker.add_subscriber("C-PXY")
    args[args.index("--broker") + 1] = f"wss://127.0.0.1:{front}"
    enrolled = run_agent(tmp_path / "agent", *args, "--machine-name", "pc-pxy", stdin="y\n")
    assert enrolled.returncode == 0, enrolled.stdout + enrolled.stderr
    serial = enrolled.stdout.split("Client certificate ID: ")[1].split()[0]
    stoppers.append(start_agent(tmp_path / "agent"))
    wait_until(lambda: broker.agent_state(serial) == "online", what="agent online via HAProxy")
    log = broker.cli("audit", "log", "--subject", "C-PXY").stdout
    connects = [line for line in log.splitlines() if "agent.connect" in line]
    assert connects, log
    assert '"peer": "127.0.0.1"' in connects[-1]
    assert front_door not in log

    # /metrics through the front door: the scraper's own (loopback) address decides, as directly.
    assert https_get(front, "/metrics")[0] == 200
    # A direct client (not the front door's address) needs no header.
    assert https_get(broker.port, "/healthz") == (200, b"ok\n")
    # The front door's address without a header (here: a TLS ClientHello) is closed before TLS.
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        https_get(broker.port, "/healthz", source=front_door)
    output = broker.output
    assert output is not None
    wait_until(lambda: "PROXY header refused (malformed)" in output.text(), what="the refusal logged")


@pytest.mark.e2e
def test_two_processes_share_one_port_with_reuse_port(tmp_path: Path, stoppers: list[object]) -> None:
    data = tmp_path / "broker"
    a = BrokerProcess(data, extra_args=("--reuse-port", "--node-id", "node-a")).start()
    stoppers.append(a)
    b = BrokerProcess(data, port=a.port, extra_args=("--reuse-port", "--node-id", "node-b")).start()
    stoppers.append(b)
    # Without the option the port is taken: a third process cannot start.
    third = subprocess.run(
        [*_serve_command(data), "--port", str(a.port), "--node-id", "node-c"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=a.env,
    )
    assert third.returncode != 0
    assert "address already in use" in (third.stdout + third.stderr).lower()

    # The kernel spreads new connections over both processes.
    seen = wait_until(
        lambda: _nodes_answering(a.port, tries=8) == {"node-a", "node-b"} or None,
        timeout=60,
        what="both processes answering on the shared port",
    )
    assert seen

    # An agent on the shared port lands on one of them; when that one stops, it reconnects to the other.
    serial = enrolled_agent(a, tmp_path / "agent", "C-RP")
    stoppers.append(start_agent(tmp_path / "agent"))
    wait_until(lambda: a.agent_state(serial) == "online", what="agent online")
    counts = wait_until(
        lambda: c if sorted((c := _agents_by_node(a.port)).values()) == [0, 1] else None,
        timeout=60,
        what="one process holding the agent",
    )
    holder = next(node for node, n in counts.items() if n == 1)
    first, second = (a, b) if holder == "node-a" else (b, a)
    other = "node-b" if holder == "node-a" else "node-a"
    first.stop()
    wait_until(lambda: _agents_by_node(second.port) == {other: 1}, timeout=90, what=f"the agent on {other}")
    wait_until(lambda: second.agent_state(serial) == "online", what="agent online again")


def _serve_command(data: Path) -> list[str]:
    return [PYTHON, "-m", "broker", "--data-dir", str(data), "serve"]


def _nodes_answering(port: int, *, tries: int) -> set[str]:
    return {node_of(scrape(port)) for _ in range(tries)}


def _agents_by_node(port: int, tries: int = 16) -> dict[str, float]:
    """Agents connected per process, from as many scrapes (each connection lands on either)."""
    counts: dict[str, float] = {}
    for _ in range(tries):
        metrics = scrape(port)
        counts[node_of(metrics)] = metrics["broker_agents_connected{}"]
    return counts
