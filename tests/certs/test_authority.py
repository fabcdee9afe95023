"""The certificate authority itself: creation, saving and loading its files, refusing what is not a CA."""

from __future__ import annotations

import os
import stat
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from certs import (
    BACKDATE,
    CA_VALIDITY,
    CAFilesExist,
    CAKeyError,
    CertError,
    CertificateAuthority,
    build_csr,
    generate_private_key,
    private_key_to_pem,
)
from tests.certs.certificates import CN, PASSPHRASE, ext, issue


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- the CA itself --------------------------------------------------------------------------


def test_create_makes_a_proper_ca(ca: CertificateAuthority, now: datetime) -> None:
    cert = ca.certificate
    assert cert.subject == cert.issuer
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "ISP Remote Support Test CA"
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert isinstance(cert.public_key().curve, ec.SECP256R1)  # type: ignore[union-attr]
    bc = ext(cert, x509.BasicConstraints)
    assert bc.critical
    assert isinstance(bc.value, x509.BasicConstraints)
    assert bc.value.ca
    ku = ext(cert, x509.KeyUsage)
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
    assert ca.is_issued_by_me(issue(loaded, now))


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
