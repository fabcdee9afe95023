"""Consent receipts: what the subscriber decided, in bytes the agent signs (DESIGN §4).

A receipt is one compact JSON object with its fields in a fixed order, so the signed bytes are
reproducible; the broker stores the exact text it received together with the signature, and
``python -m broker audit receipts SESSION`` verifies it offline against the agent's certificate.
Every decision is a receipt: an answer to a consent request, a timeout (= deny), a scope the
subscriber withdrew or granted later. ``granted`` is always the complete set in force afterwards.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from .errors import InvalidField, MalformedMessage
from .messages import Name, OperatorName, Scopes, Serial, SessionId, Time

RECEIPT_VERSION = 1
MAX_RECEIPT_BYTES = 4096

Decision = Literal[
    "answered",
    "timeout",
    "withdrawn",
    "granted",
    "ended",
    # The subscriber's answer about one new *person* (``viewer``) who would see the screen: an
    # invited colleague, or the colleague the session is transferred to (docs/consent.md).
    "viewer_allowed",
    "viewer_denied",
    "viewer_timeout",
    "transfer_allowed",
    "transfer_denied",
    "transfer_timeout",
]

PERSON_DECISIONS: frozenset[str] = frozenset(
    {
        "viewer_allowed",
        "viewer_denied",
        "viewer_timeout",
        "transfer_allowed",
        "transfer_denied",
        "transfer_timeout",
    }
)
"""Decisions about a person: exactly these carry ``viewer``."""


class ConsentReceipt(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One consent decision of the subscriber (第31条1項④⑤, 別紙5: item by item)."""

    v: Annotated[int, msgspec.Meta(ge=1, le=1)] = RECEIPT_VERSION
    session_id: SessionId
    serial: Serial
    """The agent certificate that signs this receipt (client certificate ID, 別紙5 (2))."""
    operator: Name
    decision: Decision
    asked: Scopes
    """The scopes the prompt asked about (empty for a withdrawal the subscriber started)."""
    granted: Scopes
    """Every scope in force after this decision."""
    denied: Scopes
    """Scopes asked and refused (or not answered in time)."""
    time: Time
    viewer: OperatorName | None = None
    """The operator account the decision is about (person decisions only). Left out of the signed
    bytes when None, so every receipt written before this field existed stays canonical."""


_encoder = msgspec.json.Encoder()


def receipt_bytes(receipt: ConsentReceipt) -> bytes:
    """The exact bytes to sign: fields in declaration order, no whitespace (``viewer`` only
    when set)."""
    if receipt.viewer is None:
        fields = msgspec.structs.asdict(receipt)
        del fields["viewer"]
        return _encoder.encode(fields)
    return _encoder.encode(receipt)


def parse_receipt(data: bytes | str) -> ConsentReceipt:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    if len(raw) > MAX_RECEIPT_BYTES:
        raise InvalidField("consent receipt too large")
    try:
        receipt = msgspec.json.decode(raw, type=ConsentReceipt)
    except msgspec.ValidationError as exc:
        raise InvalidField(f"consent receipt: {exc}") from None
    except (msgspec.DecodeError, RecursionError) as exc:
        raise MalformedMessage(f"consent receipt: {exc}") from None
    if receipt_bytes(receipt) != raw:
        # Only the canonical form is accepted, so what is stored is exactly what was signed.
        raise InvalidField("consent receipt is not in canonical form")
    if set(receipt.granted) & set(receipt.denied):
        raise InvalidField("a scope cannot be both granted and denied")
    if (receipt.viewer is not None) != (receipt.decision in PERSON_DECISIONS):
        raise InvalidField("a decision about a person names that person, and only such a decision does")
    return receipt
