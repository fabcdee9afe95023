"""Helpers of the ``certs`` tests: a test CA's passphrase, a client's common name, and small readers of
certificates."""

from __future__ import annotations

import base64
from datetime import datetime

from cryptography import x509

from certs import (
    CertificateAuthority,
    build_csr,
    generate_private_key,
)

PASSPHRASE = b"correct horse battery staple"
CN = "agent-0001"


def ext(cert: x509.Certificate, kind: type[x509.ExtensionType]) -> x509.Extension[x509.ExtensionType]:
    return cert.extensions.get_extension_for_class(kind)


def ski(cert: x509.Certificate) -> bytes:
    return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest


def issue(ca: CertificateAuthority, now: datetime, cn: str = CN) -> x509.Certificate:
    return ca.sign_client_csr(
        build_csr(generate_private_key(), common_name=cn), expected_common_name=cn, now=now
    )


def pem_of(der: bytes, label: str = "CERTIFICATE REQUEST") -> bytes:
    body = base64.encodebytes(der).decode("ascii")
    return f"-----BEGIN {label}-----\n{body}-----END {label}-----\n".encode()
