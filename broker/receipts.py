"""Checking consent receipts against the agent's certificate, live and offline.

The same check runs when a decision arrives (``broker.sessions``) and when an auditor asks
later (``python -m broker audit receipts SESSION``): the receipt text must be canonical, and its
ECDSA signature must verify with the public key of the certificate it names (DESIGN §4).
"""

from __future__ import annotations

import base64
import binascii

from certs import BadSignature, CertError, verify
from protocol.errors import ErrorCode, ProtocolError
from protocol.receipts import ConsentReceipt, parse_receipt

from .errors import RefusedError


def verify_receipt(text: str, signature_b64: str, cert_pem: str) -> ConsentReceipt:
    """Parse and verify; raise ``RefusedError`` (``invalid_field``) when either fails."""
    try:
        receipt = parse_receipt(text)
        signature = base64.b64decode(signature_b64, validate=True)
        verify(cert_pem.encode("ascii"), text.encode("utf-8"), signature)
    except ProtocolError as exc:
        raise RefusedError(
            f"malformed consent receipt: {exc.message}", code=ErrorCode.INVALID_FIELD
        ) from None
    except (binascii.Error, BadSignature, CertError):
        raise RefusedError(
            "the consent receipt's signature does not verify", code=ErrorCode.INVALID_FIELD
        ) from None
    return receipt
