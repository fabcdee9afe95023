"""One exception hierarchy for the certificate authority, with stable string codes.

Adapters (the broker's HTTP/WebSocket layer, the agent's enrolment code) turn these into
error messages by ``code``; nothing else should leak out of ``certs/`` (no bare ``ValueError``),
so the codes below are part of the wire contract and must not change::

    CertError                  cert_error
    ├── BadCSR                 bad_csr
    ├── CSRSubjectMismatch     csr_subject_mismatch
    ├── CAKeyError             ca_key_error
    ├── CAFilesExist           ca_files_exist
    ├── BadKey                 bad_key
    ├── FingerprintMismatch    fingerprint_mismatch
    └── BadSignature           bad_signature

Whose fault: ``BadCSR``, ``CSRSubjectMismatch``, ``FingerprintMismatch`` and ``BadSignature`` are
the remote party's (an agent sent something we refuse); ``CAKeyError``, ``CAFilesExist`` and
``BadKey`` are local configuration problems the operator has to fix.
"""

from __future__ import annotations


class CertError(Exception):
    """Base class: every failure raised by ``certs`` carries a stable ``code``."""

    code: str = "cert_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class BadCSR(CertError):
    """The CSR cannot be accepted: unparsable, bad self-signature, key we refuse, CA request, too big.

    Under 第31条1項④ the subscriber accepts the certificate *the ISP issues*; a request that
    tries to choose its own powers (CA, extra key usages) is refused outright, not silently trimmed.
    """

    code = "bad_csr"


class CSRSubjectMismatch(CertError):
    """The CSR's common name is not the one the broker assigned to this enrolment."""

    code = "csr_subject_mismatch"


class CAKeyError(CertError):
    """The CA key or certificate cannot be used: wrong passphrase, corrupt, missing, or mismatched."""

    code = "ca_key_error"


class CAFilesExist(CertError):
    """Refused to overwrite an existing CA: agents pinned its fingerprint, replacing it strands them."""

    code = "ca_files_exist"


class BadKey(CertError):
    """A private key (agent side) is unreadable or not the type we use (EC P-256)."""

    code = "bad_key"


class FingerprintMismatch(CertError):
    """A fingerprint is malformed, or does not match the pinned one."""

    code = "fingerprint_mismatch"


class BadSignature(CertError):
    """A signature (e.g. on a consent receipt) does not verify against the stored certificate."""

    code = "bad_signature"
