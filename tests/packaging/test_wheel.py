"""The wheel as a new user gets it: built from the sources, installed into a fresh venv with only
the agent's extra, the console served by the installed broker (every file ``index.html`` names
answers 200 and its JavaScript runs), the agent's help and inventory preview.

Issue 16: ``pip install .`` shipped no ``broker/static/js/*`` (``/js/app.js`` was 404, the login
button did nothing), installed no console scripts, and ``request-support`` without numpy died with
``ModuleNotFoundError``. Each of these is asserted here on the installed package, run from a
directory outside the worktree with no PYTHONPATH.
"""

from __future__ import annotations

import re
import subprocess
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.browser import chromium, record
from tests.helpers import LISTEN_RE, OutputTail, wait_until
from tests.packaging.conftest import ROOT, Built, Venv, clean_env, run

pytestmark = [pytest.mark.packaging, pytest.mark.e2e]

STATIC = ROOT / "broker" / "static"
PACKAGES = ("protocol", "certs", "broker", "agent", "wire", "helpdesk")
SCRIPTS = ("isp-broker", "isp-agent", "isp-helpdesk", "isp-agent-desktop")


@dataclass(frozen=True)
class Installed:
    venv: Venv
    home: Path
    without_extra: subprocess.CompletedProcess[str]
    """``isp-agent request-support`` before the ``agent`` extra was installed, without a display."""


def call(
    venv: Venv, script: str, *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv.bin / script), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(**(env or {})),
        stdin=subprocess.DEVNULL,
        check=False,
    )


@pytest.fixture(scope="module")
def installed(built: Built, fresh_venv: Venv, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """The wheel alone first (what ``pip install isp-remote-support`` gives), then with ``[agent]``."""
    home = tmp_path_factory.mktemp("user")
    run(fresh_venv.python, "-m", "pip", "install", "-q", built.wheel, cwd=home)
    no_display = {k: "" for k in ("DISPLAY", "WAYLAND_DISPLAY")}
    without = call(
        fresh_venv,
        "isp-agent",
        "--data-dir",
        str(home / "agent"),
        "request-support",
        cwd=home,
        env=no_display,
    )
    run(fresh_venv.python, "-m", "pip", "install", "-q", f"{built.wheel}[agent]", cwd=home)
    return Installed(venv=fresh_venv, home=home, without_extra=without)


def test_wheel_and_sdist_hold_every_console_file_and_typing_marker(built: Built) -> None:
    served = sorted(p.relative_to(ROOT).as_posix() for p in STATIC.rglob("*") if p.is_file())
    assert "broker/static/js/app.js" in served
    with zipfile.ZipFile(built.wheel) as wheel:
        names = set(wheel.namelist())
    missing = [name for name in served if name not in names]
    assert missing == [], f"not in the wheel: {missing}"
    assert [f"{p}/py.typed" for p in PACKAGES if f"{p}/py.typed" not in names] == []
    with tarfile.open(built.sdist) as sdist:
        in_sdist = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    assert [name for name in served if name not in in_sdist] == []
    assert {"agent/desktop/__init__.py", "agent/service/__init__.py"} <= in_sdist


def test_console_scripts_are_installed(installed: Installed) -> None:
    missing = [s for s in SCRIPTS if not (installed.venv.bin / s).exists()]
    assert missing == []
    code = "import agent, broker; print(agent.__file__)"
    where = call(installed.venv, "python", "-c", code, cwd=installed.home)
    assert str(installed.venv.root) in where.stdout, "the installed package, not the worktree, must run"


def test_request_support_without_the_agent_extra_says_what_is_missing(installed: Installed) -> None:
    result = installed.without_extra
    out = result.stdout + result.stderr
    assert result.returncode == 2, out
    assert "[missing_dependency]" in out
    assert "isp-remote-support[agent]" in out
    assert "Traceback" not in out
    assert "ModuleNotFoundError" not in out


def test_agent_help_and_inventory_preview_from_the_installed_package(installed: Installed) -> None:
    help_ = call(installed.venv, "isp-agent", "--help", cwd=installed.home)
    assert help_.returncode == 0, help_.stderr
    assert "request-support" in help_.stdout
    assert "service" in help_.stdout
    preview = call(
        installed.venv, "isp-agent", "--lang", "ja", "--data-dir", str(installed.home / "agent"),
        "inventory", "--preview", "--router-target", "127.0.0.1:9", cwd=installed.home,
    )  # fmt: skip
    assert preview.returncode == 0, preview.stdout + preview.stderr
    assert "何も送信していません" in preview.stdout
    assert "別紙5 (1)" in preview.stdout
    # With the extra, screen sharing's parts import.
    code = "import agent.sharing, agent.screen.encode"
    imports = call(installed.venv, "python", "-c", code, cwd=installed.home)
    assert imports.returncode == 0, imports.stderr


def _references(index_html: str) -> list[str]:
    """Every script and stylesheet ``index.html`` names (same-origin paths)."""
    scripts = re.findall(r'<script[^>]*\ssrc="([^"]+)"', index_html)
    styles = re.findall(r'<link[^>]*rel="stylesheet"[^>]*href="([^"]+)"', index_html)
    return scripts + styles


@pytest.mark.browser
def test_installed_broker_serves_a_working_console(installed: Installed) -> None:
    data = installed.home / "broker"
    proc = subprocess.Popen(
        [str(installed.venv.bin / "isp-broker"), "--data-dir", str(data), "serve", "--port", "0",
         "--hours", "00:00-00:00"],
        cwd=installed.home, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=clean_env(),
    )  # fmt: skip
    assert proc.stdout is not None
    output = OutputTail(proc.stdout)
    try:

        def listening() -> int | None:
            if proc.poll() is not None:
                raise AssertionError(f"broker exited early:\n{output.text()}")
            match = LISTEN_RE.search(output.text())
            return int(match.group(1)) if match else None

        port = wait_until(listening, what="the installed broker to listen")
        origin = f"https://127.0.0.1:{port}"
        with chromium(server_cert=data / "server.pem") as context:
            page = context.new_page()
            log = record(page)
            statuses: dict[str, int] = {}
            page.on("response", lambda r: statuses.__setitem__(r.url, r.status))
            response = page.goto(origin + "/")
            assert response is not None
            assert response.status == 200
            page.wait_for_selector("body[data-ready=true]", timeout=15_000)  # set by app.js
            references = _references(response.text())
            assert "/js/app.js" in references
            assert "/style.css" in references
            for ref in references:
                assert statuses.get(origin + ref) == 200, (ref, statuses)
                assert page.evaluate("async (u) => (await fetch(u)).status", ref) == 200, ref
            # Modules app.js imports were loaded too, each 200.
            js = {url: status for url, status in statuses.items() if url.endswith(".js")}
            assert len(js) >= 2, js
            assert [url for url, status in statuses.items() if status != 200] == []
            # The login button works: the form goes to the broker and its refusal is shown.
            page.get_by_test_id("login-name").fill("nobody")
            page.get_by_test_id("login-password").fill("not-a-password")
            page.get_by_test_id("login-totp").fill("000000")
            page.get_by_test_id("login-submit").click()
            error = page.get_by_test_id("login-error")
            error.wait_for(state="visible", timeout=15_000)
            assert error.inner_text().strip()
            assert log.page_errors == []
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
