"""Console panels in words a person reads: inventory in human units (GB, GHz) without raw keys or
``null``, end reasons in the page's language (no ``ended by bob`` in Japanese), the supervisor's
audit log as a table with filters, and the keyboard shortcuts. Real broker, Debian's Chromium."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from tests.browser import console_login, record
from tests.helpers import BrokerProcess, add_operator

pytestmark = [pytest.mark.browser]


def _call(page: Page, module: str, function: str, *args: Any) -> Any:
    return page.evaluate(
        "([m, f, args]) => import(m).then((mod) => mod[f](...args))", [f"/js/{module}", function, list(args)]
    )


def test_inventory_values_and_reasons_read_as_words(
    console_broker: BrokerProcess, browser: BrowserContext, origin: str
) -> None:
    page = browser.new_page()
    log = record(page)
    page.goto(origin + "/")
    page.wait_for_selector("body[data-ready=true]")
    assert _call(page, "inventory.js", "formatItem", "memory", {"total_bytes": 17179869184}) == "16.0 GB"
    assert _call(
        page, "inventory.js", "formatItem", "volume_free", {"volume": "C:", "free_bytes": 81525809152}
    ) == ("C:：空き 75.9 GB")
    cpu = _call(
        page, "inventory.js", "formatItem", "cpu", {"model": "Intel Core i5", "mhz": 2400, "mhz_kind": "max"}
    )
    assert cpu == "Intel Core i5\n2.40 GHz"
    router = _call(
        page,
        "inventory.js",
        "formatItem",
        "router",
        {
            "model": {
                "manufacturer": "NEC",
                "model_name": "WX3000HP",
                "model_number": None,
                "friendly_name": None,
            }
        },
    )
    assert router == "メーカー: NEC\n機種: WX3000HP"
    browser_item = _call(
        page,
        "inventory.js",
        "formatItem",
        "default_browser",
        {"id": "firefox", "name": "Firefox", "version": None},
    )
    assert "null" not in browser_item
    assert "バージョン不明" in browser_item
    assert _call(page, "session-page.js", "reasonText", "ended by bob") == "bob が終了しました"
    assert (
        _call(page, "session-page.js", "reasonText", "operator_lost")
        == "オペレータの接続が切れたままになりました"
    )
    page.get_by_test_id("lang-switch").click()
    assert _call(page, "session-page.js", "reasonText", "ended by bob") == "bob ended it"
    assert _call(
        page, "inventory.js", "formatItem", "volume_free", {"volume": "/", "free_bytes": 1073741824}
    ) == ("/: 1.0 GB free")
    assert log.page_errors == []


def test_audit_table_filters_and_shortcuts(
    console_broker: BrokerProcess, browser: BrowserContext, origin: str
) -> None:
    sue = add_operator(console_broker, "sue", role="supervisor")
    page = browser.new_page()
    log = record(page)
    console_login(page, origin, "sue", sue.password, sue.totp(), new_password="sue-new-password-1")
    page.get_by_test_id("nav-supervisor").click()
    rows = page.get_by_test_id("audit-row")
    expect(rows).not_to_have_count(0)
    total = rows.count()
    # Details are "key: value" lines, not JSON.
    assert "{" not in (page.get_by_test_id("audit-body").text_content() or "")
    # Filter by action: only that action is left.
    page.get_by_test_id("audit-filter-action").select_option("operator.password_changed")
    expect(rows).not_to_have_count(0)
    for action in rows.evaluate_all("(rs) => rs.map((r) => r.dataset.action)"):
        assert action == "operator.password_changed"
    expect(page.get_by_test_id("audit-shown")).to_contain_text(f"{total}件中")
    # Free text over actor, subject and details; nothing matches a nonsense word.
    page.get_by_test_id("audit-filter-action").select_option("")
    page.get_by_test_id("audit-filter-text").fill("no-such-word-xyz")
    expect(rows).to_have_count(0)
    expect(page.get_by_test_id("audit-empty")).to_be_visible()
    page.get_by_test_id("audit-filter-text").fill("sue")
    expect(rows).not_to_have_count(0)

    # Alt+Shift+Q: to the queue (shortcuts never reach a subscriber).
    page.keyboard.press("Alt+Shift+KeyQ")
    expect(page.get_by_test_id("page-queue")).to_be_visible()
    assert log.page_errors == []


def test_the_dispatcher_drops_a_message_of_another_session(
    console_broker: BrokerProcess, browser: BrowserContext, origin: str
) -> None:
    """The one dispatcher (js/dispatch.js): a view only ever takes its own session's messages;
    the main connection (no view) takes none that belong to a session (第33条)."""
    page = browser.new_page()
    page.goto(origin + "/")
    page.wait_for_selector("body[data-ready=true]")
    result = page.evaluate(
        """async () => {
          const { dispatch } = await import("/js/dispatch.js");
          const { SessionView } = await import("/js/session.js");
          const view = new SessionView("s-AAAA1111", { readOnly: false });
          const chat = (id) => ({ type: "chat", session_id: id, sender: "subscriber", text: "x", time: 0 });
          dispatch(chat("s-BBBB2222"), view);
          dispatch({ type: "inventory", session_id: "s-BBBB2222", items: [] }, view);
          dispatch({ type: "session_state", session_id: "s-BBBB2222", phase: "ended", scopes: {} }, view);
          const foreignAfterOthers = view.foreign;
          dispatch(chat("s-AAAA1111"), view);
          dispatch(chat("s-AAAA1111"), null);  // on the main connection: nobody's
          return [foreignAfterOthers, view.foreign, view.chat.length, view.phase, view.inventory];
        }"""
    )
    assert result == [3, 3, 1, "waiting", None]
