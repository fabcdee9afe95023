"""A PostgreSQL host that vanishes (power lost, a partition: no reset, no answer) under a broker's pool:
what waits on it fails within ``dead_server_timeout`` as a storage failure, and the pool answers
again once the host is back. Without the TCP settings Linux retransmits for ~15 minutes.

The server is a private PostgreSQL in a network namespace of the test's own (``unshare -n``, root:
CI runs as root), whose loopback the worker takes down; the machine's own server is not touched.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from broker.storage.postgres import DEFAULT_DEAD_SERVER_TIMEOUT, tcp_settings
from tests.broker.storage.dead_server_worker import DEAD_SERVER_TIMEOUT

ROOT = Path(__file__).resolve().parents[3]


def _postgres_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        pytest.fail("PostgreSQL's server binaries are missing (scripts/bootstrap --system)", pytrace=False)
    return found[-1].parent


def test_a_query_to_a_vanished_database_host_fails_in_bounded_time_and_the_pool_recovers() -> None:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.fail("needs root and unshare(1) for a network namespace (CI runs as root)", pytrace=False)
    done = subprocess.run(
        [
            "unshare",
            "-n",
            sys.executable,
            "-m",
            "tests.broker.storage.dead_server_worker",
            str(_postgres_bin()),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    bound = DEAD_SERVER_TIMEOUT * 2.5  # the timeout, plus the retransmission that crosses it
    for case in ("sent_to_dead_server", "waiting_on_dead_server"):
        assert result[case]["failed"], (case, result)
        assert result[case]["storage_failure"], (case, result)  # an agent hears storage_unavailable
        assert result[case]["seconds"] < bound, (case, result)
    for case in ("after_sent", "after_waiting"):
        assert result[case]["answered"], (case, result)
        assert result[case]["failures"] <= 2, (case, result)  # at most the connections that died


def test_the_url_s_own_tcp_settings_win() -> None:
    defaults = tcp_settings("postgresql://broker@db.example/broker", DEFAULT_DEAD_SERVER_TIMEOUT)
    assert defaults == {
        "keepalives": "1",
        "keepalives_idle": "10",
        "keepalives_interval": "3",
        "keepalives_count": "3",
        "tcp_user_timeout": "20000",
    }
    given = tcp_settings(
        "postgresql://broker@db.example/broker?tcp_user_timeout=5000&keepalives_idle=4", 20.0
    )
    assert "tcp_user_timeout" not in given
    assert "keepalives_idle" not in given
    assert given["keepalives_interval"] == "3"
