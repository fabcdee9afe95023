"""Debian's Chromium driven by Playwright for Python, for the operator-console tests.

Never ``playwright install``: the browser is the distribution's ``/usr/bin/chromium``. Each
launch gets a fresh temporary profile (``launch_persistent_context``), so no cookie, cache or
storage survives from one test to the next, and the flags turn off everything that would talk
to Google (background networking, component updates, sync) so "no request leaves the broker's
origin" can be asserted.

TLS: the broker's certificate is issued by its own CA. When the caller names the server
certificate, Chromium trusts exactly that key (``--ignore-certificate-errors-spki-list``, which
Chromium honours only with a ``--user-data-dir``, as a persistent context has); otherwise it
falls back to ``ignore_https_errors``, acceptable only because these tests talk to 127.0.0.1.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from playwright.sync_api import (
    BrowserContext,
    ConsoleMessage,
    Page,
    Request,
    ViewportSize,
    WebSocket,
    sync_playwright,
)

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[1] / "docs" / "screenshots"
"""Where the console tests write the README's and docs' screenshots."""
CHROMIUM_ARGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--disable-features=Translate,OptimizationHints,MediaRouter",
)
VIEWPORT: ViewportSize = {"width": 1280, "height": 860}


def require_chromium() -> None:
    """Skip (not fail) on a machine without Debian's Chromium."""
    if not CHROMIUM.exists() and shutil.which("chromium") is None:
        pytest.skip("needs /usr/bin/chromium (apt-get install chromium)")


def spki_sha256(cert_pem: bytes) -> str:
    """Base64 SHA-256 of a certificate's SubjectPublicKeyInfo, as Chromium's SPKI list wants it."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii")


@contextlib.contextmanager
def chromium(
    *, server_cert: Path | None = None, locale: str = "ja-JP", viewport: ViewportSize | None = None
) -> Iterator[BrowserContext]:
    """A headless Chromium context with a throw-away profile; closed and deleted on exit."""
    require_chromium()
    args = list(CHROMIUM_ARGS)
    if server_cert is not None:
        args.append(f"--ignore-certificate-errors-spki-list={spki_sha256(server_cert.read_bytes())}")
    with tempfile.TemporaryDirectory(prefix="console-chromium-") as profile, sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            profile,
            executable_path=str(CHROMIUM),
            headless=True,
            args=args,
            ignore_https_errors=server_cert is None,
            locale=locale,
            viewport=viewport or VIEWPORT,
            service_workers="block",
        )
        try:
            yield context
        finally:
            context.close()


@dataclass
class PageLog:
    """What a page did: every request URL, console errors and uncaught exceptions."""

    requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    sent: list[str] = field(default_factory=list)
    """Text frames the page sent on its WebSockets (test diagnostics; includes the login)."""
    received: list[str] = field(default_factory=list)
    """Text frames the page received (binary screen updates are not kept)."""

    def foreign_requests(self, origin: str) -> list[str]:
        """Requests to any origin other than ``origin`` (scheme://host:port); ws(s) counts as the
        same origin when host and port match."""
        want = urlsplit(origin)
        foreign = []
        for url in self.requests:
            got = urlsplit(url)
            if got.scheme in ("data", "blob"):
                continue
            same_scheme = got.scheme in (want.scheme, {"https": "wss", "http": "ws"}.get(want.scheme))
            if not (same_scheme and got.netloc == want.netloc):
                foreign.append(url)
        return foreign


def record(page: Page) -> PageLog:
    """Start recording ``page``'s requests, console errors and page errors."""
    log = PageLog()

    def on_request(request: Request) -> None:
        log.requests.append(request.url)

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            log.console_errors.append(message.text)

    def on_page_error(error: Exception) -> None:
        log.page_errors.append(str(error))

    page.on("request", on_request)
    page.on("console", on_console)
    page.on("pageerror", on_page_error)

    def on_websocket(ws: WebSocket) -> None:
        log.requests.append(ws.url)
        ws.on("framesent", lambda payload: log.sent.append(payload) if isinstance(payload, str) else None)
        ws.on(
            "framereceived",
            lambda payload: log.received.append(payload) if isinstance(payload, str) else None,
        )

    page.on("websocket", on_websocket)
    return log


def console_login(page: Page, origin: str, name: str, password: str, totp: str, *, new_password: str) -> str:
    """Open the console and log in through the form; answer the first-login password change.

    Returns the password now valid (``new_password`` if the broker asked for a change).
    """
    page.goto(origin + "/")
    page.wait_for_selector("body[data-ready=true]")
    page.get_by_test_id("login-name").fill(name)
    page.get_by_test_id("login-password").fill(password)
    page.get_by_test_id("login-totp").fill(totp)
    page.get_by_test_id("login-submit").click()
    page.wait_for_selector("#page-password:not([hidden]), #page-queue:not([hidden])")
    if page.get_by_test_id("page-password").is_visible():
        page.get_by_test_id("password-new").fill(new_password)
        page.get_by_test_id("password-confirm").fill(new_password)
        page.get_by_test_id("password-submit").click()
        page.get_by_test_id("page-queue").wait_for(state="visible")
        return new_password
    return password
