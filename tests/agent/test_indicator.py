"""The "being watched" indicator: its texts (pure), and the real window under Xvfb (with the
screenshot in docs/screenshots/indicator.png)."""

from __future__ import annotations

import asyncio
import json
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from agent.indicator import describe
from agent.indicator_client import IndicatorProcess
from agent.input.consent_guard import ConsentGuard
from protocol.messages import Viewer
from tests.helpers import ROOT, child_env
from tests.x11 import xdotool, xvfb

SCREENSHOT = ROOT / "docs" / "screenshots" / "indicator.png"


def test_texts_name_who_watches_and_what_is_granted_in_japanese() -> None:
    texts = describe(
        {
            "lang": "ja",
            "granted": ["screen:view", "input:control", "inventory:os"],
            "viewers": [
                {"name": "山田 花子", "role": "operator"},
                {"name": "佐藤", "role": "supervisor", "read_only": True},
            ],
            "notice": "佐藤（スーパーバイザー・閲覧のみ）があなたの画面を見られるようになりました。",
        }
    )
    assert texts["headline"] == "パソコンを操作されています"
    assert texts["who"] == "見ている人: 山田 花子（オペレータ）、佐藤（スーパーバイザー・閲覧のみ）"
    assert texts["what"] == "許可していること: 画面を見る、マウスとキーボードを操作する、情報の取得 1 項目"
    assert "佐藤" in texts["notice"]


def test_texts_in_english_and_names_are_escaped() -> None:
    texts = describe(
        {
            "lang": "en",
            "granted": ["screen:view"],
            "viewers": [{"name": "\x1b[2JEve\u202e", "role": "operator"}],
        }
    )
    assert texts["headline"] == "Your screen is being watched"
    assert texts["who"] == "Watching: \\x1b[2JEve\\u202e (operator)"
    assert texts["what"] == "Allowed: View your screen"


def test_without_the_screen_the_people_are_in_the_session_not_watching() -> None:
    """Control alone (the subscriber never allowed the screen): nobody sees it (DESIGN §2)."""
    viewers = [{"name": "山田", "role": "operator"}]
    ja = describe({"lang": "ja", "granted": ["input:control"], "viewers": viewers})
    assert ja["who"] == "参加している人: 山田（オペレータ）"
    en = describe({"lang": "en", "granted": ["input:control"], "viewers": viewers})
    assert en["who"] == "In the session: 山田 (operator)"


class _Indicator:
    def __init__(self, display: str) -> None:
        env = child_env(DISPLAY=display)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "agent.indicator"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.events.put(json.loads(line))

    def send(self, value: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(value, ensure_ascii=False) + "\n")
        self.proc.stdin.flush()

    def next(self, kind: str, timeout: float = 15.0) -> dict[str, Any]:
        while True:
            event = self.events.get(timeout=timeout)
            if event.get("event") == kind:
                return event


@pytest.mark.x11
def test_the_window_is_on_top_at_the_right_and_its_buttons_report(tmp_path: Path) -> None:
    with xvfb(1024, 640) as display:
        indicator = _Indicator(display)
        try:
            indicator.send(
                {
                    "lang": "ja",
                    "granted": ["screen:view", "input:control"],
                    "viewers": [
                        {"name": "山田 花子 (helpdesk)", "role": "operator"},
                        {"name": "佐藤 (helpdesk)", "role": "supervisor", "read_only": True},
                    ],
                    "notice": "佐藤 (helpdesk)（スーパーバイザー・閲覧のみ）が"
                    "あなたの画面を見られるようになりました。",
                }
            )
            shown = indicator.next("shown")
            x, y, w, h = shown["rect"]
            assert 1024 - 32 <= x + w <= 1024
            assert xdotool(display, "search", "--name", "Remote support in progress").split()
            _screenshot(display, (x - 16, max(0, y - 16), w + 32, h + 32))

            bx, by, bw, bh = shown["buttons"]["end"]
            xdotool(display, "mousemove", str(bx + bw // 2), str(by + bh // 2), "click", "1")
            assert indicator.next("end") == {"event": "end"}
            bx, by, bw, bh = shown["buttons"]["withdraw"]
            xdotool(display, "mousemove", str(bx + bw // 2), str(by + bh // 2), "click", "1")
            assert indicator.next("withdraw_control") == {"event": "withdraw_control"}
            indicator.send({"quit": True})
            assert indicator.proc.wait(10) == 0
        finally:
            if indicator.proc.poll() is None:
                indicator.proc.kill()
            indicator.proc.wait(5)


def _screenshot(display: str, box: tuple[int, int, int, int]) -> None:
    """docs/screenshots/indicator.png: the indicator as Xvfb shows it (mss grabs the X server)."""
    import mss
    from PIL import Image

    x, y, w, h = box
    with mss.MSS(display=display) as grabber:
        shot = grabber.grab({"left": x, "top": y, "width": w, "height": h})
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    Image.frombytes("RGB", shot.size, shot.bgra, "raw", "BGRX").save(SCREENSHOT)


@pytest.mark.x11
async def test_the_guard_follows_the_window_where_the_subscriber_moves_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On a real desktop the subscriber can drag the indicator by its title bar: remote input must be
    refused wherever it stands now, and no longer where it stood (issue 11: not operable remotely)."""

    async def nothing() -> None:
        return None

    with xvfb(1024, 640) as display:
        monkeypatch.setenv("DISPLAY", display)
        monkeypatch.setenv("PYTHONPATH", str(ROOT))
        guard = ConsentGuard()
        client = IndicatorProcess(guard, lang="ja", on_withdraw_control=nothing, on_end=nothing)
        try:
            await client.show(viewers=[Viewer(name="山田", role="operator")], granted=["screen:view"])
            await asyncio.wait_for(client.shown.wait(), 15)
            assert guard.refusal("button", (1000, 20), 0.0) == "protected_window"  # top right
            assert guard.refusal("button", (150, 450), 0.0) is None
            window = xdotool(display, "search", "--name", "Remote support in progress").split()[0]
            xdotool(display, "windowmove", "--sync", window, "100", "400")
            for _ in range(100):  # a hang guard: the window reports its new place at once
                if guard.refusal("button", (150, 450), 0.0) == "protected_window":
                    break
                await asyncio.sleep(0.1)
            assert guard.refusal("button", (150, 450), 0.0) == "protected_window"
            assert guard.refusal("button", (1000, 20), 0.0) is None  # the old place is free again
        finally:
            await client.close()
