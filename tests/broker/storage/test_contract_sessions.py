"""Contract: session rows and consent receipts as the session host writes them (``SessionLog`` and
:class:`broker.session_records.SessionRecords`), the same on SQLite and PostgreSQL.

Two guarantees of issue 14: a person decision (invite / transfer) is a receipt row naming its viewer
(migration 4), and every session that got a code has a row, claimed or not, so "did this subscriber
ask for help on Tuesday" is one read of ``sessions.for_contract``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.core import PersistReceipt, PersistSessionEnd, PersistSessionStart
from broker.datakeys import DataKeyring
from broker.errors import AlreadyExists
from broker.session_records import SessionRecords
from broker.storage import Storage

from .test_contract_records import T0, enrolled


async def test_a_person_decision_receipt_keeps_its_viewer(storage: Storage) -> None:
    await enrolled(storage, "C-1", "aa")
    scope = await storage.sessions.record_receipt(
        session_id="s1",
        contract_id="C-1",
        serial="aa",
        decision="answered",
        granted=("screen:view",),
        denied=(),
        receipt="r1",
        signature="c2ln",
        now=T0 + 1,
    )
    person = await storage.sessions.record_receipt(
        session_id="s1",
        contract_id="C-1",
        serial="aa",
        decision="viewer_allowed",
        granted=("screen:view",),
        denied=(),
        receipt="r2",
        signature="c2ln",
        now=T0 + 2,
        viewer="bob",
    )
    assert (scope.viewer, person.viewer) == (None, "bob")
    assert await storage.sessions.receipts("s1") == [scope, person]
    entries = [e for e in await storage.audit.entries(subject="s1") if e.action == "consent.receipt"]
    assert [e.seq for e in entries] == [scope.audit_seq, person.audit_seq]
    assert "viewer" not in entries[0].details  # a scope decision's entry as it always was
    assert entries[1].details["viewer"] == "bob"
    assert (await storage.audit.verify()).ok


async def test_an_unclaimed_session_has_an_ended_row_and_its_summary(storage: Storage) -> None:
    await enrolled(storage, "C-1", "aa")
    details = {"contract": "C-1", "serial": "aa", "operator": None, "requested_at": T0 + 1}
    await storage.sessions.unclaimed(
        "s-exp",
        contract_id="C-1",
        serial="aa",
        requested_at=T0 + 1,
        now=T0 + 601,
        by="broker",
        reason="code_expired",
        details=details,
    )
    record = await storage.sessions.get("s-exp")
    assert record is not None
    assert (record.operator, record.started_at, record.ended_at, record.ended_by, record.reason) == (
        "",
        T0 + 1,
        T0 + 601,
        "broker",
        "code_expired",
    )
    assert (record.bytes_to_agent, record.bytes_to_operator) == (0, 0)
    assert [r.id for r in await storage.sessions.for_contract("C-1")] == ["s-exp"]
    summary = (await storage.audit.entries(subject="s-exp"))[-1]
    assert (summary.action, summary.details) == ("session.end", details)
    with pytest.raises(AlreadyExists):  # a second end for the same id changes nothing
        await storage.sessions.unclaimed(
            "s-exp",
            contract_id="C-1",
            serial="aa",
            requested_at=T0 + 1,
            now=T0 + 700,
            by="broker",
            reason="x",
            details={},
        )
    assert len(await storage.audit.entries(subject="s-exp")) == 1


def _end(session_id: str, *, claimed: bool, at: float, reason: str) -> PersistSessionEnd:
    return PersistSessionEnd(
        session_id=session_id,
        claimed=claimed,
        by="broker" if not claimed else "operator",
        reason=reason,
        bytes_to_agent=10 if claimed else 0,
        bytes_to_operator=20 if claimed else 0,
        details={
            "contract": "C-1",
            "serial": "aa",
            "operator": "alice" if claimed else None,
            "requested_at": at - 50,
            "ended_at": at,
            "reason": reason,
        },
        at=at,
    )


async def test_every_session_that_got_a_code_has_a_row(storage: Storage, tmp_path: Path) -> None:
    """Through the session host's writer: Tuesday's expired code, Tuesday's cancelled request and
    Tuesday's claimed session all answer "did C-1 ask for help", each with how it ended."""
    await enrolled(storage, "C-1", "aa")
    records = SessionRecords(storage, keyring=DataKeyring.open(tmp_path / "keys"))
    await records.write(_end("s-expired", claimed=False, at=T0 + 600, reason="code_expired"))
    await records.write(_end("s-cancelled", claimed=False, at=T0 + 700, reason="cancelled"))
    await records.write(
        PersistSessionStart(
            session_id="s-helped", contract_id="C-1", serial="aa", operator="alice", at=T0 + 760
        )
    )
    await records.write(
        PersistReceipt(
            session_id="s-helped",
            contract_id="C-1",
            serial="aa",
            decision="viewer_allowed",
            granted=("screen:view",),
            denied=(),
            receipt="r",
            signature="c2ln",
            viewer="bob",
            at=T0 + 770,
        )
    )
    await records.write(_end("s-helped", claimed=True, at=T0 + 800, reason="done"))
    rows = await storage.sessions.for_contract("C-1")
    assert [(r.id, r.operator, r.reason, r.started_at) for r in rows] == [
        ("s-expired", "", "code_expired", T0 + 550),
        ("s-cancelled", "", "cancelled", T0 + 650),
        ("s-helped", "alice", "done", T0 + 760),
    ]
    assert [r.viewer for r in await storage.sessions.receipts("s-helped")] == ["bob"]
    ends = [e.subject for e in await storage.audit.entries() if e.action == "session.end"]
    assert ends == ["s-expired", "s-cancelled", "s-helped"]
    # an end the writer sees twice (another process wrote the row): the summary, no second row
    await records.write(_end("s-expired", claimed=False, at=T0 + 900, reason="code_expired"))
    assert len(await storage.sessions.for_contract("C-1")) == 3
    assert [e.subject for e in await storage.audit.entries() if e.action == "session.end"][-1] == "s-expired"
    assert (await storage.audit.verify()).ok
