"""Three broker processes on one PostgreSQL database and one NATS server (issue 15), for the
cluster end-to-end tests: a database with a random name and a NATS subject prefix per module,
one data directory (the CA, the audit key and the data keys are the cluster's), stable node ids.

No PostgreSQL or NATS server is a failure, never a skip.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from helpdesk import HelpdeskClient
from protocol.messages import Error
from tests.broker.cluster.natsserver import SHARED_NATS_URL, free_port, unique_prefix
from tests.broker.storage.conftest import temporary_database
from tests.e2e.conftest import ALWAYS_OPEN
from tests.helpers import BrokerProcess, SupportProcess, run_agent

__all__ = ["Cluster", "cluster_database", "input_needs_control", "start_cluster"]


@dataclass
class Cluster:
    database_url: str
    prefix: str
    data_dir: Path
    brokers: list[BrokerProcess] = field(default_factory=list)

    def client(self, index: int) -> HelpdeskClient:
        return HelpdeskClient(self.brokers[index].url, cafile=self.data_dir / "ca.pem")

    def enroll(self, agent_dir: Path, contract_id: str, *, via: int) -> str:
        """Register a contract and enroll an agent that dials broker ``via``; its certificate ID."""
        broker = self.brokers[via]
        args = [a if not a.startswith("wss://") else broker.url for a in broker.add_subscriber(contract_id)]
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
    migrates the database)."""
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
                    *extra,
                ),
            )
            broker.env["BROKER_DATABASE"] = database_url  # the admin CLI on the same database
            cluster.brokers.append(broker.start())
    except BaseException:
        cluster.stop()
        raise
    return cluster


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
