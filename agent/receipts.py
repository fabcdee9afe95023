"""Signing consent receipts on the agent, and verifying them anywhere (DESIGN §4).

The agent signs the canonical bytes of each :class:`protocol.receipts.ConsentReceipt` with its
certificate key (ECDSA P-256, :func:`certs.sign`), so a receipt proves that the subscriber's own
PC recorded the decision (第31条1項④, 別紙5: consent item by item), not the broker. The broker
stores the exact text and the signature and can check them offline, years later, against the
certificate it issued.

This module imports only ``protocol`` and ``certs`` (no asyncio, no agent runtime), so the broker
and an auditor's script can use :func:`verify_decision` as is.
"""

from __future__ import annotations

import base64
import binascii
from typing import Literal

from cryptography.hazmat.primitives.asymmetric import ec

from agent.errors import AgentError
from certs import CertError, sign, verify
from protocol.errors import ErrorCode, ProtocolError
from protocol.messages import ConsentDecision
from protocol.receipts import ConsentReceipt, parse_receipt, receipt_bytes

__all__ = ["ReceiptRejected", "decision_message", "sign_receipt", "verify_decision"]

RejectReason = Literal["malformed", "signature"]


class ReceiptRejected(AgentError):
    """A consent receipt that must not be trusted; code ``invalid_field`` (the sender's fault).

    ``reason`` says which check failed: ``"malformed"`` (not a valid receipt in canonical form)
    or ``"signature"`` (bad base64, unreadable certificate, or the signature does not verify).
    """

    code = ErrorCode.INVALID_FIELD

    def __init__(self, message: str, *, reason: RejectReason) -> None:
        super().__init__(message)
        self.reason: RejectReason = reason


def sign_receipt(receipt: ConsentReceipt, key: ec.EllipticCurvePrivateKey) -> tuple[str, str]:
    """``(receipt text, base64 signature)``: the ``receipt`` and ``signature`` of a ``consent_decision``.

    The receipt is checked the way the broker will check it before it is signed, so the agent
    never signs (and the subscriber never relies on) a receipt the broker must refuse; a failure
    here is a bug on our side and raises :class:`protocol.errors.ProtocolError`.
    """
    data = receipt_bytes(receipt)
    parse_receipt(data)
    signature = sign(key, data)
    return data.decode("utf-8"), base64.b64encode(signature).decode("ascii")


def decision_message(receipt: ConsentReceipt, key: ec.EllipticCurvePrivateKey, *, id: str) -> ConsentDecision:
    """The signed ``consent_decision`` message for ``receipt``, ready to send."""
    text, signature = sign_receipt(receipt, key)
    return ConsentDecision(id=id, session_id=receipt.session_id, receipt=text, signature=signature)


def verify_decision(text: str, signature_b64: str, cert_pem: bytes | str) -> ConsentReceipt:
    """The receipt in ``text`` if it is canonical and ``signature_b64`` verifies with ``cert_pem``.

    Raises :class:`ReceiptRejected` otherwise. Only the signature is checked here: whether the
    certificate is ours, unrevoked at ``receipt.time`` (第20条/第21条), and the one named by
    ``receipt.serial`` for ``receipt.session_id`` is the caller's decision.
    """
    try:
        receipt = parse_receipt(text)
    except ProtocolError as exc:
        raise ReceiptRejected(f"malformed consent receipt: {exc.message}", reason="malformed") from None
    try:
        signature = base64.b64decode(signature_b64, validate=True)
    except (binascii.Error, ValueError):
        raise ReceiptRejected("consent receipt signature is not base64", reason="signature") from None
    pem = cert_pem.encode("utf-8") if isinstance(cert_pem, str) else cert_pem
    try:
        verify(pem, text.encode("utf-8"), signature)
    except CertError as exc:
        raise ReceiptRejected(f"consent receipt signature: {exc.message}", reason="signature") from None
    return receipt
