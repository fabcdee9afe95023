"""The broker's side of the cluster (broker/cluster_host.py): the shared login/enrollment limit on
SQLite and PostgreSQL, and the admin CLI's cut when NATS does not answer."""

from __future__ import annotations

import subprocess
from pathlib import Path

from broker.cluster_host import SharedAddressLimit
from broker.storage import Storage
from broker.storage.guards import SharedLimits
from tests.broker.cluster.natsserver import free_port
from tests.broker.storage.conftest import postgres_database, storage, storage_url  # noqa: F401
from tests.helpers import PYTHON, ROOT, child_env


async def test_two_processes_share_one_login_limit_per_address(storage: Storage) -> None:  # noqa: F811
    # Two limits over one database stand for two broker processes.
    first, second = SharedAddressLimit("login", 3, 60.0), SharedAddressLimit("login", 3, 60.0)
    first.attach(SharedLimits(storage.db))
    second.attach(SharedLimits(storage.db))
    now = 1_000.0
    answers = [await (first if i % 2 else second).hit("192.0.2.7", now + i) for i in range(6)]
    assert answers[:3] == [None, None, None]
    assert all(retry is not None and 0 < retry <= 60 for retry in answers[3:])
    # Another address has its own window; the first one's fills again after the window.
    assert await first.hit("192.0.2.8", now + 6) is None
    assert await second.hit("192.0.2.7", now + 61) is None


class CountedLimits(SharedLimits):
    """The real shared limits, counting the transactions asked of them."""

    calls = 0

    async def hit(self, key: str, *, limit: int, window: float, now: float) -> float | None:
        self.calls += 1
        return await super().hit(key, limit=limit, window=window, now=now)


async def test_an_address_over_the_limit_here_costs_no_database_work(storage: Storage) -> None:  # noqa: F811
    limit, shared = SharedAddressLimit("enroll", 2, 60.0), CountedLimits(storage.db)
    limit.attach(shared)
    answers = [await limit.hit("198.51.100.1", 1_000.0 + i * 0.01) for i in range(50)]  # a flood
    assert answers[:2] == [None, None]
    assert None not in answers[2:]
    assert shared.calls == 2  # the 48 refused never reached the database
    async with storage.db.read() as tx:
        row = await tx.fetchone("SELECT COUNT(*) FROM limit_hits")
    assert row is not None
    assert row[0] == 2


def test_the_admin_cli_says_when_nats_does_not_answer(tmp_path: Path) -> None:
    data = tmp_path / "broker"
    env = child_env()

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [PYTHON, "-m", "broker", "--data-dir", str(data), *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            timeout=60,
            check=False,
        )

    assert cli("subscriber", "add", "C-NONATS").returncode == 0
    dead = f"nats://127.0.0.1:{free_port()}"
    result = cli("--nats", dead, "subscriber", "terminate", "C-NONATS")
    assert result.returncode == 0, result.stderr
    assert "C-NONATS terminated" in result.stdout
    assert "NATS did not answer: the brokers' revocation poll will cut the connection" in result.stdout
    # Without NATS configured nothing is said about it (the single process's poll does it).
    plain = cli("subscriber", "suspend", "C-NONATS", "--days", "1")
    assert "NATS" not in plain.stdout


async def test_a_failing_database_leaves_the_in_memory_window(tmp_path: Path) -> None:
    from broker.storage import open_storage

    broken = await open_storage(tmp_path / "gone.sqlite3")
    limit = SharedAddressLimit("login", 2, 60.0)
    limit.attach(SharedLimits(broken.db))
    await broken.close()  # every statement fails from now on
    answers = [await limit.hit("203.0.113.9", 1_000.0 + i) for i in range(3)]
    assert answers[:2] == [None, None]  # not refused for the database's sake: the login answers that
    assert answers[2] is not None  # still limited by this process's own window
