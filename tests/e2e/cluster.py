"""Three broker processes on one PostgreSQL database and one NATS server (issue 15), for the
cluster end-to-end tests: a database with a random name and a NATS subject prefix per module,
one data directory (the CA, the audit key and the data keys are the cluster's), stable node ids,
and Debian's HAProxy in front of them as deployed (docs/cluster.md §5, §9: TLS passed through,
``leastconn``, PROXY v2 from 127.0.0.5).

Where a connection that entered through the front door landed is read from each process's own
``/metrics`` (operators) or from the support code's row (the agent's process): never guessed.

No PostgreSQL, NATS server or HAProxy is a failure, never a skip.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable, Collection, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import psycopg

from broker.cluster.haproxy import Backend, FrontDoor, render
from helpdesk import HelpdeskClient
from helpdesk.canvas import Canvas
from protocol.messages import Error
from tests.broker.cluster.natsserver import SHARED_NATS_URL, free_port, unique_prefix
from tests.broker.cluster.test_front_door import scrape
from tests.broker.cluster.test_haproxy import HAProxy, show_stat
from tests.broker.storage.conftest import temporary_database
from tests.e2e.conftest import ALWAYS_OPEN
from tests.helpers import BrokerProcess, OperatorAccount, SupportProcess, login, run_agent, wait_until

__all__ = [
    "FRONT_SOURCE",
    "Cluster",
    "cluster_database",
    "connected",
    "connected_until",
    "frames",
    "front_operator",
    "holder",
    "input_needs_control",
    "running_cluster",
    "start_cluster",
]

FRONT_SOURCE = "127.0.0.5"
"""The address HAProxy connects to the brokers from, with a PROXY v2 header (as ``scripts/cluster up``)."""

PLACEMENT_ATTEMPTS = 8
"""Front-door connections an operator console may try before it lands on a wanted process."""


@dataclass
class Cluster:
    database_url: str
    prefix: str
    data_dir: Path
    brokers: list[BrokerProcess] = field(default_factory=list)
    front: int | None = None
    """HAProxy's port, once a front door runs (``running_cluster``)."""

    def url(self, via: int | None) -> str:
        """Broker process ``via``'s own port, or the front door (``None``)."""
        if via is None:
            assert self.front is not None, "no front door runs"
            return f"wss://127.0.0.1:{self.front}"
        return self.brokers[via].url

    def client(self, via: int | None) -> HelpdeskClient:
        return HelpdeskClient(self.url(via), cafile=self.data_dir / "ca.pem")

    def enroll(self, agent_dir: Path, contract_id: str, *, via: int | None) -> str:
        """Register a contract and enroll an agent that dials broker ``via`` (``None``: the front
        door); its certificate ID."""
        url = self.url(via)
        args = [a if not a.startswith("wss://") else url for a in self.brokers[0].add_subscriber(contract_id)]
        result = run_agent(agent_dir, *args, "--machine-name", f"pc-{contract_id}", stdin="y\n")
        assert result.returncode == 0, result.stderr
        return result.stdout.split("Client certificate ID: ")[1].split()[0]

    def stop(self) -> None:
        for broker in self.brokers:
            broker.stop()


def cluster_database() -> Iterator[str]:
    yield from temporary_database("broker_cluster")


def start_cluster(
    database_url: str, data_dir: Path, *, count: int = 3, extra: tuple[str, ...] = ()
) -> Cluster:
    """``count`` broker processes, started one after the other (the first creates the CA and
    migrates the database); each reads a PROXY v2 header from ``FRONT_SOURCE`` only."""
    cluster = Cluster(database_url=database_url, prefix=unique_prefix(), data_dir=data_dir)
    try:
        for index in range(count):
            broker = BrokerProcess(
                data_dir,
                extra_args=(
                    *ALWAYS_OPEN,
                    "--database",
                    database_url,
                    "--node-id",
                    f"broker-{index + 1}",
                    "--nats",
                    SHARED_NATS_URL,
                    "--nats-prefix",
                    cluster.prefix,
                    "--cluster-listen",
                    f"127.0.0.1:{free_port()}",
                    "--proxy-protocol-from",
                    FRONT_SOURCE,
                    *extra,
                ),
            )
            broker.env["BROKER_DATABASE"] = database_url  # the admin CLI on the same database
            cluster.brokers.append(broker.start())
    except BaseException:
        cluster.stop()
        raise
    return cluster


@contextmanager
def running_cluster(database_url: str, workdir: Path) -> Iterator[Cluster]:
    """Three processes and HAProxy in front of them (``cluster.front``), every one UP in HAProxy's
    health checks; all stopped after."""
    cluster = start_cluster(database_url, workdir / "cluster")
    haproxy: HAProxy | None = None
    try:
        cluster.front = free_port()
        stats = workdir / "haproxy.sock"
        door = FrontDoor(
            listen=("127.0.0.1", cluster.front),
            backends=tuple(
                Backend(f"broker{i + 1}", "127.0.0.1", b.port) for i, b in enumerate(cluster.brokers)
            ),
            check_interval=0.5,
            maxconn=1000,
            stats_socket=str(stats),
            send_proxy=True,
            source=FRONT_SOURCE,
        )
        haproxy = HAProxy(render(door), workdir)
        haproxy.start()
        wait_until(
            lambda: stats.exists() and set(show_stat(stats).values()) == {"UP"},
            what="every broker UP in HAProxy",
        )
        yield cluster
    finally:
        if haproxy is not None:
            haproxy.stop()
        cluster.stop()


def holder(database_url: str, code: str) -> int:
    """Index of the broker process that issued ``code``: the one holding the agent that asked
    (its node id is ``broker-<n>``)."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT node FROM support_codes WHERE code = %s", (code,)).fetchone()
    assert row is not None
    return int(str(row[0]).rsplit("-", 1)[1]) - 1


async def connected(cluster: Cluster, who: Literal["agents", "operators"] = "operators") -> list[int]:
    """``broker_agents_connected`` or ``broker_operators_connected`` of each process, scraped on its
    own port (not through the front door)."""

    def read() -> list[int]:
        return [int(scrape(b.port).get(f"broker_{who}_connected{{}}", 0)) for b in cluster.brokers]

    return await asyncio.to_thread(read)


async def connected_until(
    cluster: Cluster,
    ok: Callable[[list[int]], bool],
    what: str,
    who: Literal["agents", "operators"] = "operators",
) -> list[int]:
    """Scrape until the counts per process satisfy ``ok`` (bounded: a hang guard, 30 s)."""
    for _ in range(300):
        counts = await connected(cluster, who)
        if ok(counts):
            return counts
        await asyncio.sleep(0.1)
    raise AssertionError(f"{who} connected per process never {what}: {counts}")


@asynccontextmanager
async def front_operator(
    cluster: Cluster, among: Collection[int], *, held: Collection[int] = ()
) -> AsyncIterator[tuple[HelpdeskClient, int]]:
    """An operator console connected through the front door to one of the processes ``among``,
    and that process's index; closed on exit. ``held``: the processes of the caller's other open
    operator connections (the only ones expected on the cluster: the new one is told apart by
    comparing each process's count before and after). A connection that lands elsewhere is closed
    and another is tried (``leastconn`` moves it), at most ``PLACEMENT_ATTEMPTS`` times."""
    expected = Counter(held)
    before = await connected_until(
        cluster,
        lambda c: c == [expected[i] for i in range(len(cluster.brokers))],
        f"settled to the caller's own {dict(expected)}",
    )
    landed: list[int] = []
    for _ in range(PLACEMENT_ATTEMPTS):
        client = cluster.client(None)
        await client.connect()
        try:
            after = await connected_until(cluster, lambda c: sum(c) == sum(before) + 1, "counted the new one")
            (where,) = [i for i, (a, b) in enumerate(zip(after, before, strict=True)) if a == b + 1]
            if where in among:
                yield client, where
                return
            landed.append(where)
        finally:
            await client.close()
        await connected_until(cluster, lambda c: c == before, "dropped the closed console")
    raise AssertionError(f"the front door never sent an operator to {sorted(among)}: {landed}")


async def viewed_session(
    op: HelpdeskClient, account: OperatorAccount, support: SupportProcess, code: str
) -> str:
    """Log ``op`` in, claim ``code`` for ``screen:view``, watch, and have the subscriber say yes
    (key 1) in the terminal; the session id once the view is granted."""
    await login(op, account)
    session = (await op.claim(code=code, scopes=["screen:view"])).session_id
    support.wait_for("View your screen")
    await op.watch(session)
    support.type("1")
    await op.wait_state(session, lambda s: s.scopes.get("screen:view") == "granted")
    return session


async def frames(op: HelpdeskClient, count: int = 1) -> Canvas:
    """The operator's canvas after a keyframe and at least ``count`` screen updates."""
    canvas = Canvas()
    seen = 0
    while canvas.keyframes == 0 or seen < count:
        canvas.apply(await asyncio.wait_for(op.screen.get(), 30))
        seen += 1
    return canvas


async def input_needs_control(
    op: HelpdeskClient, support: SupportProcess, session: str, x: int, y: int
) -> None:
    """Input is refused (``consent_required``, nothing applied) until the subscriber grants control
    with the typed yes, then applied: whichever process the operator and the agent are on."""
    await op.send_input(session, "move", x=x, y=y)
    refusal = await op.next_event(Error)
    assert isinstance(refusal, Error)
    assert refusal.code == "consent_required"
    assert "input applied" not in support.output.text()
    support.type("/grant control")
    support.wait_for('Type "yes"')
    support.type("yes")
    await op.wait_state(session, lambda s: s.scopes.get("input:control") == "granted")
    await op.send_input(session, "move", x=x, y=y)
    support.wait_for(f"input applied: move {x},{y}")
