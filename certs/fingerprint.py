"""Certificate fingerprints and serials in the one textual form the project uses.

Agents pin the broker CA by its SHA-256 fingerprint (typed or pasted by a support operator, so
several spellings are accepted on input); the broker records each client certificate by its serial
in lowercase hex, which is the "client certificate ID" of 別紙5 (2).
"""

from __future__ import annotations

import hmac
import re

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from .errors import CertError, FingerprintMismatch

_HEX64 = re.compile(r"[0-9a-f]{64}")
_COLON_PAIRS = re.compile(r"[0-9a-f]{2}(?::[0-9a-f]{2}){31}")
_SERIAL_HEX = re.compile(r"[0-9a-f]{1,40}")


def fingerprint_sha256(cert: x509.Certificate) -> str:
    """SHA-256 over the DER certificate: 64 lowercase hex digits, no colons."""
    return cert.fingerprint(hashes.SHA256()).hex()


def normalize_fingerprint(text: str) -> str:
    """Accept ``sha256:AB:CD…``, ``AB:CD…`` or ``abcd…``; return 64 lowercase hex digits.

    Colons, when present, must separate every byte (the way browsers and ``openssl x509
    -fingerprint`` print it), so a truncated or mangled paste is rejected instead of guessed at.
    """
    value = text.strip().lower()
    if value.startswith("sha256:"):
        value = value[len("sha256:") :]
    if ":" in value:
        if not _COLON_PAIRS.fullmatch(value):
            raise FingerprintMismatch("not a SHA-256 fingerprint")
        value = value.replace(":", "")
    if not _HEX64.fullmatch(value):
        raise FingerprintMismatch("not a SHA-256 fingerprint")
    return value


def check_fingerprint(cert: x509.Certificate, expected: str) -> None:
    """Raise :class:`FingerprintMismatch` unless ``cert`` has the pinned fingerprint ``expected``."""
    wanted = normalize_fingerprint(expected)
    if not hmac.compare_digest(fingerprint_sha256(cert), wanted):
        raise FingerprintMismatch("certificate fingerprint does not match the pinned one")


def serial_hex(cert: x509.Certificate) -> str:
    """Lowercase hex serial without ``0x``: the client certificate ID of 別紙5 (2)."""
    return format(cert.serial_number, "x")


def parse_serial_hex(text: str) -> int:
    """Inverse of :func:`serial_hex`, for looking up a client certificate ID (別紙5 (2)).

    RFC 5280 §4.1.2.2 caps serials at 20 octets, hence at most 40 hex digits.
    """
    value = text.strip().lower()
    if not _SERIAL_HEX.fullmatch(value):
        raise CertError("not a certificate serial in hex")
    return int(value, 16)
