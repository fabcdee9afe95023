"""Operator accounts with real argon2id, real RFC 6238 codes for a fixed ``now``, real SQLite files."""

from __future__ import annotations

import asyncio
import inspect
import sqlite3
from collections.abc import Coroutine, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pyotp
import pytest
from argon2 import PasswordHasher

from broker.audit import AuditEntry, ChainReport
from broker.auditkey import load_or_create_audit_key
from broker.datakeys import DataKeyring
from broker.errors import AlreadyExists, RefusedError
from broker.operators import LOGIN_FAILED_MESSAGE, NewOperator, OperatorAccounts, OperatorRecord, hash_token
from broker.storage import keyed_chain, open_storage
from protocol.errors import ErrorCode
from tests.helpers import event_loop_thread

T = TypeVar("T")

T0 = 1_764_028_815.0  # 2025-11-25 00:00:15 UTC, mid-step
STEP = 30.0
PEER = "198.51.100.23"
#: Cheap but real argon2id for speed; one test uses the production defaults.
FAST: dict[str, Any] = {"argon2_time_cost": 1, "argon2_memory_cost": 1024, "argon2_parallelism": 1}


@pytest.fixture
def keyring(tmp_path: Path) -> DataKeyring:
    return DataKeyring.open(tmp_path / "keys")


class SyncAccounts:
    """``OperatorAccounts`` (async, over ``broker.storage``) called from these synchronous tests: each
    call runs on an event loop in a thread of its own, logouts written before it returns. ``store``
    (:class:`Records`, another storage on the same file and audit key) only inspects what was written."""

    def __init__(self, db_path: Path, keyring: DataKeyring, loop: asyncio.AbstractEventLoop, **kw: Any):
        self.loop = loop
        chain = keyed_chain(load_or_create_audit_key(db_path.parent).chain)
        self.storage = self._run(open_storage(db_path, chain=chain))
        self.real = OperatorAccounts(self.storage, keyring, **kw)

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.real, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            async def run() -> Any:
                result = method(*args, **kwargs)
                if inspect.isawaitable(result):
                    result = await result
                await self.real.drain()
                return result

            return self._run(run())

        return call

    def close(self) -> None:
        self._run(self.storage.close())


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    with event_loop_thread() as running:
        yield running


class Records:
    """What was written, read through a storage of its own on the same file (as the admin CLI would)."""

    def __init__(self, db_path: Path, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        chain = keyed_chain(load_or_create_audit_key(db_path.parent).chain)
        self.storage = self._run(open_storage(db_path, chain=chain))

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def get_operator(self, name: str) -> OperatorRecord | None:
        return self._run(self.storage.operators.get(name))

    def audit_entries(self, *, subject: str | None = None) -> list[AuditEntry]:
        return self._run(self.storage.audit.entries(subject=subject))

    def verify_audit(self) -> ChainReport:
        return self._run(self.storage.audit.verify())

    def close(self) -> None:
        self._run(self.storage.close())


@pytest.fixture
def store(db_path: Path, loop: asyncio.AbstractEventLoop) -> Iterator[Records]:
    records = Records(db_path, loop)
    yield records
    records.close()


@pytest.fixture
def accounts(
    store: Records, db_path: Path, keyring: DataKeyring, loop: asyncio.AbstractEventLoop
) -> Iterator[SyncAccounts]:
    sync = SyncAccounts(db_path, keyring, loop, **FAST)
    yield sync
    sync.close()


@pytest.fixture
def alice(accounts: SyncAccounts) -> NewOperator:
    new: NewOperator = accounts.create(
        "alice", role="operator", display_name="Alice A.", now=T0 - 3600, actor="admin"
    )
    return new


def code(new: NewOperator, at: float) -> str:
    totp = pyotp.parse_uri(new.totp_uri)
    assert isinstance(totp, pyotp.TOTP)
    return totp.at(datetime.fromtimestamp(at, UTC))


def secret(new: NewOperator) -> str:
    return pyotp.parse_uri(new.totp_uri).secret


def audit_text(db_path: Path) -> str:
    db = sqlite3.connect(db_path)
    try:
        return "\n".join(repr(row) for row in db.execute("SELECT * FROM audit ORDER BY seq"))
    finally:
        db.close()


def db_bytes(db_path: Path) -> bytes:
    """The database and its WAL: recent writes live in the WAL until a checkpoint."""
    return b"".join(p.read_bytes() for p in db_path.parent.glob(db_path.name + "*"))


def refused(call: Any) -> RefusedError:
    with pytest.raises(RefusedError) as info:
        call()
    return info.value


# -- create -----------------------------------------------------------------------------------------


def test_create_gives_a_usable_one_time_password_and_uri(accounts: SyncAccounts, alice: NewOperator) -> None:
    assert len(alice.initial_password) >= 16
    totp = pyotp.parse_uri(alice.totp_uri)
    assert isinstance(totp, pyotp.TOTP)
    assert (totp.issuer, totp.name, totp.digits, totp.interval) == ("ISP Remote Support", "alice", 6, 30)
    assert alice.initial_password not in repr(alice)
    result = accounts.login("alice", alice.initial_password, code(alice, T0), now=T0, peer=PEER)
    assert (result.name, result.display_name, result.role) == ("alice", "Alice A.", "operator")
    assert result.password_change_required is True
    assert result.expires_at == T0 + 8 * 3600
    assert len(result.token) >= 43


def test_duplicate_and_bad_names(accounts: SyncAccounts, alice: NewOperator) -> None:
    with pytest.raises(AlreadyExists):
        accounts.create("alice", role="admin", now=T0, actor="admin")
    for name in ("", "a b", "x" * 65, "ｱ", "bob\n"):
        assert refused(lambda n=name: accounts.create(n, role="operator", now=T0, actor="a")).code is (
            ErrorCode.INVALID_FIELD
        )
    bad_role: Any = "root"
    assert (
        refused(lambda: accounts.create("bob", role=bad_role, now=T0, actor="a")).code
        is ErrorCode.INVALID_FIELD
    )


def test_totp_secret_and_tokens_are_not_stored_in_plaintext(
    accounts: SyncAccounts, alice: NewOperator, store: Records, db_path: Path
) -> None:
    result = accounts.login("alice", alice.initial_password, code(alice, T0), now=T0, peer=PEER)
    raw = db_bytes(db_path)
    assert secret(alice).encode() not in raw
    assert result.token.encode() not in raw
    assert alice.initial_password.encode() not in raw
    assert hash_token(result.token).encode() in raw
    rec = store.get_operator("alice")
    assert rec is not None
    assert rec.password_hash.startswith("$argon2id$")


# -- login ------------------------------------------------------------------------------------------


def _wrong_password(a: SyncAccounts, n: NewOperator) -> None:
    a.login("alice", "not-the-password", code(n, T0), now=T0, peer=PEER)


def _wrong_code(a: SyncAccounts, n: NewOperator) -> None:
    right = code(n, T0)
    a.login("alice", n.initial_password, f"{(int(right) + 1) % 1_000_000:06d}", now=T0, peer=PEER)


def _unknown_name(a: SyncAccounts, n: NewOperator) -> None:
    a.login("mallory", n.initial_password, code(n, T0), now=T0, peer=PEER)


def _malformed_code(a: SyncAccounts, n: NewOperator) -> None:
    a.login("alice", n.initial_password, "12ab56", now=T0, peer=PEER)


@pytest.mark.parametrize("attempt", [_wrong_password, _wrong_code, _unknown_name, _malformed_code])
def test_every_failure_looks_the_same(accounts: SyncAccounts, alice: NewOperator, attempt: Any) -> None:
    error = refused(lambda: attempt(accounts, alice))
    assert error.code is ErrorCode.LOGIN_FAILED
    assert error.message == LOGIN_FAILED_MESSAGE
    assert error.retry_after is None


def test_unknown_name_still_costs_an_argon2_verification(
    accounts: SyncAccounts, alice: NewOperator, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real = PasswordHasher.verify

    def counting(self: PasswordHasher, hash: str | bytes, password: str | bytes) -> bool:
        calls.append("verify")
        return real(self, hash, password)

    monkeypatch.setattr(PasswordHasher, "verify", counting)
    refused(lambda: _unknown_name(accounts, alice))
    refused(lambda: _wrong_password(accounts, alice))
    assert calls == ["verify", "verify"]


def test_replayed_code_is_refused(accounts: SyncAccounts, alice: NewOperator) -> None:
    """RFC 6238 §5.2: a code is accepted once, even within its own 30 s."""
    c = code(alice, T0)
    accounts.login("alice", alice.initial_password, c, now=T0, peer=PEER)
    error = refused(lambda: accounts.login("alice", alice.initial_password, c, now=T0 + 5, peer=PEER))
    assert (error.code, error.message) == (ErrorCode.LOGIN_FAILED, LOGIN_FAILED_MESSAGE)
    accounts.login("alice", alice.initial_password, code(alice, T0 + STEP), now=T0 + STEP, peer=PEER)


def test_one_step_of_drift_is_accepted_two_are_not(accounts: SyncAccounts, alice: NewOperator) -> None:
    accounts.login("alice", alice.initial_password, code(alice, T0 - STEP), now=T0, peer=PEER)
    late = T0 + 10 * STEP
    refused(
        lambda: accounts.login(
            "alice", alice.initial_password, code(alice, late - 2 * STEP), now=late, peer=PEER
        )
    )
    accounts.login("alice", alice.initial_password, code(alice, late + STEP), now=late, peer=PEER)


def test_five_failures_lock_even_the_right_credentials(
    accounts: SyncAccounts, alice: NewOperator, store: Records, db_path: Path
) -> None:
    for i in range(5):
        error = refused(
            lambda i=i: accounts.login("alice", f"guess-{i}", code(alice, T0), now=T0 + i, peer=PEER)
        )
        assert error.code is ErrorCode.LOGIN_FAILED
    now = T0 + 10
    error = refused(
        lambda: accounts.login("alice", alice.initial_password, code(alice, now), now=now, peer=PEER)
    )
    assert error.code is ErrorCode.ACCOUNT_LOCKED
    assert error.retry_after == pytest.approx(15 * 60 - 6)
    unlocked_at = T0 + 4 + 15 * 60
    result = accounts.login(
        "alice", alice.initial_password, code(alice, unlocked_at), now=unlocked_at, peer=PEER
    )
    assert result.name == "alice"

    entries = list(store.audit_entries(subject="alice"))
    failed = [e for e in entries if e.action == "operator.login_failed"]
    assert len(failed) == 5
    assert all(e.details["peer"] == PEER for e in failed)
    [locked] = [e for e in entries if e.action == "operator.locked"]
    assert locked.details["until"] == unlocked_at
    assert locked.details["peer"] == PEER
    assert [e.action for e in entries][-2:] == ["operator.login_refused", "operator.login"]
    text = audit_text(db_path)
    assert alice.initial_password not in text
    assert all(f"guess-{i}" not in text for i in range(5))
    assert secret(alice) not in text
    assert store.verify_audit().ok


def test_lock_limits_are_configurable_and_admin_can_unlock(
    store: Records, keyring: DataKeyring, db_path: Path, loop: asyncio.AbstractEventLoop
) -> None:
    accounts = SyncAccounts(db_path, keyring, loop, lock_after=2, lock_for=60.0, **FAST)
    bob = accounts.create("bob", role="supervisor", now=T0, actor="admin")
    for _ in range(2):
        refused(lambda: accounts.login("bob", "wrong", code(bob, T0), now=T0, peer=PEER))
    error = refused(lambda: accounts.login("bob", bob.initial_password, code(bob, T0), now=T0 + 1, peer=PEER))
    assert (error.code, error.retry_after) == (ErrorCode.ACCOUNT_LOCKED, 59.0)
    accounts.unlock("bob", now=T0 + 2, actor="admin")
    assert (
        accounts.login("bob", bob.initial_password, code(bob, T0), now=T0 + 2, peer=PEER).role == "supervisor"
    )
    assert ("admin", "operator.unlocked") in [(e.actor, e.action) for e in store.audit_entries(subject="bob")]


def test_unknown_name_failures_are_audited(
    accounts: SyncAccounts, alice: NewOperator, store: Records
) -> None:
    refused(lambda: _unknown_name(accounts, alice))
    [entry] = store.audit_entries(subject="mallory")
    assert (entry.action, entry.details) == ("operator.login_failed", {"peer": PEER, "reason": "unknown"})


# -- tokens -----------------------------------------------------------------------------------------


def test_token_authenticates_until_it_expires(accounts: SyncAccounts, alice: NewOperator) -> None:
    result = accounts.login("alice", alice.initial_password, code(alice, T0), now=T0, peer=PEER)
    who = accounts.authenticate(result.token, now=result.expires_at - 1)
    assert (who.name, who.display_name, who.role) == ("alice", "Alice A.", "operator")
    assert (who.expires_at, who.password_change_required) == (result.expires_at, True)
    for token, at in ((result.token, result.expires_at), ("x" * 43, T0)):
        error = refused(lambda t=token, n=at: accounts.authenticate(t, now=n))
        assert error.code is ErrorCode.AUTH_REQUIRED


def test_token_ttl_is_configurable(
    store: Records, keyring: DataKeyring, db_path: Path, loop: asyncio.AbstractEventLoop
) -> None:
    accounts = SyncAccounts(db_path, keyring, loop, token_ttl=60.0, **FAST)
    new = accounts.create("carol", role="admin", now=T0, actor="admin")
    assert (
        accounts.login("carol", new.initial_password, code(new, T0), now=T0, peer=PEER).expires_at == T0 + 60
    )


def test_logout_revokes(accounts: SyncAccounts, alice: NewOperator, store: Records) -> None:
    result = accounts.login("alice", alice.initial_password, code(alice, T0), now=T0, peer=PEER)
    accounts.logout(result.token, now=T0 + 1)
    assert refused(lambda: accounts.authenticate(result.token, now=T0 + 2)).code is ErrorCode.AUTH_REQUIRED
    accounts.logout(result.token, now=T0 + 3)  # idempotent
    assert [e.action for e in store.audit_entries(subject="alice")].count("operator.logout") == 1


def test_disabled_account_cannot_log_in_and_loses_its_tokens(
    accounts: SyncAccounts, alice: NewOperator, store: Records
) -> None:
    result = accounts.login("alice", alice.initial_password, code(alice, T0), now=T0, peer=PEER)
    accounts.set_disabled("alice", disabled=True, now=T0 + 1, actor="admin")
    assert refused(lambda: accounts.authenticate(result.token, now=T0 + 2)).code is ErrorCode.AUTH_REQUIRED
    later = T0 + STEP
    error = refused(
        lambda: accounts.login("alice", alice.initial_password, code(alice, later), now=later, peer=PEER)
    )
    assert (error.code, error.message) == (ErrorCode.LOGIN_FAILED, LOGIN_FAILED_MESSAGE)


# -- passwords --------------------------------------------------------------------------------------


def test_change_password_rules(accounts: SyncAccounts, alice: NewOperator, db_path: Path) -> None:
    old = alice.initial_password
    wrong = refused(lambda: accounts.change_password("alice", "nope", "a-long-new-password", now=T0))
    assert wrong.code is ErrorCode.LOGIN_FAILED
    short = refused(lambda: accounts.change_password("alice", old, "short-11chr", now=T0))
    assert short.code is ErrorCode.INVALID_FIELD
    assert "12" in short.message
    same = refused(lambda: accounts.change_password("alice", old, old, now=T0))
    assert same.code is ErrorCode.INVALID_FIELD
    accounts.change_password("alice", old, "correct horse battery", now=T0)

    error = refused(lambda: accounts.login("alice", old, code(alice, T0), now=T0, peer=PEER))
    assert error.code is ErrorCode.LOGIN_FAILED
    result = accounts.login("alice", "correct horse battery", code(alice, T0), now=T0, peer=PEER)
    assert result.password_change_required is False
    assert accounts.authenticate(result.token, now=T0).password_change_required is False
    text = audit_text(db_path)
    assert "correct horse battery" not in text
    assert old not in text


def test_wrong_old_password_counts_towards_the_lock(
    store: Records, keyring: DataKeyring, db_path: Path, loop: asyncio.AbstractEventLoop
) -> None:
    accounts = SyncAccounts(db_path, keyring, loop, lock_after=2, **FAST)
    new = accounts.create("dave", role="operator", now=T0, actor="admin")
    for _ in range(2):
        refused(lambda: accounts.change_password("dave", "guess", "a-long-new-password", now=T0))
    error = refused(
        lambda: accounts.change_password("dave", new.initial_password, "a-long-new-password", now=T0)
    )
    assert error.code is ErrorCode.ACCOUNT_LOCKED


def test_reset_password_gives_a_new_one_time_password(
    accounts: SyncAccounts, alice: NewOperator, store: Records
) -> None:
    accounts.change_password("alice", alice.initial_password, "correct horse battery", now=T0)
    fresh = accounts.reset_password("alice", now=T0 + 1, actor="admin")
    assert len(fresh) >= 16
    result = accounts.login("alice", fresh, code(alice, T0 + 1), now=T0 + 1, peer=PEER)
    assert result.password_change_required is True
    assert ("admin", "operator.password_reset") in [(e.actor, e.action) for e in store.audit_entries()]


def test_hash_is_upgraded_when_argon2_parameters_change(
    store: Records,
    keyring: DataKeyring,
    accounts: SyncAccounts,
    alice: NewOperator,
    db_path: Path,
    loop: asyncio.AbstractEventLoop,
) -> None:
    before = store.get_operator("alice")
    assert before is not None
    assert "m=1024,t=1,p=1" in before.password_hash
    stronger = SyncAccounts(db_path, keyring, loop)  # production defaults: RFC 9106 t=3, 64 MiB, p=4
    stronger.login("alice", alice.initial_password, code(alice, T0), now=T0, peer=PEER)
    stronger.close()
    after = store.get_operator("alice")
    assert after is not None
    assert "m=65536,t=3,p=4" in after.password_hash
    assert list(store.audit_entries(subject="alice"))[-1].details["rehashed"] is True
    accounts.login("alice", alice.initial_password, code(alice, T0 + STEP), now=T0 + STEP, peer=PEER)


def test_disabled_account_can_be_enabled_again(accounts: SyncAccounts, alice: NewOperator) -> None:
    accounts.set_disabled("alice", disabled=True, now=T0, actor="admin")
    accounts.set_disabled("alice", disabled=False, now=T0, actor="admin")
    assert accounts.login("alice", alice.initial_password, code(alice, T0), now=T0, peer=PEER).name == "alice"


def test_the_identity_is_read_once_per_link_and_refreshed_from_other_processes(
    accounts: SyncAccounts,
    alice: NewOperator,
    db_path: Path,
    keyring: DataKeyring,
    loop: asyncio.AbstractEventLoop,
) -> None:
    result = accounts.login("alice", alice.initial_password, code(alice, T0), now=T0, peer=PEER)
    assert accounts.admit(result.token, now=T0 + 1).name == "alice"  # a new link: one SELECT
    admin = SyncAccounts(db_path, keyring, loop, **FAST)  # the admin CLI, another process
    try:
        admin.set_disabled("alice", disabled=True, now=T0 + 2, actor="admin")
    finally:
        admin.close()
    # Every message of the link is checked from memory; the broker's operator watch (0.5 s) re-reads
    # the live tokens, and from then on the login is refused, on this link and on any new one.
    assert accounts.authenticate(result.token, now=T0 + 2).name == "alice"
    accounts.refresh({result.token}, now=T0 + 3)
    assert refused(lambda: accounts.authenticate(result.token, now=T0 + 3)).code is ErrorCode.AUTH_REQUIRED
    assert refused(lambda: accounts.admit(result.token, now=T0 + 3)).code is ErrorCode.AUTH_REQUIRED


def test_lock_and_logout_in_this_process_end_the_login_at_once(
    accounts: SyncAccounts, alice: NewOperator
) -> None:
    result = accounts.login("alice", alice.initial_password, code(alice, T0), now=T0, peer=PEER)
    again = accounts.login("alice", alice.initial_password, code(alice, T0 + STEP), now=T0 + STEP, peer=PEER)
    accounts.logout(result.token, now=T0 + STEP + 1)
    assert (
        refused(lambda: accounts.authenticate(result.token, now=T0 + STEP + 1)).code
        is ErrorCode.AUTH_REQUIRED
    )
    assert accounts.authenticate(again.token, now=T0 + STEP + 1).name == "alice"
    assert accounts.lock("alice", seconds=60, now=T0 + STEP + 2, actor="admin") == 1  # the other token
    assert (
        refused(lambda: accounts.authenticate(again.token, now=T0 + STEP + 2)).code is ErrorCode.AUTH_REQUIRED
    )
