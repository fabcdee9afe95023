from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from certs import BadKey, CertError, build_csr, generate_private_key, load_private_key, private_key_to_pem


def test_generate_private_key_is_p256() -> None:
    key = generate_private_key()
    assert isinstance(key.curve, ec.SECP256R1)


def test_build_csr_has_only_the_common_name() -> None:
    key = generate_private_key()
    csr = x509.load_pem_x509_csr(build_csr(key, common_name="agent-0001"))
    assert csr.is_signature_valid
    assert csr.subject == x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "agent-0001")])
    assert list(csr.extensions) == []
    assert isinstance(csr.signature_hash_algorithm, hashes.SHA256)
    der = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    assert csr.public_key().public_bytes(*der) == key.public_key().public_bytes(*der)


def test_build_csr_with_ed25519() -> None:
    csr = x509.load_pem_x509_csr(build_csr(ed25519.Ed25519PrivateKey.generate(), common_name="agent-2"))
    assert csr.is_signature_valid
    assert isinstance(csr.public_key(), ed25519.Ed25519PublicKey)


@pytest.mark.parametrize("name", ["", "x" * 65])
def test_build_csr_rejects_unusable_names(name: str) -> None:
    with pytest.raises(CertError):
        build_csr(generate_private_key(), common_name=name)


def test_private_key_pem_round_trip() -> None:
    key = generate_private_key()
    pem = private_key_to_pem(key)
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8, unencrypted
    loaded = load_private_key(pem)
    assert loaded.private_numbers() == key.private_numbers()


def test_load_private_key_rejects_garbage() -> None:
    with pytest.raises(BadKey) as info:
        load_private_key(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    assert info.value.code == "bad_key"


def test_load_private_key_rejects_encrypted() -> None:
    pem = generate_private_key().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    with pytest.raises(BadKey):
        load_private_key(pem)


@pytest.mark.parametrize("kind", ["rsa", "p384", "ed25519"])
def test_load_private_key_rejects_other_key_types(kind: str) -> None:
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
    if kind == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif kind == "p384":
        key = ec.generate_private_key(ec.SECP384R1())
    else:
        key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(BadKey, match="P-256"):
        load_private_key(pem)
