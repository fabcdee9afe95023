"""The 別紙5 inventory in the console, against a real broker, a real agent
(``request-support --test-pattern --router-target …``) and a fake UPnP gateway on 127.0.0.1:
the operator ticks items and asks; the subscriber grants some, refuses others and types a router
login; the panel shows exactly the granted items with their values and the gateway's model; the
login stays hidden (not even sent to the page) until "reveal", which the broker audits once."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, expect

from agent.consent import scope_label
from agent.inventory.collect import collect, default_collector, normalize_cert_serial
from agent.inventory.items import Item
from tests.agent.inventory.gateway import FakeGateway, ssdp_reply
from tests.browser import SCREENSHOTS, console_login, record
from tests.helpers import (
    BrokerProcess,
    SupportProcess,
    add_operator,
    enrolled_agent,
    start_support,
    wait_until,
)

pytestmark = [pytest.mark.browser, pytest.mark.e2e]


ASKED = ("os", "cert_id", "machine_name", "cpu", "memory", "router")
"""What the operator ticks, in the console's (別紙5) order: the agent numbers them 1..6."""
GRANTED = ("os", "cert_id", "machine_name", "router")
REFUSED = ("cpu", "memory")
ACCOUNT, PASSWORD = "admin-ines", "Rt-s3cret-7731"
ROUTER_MODEL = "WX3000HP"  # modelName in tests/agent/inventory/fixtures/router/igd_description.xml


def _agent_says(support: SupportProcess, text: str, *, count: int = 1) -> str:
    try:
        return support.wait_for(text, count=count)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- agent output ---\n{support.output.text()[-3000:]}") from None


def _audit(broker: BrokerProcess, action: str) -> list[tuple[object, ...]]:
    db = sqlite3.connect(broker.data_dir / "broker.sqlite3")
    try:
        return db.execute(
            "SELECT actor, subject FROM audit WHERE action = ? ORDER BY seq", (action,)
        ).fetchall()
    finally:
        db.close()


def _expected_values(serial: str) -> dict[str, str]:
    """What this machine's collectors give (the agent runs the same ones), as the panel words it."""
    results = collect(
        [Item.OS, Item.MACHINE_NAME],
        collector=default_collector(),
        cert_serial=serial,
        router_probe=None,
        router_credentials=None,
    )
    values = {r.item.value: r.value for r in results if r.available}
    os_value = values["os"]
    assert isinstance(os_value, dict)
    return {
        "os": str(os_value["pretty_name"]),
        "machine_name": str(values["machine_name"]),
        "cert_id": normalize_cert_serial(serial),
    }


def test_inventory_panel_consent_values_and_audited_reveal(
    console_broker: BrokerProcess, browser: BrowserContext, origin: str, tmp_path: Path, gateway: FakeGateway
) -> None:
    gateway.replies = lambda port: [ssdp_reply(f"http://127.0.0.1:{port}/rootDesc.xml")]
    serial = enrolled_agent(console_broker, tmp_path / "agent", "C-300")
    expected = _expected_values(serial)
    ines = add_operator(console_broker, "ines")
    page = browser.new_page()
    page.clock.install()  # time still flows; fast_forward below skips the minute the login stays shown
    log = record(page)
    console_login(page, origin, "ines", ines.password, ines.totp(), new_password="ines-new-password-1")

    host, port = gateway.target
    support = start_support(tmp_path / "agent", "--test-pattern", "--router-target", f"{host}:{port}")
    try:
        page.get_by_test_id("claim-code").fill(support.support_code())
        page.get_by_test_id("claim-submit").click()
        expect(page.get_by_test_id("page-session")).to_be_visible()
        session_id = page.get_by_test_id("page-session").get_attribute("data-session-id")
        assert session_id
        _agent_says(support, "View your screen")
        support.type("1")
        expect(page.get_by_test_id("scope-status-screen-view")).to_have_attribute("data-status", "granted")
        canvas = page.get_by_test_id("screen-canvas")
        wait_until(lambda: int(canvas.get_attribute("data-keyframes") or 0) >= 1, what="a keyframe")
        expect(page.get_by_test_id("inventory-empty")).to_be_visible()
        expect(page.get_by_test_id("reveal-credentials")).to_be_hidden()

        # Nothing ticked: nothing is asked.
        page.get_by_test_id("request-inventory").click()
        expect(page.get_by_test_id("scope-message")).not_to_be_empty()
        assert not any('"scope_request"' in frame for frame in log.sent)

        # The operator ticks six items and asks once; each is asked for separately.
        for item in ASKED:
            page.get_by_test_id(f"scope-check-inventory-{item}").check()
        page.get_by_test_id("request-inventory").click()
        for item in ASKED:
            expect(page.get_by_test_id(f"scope-status-inventory-{item}")).to_have_attribute(
                "data-status", "requested"
            )
            expect(page.get_by_test_id(f"scope-check-inventory-{item}")).to_be_disabled()
        expect(page.get_by_test_id("scope-status-inventory-volume_free")).to_have_attribute(
            "data-status", "none"
        )

        # The subscriber sees them numbered in that order, allows 1,2,3,6 and types a router login.
        prompt = _agent_says(support, "Collect: ")
        for n, item in enumerate(ASKED, start=1):
            assert f"  {n}. {scope_label('inventory:' + item, 'en')}" in prompt, (n, item, prompt[-2000:])
        support.type("1,2,3,6")
        _agent_says(support, "Router login account")
        support.type(ACCOUNT)
        _agent_says(support, "Router login password")
        support.type(PASSWORD)

        for item in GRANTED:
            expect(page.get_by_test_id(f"scope-status-inventory-{item}")).to_have_attribute(
                "data-status", "granted"
            )
            expect(page.get_by_test_id(f"scope-status-inventory-{item}")).to_have_text("許可")
        for item in REFUSED:
            expect(page.get_by_test_id(f"scope-status-inventory-{item}")).to_have_attribute(
                "data-status", "denied"
            )
            expect(page.get_by_test_id(f"scope-status-inventory-{item}")).to_have_text("拒否")
            expect(page.get_by_test_id(f"scope-check-inventory-{item}")).to_be_enabled()  # may ask again

        # The panel: exactly the granted items, in order, with their values.
        panel = page.get_by_test_id("inventory-list")
        expect(panel.locator("dd")).to_have_count(len(GRANTED))
        expect(page.get_by_test_id("inventory-empty")).to_be_hidden()
        items = panel.locator("dd").evaluate_all("(nodes) => nodes.map((n) => n.dataset.testid)")
        assert items == [f"inventory-{item}" for item in GRANTED]
        for item in REFUSED:
            expect(page.get_by_test_id(f"inventory-{item}")).to_have_count(0)
        for item in GRANTED:
            expect(page.get_by_test_id(f"inventory-{item}")).to_have_attribute("data-available", "true")
        expect(page.get_by_test_id("inventory-os")).to_contain_text(expected["os"])
        expect(page.get_by_test_id("inventory-machine_name")).to_have_text(expected["machine_name"])
        expect(page.get_by_test_id("inventory-cert_id")).to_have_text(expected["cert_id"])
        router = page.get_by_test_id("inventory-router")
        expect(router).to_contain_text(f"機種: {ROUTER_MODEL}")  # words, not raw JSON or dotted keys
        expect(panel).not_to_contain_text("null")
        expect(panel).not_to_contain_text("model.")
        expect(router).not_to_contain_text(PASSWORD)
        expect(router).not_to_contain_text(ACCOUNT)
        _agent_says(support, "Sent to the operator: ")

        # The login is hidden: not on the page, not even in what the broker sent it.
        reveal = page.get_by_test_id("reveal-credentials")
        expect(reveal).to_be_visible()
        expect(page.get_by_test_id("credentials")).to_be_hidden()
        assert PASSWORD not in page.content()
        assert ACCOUNT not in page.content()
        assert not any(PASSWORD in frame or ACCOUNT in frame for frame in log.received)
        assert _audit(console_broker, "inventory.reveal") == []

        # Reveal: shown, and audited once, by this operator, for this session.
        reveal.click()
        expect(page.get_by_test_id("credentials")).to_be_visible()
        expect(page.get_by_test_id("credentials-account")).to_have_text(ACCOUNT)
        expect(page.get_by_test_id("credentials-password")).to_have_text(PASSWORD)
        wait_until(lambda: len(_audit(console_broker, "inventory.reveal")) >= 1, what="the reveal audit")
        assert _audit(console_broker, "inventory.reveal") == [("operator:ines", session_id)]
        shown = console_broker.cli("audit", "log", "--subject", session_id).stdout
        assert len(re.findall(r"inventory\.reveal", shown)) == 1, shown
        assert "operator:ines" in shown

        page.get_by_test_id("topbar").scroll_into_view_if_needed()
        page.screenshot(path=str(SCREENSHOTS / "inventory.png"), full_page=True)

        # The login leaves the page again: on "hide" at once, else by itself after a minute.
        expect(page.get_by_test_id("reveal-note")).to_contain_text("1分後に自動で消えます")
        page.get_by_test_id("hide-credentials").click()
        expect(page.get_by_test_id("credentials")).to_be_hidden()
        assert PASSWORD not in page.content()
        reveal.click()
        expect(page.get_by_test_id("credentials-password")).to_have_text(PASSWORD)
        page.clock.fast_forward("00:59")
        expect(page.get_by_test_id("credentials-password")).to_have_text(PASSWORD)
        page.clock.fast_forward("00:02")
        expect(page.get_by_test_id("credentials")).to_be_hidden()
        assert PASSWORD not in page.content()
        assert ACCOUNT not in page.content()
        wait_until(lambda: len(_audit(console_broker, "inventory.reveal")) >= 2, what="the 2nd reveal audit")

        # Ending the session hides the login again.
        page.get_by_test_id("end-session").click()
        page.get_by_test_id("end-session").click()
        expect(page.get_by_test_id("session-phase")).to_have_attribute("data-phase", "ended")
        expect(reveal).to_be_hidden()
        assert support.proc.wait(30) == 0
        assert _audit(console_broker, "inventory.reveal") == [("operator:ines", session_id)] * 2
        assert log.foreign_requests(origin) == []
        assert log.page_errors == []
    finally:
        support.stop()
