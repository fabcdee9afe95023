"""Issue 13: the protocol of inviting a colleague and transferring a session.

Only the session's operator may invite or transfer (SENDERS); receipts about a person carry
``viewer`` and only they do; receipts without it keep the exact bytes they had before the field
existed, so every receipt already in an audit log stays canonical.
"""

from __future__ import annotations

import pytest

from protocol.codec import decode, encode
from protocol.errors import InvalidField, ProtocolError
from protocol.messages import ConsentRequest, Invitation, Invite, Transfer
from protocol.receipts import ConsentReceipt, parse_receipt, receipt_bytes
from protocol.session import NotAllowed, Phase, Role, check_sender


def test_only_the_sessions_operator_may_invite_or_transfer() -> None:
    for kind in ("invite", "transfer"):
        check_sender(Role.OPERATOR, kind, Phase.ACTIVE, {"screen:view"})
        for role in (Role.VIEWER, Role.AGENT):
            with pytest.raises(NotAllowed):
                check_sender(role, kind, Phase.ACTIVE, {"screen:view"})
        with pytest.raises(ProtocolError):
            check_sender(Role.OPERATOR, kind, Phase.CONSENT, {"screen:view"})
    # Inviting someone to see a screen the subscriber does not share is refused.
    with pytest.raises(ProtocolError):
        check_sender(Role.OPERATOR, "invite", Phase.ACTIVE, set())


@pytest.mark.parametrize(
    "message",
    [
        Invite(id="i", session_id="s1234567", colleague="bob"),
        Transfer(id="t", session_id="s1234567", colleague="bob.smith@x"),
        Invitation(
            session_id="s1234567",
            kind="transfer",
            status="allowed",
            by="alice",
            colleague="bob",
            contract_id="C-1",
        ),
        ConsentRequest(
            id="c",
            session_id="s1234567",
            operator="Alice",
            scopes=("screen:view",),
            viewer="Bob",
            viewer_account="bob",
            transfer=True,
        ),
    ],
)
def test_round_trip(message: object) -> None:
    assert decode(encode(message)) == message  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["", "bob\n", "bob smith", "ボブ", "a" * 65])
def test_a_colleague_is_an_account_name(name: str) -> None:
    body = f'{{"type":"invite","id":"i","session_id":"s1234567","colleague":{name!r}}}'.replace("'", '"')
    with pytest.raises(ProtocolError):
        decode(body.encode())


def _receipt(**fields: object) -> ConsentReceipt:
    base: dict[str, object] = {
        "session_id": "s1234567",
        "serial": "ab",
        "operator": "Alice",
        "decision": "answered",
        "asked": ("screen:view",),
        "granted": ("screen:view",),
        "denied": (),
        "time": 1.0,
    }
    base.update(fields)
    return ConsentReceipt(**base)  # type: ignore[arg-type]


def test_a_receipt_without_a_person_keeps_its_old_bytes() -> None:
    old = (
        b'{"v":1,"session_id":"s1234567","serial":"ab","operator":"Alice","decision":"answered",'
        b'"asked":["screen:view"],"granted":["screen:view"],"denied":[],"time":1.0}'
    )
    assert receipt_bytes(_receipt()) == old
    assert parse_receipt(old) == _receipt()


def test_a_receipt_about_a_person_names_them() -> None:
    receipt = _receipt(decision="viewer_allowed", viewer="bob")
    data = receipt_bytes(receipt)
    assert data.endswith(b',"viewer":"bob"}')
    assert parse_receipt(data) == receipt
    with pytest.raises(InvalidField):
        parse_receipt(receipt_bytes(_receipt(decision="viewer_allowed")))  # no person named
    with pytest.raises(InvalidField):
        parse_receipt(receipt_bytes(_receipt(viewer="bob")))  # a scope answer naming a person
    with pytest.raises(InvalidField):  # an explicit null is not the canonical form
        parse_receipt(receipt_bytes(_receipt())[:-1] + b',"viewer":null}')
