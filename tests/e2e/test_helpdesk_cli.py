"""The operator's scriptable command line, as a helpdesk script would use it: login (with the
one-time password change), queue, claim by code, watch saving the screen, send-input, end."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agent.sharing import pattern_pixels
from tests.helpers import (
    PYTHON,
    ROOT,
    BrokerProcess,
    add_operator,
    child_env,
    confirm_control,
    enrolled_agent,
    start_support,
)

pytestmark = pytest.mark.e2e


def helpdesk(state: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "helpdesk", "--state", str(state), *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=child_env(),
        cwd=ROOT,
        timeout=90,
        check=False,
    )


def helpdesk_login(
    broker: BrokerProcess, state: Path, name: str, totp: str, stdin: str
) -> subprocess.CompletedProcess[str]:
    """``helpdesk login`` against ``broker``, the password (and a new one, if asked) on stdin."""
    return helpdesk(
        state,
        "login",
        "--broker",
        broker.url,
        "--ca",
        str(broker.data_dir / "ca.pem"),
        "--name",
        name,
        "--totp",
        totp,
        "--password-stdin",
        stdin=stdin,
    )


def test_scripted_operator_session(broker: BrokerProcess, tmp_path: Path) -> None:
    state = tmp_path / "op" / "session.json"
    enrolled_agent(broker, tmp_path / "agent", "C-1200")
    frank = add_operator(broker, "frank")
    support = start_support(tmp_path / "agent", "--test-pattern")
    try:
        code = support.support_code()
        login = helpdesk_login(
            broker, state, "frank", frank.totp(), f"{frank.password}\nfrank-new-password-1\n"
        )
        assert login.returncode == 0, login.stderr
        assert "password changed" in login.stdout
        assert state.stat().st_mode & 0o777 == 0o600
        assert "C-1200" in helpdesk(state, "queue").stdout

        claimed = helpdesk(state, "claim", code, "--scope", "screen:view", "--scope", "input:control")
        assert claimed.returncode == 0, claimed.stderr
        session = claimed.stdout.strip()
        support.wait_for("Control your mouse and keyboard")
        support.type("a")
        confirm_control(support)  # control needs a typed yes (issue 11)

        out = tmp_path / "screens"
        watcher: list[subprocess.CompletedProcess[str]] = []
        thread = threading.Thread(
            target=lambda: watcher.append(
                helpdesk(state, "watch", session, "--out", str(out), "--updates", "3")
            )
        )
        thread.start()
        thread.join(60)
        assert watcher, "watch did not finish"
        assert watcher[0].returncode == 0, watcher[0].stderr
        assert "3 updates" in watcher[0].stdout
        assert len(list(out.glob("*.bin"))) == 3
        picture = np.asarray(Image.open(out / "screen.png").convert("RGB"))
        expected = pattern_pixels(640, 400)[..., 2::-1]
        assert np.array_equal(picture[40:], expected[40:])  # below the moving block

        sent = helpdesk(state, "send-input", session, "--move", "7", "8")
        assert sent.returncode == 0, sent.stderr
        support.wait_for("input applied: move 7,8")

        ended = helpdesk(state, "end", session)
        assert ended.returncode == 0, ended.stderr
        assert support.proc.wait(30) == 0
        assert "logged out" in helpdesk(state, "logout").stdout
        assert not state.exists()
        assert helpdesk(state, "queue").returncode == 2  # no token any more
    finally:
        support.stop()


def test_wrong_password_is_a_clear_error(broker: BrokerProcess, tmp_path: Path) -> None:
    grace = add_operator(broker, "grace")
    result = helpdesk_login(broker, tmp_path / "s.json", "grace", grace.totp(), "not the password\n")
    assert result.returncode == 2
    assert "error [login_failed]" in result.stderr
    assert not (tmp_path / "s.json").exists()
