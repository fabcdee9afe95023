"""The console's static files as a browser gets them from a real broker: Japanese first, the
English switch, the CSP on every file, nothing fetched from another origin, no console errors,
and the source habits the CSP and the token rule depend on."""

from __future__ import annotations

import http.client
import re
import ssl
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext

from tests.browser import SCREENSHOTS, record
from tests.helpers import BrokerProcess

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "broker" / "static"


def test_login_page_renders_in_japanese_then_english(browser: BrowserContext, origin: str) -> None:
    page = browser.new_page()
    log = record(page)
    response = page.goto(origin + "/")
    assert response is not None
    assert response.status == 200
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "style-src 'self'" in csp
    assert "connect-src 'self'" in csp
    page.wait_for_selector("body[data-ready=true]")

    assert page.evaluate("document.documentElement.lang") == "ja"
    assert page.get_by_test_id("page-login").is_visible()
    assert page.get_by_test_id("login-submit").text_content() == "ログイン"
    assert page.locator("label[for=login-password]").text_content() == "パスワード"
    assert page.title() == "リモートサポート オペレータコンソール"
    assert page.get_by_test_id("lang-switch").text_content() == "English"
    for hidden in ("page-queue", "page-session", "page-supervisor", "logout"):
        assert not page.get_by_test_id(hidden).is_visible()
    assert not page.locator("#nav").is_visible()

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "login.png"))

    page.get_by_test_id("lang-switch").click()
    assert page.evaluate("document.documentElement.lang") == "en"
    assert page.get_by_test_id("login-submit").text_content() == "Log in"
    assert page.locator("label[for=login-password]").text_content() == "Password"
    assert page.title() == "Remote support: operator console"
    assert page.get_by_test_id("lang-switch").text_content() == "日本語"
    page.get_by_test_id("lang-switch").click()
    assert page.get_by_test_id("login-submit").text_content() == "ログイン"

    assert log.foreign_requests(origin) == []
    assert log.console_errors == []
    assert log.page_errors == []


def test_every_static_file_carries_the_csp(console_broker: BrokerProcess) -> None:
    # Plain HTTPS with the broker's CA (verified, not ignored): headers of every file.
    ctx = ssl.create_default_context(cafile=str(console_broker.data_dir / "ca.pem"))
    files = sorted(p.relative_to(STATIC).as_posix() for p in STATIC.rglob("*") if p.is_file())
    assert "index.html" in files
    for name in ["", *files]:
        conn = http.client.HTTPSConnection("127.0.0.1", console_broker.port, context=ctx, timeout=10)
        try:
            conn.request("GET", f"/{name}")
            response = conn.getresponse()
            response.read()
        finally:
            conn.close()
        assert response.status == 200, name
        assert (response.getheader("Content-Security-Policy") or "").startswith("default-src 'none'"), name
        assert response.getheader("X-Content-Type-Options") == "nosniff", name
        if name.endswith(".js"):
            assert (response.getheader("Content-Type") or "").startswith("text/javascript"), name


def test_wrong_login_shows_the_reason_and_stays_on_the_broker(browser: BrowserContext, origin: str) -> None:
    page = browser.new_page()
    log = record(page)
    page.goto(origin + "/")
    page.wait_for_selector("body[data-ready=true]")
    page.get_by_test_id("login-name").fill("nobody")
    page.get_by_test_id("login-password").fill("wrong password")
    page.get_by_test_id("login-totp").fill("123456")
    page.get_by_test_id("login-submit").click()
    error = page.get_by_test_id("login-error")
    error.wait_for(state="visible")
    assert error.text_content() == "オペレータ名、パスワード、またはワンタイムコードが正しくありません。"
    assert page.get_by_test_id("page-login").is_visible()
    # The one WebSocket went to /operator on the broker itself.
    assert any(url.endswith("/operator") and url.startswith("wss://127.0.0.1:") for url in log.requests)
    assert log.foreign_requests(origin) == []
    assert log.page_errors == []


# -- source habits (cheap, no browser) ------------------------------------------------------------


def _sources(*suffixes: str) -> list[Path]:
    return [p for p in STATIC.rglob("*") if p.suffix in suffixes]


def test_html_has_no_inline_script_style_or_handler() -> None:
    for path in _sources(".html"):
        html = path.read_text(encoding="utf-8")
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), path
        assert "<style" not in html, path
        assert not re.search(r"\sstyle\s*=", html), path
        assert not re.search(r"\son[a-z]+\s*=", html, re.IGNORECASE), path
        assert not re.search(r"(src|href)=\"(https?:)?//", html), f"{path}: third-party resource"


def test_scripts_keep_the_token_in_memory_and_never_use_innerhtml() -> None:
    for path in _sources(".js"):
        js = path.read_text(encoding="utf-8")
        code = "\n".join(line for line in js.splitlines() if not line.lstrip().startswith("//"))
        for banned in (
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "localStorage",
            "sessionStorage",
            "document.cookie",
            "indexedDB",
            "eval(",
            "new Function",
            ".style.",
            'setAttribute("style"',
        ):
            assert banned not in code, f"{path.name} uses {banned}"
        assert not re.search(r"https?://", code), f"{path.name} names an absolute URL"


def test_every_i18n_key_exists_in_both_languages() -> None:
    ja_js = (STATIC / "js" / "strings-ja.js").read_text(encoding="utf-8")
    en_js = (STATIC / "js" / "strings-en.js").read_text(encoding="utf-8")
    ja_block = ja_js.split("export const ja = {", 1)[1].split("\n};", 1)[0]
    en_block = en_js.split("export const en = {", 1)[1].split("\n};", 1)[0]
    key = re.compile(r'^\s*"([a-z_.:]+)":', re.MULTILINE)
    ja_keys, en_keys = set(key.findall(ja_block)), set(key.findall(en_block))
    assert ja_keys == en_keys, ja_keys ^ en_keys
    used: set[str] = set()
    for path in _sources(".html", ".js"):
        text = path.read_text(encoding="utf-8")
        used |= set(re.findall(r'data-i18n(?:-placeholder|-label)?="([a-z_.:]+)"', text))
        used |= set(re.findall(r'\bt\("([a-z_.:]+)"', text))
    assert used - ja_keys == set()


def test_no_script_module_is_over_400_lines() -> None:
    """One module per panel (issue 13: app.js had grown to 1,086 lines around one global state);
    the string tables are data and exempt."""
    for path in _sources(".js"):
        if path.name.startswith("strings-"):
            continue
        lines = path.read_text(encoding="utf-8").count("\n")
        assert lines <= 400, f"{path.name} has {lines} lines"
