"""The rules above the repositories: what may change, what changes together, and what is audited.

Each public method is one transaction: its checks, its rows and its audit entries commit together or
not at all (a failure anywhere, a constraint of the database included, rolls back all of it). These
rules lived in SQL code before (in the synchronous store, deleted); here they are plain Python over the
repositories, the same on SQLite and PostgreSQL. Audit texts (actions, subjects, details) are those
of the old store, so ``audit log`` reads the same. Operators: :mod:`broker.storage.operator_service`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from protocol.errors import ErrorCode

from ..audit import AuditEntry, ChainReport
from ..errors import AlreadyExists, NotFound, RefusedError
from ..store import (
    AgentPresence,
    CertificateRecord,
    EnrollmentToken,
    InventoryRecord,
    PresenceChange,
    Subscriber,
    SubscriberStatus,
)
from . import repo_audit, repo_contracts, repo_records
from .db import Database, Tx
from .repo_audit import AuditChain

_STATUS_ACTION = {
    SubscriberStatus.ACTIVE: "subscriber.resume",
    SubscriberStatus.SUSPENDED: "subscriber.suspend",
    SubscriberStatus.TERMINATED: "subscriber.terminate",
}


def check_token(
    token: EnrollmentToken | None, status: SubscriberStatus | None, *, contract_id: str, now: float
) -> None:
    """Why an enrollment token cannot be used, if it cannot (raises ``RefusedError``)."""
    if token is None or status is None or token.contract_id != contract_id:
        # Do not tell a stranger which contract a token belongs to.
        raise RefusedError("unknown enrollment token", code=ErrorCode.TOKEN_UNKNOWN)
    # Termination (第20条/第21条) voids unused tokens too; say why, rather than "already used". A suspension
    # (第18条) pauses the service, not the identity: a suspended subscriber may still enroll a PC.
    if status is SubscriberStatus.TERMINATED:
        raise RefusedError("the contract is terminated", code=ErrorCode.SUBSCRIBER_TERMINATED)
    if token.used_at is not None:
        raise RefusedError("this enrollment token was already used", code=ErrorCode.TOKEN_USED)
    if now >= token.expires_at:
        raise RefusedError("this enrollment token has expired", code=ErrorCode.TOKEN_EXPIRED)


async def _live_subscriber(tx: Tx, contract_id: str) -> Subscriber:
    """The subscriber, row-locked, unless unknown or terminated (then ``NotFound`` / ``RefusedError``)."""
    subscriber = await repo_contracts.get_subscriber(tx, contract_id, lock=True)
    if subscriber is None:
        raise NotFound(f"no subscriber {contract_id}")
    if subscriber.status is SubscriberStatus.TERMINATED:
        raise RefusedError(
            f"the contract of {contract_id} is terminated", code=ErrorCode.SUBSCRIBER_TERMINATED
        )
    return subscriber


class AuditLog:
    """The append-only, chained audit log (DESIGN §6)."""

    def __init__(self, db: Database, chain: AuditChain) -> None:
        self.db = db
        self.chain = chain

    async def add(
        self, tx: Tx, *, actor: str, action: str, subject: str, details: dict[str, Any], now: float
    ) -> int:
        """Append inside another service's transaction."""
        return await repo_audit.append(
            tx, self.chain, actor=actor, action=action, subject=subject, details=details, now=now
        )

    async def add_many(self, tx: Tx, entries: Sequence[repo_audit.NewEntry]) -> list[int]:
        """Append several, in order, inside another service's transaction."""
        return await repo_audit.append_many(tx, self.chain, entries)

    async def append(
        self, *, actor: str, action: str, subject: str, details: dict[str, Any], now: float
    ) -> int:
        async with self.db.write() as tx:
            return await self.add(tx, actor=actor, action=action, subject=subject, details=details, now=now)

    async def entries(self, *, subject: str | None = None) -> list[AuditEntry]:
        async with self.db.read() as tx:
            return await repo_audit.entries(tx, subject=subject)

    async def page(self, *, subject: str | None, limit: int, before_seq: int | None) -> list[AuditEntry]:
        async with self.db.read() as tx:
            return await repo_audit.page(tx, subject=subject, limit=limit, before_seq=before_seq)

    async def count(self, *, action: str, subject: str, since: float) -> int:
        async with self.db.read() as tx:
            return await repo_audit.count(tx, action=action, subject=subject, since=since)

    async def verify(self) -> ChainReport:
        async with self.db.read() as tx:
            return await repo_audit.verify(tx, self.chain)

    async def adopt_key(self, *, created: bool) -> bool:
        """On the first start with an audit key (``created``: this process made the key file), an
        old public SHA-256 chain gets its ``audit.keyed`` transition entry; an unkeyed chain beside an
        existing key is left alone (its next append records a break: docs/audit.md, migration)."""
        if not created:
            return False
        async with self.db.write() as tx:
            return await repo_audit.key_unkeyed_chain(tx, self.chain)

    async def head(self) -> tuple[int, str] | None:
        """``(seq, hash)`` of the newest entry (what a signed checkpoint records, broker.checkpoints)."""
        async with self.db.read() as tx:
            return await repo_audit.head(tx)

    async def hash_at(self, seq: int) -> str | None:
        async with self.db.read() as tx:
            return await repo_audit.hash_at(tx, seq)


class Subscribers:
    """Contracts (第7条), their status (第18条, 第20条, 第21条) and enrollment."""

    def __init__(self, db: Database, audit: AuditLog) -> None:
        self.db = db
        self.audit = audit

    async def add(self, contract_id: str, *, now: float, actor: str) -> Subscriber:
        async with self.db.write() as tx:
            if await repo_contracts.get_subscriber(tx, contract_id) is not None:
                raise AlreadyExists(
                    f"subscriber {contract_id} already has a contract"
                    " (第7条: one contract per internet contract)"
                )
            subscriber = await repo_contracts.insert_subscriber(tx, contract_id, now=now)
            await self.audit.add(
                tx, actor=actor, action="subscriber.add", subject=contract_id, details={}, now=now
            )
        return subscriber

    async def get(self, contract_id: str) -> Subscriber | None:
        async with self.db.read() as tx:
            return await repo_contracts.get_subscriber(tx, contract_id)

    async def list_all(self) -> list[Subscriber]:
        async with self.db.read() as tx:
            return await repo_contracts.list_subscribers(tx)

    async def set_status(
        self,
        contract_id: str,
        status: SubscriberStatus,
        *,
        now: float,
        actor: str,
        until: float | None = None,
        reason: str = "",
    ) -> list[str]:
        """Change status; terminating revokes every live certificate and voids every unused token, in
        the same transaction (第20条/第21条). The revoked serials."""
        async with self.db.write() as tx:
            await _live_subscriber(tx, contract_id)
            kept_until = until if status is SubscriberStatus.SUSPENDED else None
            await repo_contracts.set_status(tx, contract_id, status, now=now, until=kept_until)
            revoked: list[str] = []
            if status is SubscriberStatus.TERMINATED:
                for serial in await repo_contracts.live_serials(tx, contract_id):
                    if await repo_contracts.revoke(tx, serial, now=now, reason="contract terminated"):
                        revoked.append(serial)
                        await self.audit.add(
                            tx,
                            actor=actor,
                            action="cert.revoke",
                            subject=contract_id,
                            details={"serial": serial, "reason": "contract terminated"},
                            now=now,
                        )
                await repo_contracts.void_tokens(tx, contract_id, now=now)
            details: dict[str, Any] = {"reason": reason}
            if until is not None:
                details["until"] = until
            if revoked:
                details["revoked"] = revoked
            await self.audit.add(
                tx, actor=actor, action=_STATUS_ACTION[status], subject=contract_id, details=details, now=now
            )
        return revoked

    async def add_enrollment_token(
        self, contract_id: str, token_hash: str, *, now: float, expires_at: float, actor: str
    ) -> None:
        async with self.db.write() as tx:
            await _live_subscriber(tx, contract_id)
            await repo_contracts.insert_token(tx, contract_id, token_hash, now=now, expires_at=expires_at)
            await self.audit.add(
                tx,
                actor=actor,
                action="token.issue",
                subject=contract_id,
                details={"expires_at": expires_at},
                now=now,
            )

    async def get_enrollment_token(self, token_hash: str) -> EnrollmentToken | None:
        async with self.db.read() as tx:
            return await repo_contracts.get_token(tx, token_hash)

    async def complete_enrollment(
        self, token_hash: str, certificate: CertificateRecord, *, now: float
    ) -> None:
        """Atomically: the token is still valid and unused → mark it used, store the certificate and
        its presence row, audit. A refusal changes nothing."""
        async with self.db.write() as tx:
            token = await repo_contracts.get_token(tx, token_hash, lock=True)
            subscriber = (
                await repo_contracts.get_subscriber(tx, token.contract_id, lock=True)
                if token is not None
                else None
            )
            check_token(
                token,
                subscriber.status if subscriber else None,
                contract_id=certificate.contract_id,
                now=now,
            )
            await repo_contracts.use_token(tx, token_hash, now=now, serial=certificate.serial)
            await repo_contracts.insert_certificate(tx, certificate)
            await repo_contracts.upsert_presence(
                tx, certificate.serial, online=False, now=None, peer="", node=""
            )
            await self.audit.add(
                tx,
                actor="agent",
                action="agent.enroll",
                subject=certificate.contract_id,
                details={"serial": certificate.serial, "machine_name": certificate.machine_name},
                now=now,
            )


class Certificates:
    """Client certificates (別紙5 (2): the serial is the client certificate ID) and their revocation."""

    def __init__(self, db: Database, audit: AuditLog) -> None:
        self.db = db
        self.audit = audit

    async def get(self, serial: str) -> CertificateRecord | None:
        async with self.db.read_statement() as tx:
            return await repo_contracts.get_certificate(tx, serial)

    async def with_subscriber(self, serial: str) -> tuple[CertificateRecord, Subscriber | None] | None:
        """The certificate and its contract, read together in one statement (an agent's admission, at
        every reconnect)."""
        return (await self.with_subscribers([serial])).get(serial)

    async def with_subscribers(
        self, serials: Sequence[str]
    ) -> dict[str, tuple[CertificateRecord, Subscriber | None]]:
        """Several admissions' reads in one statement (:mod:`broker.admission_reads`)."""
        async with self.db.read_statement() as tx:
            return await repo_contracts.get_certificates_and_subscribers(tx, serials)

    async def list_all(self, contract_id: str | None = None) -> list[CertificateRecord]:
        async with self.db.read() as tx:
            return await repo_contracts.list_certificates(tx, contract_id)

    async def revoke(self, serial: str, *, now: float, actor: str, reason: str) -> bool:
        """True if it was live; False if it was revoked already; ``NotFound`` if unknown."""
        async with self.db.write() as tx:
            cert = await repo_contracts.get_certificate(tx, serial)
            if cert is None:
                raise NotFound(f"no certificate with serial {serial}")
            if not await repo_contracts.revoke(tx, serial, now=now, reason=reason):
                return False
            await self.audit.add(
                tx,
                actor=actor,
                action="cert.revoke",
                subject=cert.contract_id,
                details={"serial": serial, "reason": reason},
                now=now,
            )
        return True

    async def revoked_serials(self) -> list[tuple[str, float]]:
        async with self.db.read_statement() as tx:
            return await repo_contracts.revoked_serials(tx)


class Presence:
    """Which enrolled PC is connected to which broker node."""

    def __init__(self, db: Database, audit: AuditLog) -> None:
        self.db = db
        self.audit = audit

    async def set_online(self, serial: str, *, online: bool, now: float, peer: str, node: str) -> None:
        await self.set_online_many(
            [PresenceChange(serial=serial, online=online, now=now, peer=peer, node=node)]
        )

    async def set_online_many(self, changes: Sequence[PresenceChange]) -> None:
        """Connects and disconnects in order, each with its ``agent.connect``/``agent.disconnect``
        audit entry, in one durable transaction (a reconnect storm writes them in batches: one
        commit, one read and one write of the audit head per batch)."""
        if not changes:
            return
        async with self.db.write() as tx:
            await repo_contracts.upsert_presence_many(tx, changes)
            contracts = await repo_contracts.contracts_of(tx, sorted({c.serial for c in changes}))
            await self.audit.add_many(
                tx,
                [
                    repo_audit.NewEntry(
                        actor="agent",
                        action="agent.connect" if c.online else "agent.disconnect",
                        subject=contracts.get(c.serial, c.serial),
                        details={"serial": c.serial, "peer": c.peer},
                        now=c.now,
                    )
                    for c in changes
                ],
            )

    async def touch(self, serials: list[str], *, now: float) -> None:
        """Heartbeat times: rewritten every few seconds, so not worth a sync to disk each."""
        if not serials:
            return
        async with self.db.write(durable=False) as tx:
            await repo_contracts.touch(tx, serials, now=now)

    async def mark_node_offline(self, node: str, *, now: float) -> int:
        """After a crash, this node's agents are not connected any more."""
        async with self.db.write(durable=False) as tx:
            return await repo_contracts.mark_node_offline(tx, node)

    async def holder(self, serial: str) -> str | None:
        """The node an agent is connected to now (None: offline)."""
        async with self.db.read() as tx:
            return await repo_contracts.presence_node(tx, serial)

    async def list_agents(self) -> list[AgentPresence]:
        async with self.db.read() as tx:
            return await repo_contracts.list_agents(tx)

    async def update_machine_name(self, serial: str, machine_name: str) -> None:
        async with self.db.write(durable=False) as tx:
            await repo_contracts.set_machine_name(tx, serial, machine_name)


class Inventory:
    """Inventory reports (別紙5), encrypted by the caller; purged after termination (第32条4, 第38条)."""

    def __init__(self, db: Database, audit: AuditLog) -> None:
        self.db = db
        self.audit = audit

    async def save(
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
        async with self.db.write() as tx:
            inventory_id = await repo_records.insert_inventory(
                tx,
                contract_id=contract_id,
                serial=serial,
                session_id=session_id,
                items_blob=items_blob,
                credentials_blob=credentials_blob,
                now=now,
            )
            await self.audit.add(
                tx,
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

    async def get(self, inventory_id: int) -> InventoryRecord | None:
        async with self.db.read() as tx:
            return await repo_records.get_inventory(tx, inventory_id)

    async def latest(self, contract_id: str) -> InventoryRecord | None:
        async with self.db.read() as tx:
            return await repo_records.latest_inventory(tx, contract_id)

    async def purge(self, *, terminated_before: float, now: float, actor: str) -> list[str]:
        async with self.db.write() as tx:
            contracts = await repo_contracts.terminated_before(tx, terminated_before)
            for contract in contracts:
                deleted = await repo_records.delete_inventory(tx, contract)
                await self.audit.add(
                    tx,
                    actor=actor,
                    action="inventory.purge",
                    subject=contract,
                    details={"deleted": deleted, "terminated_before": terminated_before},
                    now=now,
                )
        return contracts


class Meta:
    """Small settings shared by the broker processes and the CLI (e.g. the public URL)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, key: str) -> str | None:
        async with self.db.read() as tx:
            return await repo_records.get_meta(tx, key)

    async def set(self, key: str, value: str) -> None:
        async with self.db.write() as tx:
            await repo_records.set_meta(tx, key, value)
