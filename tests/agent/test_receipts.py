"""Signed consent receipts: a real agent key and certificate, round trip, and every kind of tampering."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from agent.consent import ConsentState
from agent.errors import AgentError
from agent.receipts import ReceiptRejected, decision_message, sign_receipt, verify_decision
from certs import CertificateAuthority, build_csr, generate_private_key, serial_hex
from protocol.codec import decode, encode
from protocol.errors import ErrorCode, ProtocolError
from protocol.messages import ConsentDecision, ConsentRequest
from protocol.receipts import ConsentReceipt

NOW = datetime(2025, 4, 1, 10, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create(common_name="Test ISP CA", now=NOW)


@pytest.fixture(scope="module")
def agent(ca: CertificateAuthority) -> tuple[ec.EllipticCurvePrivateKey, str, str]:
    """(agent key, certificate PEM, serial)."""
    key = generate_private_key()
    cert = ca.sign_client_csr(build_csr(key, common_name="c-1001"), expected_common_name="c-1001", now=NOW)
    return key, cert.public_bytes(Encoding.PEM).decode("ascii"), serial_hex(cert)


@pytest.fixture
def receipt(agent: tuple[ec.EllipticCurvePrivateKey, str, str]) -> ConsentReceipt:
    state = ConsentState(session_id="sess-12345678", serial=agent[2])
    request = ConsentRequest(
        id="c1",
        session_id="sess-12345678",
        operator="佐藤 オペレータ",
        scopes=("screen:view", "input:control"),
    )
    return state.answer(request, {"screen:view"}, NOW.timestamp())


def test_round_trip(agent: tuple[ec.EllipticCurvePrivateKey, str, str], receipt: ConsentReceipt) -> None:
    key, cert_pem, _ = agent
    text, signature = sign_receipt(receipt, key)
    assert verify_decision(text, signature, cert_pem) == receipt
    assert verify_decision(text, signature, cert_pem.encode("ascii")) == receipt
    assert "佐藤" in text  # the operator's name is kept as written, not escaped


def test_decision_message_passes_the_wire_codec(
    agent: tuple[ec.EllipticCurvePrivateKey, str, str], receipt: ConsentReceipt
) -> None:
    key, cert_pem, _ = agent
    msg = decision_message(receipt, key, id="a7")
    decoded = decode(encode(msg))
    assert isinstance(decoded, ConsentDecision)
    assert decoded.session_id == receipt.session_id
    assert verify_decision(decoded.receipt, decoded.signature, cert_pem) == receipt


def test_tampered_receipt_is_refused(
    agent: tuple[ec.EllipticCurvePrivateKey, str, str], receipt: ConsentReceipt
) -> None:
    key, cert_pem, _ = agent
    text, signature = sign_receipt(receipt, key)
    forged = text.replace('"granted":["screen:view"]', '"granted":["screen:view","input:control"]').replace(
        '"denied":["input:control"]', '"denied":[]'
    )
    assert forged != text
    with pytest.raises(ReceiptRejected) as info:
        verify_decision(forged, signature, cert_pem)
    assert info.value.reason == "signature"
    assert info.value.code is ErrorCode.INVALID_FIELD


def test_tampered_signature_is_refused(
    agent: tuple[ec.EllipticCurvePrivateKey, str, str], receipt: ConsentReceipt
) -> None:
    key, cert_pem, _ = agent
    text, signature = sign_receipt(receipt, key)
    raw = bytearray(base64.b64decode(signature))
    raw[-1] ^= 0x01
    with pytest.raises(ReceiptRejected) as info:
        verify_decision(text, base64.b64encode(bytes(raw)).decode("ascii"), cert_pem)
    assert info.value.reason == "signature"
    with pytest.raises(ReceiptRejected):
        verify_decision(text, "not base64!", cert_pem)


def test_another_agents_certificate_is_refused(
    ca: CertificateAuthority, agent: tuple[ec.EllipticCurvePrivateKey, str, str], receipt: ConsentReceipt
) -> None:
    key, _, _ = agent
    other_key = generate_private_key()
    other = ca.sign_client_csr(
        build_csr(other_key, common_name="c-2002"), expected_common_name="c-2002", now=NOW
    )
    text, signature = sign_receipt(receipt, key)
    with pytest.raises(ReceiptRejected):
        verify_decision(text, signature, other.public_bytes(Encoding.PEM))
    with pytest.raises(ReceiptRejected):
        verify_decision(text, signature, "not a certificate")


def test_non_canonical_receipt_is_refused_even_if_signed(
    agent: tuple[ec.EllipticCurvePrivateKey, str, str], receipt: ConsentReceipt
) -> None:
    """Re-spaced JSON means the same thing, but only the canonical bytes are what gets stored."""
    key, cert_pem, _ = agent
    text, _ = sign_receipt(receipt, key)
    spaced = text.replace(",", ", ")
    from certs import sign

    signature = base64.b64encode(sign(key, spaced.encode("utf-8"))).decode("ascii")
    with pytest.raises(ReceiptRejected) as info:
        verify_decision(spaced, signature, cert_pem)
    assert info.value.reason == "malformed"
    assert isinstance(info.value, AgentError)  # the agent's one tree (issue 14), code invalid_field
    assert info.value.code is ErrorCode.INVALID_FIELD


def test_garbage_is_refused(agent: tuple[ec.EllipticCurvePrivateKey, str, str]) -> None:
    _, cert_pem, _ = agent
    for text in ("", "{", "[]", '{"v":1}'):
        with pytest.raises(ReceiptRejected) as info:
            verify_decision(text, "AAAAAAAA", cert_pem)
        assert info.value.reason == "malformed"


def test_an_invalid_receipt_is_never_signed(agent: tuple[ec.EllipticCurvePrivateKey, str, str]) -> None:
    key, _, serial = agent
    bad = ConsentReceipt(
        session_id="sess-12345678",
        serial=serial,
        operator="x",
        decision="answered",
        asked=("screen:view",),
        granted=("screen:view",),
        denied=("screen:view",),
        time=1.0,
    )
    with pytest.raises(ProtocolError):
        sign_receipt(bad, key)
