"""ConsentState: default deny, timeout = deny, withdraw / grant at any time, end (第31条1項④, 別紙5)."""

from __future__ import annotations

import pytest

from agent.consent import (
    ALL_SCOPES,
    INVENTORY_SCOPES,
    NO_OPERATOR,
    ConsentEnded,
    ConsentState,
    UnknownScope,
    WrongSession,
    is_scope,
    order_scopes,
    scope_label,
)
from protocol.messages import ConsentRequest
from protocol.receipts import parse_receipt, receipt_bytes

SESSION = "sess-00000001"
SERIAL = "0a1b2c"
T0 = 1_700_000_000.0


def request(*scopes: str, session_id: str = SESSION, operator: str = "山田") -> ConsentRequest:
    return ConsentRequest(id="c1", session_id=session_id, operator=operator, scopes=scopes, timeout=60)


@pytest.fixture
def state() -> ConsentState:
    return ConsentState(session_id=SESSION, serial=SERIAL)


def test_starts_with_nothing_allowed(state: ConsentState) -> None:
    assert state.granted == frozenset()
    for scope in ALL_SCOPES:
        assert not state.allows(scope)


def test_answer_grants_only_what_was_chosen_and_denies_the_rest(state: ConsentState) -> None:
    receipt = state.answer(request("screen:view", "input:control", "inventory:os"), {"screen:view"}, T0)
    assert receipt.decision == "answered"
    assert receipt.session_id == SESSION
    assert receipt.serial == SERIAL
    assert receipt.operator == "山田"
    assert receipt.asked == ("screen:view", "input:control", "inventory:os")
    assert receipt.granted == ("screen:view",)
    assert receipt.denied == ("input:control", "inventory:os")
    assert receipt.time == T0
    assert state.allows("screen:view")
    assert not state.allows("input:control")
    assert not state.allows("inventory:os")


def test_answer_ignores_scopes_that_were_not_asked(state: ConsentState) -> None:
    receipt = state.answer(request("screen:view"), {"screen:view", "input:control", "inventory:router"}, T0)
    assert receipt.granted == ("screen:view",)
    assert not state.allows("input:control")
    assert not state.allows("inventory:router")


def test_empty_answer_denies_everything_asked(state: ConsentState) -> None:
    receipt = state.answer(request("screen:view", "input:control"), set(), T0)
    assert receipt.granted == ()
    assert receipt.denied == ("screen:view", "input:control")


def test_earlier_grants_stay_unless_asked_again(state: ConsentState) -> None:
    state.answer(request("screen:view"), {"screen:view"}, T0)
    receipt = state.answer(request("input:control", "inventory:cpu"), {"inventory:cpu"}, T0 + 1)
    assert receipt.granted == ("screen:view", "inventory:cpu")
    assert receipt.denied == ("input:control",)
    # Asked again and not chosen: the newer answer wins.
    receipt = state.answer(request("screen:view"), set(), T0 + 2)
    assert receipt.granted == ("inventory:cpu",)
    assert receipt.denied == ("screen:view",)
    assert not state.allows("screen:view")


def test_timeout_denies_everything_asked(state: ConsentState) -> None:
    state.answer(request("inventory:os"), {"inventory:os"}, T0)
    receipt = state.timeout(request("screen:view", "input:control"), T0 + 60)
    assert receipt.decision == "timeout"
    assert receipt.asked == ("screen:view", "input:control")
    assert receipt.denied == ("screen:view", "input:control")
    assert receipt.granted == ("inventory:os",)
    assert not state.allows("screen:view")
    assert not state.allows("input:control")


def test_timeout_revokes_a_scope_asked_again(state: ConsentState) -> None:
    state.answer(request("screen:view"), {"screen:view"}, T0)
    receipt = state.timeout(request("screen:view"), T0 + 1)
    assert receipt.granted == ()
    assert not state.allows("screen:view")


def test_withdraw_removes_scopes_and_names_what_was_in_force(state: ConsentState) -> None:
    state.answer(request("screen:view", "input:control"), {"screen:view", "input:control"}, T0)
    receipt = state.withdraw({"input:control", "inventory:os"}, T0 + 5)
    assert receipt.decision == "withdrawn"
    assert receipt.asked == ()
    assert receipt.granted == ("screen:view",)
    assert receipt.denied == ("input:control",)
    assert receipt.operator == "山田"  # remembered from the request
    assert state.allows("screen:view")
    assert not state.allows("input:control")


def test_withdraw_all(state: ConsentState) -> None:
    state.answer(request("screen:view", "inventory:memory"), {"screen:view", "inventory:memory"}, T0)
    receipt = state.withdraw(ALL_SCOPES, T0 + 1)
    assert receipt.granted == ()
    assert receipt.denied == ("screen:view", "inventory:memory")


def test_grant_on_the_subscribers_own_initiative(state: ConsentState) -> None:
    state.answer(request("screen:view"), {"screen:view"}, T0)
    receipt = state.grant({"input:control"}, T0 + 1)
    assert receipt.decision == "granted"
    assert receipt.asked == ()
    assert receipt.granted == ("screen:view", "input:control")
    assert receipt.denied == ()
    assert state.allows("input:control")


def test_grant_before_any_operator_uses_a_placeholder_name(state: ConsentState) -> None:
    receipt = state.grant({"screen:view"}, T0)
    assert receipt.operator == NO_OPERATOR
    parse_receipt(receipt_bytes(receipt))  # still a receipt the broker accepts


def test_end_clears_everything_and_refuses_later_changes(state: ConsentState) -> None:
    state.answer(request("screen:view", "input:control"), {"screen:view", "input:control"}, T0)
    receipt = state.end(T0 + 9)
    assert receipt.decision == "ended"
    assert receipt.granted == ()
    assert receipt.denied == ("screen:view", "input:control")
    assert state.ended
    assert not state.allows("screen:view")
    with pytest.raises(ConsentEnded):
        state.grant({"screen:view"}, T0 + 10)
    with pytest.raises(ConsentEnded):
        state.answer(request("screen:view"), {"screen:view"}, T0 + 10)
    assert not state.allows("screen:view")


def test_request_for_another_session_is_refused(state: ConsentState) -> None:
    with pytest.raises(WrongSession):
        state.answer(request("screen:view", session_id="other-session"), {"screen:view"}, T0)
    assert state.granted == frozenset()


def test_unknown_scope_is_refused(state: ConsentState) -> None:
    with pytest.raises(UnknownScope):
        state.grant({"files:write"}, T0)
    with pytest.raises(UnknownScope):
        state.withdraw({"Screen:View"}, T0)
    assert state.granted == frozenset()


def test_every_receipt_is_one_the_broker_accepts(state: ConsentState) -> None:
    receipts = [
        state.answer(request("screen:view", "input:control", "inventory:os"), {"screen:view"}, T0),
        state.timeout(request("inventory:router"), T0 + 1),
        state.grant({"input:control"}, T0 + 2),
        state.withdraw({"screen:view"}, T0 + 3),
        state.end(T0 + 4),
    ]
    for receipt in receipts:
        assert parse_receipt(receipt_bytes(receipt)) == receipt


def test_duplicate_scopes_in_a_request_are_asked_once(state: ConsentState) -> None:
    receipt = state.answer(request("screen:view", "screen:view"), set(), T0)
    assert receipt.asked == ("screen:view",)
    assert receipt.denied == ("screen:view",)


def test_scope_labels_japanese_and_english() -> None:
    assert scope_label("screen:view", "ja") == "画面を見る"
    assert scope_label("screen:view", "en") == "View your screen"
    assert scope_label("input:control", "ja") == "マウスとキーボードを操作する"
    assert scope_label("input:control", "en") == "Control your mouse and keyboard"
    assert scope_label("inventory:machine_name", "ja") == "情報の取得: マシン名"
    assert scope_label("inventory:machine_name", "en") == "Collect: Machine name"
    assert scope_label("inventory:os", "ja_JP.UTF-8").startswith("情報の取得: オペレーティングシステム")
    # An item a newer broker asks for is shown by its id, never hidden.
    assert scope_label("inventory:gpu", "en") == "Collect: gpu"


def test_eleven_inventory_items_in_the_order_of_the_terms() -> None:
    assert len(INVENTORY_SCOPES) == 11
    assert INVENTORY_SCOPES[0] == "inventory:os"
    assert INVENTORY_SCOPES[-1] == "inventory:router"
    assert all(is_scope(s) for s in ALL_SCOPES)
    for scope in INVENTORY_SCOPES:
        assert not scope_label(scope, "ja").endswith(scope.split(":")[1])


def test_order_scopes_is_stable() -> None:
    assert order_scopes(
        ["inventory:router", "inventory:zzz", "input:control", "screen:view", "inventory:os"]
    ) == (
        "screen:view",
        "input:control",
        "inventory:os",
        "inventory:router",
        "inventory:zzz",
    )
