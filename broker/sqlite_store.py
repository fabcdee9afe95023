"""The embedded store: one SQLite file in WAL mode in the broker's data dir (DESIGN §6).

The broker process and the admin CLI open the same file; every write is a ``BEGIN IMMEDIATE``
transaction, so the audit chain is appended by one writer at a time and a refused or crashed
operation leaves nothing half-written. Audit rows are protected by triggers (append-only); the
hash chain catches anyone who drops the triggers and edits anyway.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from protocol.errors import ErrorCode

from .audit import (
    BREAK_ACTION,
    GENESIS_HASH,
    KEYED_ACTION,
    MARKER_ACTIONS,
    AuditEntry,
    ChainReport,
    canonical_details,
    entry_hash,
    parse_head,
    row_hash,
    verify_chain,
)
from .auditkey import AuditKey, load_or_create_audit_key
from .errors import AlreadyExists, NotFound, RefusedError
from .sqlite_operators import OPERATOR_SCHEMA, OperatorTables
from .store import (
    AgentPresence,
    CertificateRecord,
    EnrollmentToken,
    InventoryRecord,
    Subscriber,
    SubscriberStatus,
)

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS subscribers (
    contract_id TEXT PRIMARY KEY,
    status TEXT NOT NULL CHECK (status IN ('active', 'suspended', 'terminated')),
    created_at REAL NOT NULL,
    status_changed_at REAL NOT NULL,
    suspended_until REAL
);
CREATE TABLE IF NOT EXISTS enrollment_tokens (
    token_hash TEXT PRIMARY KEY,
    contract_id TEXT NOT NULL REFERENCES subscribers(contract_id),
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    used_at REAL,
    used_serial TEXT
);
CREATE TABLE IF NOT EXISTS certificates (
    serial TEXT PRIMARY KEY,
    contract_id TEXT NOT NULL REFERENCES subscribers(contract_id),
    machine_name TEXT NOT NULL,
    cert_pem TEXT NOT NULL,
    issued_at REAL NOT NULL,
    not_after REAL NOT NULL,
    revoked_at REAL,
    revoke_reason TEXT
);
CREATE INDEX IF NOT EXISTS certificates_contract ON certificates(contract_id);
CREATE TABLE IF NOT EXISTS presence (
    serial TEXT PRIMARY KEY REFERENCES certificates(serial),
    online INTEGER NOT NULL,
    last_seen REAL,
    peer TEXT NOT NULL DEFAULT '',
    node TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    subject TEXT NOT NULL,
    details TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_subject ON audit(subject);
CREATE TABLE IF NOT EXISTS inventory (
    id INTEGER PRIMARY KEY,
    contract_id TEXT NOT NULL REFERENCES subscribers(contract_id),
    serial TEXT NOT NULL,
    session_id TEXT NOT NULL,
    at REAL NOT NULL,
    items_blob BLOB NOT NULL,
    credentials_blob BLOB
);
CREATE INDEX IF NOT EXISTS inventory_contract ON inventory(contract_id, at);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""


class SQLiteStore(OperatorTables):
    """:class:`broker.store.Store` on one SQLite file."""

    def __init__(
        self, path: Path, *, busy_timeout_ms: int = 10_000, audit_key: AuditKey | None = None
    ) -> None:
        self.path = path
        self.audit_key = audit_key if audit_key is not None else load_or_create_audit_key(path.parent)
        """The audit chain's key: a file beside the database, never in it (broker.auditkey)."""
        self._verified_head: tuple[int, str] | None = None
        """The last entry whose MAC this process checked or wrote (skips re-checking it)."""
        self._lock = threading.RLock()
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = FULL")
        self._synchronous = "FULL"
        self._db.execute("PRAGMA foreign_keys = ON")
        self._migrate()

    def _migrate(self) -> None:
        with self._write():
            for statement in (_SCHEMA + OPERATOR_SCHEMA).split(";\n"):
                if statement.strip():
                    self._db.execute(statement if "END" not in statement else statement + ";")
            self._db.execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
            self._migrate_unkeyed_chain()

    def _migrate_unkeyed_chain(self) -> None:
        """A chain from before the audit key: verified the old way up to a keyed transition entry.

        Only when this process has just created the key (first start of a broker that keys its
        chain) and the chain is a genuine unkeyed one; an unkeyed chain beside an existing key
        means its keyed part was removed, and the next append records that as a break instead
        (docs/audit.md, migration).
        """
        if not self.audit_key.created:
            return
        last = self._last_row()
        if (
            last is None
            or self._db.execute(
                "SELECT 1 FROM audit WHERE action IN (?, ?) LIMIT 1", MARKER_ACTIONS
            ).fetchone()
        ):
            return
        if not self._row_ok(last, keyed=False):
            return
        self._insert_audit(
            seq=last[0] + 1,
            prev=last[7],
            actor="broker",
            action=KEYED_ACTION,
            subject="audit",
            details={"unkeyed_entries": last[0], "unkeyed_head": last[7]},
            now=float(last[1]) if isinstance(last[1], int | float) else 0.0,
        )

    def close(self) -> None:
        self._db.close()

    def reopen(self, *, busy_timeout_ms: int = 60_000) -> SQLiteStore:
        """A second connection to the same file, for the broker's storage thread
        (:mod:`broker.background`); it may wait longer for a lock, since nobody waits for it."""
        return SQLiteStore(self.path, busy_timeout_ms=busy_timeout_ms)

    # -- inventory --------------------------------------------------------------------------------

    def save_inventory(
        self,
        *,
        contract_id: str,
        serial: str,
        session_id: str,
        items: list[str],
        items_blob: bytes,
        credentials_blob: bytes | None,
        now: float,
    ) -> int:
        with self._write() as db:
            cursor = db.execute(
                "INSERT INTO inventory(contract_id, serial, session_id, at, items_blob, credentials_blob)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (contract_id, serial, session_id, now, items_blob, credentials_blob),
            )
            inventory_id = int(cursor.lastrowid or 0)
            self._append_audit(
                actor=f"agent:{serial}",
                action="inventory.received",
                subject=session_id,
                details={
                    "contract": contract_id,
                    "inventory": inventory_id,
                    "items": items,
                    "router_credentials": credentials_blob is not None,
                },
                now=now,
            )
        return inventory_id

    _INV_COLS = "id, contract_id, serial, session_id, at, items_blob, credentials_blob"

    @staticmethod
    def _inventory(row: tuple[Any, ...] | None) -> InventoryRecord | None:
        if row is None:
            return None
        return InventoryRecord(
            id=row[0],
            contract_id=row[1],
            serial=row[2],
            session_id=row[3],
            at=row[4],
            items_blob=bytes(row[5]),
            credentials_blob=None if row[6] is None else bytes(row[6]),
        )

    def get_inventory(self, inventory_id: int) -> InventoryRecord | None:
        row = self._db.execute(
            f"SELECT {self._INV_COLS} FROM inventory WHERE id = ?", (inventory_id,)
        ).fetchone()
        return self._inventory(row)

    def latest_inventory(self, contract_id: str) -> InventoryRecord | None:
        row = self._db.execute(
            f"SELECT {self._INV_COLS} FROM inventory WHERE contract_id = ? ORDER BY at DESC, id DESC LIMIT 1",
            (contract_id,),
        ).fetchone()
        return self._inventory(row)

    def purge_inventory(self, *, terminated_before: float, now: float, actor: str) -> list[str]:
        with self._write() as db:
            contracts = [
                r[0]
                for r in db.execute(
                    "SELECT DISTINCT i.contract_id FROM inventory i JOIN subscribers s USING (contract_id)"
                    " WHERE s.status = 'terminated' AND s.status_changed_at < ? ORDER BY i.contract_id",
                    (terminated_before,),
                )
            ]
            for contract in contracts:
                deleted = db.execute("DELETE FROM inventory WHERE contract_id = ?", (contract,)).rowcount
                self._append_audit(
                    actor=actor,
                    action="inventory.purge",
                    subject=contract,
                    details={"deleted": deleted, "terminated_before": terminated_before},
                    now=now,
                )
        return contracts

    def get_meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return str(row[0]) if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO meta(key, value) VALUES (?, ?)"
                " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    @contextmanager
    def _write(self, *, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction; rolled back on any exception.

        The lock keeps transactions whole when a worker thread writes too (operator logins run
        their argon2 work off the event loop): one connection, one transaction at a time.

        ``durable``: the commit survives a power loss once it returns (``synchronous = FULL``: the
        WAL is synced at each commit). Every write is durable except the presence records
        (``durable=False``, ``NORMAL``: safe against a crash of the process, the last ones may be
        lost with power; they are rebuilt when agents reconnect). docs/hardening.md has the table.
        """
        level = "FULL" if durable else "NORMAL"
        with self._lock:
            if self._synchronous != level:
                self._db.execute(f"PRAGMA synchronous = {level}")
                self._synchronous = level
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            else:
                try:
                    self._db.execute("COMMIT")
                except BaseException:  # disk full, I/O error: never leave the transaction open
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise

    # -- audit ------------------------------------------------------------------------------------

    _AUDIT_COLS = "seq, at, actor, action, subject, details, prev_hash, hash"

    def _last_row(self) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self._db.execute(
            f"SELECT {self._AUDIT_COLS} FROM audit ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        return row

    def _keyed_from(self) -> int:
        row = self._db.execute("SELECT MIN(seq) FROM audit WHERE action = ?", (KEYED_ACTION,)).fetchone()
        return int(row[0]) if row and row[0] is not None else 1

    def _row_ok(self, row: tuple[Any, ...], *, keyed: bool) -> bool:
        try:
            digest = row_hash(row, self.audit_key.chain if keyed else None)
        except (TypeError, ValueError, OverflowError):
            return False
        return bool(digest == row[7])

    def _head_problem(self, last: tuple[Any, ...] | None) -> tuple[str, int] | None:
        """Why the chain may not be appended to as it is: (reason, highest seq seen), or None.

        The stored head must be well-formed and name the last row, and the last row must carry
        the key's MAC: an append never chains over a deleted tail or a forged row.
        """
        raw = self._db.execute("SELECT value FROM meta WHERE key = 'audit_head'").fetchone()
        last_seq = int(last[0]) if last else 0
        if raw is None:
            return None if last is None else ("the recorded head is missing", last_seq)
        try:
            head = parse_head(raw[0])
        except ValueError as exc:
            return (f"the recorded head is malformed ({exc})", last_seq)
        if last is None or head != (last[0], last[7]):
            return (
                f"the recorded head is entry {head[0]} but the last entry is {last_seq}"
                + (" (entries were deleted)" if head[0] > last_seq else ""),
                max(head[0], last_seq),
            )
        if (last[0], last[7]) != self._verified_head and not self._row_ok(last, keyed=True):
            return (f"the last entry ({last_seq}) does not verify with the audit key", last_seq)
        self._verified_head = (int(last[0]), str(last[7]))
        return None

    def _append_audit(
        self, *, actor: str, action: str, subject: str, details: dict[str, Any], now: float
    ) -> int:
        """Append inside the caller's transaction, onto the verified head.

        A head that does not match the last row, or a last row that does not verify, is recorded
        as an ``audit.break`` entry (and logged) before the new entry: the damage stays visible to
        every later verification instead of being laundered by the next link.
        """
        last = self._last_row()
        problem = self._head_problem(last)
        prev = str(last[7]) if last else GENESIS_HASH
        seq = (int(last[0]) if last else 0) + 1
        if problem is not None:
            reason, highest = problem
            log.error("AUDIT LOG DAMAGED: %s; recorded as an %s entry", reason, BREAK_ACTION)
            seq = highest + 1
            prev = self._insert_audit(
                seq=seq,
                prev=prev,
                actor="broker",
                action=BREAK_ACTION,
                subject="audit",
                details={"reason": reason, "last_entry": [last[0], last[7]] if last else None},
                now=now,
            )
            seq += 1
        self._insert_audit(
            seq=seq, prev=prev, actor=actor, action=action, subject=subject, details=details, now=now
        )
        return seq

    def _insert_audit(
        self,
        *,
        seq: int,
        prev: str,
        actor: str,
        action: str,
        subject: str,
        details: dict[str, Any],
        now: float,
    ) -> str:
        details_json = canonical_details(details)
        digest = entry_hash(
            prev_hash=prev,
            seq=seq,
            at=now,
            actor=actor,
            action=action,
            subject=subject,
            details_json=details_json,
            key=self.audit_key.chain,
        )
        self._db.execute(
            f"INSERT INTO audit({self._AUDIT_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (seq, now, actor, action, subject, details_json, prev, digest),
        )
        self._db.execute(
            "INSERT INTO meta(key, value) VALUES ('audit_head', ?)"
            " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (json.dumps([seq, digest]),),
        )
        # Written by us with the key just now: the next append need not recompute its MAC. (If the
        # transaction rolls back, the head differs from the last row and is checked in full.)
        self._verified_head = (seq, digest)
        return digest

    def audit_head(self) -> tuple[int, str] | None:
        """The head if it is well-formed and names the last row (for checkpoints), else None."""
        with self._lock:
            last = self._last_row()
            if last is None or self._head_problem(last) is not None:
                return None
            return int(last[0]), str(last[7])

    def audit_hash_at(self, seq: int) -> str | None:
        row = self._db.execute("SELECT hash FROM audit WHERE seq = ?", (seq,)).fetchone()
        return str(row[0]) if row else None

    def append_audit(
        self, *, actor: str, action: str, subject: str, details: dict[str, Any], now: float
    ) -> int:
        with self._write():
            return self._append_audit(actor=actor, action=action, subject=subject, details=details, now=now)

    def audit_entries(self, *, subject: str | None = None) -> Iterator[AuditEntry]:
        query = "SELECT seq, at, actor, action, subject, details, prev_hash, hash FROM audit"
        args: tuple[str, ...] = ()
        if subject is not None:
            query += " WHERE subject = ?"
            args = (subject,)
        for row in self._db.execute(query + " ORDER BY seq", args):
            yield self._entry(row)

    def count_audit(self, *, action: str, subject: str, since: float) -> int:
        row = self._db.execute(
            "SELECT COUNT(*) FROM audit WHERE subject = ? AND action = ? AND at >= ?",
            (subject, action, since),
        ).fetchone()
        return int(row[0])

    def audit_page(self, *, subject: str | None, limit: int, before_seq: int | None) -> list[AuditEntry]:
        clauses: list[str] = []
        args: list[str | int] = []
        if subject is not None:
            clauses.append("subject = ?")
            args.append(subject)
        if before_seq is not None:
            clauses.append("seq < ?")
            args.append(before_seq)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._db.execute(
            "SELECT seq, at, actor, action, subject, details, prev_hash, hash FROM audit"
            f"{where} ORDER BY seq DESC LIMIT ?",
            (*args, limit),
        )
        return [self._entry(row) for row in rows]

    @staticmethod
    def _entry(row: tuple[Any, ...]) -> AuditEntry:
        seq, at, actor, action, subj, details, prev, digest = row
        try:
            parsed = json.loads(details)
        except (json.JSONDecodeError, RecursionError, TypeError):
            parsed = None
        if not isinstance(parsed, dict):
            # An edited row: shown as what it is (``audit verify`` reports it), never a traceback.
            parsed = {"malformed": str(details)[:500]}
        return AuditEntry(
            seq=seq,
            at=at if isinstance(at, int | float) and not isinstance(at, bool) else 0.0,
            actor=str(actor),
            action=str(action),
            subject=str(subj),
            details=parsed,
            prev_hash=prev,
            hash=digest,
        )

    def verify_audit(self) -> ChainReport:
        """The chain and its recorded head, read in one snapshot: another connection (the storage
        thread of broker.background records refused connections) may append meanwhile, and a head
        read before its entry and rows read after it looked like a broken chain."""
        with self._lock:
            self._db.execute("BEGIN")  # a read transaction: one WAL snapshot for every SELECT below
            try:
                head_row = self._db.execute("SELECT value FROM meta WHERE key = 'audit_head'").fetchone()
                head = str(head_row[0]) if head_row else None
                keyed_from = self._keyed_from()
                rows = self._db.execute(f"SELECT {self._AUDIT_COLS} FROM audit ORDER BY seq")
                return verify_chain(rows, head=head, key=self.audit_key.chain, keyed_from=keyed_from)
            finally:
                if self._db.in_transaction:
                    self._db.execute("COMMIT")

    # -- subscribers ------------------------------------------------------------------------------

    def add_subscriber(self, contract_id: str, *, now: float, actor: str) -> Subscriber:
        with self._write() as db:
            if db.execute("SELECT 1 FROM subscribers WHERE contract_id = ?", (contract_id,)).fetchone():
                raise AlreadyExists(
                    f"subscriber {contract_id} already has a contract"
                    " (第7条: one contract per internet contract)"
                )
            db.execute(
                "INSERT INTO subscribers(contract_id, status, created_at, status_changed_at)"
                " VALUES (?, 'active', ?, ?)",
                (contract_id, now, now),
            )
            self._append_audit(actor=actor, action="subscriber.add", subject=contract_id, details={}, now=now)
        return Subscriber(
            contract_id=contract_id, status=SubscriberStatus.ACTIVE, created_at=now, status_changed_at=now
        )

    @staticmethod
    def _subscriber(row: tuple[Any, ...]) -> Subscriber:
        return Subscriber(
            contract_id=row[0],
            status=SubscriberStatus(row[1]),
            created_at=row[2],
            status_changed_at=row[3],
            suspended_until=row[4],
        )

    _SUB_COLS = "contract_id, status, created_at, status_changed_at, suspended_until"

    def get_subscriber(self, contract_id: str) -> Subscriber | None:
        row = self._db.execute(
            f"SELECT {self._SUB_COLS} FROM subscribers WHERE contract_id = ?",
            (contract_id,),
        ).fetchone()
        return self._subscriber(row) if row else None

    def list_subscribers(self) -> list[Subscriber]:
        rows = self._db.execute(f"SELECT {self._SUB_COLS} FROM subscribers ORDER BY contract_id")
        return [self._subscriber(r) for r in rows]

    def set_subscriber_status(
        self,
        contract_id: str,
        status: SubscriberStatus,
        *,
        now: float,
        actor: str,
        until: float | None = None,
        reason: str = "",
    ) -> list[str]:
        revoked: list[str] = []
        with self._write() as db:
            row = db.execute(
                "SELECT status FROM subscribers WHERE contract_id = ?", (contract_id,)
            ).fetchone()
            if row is None:
                raise NotFound(f"no subscriber {contract_id}")
            if row[0] == SubscriberStatus.TERMINATED:
                raise RefusedError(
                    f"the contract of {contract_id} is terminated", code=ErrorCode.SUBSCRIBER_TERMINATED
                )
            db.execute(
                "UPDATE subscribers SET status = ?, status_changed_at = ?, suspended_until = ?"
                " WHERE contract_id = ?",
                (status.value, now, until if status is SubscriberStatus.SUSPENDED else None, contract_id),
            )
            if status is SubscriberStatus.TERMINATED:
                revoked = [
                    r[0]
                    for r in db.execute(
                        "SELECT serial FROM certificates WHERE contract_id = ? AND revoked_at IS NULL",
                        (contract_id,),
                    )
                ]
                for serial in revoked:
                    self._revoke(serial, now=now, actor=actor, reason="contract terminated")
                db.execute(
                    "UPDATE enrollment_tokens SET used_at = ? WHERE contract_id = ? AND used_at IS NULL",
                    (now, contract_id),
                )
            action = {
                SubscriberStatus.ACTIVE: "subscriber.resume",
                SubscriberStatus.SUSPENDED: "subscriber.suspend",
                SubscriberStatus.TERMINATED: "subscriber.terminate",
            }[status]
            details: dict[str, Any] = {"reason": reason}
            if until is not None:
                details["until"] = until
            if revoked:
                details["revoked"] = revoked
            self._append_audit(actor=actor, action=action, subject=contract_id, details=details, now=now)
        return revoked

    # -- enrollment -------------------------------------------------------------------------------

    def add_enrollment_token(
        self, contract_id: str, token_hash: str, *, now: float, expires_at: float, actor: str
    ) -> None:
        with self._write() as db:
            row = db.execute(
                "SELECT status FROM subscribers WHERE contract_id = ?", (contract_id,)
            ).fetchone()
            if row is None:
                raise NotFound(f"no subscriber {contract_id}")
            if row[0] == SubscriberStatus.TERMINATED:
                raise RefusedError(
                    f"the contract of {contract_id} is terminated", code=ErrorCode.SUBSCRIBER_TERMINATED
                )
            db.execute(
                "INSERT INTO enrollment_tokens(token_hash, contract_id, created_at, expires_at)"
                " VALUES (?, ?, ?, ?)",
                (token_hash, contract_id, now, expires_at),
            )
            self._append_audit(
                actor=actor,
                action="token.issue",
                subject=contract_id,
                details={"expires_at": expires_at},
                now=now,
            )

    def get_enrollment_token(self, token_hash: str) -> EnrollmentToken | None:
        row = self._db.execute(
            "SELECT token_hash, contract_id, created_at, expires_at, used_at FROM enrollment_tokens"
            " WHERE token_hash = ?",
            (token_hash,),
        ).fetchone()
        if row is None:
            return None
        return EnrollmentToken(
            token_hash=row[0], contract_id=row[1], created_at=row[2], expires_at=row[3], used_at=row[4]
        )

    def complete_enrollment(self, token_hash: str, certificate: CertificateRecord, *, now: float) -> None:
        with self._write() as db:
            row = db.execute(
                "SELECT t.contract_id, t.expires_at, t.used_at, s.status FROM enrollment_tokens t"
                " JOIN subscribers s USING (contract_id) WHERE t.token_hash = ?",
                (token_hash,),
            ).fetchone()
            check_token(row, contract_id=certificate.contract_id, now=now)
            db.execute(
                "UPDATE enrollment_tokens SET used_at = ?, used_serial = ? WHERE token_hash = ?",
                (now, certificate.serial, token_hash),
            )
            db.execute(
                "INSERT INTO certificates(serial, contract_id, machine_name, cert_pem, issued_at, not_after)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    certificate.serial,
                    certificate.contract_id,
                    certificate.machine_name,
                    certificate.cert_pem,
                    certificate.issued_at,
                    certificate.not_after,
                ),
            )
            db.execute(
                "INSERT INTO presence(serial, online, last_seen) VALUES (?, 0, NULL)", (certificate.serial,)
            )
            self._append_audit(
                actor="agent",
                action="agent.enroll",
                subject=certificate.contract_id,
                details={"serial": certificate.serial, "machine_name": certificate.machine_name},
                now=now,
            )

    # -- certificates -----------------------------------------------------------------------------

    _CERT_COLS = (
        "serial, contract_id, machine_name, cert_pem, issued_at, not_after, revoked_at, revoke_reason"
    )

    @staticmethod
    def _cert(row: tuple[Any, ...]) -> CertificateRecord:
        return CertificateRecord(
            serial=row[0],
            contract_id=row[1],
            machine_name=row[2],
            cert_pem=row[3],
            issued_at=row[4],
            not_after=row[5],
            revoked_at=row[6],
            revoke_reason=row[7],
        )

    def get_certificate(self, serial: str) -> CertificateRecord | None:
        row = self._db.execute(
            f"SELECT {self._CERT_COLS} FROM certificates WHERE serial = ?",
            (serial,),
        ).fetchone()
        return self._cert(row) if row else None

    def list_certificates(self, contract_id: str | None = None) -> list[CertificateRecord]:
        if contract_id is None:
            rows = self._db.execute(f"SELECT {self._CERT_COLS} FROM certificates ORDER BY issued_at")
        else:
            rows = self._db.execute(
                f"SELECT {self._CERT_COLS} FROM certificates WHERE contract_id = ? ORDER BY issued_at",
                (contract_id,),
            )
        return [self._cert(r) for r in rows]

    def _revoke(self, serial: str, *, now: float, actor: str, reason: str) -> bool:
        cursor = self._db.execute(
            "UPDATE certificates SET revoked_at = ?, revoke_reason = ?"
            " WHERE serial = ? AND revoked_at IS NULL",
            (now, reason, serial),
        )
        if cursor.rowcount == 0:
            return False
        contract = self._db.execute(
            "SELECT contract_id FROM certificates WHERE serial = ?", (serial,)
        ).fetchone()
        self._append_audit(
            actor=actor,
            action="cert.revoke",
            subject=contract[0],
            details={"serial": serial, "reason": reason},
            now=now,
        )
        return True

    def revoke_certificate(self, serial: str, *, now: float, actor: str, reason: str) -> bool:
        with self._write() as db:
            if not db.execute("SELECT 1 FROM certificates WHERE serial = ?", (serial,)).fetchone():
                raise NotFound(f"no certificate with serial {serial}")
            return self._revoke(serial, now=now, actor=actor, reason=reason)

    def revoked_serials(self) -> list[tuple[str, float]]:
        rows = self._db.execute(
            "SELECT serial, revoked_at FROM certificates WHERE revoked_at IS NOT NULL ORDER BY revoked_at"
        )
        return [(r[0], r[1]) for r in rows]

    # -- presence ---------------------------------------------------------------------------------

    def set_online(self, serial: str, *, online: bool, now: float, peer: str, node: str) -> None:
        with self._write(durable=False) as db:
            db.execute(
                "INSERT INTO presence(serial, online, last_seen, peer, node) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT(serial) DO UPDATE SET online = excluded.online, last_seen = excluded.last_seen,"
                " peer = excluded.peer, node = excluded.node",
                (serial, int(online), now, peer, node),
            )
            contract = db.execute(
                "SELECT contract_id FROM certificates WHERE serial = ?", (serial,)
            ).fetchone()
            self._append_audit(
                actor="agent",
                action="agent.connect" if online else "agent.disconnect",
                subject=contract[0] if contract else serial,
                details={"serial": serial, "peer": peer},
                now=now,
            )

    def touch(self, serials: list[str], *, now: float) -> None:
        if not serials:
            return
        with self._write(durable=False) as db:
            db.executemany("UPDATE presence SET last_seen = ? WHERE serial = ?", [(now, s) for s in serials])

    def mark_node_offline(self, node: str, *, now: float) -> int:
        """After a crash, this node's agents are not connected any more."""
        with self._write(durable=False) as db:
            return db.execute(
                "UPDATE presence SET online = 0 WHERE node = ? AND online = 1", (node,)
            ).rowcount

    def list_agents(self) -> list[AgentPresence]:
        rows = self._db.execute(
            "SELECT c.serial, c.contract_id, c.machine_name, COALESCE(p.online, 0), p.last_seen,"
            " c.revoked_at IS NOT NULL FROM certificates c LEFT JOIN presence p USING (serial)"
            " ORDER BY c.contract_id, c.issued_at"
        )
        return [
            AgentPresence(
                serial=r[0],
                contract_id=r[1],
                machine_name=r[2],
                online=bool(r[3]),
                last_seen=r[4],
                revoked=bool(r[5]),
            )
            for r in rows
        ]

    def update_machine_name(self, serial: str, machine_name: str) -> None:
        with self._write(durable=False) as db:
            db.execute("UPDATE certificates SET machine_name = ? WHERE serial = ?", (machine_name, serial))


def check_token(row: tuple[Any, ...] | None, *, contract_id: str, now: float) -> None:
    """Why a token (contract_id, expires_at, used_at, subscriber status) cannot be used, if it cannot."""
    if row is None:
        raise RefusedError("unknown enrollment token", code=ErrorCode.TOKEN_UNKNOWN)
    token_contract, expires_at, used_at, status = row
    if token_contract != contract_id:
        # Do not tell a stranger which contract a token belongs to.
        raise RefusedError("unknown enrollment token", code=ErrorCode.TOKEN_UNKNOWN)
    # Termination voids unused tokens too; say why, rather than "already used". A suspension
    # (第18条) pauses the service, not the identity: a suspended subscriber may still enroll a PC.
    if status == SubscriberStatus.TERMINATED:
        raise RefusedError("the contract is terminated", code=ErrorCode.SUBSCRIBER_TERMINATED)
    if used_at is not None:
        raise RefusedError("this enrollment token was already used", code=ErrorCode.TOKEN_USED)
    if now >= expires_at:
        raise RefusedError("this enrollment token has expired", code=ErrorCode.TOKEN_EXPIRED)
