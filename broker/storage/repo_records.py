"""Repositories of what sessions leave behind: inventory (encrypted blobs), support sessions, consent
receipts; and the small ``meta`` settings shared by the broker processes and the CLI."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Final

from ..store import InventoryRecord
from .db import Row, Tx


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionRecord:
    """One support session as kept after its end (DESIGN §4): who, when, how it ended, bytes both ways."""

    id: str
    contract_id: str
    serial: str
    operator: str
    started_at: float
    ended_at: float | None = None
    ended_by: str | None = None
    reason: str | None = None
    bytes_to_agent: int | None = None
    bytes_to_operator: int | None = None
    node: str = ""
    """The process holding the open session (migration 6; ``""``: one process, or before it)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceiptRecord:
    """One signed consent decision (第31条1項④), as the agent sent it; ``audit_seq`` is its audit entry."""

    id: int
    session_id: str
    serial: str
    at: float
    decision: str
    granted: tuple[str, ...]
    denied: tuple[str, ...]
    receipt: str
    signature: str
    audit_seq: int
    viewer: str | None = None
    """The colleague a person decision (invite / transfer) is about; None for a scope decision."""


# -- inventory (別紙5; the store never sees plaintext) --------------------------------------------

_INV_COLS: Final = "id, contract_id, serial, session_id, at, items_blob, credentials_blob"


def _inventory(row: Row) -> InventoryRecord:
    return InventoryRecord(
        id=int(row[0]),
        contract_id=row[1],
        serial=row[2],
        session_id=row[3],
        at=row[4],
        items_blob=bytes(row[5]),
        credentials_blob=None if row[6] is None else bytes(row[6]),
    )


async def insert_inventory(
    tx: Tx,
    *,
    contract_id: str,
    serial: str,
    session_id: str,
    items_blob: bytes,
    credentials_blob: bytes | None,
    now: float,
) -> int:
    row = await tx.fetchone(
        "INSERT INTO inventory(contract_id, serial, session_id, at, items_blob, credentials_blob)"
        " VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
        (contract_id, serial, session_id, now, items_blob, credentials_blob),
    )
    assert row is not None  # RETURNING always yields the row
    return int(row[0])


async def get_inventory(tx: Tx, inventory_id: int) -> InventoryRecord | None:
    row = await tx.fetchone(f"SELECT {_INV_COLS} FROM inventory WHERE id = ?", (inventory_id,))
    return _inventory(row) if row else None


async def latest_inventory(tx: Tx, contract_id: str) -> InventoryRecord | None:
    row = await tx.fetchone(
        f"SELECT {_INV_COLS} FROM inventory WHERE contract_id = ? ORDER BY at DESC, id DESC LIMIT 1",
        (contract_id,),
    )
    return _inventory(row) if row else None


async def delete_inventory(tx: Tx, contract_id: str) -> int:
    return await tx.execute("DELETE FROM inventory WHERE contract_id = ?", (contract_id,))


# -- support sessions -------------------------------------------------------------------------------

_SESSION_COLS: Final = (
    "id, contract_id, serial, operator, started_at, ended_at, ended_by, reason,"
    " bytes_to_agent, bytes_to_operator, node"
)


def _session(row: Row) -> SessionRecord:
    return SessionRecord(
        id=row[0],
        contract_id=row[1],
        serial=row[2],
        operator=row[3],
        started_at=row[4],
        ended_at=row[5],
        ended_by=row[6],
        reason=row[7],
        bytes_to_agent=None if row[8] is None else int(row[8]),
        bytes_to_operator=None if row[9] is None else int(row[9]),
        node=str(row[10] or ""),
    )


async def insert_session(
    tx: Tx, session_id: str, *, contract_id: str, serial: str, operator: str, now: float, node: str = ""
) -> None:
    await tx.execute(
        "INSERT INTO support_sessions(id, contract_id, serial, operator, started_at, node)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (session_id, contract_id, serial, operator, now, node),
    )


async def end_session(
    tx: Tx,
    session_id: str,
    *,
    now: float,
    by: str,
    reason: str,
    bytes_to_agent: int,
    bytes_to_operator: int,
    held_by: str | None = None,
) -> bool:
    """True if the session was open (and, with ``held_by``, still held by that node) and is ended now:
    one conditional UPDATE, so of two processes ending it at once exactly one does."""
    sql = (
        "UPDATE support_sessions SET ended_at = ?, ended_by = ?, reason = ?, bytes_to_agent = ?,"
        " bytes_to_operator = ? WHERE id = ? AND ended_at IS NULL"
    )
    params: tuple[object, ...] = (now, by, reason, bytes_to_agent, bytes_to_operator, session_id)
    if held_by is not None:
        sql += " AND node = ?"
        params += (held_by,)
    changed = await tx.execute(sql, params)
    return changed == 1


async def move_session(tx: Tx, session_id: str, *, node: str) -> bool:
    """An adoption: ``node`` holds the open session from now on; False if it has ended meanwhile."""
    changed = await tx.execute(
        "UPDATE support_sessions SET node = ? WHERE id = ? AND ended_at IS NULL", (node, session_id)
    )
    return changed == 1


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenSession:
    """An open claimed session with its agent's presence row (the sweep's candidates)."""

    record: SessionRecord
    agent_online: bool
    agent_node: str
    agent_seen: float | None
    """The agent's presence ``last_seen`` (written every ``presence_flush_interval`` and when it leaves)."""


async def open_sessions(tx: Tx, *, limit: int) -> list[OpenSession]:
    """Open claimed sessions (the partial index of migration 6), oldest first, at most ``limit``."""
    cols = ", ".join(f"s.{c.strip()}" for c in _SESSION_COLS.split(","))
    rows = await tx.fetchall(
        f"SELECT {cols}, COALESCE(p.online, 0), COALESCE(p.node, ''), p.last_seen"
        " FROM support_sessions s LEFT JOIN presence p ON p.serial = s.serial"
        " WHERE s.ended_at IS NULL AND s.operator <> '' ORDER BY s.started_at, s.id LIMIT ?",
        (limit,),
    )
    return [
        OpenSession(
            record=_session(r[:11]),
            agent_online=bool(r[11]),
            agent_node=str(r[12]),
            agent_seen=None if r[13] is None else float(r[13]),
        )
        for r in rows
    ]


async def get_session(tx: Tx, session_id: str) -> SessionRecord | None:
    row = await tx.fetchone(f"SELECT {_SESSION_COLS} FROM support_sessions WHERE id = ?", (session_id,))
    return _session(row) if row else None


async def list_sessions(tx: Tx, contract_id: str) -> list[SessionRecord]:
    rows = await tx.fetchall(
        f"SELECT {_SESSION_COLS} FROM support_sessions WHERE contract_id = ? ORDER BY started_at, id",
        (contract_id,),
    )
    return [_session(r) for r in rows]


# -- consent receipts -------------------------------------------------------------------------------

_RECEIPT_COLS: Final = (
    "id, session_id, serial, at, decision, granted, denied, receipt, signature, audit_seq, viewer"
)


async def insert_receipt(
    tx: Tx,
    *,
    session_id: str,
    serial: str,
    now: float,
    decision: str,
    granted: tuple[str, ...],
    denied: tuple[str, ...],
    receipt: str,
    signature: str,
    audit_seq: int,
    viewer: str | None = None,
) -> int:
    row = await tx.fetchone(
        "INSERT INTO consent_receipts(session_id, serial, at, decision, granted, denied, receipt, signature,"
        " audit_seq, viewer) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (
            session_id,
            serial,
            now,
            decision,
            json.dumps(granted),
            json.dumps(denied),
            receipt,
            signature,
            audit_seq,
            viewer,
        ),
    )
    assert row is not None
    return int(row[0])


async def receipts(tx: Tx, session_id: str) -> list[ReceiptRecord]:
    rows = await tx.fetchall(
        f"SELECT {_RECEIPT_COLS} FROM consent_receipts WHERE session_id = ? ORDER BY id", (session_id,)
    )
    return [
        ReceiptRecord(
            id=int(r[0]),
            session_id=r[1],
            serial=r[2],
            at=r[3],
            decision=r[4],
            granted=tuple(json.loads(r[5])),
            denied=tuple(json.loads(r[6])),
            receipt=r[7],
            signature=r[8],
            audit_seq=int(r[9]),
            viewer=r[10],
        )
        for r in rows
    ]


# -- meta -------------------------------------------------------------------------------------------


async def get_meta(tx: Tx, key: str) -> str | None:
    row = await tx.fetchone("SELECT value FROM meta WHERE key = ?", (key,))
    return str(row[0]) if row else None


async def set_meta(tx: Tx, key: str, value: str) -> None:
    await tx.execute(
        "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (key, value),
    )
