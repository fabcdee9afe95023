"""Inventory reports at rest: encrypted, separated, and only shown as far as consent reaches.

別紙5's items are personal data (第30条); the broker keeps them only as AES-GCM ciphertext
(:mod:`broker.datakeys`, a key id in every blob so keys can rotate). The router's login
(別紙5 (11)) goes into a blob of its own, bound to the same contract and session, and is
decrypted only for the explicit, audited "reveal" action. Inventory of a terminated contract
is deleted after the retention period by ``python -m broker inventory purge`` (第32条4, 第38条).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import msgspec

from protocol.messages import InventoryItem, InventoryReport

from .datakeys import DataKeyring
from .store import InventoryRecord

if TYPE_CHECKING:
    from .storage import Storage

_items = msgspec.json.Decoder(tuple[InventoryItem, ...])


class Credentials(msgspec.Struct, frozen=True):
    account: str
    password: str


class InventoryVault:
    """Encrypts reports for :meth:`broker.storage.services.Inventory.save` and decrypts records."""

    def __init__(self, keyring: DataKeyring) -> None:
        self.keyring = keyring

    @staticmethod
    def _aad(kind: str, contract_id: str, session_id: str) -> bytes:
        return f"inventory:{kind}:{contract_id}:{session_id}".encode()

    def seal(self, *, contract_id: str, report: InventoryReport) -> tuple[bytes, bytes | None]:
        """``(items_blob, credentials_blob)``: AES-GCM, each bound to the contract and the session."""
        items_blob = self.keyring.encrypt(
            msgspec.json.encode(report.items), aad=self._aad("items", contract_id, report.session_id)
        )
        credentials_blob = None
        if report.router_account is not None or report.router_password is not None:
            credentials = Credentials(
                account=report.router_account or "", password=report.router_password or ""
            )
            credentials_blob = self.keyring.encrypt(
                msgspec.json.encode(credentials), aad=self._aad("credentials", contract_id, report.session_id)
            )
        return items_blob, credentials_blob

    async def store(
        self, storage: Storage, *, contract_id: str, serial: str, report: InventoryReport, now: float
    ) -> int:
        """Encrypt in a worker thread, then store the blobs (and the audit entry) in one transaction."""
        items_blob, credentials_blob = await asyncio.to_thread(
            self.seal, contract_id=contract_id, report=report
        )
        return await storage.inventory.save(
            contract_id=contract_id,
            serial=serial,
            session_id=report.session_id,
            items=[item.item for item in report.items],
            items_blob=items_blob,
            credentials_blob=credentials_blob,
            now=now,
        )

    def items(self, record: InventoryRecord) -> tuple[InventoryItem, ...]:
        plain = self.keyring.decrypt(
            record.items_blob, aad=self._aad("items", record.contract_id, record.session_id)
        )
        return _items.decode(plain)

    def credentials(self, record: InventoryRecord) -> Credentials | None:
        if record.credentials_blob is None:
            return None
        plain = self.keyring.decrypt(
            record.credentials_blob, aad=self._aad("credentials", record.contract_id, record.session_id)
        )
        return msgspec.json.decode(plain, type=Credentials)
