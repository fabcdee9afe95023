"""Operator tables on real SQLite files: one transaction per change, audited, replay-safe TOTP steps."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pytest

from broker.errors import AlreadyExists, NotFound
from broker.operators import Role
from broker.sqlite_operators import OPERATOR_SCHEMA, TOKEN_RETENTION
from broker.sqlite_store import SQLiteStore

T0 = 1_764_028_800.0  # 2025-11-25 00:00 UTC
HOUR = 3600.0


def _add(store: SQLiteStore, name: str = "alice", *, role: Role = "operator", now: float = T0) -> None:
    store.add_operator(
        name,
        display_name=name.title(),
        role=role,
        password_hash="$argon2id$fake",
        totp_secret_blob=b"\x01blob",
        now=now,
        actor="admin",
    )


def _actions(store: SQLiteStore) -> list[tuple[str, str]]:
    return [(e.action, e.subject) for e in store.audit_entries()]


def test_schema_is_idempotent_and_splits_like_the_store_schema(store: SQLiteStore, db_path: Path) -> None:
    store.close()
    again = SQLiteStore(db_path)  # reopening runs the store's migration, operator tables included, again
    try:
        tables = {r[0] for r in again._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"operators", "operator_tokens"} <= tables
    finally:
        again.close()
    assert all(s.strip().startswith("CREATE") for s in OPERATOR_SCHEMA.split(";\n") if s.strip())


def test_add_get_list(store: SQLiteStore) -> None:
    _add(store, "bob", role="supervisor")
    _add(store, "alice")
    rec = store.get_operator("alice")
    assert rec is not None
    assert (rec.name, rec.display_name, rec.role) == ("alice", "Alice", "operator")
    assert rec.password_change_required is True
    assert (rec.failed_logins, rec.locked_until, rec.last_totp_step, rec.disabled) == (0, None, None, False)
    assert rec.totp_secret_blob == b"\x01blob"
    assert "argon2" not in repr(rec)
    assert "blob" not in repr(rec)
    assert [r.name for r in store.list_operators()] == ["alice", "bob"]
    assert store.get_operator("carol") is None
    assert _actions(store) == [("operator.add", "bob"), ("operator.add", "alice")]


def test_duplicate_is_refused_and_changes_nothing(store: SQLiteStore) -> None:
    _add(store)
    with pytest.raises(AlreadyExists):
        _add(store)
    assert len(_actions(store)) == 1


def test_role_is_checked_by_the_database_and_rolls_back(store: SQLiteStore) -> None:
    with pytest.raises(sqlite3.IntegrityError):
        _add(store, role=cast(Role, "root"))
    assert store.get_operator("alice") is None
    assert _actions(store) == []


def test_failures_lock_at_the_limit_and_restart_the_count(store: SQLiteStore) -> None:
    _add(store)
    kw: dict[str, Any] = {"lock_after": 3, "lock_for": 600.0, "peer": "192.0.2.7", "reason": "password"}
    assert store.record_login_failure("alice", now=T0, **kw) is None
    assert store.record_login_failure("alice", now=T0 + 1, **kw) is None
    assert store.record_login_failure("alice", now=T0 + 2, **kw) == T0 + 602
    rec = store.get_operator("alice")
    assert rec is not None
    assert (rec.failed_logins, rec.locked_until) == (0, T0 + 602)
    entries = list(store.audit_entries(subject="alice"))
    assert [e.action for e in entries[1:]] == [
        "operator.login_failed",
        "operator.login_failed",
        "operator.login_failed",
        "operator.locked",
    ]
    assert all(e.details["peer"] == "192.0.2.7" for e in entries[1:])
    with pytest.raises(NotFound):
        store.record_login_failure("nobody", now=T0, **kw)


def test_login_success_consumes_the_step_once(store: SQLiteStore) -> None:
    """RFC 6238 §5.2: the same step cannot be accepted twice, even by two processes."""
    _add(store)
    store.record_login_failure("alice", now=T0, lock_after=5, lock_for=1.0, peer="p", reason="totp")

    def ok(step: int, token: str) -> bool:
        return store.record_login_success(
            "alice", now=T0, totp_step=step, peer="p", token_hash=token, expires_at=T0 + HOUR
        )

    assert ok(100, "t1") is True
    rec = store.get_operator("alice")
    assert rec is not None
    assert (rec.last_totp_step, rec.failed_logins) == (100, 0)
    assert ok(100, "t2") is False
    assert ok(99, "t3") is False
    assert store.get_token("t2") is None
    assert store.get_token("t3") is None
    assert ok(101, "t4") is True
    assert store.get_token("t1") == ("alice", T0 + HOUR, None)
    assert [a for a, _ in _actions(store)].count("operator.login") == 2


def test_a_second_connection_sees_the_consumed_step(store: SQLiteStore, db_path: Path) -> None:
    _add(store)
    other = SQLiteStore(db_path)
    try:
        assert store.record_login_success(
            "alice", now=T0, totp_step=7, peer="a", token_hash="x1", expires_at=T0 + 1
        )
        assert not other.record_login_success(
            "alice", now=T0, totp_step=7, peer="b", token_hash="x2", expires_at=T0 + 1
        )
    finally:
        other.close()
    assert store.verify_audit().ok


def test_rehash_on_success(store: SQLiteStore) -> None:
    _add(store)
    store.record_login_success(
        "alice", now=T0, totp_step=1, peer="p", token_hash="h", expires_at=T0 + 1, password_hash="$new"
    )
    rec = store.get_operator("alice")
    assert rec is not None
    assert rec.password_hash == "$new"
    assert list(store.audit_entries())[-1].details["rehashed"] is True


def test_set_password_unlock_disable(store: SQLiteStore) -> None:
    _add(store)
    store.set_password("alice", "$h2", now=T0, change_required=False, actor="operator:alice")
    rec = store.get_operator("alice")
    assert rec is not None
    assert (rec.password_hash, rec.password_change_required) == ("$h2", False)
    store.record_login_failure("alice", now=T0, lock_after=1, lock_for=60.0, peer="p", reason="password")
    store.unlock("alice", now=T0 + 1, actor="admin")
    rec = store.get_operator("alice")
    assert rec is not None
    assert rec.locked_until is None
    store.store_token("tok", "alice", now=T0, expires_at=T0 + HOUR)
    store.set_operator_disabled("alice", disabled=True, now=T0 + 2, actor="admin")
    rec = store.get_operator("alice")
    assert rec is not None
    assert rec.disabled
    assert store.get_token("tok") == ("alice", T0 + HOUR, T0 + 2)
    calls: list[Callable[[], None]] = [
        lambda: store.set_password("x", "h", now=T0, change_required=True, actor="admin"),
        lambda: store.unlock("x", now=T0, actor="admin"),
        lambda: store.set_operator_disabled("x", disabled=True, now=T0, actor="admin"),
    ]
    for call in calls:
        with pytest.raises(NotFound):
            call()
    actions = [a for a, _ in _actions(store)]
    assert actions[-3:] == ["operator.locked", "operator.unlocked", "operator.disable"]
    assert "operator.password_changed" in actions


def test_tokens_revoke_and_prune(store: SQLiteStore) -> None:
    _add(store)
    store.store_token("old", "alice", now=T0, expires_at=T0 + HOUR)
    store.store_token("new", "alice", now=T0, expires_at=T0 + HOUR)
    assert store.revoke_token("new", now=T0 + 5) is True
    assert store.revoke_token("new", now=T0 + 6) is False
    assert store.revoke_token("unknown", now=T0 + 6) is False
    assert store.get_token("new") == ("alice", T0 + HOUR, T0 + 5)
    assert _actions(store)[-1] == ("operator.logout", "alice")
    later = T0 + HOUR + TOKEN_RETENTION + 1
    store.store_token("newest", "alice", now=later, expires_at=later + HOUR)
    assert store.get_token("old") is None
    assert store.get_token("new") is None
    assert store.get_token("newest") is not None
    assert store.verify_audit().ok
