"""Reading the CRLs built by :meth:`certs.authority.CertificateAuthority.build_crl`.

Contract termination (第20条/第21条) revokes the agent's certificate; the broker consults the set of
revoked serials when an agent connects.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from .errors import BadSignature, CertError


def load_crl(pem: bytes) -> x509.CertificateRevocationList:
    """Parse a PEM CRL; :class:`CertError` if unreadable.  The signature is not checked here."""
    try:
        return x509.load_pem_x509_crl(pem)
    except ValueError:
        raise CertError("CRL is not a readable PEM CRL") from None


def check_crl_signature(crl: x509.CertificateRevocationList, issuer: x509.Certificate) -> None:
    """Raise :class:`BadSignature` unless ``crl`` is issued and signed by ``issuer``.

    A CRL fetched from disk or the network must be checked before its absence of an entry is
    trusted.
    """
    if crl.issuer != issuer.subject:
        raise BadSignature("CRL issuer does not match the CA")
    public_key = issuer.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
        raise BadSignature("CA key type cannot sign CRLs here")
    try:
        valid = crl.is_signature_valid(public_key)
    except (TypeError, ValueError, UnsupportedAlgorithm):
        valid = False
    if not valid:
        raise BadSignature("CRL signature does not verify against the CA")


def revoked_serials(crl: x509.CertificateRevocationList) -> frozenset[int]:
    """Serials listed in ``crl`` (hex form of each: the client certificate ID of 別紙5 (2))."""
    return frozenset(entry.serial_number for entry in crl)
