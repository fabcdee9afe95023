"""Issue 11 item 9: ``python -m broker audit receipts SESSION`` (the real CLI process) refuses a
genuine receipt replayed into another session, and an earlier grant re-appended after a
withdrawal: the signature alone verifies in both cases.

The session core runs in the test driver (fake clock); its write commands go through the broker's
own :class:`broker.session_records.SessionRecords` into a real SQLite database, so the CLI reads
what the session host writes: ``consent_receipts`` rows (each held to its audit entry) and, for a
session recorded before the rows existed, the audit entries alone.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from broker.audit import AuditEntry
from broker.auditkey import load_or_create_audit_key
from broker.core import Audit, Command, PersistReceipt, PersistSessionEnd, PersistSessionStart
from broker.datakeys import DataKeyring
from broker.session_records import SessionRecords
from broker.storage import Storage, keyed_chain, open_storage
from broker.storage.repo_records import ReceiptRecord
from broker.store import CertificateRecord
from tests.broker.core.driver import CoreDriver
from tests.broker.core.test_colleagues import _active, _answer, _colleague, _person_request
from tests.broker.core.test_sessions import T0, World, make_world
from tests.helpers import PYTHON, ROOT, child_env


class StoredWorld:
    """``world.store`` of a stored world: the broker's storage on a loop of its own, called
    synchronously between the driver's steps."""

    def __init__(self, data_dir: Path, manager: CoreDriver) -> None:
        self.manager = manager
        self.path = data_dir / "broker.sqlite3"
        self.runner = asyncio.Runner()
        chain = keyed_chain(load_or_create_audit_key(data_dir).chain)
        self.storage: Storage = self.runner.run(open_storage(self.path, chain=chain))
        self.records = SessionRecords(self.storage, keyring=DataKeyring.open(data_dir / "keys"))

    def write(self, command: Command) -> None:
        if isinstance(command, Audit | PersistSessionStart | PersistSessionEnd | PersistReceipt):
            self.runner.run(self.records.write(command))

    def audit_entries(self, *, subject: str | None = None) -> list[AuditEntry]:
        return self.runner.run(self.storage.audit.entries(subject=subject))

    def add_operator(self, name: str, **fields: Any) -> None:
        """Accounts are the driver's (the core asks it whether a colleague exists)."""
        self.manager.add_operator(name, **fields)

    def receipts(self, session_id: str) -> list[ReceiptRecord]:
        return self.runner.run(self.storage.sessions.receipts(session_id))

    def run(self, work: Any) -> Any:
        return self.runner.run(work)

    def close(self) -> None:
        self.runner.run(self.storage.close())
        self.runner.close()


def make_stored_world(tmp_path: Path) -> tuple[World, StoredWorld]:
    """A world whose write commands also go into a real SQLite database (for the real CLI to read)."""
    world = make_world(tmp_path)
    stored = StoredWorld(tmp_path, world.manager)
    storage = stored.storage

    async def enrolled() -> None:
        await storage.subscribers.add("C-1", now=T0 - 10, actor="test")
        await storage.subscribers.add_enrollment_token(
            "C-1", "h" * 64, now=T0 - 10, expires_at=T0 + 100, actor="test"
        )
        await storage.subscribers.complete_enrollment(
            "h" * 64,
            CertificateRecord(
                serial=world.agent.serial,
                contract_id="C-1",
                machine_name="pc",
                cert_pem=world.manager.certificates[world.agent.serial],
                issued_at=T0 - 10,
                not_after=T0 + 1e7,
            ),
            now=T0 - 10,
        )

    stored.run(enrolled())
    world.manager.observers.append(stored.write)
    world.store = stored
    return world, stored


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    world, stored = make_stored_world(tmp_path)
    try:
        yield world
    finally:
        stored.close()


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
    """What a broker bug or someone holding the broker's key would write: the receipt as it was,
    row and audit entry, through the broker's own call."""
    d = entry.details
    world.store.run(
        world.store.storage.sessions.record_receipt(
            session_id=under,
            contract_id=d["contract"],
            serial=d["serial"],
            decision=d["decision"],
            granted=tuple(d["granted"]),
            denied=tuple(d["denied"]),
            receipt=d["receipt"],
            signature=d["signature"],
            now=now,
            viewer=d.get("viewer"),
        )
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
    _reappend(world, AuditEntry(**{**_fields(entry), "details": details}), session, T0 + 3)
    result = _receipts(world.store.path.parent, session)
    assert result.returncode == 1
    assert "INVALID: certificate 00ff is not known" in result.stdout


def _fields(entry: AuditEntry) -> dict[str, Any]:
    return {f: getattr(entry, f) for f in entry.__dataclass_fields__}


def test_a_person_decision_is_a_receipt_row_naming_its_viewer(world: World) -> None:
    """Invite / transfer answers are receipts like any other: a row with the colleague's name, and the
    CLI checks and prints them with the session's scope decisions."""
    from protocol.messages import Invite

    session = _active(world)
    _colleague(world, "bob")
    world.manager.operator_message(world.op, Invite(id="i1", session_id=session, colleague="bob"), T0 + 3)
    _answer(
        world, session, _person_request(world), "viewer_allowed", ("screen:view", "input:control"), T0 + 4
    )
    rows = world.store.receipts(session)
    assert [(r.decision, r.viewer) for r in rows] == [("answered", None), ("viewer_allowed", "bob")]
    entries = _receipt_entries(world, session)
    assert [e.seq for e in entries] == [r.audit_seq for r in rows]
    assert entries[-1].details["viewer"] == "bob"
    assert "viewer" not in entries[0].details
    result = _receipts(world.store.path.parent, session)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    assert "viewer_allowed" in lines[1]
    assert "viewer=bob" in lines[1]
    assert "signature OK" in lines[1]


def test_an_audit_entry_without_its_row_and_an_edited_row_are_findings(world: World) -> None:
    session, request = world.claim(("screen:view",))
    world.decide(session, ("screen:view",), request.scopes, T0 + 2)
    world.decide(session, (), (), T0 + 4)
    first, second = _receipt_entries(world, session)
    # an entry appended around the session host (no row), and a row edited with sqlite3
    world.store.run(
        world.store.storage.audit.append(
            actor=first.actor, action=first.action, subject=session, details=dict(first.details), now=T0 + 5
        )
    )
    db = sqlite3.connect(world.store.path)
    with db:
        db.execute(
            "UPDATE consent_receipts SET receipt = ? WHERE audit_seq = ?",
            (first.details["receipt"], second.seq),
        )
    db.close()
    result = _receipts(world.store.path.parent, session)
    assert result.returncode == 1
    assert f"#{second.seq}: the receipt row differs from its audit entry (edited)" in result.stdout
    assert "a consent.receipt audit entry without its receipt row" in result.stdout
    assert f"#{second.seq}: INVALID: the consent receipt's signature does not verify" in result.stdout


def test_a_session_recorded_before_the_receipt_rows_is_read_from_the_audit_log(world: World) -> None:
    """Sessions from before the session host wrote rows: their receipts are audit entries only."""
    session, request = world.claim(("screen:view",))
    world.decide(session, ("screen:view",), request.scopes, T0 + 2)
    db = sqlite3.connect(world.store.path)
    with db:  # as such a database is: no receipt rows, no session row
        db.execute("DELETE FROM consent_receipts")
        db.execute("DELETE FROM support_sessions")
    db.close()
    result = _receipts(world.store.path.parent, session)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"session={session} " in result.stdout
    assert "signature OK" in result.stdout
    _reappend(world, _receipt_entries(world, session)[0], session, T0 + 3)  # now a row exists
    db = sqlite3.connect(world.store.path)
    with db:
        db.execute("DELETE FROM consent_receipts")
    db.close()
    world.store.run(
        world.store.storage.audit.append(
            actor="x", action="consent.receipt", subject=session, details={"serial": "00ff"}, now=T0 + 4
        )
    )
    result = _receipts(world.store.path.parent, session)
    assert result.returncode == 1
    assert "INVALID: certificate 00ff is not known" in result.stdout


def test_unknown_session_is_a_finding(world: World) -> None:
    result = _receipts(world.store.path.parent, "s-nothing")
    assert result.returncode == 1
    assert "FINDING session=s-nothing agent=? the session's own record" in result.stdout
    assert "Traceback" not in result.stderr
