"""Contract: the rules the synchronous store's own tests checked (``test_sqlite_store.py`` and
``test_sqlite_operators.py``, deleted with that store) that the round-trip tests did not, on SQLite
and PostgreSQL alike: refusals that change nothing, the instant a token expires, a duplicate serial
rolling the token back, what terminating leaves alone, operator rows that never show secrets,
TOTP steps consumed across connections, rehash, and token pruning."""

from __future__ import annotations

from typing import cast

import pytest

from broker.errors import AlreadyExists, NotFound
from broker.operators import Role
from broker.storage import ConstraintViolated, Storage, open_storage
from broker.storage.repo_operators import TOKEN_RETENTION
from broker.store import SubscriberStatus
from protocol.errors import ErrorCode

from .test_contract_records import T0, cert, enrolled

HOUR = 3600.0


async def _add_operator(storage: Storage, name: str = "alice", *, role: Role = "operator") -> None:
    await storage.operators.add(
        name,
        display_name=name.title(),
        role=role,
        password_hash="$argon2id$fake",
        totp_secret_blob=b"\x01blob",
        now=T0,
        actor="admin",
    )


async def test_a_second_contract_for_one_id_is_refused_and_changes_nothing(storage: Storage) -> None:
    await storage.subscribers.add("C-1", now=T0, actor="admin")
    before = await storage.audit.entries()
    with pytest.raises(AlreadyExists) as refused:
        await storage.subscribers.add("C-1", now=T0 + 1, actor="admin")
    assert "第7条" in refused.value.message
    assert refused.value.code is ErrorCode.INVALID_FIELD
    assert await storage.audit.entries() == before
    subscriber = await storage.subscribers.get("C-1")
    assert subscriber is not None
    assert subscriber.created_at == T0


async def test_a_token_for_an_unknown_contract_is_refused(storage: Storage) -> None:
    with pytest.raises(NotFound):
        await storage.subscribers.add_enrollment_token("nobody", "h", now=T0, expires_at=T0 + 60, actor="a")
    assert await storage.subscribers.get_enrollment_token("h") is None
    assert await storage.audit.entries() == []


async def test_a_token_works_until_just_before_its_expiry_and_records_the_pc(storage: Storage) -> None:
    await storage.subscribers.add("C-1", now=T0, actor="admin")
    await storage.subscribers.add_enrollment_token("C-1", "exp", now=T0, expires_at=T0 + 60, actor="admin")
    await storage.subscribers.complete_enrollment("exp", cert("ff01"), now=T0 + 59.999)
    token = await storage.subscribers.get_enrollment_token("exp")
    assert token is not None
    assert token.used_at == T0 + 59.999
    last = (await storage.audit.entries())[-1]
    assert (last.actor, last.action, last.subject, last.details) == (
        "agent",
        "agent.enroll",
        "C-1",
        {"machine_name": "pc-ff01", "serial": "ff01"},
    )


async def test_a_duplicate_serial_leaves_the_token_unused(storage: Storage) -> None:
    """The certificate insert fails after the token was marked used: the whole enrollment rolls back."""
    await enrolled(storage, "C-1", "aa01")
    await storage.subscribers.add_enrollment_token("C-1", "fresh", now=T0, expires_at=T0 + 600, actor="a")
    before = await storage.audit.entries()
    with pytest.raises(ConstraintViolated):
        await storage.subscribers.complete_enrollment("fresh", cert("aa01"), now=T0 + 2)
    token = await storage.subscribers.get_enrollment_token("fresh")
    assert token is not None
    assert token.used_at is None
    assert await storage.audit.entries() == before
    assert [c.serial for c in await storage.certificates.list_all("C-1")] == ["aa01"]


async def test_terminating_one_contract_leaves_the_others_alone(storage: Storage) -> None:
    await enrolled(storage, "C-1", "aa01")
    await enrolled(storage, "C-2", "bb01")
    await storage.subscribers.add_enrollment_token("C-2", "other", now=T0, expires_at=T0 + 600, actor="a")
    assert await storage.subscribers.set_status(
        "C-1", SubscriberStatus.TERMINATED, now=T0 + 10, actor="admin"
    ) == ["aa01"]
    other_pc = await storage.certificates.get("bb01")
    assert other_pc is not None
    assert other_pc.revoked_at is None
    other_token = await storage.subscribers.get_enrollment_token("other")
    assert other_token is not None
    assert other_token.used_at is None
    other = await storage.subscribers.get("C-2")
    assert other is not None
    assert other.status is SubscriberStatus.ACTIVE
    assert await storage.presence.mark_node_offline("no-such-node", now=T0 + 11) == 0


async def test_operator_rows_are_sorted_and_never_show_secrets(storage: Storage) -> None:
    await _add_operator(storage, "bob", role="supervisor")
    await _add_operator(storage, "alice")
    record = await storage.operators.get("alice")
    assert record is not None
    assert (record.failed_logins, record.locked_until, record.last_totp_step, record.disabled) == (
        0,
        None,
        None,
        False,
    )
    assert record.totp_secret_blob == b"\x01blob"
    assert "argon2" not in repr(record)
    assert "blob" not in repr(record)
    assert [o.name for o in await storage.operators.list_all()] == ["alice", "bob"]
    assert await storage.operators.get("carol") is None


async def test_a_duplicate_or_an_unknown_role_changes_nothing(storage: Storage) -> None:
    await _add_operator(storage)
    with pytest.raises(AlreadyExists):
        await _add_operator(storage)
    with pytest.raises(ConstraintViolated):  # the database checks the role
        await _add_operator(storage, "root", role=cast(Role, "root"))
    assert await storage.operators.get("root") is None
    assert [(e.action, e.subject) for e in await storage.audit.entries()] == [("operator.add", "alice")]


async def test_failed_logins_name_the_peer(storage: Storage) -> None:
    await _add_operator(storage)
    for i in range(3):
        await storage.operators.record_login_failure(
            "alice", now=T0 + i, lock_after=3, lock_for=600.0, peer="192.0.2.7", reason="password"
        )
    entries = (await storage.audit.entries(subject="alice"))[1:]
    assert [e.action for e in entries] == ["operator.login_failed"] * 3 + ["operator.locked"]
    assert all(e.details["peer"] == "192.0.2.7" for e in entries)


async def test_a_totp_step_is_consumed_for_every_connection(storage: Storage, storage_url: str) -> None:
    """RFC 6238 §5.2: a step, or an older one, is never accepted again, even by another process's
    connection to the same database; a rehash on success is recorded."""
    await _add_operator(storage)
    assert await storage.operators.record_login_success(
        "alice", now=T0, totp_step=100, peer="a", token_hash="t1", expires_at=T0 + HOUR, password_hash="$new"
    )
    other = await open_storage(storage_url)
    try:
        for step, token in ((100, "t2"), (99, "t3")):
            assert not await other.operators.record_login_success(
                "alice", now=T0, totp_step=step, peer="b", token_hash=token, expires_at=T0 + HOUR
            )
            assert await other.operators.get_token(token) is None
        assert await other.operators.record_login_success(
            "alice", now=T0 + 30, totp_step=101, peer="b", token_hash="t4", expires_at=T0 + HOUR
        )
    finally:
        await other.close()
    record = await storage.operators.get("alice")
    assert record is not None
    assert (record.password_hash, record.last_totp_step) == ("$new", 101)
    logins = [e for e in await storage.audit.entries() if e.action == "operator.login"]
    assert logins[0].details.get("rehashed") is True
    assert len(logins) == 2
    assert (await storage.audit.verify()).ok


async def test_tokens_are_revoked_once_and_pruned_after_the_retention(storage: Storage) -> None:
    await _add_operator(storage)
    await storage.operators.store_token("old", "alice", now=T0, expires_at=T0 + HOUR)
    await storage.operators.store_token("new", "alice", now=T0, expires_at=T0 + HOUR)
    assert await storage.operators.revoke_token("unknown", now=T0 + 6) is False
    assert await storage.operators.revoke_token("new", now=T0 + 5) is True
    later = T0 + HOUR + TOKEN_RETENTION + 1
    await storage.operators.store_token("newest", "alice", now=later, expires_at=later + HOUR)
    assert await storage.operators.get_token("old") is None
    assert await storage.operators.get_token("new") is None
    assert await storage.operators.get_token("newest") == ("alice", later + HOUR, None)
