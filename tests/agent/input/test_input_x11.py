"""Remote input on a real (virtual) X screen: pointer, clicks, keys, and yielding to local input.

Injected events are read back from the X server itself: the pointer with ``xdotool
getmouselocation``, clicks and typed text from a Tk window (``tests.x11.TkProbe``) that reports
what the server delivered to it. Local input is simulated with ``xdotool`` (XTest), which the
guard cannot tell from a real keyboard, exactly as it should not.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from agent.input.inject import InputInjector, InputRejected, LocalInputGuard
from agent.screen.capture import Monitor
from protocol.messages import InputEvent
from tests.x11 import TkProbe, held_input, xdotool, xvfb

WIDTH, HEIGHT = 800, 600
SCREEN = Monitor(index=1, left=0, top=0, width=WIDTH, height=HEIGHT)
SID = "sess-0001"


@pytest.fixture(scope="module")
def display() -> Iterator[str]:
    with xvfb(WIDTH, HEIGHT) as d:
        yield d


@pytest.fixture
def x_env(display: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """pynput opens the display named by $DISPLAY (it has no parameter for it)."""
    monkeypatch.setenv("DISPLAY", display)
    return display


def _pointer(display: str) -> tuple[int, int]:
    out = dict(part.split(":") for part in xdotool(display, "getmouselocation").split())
    return int(out["x"]), int(out["y"])


def _eventually(check: object, timeout: float = 3.0) -> bool:
    assert callable(check)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return bool(check())


@pytest.mark.x11
def test_move_moves_the_real_pointer(x_env: str) -> None:
    injector = InputInjector(SCREEN)
    injector.apply(InputEvent(session_id=SID, kind="move", x=123, y=45))
    assert _pointer(x_env) == (123, 45)


@pytest.mark.x11
def test_coordinates_are_relative_to_the_shared_monitor(x_env: str) -> None:
    injector = InputInjector(Monitor(index=2, left=100, top=50, width=200, height=100))
    injector.apply(InputEvent(session_id=SID, kind="move", x=10, y=20))
    assert _pointer(x_env) == (110, 70)
    with pytest.raises(InputRejected):
        injector.apply(InputEvent(session_id=SID, kind="move", x=200, y=0))
    assert _pointer(x_env) == (110, 70)


@pytest.mark.x11
def test_click_reaches_a_window(x_env: str) -> None:
    with TkProbe(x_env, x=50, y=50, w=400, h=300) as probe:
        injector = InputInjector(SCREEN)
        injector.apply(InputEvent(session_id=SID, kind="button", button="left", action="click", x=200, y=250))
        assert probe.wait_for("click") == "click 1 200 250"
        assert _pointer(x_env) == (200, 250)
        injector.apply(InputEvent(session_id=SID, kind="button", button="right", action="down", x=210, y=260))
        injector.apply(InputEvent(session_id=SID, kind="button", button="right", action="up"))
        assert probe.wait_for("click") == "click 3 210 260"
        injector.apply(InputEvent(session_id=SID, kind="wheel", dy=2, x=220, y=270))
        assert probe.wait_for("click") == "click 5 220 270"
        assert probe.wait_for("click") == "click 5 220 270"


@pytest.mark.x11
def test_keys_and_text_type_into_a_window(x_env: str) -> None:
    with TkProbe(x_env, x=50, y=50) as probe:
        probe.focus()
        injector = InputInjector(SCREEN)
        injector.apply(InputEvent(session_id=SID, kind="text", text="Hello, World 1!"))
        injector.apply(InputEvent(session_id=SID, kind="key", action="click", key="Backspace"))
        injector.apply(InputEvent(session_id=SID, kind="key", action="click", key="x"))
        injector.apply(InputEvent(session_id=SID, kind="key", action="click", code=0x79))  # X keysym "y"
        injector.apply(InputEvent(session_id=SID, kind="key", action="down", key="shift"))
        injector.apply(InputEvent(session_id=SID, kind="key", action="click", key="z"))
        injector.release_all()  # shift goes up
        injector.apply(InputEvent(session_id=SID, kind="key", action="click", key="z"))
        assert _eventually(lambda: probe.text() == "Hello, World 1xyZz")


@pytest.mark.x11
def test_unknown_key_name_is_rejected(x_env: str) -> None:
    with pytest.raises(InputRejected):
        InputInjector(SCREEN).apply(InputEvent(session_id=SID, kind="key", action="click", key="NoSuchKey"))


@pytest.mark.x11
def test_guard_ignores_our_input_and_pauses_on_local_input(x_env: str) -> None:
    with LocalInputGuard(pause_seconds=2.0) as guard, TkProbe(x_env, x=0, y=0) as probe:
        probe.focus()
        injector = InputInjector(SCREEN, guard=guard)
        injector.apply(InputEvent(session_id=SID, kind="move", x=300, y=200))
        injector.apply(InputEvent(session_id=SID, kind="button", button="left", action="click", x=100, y=100))
        probe.focus()
        injector.apply(InputEvent(session_id=SID, kind="text", text="ok"))
        injector.apply(InputEvent(session_id=SID, kind="wheel", dy=1))
        assert _eventually(lambda: probe.text() == "ok")
        time.sleep(0.3)  # let the listener see every injected event
        assert not guard.paused(time.monotonic())

        xdotool(x_env, "key", "a")  # the subscriber presses a key
        assert _eventually(lambda: guard.paused(time.monotonic()))
        now = time.monotonic()
        assert not guard.paused(now + 2.1)  # and it ends on its own


@pytest.mark.x11
def test_guard_pauses_on_local_click_and_motion(x_env: str) -> None:
    with LocalInputGuard(pause_seconds=2.0) as guard:
        xdotool(x_env, "click", "1")
        assert _eventually(lambda: guard.paused(time.monotonic()))
    with LocalInputGuard(pause_seconds=2.0) as guard:
        time.sleep(0.1)
        assert not guard.paused(time.monotonic())
        xdotool(x_env, "mousemove", "5", "5")
        assert _eventually(lambda: guard.paused(time.monotonic()))


@pytest.mark.x11
def test_a_browser_like_stream_with_the_guard_running_lands_and_leaves_nothing_held(x_env: str) -> None:
    """Issue 13, defect 1: the console sends a move before each press, often to where the pointer
    already is; the guard took that echo for the subscriber's hand, paused input and dropped the
    release, leaving button 1 held (mask 0x100) and every later click dead."""
    with LocalInputGuard(pause_seconds=2.0) as guard, TkProbe(x_env, x=0, y=0, w=400, h=300) as probe:
        injector = InputInjector(SCREEN, guard=guard)
        for i in range(3):
            x, y = 100 + 40 * i, 120
            injector.apply(InputEvent(session_id=SID, kind="move", x=x, y=y))
            injector.apply(InputEvent(session_id=SID, kind="move", x=x, y=y))  # the same place again
            injector.apply(InputEvent(session_id=SID, kind="button", button="left", action="down", x=x, y=y))
            time.sleep(0.05)  # let the listener see the echoes before the release is decided
            assert not guard.paused(time.monotonic())
            injector.apply(InputEvent(session_id=SID, kind="button", button="left", action="up", x=x, y=y))
            assert probe.wait_for("click") == f"click 1 {x} {y}"
        time.sleep(0.3)
        assert not guard.paused(time.monotonic())
        mask, held = held_input(x_env)
        assert mask & 0x1F00 == 0, hex(mask)
        assert held == []
        xdotool(x_env, "mousemove", "7", "9")  # and the subscriber's own hand still wins
        assert _eventually(lambda: guard.paused(time.monotonic()))


@pytest.mark.x11
def test_characters_missing_from_the_keymap_are_typed_with_a_borrowed_keycode(x_env: str) -> None:
    """Issue 13, defect 6: ``--text "é ü 日本"`` typed only the spaces."""
    xdotool(x_env, "mousemove", "100", "100")  # over the window: without a window manager,
    with TkProbe(x_env, x=50, y=50) as probe:  # Tk's focus follows the pointer's window
        probe.focus()
        injector = InputInjector(SCREEN)
        injector.apply(InputEvent(session_id=SID, kind="text", text="é ü 日本語 ok"))
        injector.apply(InputEvent(session_id=SID, kind="key", action="click", key="ß"))
        assert _eventually(lambda: probe.text() == "é ü 日本語 okß"), probe.text()
        injector.close()
        _, held = held_input(x_env)
        assert held == []
