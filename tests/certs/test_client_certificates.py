"""Client certificates signed from an agent's CSR: contents, the strict verifier, and every CSR that
must be refused.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store

from certs import (
    CA_VALIDITY,
    CLIENT_VALIDITY,
    MAX_CSR_PEM_BYTES,
    BadCSR,
    CertError,
    CertificateAuthority,
    CSRSubjectMismatch,
    build_csr,
    generate_private_key,
    serial_hex,
)
from certs.authority import CLIENT_ORGANIZATION, client_uri
from tests.certs.certificates import CN, ext, issue, pem_of, ski

# -- client certificates --------------------------------------------------------------------


def test_client_certificate_passes_the_strict_verifier(ca: CertificateAuthority, now: datetime) -> None:
    leaf = issue(ca, now)
    verifier = PolicyBuilder().store(Store([ca.certificate])).time(now).build_client_verifier()
    verified = verifier.verify(leaf, [])
    assert verified.chain == [leaf, ca.certificate]
    assert verified.subjects == [x509.UniformResourceIdentifier(client_uri(CN))]


def test_client_certificate_fails_the_strict_verifier_for_a_foreign_ca(
    ca: CertificateAuthority, other_ca: CertificateAuthority, now: datetime
) -> None:
    verifier = PolicyBuilder().store(Store([other_ca.certificate])).time(now).build_client_verifier()
    with pytest.raises(x509.verification.VerificationError):
        verifier.verify(issue(ca, now), [])


def test_client_certificate_contents(ca: CertificateAuthority, now: datetime) -> None:
    key = generate_private_key()
    leaf = ca.sign_client_csr(build_csr(key, common_name=CN), expected_common_name=CN, now=now)
    assert leaf.subject == x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, CN),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, CLIENT_ORGANIZATION),
        ]
    )
    assert leaf.issuer == ca.certificate.subject
    assert leaf.not_valid_before_utc == now - timedelta(minutes=5)
    assert leaf.not_valid_after_utc == now + CLIENT_VALIDITY
    eku = ext(leaf, x509.ExtendedKeyUsage).value
    assert isinstance(eku, x509.ExtendedKeyUsage)
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    bc = ext(leaf, x509.BasicConstraints)
    assert bc.critical
    assert isinstance(bc.value, x509.BasicConstraints)
    assert not bc.value.ca
    ku = ext(leaf, x509.KeyUsage)
    assert ku.critical
    assert isinstance(ku.value, x509.KeyUsage)
    assert ku.value.digital_signature
    assert not ku.value.key_cert_sign
    aki = ext(leaf, x509.AuthorityKeyIdentifier).value
    assert isinstance(aki, x509.AuthorityKeyIdentifier)
    assert aki.key_identifier == ski(ca.certificate)
    assert ski(leaf) == x509.SubjectKeyIdentifier.from_public_key(key.public_key()).digest
    der = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    assert leaf.public_key().public_bytes(*der) == key.public_key().public_bytes(*der)
    assert ca.is_issued_by_me(leaf)


def test_serials_are_random_and_hex_is_the_client_id(ca: CertificateAuthority, now: datetime) -> None:
    serials = {issue(ca, now).serial_number for _ in range(5)}
    assert len(serials) == 5
    assert all(s.bit_length() > 64 for s in serials)
    cert = issue(ca, now)
    assert int(serial_hex(cert), 16) == cert.serial_number


def test_subject_and_extensions_are_not_copied_from_the_csr(ca: CertificateAuthority, now: datetime) -> None:
    key = generate_private_key()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.COMMON_NAME, CN),
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Evil Corp"),
                ]
            )
        )
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("broker.example")]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    leaf = ca.sign_client_csr(csr.public_bytes(serialization.Encoding.PEM), expected_common_name=CN, now=now)
    assert leaf.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == CLIENT_ORGANIZATION
    san = ext(leaf, x509.SubjectAlternativeName).value
    assert isinstance(san, x509.SubjectAlternativeName)
    assert list(san) == [x509.UniformResourceIdentifier(client_uri(CN))]
    eku = ext(leaf, x509.ExtendedKeyUsage).value
    assert isinstance(eku, x509.ExtendedKeyUsage)
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_ed25519_csr_is_accepted(ca: CertificateAuthority, now: datetime) -> None:
    csr = build_csr(ed25519.Ed25519PrivateKey.generate(), common_name=CN)
    leaf = ca.sign_client_csr(csr, expected_common_name=CN, now=now)
    assert isinstance(leaf.public_key(), ed25519.Ed25519PublicKey)
    assert ca.is_issued_by_me(leaf)


def test_custom_validity_and_clamp_to_ca_expiry(ca: CertificateAuthority, now: datetime) -> None:
    csr = build_csr(generate_private_key(), common_name=CN)
    short = ca.sign_client_csr(csr, expected_common_name=CN, now=now, validity=timedelta(days=30))
    assert short.not_valid_after_utc == now + timedelta(days=30)
    late = now + CA_VALIDITY - timedelta(days=10)
    clamped = ca.sign_client_csr(csr, expected_common_name=CN, now=late)
    assert clamped.not_valid_after_utc == ca.certificate.not_valid_after_utc
    with pytest.raises(CertError, match="expired"):
        ca.sign_client_csr(csr, expected_common_name=CN, now=now + CA_VALIDITY + timedelta(days=1))
    with pytest.raises(CertError, match="positive"):
        ca.sign_client_csr(csr, expected_common_name=CN, now=now, validity=timedelta(0))


def test_tampered_csr_signature(ca: CertificateAuthority, now: datetime) -> None:
    csr = x509.load_pem_x509_csr(build_csr(generate_private_key(), common_name=CN))
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01  # last byte of the ECDSA signature's s value
    with pytest.raises(BadCSR, match="signature") as info:
        ca.sign_client_csr(pem_of(bytes(der)), expected_common_name=CN, now=now)
    assert info.value.code == "bad_csr"


def test_csr_with_swapped_subject_fails_signature(ca: CertificateAuthority, now: datetime) -> None:
    """Editing the signed subject (agent-0001 → agent-0002) must not produce a usable CSR."""
    der = x509.load_pem_x509_csr(build_csr(generate_private_key(), common_name=CN)).public_bytes(
        serialization.Encoding.DER
    )
    forged = der.replace(CN.encode(), b"agent-0002")
    with pytest.raises(BadCSR, match="signature"):
        ca.sign_client_csr(pem_of(forged), expected_common_name="agent-0002", now=now)


@pytest.mark.parametrize("csr_cn", ["agent-0002", "Agent-0001", "agent-0001 ", ""])
def test_wrong_common_name(ca: CertificateAuthority, now: datetime, csr_cn: str) -> None:
    key = generate_private_key()
    names = [x509.NameAttribute(NameOID.COMMON_NAME, csr_cn)] if csr_cn else []
    names.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, "x"))
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(names)).sign(key, hashes.SHA256())
    with pytest.raises(CSRSubjectMismatch) as info:
        ca.sign_client_csr(csr.public_bytes(serialization.Encoding.PEM), expected_common_name=CN, now=now)
    assert info.value.code == "csr_subject_mismatch"


def test_two_common_names_is_a_mismatch(ca: CertificateAuthority, now: datetime) -> None:
    name = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, CN), x509.NameAttribute(NameOID.COMMON_NAME, CN)]
    )
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(name)
        .sign(generate_private_key(), hashes.SHA256())
    )
    with pytest.raises(CSRSubjectMismatch):
        ca.sign_client_csr(csr.public_bytes(serialization.Encoding.PEM), expected_common_name=CN, now=now)


def _csr_with_key(
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, algorithm: hashes.SHA224 | hashes.SHA256
) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CN)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, algorithm)
    return csr.public_bytes(serialization.Encoding.PEM)


def test_rsa_csr_is_refused(ca: CertificateAuthority, now: datetime) -> None:
    csr = _csr_with_key(rsa.generate_private_key(public_exponent=65537, key_size=2048), hashes.SHA256())
    with pytest.raises(BadCSR, match="key type"):
        ca.sign_client_csr(csr, expected_common_name=CN, now=now)


def test_other_curve_is_refused(ca: CertificateAuthority, now: datetime) -> None:
    csr = _csr_with_key(ec.generate_private_key(ec.SECP384R1()), hashes.SHA256())
    with pytest.raises(BadCSR, match="curve"):
        ca.sign_client_csr(csr, expected_common_name=CN, now=now)


def test_weak_hash_is_refused(ca: CertificateAuthority, now: datetime) -> None:
    csr = _csr_with_key(generate_private_key(), hashes.SHA224())
    with pytest.raises(BadCSR, match="hash"):
        ca.sign_client_csr(csr, expected_common_name=CN, now=now)


@pytest.mark.parametrize(
    "extension",
    [
        x509.BasicConstraints(ca=True, path_length=None),
        x509.KeyUsage(
            digital_signature=True,
            content_commitment=False,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=True,
            crl_sign=False,
            encipher_only=False,
            decipher_only=False,
        ),
    ],
)
def test_csr_asking_for_ca_powers_is_refused(
    ca: CertificateAuthority, now: datetime, extension: x509.ExtensionType
) -> None:
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CN)]))
        .add_extension(extension, critical=True)
        .sign(generate_private_key(), hashes.SHA256())
    )
    with pytest.raises(BadCSR):
        ca.sign_client_csr(csr.public_bytes(serialization.Encoding.PEM), expected_common_name=CN, now=now)


@pytest.mark.parametrize(
    "garbage",
    [
        b"",
        b"hello",
        b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
        b"-----BEGIN CERTIFICATE REQUEST-----\n!!!!\n-----END CERTIFICATE REQUEST-----\n",
    ],
)
def test_garbage_pem(ca: CertificateAuthority, now: datetime, garbage: bytes) -> None:
    with pytest.raises(BadCSR):
        ca.sign_client_csr(garbage, expected_common_name=CN, now=now)


def test_certificate_instead_of_csr(ca: CertificateAuthority, now: datetime) -> None:
    with pytest.raises(BadCSR):
        ca.sign_client_csr(ca.cert_pem, expected_common_name=CN, now=now)


def test_oversize_csr(ca: CertificateAuthority, now: datetime) -> None:
    csr = build_csr(generate_private_key(), common_name=CN)
    padded = csr + b"\n" * (MAX_CSR_PEM_BYTES - len(csr))
    assert len(padded) == MAX_CSR_PEM_BYTES
    ca.sign_client_csr(padded, expected_common_name=CN, now=now)  # exactly at the limit is fine
    with pytest.raises(BadCSR, match="larger"):
        ca.sign_client_csr(padded + b"\n", expected_common_name=CN, now=now)


def test_is_issued_by_me(ca: CertificateAuthority, other_ca: CertificateAuthority, now: datetime) -> None:
    mine, theirs = issue(ca, now), issue(other_ca, now)
    assert ca.is_issued_by_me(mine)
    assert not ca.is_issued_by_me(theirs)
    assert not other_ca.is_issued_by_me(mine)
    assert ca.is_issued_by_me(ca.certificate)  # self-signed


def test_is_issued_by_me_rejects_same_name_other_key(now: datetime) -> None:
    a = CertificateAuthority.create(common_name="Same Name", now=now)
    b = CertificateAuthority.create(common_name="Same Name", now=now)
    assert not a.is_issued_by_me(issue(b, now))
