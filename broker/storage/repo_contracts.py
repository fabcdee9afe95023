"""Repositories of the contract side: subscribers, enrollment tokens, certificates, presence.

A repository is a set of functions over one open transaction (:class:`broker.storage.db.Tx`): rows
in, records out, no rules and no audit (those are the services', :mod:`broker.storage.services`).
The records are :mod:`broker.store`'s dataclasses, so callers of the old store read the same types.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from ..store import (
    AgentPresence,
    CertificateRecord,
    EnrollmentToken,
    PresenceChange,
    Subscriber,
    SubscriberStatus,
)
from .db import Row, Tx

# -- subscribers (第7条: one contract per ID) -------------------------------------------------------

_SUB_COLS: Final = "contract_id, status, created_at, status_changed_at, suspended_until"


def _subscriber(row: Row) -> Subscriber:
    return Subscriber(
        contract_id=row[0],
        status=SubscriberStatus(row[1]),
        created_at=row[2],
        status_changed_at=row[3],
        suspended_until=row[4],
    )


async def insert_subscriber(tx: Tx, contract_id: str, *, now: float) -> Subscriber:
    await tx.execute(
        "INSERT INTO subscribers(contract_id, status, created_at, status_changed_at) VALUES (?, ?, ?, ?)",
        (contract_id, SubscriberStatus.ACTIVE.value, now, now),
    )
    return Subscriber(
        contract_id=contract_id, status=SubscriberStatus.ACTIVE, created_at=now, status_changed_at=now
    )


async def get_subscriber(tx: Tx, contract_id: str, *, lock: bool = False) -> Subscriber | None:
    """``lock=True`` inside a write transaction: the row stays ours until it ends (PostgreSQL)."""
    row = await tx.fetchone(
        f"SELECT {_SUB_COLS} FROM subscribers WHERE contract_id = ?{tx.for_update if lock else ''}",
        (contract_id,),
    )
    return _subscriber(row) if row else None


async def list_subscribers(tx: Tx) -> list[Subscriber]:
    return [
        _subscriber(r) for r in await tx.fetchall(f"SELECT {_SUB_COLS} FROM subscribers ORDER BY contract_id")
    ]


async def set_status(
    tx: Tx, contract_id: str, status: SubscriberStatus, *, now: float, until: float | None
) -> None:
    await tx.execute(
        "UPDATE subscribers SET status = ?, status_changed_at = ?, suspended_until = ? WHERE contract_id = ?",
        (status.value, now, until, contract_id),
    )


async def terminated_before(tx: Tx, cutoff: float) -> list[str]:
    """Contracts terminated before ``cutoff`` that still have inventory."""
    rows = await tx.fetchall(
        "SELECT DISTINCT i.contract_id FROM inventory i JOIN subscribers s USING (contract_id)"
        " WHERE s.status = 'terminated' AND s.status_changed_at < ? ORDER BY i.contract_id",
        (cutoff,),
    )
    return [r[0] for r in rows]


# -- enrollment tokens ------------------------------------------------------------------------------


async def insert_token(tx: Tx, contract_id: str, token_hash: str, *, now: float, expires_at: float) -> None:
    await tx.execute(
        "INSERT INTO enrollment_tokens(token_hash, contract_id, created_at, expires_at) VALUES (?, ?, ?, ?)",
        (token_hash, contract_id, now, expires_at),
    )


async def get_token(tx: Tx, token_hash: str, *, lock: bool = False) -> EnrollmentToken | None:
    row = await tx.fetchone(
        "SELECT token_hash, contract_id, created_at, expires_at, used_at FROM enrollment_tokens"
        f" WHERE token_hash = ?{tx.for_update if lock else ''}",
        (token_hash,),
    )
    if row is None:
        return None
    return EnrollmentToken(
        token_hash=row[0], contract_id=row[1], created_at=row[2], expires_at=row[3], used_at=row[4]
    )


async def use_token(tx: Tx, token_hash: str, *, now: float, serial: str) -> None:
    await tx.execute(
        "UPDATE enrollment_tokens SET used_at = ?, used_serial = ? WHERE token_hash = ?",
        (now, serial, token_hash),
    )


async def void_tokens(tx: Tx, contract_id: str, *, now: float) -> int:
    """Mark every unused token of a contract used (termination voids them)."""
    return await tx.execute(
        "UPDATE enrollment_tokens SET used_at = ? WHERE contract_id = ? AND used_at IS NULL",
        (now, contract_id),
    )


# -- certificates -----------------------------------------------------------------------------------

_CERT_COLS: Final = (
    "serial, contract_id, machine_name, cert_pem, issued_at, not_after, revoked_at, revoke_reason"
)


def _cert(row: Row) -> CertificateRecord:
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


async def insert_certificate(tx: Tx, cert: CertificateRecord) -> None:
    await tx.execute(
        "INSERT INTO certificates(serial, contract_id, machine_name, cert_pem, issued_at, not_after)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (cert.serial, cert.contract_id, cert.machine_name, cert.cert_pem, cert.issued_at, cert.not_after),
    )


async def get_certificate(tx: Tx, serial: str) -> CertificateRecord | None:
    row = await tx.fetchone(f"SELECT {_CERT_COLS} FROM certificates WHERE serial = ?", (serial,))
    return _cert(row) if row else None


def _prefixed(table: str, cols: str) -> str:
    return ", ".join(f"{table}.{col.strip()}" for col in cols.split(","))


_CERT_WIDTH: Final = len(_CERT_COLS.split(","))
_CERT_AND_SUBSCRIBER_FROM: Final = (
    f"SELECT {_prefixed('c', _CERT_COLS)}, {_prefixed('s', _SUB_COLS)} FROM certificates c"
    " LEFT JOIN subscribers s ON s.contract_id = c.contract_id"
)
_CERT_AND_SUBSCRIBER_ANY: Final = f"{_CERT_AND_SUBSCRIBER_FROM} WHERE c.serial = ANY(?)"


async def get_certificates_and_subscribers(
    tx: Tx, serials: Sequence[str]
) -> dict[str, tuple[CertificateRecord, Subscriber | None]]:
    """Agents' certificates and contracts in one statement (an admission, or the admissions that
    arrive together in a reconnect storm, :mod:`broker.admission_reads`); an unknown serial is simply
    absent. One SQL
    text on PostgreSQL (``= ANY(?)`` with an array: one prepared statement for every batch size)."""
    if not serials:
        return {}
    if tx.dialect == "postgresql":
        rows = await tx.fetchall(_CERT_AND_SUBSCRIBER_ANY, (list(serials),))
    else:
        marks = ", ".join("?" * len(serials))
        rows = await tx.fetchall(f"{_CERT_AND_SUBSCRIBER_FROM} WHERE c.serial IN ({marks})", tuple(serials))
    found: dict[str, tuple[CertificateRecord, Subscriber | None]] = {}
    for row in rows:
        cert, sub = row[:_CERT_WIDTH], row[_CERT_WIDTH:]
        record = _cert(cert)
        found[record.serial] = (record, _subscriber(sub) if sub[0] is not None else None)
    return found


async def list_certificates(tx: Tx, contract_id: str | None = None) -> list[CertificateRecord]:
    if contract_id is None:
        rows = await tx.fetchall(f"SELECT {_CERT_COLS} FROM certificates ORDER BY issued_at, serial")
    else:
        rows = await tx.fetchall(
            f"SELECT {_CERT_COLS} FROM certificates WHERE contract_id = ? ORDER BY issued_at, serial",
            (contract_id,),
        )
    return [_cert(r) for r in rows]


async def live_serials(tx: Tx, contract_id: str) -> list[str]:
    rows = await tx.fetchall(
        "SELECT serial FROM certificates WHERE contract_id = ? AND revoked_at IS NULL ORDER BY serial",
        (contract_id,),
    )
    return [r[0] for r in rows]


async def revoke(tx: Tx, serial: str, *, now: float, reason: str) -> bool:
    """True if the certificate was live and is revoked now."""
    changed = await tx.execute(
        "UPDATE certificates SET revoked_at = ?, revoke_reason = ? WHERE serial = ? AND revoked_at IS NULL",
        (now, reason, serial),
    )
    return changed == 1


async def revoked_serials(tx: Tx) -> list[tuple[str, float]]:
    rows = await tx.fetchall(
        "SELECT serial, revoked_at FROM certificates WHERE revoked_at IS NOT NULL ORDER BY revoked_at, serial"
    )
    return [(r[0], r[1]) for r in rows]


async def set_machine_name(tx: Tx, serial: str, machine_name: str) -> None:
    await tx.execute("UPDATE certificates SET machine_name = ? WHERE serial = ?", (machine_name, serial))


# -- presence ---------------------------------------------------------------------------------------


_UPSERT_PRESENCE: Final = (
    "INSERT INTO presence(serial, online, last_seen, peer, node) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT(serial) DO UPDATE SET online = excluded.online, last_seen = excluded.last_seen,"
    " peer = excluded.peer, node = excluded.node"
)


async def upsert_presence(
    tx: Tx, serial: str, *, online: bool, now: float | None, peer: str, node: str
) -> None:
    await tx.execute(_UPSERT_PRESENCE, (serial, int(online), now, peer, node))


async def upsert_presence_many(tx: Tx, changes: Sequence[PresenceChange]) -> None:
    """Several presence changes in order (the last one of a serial wins)."""
    await tx.executemany(
        _UPSERT_PRESENCE, [(c.serial, int(c.online), c.now, c.peer, c.node) for c in changes]
    )


async def contracts_of(tx: Tx, serials: Sequence[str]) -> dict[str, str]:
    """serial → contract ID of the certificates among ``serials`` (at most a few hundred)."""
    if not serials:
        return {}
    marks = ", ".join("?" * len(serials))
    rows = await tx.fetchall(
        f"SELECT serial, contract_id FROM certificates WHERE serial IN ({marks})", serials
    )
    return {str(r[0]): str(r[1]) for r in rows}


async def touch(tx: Tx, serials: list[str], *, now: float) -> None:
    await tx.executemany("UPDATE presence SET last_seen = ? WHERE serial = ?", [(now, s) for s in serials])


async def mark_node_offline(tx: Tx, node: str) -> int:
    return await tx.execute("UPDATE presence SET online = 0 WHERE node = ? AND online = 1", (node,))


async def presence_node(tx: Tx, serial: str) -> str | None:
    row = await tx.fetchone("SELECT node FROM presence WHERE serial = ? AND online = 1", (serial,))
    return str(row[0]) if row and row[0] is not None else None


async def list_agents(tx: Tx) -> list[AgentPresence]:
    rows = await tx.fetchall(
        "SELECT c.serial, c.contract_id, c.machine_name, COALESCE(p.online, 0), p.last_seen,"
        " c.revoked_at IS NOT NULL FROM certificates c LEFT JOIN presence p USING (serial)"
        " ORDER BY c.contract_id, c.issued_at, c.serial"
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
