"""The foundation, end to end, as an ISP engineer would try it: real broker and agent processes,
real mutual TLS on 127.0.0.1, the admin CLI against the same data dir."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest

from tests.helpers import BrokerProcess, run_agent, start_agent, wait_until

pytestmark = pytest.mark.e2e


def test_enroll_connect_restart_revoke_audit(broker_process: BrokerProcess, tmp_path: Path) -> None:
    broker = broker_process
    agent_dir = tmp_path / "agent"

    enroll_args = broker.add_subscriber("C-1001")
    assert "--ca-fingerprint" in enroll_args
    enrolled = run_agent(agent_dir, *enroll_args, "--machine-name", "subscriber-pc", stdin="y\n")
    assert enrolled.returncode == 0, enrolled.stderr
    serial = enrolled.stdout.split("Client certificate ID: ")[1].split()[0]
    for name in ("agent-key.pem", "agent.pem", "ca.pem", "agent.json"):
        assert stat.S_IMODE((agent_dir / name).stat().st_mode) == 0o600, name
    assert stat.S_IMODE((broker.data_dir / "ca-key.pem").stat().st_mode) == 0o600
    assert b"ENCRYPTED" in (broker.data_dir / "ca-key.pem").read_bytes()

    agent = start_agent(agent_dir)
    try:
        wait_until(lambda: broker.agent_state(serial) == "online", what="agent online")
        assert "subscriber-pc" in broker.cli("agents").stdout
        # A second background agent on the same PC is refused; the first one goes on.
        second = run_agent(agent_dir, "run")
        assert second.returncode == 4
        assert "[already_running] The agent is already running on this PC." in second.stderr
        assert agent.proc.poll() is None

        broker.restart()  # same port, same data dir
        # The broker marks its agents offline on start; the agent comes back by itself.
        wait_until(lambda: agent.output.text().count("Connected to the broker.") >= 2, what="reconnect")
        wait_until(lambda: broker.agent_state(serial) == "online", what="agent online again")

        revoked = broker.cli("cert", "revoke", serial)
        assert f"certificate {serial} revoked" in revoked.stdout
        # The live connection is closed within the revocation poll interval and the agent stops
        # trying: a revoked certificate cannot become valid by retrying.
        assert wait_until(lambda: agent.proc.poll() is not None, what="agent to stop") is not None
        assert agent.proc.returncode == 4
        assert "[cert_revoked]" in agent.output.text()
    finally:
        agent.stop()

    # And the next connection attempt is refused too, with the stable code.
    again = start_agent(agent_dir)
    assert again.proc.wait(60) == 4
    assert "[cert_revoked]" in again.output.text()
    assert broker.agent_state(serial) == "revoked"

    log = broker.cli("audit", "log").stdout
    for action in (
        "subscriber.add",
        "token.issue",
        "agent.enroll",
        "agent.connect",
        "agent.disconnect",
        "cert.revoke",
        "agent.refused",
    ):
        assert action in log, action
    assert "audit chain OK" in broker.cli("audit", "verify").stdout

    broker.stop()
    db = sqlite3.connect(broker.data_dir / "broker.sqlite3")
    with db:
        db.execute("DROP TRIGGER audit_no_update")
        db.execute("UPDATE audit SET details = '{\"serial\":\"forged\"}' WHERE action = 'cert.revoke'")
        seq = db.execute("SELECT seq FROM audit WHERE action = 'cert.revoke'").fetchone()[0]
    db.close()
    verify = broker.cli("audit", "verify", check=False)
    assert verify.returncode == 1
    assert f"entry {seq} (cert.revoke) was changed" in verify.stdout


def test_declining_the_certificate_stores_nothing(broker_process: BrokerProcess, tmp_path: Path) -> None:
    agent_dir = tmp_path / "agent"
    enroll_args = broker_process.add_subscriber("C-2002")
    declined = run_agent(agent_dir, *enroll_args, stdin="n\n", lang="ja")
    assert declined.returncode == 3
    assert "証明書の受け取りを拒否しました" in declined.stderr
    assert not agent_dir.exists() or not any(agent_dir.iterdir())
    # The token was not consumed: the subscriber can change their mind.
    accepted = run_agent(agent_dir, *enroll_args, stdin="y\n")
    assert accepted.returncode == 0, accepted.stderr


def test_wrong_fingerprint_stops_before_sending_the_token(
    broker_process: BrokerProcess, tmp_path: Path
) -> None:
    enroll_args = broker_process.add_subscriber("C-3003")
    i = enroll_args.index("--ca-fingerprint")
    enroll_args[i + 1] = "sha256:" + "ab" * 32
    result = run_agent(tmp_path / "agent", *enroll_args, stdin="y\n")
    assert result.returncode == 2
    assert "does not match" in result.stderr
    # The token is still unused, so no enrollment was attempted with it.
    assert "agent.enroll" not in broker_process.cli("audit", "log").stdout
    assert "enroll.refused" not in broker_process.cli("audit", "log").stdout


def test_second_contract_for_the_same_id_is_refused(broker_process: BrokerProcess) -> None:
    broker_process.add_subscriber("C-4004")
    second = broker_process.cli("subscriber", "add", "C-4004", check=False)
    assert second.returncode == 2
    assert "第7条" in second.stderr


def test_terminate_revokes_and_suspend_is_listed(broker_process: BrokerProcess, tmp_path: Path) -> None:
    broker = broker_process
    enroll_args = broker.add_subscriber("C-5005")
    enrolled = run_agent(tmp_path / "agent", *enroll_args, stdin="y\n")
    serial = enrolled.stdout.split("Client certificate ID: ")[1].split()[0]
    assert "suspended" in broker.cli("subscriber", "suspend", "C-5005", "--days", "400").stdout
    listing = broker.cli("subscriber", "list").stdout
    assert "suspended" in listing
    broker.cli("subscriber", "resume", "C-5005")
    out = broker.cli("subscriber", "terminate", "C-5005").stdout
    assert serial in out
    assert broker.agent_state(serial) == "revoked"
    refused = start_agent(tmp_path / "agent")
    assert refused.proc.wait(60) == 4
    # A new token for a terminated contract is refused as well.
    token = broker.cli("subscriber", "token", "C-5005", check=False)
    assert token.returncode == 2
    assert "subscriber_terminated" in token.stderr
