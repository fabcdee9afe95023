from __future__ import annotations

from datetime import datetime

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from certs import (
    BadSignature,
    CertificateAuthority,
    build_csr,
    generate_private_key,
    sign,
    verify,
)
from certs.csr import AgentPrivateKey

RECEIPT = b"consent:session=42;scope=view;decision=allow"


def _client_cert_pem(ca: CertificateAuthority, now: datetime, key: AgentPrivateKey) -> bytes:
    csr = build_csr(key, common_name="agent-7")
    cert = ca.sign_client_csr(csr, expected_common_name="agent-7", now=now)
    return cert.public_bytes(serialization.Encoding.PEM)


def test_sign_verify_round_trip(ca: CertificateAuthority, now: datetime) -> None:
    key = generate_private_key()
    cert_pem = _client_cert_pem(ca, now, key)
    signature = sign(key, RECEIPT)
    verify(cert_pem, RECEIPT, signature)


def test_tampered_data_is_rejected(ca: CertificateAuthority, now: datetime) -> None:
    key = generate_private_key()
    cert_pem = _client_cert_pem(ca, now, key)
    signature = sign(key, RECEIPT)
    with pytest.raises(BadSignature) as info:
        verify(cert_pem, RECEIPT.replace(b"allow", b"deny!"), signature)
    assert info.value.code == "bad_signature"


def test_tampered_signature_is_rejected(ca: CertificateAuthority, now: datetime) -> None:
    key = generate_private_key()
    cert_pem = _client_cert_pem(ca, now, key)
    signature = bytearray(sign(key, RECEIPT))
    signature[-1] ^= 0x01
    with pytest.raises(BadSignature):
        verify(cert_pem, RECEIPT, bytes(signature))


@pytest.mark.parametrize("signature", [b"", b"not DER at all", b"\x30\x00"])
def test_malformed_signature_is_rejected(ca: CertificateAuthority, now: datetime, signature: bytes) -> None:
    cert_pem = _client_cert_pem(ca, now, generate_private_key())
    with pytest.raises(BadSignature):
        verify(cert_pem, RECEIPT, signature)


def test_signature_from_another_key_is_rejected(ca: CertificateAuthority, now: datetime) -> None:
    cert_pem = _client_cert_pem(ca, now, generate_private_key())
    with pytest.raises(BadSignature):
        verify(cert_pem, RECEIPT, sign(generate_private_key(), RECEIPT))


def test_unreadable_certificate_is_bad_signature() -> None:
    key = generate_private_key()
    with pytest.raises(BadSignature, match="unreadable"):
        verify(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", RECEIPT, sign(key, RECEIPT))


def test_ed25519_certificate_verifies(ca: CertificateAuthority, now: datetime) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    cert_pem = _client_cert_pem(ca, now, key)
    verify(cert_pem, RECEIPT, key.sign(RECEIPT))
    with pytest.raises(BadSignature):
        verify(cert_pem, RECEIPT + b"x", key.sign(RECEIPT))
