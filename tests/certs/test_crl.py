from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from cryptography import x509

from certs import (
    BadSignature,
    CertError,
    CertificateAuthority,
    build_csr,
    check_crl_signature,
    generate_private_key,
    load_crl,
    revoked_serials,
)


def test_crl_lists_revoked_serials_and_is_signed(ca: CertificateAuthority, now: datetime) -> None:
    revoked_at = now - timedelta(hours=1)
    pem = ca.build_crl([(0x1234, revoked_at), (0xABCDEF, now)], now=now, crl_number=7)
    crl = load_crl(pem)
    assert revoked_serials(crl) == frozenset({0x1234, 0xABCDEF})
    entry = crl.get_revoked_certificate_by_serial_number(0x1234)
    assert entry is not None
    assert entry.revocation_date_utc == revoked_at
    assert crl.is_signature_valid(ca.certificate.public_key())  # type: ignore[arg-type]
    check_crl_signature(crl, ca.certificate)
    assert crl.issuer == ca.certificate.subject
    assert crl.last_update_utc == now
    assert crl.next_update_utc == now + timedelta(days=7)
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 7
    aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = ca.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest


def test_crl_of_an_issued_certificate(ca: CertificateAuthority, now: datetime) -> None:
    """Termination (第20条/第21条): the agent's serial appears in the next CRL."""
    cert = ca.sign_client_csr(
        build_csr(generate_private_key(), common_name="agent-9"), expected_common_name="agent-9", now=now
    )
    crl = load_crl(ca.build_crl([(cert.serial_number, now)], now=now, crl_number=2))
    assert cert.serial_number in revoked_serials(crl)


def test_empty_crl_and_defaults(ca: CertificateAuthority, now: datetime) -> None:
    crl = load_crl(ca.build_crl([], now=now))
    assert revoked_serials(crl) == frozenset()
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 1


def test_duplicate_serial_keeps_earliest_date(ca: CertificateAuthority, now: datetime) -> None:
    earlier = now - timedelta(days=2)
    crl = load_crl(ca.build_crl([(5, now), (5, earlier)], now=now))
    assert len(list(crl)) == 1
    entry = crl.get_revoked_certificate_by_serial_number(5)
    assert entry is not None
    assert entry.revocation_date_utc == earlier


def test_crl_from_foreign_ca_is_rejected(
    ca: CertificateAuthority, other_ca: CertificateAuthority, now: datetime
) -> None:
    crl = load_crl(other_ca.build_crl([(1, now)], now=now))
    with pytest.raises(BadSignature):
        check_crl_signature(crl, ca.certificate)


def test_naive_times_are_refused(ca: CertificateAuthority, now: datetime) -> None:
    with pytest.raises(CertError, match="timezone-aware"):
        ca.build_crl([(1, now.replace(tzinfo=None))], now=now)
    with pytest.raises(CertError, match="timezone-aware"):
        ca.build_crl([], now=now.replace(tzinfo=None))


def test_load_crl_rejects_garbage() -> None:
    with pytest.raises(CertError):
        load_crl(b"not a crl")
