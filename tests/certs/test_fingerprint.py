from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives import serialization

from certs import (
    CertError,
    CertificateAuthority,
    FingerprintMismatch,
    check_fingerprint,
    fingerprint_sha256,
    normalize_fingerprint,
    parse_serial_hex,
    serial_hex,
)

HEX = "0123456789abcdef" * 4
COLONS = ":".join(HEX[i : i + 2] for i in range(0, 64, 2))


def test_fingerprint_is_sha256_of_der(ca: CertificateAuthority) -> None:
    der = ca.certificate.public_bytes(serialization.Encoding.DER)
    fp = fingerprint_sha256(ca.certificate)
    assert fp == hashlib.sha256(der).hexdigest()
    assert len(fp) == 64
    assert fp == fp.lower()
    assert ":" not in fp
    assert ca.fingerprint == fp


@pytest.mark.parametrize(
    "text",
    [
        HEX,
        HEX.upper(),
        COLONS,
        COLONS.upper(),
        "sha256:" + COLONS.upper(),
        "SHA256:" + COLONS,
        "sha256:" + HEX,
        f"  {COLONS.upper()}\n",
    ],
)
def test_normalize_accepts_common_spellings(text: str) -> None:
    assert normalize_fingerprint(text) == HEX


@pytest.mark.parametrize(
    "text",
    [
        "",
        "sha256:",
        HEX[:-1],
        HEX + "0",
        "zz" * 32,
        "sha1:" + HEX,
        COLONS[:-3],
        HEX[:3] + ":" + HEX[3:],
        COLONS.replace(":", "-"),
        COLONS + ":",
        "sha256:sha256:" + HEX,
        HEX[:32] + " " + HEX[32:],
    ],
)
def test_normalize_rejects_junk(text: str) -> None:
    with pytest.raises(FingerprintMismatch, match="not a SHA-256 fingerprint") as info:
        normalize_fingerprint(text)
    assert info.value.code == "fingerprint_mismatch"


def test_check_fingerprint(ca: CertificateAuthority, other_ca: CertificateAuthority) -> None:
    pinned = "sha256:" + ":".join(ca.fingerprint[i : i + 2] for i in range(0, 64, 2)).upper()
    check_fingerprint(ca.certificate, pinned)
    with pytest.raises(FingerprintMismatch):
        check_fingerprint(other_ca.certificate, pinned)


def test_serial_hex_round_trip(ca: CertificateAuthority) -> None:
    text = serial_hex(ca.certificate)
    assert text == format(ca.certificate.serial_number, "x")
    assert not text.startswith("0x")
    assert text == text.lower()
    assert parse_serial_hex(text) == ca.certificate.serial_number
    assert parse_serial_hex(text.upper()) == ca.certificate.serial_number


@pytest.mark.parametrize("text", ["", "0x1f", "xyz", "1" * 41, "-1"])
def test_parse_serial_hex_rejects_junk(text: str) -> None:
    with pytest.raises(CertError):
        parse_serial_hex(text)
