"""Contract: what changes together changes together, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import asyncio

import pytest

from broker.errors import RefusedError
from broker.storage import ConstraintViolated, Storage
from broker.storage.db import OneStatementOnly
from broker.store import SubscriberStatus
from protocol.errors import ErrorCode
from tests.broker.storage.test_contract_records import T0, cert, enrolled

_REFUSE_TOKEN_UPDATES = {
    "sqlite": (
        "CREATE TRIGGER refuse_token_update BEFORE UPDATE ON enrollment_tokens"
        " BEGIN SELECT RAISE(ABORT, 'tokens are frozen for this test'); END",
    ),
    "postgresql": (
        "CREATE FUNCTION refuse_token_update() RETURNS trigger LANGUAGE plpgsql AS"
        " $$ BEGIN RAISE EXCEPTION 'tokens are frozen for this test'; END $$",
        "CREATE TRIGGER refuse_token_update BEFORE UPDATE ON enrollment_tokens"
        " FOR EACH ROW EXECUTE FUNCTION refuse_token_update()",
    ),
}


async def _contract_with_two_pcs_and_a_spare_token(storage: Storage) -> None:
    await enrolled(storage, "C-1", "aa")
    await enrolled(storage, "C-1", "bb")
    await enrolled(storage, "C-1", "cc")
    await storage.certificates.revoke("cc", now=T0 + 2, actor="admin", reason="old PC")
    await storage.subscribers.add_enrollment_token("C-1", "spare", now=T0, expires_at=T0 + 600, actor="admin")


async def test_terminating_revokes_every_certificate_and_voids_tokens(storage: Storage) -> None:
    await _contract_with_two_pcs_and_a_spare_token(storage)
    revoked = await storage.subscribers.set_status(
        "C-1", SubscriberStatus.TERMINATED, now=T0 + 10, actor="admin", reason="第21条"
    )
    assert revoked == ["aa", "bb"]
    assert {c.serial: c.revoke_reason for c in await storage.certificates.list_all("C-1")} == {
        "aa": "contract terminated",
        "bb": "contract terminated",
        "cc": "old PC",
    }
    spare = await storage.subscribers.get_enrollment_token("spare")
    assert spare is not None
    assert spare.used_at == T0 + 10
    last = (await storage.audit.entries(subject="C-1"))[-3:]
    assert [(e.action, e.details.get("serial")) for e in last] == [
        ("cert.revoke", "aa"),
        ("cert.revoke", "bb"),
        ("subscriber.terminate", None),
    ]
    assert last[-1].details == {"reason": "第21条", "revoked": ["aa", "bb"]}

    # a terminated contract stays terminated, and its leftover token tells why it cannot be used
    with pytest.raises(RefusedError) as refused:
        await storage.subscribers.set_status("C-1", SubscriberStatus.ACTIVE, now=T0 + 11, actor="admin")
    assert refused.value.code is ErrorCode.SUBSCRIBER_TERMINATED
    with pytest.raises(RefusedError) as refused:
        await storage.subscribers.complete_enrollment("spare", cert("dd"), now=T0 + 12)
    assert refused.value.code is ErrorCode.SUBSCRIBER_TERMINATED
    with pytest.raises(RefusedError) as refused:
        await storage.subscribers.add_enrollment_token(
            "C-1", "new", now=T0 + 13, expires_at=T0 + 99, actor="a"
        )
    assert refused.value.code is ErrorCode.SUBSCRIBER_TERMINATED
    assert (await storage.audit.verify()).ok


async def test_a_failure_in_the_middle_of_terminating_leaves_nothing_half_written(storage: Storage) -> None:
    await _contract_with_two_pcs_and_a_spare_token(storage)
    # The database itself refuses the last step (voiding the tokens), after the certificates were
    # revoked and their audit entries appended inside the same transaction.
    async with storage.db.write() as tx:
        for statement in _REFUSE_TOKEN_UPDATES[tx.dialect]:
            await tx.execute(statement)
    certificates_before = await storage.certificates.list_all("C-1")
    audit_before = await storage.audit.entries()

    with pytest.raises(ConstraintViolated, match="frozen"):
        await storage.subscribers.set_status("C-1", SubscriberStatus.TERMINATED, now=T0 + 10, actor="admin")

    subscriber = await storage.subscribers.get("C-1")
    assert subscriber is not None
    assert subscriber.status is SubscriberStatus.ACTIVE
    assert await storage.certificates.list_all("C-1") == certificates_before
    assert await storage.certificates.revoked_serials() == [("cc", T0 + 2)]
    spare = await storage.subscribers.get_enrollment_token("spare")
    assert spare is not None
    assert spare.used_at is None
    assert await storage.audit.entries() == audit_before
    report = await storage.audit.verify()
    assert report.ok, report.problems
    # and the next write appends right after the last committed entry
    seq = await storage.audit.append(actor="t", action="t.after", subject="x", details={}, now=T0 + 20)
    assert seq == audit_before[-1].seq + 1


async def test_one_token_enrolls_one_pc_under_concurrency(storage: Storage) -> None:
    await storage.subscribers.add("C-1", now=T0, actor="admin")
    await storage.subscribers.add_enrollment_token("C-1", "h", now=T0, expires_at=T0 + 600, actor="admin")
    results = await asyncio.gather(
        *(storage.subscribers.complete_enrollment("h", cert(f"{i:02x}"), now=T0 + 1) for i in range(6)),
        return_exceptions=True,
    )
    refused = [r for r in results if isinstance(r, RefusedError)]
    assert results.count(None) == 1
    assert len(refused) == 5
    assert {r.code for r in refused} == {ErrorCode.TOKEN_USED}
    assert len(await storage.certificates.list_all("C-1")) == 1


async def test_one_totp_code_logs_in_once_under_concurrency(storage: Storage) -> None:
    await storage.operators.add(
        "alice",
        display_name="A",
        role="operator",
        password_hash="h",
        totp_secret_blob=b"s",
        now=T0,
        actor="a",
    )
    results = await asyncio.gather(
        *(
            storage.operators.record_login_success(
                "alice", now=T0 + 1, totp_step=77, peer="p", token_hash=f"t{i}", expires_at=T0 + 99
            )
            for i in range(6)
        )
    )
    assert sorted(results) == [False] * 5 + [True]
    logins = [e for e in await storage.audit.entries(subject="alice") if e.action == "operator.login"]
    assert len(logins) == 1


async def test_a_cancelled_transaction_is_rolled_back(storage: Storage) -> None:
    inside = asyncio.Event()

    async def interrupted() -> None:
        async with storage.db.write() as tx:
            await tx.execute(
                "INSERT INTO subscribers(contract_id, status, created_at, status_changed_at)"
                " VALUES ('C-9', 'active', 1, 1)"
            )
            inside.set()
            await asyncio.Event().wait()  # cancelled here, mid-transaction

    task = asyncio.create_task(interrupted())
    await inside.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await storage.subscribers.get("C-9") is None
    await storage.subscribers.add("C-10", now=T0, actor="admin")  # the database is free again
    assert [s.contract_id for s in await storage.subscribers.list_all()] == ["C-10"]


async def test_the_audit_log_is_append_only(storage: Storage) -> None:
    await storage.audit.append(actor="a", action="x", subject="s", details={}, now=T0)
    for statement in ("UPDATE audit SET actor = 'mallory'", "DELETE FROM audit"):
        with pytest.raises(ConstraintViolated, match="append-only"):
            async with storage.db.write() as tx:
                await tx.execute(statement)
    entries = await storage.audit.entries()
    assert [e.actor for e in entries] == ["a"]


async def test_a_single_statement_read_lets_one_select_through_and_nothing_else(storage: Storage) -> None:
    """``read_statement`` (an agent's admission at every reconnect) reads what ``read`` reads, and a
    write, a lock or a second statement in it is a bug caught before it reaches the database."""
    await enrolled(storage, "C-1", "aa")
    async with storage.db.read() as tx:
        in_transaction = await tx.fetchall("SELECT serial, contract_id FROM certificates")
    async with storage.db.read_statement() as tx:
        assert await tx.fetchall("SELECT serial, contract_id FROM certificates") == in_transaction
    found = await storage.certificates.with_subscriber("aa")
    assert found is not None
    assert found[0].contract_id == "C-1"
    assert found[1] is not None

    insert = (
        "INSERT INTO subscribers(contract_id, status, created_at, status_changed_at)"
        " VALUES ('C-9', 'active', 1, 1)"
    )
    with pytest.raises(OneStatementOnly, match="does not write"):
        async with storage.db.read_statement() as tx:
            await tx.execute(insert)
    with pytest.raises(OneStatementOnly, match="plain SELECT"):  # a write disguised as a read
        async with storage.db.read_statement() as tx:
            await tx.fetchone(insert + " RETURNING contract_id")
    with pytest.raises(OneStatementOnly, match="plain SELECT"):  # two statements in one string
        async with storage.db.read_statement() as tx:
            await tx.fetchone("SELECT 1; DELETE FROM certificates")
    for locking in (
        "SELECT serial FROM certificates FOR UPDATE",
        "SELECT serial FROM certificates for share",
        "SELECT serial FROM certificates FOR NO KEY UPDATE",
        "SELECT serial FROM certificates FOR KEY SHARE",
    ):
        with pytest.raises(OneStatementOnly, match="plain SELECT"):  # a row lock would end with it
            async with storage.db.read_statement() as tx:
                await tx.fetchone(locking)
    async with storage.db.read_statement() as tx:
        await tx.fetchone("SELECT 1")
        with pytest.raises(OneStatementOnly, match="one statement"):
            await tx.fetchone("SELECT 2")
    with pytest.raises(OneStatementOnly, match="no lock"):
        async with storage.db.read_statement() as tx:
            await tx.lock_audit()
    assert await storage.subscribers.get("C-9") is None  # nothing reached the database
    assert await storage.certificates.get("aa") is not None
    await storage.subscribers.add("C-10", now=T0, actor="admin")  # and its connections are usable
    assert [s.contract_id for s in await storage.subscribers.list_all()] == ["C-1", "C-10"]
