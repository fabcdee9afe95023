"""Enrollment end to end with a real CA and real CSRs: token + CSR → certificate, and every refusal."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from broker.enrollment import enroll, issue_token, new_token, token_hash
from broker.errors import RefusedError
from broker.storage import Storage
from broker.store import SubscriberStatus
from certs import CertificateAuthority, build_csr, generate_private_key, serial_hex
from protocol.codec import decode, encode
from protocol.errors import ErrorCode
from protocol.messages import Enroll, Enrolled

NOW_DT = datetime(2025, 4, 1, 9, 30, tzinfo=UTC)
NOW = NOW_DT.timestamp()
HOUR = 3600.0
CONTRACT = "C-0001"


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create(common_name="ISP Remote Support Test CA", now=NOW_DT)


@pytest.fixture
async def store(storage: Storage) -> Storage:
    """The broker's storage (tests/broker/conftest.py) with the subscriber's contract."""
    await storage.subscribers.add(CONTRACT, now=NOW - HOUR, actor="admin")
    return storage


@pytest.fixture
async def token(store: Storage) -> str:
    return await issue_token(store, CONTRACT, now=NOW - 60, ttl=HOUR, actor="admin")


def _request(
    token: str, *, contract_id: str = CONTRACT, cn: str | None = None, csr: str | None = None
) -> Enroll:
    csr_pem = (
        csr if csr is not None else build_csr(generate_private_key(), common_name=cn or contract_id).decode()
    )
    return Enroll(id="e1", contract_id=contract_id, token=token, csr_pem=csr_pem, machine_name="山田のPC")


async def _refused(store: Storage, ca: CertificateAuthority, request: Enroll, now: float = NOW) -> ErrorCode:
    with pytest.raises(RefusedError) as info:
        await enroll(store, ca, request, now=now)
    return info.value.code


async def _unused(store: Storage, token: str) -> bool:
    record = await store.subscribers.get_enrollment_token(token_hash(token))
    assert record is not None
    return record.used_at is None


# -- tokens -----------------------------------------------------------------------------------------


def test_new_tokens_fit_the_wire_type_and_differ() -> None:
    tokens = {new_token() for _ in range(20)}
    assert len(tokens) == 20
    for t in tokens:
        assert len(t) == 43
        request = Enroll(id="e", contract_id="C", token=t, csr_pem="x", machine_name="m")
        assert decode(encode(request)) == request  # the wire validates the token's pattern


async def test_only_the_hash_of_a_token_is_stored(store: Storage, token: str, db_path: Path) -> None:
    assert token_hash(token) != token
    assert len(token_hash(token)) == 64
    record = await store.subscribers.get_enrollment_token(token_hash(token))
    assert record is not None
    assert record.contract_id == CONTRACT
    assert record.expires_at == NOW - 60 + HOUR
    assert await store.subscribers.get_enrollment_token(token) is None
    db_bytes = b"".join(p.read_bytes() for p in db_path.parent.iterdir() if p.is_file())
    assert token.encode() not in db_bytes


# -- happy path -------------------------------------------------------------------------------------


async def test_enroll_issues_a_certificate_and_records_it(
    store: Storage, ca: CertificateAuthority, token: str
) -> None:
    key = generate_private_key()
    request = _request(token, csr=build_csr(key, common_name=CONTRACT).decode())
    answer = await enroll(store, ca, request, now=NOW)

    assert isinstance(answer, Enrolled)
    assert answer.id == "e1"
    assert decode(encode(answer)) == answer  # passes the wire's own validation (serial pattern …)
    cert = x509.load_pem_x509_certificate(answer.certificate_pem.encode())
    assert serial_hex(cert) == answer.serial
    assert answer.serial == format(cert.serial_number, "x")
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == CONTRACT
    assert cert.public_key() == key.public_key()
    assert cert.issuer == ca.certificate.subject
    assert answer.ca_pem.encode() == ca.cert_pem
    assert answer.not_after == cert.not_valid_after_utc.timestamp()
    assert ca.is_issued_by_me(cert)

    stored = await store.certificates.get(answer.serial)
    assert stored is not None
    assert stored.contract_id == CONTRACT
    assert stored.machine_name == "山田のPC"
    assert stored.cert_pem == answer.certificate_pem
    assert stored.issued_at == NOW
    assert stored.revoked_at is None
    assert not await _unused(store, token)
    last = (await store.audit.entries())[-1]
    assert (last.action, last.subject, last.details["serial"]) == ("agent.enroll", CONTRACT, answer.serial)
    assert (await store.audit.verify()).ok


async def test_token_cannot_be_reused(store: Storage, ca: CertificateAuthority, token: str) -> None:
    await enroll(store, ca, _request(token), now=NOW)
    assert await _refused(store, ca, _request(token), now=NOW + 1) is ErrorCode.TOKEN_USED
    assert len(await store.certificates.list_all(CONTRACT)) == 1


# -- refusals ---------------------------------------------------------------------------------------


async def test_wrong_contract_for_the_token(store: Storage, ca: CertificateAuthority, token: str) -> None:
    await store.subscribers.add("C-0002", now=NOW, actor="admin")
    assert await _refused(store, ca, _request(token, contract_id="C-0002")) is ErrorCode.TOKEN_UNKNOWN
    assert await _unused(store, token)
    assert await store.certificates.list_all() == []


async def test_unknown_token(store: Storage, ca: CertificateAuthority, token: str) -> None:
    assert await _refused(store, ca, _request(new_token())) is ErrorCode.TOKEN_UNKNOWN
    assert await store.certificates.list_all() == []


async def test_csr_for_another_name_is_refused_and_token_kept(
    store: Storage, ca: CertificateAuthority, token: str
) -> None:
    audit_before = await store.audit.entries()
    assert await _refused(store, ca, _request(token, cn="C-9999")) is ErrorCode.CSR_SUBJECT_MISMATCH
    assert await _unused(store, token)
    assert await store.certificates.list_all() == []
    assert await store.audit.entries() == audit_before
    # The subscriber can retry with a correct CSR.
    assert isinstance(await enroll(store, ca, _request(token), now=NOW), Enrolled)


@pytest.mark.parametrize(
    "csr",
    [
        "garbage",
        "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
        "x" * 15_000,
    ],
    ids=["text", "bad-der", "huge"],
)
async def test_garbage_csr_is_refused_and_token_kept(
    store: Storage, ca: CertificateAuthority, token: str, csr: str
) -> None:
    assert await _refused(store, ca, _request(token, csr=csr)) is ErrorCode.BAD_CSR
    assert await _unused(store, token)
    assert await store.certificates.list_all() == []


async def test_expired_token(store: Storage, ca: CertificateAuthority, token: str) -> None:
    expires_at = NOW - 60 + HOUR
    assert await _refused(store, ca, _request(token), now=expires_at) is ErrorCode.TOKEN_EXPIRED
    assert await _unused(store, token)
    assert isinstance(await enroll(store, ca, _request(token), now=expires_at - 1), Enrolled)


async def test_terminated_subscribers_token_is_refused(
    store: Storage, ca: CertificateAuthority, token: str
) -> None:
    await store.subscribers.set_status(CONTRACT, SubscriberStatus.TERMINATED, now=NOW - 1, actor="admin")
    code = await _refused(store, ca, _request(token))
    # Termination burns unused tokens (so "used"); either way the agent gets no certificate.
    assert code in {ErrorCode.TOKEN_USED, ErrorCode.SUBSCRIBER_TERMINATED}
    assert await store.certificates.list_all() == []
