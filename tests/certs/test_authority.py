from __future__ import annotations

import base64
import ipaddress
import os
import socket
import ssl
import stat
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store

from certs import (
    BACKDATE,
    CA_VALIDITY,
    CLIENT_VALIDITY,
    MAX_CSR_PEM_BYTES,
    SERVER_VALIDITY,
    BadCSR,
    CAFilesExist,
    CAKeyError,
    CertError,
    CertificateAuthority,
    CSRSubjectMismatch,
    build_csr,
    generate_private_key,
    private_key_to_pem,
    serial_hex,
    write_public_file,
    write_secret_file,
)
from certs.authority import CLIENT_ORGANIZATION, client_uri

PASSPHRASE = b"correct horse battery staple"
CN = "agent-0001"


def _ext(cert: x509.Certificate, kind: type[x509.ExtensionType]) -> x509.Extension[x509.ExtensionType]:
    return cert.extensions.get_extension_for_class(kind)


def _ski(cert: x509.Certificate) -> bytes:
    return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest


def _issue(ca: CertificateAuthority, now: datetime, cn: str = CN) -> x509.Certificate:
    return ca.sign_client_csr(
        build_csr(generate_private_key(), common_name=cn), expected_common_name=cn, now=now
    )


def _pem(der: bytes, label: str = "CERTIFICATE REQUEST") -> bytes:
    body = base64.encodebytes(der).decode("ascii")
    return f"-----BEGIN {label}-----\n{body}-----END {label}-----\n".encode()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- the CA itself --------------------------------------------------------------------------


def test_create_makes_a_proper_ca(ca: CertificateAuthority, now: datetime) -> None:
    cert = ca.certificate
    assert cert.subject == cert.issuer
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "ISP Remote Support Test CA"
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert isinstance(cert.public_key().curve, ec.SECP256R1)  # type: ignore[union-attr]
    bc = _ext(cert, x509.BasicConstraints)
    assert bc.critical
    assert isinstance(bc.value, x509.BasicConstraints)
    assert bc.value.ca
    ku = _ext(cert, x509.KeyUsage)
    assert ku.critical
    assert isinstance(ku.value, x509.KeyUsage)
    assert ku.value.key_cert_sign
    assert ku.value.crl_sign
    assert not ku.value.digital_signature
    assert cert.not_valid_before_utc == now - BACKDATE
    assert cert.not_valid_after_utc == now + CA_VALIDITY
    cert.verify_directly_issued_by(cert)
    assert ca.cert_pem == cert.public_bytes(serialization.Encoding.PEM)


def test_naive_now_is_refused() -> None:
    with pytest.raises(CertError, match="timezone-aware"):
        CertificateAuthority.create(common_name="CA", now=datetime(2025, 1, 1))


def test_non_utc_now_is_converted(now: datetime) -> None:
    tokyo = now.astimezone(ZoneInfo("Asia/Tokyo"))
    ca = CertificateAuthority.create(common_name="CA", now=tokyo)
    assert ca.certificate.not_valid_before_utc == now - BACKDATE


def test_save_load_round_trip(ca: CertificateAuthority, tmp_path: Path, now: datetime) -> None:
    ca.save(tmp_path, passphrase=PASSPHRASE)
    cert_pem = (tmp_path / "ca.pem").read_bytes()
    key_pem = (tmp_path / "ca-key.pem").read_bytes()
    assert cert_pem == ca.cert_pem
    assert key_pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    loaded = CertificateAuthority.load(cert_pem=cert_pem, key_pem=key_pem, passphrase=PASSPHRASE)
    assert loaded.fingerprint == ca.fingerprint
    # The loaded key really is the CA key: what it issues chains to the original certificate.
    assert ca.is_issued_by_me(_issue(loaded, now))


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_save_file_modes(ca: CertificateAuthority, tmp_path: Path) -> None:
    ca.save(tmp_path, passphrase=PASSPHRASE)
    assert _mode(tmp_path / "ca-key.pem") == 0o600
    assert _mode(tmp_path / "ca.pem") == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ca-key.pem", "ca.pem"]


def test_save_creates_directory(ca: CertificateAuthority, tmp_path: Path) -> None:
    directory = tmp_path / "broker" / "ca"
    ca.save(directory, passphrase=PASSPHRASE)
    assert (directory / "ca.pem").exists()
    if os.name == "posix":
        assert _mode(directory) == 0o700


@pytest.mark.parametrize("existing", ["ca.pem", "ca-key.pem"])
def test_save_refuses_to_overwrite(
    ca: CertificateAuthority, other_ca: CertificateAuthority, tmp_path: Path, existing: str
) -> None:
    other_ca.save(tmp_path, passphrase=PASSPHRASE)
    (tmp_path / ("ca-key.pem" if existing == "ca.pem" else "ca.pem")).unlink()
    before = (tmp_path / existing).read_bytes()
    with pytest.raises(CAFilesExist) as info:
        ca.save(tmp_path, passphrase=PASSPHRASE)
    assert info.value.code == "ca_files_exist"
    assert (tmp_path / existing).read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [existing]


def test_save_refuses_empty_passphrase(ca: CertificateAuthority, tmp_path: Path) -> None:
    with pytest.raises(CAKeyError):
        ca.save(tmp_path, passphrase=b"")
    assert list(tmp_path.iterdir()) == []


def test_wrong_passphrase(ca: CertificateAuthority, tmp_path: Path) -> None:
    ca.save(tmp_path, passphrase=PASSPHRASE)
    with pytest.raises(CAKeyError, match="passphrase") as info:
        CertificateAuthority.load(
            cert_pem=(tmp_path / "ca.pem").read_bytes(),
            key_pem=(tmp_path / "ca-key.pem").read_bytes(),
            passphrase=b"wrong",
        )
    assert info.value.code == "ca_key_error"


def test_load_refuses_mismatched_key(
    ca: CertificateAuthority, other_ca: CertificateAuthority, tmp_path: Path
) -> None:
    ca.save(tmp_path / "a", passphrase=PASSPHRASE)
    other_ca.save(tmp_path / "b", passphrase=PASSPHRASE)
    with pytest.raises(CAKeyError, match="does not match"):
        CertificateAuthority.load(
            cert_pem=(tmp_path / "a" / "ca.pem").read_bytes(),
            key_pem=(tmp_path / "b" / "ca-key.pem").read_bytes(),
            passphrase=PASSPHRASE,
        )


def test_load_refuses_unencrypted_key(ca: CertificateAuthority, tmp_path: Path) -> None:
    ca.save(tmp_path, passphrase=PASSPHRASE)
    key = serialization.load_pem_private_key((tmp_path / "ca-key.pem").read_bytes(), password=PASSPHRASE)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    with pytest.raises(CAKeyError, match="not encrypted"):
        CertificateAuthority.load(
            cert_pem=ca.cert_pem, key_pem=private_key_to_pem(key), passphrase=PASSPHRASE
        )


@pytest.mark.parametrize(
    ("cert_pem", "key_pem"),
    [
        (b"garbage", None),
        (None, b"garbage"),
        (None, b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"),
    ],
)
def test_load_refuses_corrupt_files(
    ca: CertificateAuthority, tmp_path: Path, cert_pem: bytes | None, key_pem: bytes | None
) -> None:
    ca.save(tmp_path, passphrase=PASSPHRASE)
    with pytest.raises(CAKeyError):
        CertificateAuthority.load(
            cert_pem=cert_pem or (tmp_path / "ca.pem").read_bytes(),
            key_pem=key_pem or (tmp_path / "ca-key.pem").read_bytes(),
            passphrase=PASSPHRASE,
        )


def test_load_refuses_a_leaf_certificate(ca: CertificateAuthority, now: datetime) -> None:
    key = generate_private_key()
    leaf = ca.sign_client_csr(build_csr(key, common_name=CN), expected_common_name=CN, now=now)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(PASSPHRASE),
    )
    with pytest.raises(CAKeyError, match="not a CA"):
        CertificateAuthority.load(
            cert_pem=leaf.public_bytes(serialization.Encoding.PEM), key_pem=key_pem, passphrase=PASSPHRASE
        )


def test_load_or_create(tmp_path: Path, now: datetime) -> None:
    directory = tmp_path / "ca"
    first = CertificateAuthority.load_or_create(directory, passphrase=PASSPHRASE, common_name="CA", now=now)
    assert (directory / "ca.pem").exists()
    assert (directory / "ca-key.pem").exists()
    later = now + timedelta(days=30)
    second = CertificateAuthority.load_or_create(
        directory, passphrase=PASSPHRASE, common_name="CA", now=later
    )
    assert second.fingerprint == first.fingerprint
    with pytest.raises(CAKeyError):
        CertificateAuthority.load_or_create(directory, passphrase=b"wrong", common_name="CA", now=now)


@pytest.mark.parametrize("missing", ["ca.pem", "ca-key.pem"])
def test_load_or_create_refuses_half_a_ca(tmp_path: Path, now: datetime, missing: str) -> None:
    CertificateAuthority.load_or_create(tmp_path, passphrase=PASSPHRASE, common_name="CA", now=now)
    (tmp_path / missing).unlink()
    with pytest.raises(CAKeyError, match="incomplete"):
        CertificateAuthority.load_or_create(tmp_path, passphrase=PASSPHRASE, common_name="CA", now=now)
    assert not (tmp_path / missing).exists()


# -- client certificates --------------------------------------------------------------------


def test_client_certificate_passes_the_strict_verifier(ca: CertificateAuthority, now: datetime) -> None:
    leaf = _issue(ca, now)
    verifier = PolicyBuilder().store(Store([ca.certificate])).time(now).build_client_verifier()
    verified = verifier.verify(leaf, [])
    assert verified.chain == [leaf, ca.certificate]
    assert verified.subjects == [x509.UniformResourceIdentifier(client_uri(CN))]


def test_client_certificate_fails_the_strict_verifier_for_a_foreign_ca(
    ca: CertificateAuthority, other_ca: CertificateAuthority, now: datetime
) -> None:
    verifier = PolicyBuilder().store(Store([other_ca.certificate])).time(now).build_client_verifier()
    with pytest.raises(x509.verification.VerificationError):
        verifier.verify(_issue(ca, now), [])


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
    eku = _ext(leaf, x509.ExtendedKeyUsage).value
    assert isinstance(eku, x509.ExtendedKeyUsage)
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    bc = _ext(leaf, x509.BasicConstraints)
    assert bc.critical
    assert isinstance(bc.value, x509.BasicConstraints)
    assert not bc.value.ca
    ku = _ext(leaf, x509.KeyUsage)
    assert ku.critical
    assert isinstance(ku.value, x509.KeyUsage)
    assert ku.value.digital_signature
    assert not ku.value.key_cert_sign
    aki = _ext(leaf, x509.AuthorityKeyIdentifier).value
    assert isinstance(aki, x509.AuthorityKeyIdentifier)
    assert aki.key_identifier == _ski(ca.certificate)
    assert _ski(leaf) == x509.SubjectKeyIdentifier.from_public_key(key.public_key()).digest
    der = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    assert leaf.public_key().public_bytes(*der) == key.public_key().public_bytes(*der)
    assert ca.is_issued_by_me(leaf)


def test_serials_are_random_and_hex_is_the_client_id(ca: CertificateAuthority, now: datetime) -> None:
    serials = {_issue(ca, now).serial_number for _ in range(5)}
    assert len(serials) == 5
    assert all(s.bit_length() > 64 for s in serials)
    cert = _issue(ca, now)
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
    san = _ext(leaf, x509.SubjectAlternativeName).value
    assert isinstance(san, x509.SubjectAlternativeName)
    assert list(san) == [x509.UniformResourceIdentifier(client_uri(CN))]
    eku = _ext(leaf, x509.ExtendedKeyUsage).value
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
        ca.sign_client_csr(_pem(bytes(der)), expected_common_name=CN, now=now)
    assert info.value.code == "bad_csr"


def test_csr_with_swapped_subject_fails_signature(ca: CertificateAuthority, now: datetime) -> None:
    """Editing the signed subject (agent-0001 → agent-0002) must not produce a usable CSR."""
    der = x509.load_pem_x509_csr(build_csr(generate_private_key(), common_name=CN)).public_bytes(
        serialization.Encoding.DER
    )
    forged = der.replace(CN.encode(), b"agent-0002")
    with pytest.raises(BadCSR, match="signature"):
        ca.sign_client_csr(_pem(forged), expected_common_name="agent-0002", now=now)


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
    mine, theirs = _issue(ca, now), _issue(other_ca, now)
    assert ca.is_issued_by_me(mine)
    assert not ca.is_issued_by_me(theirs)
    assert not other_ca.is_issued_by_me(mine)
    assert ca.is_issued_by_me(ca.certificate)  # self-signed


def test_is_issued_by_me_rejects_same_name_other_key(now: datetime) -> None:
    a = CertificateAuthority.create(common_name="Same Name", now=now)
    b = CertificateAuthority.create(common_name="Same Name", now=now)
    assert not a.is_issued_by_me(_issue(b, now))


# -- server certificates --------------------------------------------------------------------


def test_server_certificate_contents(ca: CertificateAuthority, now: datetime) -> None:
    cert_pem, key_pem = ca.issue_server_certificate(["localhost", "127.0.0.1", "::1"], now=now)
    cert = x509.load_pem_x509_certificate(cert_pem)
    san = _ext(cert, x509.SubjectAlternativeName).value
    assert isinstance(san, x509.SubjectAlternativeName)
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "localhost"
    eku = _ext(cert, x509.ExtendedKeyUsage).value
    assert isinstance(eku, x509.ExtendedKeyUsage)
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    aki = _ext(cert, x509.AuthorityKeyIdentifier).value
    assert isinstance(aki, x509.AuthorityKeyIdentifier)
    assert aki.key_identifier == _ski(ca.certificate)
    assert cert.not_valid_before_utc == now - BACKDATE
    assert cert.not_valid_after_utc == now + SERVER_VALIDITY
    assert key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    key = serialization.load_pem_private_key(key_pem, password=None)
    der = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    assert key.public_key().public_bytes(*der) == cert.public_key().public_bytes(*der)
    verifier = (
        PolicyBuilder()
        .store(Store([ca.certificate]))
        .time(now)
        .build_server_verifier(x509.DNSName("localhost"))
    )
    verifier.verify(cert, [])


@pytest.mark.parametrize("hostnames", [[], "localhost", ["bad..name"]])
def test_server_certificate_rejects_bad_hostnames(
    ca: CertificateAuthority, now: datetime, hostnames: list[str] | str
) -> None:
    with pytest.raises(CertError):
        ca.issue_server_certificate(hostnames, now=now)


def _tls_handshake(
    server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, server_hostname: str
) -> BaseException | None:
    """Real TLS over a socketpair; returns the client's exception, or None if a byte round-tripped."""
    server_sock, client_sock = socket.socketpair()
    server_sock.settimeout(10)
    client_sock.settimeout(10)

    def serve() -> None:
        try:
            with server_ctx.wrap_socket(server_sock, server_side=True) as tls:
                tls.sendall(tls.recv(1))
        except (OSError, ssl.SSLError):
            pass  # the client's side of the story is what the test checks

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with client_ctx.wrap_socket(client_sock, server_hostname=server_hostname) as tls:
            tls.sendall(b"!")
            assert tls.recv(1) == b"!"
    except (OSError, ssl.SSLError) as exc:
        return exc
    finally:
        client_sock.close()
        thread.join(10)
        server_sock.close()
    return None


def _contexts(
    ca: CertificateAuthority, trusted: CertificateAuthority, tmp_path: Path
) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    now = datetime.now(UTC)  # OpenSSL checks validity against the real clock
    cert_pem, key_pem = ca.issue_server_certificate(["localhost", "127.0.0.1", "::1"], now=now)
    write_public_file(tmp_path / "server.pem", cert_pem)
    write_secret_file(tmp_path / "server-key.pem", key_pem)
    write_public_file(tmp_path / "trusted-ca.pem", trusted.cert_pem)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(tmp_path / "server.pem", tmp_path / "server-key.pem")
    client_ctx = ssl.create_default_context(cafile=tmp_path / "trusted-ca.pem")
    client_ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    return server_ctx, client_ctx


@pytest.mark.parametrize("server_hostname", ["localhost", "127.0.0.1"])
def test_server_certificate_works_with_python_ssl(tmp_path: Path, server_hostname: str) -> None:
    ca = CertificateAuthority.create(common_name="Live CA", now=datetime.now(UTC))
    server_ctx, client_ctx = _contexts(ca, ca, tmp_path)
    assert _tls_handshake(server_ctx, client_ctx, server_hostname) is None


def test_server_certificate_fails_for_a_foreign_ca(tmp_path: Path) -> None:
    live = datetime.now(UTC)
    ca = CertificateAuthority.create(common_name="Live CA", now=live)
    foreign = CertificateAuthority.create(common_name="Foreign CA", now=live)
    server_ctx, client_ctx = _contexts(ca, foreign, tmp_path)
    error = _tls_handshake(server_ctx, client_ctx, "localhost")
    assert isinstance(error, ssl.SSLCertVerificationError)


def test_server_certificate_fails_for_another_hostname(tmp_path: Path) -> None:
    ca = CertificateAuthority.create(common_name="Live CA", now=datetime.now(UTC))
    server_ctx, client_ctx = _contexts(ca, ca, tmp_path)
    error = _tls_handshake(server_ctx, client_ctx, "broker.example")
    assert isinstance(error, ssl.SSLCertVerificationError)


def test_client_certificate_works_for_mutual_tls(tmp_path: Path) -> None:
    """The broker will demand the agent's certificate; OpenSSL must accept what we issue (clientAuth)."""
    live = datetime.now(UTC)
    ca = CertificateAuthority.create(common_name="Live CA", now=live)
    server_ctx, client_ctx = _contexts(ca, ca, tmp_path)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    server_ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    server_ctx.load_verify_locations(tmp_path / "trusted-ca.pem")
    key = generate_private_key()
    leaf = ca.sign_client_csr(build_csr(key, common_name=CN), expected_common_name=CN, now=live)
    write_public_file(tmp_path / "agent.pem", leaf.public_bytes(serialization.Encoding.PEM))
    write_secret_file(tmp_path / "agent-key.pem", private_key_to_pem(key))
    client_ctx.load_cert_chain(tmp_path / "agent.pem", tmp_path / "agent-key.pem")
    assert _tls_handshake(server_ctx, client_ctx, "localhost") is None


def test_mutual_tls_refuses_a_client_certificate_from_a_foreign_ca(tmp_path: Path) -> None:
    live = datetime.now(UTC)
    ca = CertificateAuthority.create(common_name="Live CA", now=live)
    foreign = CertificateAuthority.create(common_name="Foreign CA", now=live)
    server_ctx, client_ctx = _contexts(ca, ca, tmp_path)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    server_ctx.load_verify_locations(tmp_path / "trusted-ca.pem")
    key = generate_private_key()
    leaf = foreign.sign_client_csr(build_csr(key, common_name=CN), expected_common_name=CN, now=live)
    write_public_file(tmp_path / "agent.pem", leaf.public_bytes(serialization.Encoding.PEM))
    write_secret_file(tmp_path / "agent-key.pem", private_key_to_pem(key))
    client_ctx.load_cert_chain(tmp_path / "agent.pem", tmp_path / "agent-key.pem")
    assert _tls_handshake(server_ctx, client_ctx, "localhost") is not None
