"""Issue 13 (agent side): the record knows which persons the subscriber allowed by name.

A question about a person is answered with a receipt naming them; a transfer allowed drops
control; if the broker's viewer list shows an invited colleague the subscriber did not allow (or
refused), the record refuses every screen kind until that person is gone.
"""

from __future__ import annotations

from agent.consent_record import ConsentRecord
from agent.session_colleagues import format_person_prompt
from protocol.messages import ConsentRequest, Viewer
from protocol.receipts import parse_receipt, receipt_bytes

S = "s1234567"


def _record() -> ConsentRecord:
    record = ConsentRecord(session_id=S, serial="ab")
    ask = ConsentRequest(id="1", session_id=S, operator="Alice", scopes=("screen:view", "input:control"))
    record.answer(ask, {"screen:view", "input:control"}, 1.0)
    return record


def _person(transfer: bool = False) -> ConsentRequest:
    return ConsentRequest(
        id="2",
        session_id=S,
        operator="Alice",
        scopes=("screen:view",),
        viewer="Bob (helpdesk)",
        viewer_account="bob",
        transfer=transfer,
    )


BOB = Viewer(name="Bob (helpdesk)", role="operator", read_only=True, account="bob")
ALICE = Viewer(name="Alice", role="operator")


def test_a_yes_names_the_person_and_keeps_the_scopes() -> None:
    record = _record()
    receipt = record.person(_person(), True, 2.0)
    assert (receipt.decision, receipt.viewer, receipt.operator) == ("viewer_allowed", "bob", "Alice")
    assert receipt.granted == ("screen:view", "input:control")
    assert parse_receipt(receipt_bytes(receipt)) == receipt
    assert record.allowed_persons == {"bob"}
    assert record.note_viewers((ALICE, BOB)) == ()
    assert record.permits("screen_update")


def test_a_no_or_silence_keeps_the_current_operator_and_refuses_the_person() -> None:
    for answer, decision in ((False, "viewer_denied"), (None, "viewer_timeout")):
        record = _record()
        receipt = record.person(_person(), answer, 2.0)
        assert receipt.decision == decision
        assert receipt.granted == ("screen:view", "input:control")
        assert record.permits("screen_update")
        # A broker that shows the refused person anyway: sharing stops, control stays.
        assert record.note_viewers((ALICE, BOB)) == ("Bob (helpdesk)",)
        assert not record.permits("screen_update")
        assert not record.permits("screen_refresh")
        assert record.permits("input")
        assert record.note_viewers((ALICE,)) == ()
        assert record.permits("screen_update")


def test_an_invited_colleague_never_asked_about_stops_sharing() -> None:
    record = _record()
    assert record.note_viewers((ALICE, BOB)) == ("Bob (helpdesk)",)
    assert not record.permits("screen_update")
    # A supervisor's read-only join (issue 11) is shown, not a person asked about.
    assert record.note_viewers((ALICE, Viewer(name="Sam", role="supervisor", read_only=True))) == ()


def test_a_transfer_allowed_drops_control() -> None:
    record = _record()
    receipt = record.person(_person(transfer=True), True, 2.0)
    assert receipt.decision == "transfer_allowed"
    assert receipt.granted == ("screen:view",)
    assert not record.permits("input")
    assert record.operator == "Bob (helpdesk)"


def test_the_prompt_names_the_person_first_in_japanese() -> None:
    text = format_person_prompt(_person(), "ja")
    assert "Bob (helpdesk)（オペレータ）があなたの画面を見ることを希望しています。許可しますか？" in text
    hostile = ConsentRequest(
        id="2", session_id=S, operator="A", scopes=("screen:view",), viewer="\x1b[2JEve", viewer_account="eve"
    )
    assert "\x1b" not in format_person_prompt(hostile, "en")
