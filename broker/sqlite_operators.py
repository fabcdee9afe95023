"""Operator accounts and their session tokens in the embedded SQLite store (DESIGN §3, §6).

A mixin, :class:`OperatorTables`, that :class:`broker.sqlite_store.SQLiteStore` inherits: it needs the
store's connection (``_db``), its ``BEGIN IMMEDIATE`` transaction (``_write``) and its audit appender
(``_append_audit``), so that every change here and its audit entry commit together or not at all.

What is stored, and why in that form:

- ``password_hash``: argon2id only (the service hashes; the store never sees a password).
- ``totp_secret_blob``: the RFC 6238 shared secret, AES-GCM ciphertext from
  :class:`broker.datakeys.DataKeyring` with ``aad = b"totp:" + name`` (the service encrypts). A copied
  database file alone does not let anyone mint login codes; the blob cannot be moved to another operator.
- ``last_totp_step``: the time step of the last accepted code; RFC 6238 §5.2 says a verifier "MUST NOT
  accept the second attempt of the OTP after the successful validation has been issued for the first OTP".
  The check is a conditional ``UPDATE`` inside the login transaction, so two broker processes cannot both
  accept one code.
- ``failed_logins`` / ``locked_until``: brute-force lockout, shared by every process on the file.
- ``operator_tokens.token_hash``: SHA-256 of the bearer token; the token itself is only ever on the wire.

Audit actions written here: ``operator.add``, ``operator.login``, ``operator.login_failed``,
``operator.locked``, ``operator.unlocked``, ``operator.password_changed`` (or the caller's action),
``operator.logout``. Subject is the operator's name, as in ``broker/sessions.py``. No password, hash,
secret or token ever goes into ``details``.
"""

from __future__ import annotations

import sqlite3
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Final

from .errors import AlreadyExists, NotFound
from .operators import OperatorRecord, Role

__all__ = ["OPERATOR_SCHEMA", "OperatorTables"]

#: Statements end with ``";\n"`` like ``sqlite_store._SCHEMA``, so the two can be concatenated and split
#: the same way; none contains a trigger body.
OPERATOR_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS operators (
    name TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('operator', 'supervisor', 'admin')),
    password_hash TEXT NOT NULL,
    totp_secret_blob BLOB NOT NULL,
    created_at REAL NOT NULL,
    password_change_required INTEGER NOT NULL DEFAULT 1,
    failed_logins INTEGER NOT NULL DEFAULT 0,
    locked_until REAL,
    last_totp_step INTEGER,
    disabled INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS operator_tokens (
    token_hash TEXT PRIMARY KEY,
    name TEXT NOT NULL REFERENCES operators(name),
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    revoked_at REAL
);
CREATE INDEX IF NOT EXISTS operator_tokens_name ON operator_tokens(name);
CREATE INDEX IF NOT EXISTS operator_tokens_expiry ON operator_tokens(expires_at);
"""

_SELECT: Final = (
    "SELECT name, display_name, role, password_hash, totp_secret_blob, created_at, password_change_required,"
    " failed_logins, locked_until, last_totp_step, disabled FROM operators"
)

#: Tokens are deleted this long after they expire (kept a while so "expired" is told apart from "unknown"
#: in the audit of a late reconnect; the table stays bounded by logins per day).
TOKEN_RETENTION: Final = 86_400.0


def _record(row: tuple[Any, ...]) -> OperatorRecord:
    return OperatorRecord(
        name=row[0],
        display_name=row[1],
        role=row[2],
        password_hash=row[3],
        totp_secret_blob=bytes(row[4]),
        created_at=row[5],
        password_change_required=bool(row[6]),
        failed_logins=int(row[7]),
        locked_until=row[8],
        last_totp_step=row[9],
        disabled=bool(row[10]),
    )


class OperatorTables:
    """Operator rows for a store that has ``_db``, ``_write`` and ``_append_audit`` (``SQLiteStore``).

    Every method that writes is one transaction, with its audit entry inside it.
    """

    if TYPE_CHECKING:  # provided by SQLiteStore; declared for mypy only, so no stub can shadow them
        _db: sqlite3.Connection

        def _write(self) -> AbstractContextManager[sqlite3.Connection]: ...

        def _append_audit(
            self, *, actor: str, action: str, subject: str, details: dict[str, Any], now: float
        ) -> int: ...

    # -- accounts ---------------------------------------------------------------------------------

    def add_operator(
        self,
        name: str,
        *,
        display_name: str,
        role: Role,
        password_hash: str,
        totp_secret_blob: bytes,
        now: float,
        actor: str,
        password_change_required: bool = True,
    ) -> OperatorRecord:
        with self._write() as db:
            if db.execute("SELECT 1 FROM operators WHERE name = ?", (name,)).fetchone():
                raise AlreadyExists(f"operator {name} already exists")
            db.execute(
                "INSERT INTO operators(name, display_name, role, password_hash, totp_secret_blob, created_at,"
                " password_change_required) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    name,
                    display_name,
                    role,
                    password_hash,
                    totp_secret_blob,
                    now,
                    int(password_change_required),
                ),
            )
            self._append_audit(
                actor=actor,
                action="operator.add",
                subject=name,
                details={"role": role, "display_name": display_name},
                now=now,
            )
        record = self.get_operator(name)
        assert record is not None  # just inserted
        return record

    def get_operator(self, name: str) -> OperatorRecord | None:
        row = self._db.execute(_SELECT + " WHERE name = ?", (name,)).fetchone()
        return _record(row) if row else None

    def list_operators(self) -> list[OperatorRecord]:
        return [_record(r) for r in self._db.execute(_SELECT + " ORDER BY name")]

    # -- login ------------------------------------------------------------------------------------

    def record_login_failure(
        self, name: str, *, now: float, lock_after: int, lock_for: float, peer: str, reason: str
    ) -> float | None:
        """Count one failed login; at ``lock_after`` in a row lock the account until ``now + lock_for``.

        Returns the new ``locked_until`` when this failure locked the account, else None. The counter
        restarts at zero once the lock is set, so after it expires the operator has ``lock_after`` tries
        again. ``reason`` is for the audit (``password``, ``totp``, ``totp_replay`` …), never shown to
        the client.
        """
        with self._write() as db:
            row = db.execute("SELECT failed_logins FROM operators WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise NotFound(f"no operator {name}")
            failures = int(row[0]) + 1
            locked_until: float | None = None
            if failures >= lock_after:
                locked_until = now + lock_for
                db.execute(
                    "UPDATE operators SET failed_logins = 0, locked_until = ? WHERE name = ?",
                    (locked_until, name),
                )
            else:
                db.execute("UPDATE operators SET failed_logins = ? WHERE name = ?", (failures, name))
            self._append_audit(
                actor="broker",
                action="operator.login_failed",
                subject=name,
                details={"peer": peer, "reason": reason, "failures": failures},
                now=now,
            )
            if locked_until is not None:
                self._append_audit(
                    actor="broker",
                    action="operator.locked",
                    subject=name,
                    details={"peer": peer, "until": locked_until, "failures": failures},
                    now=now,
                )
        return locked_until

    def record_login_success(
        self,
        name: str,
        *,
        now: float,
        totp_step: int,
        peer: str,
        token_hash: str,
        expires_at: float,
        password_hash: str | None = None,
    ) -> bool:
        """Accept a login: consume the TOTP step, reset the failure count, store the session token
        (SHA-256 of it, expiring at ``expires_at``).

        Returns False, changing nothing, when ``totp_step`` is not newer than the last accepted one
        (RFC 6238 §5.2 replay; decided here, inside the transaction, so concurrent logins with one code
        cannot both pass). ``password_hash`` replaces the stored hash when argon2 parameters changed.
        """
        with self._write() as db:
            cur = db.execute(
                "UPDATE operators SET last_totp_step = ?, failed_logins = 0, locked_until = NULL"
                " WHERE name = ? AND (last_totp_step IS NULL OR last_totp_step < ?)",
                (totp_step, name, totp_step),
            )
            if cur.rowcount != 1:
                return False
            if password_hash is not None:
                db.execute("UPDATE operators SET password_hash = ? WHERE name = ?", (password_hash, name))
            details: dict[str, Any] = {"peer": peer, "totp_step": totp_step}
            if password_hash is not None:
                details["rehashed"] = True
            self._insert_token(token_hash, name, now=now, expires_at=expires_at)
            details["expires_at"] = expires_at
            self._append_audit(
                actor=f"operator:{name}", action="operator.login", subject=name, details=details, now=now
            )
        return True

    def set_password(
        self,
        name: str,
        password_hash: str,
        *,
        now: float,
        change_required: bool,
        actor: str,
        action: str = "operator.password_changed",
    ) -> None:
        """Replace the hash; ``change_required=True`` marks it a one-time password (admin reset)."""
        with self._write() as db:
            cur = db.execute(
                "UPDATE operators SET password_hash = ?, password_change_required = ? WHERE name = ?",
                (password_hash, int(change_required), name),
            )
            if cur.rowcount != 1:
                raise NotFound(f"no operator {name}")
            self._append_audit(
                actor=actor,
                action=action,
                subject=name,
                details={"change_required": change_required},
                now=now,
            )

    def unlock(self, name: str, *, now: float, actor: str) -> None:
        with self._write() as db:
            cur = db.execute(
                "UPDATE operators SET failed_logins = 0, locked_until = NULL WHERE name = ?", (name,)
            )
            if cur.rowcount != 1:
                raise NotFound(f"no operator {name}")
            self._append_audit(actor=actor, action="operator.unlocked", subject=name, details={}, now=now)

    def lock_operator(self, name: str, *, until: float, now: float, actor: str) -> int:
        """An admin's lock: no login until ``until``, and every live token revoked at once (the
        broker closes their connections within a second, broker.operator_links). Returns how many
        tokens were revoked."""
        with self._write() as db:
            cur = db.execute(
                "UPDATE operators SET failed_logins = 0, locked_until = ? WHERE name = ?", (until, name)
            )
            if cur.rowcount != 1:
                raise NotFound(f"no operator {name}")
            revoked = db.execute(
                "UPDATE operator_tokens SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL",
                (now, name),
            ).rowcount
            self._append_audit(
                actor=actor,
                action="operator.locked",
                subject=name,
                details={"until": until, "tokens_revoked": revoked},
                now=now,
            )
        return int(revoked)

    def set_operator_disabled(self, name: str, *, disabled: bool, now: float, actor: str) -> None:
        """Disable (or re-enable) an account; disabling also revokes its live tokens."""
        with self._write() as db:
            cur = db.execute("UPDATE operators SET disabled = ? WHERE name = ?", (int(disabled), name))
            if cur.rowcount != 1:
                raise NotFound(f"no operator {name}")
            if disabled:
                db.execute(
                    "UPDATE operator_tokens SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL",
                    (now, name),
                )
            self._append_audit(
                actor=actor,
                action="operator.disable" if disabled else "operator.enable",
                subject=name,
                details={},
                now=now,
            )

    # -- tokens -----------------------------------------------------------------------------------

    def _insert_token(self, token_hash: str, name: str, *, now: float, expires_at: float) -> None:
        """Inside the caller's transaction; also drops tokens long expired, so the table stays bounded."""
        self._db.execute("DELETE FROM operator_tokens WHERE expires_at < ?", (now - TOKEN_RETENTION,))
        self._db.execute(
            "INSERT INTO operator_tokens(token_hash, name, created_at, expires_at) VALUES (?, ?, ?, ?)",
            (token_hash, name, now, expires_at),
        )

    def store_token(self, token_hash: str, name: str, *, now: float, expires_at: float) -> None:
        with self._write():
            self._insert_token(token_hash, name, now=now, expires_at=expires_at)

    def get_token(self, token_hash: str) -> tuple[str, float, float | None] | None:
        """``(name, expires_at, revoked_at)`` or None."""
        row = self._db.execute(
            "SELECT name, expires_at, revoked_at FROM operator_tokens WHERE token_hash = ?", (token_hash,)
        ).fetchone()
        return (str(row[0]), float(row[1]), row[2]) if row else None

    def revoke_token(self, token_hash: str, *, now: float) -> bool:
        """Revoke (logout); True if a live token was revoked. Audited as ``operator.logout``."""
        with self._write() as db:
            row = db.execute(
                "SELECT name FROM operator_tokens WHERE token_hash = ? AND revoked_at IS NULL", (token_hash,)
            ).fetchone()
            if row is None:
                return False
            db.execute("UPDATE operator_tokens SET revoked_at = ? WHERE token_hash = ?", (now, token_hash))
            self._append_audit(
                actor=f"operator:{row[0]}", action="operator.logout", subject=row[0], details={}, now=now
            )
        return True
