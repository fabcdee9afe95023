"""The guard repository: support codes, sliding-window hits and lockouts (tables of
:mod:`.schema_guards`). Plain statements over an open transaction; the rules are in :mod:`.guards`.

Concurrency: every statement that decides is one conditional statement (a code is inserted only if
free, claimed only if unclaimed and unexpired), or runs after :func:`lock_key` has locked the key's row
(an upsert that writes the row, which PostgreSQL locks to the end of the transaction; SQLite's
write transaction holds the file's write lock already), so two processes deciding about one key take turns.
"""

from __future__ import annotations

from dataclasses import dataclass

from .db import Tx


@dataclass(frozen=True, slots=True)
class CodeRow:
    code: str
    session_id: str
    node: str
    contract_id: str
    issued_at: float
    expires_at: float
    claimed_at: float | None
    claimed_by: str | None


_CODE_COLS = "code, session_id, node, contract_id, issued_at, expires_at, claimed_at, claimed_by"


async def insert_code(
    tx: Tx, code: str, *, session_id: str, node: str, contract_id: str, now: float, expires_at: float
) -> bool:
    """Take ``code`` for a session if no live row holds it (a row whose code expired is taken over).
    False if the code is live elsewhere: the caller draws another."""
    changed = await tx.execute(
        f"INSERT INTO support_codes({_CODE_COLS}) VALUES (?, ?, ?, ?, ?, ?, NULL, NULL)"
        " ON CONFLICT(code) DO UPDATE SET session_id = excluded.session_id, node = excluded.node,"
        " contract_id = excluded.contract_id, issued_at = excluded.issued_at,"
        " expires_at = excluded.expires_at, claimed_at = NULL, claimed_by = NULL"
        " WHERE support_codes.expires_at <= ?",
        (code, session_id, node, contract_id, now, expires_at, now),
    )
    return changed == 1


async def claim_code(tx: Tx, code: str, *, now: float, claimed_by: str) -> CodeRow | None:
    """Mark a live, unclaimed code claimed; its row, or None (unknown, expired or already claimed).
    One statement: of two concurrent claims the second finds ``claimed_at`` set (PostgreSQL re-checks
    the condition on the row the first one updated; SQLite runs them one after the other)."""
    row = await tx.fetchone(
        "UPDATE support_codes SET claimed_at = ?, claimed_by = ?"
        " WHERE code = ? AND claimed_at IS NULL AND expires_at > ?"
        f" RETURNING {_CODE_COLS}",
        (now, claimed_by, code, now),
    )
    return CodeRow(*row) if row else None


async def get_code(tx: Tx, code: str) -> CodeRow | None:
    row = await tx.fetchone(f"SELECT {_CODE_COLS} FROM support_codes WHERE code = ?", (code,))
    return CodeRow(*row) if row else None


async def codes_of_session(tx: Tx, session_id: str) -> list[CodeRow]:
    rows = await tx.fetchall(
        f"SELECT {_CODE_COLS} FROM support_codes WHERE session_id = ? ORDER BY issued_at", (session_id,)
    )
    return [CodeRow(*r) for r in rows]


async def void_session_codes(tx: Tx, session_id: str, *, now: float) -> int:
    """Make the session's unclaimed codes unusable (the request was withdrawn or ended). The rows
    stay until their expiry, like claimed ones, so the digits are not handed out again early."""
    return await tx.execute(
        "UPDATE support_codes SET claimed_at = ?, claimed_by = ? WHERE session_id = ? AND claimed_at IS NULL",
        (now, "(void)", session_id),
    )


async def delete_expired_codes(tx: Tx, *, now: float) -> int:
    return await tx.execute("DELETE FROM support_codes WHERE expires_at <= ?", (now,))


async def waiting_codes(tx: Tx, *, now: float, limit: int) -> list[CodeRow]:
    """Live, unclaimed codes, oldest first: the waiting requests of every process (the queue)."""
    rows = await tx.fetchall(
        f"SELECT {_CODE_COLS} FROM support_codes WHERE claimed_at IS NULL AND expires_at > ?"
        " ORDER BY issued_at LIMIT ?",
        (now, limit),
    )
    return [CodeRow(*r) for r in rows]


async def count_live_codes(tx: Tx, *, now: float) -> int:
    row = await tx.fetchone(
        "SELECT COUNT(*) FROM support_codes WHERE claimed_at IS NULL AND expires_at > ?", (now,)
    )
    return int(row[0]) if row else 0


# -- keys: lockouts and windows ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeyRow:
    key: str
    failures: int
    locked_until: float | None


async def lock_key(tx: Tx, key: str, *, now: float) -> KeyRow:
    """The key's row, created if missing, locked until the transaction ends. One statement: an upsert
    that always writes the row (PostgreSQL locks a row it updates, or inserts it, until the end of
    the transaction), so it cannot miss a row that another process deletes meanwhile."""
    row = await tx.fetchone(
        "INSERT INTO limit_keys(key, failures, locked_until, touched_at) VALUES (?, 0, NULL, ?)"
        " ON CONFLICT(key) DO UPDATE SET failures = limit_keys.failures"
        " RETURNING key, failures, locked_until",
        (key, now),
    )
    assert row is not None  # an upsert with RETURNING always returns its row
    return KeyRow(row[0], int(row[1]), row[2])


async def get_key(tx: Tx, key: str) -> KeyRow | None:
    row = await tx.fetchone("SELECT key, failures, locked_until FROM limit_keys WHERE key = ?", (key,))
    return KeyRow(row[0], int(row[1]), row[2]) if row else None


async def set_key(tx: Tx, key: str, *, failures: int, locked_until: float | None, now: float) -> None:
    await tx.execute(
        "UPDATE limit_keys SET failures = ?, locked_until = ?, touched_at = ? WHERE key = ?",
        (failures, locked_until, now, key),
    )


async def recent_hits(tx: Tx, key: str, *, since: float, limit: int) -> list[float]:
    """The newest ``limit`` hit times after ``since``, oldest first (older ones never matter for a
    limit of ``limit``)."""
    rows = await tx.fetchall(
        "SELECT at FROM limit_hits WHERE key = ? AND at > ? ORDER BY at DESC LIMIT ?", (key, since, limit)
    )
    return sorted(float(r[0]) for r in rows)


async def add_hit(tx: Tx, key: str, *, at: float) -> None:
    await tx.execute("INSERT INTO limit_hits(key, at) VALUES (?, ?)", (key, at))
    await tx.execute("UPDATE limit_keys SET touched_at = ? WHERE key = ?", (at, key))


async def delete_hits(tx: Tx, key: str) -> None:
    await tx.execute("DELETE FROM limit_hits WHERE key = ?", (key,))


async def purge(tx: Tx, *, hits_before: float, idle_before: float, now: float) -> tuple[int, int]:
    """Delete hits older than ``hits_before`` and keys untouched since ``idle_before`` that hold
    neither failures nor a running lockout. (hits deleted, keys deleted)."""
    hits = await tx.execute("DELETE FROM limit_hits WHERE at <= ?", (hits_before,))
    keys = await tx.execute(
        "DELETE FROM limit_keys WHERE touched_at <= ? AND failures = 0"
        " AND (locked_until IS NULL OR locked_until <= ?)",
        (idle_before, now),
    )
    return hits, keys
