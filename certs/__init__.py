"""Certificate authority for the ISP remote-support system.

The broker runs a small CA that issues a client certificate to each agent on a subscriber's PC
(第31条1項④: the subscriber accepts the certificate the ISP issues), identifies it by the serial in
hex (別紙5 (2): the client certificate ID), and revokes it on termination (第20条/第21条).

Modules: :mod:`.authority` (the CA), :mod:`.csr` (agent-side key and CSR), :mod:`.crl`,
:mod:`.fingerprint`, :mod:`.signatures` (consent receipts), :mod:`.files` (atomic 0600/0644
writes), :mod:`.errors`.
"""

from .authority import (
    BACKDATE,
    CA_VALIDITY,
    CLIENT_VALIDITY,
    MAX_CSR_PEM_BYTES,
    SERVER_VALIDITY,
    CertificateAuthority,
)
from .crl import check_crl_signature, load_crl, revoked_serials
from .csr import build_csr, generate_private_key, load_private_key, private_key_to_pem
from .errors import (
    BadCSR,
    BadKey,
    BadSignature,
    CAFilesExist,
    CAKeyError,
    CertError,
    CSRSubjectMismatch,
    FingerprintMismatch,
)
from .files import read_or_create_passphrase, read_or_create_secret, write_public_file, write_secret_file
from .fingerprint import (
    check_fingerprint,
    fingerprint_sha256,
    normalize_fingerprint,
    parse_serial_hex,
    serial_hex,
)
from .signatures import sign, verify

__all__ = [
    "BACKDATE",
    "CA_VALIDITY",
    "CLIENT_VALIDITY",
    "MAX_CSR_PEM_BYTES",
    "SERVER_VALIDITY",
    "BadCSR",
    "BadKey",
    "BadSignature",
    "CAFilesExist",
    "CAKeyError",
    "CSRSubjectMismatch",
    "CertError",
    "CertificateAuthority",
    "FingerprintMismatch",
    "build_csr",
    "check_crl_signature",
    "check_fingerprint",
    "fingerprint_sha256",
    "generate_private_key",
    "load_crl",
    "load_private_key",
    "normalize_fingerprint",
    "parse_serial_hex",
    "private_key_to_pem",
    "read_or_create_passphrase",
    "read_or_create_secret",
    "revoked_serials",
    "serial_hex",
    "sign",
    "verify",
    "write_public_file",
    "write_secret_file",
]
