"""The broker's certificate authority: one EC P-256 CA that issues agent client certificates.

Under 第31条1項④ the subscriber accepts the certificate the ISP issues; so the CA decides every
field of that certificate.  A CSR only proves possession of a key (the agent's private key never
leaves the subscriber's PC): its subject and extension requests are never copied, the subject is
built here from the common name the broker assigned, and a request for CA powers is refused.

Habits taken from mitmproxy's ``certs.py``: named validity constants with a small backdate for
clock skew, the CA marked ``BasicConstraints(ca=True)`` critical with ``KeyUsage(key_cert_sign,
crl_sign)``, and every leaf's AuthorityKeyIdentifier taken from the CA's SubjectKeyIdentifier (strict
chain builders, including OpenSSL's ``X509_V_FLAG_X509_STRICT``, reject a mismatch).  Unlike
mitmproxy, the CA key is always stored encrypted and no leaf reuses the CA key.

Time is an argument (``now``, timezone-aware) to everything that needs it, as in aioquic, so tests
use a fixed clock and nothing here reads the system time.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .errors import BadCSR, CAFilesExist, CAKeyError, CertError, CSRSubjectMismatch
from .files import write_public_file, write_secret_file
from .fingerprint import fingerprint_sha256

CA_VALIDITY = timedelta(days=3650)
"""Ten years: agents pin the CA fingerprint, so rotating it means re-enrolling every subscriber."""

CLIENT_VALIDITY = timedelta(days=365)
"""One year for an agent certificate; termination (第20条/第21条) revokes earlier via the CRL."""

SERVER_VALIDITY = timedelta(days=397)
"""The CA/Browser Forum ceiling for TLS server certificates; some TLS stacks refuse longer ones."""

BACKDATE = timedelta(minutes=5)
"""``not_valid_before`` is this far before ``now`` so a subscriber PC whose clock runs a little slow
does not reject (or get rejected with) a certificate issued a moment ago."""

CRL_NEXT_UPDATE = timedelta(days=7)
"""Default gap between a CRL's ``last_update`` and ``next_update``."""

MAX_CSR_PEM_BYTES = 16 * 1024
"""A P-256 CSR is under 1 KiB of PEM; anything above 16 KiB is refused before parsing."""

CA_CERT_FILENAME = "ca.pem"
CA_KEY_FILENAME = "ca-key.pem"

CLIENT_ORGANIZATION = "ISP Remote Support client"
"""The O= of every client certificate; set by us, never taken from the CSR."""

CLIENT_URI_PREFIX = "urn:isp-remote-support:agent:"
"""Client certificates carry ``SAN URI = CLIENT_URI_PREFIX + percent-encoded CN``.

RFC 5280 §4.2.1.6 prefers identities in the SAN, and strict verifiers (cryptography's
``build_client_verifier``, the CA/B profile) reject an end-entity certificate without one; a URN
names the agent without pretending its CN is a host name.  Derived from the assigned CN, never from
the CSR."""

_CURVE = ec.SECP256R1
_ACCEPTED_CSR_HASHES = (hashes.SHA256, hashes.SHA384, hashes.SHA512)


def _utc(now: datetime) -> datetime:
    """Refuse naive datetimes: a naive ``now`` is local time on some hosts and UTC on others."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise CertError("now must be a timezone-aware datetime")
    return now.astimezone(UTC)


def client_uri(common_name: str) -> str:
    """The SAN URI of the client certificate for ``common_name`` (see ``CLIENT_URI_PREFIX``)."""
    return CLIENT_URI_PREFIX + quote(common_name, safe="-._~")


def _name_attribute(oid: x509.ObjectIdentifier, value: str) -> x509.NameAttribute[str]:
    try:
        return x509.NameAttribute(oid, value)
    except ValueError as exc:  # empty, or longer than the X.520 upper bound (64 for CN)
        raise CertError(f"invalid name attribute {value!r}: {exc}") from None


class CertificateAuthority:
    """A CA certificate and its private key, able to issue client and server certificates and CRLs."""

    def __init__(self, certificate: x509.Certificate, private_key: ec.EllipticCurvePrivateKey) -> None:
        """Prefer :meth:`create`, :meth:`load` or :meth:`load_or_create`; this does no checking."""
        self._certificate = certificate
        self._key = private_key
        self._ski = certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value

    # -- properties -------------------------------------------------------------------------

    @property
    def certificate(self) -> x509.Certificate:
        return self._certificate

    @property
    def cert_pem(self) -> bytes:
        return self._certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the CA certificate, the value agents pin (see :mod:`certs.fingerprint`)."""
        return fingerprint_sha256(self._certificate)

    # -- construction -----------------------------------------------------------------------

    @classmethod
    def create(cls, *, common_name: str, now: datetime) -> CertificateAuthority:
        """Make a new self-signed EC P-256 CA valid from ``now - BACKDATE`` for ``CA_VALIDITY``.

        ``path_length=0``: this CA signs only leaves, never intermediates.
        """
        now = _utc(now)
        key = ec.generate_private_key(_CURVE())
        name = x509.Name([_name_attribute(NameOID.COMMON_NAME, common_name)])
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + CA_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(ski, critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        return cls(cert, key)

    @classmethod
    def load(cls, *, cert_pem: bytes, key_pem: bytes, passphrase: bytes) -> CertificateAuthority:
        """Load a CA saved by :meth:`save`.

        Raises :class:`CAKeyError` for a wrong passphrase, an unencrypted or corrupt key, a key of
        another type, a key that does not belong to the certificate, or a certificate that is not a CA.
        """
        try:
            cert = x509.load_pem_x509_certificate(cert_pem)
        except ValueError:
            raise CAKeyError("CA certificate is not a readable PEM certificate") from None
        if not passphrase:
            raise CAKeyError("CA key passphrase is empty")
        try:
            key = serialization.load_pem_private_key(key_pem, password=passphrase)
        except TypeError:
            # cryptography raises TypeError when the key is not encrypted but a password was given.
            raise CAKeyError("CA key is not encrypted; refusing to use it") from None
        except (ValueError, UnsupportedAlgorithm):
            raise CAKeyError("cannot decrypt CA key: wrong passphrase or corrupt key") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, _CURVE):
            raise CAKeyError("CA key is not an EC P-256 key")
        public_der = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        if key.public_key().public_bytes(*public_der) != cert.public_key().public_bytes(*public_der):
            raise CAKeyError("CA key does not match the CA certificate")
        try:
            constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
            cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        except (x509.ExtensionNotFound, ValueError):
            raise CAKeyError("CA certificate lacks BasicConstraints or SubjectKeyIdentifier") from None
        if not constraints.ca:
            raise CAKeyError("certificate is not a CA certificate")
        return cls(cert, key)

    def save(self, directory: Path, *, passphrase: bytes) -> None:
        """Write ``ca.pem`` (0644) and ``ca-key.pem`` (0600, PKCS#8 encrypted with ``passphrase``).

        Refuses (:class:`CAFilesExist`) if either file exists: agents pinned the old CA's
        fingerprint, so overwriting it would cut every enrolled subscriber off.  The key is written
        first; if the certificate cannot be written the key is removed again, so a failed save
        leaves nothing behind.
        """
        if not passphrase:
            raise CAKeyError("refusing to store the CA key without a passphrase")
        cert_path = directory / CA_CERT_FILENAME
        key_path = directory / CA_KEY_FILENAME
        for path in (cert_path, key_path):
            if path.exists() or path.is_symlink():
                raise CAFilesExist(f"refusing to overwrite existing CA file {path}")
        key_pem = self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(passphrase),
        )
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            write_secret_file(key_path, key_pem, exclusive=True)
        except FileExistsError:
            raise CAFilesExist(f"refusing to overwrite existing CA file {key_path}") from None
        try:
            write_public_file(cert_path, self.cert_pem, exclusive=True)
        except BaseException as exc:
            with contextlib.suppress(FileNotFoundError):
                key_path.unlink()
            if isinstance(exc, FileExistsError):
                raise CAFilesExist(f"refusing to overwrite existing CA file {cert_path}") from None
            raise

    @classmethod
    def load_or_create(
        cls, directory: Path, *, passphrase: bytes, common_name: str, now: datetime
    ) -> CertificateAuthority:
        """Load the CA in ``directory``, or create and save one on first start.

        Only when *both* files are absent is a new CA made; with one of them missing
        :class:`CAKeyError` is raised, because silently minting a new CA would strand every agent
        that pinned the old one.
        """
        cert_path = directory / CA_CERT_FILENAME
        key_path = directory / CA_KEY_FILENAME
        have_cert, have_key = cert_path.exists(), key_path.exists()
        if have_cert and have_key:
            try:
                cert_pem, key_pem = cert_path.read_bytes(), key_path.read_bytes()
            except OSError as exc:
                raise CAKeyError(f"cannot read CA files in {directory}: {exc.strerror}") from None
            return cls.load(cert_pem=cert_pem, key_pem=key_pem, passphrase=passphrase)
        if have_cert or have_key:
            missing = key_path if have_cert else cert_path
            raise CAKeyError(f"CA is incomplete: {missing} is missing")
        ca = cls.create(common_name=common_name, now=now)
        ca.save(directory, passphrase=passphrase)
        return ca

    # -- issuing ----------------------------------------------------------------------------

    def _validity(self, now: datetime, validity: timedelta) -> tuple[datetime, datetime]:
        """``(now - BACKDATE, now + validity)``, the end clamped to the CA's own expiry.

        A leaf that outlives its issuer fails chain validation anyway; clamping makes the date in
        the certificate honest.  An expired CA cannot issue at all.
        """
        if validity <= timedelta(0):
            raise CertError("validity must be positive")
        not_after = min(now + validity, self._certificate.not_valid_after_utc)
        if not_after <= now:
            raise CertError("the CA certificate has expired; it cannot issue certificates")
        return now - BACKDATE, not_after

    def _leaf_builder(
        self,
        subject: x509.Name,
        public_key: ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey,
        *,
        now: datetime,
        validity: timedelta,
        usage: x509.ObjectIdentifier,
    ) -> x509.CertificateBuilder:
        not_before, not_after = self._validity(now, validity)
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self._certificate.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(self._ski), critical=False
            )
        )

    def issue_server_certificate(self, hostnames: Sequence[str], *, now: datetime) -> tuple[bytes, bytes]:
        """Issue a TLS server certificate for the broker; return ``(cert_pem, key_pem)``.

        Literal IPs (``127.0.0.1``, ``::1``) go into the SAN as ``IPAddress`` (a ``DNSName`` holding
        an IP matches nothing), other names as ``DNSName``; CN is the first name for old clients.
        The key is returned unencrypted because the TLS server must load it unattended; the caller
        stores it with :func:`certs.files.write_secret_file`.
        """
        now = _utc(now)
        if isinstance(hostnames, str) or not hostnames:
            raise CertError("hostnames must be a non-empty sequence of names")
        general_names: list[x509.GeneralName] = []
        for host in hostnames:
            try:
                general_names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                try:
                    general_names.append(x509.DNSName(host.encode("idna").decode("ascii")))
                except (ValueError, UnicodeError):
                    raise CertError(f"not a usable host name: {host!r}") from None
        key = ec.generate_private_key(_CURVE())
        subject = x509.Name([_name_attribute(NameOID.COMMON_NAME, hostnames[0])])
        cert = (
            self._leaf_builder(
                subject,
                key.public_key(),
                now=now,
                validity=SERVER_VALIDITY,
                usage=ExtendedKeyUsageOID.SERVER_AUTH,
            )
            .add_extension(x509.SubjectAlternativeName(general_names), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return cert.public_bytes(serialization.Encoding.PEM), key_pem

    def sign_client_csr(
        self,
        csr_pem: bytes,
        *,
        expected_common_name: str,
        now: datetime,
        validity: timedelta = CLIENT_VALIDITY,
    ) -> x509.Certificate:
        """Issue an agent's client certificate from its CSR.

        第31条1項④: the subscriber accepts the certificate the ISP issues, so the CA decides its content.

        Checks, in order: size (≤ ``MAX_CSR_PEM_BYTES``), PEM/DER parse, the CSR's self-signature
        (proof the agent holds the key), key type (EC P-256 or Ed25519), requested extensions (a CA
        request or keyCertSign/cRLSign usage is refused, not trimmed), and the common name, which
        must equal ``expected_common_name`` exactly (:class:`CSRSubjectMismatch`).  Any other
        failure is :class:`BadCSR`.

        The certificate's subject is built here (CN and ``O=ISP Remote Support client``), plus a SAN
        URI from :func:`client_uri`, with a random serial whose hex form is the client certificate
        ID of 別紙5 (2).
        """
        now = _utc(now)
        if len(csr_pem) > MAX_CSR_PEM_BYTES:
            raise BadCSR(f"CSR is larger than {MAX_CSR_PEM_BYTES} bytes")
        try:
            csr = x509.load_pem_x509_csr(csr_pem)
        except ValueError:
            raise BadCSR("CSR is not a readable PEM certificate request") from None
        try:
            signature_ok = csr.is_signature_valid
            public_key = csr.public_key()
            hash_algorithm = csr.signature_hash_algorithm
            extensions = list(csr.extensions)
            cn_attributes = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise BadCSR(f"CSR is malformed or uses an unsupported algorithm: {exc}") from None
        if not signature_ok:
            raise BadCSR("CSR signature does not verify")
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            if not isinstance(public_key.curve, _CURVE):
                raise BadCSR(f"unsupported EC curve {public_key.curve.name}; P-256 is required")
            if not isinstance(hash_algorithm, _ACCEPTED_CSR_HASHES):
                raise BadCSR("CSR is signed with a hash weaker than SHA-256")
        elif not isinstance(public_key, ed25519.Ed25519PublicKey):
            raise BadCSR("unsupported key type; EC P-256 or Ed25519 is required")
        for extension in extensions:
            value = extension.value
            if isinstance(value, x509.BasicConstraints) and value.ca:
                raise BadCSR("CSR requests a CA certificate")
            if isinstance(value, x509.KeyUsage) and (value.key_cert_sign or value.crl_sign):
                raise BadCSR("CSR requests certificate or CRL signing")
        if len(cn_attributes) != 1 or cn_attributes[0].value != expected_common_name:
            raise CSRSubjectMismatch("CSR common name does not match the one assigned to this agent")
        subject = x509.Name(
            [
                _name_attribute(NameOID.COMMON_NAME, expected_common_name),
                _name_attribute(NameOID.ORGANIZATION_NAME, CLIENT_ORGANIZATION),
            ]
        )
        san = x509.SubjectAlternativeName([x509.UniformResourceIdentifier(client_uri(expected_common_name))])
        return (
            self._leaf_builder(
                subject, public_key, now=now, validity=validity, usage=ExtendedKeyUsageOID.CLIENT_AUTH
            )
            .add_extension(san, critical=False)
            .sign(self._key, hashes.SHA256())
        )

    def build_crl(
        self,
        revoked: Iterable[tuple[int, datetime]],
        *,
        now: datetime,
        next_update: timedelta = CRL_NEXT_UPDATE,
        crl_number: int = 1,
    ) -> bytes:
        """A PEM CRL of ``(serial, revoked_at)`` pairs, signed by this CA.

        Termination of the contract (第20条/第21条) revokes the agent's certificate; the broker
        republishes the CRL with a ``crl_number`` that must increase each time (RFC 5280 §5.2.3).
        A serial listed twice keeps its earliest revocation time.  The CRL carries the CA's AKI
        (RFC 5280 §5.2.1) so verifiers can match it to the issuer.
        """
        now = _utc(now)
        if next_update <= timedelta(0):
            raise CertError("next_update must be positive")
        if crl_number < 0:
            raise CertError("crl_number must not be negative")
        earliest: dict[int, datetime] = {}
        for serial, revoked_at in revoked:
            when = _utc(revoked_at)
            if serial not in earliest or when < earliest[serial]:
                earliest[serial] = when
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self._certificate.subject)
            .last_update(now)
            .next_update(now + next_update)
            .add_extension(x509.CRLNumber(crl_number), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(self._ski), critical=False
            )
        )
        for serial in sorted(earliest):
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(serial)
                .revocation_date(earliest[serial])
                .build()
            )
        crl = builder.sign(self._key, hashes.SHA256())
        return crl.public_bytes(serialization.Encoding.PEM)

    def is_issued_by_me(self, cert: x509.Certificate) -> bool:
        """True if ``cert`` names this CA as issuer and carries a valid signature from its key.

        Only the signature is checked, not validity dates or revocation; use it to tell our
        certificates from foreign ones (e.g. before trusting a stored consent-receipt certificate).
        """
        try:
            cert.verify_directly_issued_by(self._certificate)
        except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
            return False
        return True
