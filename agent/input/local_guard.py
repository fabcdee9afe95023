"""Pausing remote input while the subscriber uses their own keyboard or mouse.

The subscriber's own input always wins: :class:`LocalInputGuard` listens to the real keyboard and
mouse and pauses remote input for ``pause_seconds`` after a local key press, click or wheel turn
(and, by default, pointer motion), so a subscriber can take the machine back by simply using it.

How our own injected events are told apart from the subscriber's:

* X11: pynput's listener marks an event ``injected`` only when the X server's ``send_event`` bit is
  set, which XTest-generated events (ours, and xdotool's) never have; on X11 "injected" is always
  False. So the guard counts what we inject (:meth:`LocalInputGuard.expect`) and treats a matching
  event seen within ``expect_window`` seconds as ours. Pointer motion is matched by *position*:
  every move we inject is announced with its target pixel, even a move to where the pointer
  already is (XTest still reports a motion event for it; counting that echo as the subscriber's
  movement paused remote input for 2 s and dropped the button release behind it, leaving button 1
  held: issue 13), and a motion event at any other pixel is the subscriber's. Key presses, button
  presses and wheel steps are matched by kind and count: a local key pressed during remote typing
  may be mistaken for ours once, but the subscriber's next key press pauses remote input. On
  Windows and macOS pynput reports ``injected`` from the OS and the guard uses it as well.
  pynput's controllers also hand every event they send directly to the listeners of the same
  process, flagged injected; those reports are ignored without using up an expectation, which
  the X server's echo arriving just after them still needs (using it up made the echo count as
  the subscriber's, at random, depending on which of the two came first).
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Literal

from .xtest import load_xlib

__all__ = ["GuardKind", "LocalInputGuard"]

GuardKind = Literal["key", "button", "scroll", "move"]


def x11_disable_record(listener: Any) -> None:
    """Work around pynput 1.8 on X11: ``stop()`` sends XRecordDisableContext on the connection the
    listener thread is blocked reading, so it is not flushed, and the thread only ends at the next
    input event (seconds or never). Disabling the context from a connection of our own ends it."""
    context = getattr(listener, "_context", None)
    if context is None or not sys.platform.startswith("linux"):
        return
    try:
        d = load_xlib().display.Display()
        try:
            d.record_disable_context(context)
            d.sync()
        finally:
            d.close()
    except Exception:  # noqa: S110 - the X server may already be gone; the thread is a daemon
        pass


class LocalInputGuard:
    """Pauses remote input while the subscriber uses the keyboard or mouse themselves.

    pause_seconds:
        Remote input stays paused this long (2.0 s) after the last local event.
    expect_window:
        Seconds (0.5) an expected injected event may take to come back through the listener.
    pause_on_motion:
        Also pause on local pointer motion (True): grabbing the mouse is the most natural way to
        say "stop"; turn it off for touchpads that jitter.
    clock:
        Monotonic clock for the listener threads' timestamps (``time.monotonic``); tests may pass
        a fake. :meth:`paused` takes ``now`` from the caller, read from the same clock.

    :meth:`start` begins listening (pynput threads); :meth:`stop` ends it. Without :meth:`start`
    (no display, or the OS denied listening) the guard never pauses; :meth:`note_local` lets an
    adapter feed local events from another source.
    """

    def __init__(
        self,
        pause_seconds: float = 2.0,
        *,
        expect_window: float = 0.5,
        pause_on_motion: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pause_seconds = pause_seconds
        self.expect_window = expect_window
        self.pause_on_motion = pause_on_motion
        self._clock = clock
        self._lock = threading.Lock()
        self._expected: dict[GuardKind, deque[float]] = {
            "key": deque(),
            "button": deque(),
            "scroll": deque(),
        }
        self._expected_moves: deque[tuple[float, int, int]] = deque()
        self._last_local: float | None = None
        self._listeners: list[Any] = []

    def start(self) -> None:
        """Start pynput's keyboard and mouse listeners (threads)."""
        from pynput import keyboard, mouse

        if self._listeners:
            return
        kb = keyboard.Listener(on_press=self._on_key_press)
        ms = mouse.Listener(on_move=self._on_move, on_click=self._on_click, on_scroll=self._on_scroll)
        for listener in (kb, ms):
            listener.daemon = True
            listener.start()
        for listener in (kb, ms):
            listener.wait()
        self._listeners = [kb, ms]

    def stop(self) -> None:
        for listener in self._listeners:
            listener.stop()
        for listener in self._listeners:
            listener.join(timeout=0.2)
            if listener.is_alive():
                x11_disable_record(listener)
                listener.join(timeout=2.0)
        self._listeners = []

    def __enter__(self) -> LocalInputGuard:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def expect(self, kind: GuardKind, count: int = 1, *, at: tuple[int, int] | None = None) -> None:
        """Announce ``count`` events of ``kind`` that we are about to inject (not the subscriber's).

        A move is announced with ``at``, its target in desktop pixels: its echo is recognised by
        position, so the subscriber's own movement elsewhere still counts as theirs.
        """
        deadline = self._clock() + self.expect_window
        with self._lock:
            if kind == "move":
                if at is None:
                    raise ValueError("an expected move needs its target position")
                self._expected_moves.extend([(deadline, at[0], at[1])] * count)
            else:
                self._expected[kind].extend([deadline] * count)

    def note_local(
        self,
        kind: GuardKind,
        *,
        injected: bool = False,
        now: float | None = None,
        at: tuple[int, int] | None = None,
    ) -> None:
        """Record an input event seen on the machine; a local one pauses remote input.

        ``at`` is where a motion event put the pointer (desktop pixels); a motion at a position we
        announced with :meth:`expect` is our own echo. A motion without a position is local.
        """
        if injected or (kind == "move" and not self.pause_on_motion):
            # Injected by someone (the OS says so) - and pynput's own controllers also report
            # each event they send straight to listeners in this process, flagged injected,
            # before the X server's echo arrives. Such a report must not use up the expectation
            # the echo will need, or the echo would count as the subscriber's (issue 13).
            return
        t = self._clock() if now is None else now
        with self._lock:
            if kind == "move":
                if not self._ours_moved_to(at, t):
                    self._last_local = t
                return
            pending = self._expected[kind]
            while pending and pending[0] < t:
                pending.popleft()
            if pending:
                pending.popleft()
                return
            self._last_local = t

    def _ours_moved_to(self, at: tuple[int, int] | None, t: float) -> bool:
        """Whether a motion to ``at`` is the echo of a move we announced (lock held). The matched
        announcement and every earlier one go: echoes come in order, and a move to where the
        pointer already was may produce none."""
        moves = self._expected_moves
        while moves and moves[0][0] < t:
            moves.popleft()
        if at is None:
            return False
        for i, (_, x, y) in enumerate(moves):
            if (x, y) == at:
                for _ in range(i + 1):
                    moves.popleft()
                return True
        return False

    def paused(self, now: float) -> bool:
        """True while remote input must not be applied (the subscriber is using the machine)."""
        with self._lock:
            return self._last_local is not None and now - self._last_local < self.pause_seconds

    # pynput callbacks (listener threads). The trailing ``injected`` argument is passed by pynput
    # >= 1.8 when the callback accepts it.
    def _on_key_press(self, _key: object, injected: bool = False) -> None:
        self.note_local("key", injected=injected)

    def _on_move(self, x: int, y: int, injected: bool = False) -> None:
        self.note_local("move", injected=injected, at=(int(x), int(y)))

    def _on_click(self, _x: int, _y: int, _button: object, pressed: bool, injected: bool = False) -> None:
        if pressed:
            self.note_local("button", injected=injected)

    def _on_scroll(self, _x: int, _y: int, _dx: int, _dy: int, injected: bool = False) -> None:
        self.note_local("scroll", injected=injected)
