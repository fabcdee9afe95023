"""Issue 11 item 9: ``python -m broker audit receipts SESSION`` (the real CLI process) refuses a
genuine receipt replayed into another session, and an earlier grant re-appended after a
withdrawal: the signature alone verifies in both cases."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from broker.audit import AuditEntry
from tests.broker.core.test_sessions import T0, World, make_stored_world
from tests.helpers import PYTHON, ROOT, child_env


@pytest.fixture
def world(tmp_path: Path) -> World:
    return make_stored_world(tmp_path)


def _receipts(data_dir: Path, session: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "broker", "--data-dir", str(data_dir), "audit", "receipts", session],
        capture_output=True,
        text=True,
        env=child_env(),
        cwd=ROOT,
        timeout=60,
        check=False,
    )


def _receipt_entries(world: World, session: str) -> list[AuditEntry]:
    return [e for e in world.store.audit_entries(subject=session) if e.action == "consent.receipt"]


def _reappend(world: World, entry: AuditEntry, under: str, now: float) -> None:
    """What a broker bug or someone holding the broker's key would write: the entry as it was."""
    world.store.append_audit(
        actor=entry.actor, action=entry.action, subject=under, details=dict(entry.details), now=now
    )


def _end(world: World, session: str, now: float) -> None:
    from protocol.messages import SessionEnd

    world.manager.agent_message(world.agent, SessionEnd(id="e", session_id=session), now)


def test_genuine_session_receipts_pass(world: World) -> None:
    session, request = world.claim(("screen:view",))
    world.decide(session, ("screen:view",), request.scopes, T0 + 2)
    world.decide(session, (), (), T0 + 4)
    result = _receipts(world.store.path.parent, session)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    assert all(f"session={session} " in line and "signature OK" in line for line in lines)
    assert "FINDING" not in result.stdout


def test_receipt_of_session_1_replayed_under_session_2_is_refused(world: World) -> None:
    first, request = world.claim(("screen:view",))
    world.decide(first, ("screen:view",), request.scopes, T0 + 2)
    _end(world, first, T0 + 3)
    second, _ = world.claim(("screen:view",), now=T0 + 11)  # the subscriber denies by not answering
    replayed = _receipt_entries(world, first)[0]
    _reappend(world, replayed, second, T0 + 12)
    result = _receipts(world.store.path.parent, second)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"session={second} " in result.stdout
    assert f"it is a receipt of session {first}, not of this session (replayed)" in result.stdout
    # Session 1's own record still checks out.
    assert _receipts(world.store.path.parent, first).returncode == 0


def test_earlier_grant_reappended_after_a_withdrawal_is_refused(world: World) -> None:
    session, request = world.claim(("screen:view", "input:control"))
    world.decide(session, ("screen:view", "input:control"), request.scopes, T0 + 2)
    world.decide(session, ("screen:view",), (), T0 + 4)  # control withdrawn
    grant = _receipt_entries(world, session)[0]
    _reappend(world, grant, session, T0 + 5)
    result = _receipts(world.store.path.parent, session)
    assert result.returncode == 1
    seq = _receipt_entries(world, session)[-1].seq
    prefix = f"FINDING session={session} agent={world.agent.serial} #{seq}"
    assert f"{prefix}: it duplicates receipt #{grant.seq} (replayed)" in result.stdout
    assert f"{prefix}: it is older than receipt #{seq - 1} before it (out of order" in result.stdout


def test_receipt_signed_by_another_certificate_of_the_contract_is_refused(world: World) -> None:
    session, request = world.claim(("screen:view",))
    world.decide(session, ("screen:view",), request.scopes, T0 + 2)
    entry = _receipt_entries(world, session)[0]
    details = dict(entry.details)
    details["serial"] = "00ff"
    world.store.append_audit(
        actor=entry.actor, action=entry.action, subject=session, details=details, now=T0 + 3
    )
    result = _receipts(world.store.path.parent, session)
    assert result.returncode == 1
    assert "INVALID: certificate 00ff is not known" in result.stdout


def test_unknown_session_is_a_finding(world: World) -> None:
    result = _receipts(world.store.path.parent, "s-nothing")
    assert result.returncode == 1
    assert "FINDING session=s-nothing agent=? the session's own record" in result.stdout
    assert "Traceback" not in result.stderr
