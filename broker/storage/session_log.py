"""Support sessions and consent receipts as durable rows (the session core's "persist" commands).

Sessions live in the broker's memory; what must outlive a restart is who helped whom, when, how it
ended with how many bytes each way, and every signed consent decision (第31条1項④, DESIGN §4). Each
receipt is kept twice in one transaction: as a row of its own (so ``audit receipts SESSION`` is one
indexed read) and as its ``consent.receipt`` audit entry (so the chain covers it). The broker checks
a receipt's signature before it records it (:func:`broker.receipts.verify_receipt`); this layer
stores what it is given.
"""

from __future__ import annotations

from typing import Any

from ..errors import AlreadyExists
from . import repo_records
from .db import Database
from .repo_records import OpenSession, ReceiptRecord, SessionRecord
from .services import AuditLog


class SessionLog:
    def __init__(self, db: Database, audit: AuditLog) -> None:
        self.db = db
        self.audit = audit

    async def opened(
        self, session_id: str, *, contract_id: str, serial: str, operator: str, now: float, node: str = ""
    ) -> None:
        """The row of a claimed session; ``node``: the process holding it (a cluster's sweep)."""
        async with self.db.write() as tx:
            await repo_records.insert_session(
                tx, session_id, contract_id=contract_id, serial=serial, operator=operator, now=now, node=node
            )

    async def adopted(self, session_id: str, *, node: str) -> bool:
        """``node`` adopted the open session (its agent resumed there); False if it ended meanwhile
        (swept, or ended by another process): then it must not be adopted."""
        async with self.db.write() as tx:
            return await repo_records.move_session(tx, session_id, node=node)

    async def open_sessions(self, *, limit: int) -> list[OpenSession]:
        """Open claimed sessions with their agent's presence (oldest first, at most ``limit``)."""
        async with self.db.read() as tx:
            return await repo_records.open_sessions(tx, limit=limit)

    async def ended(
        self,
        session_id: str,
        *,
        now: float,
        by: str,
        reason: str,
        bytes_to_agent: int,
        bytes_to_operator: int,
        details: dict[str, Any] | None = None,
        held_by: str | None = None,
    ) -> bool:
        """Close the row and append the ``session.end`` summary (the caller's ``details`` plus the
        row's fields and both byte counts, as ``broker/sessions.py`` writes it);
        False, changing nothing, if the session is unknown or already ended (or, with ``held_by``,
        no longer held by that node: adopted meanwhile)."""
        async with self.db.write() as tx:
            record = await repo_records.get_session(tx, session_id)
            if record is None or not await repo_records.end_session(
                tx,
                session_id,
                now=now,
                by=by,
                reason=reason,
                bytes_to_agent=bytes_to_agent,
                bytes_to_operator=bytes_to_operator,
                held_by=held_by,
            ):
                return False
            summary = dict(details or {})
            summary.update(
                contract=record.contract_id,
                serial=record.serial,
                operator=record.operator,
                started_at=record.started_at,
                ended_at=now,
                ended_by=by,
                reason=reason,
                bytes_to_operator=bytes_to_operator,
                bytes_to_agent=bytes_to_agent,
            )
            await self.audit.add(
                tx, actor="broker", action="session.end", subject=session_id, details=summary, now=now
            )
        return True

    async def unclaimed(
        self,
        session_id: str,
        *,
        contract_id: str,
        serial: str,
        requested_at: float,
        now: float,
        by: str,
        reason: str,
        details: dict[str, Any],
    ) -> None:
        """A session nobody claimed (the code expired, the subscriber cancelled): its row, already
        ended, with no operator (``""``) and no bytes, and the ``session.end`` summary (``details`` as
        given), in one transaction. So "did this subscriber ask for help on Tuesday" is answered by
        :meth:`for_contract` whether or not anyone took the call."""
        async with self.db.write() as tx:
            if await repo_records.get_session(tx, session_id) is not None:
                raise AlreadyExists(f"session {session_id} already has its row")
            await repo_records.insert_session(
                tx, session_id, contract_id=contract_id, serial=serial, operator="", now=requested_at
            )
            await repo_records.end_session(
                tx, session_id, now=now, by=by, reason=reason, bytes_to_agent=0, bytes_to_operator=0
            )
            await self.audit.add(
                tx, actor="broker", action="session.end", subject=session_id, details=details, now=now
            )

    async def get(self, session_id: str) -> SessionRecord | None:
        async with self.db.read() as tx:
            return await repo_records.get_session(tx, session_id)

    async def for_contract(self, contract_id: str) -> list[SessionRecord]:
        async with self.db.read() as tx:
            return await repo_records.list_sessions(tx, contract_id)

    async def record_receipt(
        self,
        *,
        session_id: str,
        contract_id: str,
        serial: str,
        decision: str,
        granted: tuple[str, ...],
        denied: tuple[str, ...],
        receipt: str,
        signature: str,
        now: float,
        viewer: str | None = None,
    ) -> ReceiptRecord:
        """The receipt row and its ``consent.receipt`` audit entry (the old details), one transaction.

        ``viewer``: the colleague a person decision (invite / transfer) is about, kept on the row and
        in the entry; None for a scope decision (no ``viewer`` key in the entry, as before)."""
        details: dict[str, Any] = {"contract": contract_id, "serial": serial, "decision": decision}
        if viewer is not None:
            details["viewer"] = viewer
        details.update(granted=list(granted), denied=list(denied), receipt=receipt, signature=signature)
        async with self.db.write() as tx:
            seq = await self.audit.add(
                tx,
                actor=f"agent:{serial}",
                action="consent.receipt",
                subject=session_id,
                details=details,
                now=now,
            )
            receipt_id = await repo_records.insert_receipt(
                tx,
                session_id=session_id,
                serial=serial,
                now=now,
                decision=decision,
                granted=granted,
                denied=denied,
                receipt=receipt,
                signature=signature,
                audit_seq=seq,
                viewer=viewer,
            )
        return ReceiptRecord(
            id=receipt_id,
            session_id=session_id,
            serial=serial,
            at=now,
            decision=decision,
            granted=granted,
            denied=denied,
            receipt=receipt,
            signature=signature,
            audit_seq=seq,
            viewer=viewer,
        )

    async def receipts(self, session_id: str) -> list[ReceiptRecord]:
        async with self.db.read() as tx:
            return await repo_records.receipts(tx, session_id)
