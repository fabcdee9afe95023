"""Numbered schema migrations, one SQL text per dialect, applied in one transaction.

Rules: a migration, once on main, never changes (add a new number instead); numbers only grow; each
is a list of statements per dialect. :func:`migrate` applies the missing ones in one write transaction
(on PostgreSQL under an advisory lock, so two brokers starting at once do not both migrate) and
records each in ``schema_version``.

Migration 1 is the schema of the broker before this package (the synchronous store
``broker/sqlite_store.py`` + ``broker/sqlite_operators.py``, since deleted), written with
``IF NOT EXISTS``: on an existing ``broker.sqlite3`` it changes nothing and is only recorded, so such
a file is upgraded in place (``tests/broker/storage/test_migrations.py``, on a file that store wrote:
``fixtures/old_broker.sqlite3``). Its PostgreSQL text is the same tables with PostgreSQL's types
(``DOUBLE PRECISION`` for times, ``BYTEA`` for blobs, ``BIGINT`` for sequence numbers) and a trigger
function for the append-only audit log.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from .db import Database, Dialect, Tx
from .schema_guards import guard_tables

#: PostgreSQL advisory-lock key held while migrating ("migrate" in ASCII).
MIGRATION_LOCK_KEY: Final = 0x6D696772617465


@dataclass(frozen=True, slots=True)
class Migration:
    number: int
    name: str
    sqlite: tuple[str, ...]
    postgresql: tuple[str, ...]

    def statements(self, dialect: Dialect) -> tuple[str, ...]:
        return self.sqlite if dialect == "sqlite" else self.postgresql


def _tables(real: str, blob: str, bigint: str, serial_pk: str) -> tuple[str, ...]:
    """The tables of migration 1 with the dialect's type names."""
    return (
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        f"""CREATE TABLE IF NOT EXISTS subscribers (
    contract_id TEXT PRIMARY KEY,
    status TEXT NOT NULL CHECK (status IN ('active', 'suspended', 'terminated')),
    created_at {real} NOT NULL,
    status_changed_at {real} NOT NULL,
    suspended_until {real}
)""",
        f"""CREATE TABLE IF NOT EXISTS enrollment_tokens (
    token_hash TEXT PRIMARY KEY,
    contract_id TEXT NOT NULL REFERENCES subscribers(contract_id),
    created_at {real} NOT NULL,
    expires_at {real} NOT NULL,
    used_at {real},
    used_serial TEXT
)""",
        f"""CREATE TABLE IF NOT EXISTS certificates (
    serial TEXT PRIMARY KEY,
    contract_id TEXT NOT NULL REFERENCES subscribers(contract_id),
    machine_name TEXT NOT NULL,
    cert_pem TEXT NOT NULL,
    issued_at {real} NOT NULL,
    not_after {real} NOT NULL,
    revoked_at {real},
    revoke_reason TEXT
)""",
        "CREATE INDEX IF NOT EXISTS certificates_contract ON certificates(contract_id)",
        f"""CREATE TABLE IF NOT EXISTS presence (
    serial TEXT PRIMARY KEY REFERENCES certificates(serial),
    online INTEGER NOT NULL,
    last_seen {real},
    peer TEXT NOT NULL DEFAULT '',
    node TEXT NOT NULL DEFAULT ''
)""",
        f"""CREATE TABLE IF NOT EXISTS audit (
    seq {bigint} PRIMARY KEY,
    at {real} NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    subject TEXT NOT NULL,
    details TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
)""",
        "CREATE INDEX IF NOT EXISTS audit_subject ON audit(subject)",
        f"""CREATE TABLE IF NOT EXISTS inventory (
    id {serial_pk},
    contract_id TEXT NOT NULL REFERENCES subscribers(contract_id),
    serial TEXT NOT NULL,
    session_id TEXT NOT NULL,
    at {real} NOT NULL,
    items_blob {blob} NOT NULL,
    credentials_blob {blob}
)""",
        "CREATE INDEX IF NOT EXISTS inventory_contract ON inventory(contract_id, at)",
        f"""CREATE TABLE IF NOT EXISTS operators (
    name TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('operator', 'supervisor', 'admin')),
    password_hash TEXT NOT NULL,
    totp_secret_blob {blob} NOT NULL,
    created_at {real} NOT NULL,
    password_change_required INTEGER NOT NULL DEFAULT 1,
    failed_logins INTEGER NOT NULL DEFAULT 0,
    locked_until {real},
    last_totp_step {bigint},
    disabled INTEGER NOT NULL DEFAULT 0
)""",
        f"""CREATE TABLE IF NOT EXISTS operator_tokens (
    token_hash TEXT PRIMARY KEY,
    name TEXT NOT NULL REFERENCES operators(name),
    created_at {real} NOT NULL,
    expires_at {real} NOT NULL,
    revoked_at {real}
)""",
        "CREATE INDEX IF NOT EXISTS operator_tokens_name ON operator_tokens(name)",
        "CREATE INDEX IF NOT EXISTS operator_tokens_expiry ON operator_tokens(expires_at)",
    )


_SQLITE_APPEND_ONLY: Final = (
    "CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit"
    " BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END",
    "CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit"
    " BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END",
)

_PG_APPEND_ONLY: Final = (
    "CREATE OR REPLACE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS"
    " $$ BEGIN RAISE EXCEPTION 'the audit log is append-only'; END $$",
    "CREATE TRIGGER audit_no_update BEFORE UPDATE OR DELETE ON audit"
    " FOR EACH ROW EXECUTE FUNCTION audit_append_only()",
    "CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit"
    " FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only()",
)


def _sessions(real: str, bigint: str, serial_pk: str) -> tuple[str, ...]:
    return (
        f"""CREATE TABLE support_sessions (
    id TEXT PRIMARY KEY,
    contract_id TEXT NOT NULL REFERENCES subscribers(contract_id),
    serial TEXT NOT NULL,
    operator TEXT NOT NULL,
    started_at {real} NOT NULL,
    ended_at {real},
    ended_by TEXT,
    reason TEXT,
    bytes_to_agent {bigint},
    bytes_to_operator {bigint}
)""",
        "CREATE INDEX support_sessions_contract ON support_sessions(contract_id, started_at)",
        f"""CREATE TABLE consent_receipts (
    id {serial_pk},
    session_id TEXT NOT NULL,
    serial TEXT NOT NULL,
    at {real} NOT NULL,
    decision TEXT NOT NULL,
    granted TEXT NOT NULL,
    denied TEXT NOT NULL,
    receipt TEXT NOT NULL,
    signature TEXT NOT NULL,
    audit_seq {bigint} NOT NULL
)""",
        "CREATE INDEX consent_receipts_session ON consent_receipts(session_id, id)",
    )


_REVOKED_INDEX: Final = (
    "CREATE INDEX IF NOT EXISTS certificates_revoked ON certificates (revoked_at, serial)"
    " WHERE revoked_at IS NOT NULL"
)
"""A partial index: it holds only revoked certificates, so the watch's read grows with revocations,
not with every certificate ever issued."""

_SESSION_NODE: Final = (
    "ALTER TABLE support_sessions ADD COLUMN node TEXT NOT NULL DEFAULT ''",
    "CREATE INDEX support_sessions_open ON support_sessions (node, id) WHERE ended_at IS NULL",
)
"""The node that holds a claimed session (set at the claim, moved by an adoption) and a partial
index that holds only the open rows: the sweep reads them every minute on every process, so its read
grows with the sessions running now, not with every session ever held."""

MIGRATIONS: Final[tuple[Migration, ...]] = (
    Migration(
        1,
        "the schema of broker/sqlite_store.py and broker/sqlite_operators.py",
        sqlite=_tables("REAL", "BLOB", "INTEGER", "INTEGER PRIMARY KEY") + _SQLITE_APPEND_ONLY,
        postgresql=_tables(
            "DOUBLE PRECISION", "BYTEA", "BIGINT", "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"
        )
        + _PG_APPEND_ONLY,
    ),
    Migration(
        2,
        "support sessions and consent receipts as rows of their own",
        sqlite=_sessions("REAL", "INTEGER", "INTEGER PRIMARY KEY"),
        postgresql=_sessions(
            "DOUBLE PRECISION", "BIGINT", "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"
        ),
    ),
    Migration(
        3,
        "support codes, rate windows and lockouts shared by every process (schema_guards.py)",
        sqlite=guard_tables("REAL"),
        postgresql=guard_tables("DOUBLE PRECISION"),
    ),
    Migration(
        4,
        "the viewer a person decision names, on its consent receipt row",
        sqlite=("ALTER TABLE consent_receipts ADD COLUMN viewer TEXT",),
        postgresql=("ALTER TABLE consent_receipts ADD COLUMN viewer TEXT",),
    ),
    Migration(
        5,
        "an index of revoked certificates: the revocation watch reads only them (bench: the full scan of"
        " 100,000 certificates every 5 s was most of an idle broker's CPU)",
        sqlite=(_REVOKED_INDEX,),
        postgresql=(_REVOKED_INDEX,),
    ),
    Migration(
        6,
        "the process holding an open session (the sweep of orphaned sessions, docs/cluster.md §6a)"
        " and an index of the open ones",
        sqlite=_SESSION_NODE,
        postgresql=_SESSION_NODE,
    ),
)

_VERSION_TABLE: Final = {
    "sqlite": "CREATE TABLE IF NOT EXISTS schema_version"
    " (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)",
    "postgresql": "CREATE TABLE IF NOT EXISTS schema_version"
    " (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)",
}


async def applied_versions(tx: Tx) -> list[int]:
    return [int(r[0]) for r in await tx.fetchall("SELECT version FROM schema_version ORDER BY version")]


async def migrate(db: Database, *, now: float, migrations: tuple[Migration, ...] = MIGRATIONS) -> list[int]:
    """Apply the missing migrations in one transaction; the numbers applied now (empty if none)."""
    numbers = [m.number for m in migrations]
    if numbers != sorted(set(numbers)):
        raise ValueError("migration numbers must be unique and increasing")
    async with db.write() as tx:
        if tx.dialect == "postgresql":
            await tx.execute("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK_KEY,))
        await tx.execute(_VERSION_TABLE[tx.dialect])
        done = set(await applied_versions(tx))
        applied: list[int] = []
        for migration in migrations:
            if migration.number in done:
                continue
            for statement in migration.statements(tx.dialect):
                await tx.execute(statement)
            await tx.execute(
                "INSERT INTO schema_version(version, name, applied_at) VALUES (?, ?, ?)",
                (migration.number, migration.name, now),
            )
            applied.append(migration.number)
    return applied
