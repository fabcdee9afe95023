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
    " bytes_to_agent, bytes_to_operator"
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
    )


async def insert_session(
    tx: Tx, session_id: str, *, contract_id: str, serial: str, operator: str, now: float
) -> None:
    await tx.execute(
        "INSERT INTO support_sessions(id, contract_id, serial, operator, started_at) VALUES (?, ?, ?, ?, ?)",
        (session_id, contract_id, serial, operator, now),
    )


async def end_session(
    tx: Tx, session_id: str, *, now: float, by: str, reason: str, bytes_to_agent: int, bytes_to_operator: int
) -> bool:
    """True if the session was open and is ended now."""
    changed = await tx.execute(
        "UPDATE support_sessions SET ended_at = ?, ended_by = ?, reason = ?, bytes_to_agent = ?,"
        " bytes_to_operator = ? WHERE id = ? AND ended_at IS NULL",
        (now, by, reason, bytes_to_agent, bytes_to_operator, session_id),
    )
    return changed == 1


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
