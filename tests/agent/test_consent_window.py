"""The consent question as a Tk window (``agent.consent_window``, re-exported by ``agent.prompt``),
on a virtual X screen.
"""

from __future__ import annotations

import asyncio
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping

import pytest

from agent.consent_window import (
    DialogUnavailable,
    ask_consent_dialog,
    gui_available,
    tk_consent_dialog,
)
from protocol.messages import ConsentRequest
from tests.agent.prompting import request
from tests.x11 import xdotool, xvfb


def test_gui_available_follows_the_display() -> None:
    if sys.platform.startswith("linux"):
        assert not gui_available({})
        assert gui_available({"DISPLAY": ":5"})


def test_dialog_without_a_display_is_unavailable() -> None:
    pytest.importorskip("tkinter")
    with pytest.raises(DialogUnavailable):
        tk_consent_dialog(request(), "ja", 1.0, display=":65000")


# -- the Tk dialog on a virtual X screen -----------------------------------------------------------


@pytest.fixture(scope="module")
def display() -> Iterator[str]:
    with xvfb(1024, 768) as d:
        yield d


Rects = Mapping[str, tuple[int, int, int, int]]


class DialogRun:
    """``tk_consent_dialog`` in a worker thread, as the agent runs it; reports the widgets' places."""

    def __init__(self, display: str, req: ConsentRequest, lang: str, timeout: float) -> None:
        self.display = display
        self.rects: queue.Queue[Rects] = queue.Queue()
        self.result: list[set[str] | None] = []
        self.error: list[BaseException] = []
        self.cancel = threading.Event()

        def run() -> None:
            try:
                self.result.append(
                    tk_consent_dialog(
                        req, lang, timeout, display=display, cancel=self.cancel, on_shown=self.rects.put
                    )
                )
            except BaseException as exc:
                self.error.append(exc)

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def shown(self) -> Rects:
        return self.rects.get(timeout=15)

    def click(self, rect: tuple[int, int, int, int]) -> None:
        x, y, w, h = rect
        xdotool(self.display, "mousemove", str(x + min(w // 2, 10)), str(y + h // 2), "click", "1")

    def wait(self, timeout: float = 10.0) -> set[str] | None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "dialog did not close"
        assert not self.error, self.error
        return self.result[0]

    def close(self) -> None:
        self.cancel.set()
        self.thread.join(10)


@pytest.mark.x11
def test_dialog_allow_selected_grants_only_the_ticked_box(display: str) -> None:
    run = DialogRun(display, request("screen:view", "input:control", "inventory:os"), "en", 30)
    try:
        rects = run.shown()
        windows = xdotool(display, "search", "--name", "Remote support permission").split()
        assert windows, "the dialog window is not on the screen"
        run.click(rects["input:control"])
        run.click(rects["allow"])
        assert run.wait() == {"input:control"}
    finally:
        run.close()


@pytest.mark.x11
def test_dialog_in_japanese_deny_all(display: str) -> None:
    run = DialogRun(display, request("screen:view", "inventory:router"), "ja", 30)
    try:
        rects = run.shown()
        # xdotool's --name regex is ASCII-only; compare the window names it reports instead.
        assert "リモートサポートの許可" in _window_names(display)
        run.click(rects["screen:view"])  # ticked, then "deny all" anyway
        run.click(rects["deny"])
        assert run.wait() == set()
    finally:
        run.close()


@pytest.mark.x11
def test_dialog_allow_with_nothing_ticked_allows_nothing(display: str) -> None:
    run = DialogRun(display, request("screen:view", "input:control"), "en", 30)
    try:
        rects = run.shown()
        run.click(rects["allow"])
        assert run.wait() == set()
    finally:
        run.close()


@pytest.mark.x11
def test_dialog_times_out_to_none(display: str) -> None:
    run = DialogRun(display, request("screen:view"), "en", 0.5)
    try:
        run.shown()
        started = time.monotonic()
        assert run.wait() is None
        assert time.monotonic() - started < 5
        assert not _search_quietly(display, "Remote support permission")
    finally:
        run.close()


@pytest.mark.x11
async def test_ask_consent_dialog_cancelled_closes_the_window(display: str) -> None:
    task = asyncio.create_task(
        ask_consent_dialog(request("screen:view", timeout=30), lang="en", display=display)
    )
    deadline = time.monotonic() + 15
    while True:
        found = await asyncio.to_thread(
            lambda: _search_quietly(display, "Remote support permission"),
        )
        if found:
            break
        assert time.monotonic() < deadline, "dialog never appeared"
        await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    deadline = time.monotonic() + 10
    while await asyncio.to_thread(lambda: _search_quietly(display, "Remote support permission")):
        assert time.monotonic() < deadline, "dialog stayed open after cancel"
        await asyncio.sleep(0.05)


def _window_names(display: str) -> list[str]:
    return [
        xdotool(display, "getwindowname", w).strip()
        for w in xdotool(display, "search", "--name", ".").split()
    ]


def _search_quietly(display: str, name: str) -> bool:
    try:
        return bool(xdotool(display, "search", "--onlyvisible", "--name", name).split())
    except subprocess.CalledProcessError:  # xdotool exits 1 when nothing matches
        return False
