"""The cluster end to end (issue 15): ``scripts/cluster up`` starts three real broker processes on one
PostgreSQL database (a fresh one for this module, dropped after) and a NATS server of this module's
own (to kill and restart), behind Debian's HAProxy with TLS passthrough and PROXY v2. Agents enroll
and connect through the front door; the admin CLI and operators act on any process."""

from __future__ import annotations

import json
import re
import secrets
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from helpdesk.client import HelpdeskClient, HelpdeskError
from tests.helpers import (
    ROOT,
    AgentProcess,
    OperatorAccount,
    child_env,
    enroll_args_from,
    run_agent,
    start_agent,
    wait_until,
)

from .natsserver import PrivateNats, free_port, port_answers

POLL_LINE = re.compile(r"INFO broker: closing connections of revoked certificate")
ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
# Logged by the cut handler on every process (the revocation poll logs POLL_LINE).
CUT_LINE = re.compile(
    r"^(\S+ \S+) INFO broker: cluster: cut (\d+) agent connection\(s\) \((\w+), from cli-", re.M
)


@dataclass
class Cluster:
    dir: Path
    database: str
    nats: PrivateNats
    ports: list[int]
    link_ports: list[int]
    front: int
    env: dict[str, str]
    agents: list[AgentProcess] = field(default_factory=list)

    def script(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(ROOT / "scripts" / "cluster"), *args],
            capture_output=True,
            text=True,
            env=self.env,
            cwd=ROOT,
            timeout=180,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"scripts/cluster {' '.join(args)}: {result.stdout}{result.stderr}")
        return result

    def admin(self, *args: str) -> str:
        return self.script("admin", *args).stdout

    def log(self, node: int) -> str:
        return (self.dir / f"n{node}.log").read_text()

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.dir / "data" / "ca.pem"))

    def get(self, port: int, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(
                f"https://127.0.0.1:{port}{path}", context=self.ssl_context(), timeout=10
            ) as answer:
                return int(answer.status), bytes(answer.read())
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def metrics(self, port: int) -> dict[str, float]:
        _, body = self.get(port, "/metrics")
        values = {}
        for family in text_string_to_metric_families(body.decode()):
            for sample in family.samples:
                labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
                values[f"{sample.name}{{{labels}}}"] = sample.value
        return values

    def agents_by_port(self) -> dict[int, float]:
        return {port: self.metrics(port)["broker_agents_connected{}"] for port in self.ports}

    def agent_state(self, serial: str) -> str | None:
        for line in self.admin("agents").splitlines()[1:]:
            parts = line.split()
            if parts and parts[0] == serial:
                return parts[3]
        return None

    def connect_agent(self, contract_id: str, home: Path) -> tuple[str, AgentProcess]:
        """Enroll through the front door, then connect with the client certificate through it."""
        args = enroll_args_from(self.admin("subscriber", "add", contract_id))
        assert args[args.index("--broker") + 1] == f"wss://127.0.0.1:{self.front}"
        result = run_agent(home, *args, "--machine-name", f"pc-{contract_id}", stdin="y\n")
        assert result.returncode == 0, result.stdout + result.stderr
        serial = result.stdout.split("Client certificate ID: ")[1].split()[0]
        agent = start_agent(home)
        self.agents.append(agent)
        wait_until(lambda: self.agent_state(serial) == "online", timeout=60, what="agent online")
        return serial, agent

    def holder(self) -> int:
        """The one process holding the one connected agent (its node number)."""
        counts = wait_until(
            lambda: c if sorted((c := self.agents_by_port()).values()) == [0, 0, 1] else None,
            timeout=30,
            what="one process holding the agent",
        )
        return self.ports.index(next(p for p, n in counts.items() if n == 1)) + 1


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    base = tmp_path_factory.mktemp("cluster")
    name = f"broker_cluster_{secrets.token_hex(5)}"
    database = f"postgresql://postgres@127.0.0.1:5432/{name}"
    nats = PrivateNats(base)
    nats.start()
    ports = [free_port() for _ in range(3)]
    env = child_env(
        CLUSTER_DIR=str(base / "cluster"),
        CLUSTER_DATABASE=database,
        CLUSTER_NATS=nats.url,
        CLUSTER_PORTS=" ".join(map(str, ports)),
        CLUSTER_LINK_PORTS=" ".join(map(str, link_ports := [free_port() for _ in range(3)])),
        CLUSTER_FRONT=f"127.0.0.1:{(front := free_port())}",
    )
    found = Cluster(base / "cluster", database, nats, ports, link_ports, front, env)
    try:
        up = found.script("up")
        assert "database created" in up.stdout
        yield found
    finally:
        for agent in found.agents:
            agent.stop()
        down = found.script("down", check=False)
        nats.stop()
        with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    # `down` stopped every process it started (before the database went).
    assert down.returncode == 0, down.stderr
    assert not any(port_answers(port) for port in [*ports, *link_ports, front])


def cut_after(cluster: Cluster, node: int, code: str, since: float, *, offset: int) -> float:
    """Wait for process ``node`` to log the cut signal (after ``offset`` characters of its log);
    seconds from ``since`` (a database time) to the log line. Every process logs the signal; the one
    holding the agent closes it then, unless its revocation poll (every 5 s) came first."""
    match = wait_until(
        lambda: next((m for m in CUT_LINE.finditer(cluster.log(node)[offset:]) if m.group(3) == code), None),
        timeout=30,
        what=f"n{node} receiving the cut ({code})",
    )
    closed = int(match.group(2))
    polled = POLL_LINE.search(cluster.log(node)[offset:])
    assert closed == 1 or polled is not None, "the agent was neither cut by the signal nor by the poll"
    logged = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
    print(f"n{node}: {'signal' if closed else 'revocation poll (before the signal)'} closed the connection")
    return logged - since


def database_time(cluster: Cluster, sql: str, *args: str) -> float:
    with psycopg.connect(cluster.database, connect_timeout=5) as conn:
        row = conn.execute(sql, args).fetchone()
    assert row is not None
    assert row[0] is not None
    return float(row[0])


def test_revoking_a_certificate_cuts_the_agent_on_the_process_holding_it(
    cluster: Cluster, tmp_path: Path
) -> None:
    serial, agent = cluster.connect_agent("C-REV", tmp_path / "agent")
    node = cluster.holder()
    # The admin CLI knows no broker process: it writes the database and publishes the cut on NATS.
    offset = len(cluster.log(node))
    out = cluster.admin("cert", "revoke", serial)
    assert "the brokers were told to cut the connection now" in out
    revoked_at = database_time(cluster, "SELECT revoked_at FROM certificates WHERE serial = %s", serial)
    latency = cut_after(cluster, node, "cert_revoked", revoked_at, offset=offset)
    print(f"revocation → cut on n{node}: {latency * 1000:.0f} ms")
    assert latency < 1.0  # the bound (the revocation poll alone takes up to 5 s)
    # Every process had the signal; the others held nothing of it.
    others = sorted({1, 2, 3} - {node})
    lines = wait_until(
        lambda: all(found := [CUT_LINE.search(cluster.log(o)) for o in others]) and found,
        what="the other processes had the signal",
    )
    assert [line.group(2) for line in lines] == ["0", "0"]
    # The agent was told and gives up (a permanent refusal).
    assert agent.proc.wait(30) is not None
    wait_until(lambda: cluster.agent_state(serial) == "revoked", what="listed revoked")
    assert sum(cluster.agents_by_port().values()) == 0


def test_terminating_a_contract_cuts_its_agent(cluster: Cluster, tmp_path: Path) -> None:
    _, agent = cluster.connect_agent("C-TERM", tmp_path / "agent")
    node = cluster.holder()
    offset = len(cluster.log(node))
    out = cluster.admin("subscriber", "terminate", "C-TERM")
    assert "the brokers were told to cut the connection now" in out
    terminated_at = database_time(
        cluster, "SELECT status_changed_at FROM subscribers WHERE contract_id = %s", "C-TERM"
    )
    latency = cut_after(cluster, node, "subscriber_terminated", terminated_at, offset=offset)
    print(f"termination → cut on n{node}: {latency * 1000:.0f} ms")
    assert latency < 1.0
    assert agent.proc.wait(30) is not None
    assert sum(cluster.agents_by_port().values()) == 0


def add_operator(cluster: Cluster, name: str) -> OperatorAccount:
    import pyotp

    out = cluster.admin("operator", "add", name, "--role", "operator", "--display-name", name)
    password = out.split("initial password (one-time, must be changed at first login): ")[1].split()[0]
    uri = out.split("TOTP provisioning URI (scan into an authenticator app): ")[1].split()[0]
    return OperatorAccount(name=name, password=password, totp_secret=pyotp.parse_uri(uri).secret)


async def try_login(cluster: Cluster, port: int, name: str, password: str, totp: str) -> str:
    """``ok`` or the refusal's code, over a new connection straight to one process."""
    async with HelpdeskClient(f"wss://127.0.0.1:{port}", cafile=cluster.dir / "data" / "ca.pem") as op:
        try:
            await op.login(name, password, totp)
        except HelpdeskError as exc:
            return exc.code
        return "ok"


async def test_operator_lockout_and_login_rate_limit_hold_across_processes(cluster: Cluster) -> None:
    account = add_operator(cluster, "alice")
    # Operator lockout (5 wrong passwords): spread over the three processes, it still locks.
    codes = [
        await try_login(cluster, cluster.ports[i % 3], "alice", "wrong password", account.totp())
        for i in range(5)
    ]
    assert codes == ["login_failed"] * 5
    # The right password on another process: locked.
    assert await try_login(cluster, cluster.ports[2], "alice", account.password, account.totp()) == (
        "account_locked"
    )
    # Login attempts per address (20 a minute): 6 so far from 127.0.0.1; spread over the processes
    # (each would allow 20 on its own), the 21st of the minute is refused.
    later = [await try_login(cluster, cluster.ports[i % 3], "nobody", "x", "000000") for i in range(15)]
    assert "rate_limited" not in later[:14]
    assert later[14] == "rate_limited"


def ready_statuses(cluster: Cluster) -> list[int]:
    return [cluster.get(port, "/readyz")[0] for port in cluster.ports]


def test_metrics_and_readiness_follow_nats(cluster: Cluster, tmp_path: Path) -> None:
    serial, _ = cluster.connect_agent("C-OPS", tmp_path / "agent")
    node = cluster.holder()
    for i, port in enumerate(cluster.ports, start=1):
        values = cluster.metrics(port)
        assert values[f"broker_info{{node=n{i}}}"] == 1
        assert values["broker_agents_connected{}"] == (1 if i == node else 0)
        assert values["broker_bus_state{state=connected}"] == 1
        status, body = cluster.get(port, "/readyz")
        assert status == 200, body
        assert json.loads(body)["checks"]["storage"]["detail"].startswith("postgresql answers")
    # Each process listens for node-to-node links (--cluster-listen), with certificates of the
    # cluster CA kept in the shared data dir (not the agents' CA).
    assert all(port_answers(port) for port in cluster.link_ports)
    cluster_ca = (cluster.dir / "data" / "cluster-ca" / "ca.pem").read_bytes()
    assert cluster_ca != (cluster.dir / "data" / "ca.pem").read_bytes()
    # NATS goes away: every process says it is not ready (and logs it); back: ready again.
    cluster.nats.stop()
    wait_until(lambda: ready_statuses(cluster) == [503, 503, 503] or None, timeout=30, what="503 everywhere")
    status, body = cluster.get(cluster.ports[0], "/readyz")
    assert json.loads(body)["checks"]["bus"] == {"ok": False, "detail": "lost"}
    assert all("cluster bus lost (NATS): not ready" in cluster.log(i) for i in (1, 2, 3))
    cluster.nats.start()
    wait_until(lambda: ready_statuses(cluster) == [200, 200, 200] or None, timeout=60, what="200 everywhere")
    assert all("cluster bus recovered (NATS): ready again" in cluster.log(i) for i in (1, 2, 3))
    # The cluster works again: a cut crosses.
    offset, started = len(cluster.log(node)), time.time()
    assert "told to cut" in cluster.admin("cert", "revoke", serial)
    assert cut_after(cluster, node, "cert_revoked", started, offset=offset) < 30
    wait_until(lambda: sum(cluster.agents_by_port().values()) == 0 or None, what="agent cut")


def test_readiness_follows_postgresql(cluster: Cluster) -> None:
    """The database refuses connections and its sessions are ended (the shared server keeps running):
    every process says it is not ready, and logs it; allowed again, every process is ready again."""
    name = cluster.database.rsplit("/", 1)[1]
    with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        try:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
            )
            wait_until(lambda: ready_statuses(cluster) == [503, 503, 503] or None, timeout=60, what="503")
            _, body = cluster.get(cluster.ports[1], "/readyz")
            storage = json.loads(body)["checks"]["storage"]
            assert storage["ok"] is False
            assert "postgres" not in storage["detail"]  # the kind of failure only, never the URL or user
        finally:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    wait_until(lambda: ready_statuses(cluster) == [200, 200, 200] or None, timeout=60, what="200 again")
    for i in (1, 2, 3):
        log = cluster.log(i)
        assert "database unreachable: not ready" in log
        assert "database answers again: ready" in log
    # And the brokers work on it again: an admin command through the database, seen by a process.
    assert "C-PG" in cluster.admin("subscriber", "add", "C-PG")
