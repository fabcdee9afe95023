"""Enrollment: a one-time token and a CSR become a client certificate (第31条1項④).

The token is never stored, only its SHA-256; the CSR's key is the agent's own (the private key
never leaves the subscriber's PC); the CSR's CN must be the contract the token was issued for.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime

from cryptography.hazmat.primitives import serialization

from certs import CertError, CertificateAuthority, serial_hex
from protocol.errors import ErrorCode
from protocol.messages import Enroll, Enrolled

from .errors import RefusedError
from .storage import Storage, check_token, is_storage_failure
from .store import CertificateRecord, StorageUnavailable

log = logging.getLogger("broker.enrollment")

TOKEN_BYTES = 32


@contextlib.contextmanager
def storage_guard() -> Iterator[None]:
    """Turn a storage failure (SQLite's disk full, read-only database, I/O error, lock timeout; an
    ``OSError``) into :class:`StorageUnavailable`: the agent is told that the broker could not
    store its enrollment, not that the broker is unreachable (issue 12, item 10)."""
    try:
        yield
    except Exception as exc:
        if not is_storage_failure(exc):
            raise
        log.error("enrollment not stored: storage failed: %s", exc)
        raise StorageUnavailable(
            "the broker could not store the enrollment (a storage failure on the server); "
            "nothing was stored, try again later"
        ) from exc


def new_token() -> str:
    """43 URL-safe characters, 256 bits: guessing one is not a threat worth a lockout."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


async def issue_token(storage: Storage, contract_id: str, *, now: float, ttl: float, actor: str) -> str:
    token = new_token()
    await storage.subscribers.add_enrollment_token(
        contract_id, token_hash(token), now=now, expires_at=now + ttl, actor=actor
    )
    return token


async def enroll(storage: Storage, ca: CertificateAuthority, request: Enroll, *, now: float) -> Enrolled:
    """Check the token, sign the CSR, record both atomically; raise ``RefusedError`` with a code,
    or :class:`StorageUnavailable` when the store fails (nothing is then stored)."""
    digest = token_hash(request.token)
    with storage_guard():
        token = await storage.subscribers.get_enrollment_token(digest)
        subscriber = await storage.subscribers.get(token.contract_id) if token else None
    # Checked before signing, and again inside the store's transaction (a concurrent reuse loses).
    check_token(token, subscriber.status if subscriber else None, contract_id=request.contract_id, now=now)
    try:
        cert = await asyncio.to_thread(  # ECDSA signing: off the event loop
            ca.sign_client_csr,
            request.csr_pem.encode("utf-8"),
            expected_common_name=request.contract_id,
            now=datetime.fromtimestamp(now, UTC),
        )
    except CertError as exc:
        code = ErrorCode.CSR_SUBJECT_MISMATCH if exc.code == "csr_subject_mismatch" else ErrorCode.BAD_CSR
        raise RefusedError(str(exc), code=code) from None
    serial = serial_hex(cert)
    not_after = cert.not_valid_after_utc.timestamp()
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode("ascii")
    with storage_guard():
        await storage.subscribers.complete_enrollment(
            digest,
            CertificateRecord(
                serial=serial,
                contract_id=request.contract_id,
                machine_name=request.machine_name,
                cert_pem=cert_pem,
                issued_at=now,
                not_after=not_after,
            ),
            now=now,
        )
    return Enrolled(
        id=request.id,
        certificate_pem=cert_pem,
        ca_pem=ca.cert_pem.decode("ascii"),
        serial=serial,
        not_after=not_after,
    )
