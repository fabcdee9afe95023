"""The operator's scriptable command line, as a helpdesk script would use it: login (with the
one-time password change), queue, claim by code, watch saving the screen, send-input, end."""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agent.sharing import pattern_pixels
from helpdesk import HelpdeskClient
from tests.helpers import (
    PYTHON,
    ROOT,
    BrokerProcess,
    OutputTail,
    add_operator,
    child_env,
    confirm_control,
    enrolled_agent,
    start_support,
    wait_until,
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


# -- issue 13, item 6: a command line that keeps its word ------------------------------------------


class Interactive:
    """``helpdesk session SESSION`` running, with its standard input and output."""

    def __init__(self, state: Path, session: str) -> None:
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "helpdesk", "--state", str(state), "session", session],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=child_env(),
            cwd=ROOT,
        )
        assert self.proc.stdout is not None
        self.output = OutputTail(self.proc.stdout)

    def type(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def wait_for(self, text: str, count: int = 1) -> None:
        wait_until(lambda: self.output.text().count(text) >= count, timeout=30, what=repr(text))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


async def _raw_scope_request(broker: BrokerProcess, state: Path, session: str, scope: str) -> str:
    """Send a scope_request for ``scope`` without any local check; the code of the broker's answer."""
    import json

    from protocol.messages import Error

    token = json.loads(state.read_text())["token"]
    async with HelpdeskClient(broker.url, cafile=broker.data_dir / "ca.pem") as client:
        await client.auth(token)
        # Written raw: a ScopeRequest naming an unknown scope cannot even be built.
        await client.send_unchecked(
            {"type": "scope_request", "id": "raw-1", "session_id": session, "scopes": [scope]}
        )
        answer = await client.next_event(Error, timeout=10)
        assert isinstance(answer, Error)
        return answer.code


@pytest.fixture
def short_grace(tmp_path: Path) -> Iterator[BrokerProcess]:
    """A broker that ends a session 2 s after its operator left (the default is 30 s)."""
    proc = BrokerProcess(
        tmp_path / "broker-grace", extra_args=("--hours", "00:00-00:00", "--grace", "2")
    ).start()
    try:
        yield proc
    finally:
        proc.stop()


def test_cli_tells_the_truth_and_holds_a_session(short_grace: BrokerProcess, tmp_path: Path) -> None:
    broker = short_grace
    state = tmp_path / "op" / "session.json"
    enrolled_agent(broker, tmp_path / "agent", "C-1300")
    hana = add_operator(broker, "hana")
    assert (
        helpdesk_login(
            broker, state, "hana", hana.totp(), f"{hana.password}\nhana-new-password-1\n"
        ).returncode
        == 0
    )
    support = start_support(tmp_path / "agent", "--test-pattern")
    interactive: Interactive | None = None
    try:
        code = support.support_code()
        queue = helpdesk(state, "queue").stdout.splitlines()
        assert queue[0].split()[:4] == ["SESSION", "CONTRACT", "MACHINE", "WAITING"], queue
        assert "C-1300" in queue[1]

        # Unknown scopes are refused by the command line (exit 2), before anything is sent.
        bad = helpdesk(state, "claim", code, "--scope", "inventory:network")
        assert bad.returncode == 2
        assert "error [invalid_field]" in bad.stderr
        claimed = helpdesk(state, "claim", code)
        assert claimed.returncode == 0, claimed.stderr
        session = claimed.stdout.strip()
        support.wait_for("View your screen")
        support.type("1")

        # `session` holds the session: well past the grace period it is still live.
        interactive = Interactive(state, session)
        interactive.wait_for("holding session")
        interactive.wait_for("state: active")
        time.sleep(4)  # twice the grace period
        assert "ended" not in interactive.output.text()

        # chat exits 0 when the line went out (it used to print `error [unreachable]`, exit 2).
        chat = helpdesk(state, "chat", session, "こんにちは、ハナです")
        assert chat.returncode == 0, chat.stderr
        assert chat.stdout.strip() == "sent"
        support.wait_for("こんにちは、ハナです")
        interactive.wait_for("chat Hana (helpdesk): こんにちは、ハナです")

        # The subscriber's replies are shown by `session` and by `watch`.
        watcher: list[subprocess.CompletedProcess[str]] = []
        thread = threading.Thread(
            target=lambda: watcher.append(
                helpdesk(state, "watch", session, "--out", str(tmp_path / "w"), "--seconds", "6")
            )
        )
        thread.start()
        time.sleep(2)
        support.type("画面が固まりました")
        interactive.wait_for("chat subscriber: 画面が固まりました")
        thread.join(30)
        assert watcher
        assert "chat subscriber: 画面が固まりました" in watcher[0].stdout, watcher[0].stdout

        # An unknown key or scope is an error with a nonzero exit, not "sent".
        key = helpdesk(state, "send-input", session, "--key", "Returnx")
        assert key.returncode == 2
        assert "error [invalid_field]" in key.stderr
        assert "sent" not in key.stdout
        request = helpdesk(state, "request", session, "inventory:network")
        assert request.returncode == 2
        assert "error [invalid_field]" in request.stderr
        # And the protocol refuses it too, whoever sends it (here a client that does not check).
        assert asyncio.run(_raw_scope_request(broker, state, session, "inventory:network")) == "invalid_field"
        assert "network" not in support.output.text()
        # Input without control is refused by the broker: exit 2 and its code.
        refused = helpdesk(state, "send-input", session, "--key", "Enter")
        assert refused.returncode == 2
        assert "error [consent_required]" in refused.stderr

        # The interactive command: input, a refused key, and /end with a wrap-up note.
        interactive.type("/request input:control")
        support.wait_for("Control your mouse and keyboard")
        support.type("a")
        confirm_control(support)  # control needs a typed yes (issue 11)
        interactive.wait_for("input:control=granted")
        interactive.type("/click 10 20")
        support.wait_for("input applied: button 10,20")
        interactive.type("/key Returnx")
        interactive.wait_for("error [invalid_field]")
        interactive.type("/end 再起動で解決")
        assert support.proc.wait(30) == 0
        interactive.wait_for("state: ended")
        assert interactive.proc.wait(10) == 0
        assert "再起動で解決" in broker.cli("audit", "log", "--subject", session).stdout

        # An ended (or unknown) session is a refusal with the broker's code, exit 2.
        for command in (("end", session), ("watch", session, "--out", str(tmp_path / "x"), "--seconds", "5")):
            gone = helpdesk(state, *command)
            assert gone.returncode == 2, (command, gone.stdout, gone.stderr)
            assert gone.stderr.startswith("error ["), gone.stderr

        # A broker that cannot be reached is exit 3, not a refusal.
        broker.stop()
        down = helpdesk(state, "queue")
        assert down.returncode == 3
        assert "error [unreachable]" in down.stderr
    finally:
        if interactive is not None:
            interactive.stop()
        support.stop()


def test_a_session_left_without_a_viewer_ends_after_the_grace(
    short_grace: BrokerProcess, tmp_path: Path
) -> None:
    """What `session` prevents: claimed and left alone, the broker ends it (operator_lost)."""
    state = tmp_path / "op" / "session.json"
    enrolled_agent(short_grace, tmp_path / "agent", "C-1301")
    ivo = add_operator(short_grace, "ivo")
    assert (
        helpdesk_login(
            short_grace, state, "ivo", ivo.totp(), f"{ivo.password}\nivo-new-password-1\n"
        ).returncode
        == 0
    )
    support = start_support(tmp_path / "agent", "--test-pattern")
    try:
        claimed = helpdesk(state, "claim", support.support_code())
        assert claimed.returncode == 0, claimed.stderr
        support.wait_for("View your screen")
        support.type("n")
        assert support.proc.wait(30) == 0  # ended by the broker after 2 s without a viewer
    finally:
        support.stop()


@pytest.mark.x11
def test_send_input_text_types_every_character_on_a_real_screen(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    """`send-input --text "é ü 日本"` typed only the spaces (issue 13): characters missing from the
    keymap now go through a borrowed keycode, read back from an X text field."""
    from tests.console.live import real_agent
    from tests.x11 import TkProbe, xvfb

    state = tmp_path / "op" / "session.json"
    enrolled_agent(broker, tmp_path / "agent", "C-1302")
    jun = add_operator(broker, "jun")
    login = helpdesk_login(broker, state, "jun", jun.totp(), f"{jun.password}\njun-new-password-1\n")
    assert login.returncode == 0, login.stderr
    with xvfb(640, 400) as display, TkProbe(display, x=0, y=0, w=640, h=400) as probe:
        support = real_agent(tmp_path / "agent", display)
        try:
            claimed = helpdesk(state, "claim", support.support_code(), "--scope", "input:control")
            assert claimed.returncode == 0, claimed.stderr
            session = claimed.stdout.strip()
            support.wait_for("Control your mouse and keyboard")
            support.type("a")
            confirm_control(support)  # control needs a typed yes (issue 11)
            holder = Interactive(state, session)  # keeps the session while the commands run
            try:
                holder.wait_for("input:control=granted")
                assert helpdesk(state, "send-input", session, "--click", "100", "200").returncode == 0
                probe.wait_for("click", timeout=10)
                probe.focus()  # the probe reports the click before it focuses its entry
                sent = helpdesk(state, "send-input", session, "--text", "é ü 日本")
                assert sent.returncode == 0, sent.stderr
                wait_until(lambda: probe.text() == "é ü 日本", timeout=10, what="the typed text")
            finally:
                holder.stop()
        finally:
            support.stop()
