"""Agent-side key and CSR handling: the private key is generated on, and never leaves, the subscriber's PC.

The agent sends only the CSR; the broker's CA (:mod:`certs.authority`) decides what the certificate
says (第31条1項④).  The agent stores the key with :func:`certs.files.write_secret_file` (0600).
"""

from __future__ import annotations

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from .errors import BadKey, CertError

AgentPrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
"""Key types the CA accepts in a CSR; the agent generates P-256 (:func:`generate_private_key`)."""


def generate_private_key() -> ec.EllipticCurvePrivateKey:
    """A fresh EC P-256 key: universally supported by TLS stacks and small enough for QR/paste flows."""
    return ec.generate_private_key(ec.SECP256R1())


def build_csr(key: AgentPrivateKey, *, common_name: str) -> bytes:
    """A PEM CSR with subject ``CN=common_name`` and nothing else (the CA sets everything else)."""
    try:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    except ValueError as exc:
        raise CertError(f"invalid common name {common_name!r}: {exc}") from None
    builder = x509.CertificateSigningRequestBuilder().subject_name(name)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        csr = builder.sign(key, None)
    else:
        csr = builder.sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM)


def private_key_to_pem(key: AgentPrivateKey) -> bytes:
    """PKCS#8 PEM, unencrypted: the agent starts unattended, so the 0600 file mode is the protection."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_private_key(pem: bytes) -> ec.EllipticCurvePrivateKey:
    """Load the agent's P-256 key; :class:`BadKey` if it is corrupt, encrypted, or another type."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise BadKey("agent private key is unreadable (corrupt or encrypted)") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise BadKey("agent private key is not an EC P-256 key")
    return key
