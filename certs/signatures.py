"""Detached signatures for consent receipts.

The agent signs each consent decision with its certificate key; the broker later verifies the
signature offline against the client certificate it stored at enrolment, so a receipt proves the
subscriber's PC (not the broker) recorded the decision.  ECDSA over SHA-256, DER-encoded (RFC 3279).

``verify`` checks only the signature: whether the certificate was issued by our CA
(:meth:`certs.authority.CertificateAuthority.is_issued_by_me`) and was unrevoked at the time of the
receipt (第20条/第21条) is the caller's decision.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from .errors import BadSignature


def sign(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    """ECDSA-SHA256 signature of ``data``, DER-encoded."""
    return key.sign(data, ec.ECDSA(hashes.SHA256()))


def verify(cert_pem: bytes, data: bytes, signature: bytes) -> None:
    """Raise :class:`BadSignature` unless ``signature`` over ``data`` verifies with ``cert_pem``'s key.

    Ed25519 certificates (which the CA also accepts) are verified with Ed25519.
    """
    try:
        public_key = x509.load_pem_x509_certificate(cert_pem).public_key()
    except (ValueError, UnsupportedAlgorithm):
        raise BadSignature("certificate is unreadable") from None
    try:
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        elif isinstance(public_key, ed25519.Ed25519PublicKey):
            public_key.verify(signature, data)
        else:
            raise BadSignature("certificate key type cannot verify consent signatures")
    except (InvalidSignature, ValueError):
        raise BadSignature("signature does not verify") from None
