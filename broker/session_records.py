"""The session host's storage side: the writes of the core's commands and the reads someone waits
for, on :mod:`broker.storage` (async), plus :class:`StorageThread` for the transition.

:class:`SessionRecords` turns one command into storage calls; :class:`broker.session_host.SessionHost`
calls it from its one ordered writer task (writes) or from a task (reads), never on the loop
synchronously. ``run`` says where storage coroutines run (here, or on a :class:`StorageThread`).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, Protocol, TypeVar

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from protocol.messages import AuditEntries, AuditQuery, AuditRow, AuditVerified, AuditVerify, Message

from .audit import ChainReport
from .checkpoints import verify_audit_and_checkpoints
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
from .inventory import Credentials, InventoryVault
from .storage import Storage
from .store import Store

__all__ = ["MAX_SHOWN_PROBLEMS", "Runner", "SessionRecords", "StorageThread", "verify_on_own_connection"]

MAX_SHOWN_PROBLEMS = 100
"""Audit problems sent to the console in one ``audit_verified`` (the CLI prints them all)."""

T = TypeVar("T")


class Runner(Protocol):
    """Runs a storage coroutine and returns its result (:func:`_direct`, :meth:`StorageThread.run`)."""

    def __call__(self, coro: Coroutine[Any, Any, T], /) -> Awaitable[T]: ...


async def _direct(coro: Coroutine[Any, Any, T]) -> T:
    return await coro


class StorageThread:
    """An event loop on a thread of its own for the storage, during the transition only.

    While the old synchronous store still writes on the main loop (``BEGIN IMMEDIATE`` blocking it
    for up to the busy timeout), a write transaction of the new layer that spans several awaits
    would wait for that very loop: both would sit until the timeout. On a loop of its own the new
    layer's transaction finishes and the old store's wait ends. Drop this once every caller is on
    :mod:`broker.storage` (docs/session-core.md)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="session-storage", daemon=True)
        self._thread.start()

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10.0)
        if not self._thread.is_alive():
            self.loop.close()


def verify_on_own_connection(store: Store, public: Ed25519PublicKey, checkpoints: Path) -> ChainReport:
    """The console's "verify" (chain and signed checkpoints) on a store connection of its own, so
    the host can run it in a worker thread (the old store's connection belongs to the loop)."""
    reopen = getattr(store, "reopen", None)
    own: Store = reopen() if reopen is not None else store
    try:
        return verify_audit_and_checkpoints(own, public, checkpoints, required=False)[0]
    finally:
        if own is not store:
            own.close()


class SessionRecords:
    def __init__(
        self,
        storage: Storage,
        *,
        keyring: DataKeyring,
        run: Runner,
        verify_audit: Callable[[], ChainReport] | None = None,
    ) -> None:
        self.storage = storage
        self.keyring = keyring
        self._run = run
        self.verify_audit = verify_audit

    async def write(self, command: Command) -> int | None:
        """Run one write command; the new inventory's id for ``SaveInventory``."""
        storage = self.storage
        if isinstance(command, Audit):
            await self._run(
                storage.audit.append(
                    actor=command.actor,
                    action=command.action,
                    subject=command.subject,
                    details=command.details,
                    now=command.at,
                )
            )
        elif isinstance(command, PersistSessionStart):
            await self._run(
                storage.sessions.opened(
                    command.session_id,
                    contract_id=command.contract_id,
                    serial=command.serial,
                    operator=command.operator,
                    now=command.at,
                )
            )
        elif isinstance(command, PersistSessionEnd):
            written = command.claimed and await self._run(
                storage.sessions.ended(
                    command.session_id,
                    now=command.at,
                    by=command.by,
                    reason=command.reason,
                    bytes_to_agent=command.bytes_to_agent,
                    bytes_to_operator=command.bytes_to_operator,
                    details=command.details,
                )
            )
            if not written:  # never claimed: no row, the summary alone
                await self._run(
                    storage.audit.append(
                        actor="broker",
                        action="session.end",
                        subject=command.session_id,
                        details=command.details,
                        now=command.at,
                    )
                )
        elif isinstance(command, PersistReceipt):
            await self._write_receipt(command)
        elif isinstance(command, SaveInventory):
            return await self._save_inventory(command)
        return None

    async def _write_receipt(self, command: PersistReceipt) -> None:
        if command.viewer is None:
            await self._run(
                self.storage.sessions.record_receipt(
                    session_id=command.session_id,
                    contract_id=command.contract_id,
                    serial=command.serial,
                    decision=command.decision,
                    granted=command.granted,
                    denied=command.denied,
                    receipt=command.receipt,
                    signature=command.signature,
                    now=command.at,
                )
            )
            return
        # A person decision also names its viewer (the receipt row has no column for it).
        await self._run(
            self.storage.audit.append(
                actor=f"agent:{command.serial}",
                action="consent.receipt",
                subject=command.session_id,
                details={
                    "contract": command.contract_id,
                    "serial": command.serial,
                    "decision": command.decision,
                    "viewer": command.viewer,
                    "granted": list(command.granted),
                    "denied": list(command.denied),
                    "receipt": command.receipt,
                    "signature": command.signature,
                },
                now=command.at,
            )
        )

    async def _save_inventory(self, command: SaveInventory) -> int:
        report, contract = command.report, command.contract_id
        aad = InventoryVault._aad
        items_blob = self.keyring.encrypt(
            msgspec.json.encode(report.items), aad=aad("items", contract, report.session_id)
        )
        credentials_blob = None
        if report.router_account is not None or report.router_password is not None:
            secret = Credentials(account=report.router_account or "", password=report.router_password or "")
            credentials_blob = self.keyring.encrypt(
                msgspec.json.encode(secret), aad=aad("credentials", contract, report.session_id)
            )
        return await self._run(
            self.storage.inventory.save(
                contract_id=contract,
                serial=command.serial,
                session_id=report.session_id,
                items=[item.item for item in report.items],
                items_blob=items_blob,
                credentials_blob=credentials_blob,
                now=command.at,
            )
        )

    async def read_credentials(self, command: ReadCredentials, inventory_id: int | None) -> CredentialsRead:
        """The router login of 別紙5 (11), decrypted (the caller flushed the writer first)."""
        account = password = None
        record = None if inventory_id is None else await self._run(self.storage.inventory.get(inventory_id))
        if record is not None and record.credentials_blob is not None:
            plain = self.keyring.decrypt(
                record.credentials_blob,
                aad=InventoryVault._aad("credentials", record.contract_id, record.session_id),
            )
            secret = msgspec.json.decode(plain, type=Credentials)
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
            entries = await self._run(
                self.storage.audit.page(subject=msg.subject, limit=msg.limit, before_seq=msg.before_seq)
            )
            rows = tuple(
                AuditRow(
                    seq=e.seq, at=e.at, actor=e.actor, action=e.action, subject=e.subject, details=e.details
                )
                for e in entries
            )
            return AuditEntries(id=msg.id, entries=rows)
        assert isinstance(msg, AuditVerify)
        report = (
            await asyncio.to_thread(self.verify_audit)
            if self.verify_audit
            else await self._run(self.storage.audit.verify())
        )
        problems = report.problems[:MAX_SHOWN_PROBLEMS]
        more = len(report.problems) - len(problems) + report.omitted
        if more:  # one message must stay within the text frame limit
            problems = [*problems, f"… and {more} more: run python -m broker audit verify"]
        return AuditVerified(id=msg.id, ok=report.ok, checked=report.checked, problems=tuple(problems))
