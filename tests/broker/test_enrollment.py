"""Enrollment end to end with a real CA and real CSRs: token + CSR → certificate, and every refusal."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from broker.enrollment import enroll, issue_token, new_token, token_hash
from broker.errors import RefusedError
from broker.sqlite_store import SQLiteStore
from broker.storage import Storage, keyed_chain, open_storage
from broker.store import SubscriberStatus
from certs import CertificateAuthority, build_csr, generate_private_key, serial_hex
from protocol.codec import decode, encode
from protocol.errors import ErrorCode
from protocol.messages import Enroll, Enrolled

T = TypeVar("T")

NOW_DT = datetime(2025, 4, 1, 9, 30, tzinfo=UTC)
NOW = NOW_DT.timestamp()
HOUR = 3600.0
CONTRACT = "C-0001"


def _on_storage(store: SQLiteStore, use: Callable[[Storage], Awaitable[T]]) -> T:
    """Run the broker's async enrollment over ``broker.storage`` on the same file and audit key;
    ``store`` (the old SQLiteStore) sets up and inspects."""

    async def run() -> T:
        storage = await open_storage(store.path, chain=keyed_chain(store.audit_key.chain))
        try:
            return await use(storage)
        finally:
            await storage.close()

    return asyncio.run(run())


def run_enroll(store: SQLiteStore, ca: CertificateAuthority, request: Enroll, *, now: float) -> Enrolled:
    return _on_storage(store, lambda storage: enroll(storage, ca, request, now=now))


def run_issue(store: SQLiteStore, contract_id: str, *, now: float, ttl: float, actor: str) -> str:
    return _on_storage(
        store, lambda storage: issue_token(storage, contract_id, now=now, ttl=ttl, actor=actor)
    )


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create(common_name="ISP Remote Support Test CA", now=NOW_DT)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    s = SQLiteStore(tmp_path / "broker.sqlite3")
    s.add_subscriber(CONTRACT, now=NOW - HOUR, actor="admin")
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def token(store: SQLiteStore) -> str:
    return run_issue(store, CONTRACT, now=NOW - 60, ttl=HOUR, actor="admin")


def _request(
    token: str, *, contract_id: str = CONTRACT, cn: str | None = None, csr: str | None = None
) -> Enroll:
    csr_pem = (
        csr if csr is not None else build_csr(generate_private_key(), common_name=cn or contract_id).decode()
    )
    return Enroll(id="e1", contract_id=contract_id, token=token, csr_pem=csr_pem, machine_name="山田のPC")


def _refused(store: SQLiteStore, ca: CertificateAuthority, request: Enroll, now: float = NOW) -> ErrorCode:
    with pytest.raises(RefusedError) as info:
        run_enroll(store, ca, request, now=now)
    return info.value.code


def _unused(store: SQLiteStore, token: str) -> bool:
    record = store.get_enrollment_token(token_hash(token))
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


def test_only_the_hash_of_a_token_is_stored(store: SQLiteStore, token: str) -> None:
    assert token_hash(token) != token
    assert len(token_hash(token)) == 64
    record = store.get_enrollment_token(token_hash(token))
    assert record is not None
    assert record.contract_id == CONTRACT
    assert record.expires_at == NOW - 60 + HOUR
    assert store.get_enrollment_token(token) is None
    db_bytes = b"".join(p.read_bytes() for p in store.path.parent.iterdir() if p.is_file())
    assert token.encode() not in db_bytes


# -- happy path -------------------------------------------------------------------------------------


def test_enroll_issues_a_certificate_and_records_it(
    store: SQLiteStore, ca: CertificateAuthority, token: str
) -> None:
    key = generate_private_key()
    request = _request(token, csr=build_csr(key, common_name=CONTRACT).decode())
    answer = run_enroll(store, ca, request, now=NOW)

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

    stored = store.get_certificate(answer.serial)
    assert stored is not None
    assert stored.contract_id == CONTRACT
    assert stored.machine_name == "山田のPC"
    assert stored.cert_pem == answer.certificate_pem
    assert stored.issued_at == NOW
    assert stored.revoked_at is None
    assert not _unused(store, token)
    last = list(store.audit_entries())[-1]
    assert (last.action, last.subject, last.details["serial"]) == ("agent.enroll", CONTRACT, answer.serial)
    assert store.verify_audit().ok


def test_token_cannot_be_reused(store: SQLiteStore, ca: CertificateAuthority, token: str) -> None:
    run_enroll(store, ca, _request(token), now=NOW)
    assert _refused(store, ca, _request(token), now=NOW + 1) is ErrorCode.TOKEN_USED
    assert len(store.list_certificates(CONTRACT)) == 1


# -- refusals ---------------------------------------------------------------------------------------


def test_wrong_contract_for_the_token(store: SQLiteStore, ca: CertificateAuthority, token: str) -> None:
    store.add_subscriber("C-0002", now=NOW, actor="admin")
    assert _refused(store, ca, _request(token, contract_id="C-0002")) is ErrorCode.TOKEN_UNKNOWN
    assert _unused(store, token)
    assert store.list_certificates() == []


def test_unknown_token(store: SQLiteStore, ca: CertificateAuthority, token: str) -> None:
    assert _refused(store, ca, _request(new_token())) is ErrorCode.TOKEN_UNKNOWN
    assert store.list_certificates() == []


def test_csr_for_another_name_is_refused_and_token_kept(
    store: SQLiteStore, ca: CertificateAuthority, token: str
) -> None:
    audit_before = list(store.audit_entries())
    assert _refused(store, ca, _request(token, cn="C-9999")) is ErrorCode.CSR_SUBJECT_MISMATCH
    assert _unused(store, token)
    assert store.list_certificates() == []
    assert list(store.audit_entries()) == audit_before
    # The subscriber can retry with a correct CSR.
    assert isinstance(run_enroll(store, ca, _request(token), now=NOW), Enrolled)


@pytest.mark.parametrize(
    "csr",
    [
        "garbage",
        "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
        "x" * 15_000,
    ],
    ids=["text", "bad-der", "huge"],
)
def test_garbage_csr_is_refused_and_token_kept(
    store: SQLiteStore, ca: CertificateAuthority, token: str, csr: str
) -> None:
    assert _refused(store, ca, _request(token, csr=csr)) is ErrorCode.BAD_CSR
    assert _unused(store, token)
    assert store.list_certificates() == []


def test_expired_token(store: SQLiteStore, ca: CertificateAuthority, token: str) -> None:
    expires_at = NOW - 60 + HOUR
    assert _refused(store, ca, _request(token), now=expires_at) is ErrorCode.TOKEN_EXPIRED
    assert _unused(store, token)
    assert isinstance(run_enroll(store, ca, _request(token), now=expires_at - 1), Enrolled)


def test_terminated_subscribers_token_is_refused(
    store: SQLiteStore, ca: CertificateAuthority, token: str
) -> None:
    store.set_subscriber_status(CONTRACT, SubscriberStatus.TERMINATED, now=NOW - 1, actor="admin")
    code = _refused(store, ca, _request(token))
    # Termination burns unused tokens (so "used"); either way the agent gets no certificate.
    assert code in {ErrorCode.TOKEN_USED, ErrorCode.SUBSCRIBER_TERMINATED}
    assert store.list_certificates() == []
