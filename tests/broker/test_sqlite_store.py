"""The embedded SQLite store on real files: 第7条, termination, enrollment refusals, rollback."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from broker.errors import AlreadyExists, NotFound, RefusedError
from broker.sqlite_store import SQLiteStore, check_token
from broker.store import CertificateRecord, SubscriberStatus
from protocol.errors import ErrorCode

T0 = 1_743_500_000.0
DAY = 86_400.0


def _cert(serial: str, contract_id: str = "C1", *, issued_at: float = T0) -> CertificateRecord:
    return CertificateRecord(
        serial=serial,
        contract_id=contract_id,
        machine_name=f"pc-{serial}",
        cert_pem="-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----\n",
        issued_at=issued_at,
        not_after=issued_at + 365 * DAY,
    )


def _enrolled(store: SQLiteStore, contract_id: str, serial: str, *, now: float = T0) -> None:
    token_hash = f"hash-{serial}"
    store.add_enrollment_token(contract_id, token_hash, now=now, expires_at=now + DAY, actor="admin")
    store.complete_enrollment(token_hash, _cert(serial, contract_id, issued_at=now), now=now)


def _snapshot(db_path: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table, read through a separate connection."""
    db = sqlite3.connect(db_path)
    try:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {t: sorted(db.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in tables}  # noqa: S608
    finally:
        db.close()


# -- subscribers -----------------------------------------------------------------------------------


def test_add_and_get_subscriber(store: SQLiteStore) -> None:
    added = store.add_subscriber("C1", now=T0, actor="admin")
    assert added.status is SubscriberStatus.ACTIVE
    assert store.get_subscriber("C1") == added
    assert store.get_subscriber("C2") is None
    [entry] = store.audit_entries()
    assert (entry.actor, entry.action, entry.subject) == ("admin", "subscriber.add", "C1")


def test_second_contract_for_one_id_is_refused(store: SQLiteStore, db_path: Path) -> None:
    store.add_subscriber("C1", now=T0, actor="admin")
    before = _snapshot(db_path)
    with pytest.raises(AlreadyExists) as info:
        store.add_subscriber("C1", now=T0 + 1, actor="admin")
    assert "第7条" in info.value.message
    assert info.value.code is ErrorCode.INVALID_FIELD
    assert _snapshot(db_path) == before
    assert [s.contract_id for s in store.list_subscribers()] == ["C1"]


def test_list_subscribers_is_sorted(store: SQLiteStore) -> None:
    for cid in ("C3", "C1", "C2"):
        store.add_subscriber(cid, now=T0, actor="admin")
    assert [s.contract_id for s in store.list_subscribers()] == ["C1", "C2", "C3"]


def test_suspend_and_resume(store: SQLiteStore) -> None:
    store.add_subscriber("C1", now=T0, actor="admin")
    assert (
        store.set_subscriber_status(
            "C1", SubscriberStatus.SUSPENDED, now=T0 + 1, actor="admin", until=T0 + 30 * DAY, reason="第18条⑤"
        )
        == []
    )
    sub = store.get_subscriber("C1")
    assert sub is not None
    assert sub.status is SubscriberStatus.SUSPENDED
    assert sub.suspended_until == T0 + 30 * DAY
    assert sub.status_changed_at == T0 + 1
    store.set_subscriber_status("C1", SubscriberStatus.ACTIVE, now=T0 + 2, actor="admin")
    sub = store.get_subscriber("C1")
    assert sub is not None
    assert sub.status is SubscriberStatus.ACTIVE
    assert sub.suspended_until is None
    actions = [e.action for e in store.audit_entries(subject="C1")]
    assert actions == ["subscriber.add", "subscriber.suspend", "subscriber.resume"]
    assert list(store.audit_entries(subject="C1"))[1].details == {"reason": "第18条⑤", "until": T0 + 30 * DAY}


def test_status_of_unknown_subscriber(store: SQLiteStore) -> None:
    with pytest.raises(NotFound):
        store.set_subscriber_status("nobody", SubscriberStatus.SUSPENDED, now=T0, actor="admin")


# -- termination -----------------------------------------------------------------------------------


def test_terminate_revokes_everything_and_burns_tokens(store: SQLiteStore) -> None:
    store.add_subscriber("C1", now=T0, actor="admin")
    store.add_subscriber("C2", now=T0, actor="admin")
    _enrolled(store, "C1", "aa01", now=T0 + 1)
    _enrolled(store, "C1", "aa02", now=T0 + 2)
    _enrolled(store, "C1", "aa03", now=T0 + 3)
    _enrolled(store, "C2", "bb01", now=T0 + 4)
    assert store.revoke_certificate("aa03", now=T0 + 5, actor="admin", reason="lost PC")
    store.add_enrollment_token("C1", "unused-1", now=T0, expires_at=T0 + DAY, actor="admin")
    store.add_enrollment_token("C1", "unused-2", now=T0, expires_at=T0 + DAY, actor="admin")
    store.add_enrollment_token("C2", "other", now=T0, expires_at=T0 + DAY, actor="admin")

    revoked = store.set_subscriber_status(
        "C1", SubscriberStatus.TERMINATED, now=T0 + 10, actor="admin", reason="第20条"
    )

    assert sorted(revoked) == ["aa01", "aa02"]
    certs = {c.serial: c for c in store.list_certificates("C1")}
    assert certs["aa01"].revoked_at == certs["aa02"].revoked_at == T0 + 10
    assert certs["aa01"].revoke_reason == "contract terminated"
    assert certs["aa03"].revoked_at == T0 + 5  # the earlier revocation is kept
    assert certs["aa03"].revoke_reason == "lost PC"
    assert store.get_certificate("bb01") is not None
    assert store.get_certificate("bb01").revoked_at is None  # type: ignore[union-attr]
    assert sorted(s for s, _ in store.revoked_serials()) == ["aa01", "aa02", "aa03"]

    for token_hash in ("unused-1", "unused-2"):
        token = store.get_enrollment_token(token_hash)
        assert token is not None
        assert token.used_at == T0 + 10
    other = store.get_enrollment_token("other")
    assert other is not None
    assert other.used_at is None

    sub = store.get_subscriber("C1")
    assert sub is not None
    assert sub.status is SubscriberStatus.TERMINATED
    tail = [(e.action, e.details) for e in store.audit_entries(subject="C1")][-3:]
    assert sorted(tail[:2], key=repr) == [
        ("cert.revoke", {"reason": "contract terminated", "serial": "aa01"}),
        ("cert.revoke", {"reason": "contract terminated", "serial": "aa02"}),
    ]
    assert tail[2][0] == "subscriber.terminate"
    assert sorted(tail[2][1]["revoked"]) == ["aa01", "aa02"]
    assert store.verify_audit().ok


def test_terminate_is_one_transaction(store: SQLiteStore, db_path: Path) -> None:
    """If the last step (the audit entry) fails, no certificate is revoked and no token burnt."""
    store.add_subscriber("C1", now=T0, actor="admin")
    _enrolled(store, "C1", "aa01")
    store.add_enrollment_token("C1", "unused", now=T0, expires_at=T0 + DAY, actor="admin")
    db = sqlite3.connect(db_path, isolation_level=None)
    db.execute(
        "CREATE TRIGGER fail_terminate BEFORE INSERT ON audit WHEN NEW.action = 'subscriber.terminate'"
        " BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"
    )
    db.close()
    before = _snapshot(db_path)

    with pytest.raises(sqlite3.IntegrityError, match="disk on fire"):
        store.set_subscriber_status("C1", SubscriberStatus.TERMINATED, now=T0 + 10, actor="admin")

    assert _snapshot(db_path) == before
    assert store.revoked_serials() == []
    # The store's connection is usable afterwards (no transaction left open).
    store.add_subscriber("C2", now=T0 + 11, actor="admin")
    assert store.verify_audit().ok


def test_terminated_contract_cannot_change_or_get_tokens(store: SQLiteStore, db_path: Path) -> None:
    store.add_subscriber("C1", now=T0, actor="admin")
    store.set_subscriber_status("C1", SubscriberStatus.TERMINATED, now=T0, actor="admin")
    before = _snapshot(db_path)
    with pytest.raises(RefusedError) as info:
        store.set_subscriber_status("C1", SubscriberStatus.ACTIVE, now=T0 + 1, actor="admin")
    assert info.value.code is ErrorCode.SUBSCRIBER_TERMINATED
    with pytest.raises(RefusedError) as info:
        store.add_enrollment_token("C1", "h", now=T0 + 1, expires_at=T0 + DAY, actor="admin")
    assert info.value.code is ErrorCode.SUBSCRIBER_TERMINATED
    assert _snapshot(db_path) == before


def test_token_for_unknown_subscriber(store: SQLiteStore) -> None:
    with pytest.raises(NotFound):
        store.add_enrollment_token("nobody", "h", now=T0, expires_at=T0 + DAY, actor="admin")


# -- enrollment refusals write nothing ---------------------------------------------------------------


@pytest.fixture
def with_tokens(store: SQLiteStore) -> SQLiteStore:
    store.add_subscriber("C1", now=T0, actor="admin")
    store.add_subscriber("C2", now=T0, actor="admin")
    store.add_enrollment_token("C1", "fresh", now=T0, expires_at=T0 + DAY, actor="admin")
    store.add_enrollment_token("C1", "expiring", now=T0, expires_at=T0 + 60, actor="admin")
    _enrolled(store, "C1", "aa01")  # uses token "hash-aa01"
    return store


@pytest.mark.parametrize(
    ("token_hash", "contract_id", "now", "code"),
    [
        ("hash-aa01", "C1", T0 + 1, ErrorCode.TOKEN_USED),
        ("expiring", "C1", T0 + 60, ErrorCode.TOKEN_EXPIRED),  # expiry instant is already too late
        ("no-such-token", "C1", T0 + 1, ErrorCode.TOKEN_UNKNOWN),
        ("fresh", "C2", T0 + 1, ErrorCode.TOKEN_UNKNOWN),  # someone else's token: not revealed
    ],
)
def test_complete_enrollment_refusals_write_nothing(
    with_tokens: SQLiteStore, db_path: Path, token_hash: str, contract_id: str, now: float, code: ErrorCode
) -> None:
    before = _snapshot(db_path)
    with pytest.raises(RefusedError) as info:
        with_tokens.complete_enrollment(token_hash, _cert("ff99", contract_id, issued_at=now), now=now)
    assert info.value.code is code
    assert _snapshot(db_path) == before
    assert with_tokens.get_certificate("ff99") is None


def test_complete_enrollment_just_before_expiry(with_tokens: SQLiteStore) -> None:
    with_tokens.complete_enrollment("expiring", _cert("ff01"), now=T0 + 59.999)
    token = with_tokens.get_enrollment_token("expiring")
    assert token is not None
    assert token.used_at == T0 + 59.999


def test_complete_enrollment_records_everything(with_tokens: SQLiteStore) -> None:
    with_tokens.complete_enrollment("fresh", _cert("ff02", issued_at=T0 + 5), now=T0 + 5)
    assert with_tokens.get_certificate("ff02") == _cert("ff02", issued_at=T0 + 5)
    agents = {a.serial: a for a in with_tokens.list_agents()}
    assert agents["ff02"].online is False
    assert agents["ff02"].revoked is False
    last = list(with_tokens.audit_entries())[-1]
    assert (last.action, last.subject, last.details) == (
        "agent.enroll",
        "C1",
        {"machine_name": "pc-ff02", "serial": "ff02"},
    )


def test_failed_insert_rolls_back_the_token(with_tokens: SQLiteStore, db_path: Path) -> None:
    """A duplicate serial fails after the token UPDATE: the token must stay unused."""
    before = _snapshot(db_path)
    with pytest.raises(sqlite3.IntegrityError):
        with_tokens.complete_enrollment("fresh", _cert("aa01"), now=T0 + 1)
    assert _snapshot(db_path) == before
    token = with_tokens.get_enrollment_token("fresh")
    assert token is not None
    assert token.used_at is None


def test_check_token_refuses_terminated_contract() -> None:
    with pytest.raises(RefusedError) as info:
        check_token(("C1", T0 + DAY, None, "terminated"), contract_id="C1", now=T0)
    assert info.value.code is ErrorCode.SUBSCRIBER_TERMINATED


def test_check_token_accepts_a_good_token() -> None:
    check_token(("C1", T0 + DAY, None, "active"), contract_id="C1", now=T0)


# -- certificates and presence ----------------------------------------------------------------------


def test_revoke_unknown_and_twice(store: SQLiteStore) -> None:
    store.add_subscriber("C1", now=T0, actor="admin")
    _enrolled(store, "C1", "aa01")
    with pytest.raises(NotFound):
        store.revoke_certificate("dead", now=T0, actor="admin", reason="x")
    assert store.revoke_certificate("aa01", now=T0 + 1, actor="admin", reason="x") is True
    assert store.revoke_certificate("aa01", now=T0 + 2, actor="admin", reason="y") is False
    assert store.revoked_serials() == [("aa01", T0 + 1)]


def test_presence(store: SQLiteStore) -> None:
    store.add_subscriber("C1", now=T0, actor="admin")
    _enrolled(store, "C1", "aa01")
    store.set_online("aa01", online=True, now=T0 + 1, peer="192.0.2.1", node="n1")
    [agent] = store.list_agents()
    assert (agent.online, agent.last_seen) == (True, T0 + 1)
    store.touch(["aa01"], now=T0 + 2)
    assert store.list_agents()[0].last_seen == T0 + 2
    assert store.mark_node_offline("n2", now=T0 + 3) == 0
    assert store.mark_node_offline("n1", now=T0 + 3) == 1
    assert store.list_agents()[0].online is False


def test_meta(store: SQLiteStore) -> None:
    assert store.get_meta("public_url") is None
    store.set_meta("public_url", "wss://a.example")
    store.set_meta("public_url", "wss://b.example")
    assert store.get_meta("public_url") == "wss://b.example"
