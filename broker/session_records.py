"""The session host's storage side: the writes of the core's commands and the reads someone waits
for, on :mod:`broker.storage` (async).

:class:`SessionRecords` turns one command into storage calls; :class:`broker.session_host.SessionHost`
calls it from its one ordered writer task (writes) or from a task (reads), never on the loop
synchronously.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from protocol.messages import AuditEntries, AuditQuery, AuditRow, AuditVerified, AuditVerify, Message

from .audit import ChainReport
from .core import (
    Audit,
    BrowseAudit,
    Command,
    CredentialsRead,
    PersistReceipt,
    PersistSessionEnd,
    PersistSessionStart,
    ReadCredentials,
    SaveInventory,
)
from .datakeys import DataKeyring
from .errors import AlreadyExists
from .inventory import InventoryVault
from .storage import Storage

__all__ = ["MAX_SHOWN_PROBLEMS", "SessionRecords", "VerifyAudit"]

VerifyAudit = Callable[[], Awaitable[ChainReport]]
"""The console's "verify": the chain and, in the server, the signed checkpoints."""

MAX_SHOWN_PROBLEMS = 100
"""Audit problems sent to the console in one ``audit_verified`` (the CLI prints them all)."""


class SessionRecords:
    def __init__(
        self,
        storage: Storage,
        *,
        keyring: DataKeyring,
        verify_audit: VerifyAudit | None = None,
        node: str = "",
    ) -> None:
        self.storage = storage
        self.node = node
        """Written on each session row opened here (the cluster's sweep, docs/cluster.md §6a)."""
        self.keyring = keyring
        self.vault = InventoryVault(keyring)
        self.verify_audit = verify_audit

    async def write(self, command: Command) -> int | None:
        """Run one write command; the new inventory's id for ``SaveInventory``."""
        storage = self.storage
        if isinstance(command, Audit):
            await storage.audit.append(
                actor=command.actor,
                action=command.action,
                subject=command.subject,
                details=command.details,
                now=command.at,
            )
        elif isinstance(command, PersistSessionStart):
            await storage.sessions.opened(
                command.session_id,
                contract_id=command.contract_id,
                serial=command.serial,
                operator=command.operator,
                now=command.at,
                node=self.node,
            )
        elif isinstance(command, PersistSessionEnd):
            await self._end_session(command)
        elif isinstance(command, PersistReceipt):
            await self._write_receipt(command)
        elif isinstance(command, SaveInventory):
            return await self._save_inventory(command)
        return None

    async def _end_session(self, command: PersistSessionEnd) -> None:
        """A claimed session's row is closed; a session nobody claimed gets its row now, already
        ended (operator ``""``), so every session that got a code has one. Either way with the
        ``session.end`` summary in the same transaction."""
        storage = self.storage
        if command.claimed:
            if await storage.sessions.ended(
                command.session_id,
                now=command.at,
                by=command.by,
                reason=command.reason,
                bytes_to_agent=command.bytes_to_agent,
                bytes_to_operator=command.bytes_to_operator,
                details=command.details,
            ):
                return
            record = await storage.sessions.get(command.session_id)
            if record is not None and record.ended_at is not None:
                return  # already ended elsewhere (swept: docs/cluster.md §6a): one summary only
        else:
            contract, serial = command.details.get("contract"), command.details.get("serial")
            requested = command.details.get("requested_at")
            if isinstance(contract, str) and isinstance(serial, str) and isinstance(requested, int | float):
                try:
                    await storage.sessions.unclaimed(
                        command.session_id,
                        contract_id=contract,
                        serial=serial,
                        requested_at=float(requested),
                        now=command.at,
                        by=command.by,
                        reason=command.reason,
                        details=command.details,
                    )
                except AlreadyExists:
                    pass  # another process wrote its row: the summary alone
                else:
                    return
        # no row to close (or nothing to name one with): the summary alone, as before
        await storage.audit.append(
            actor="broker",
            action="session.end",
            subject=command.session_id,
            details=command.details,
            now=command.at,
        )

    async def _write_receipt(self, command: PersistReceipt) -> None:
        """Scope and person decisions alike: the row (with the viewer a person decision names) and
        its ``consent.receipt`` audit entry, one transaction."""
        await self.storage.sessions.record_receipt(
            session_id=command.session_id,
            contract_id=command.contract_id,
            serial=command.serial,
            decision=command.decision,
            granted=command.granted,
            denied=command.denied,
            receipt=command.receipt,
            signature=command.signature,
            now=command.at,
            viewer=command.viewer,
        )

    async def _save_inventory(self, command: SaveInventory) -> int:
        """Encrypted in a worker thread, stored with its audit entry in one transaction."""
        return await self.vault.store(
            self.storage,
            contract_id=command.contract_id,
            serial=command.serial,
            report=command.report,
            now=command.at,
        )

    async def read_credentials(self, command: ReadCredentials, inventory_id: int | None) -> CredentialsRead:
        """The router login of 別紙5 (11), decrypted (the caller flushed the writer first)."""
        account = password = None
        record = None if inventory_id is None else await self.storage.inventory.get(inventory_id)
        secret = None if record is None else self.vault.credentials(record)
        if secret is not None:
            account, password = secret.account, secret.password
        return CredentialsRead(
            operator=command.operator,
            request_id=command.request_id,
            session_id=command.session_id,
            account=account,
            password=password,
        )

    async def browse(self, command: BrowseAudit) -> Message:
        """A supervisor's audit page or verify: answered here, not in the session core (the caller
        flushed the writer first)."""
        msg = command.message
        if isinstance(msg, AuditQuery):
            entries = await self.storage.audit.page(
                subject=msg.subject, limit=msg.limit, before_seq=msg.before_seq
            )
            rows = tuple(
                AuditRow(
                    seq=e.seq, at=e.at, actor=e.actor, action=e.action, subject=e.subject, details=e.details
                )
                for e in entries
            )
            return AuditEntries(id=msg.id, entries=rows)
        assert isinstance(msg, AuditVerify)
        report = await self.verify_audit() if self.verify_audit else await self.storage.audit.verify()
        problems = report.problems[:MAX_SHOWN_PROBLEMS]
        more = len(report.problems) - len(problems) + report.omitted
        if more:  # one message must stay within the text frame limit
            problems = [*problems, f"… and {more} more: run python -m broker audit verify"]
        return AuditVerified(id=msg.id, ok=report.ok, checked=report.checked, problems=tuple(problems))
