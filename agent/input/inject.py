"""Applying the operator's mouse and keyboard input on the subscriber's PC, with ``pynput``.

Remote control needs its own consent (``input:control``, 第31条 1項④⑤); the adapter checks the
scope and :meth:`LocalInputGuard.paused` before it calls :meth:`InputInjector.apply`, and this
module only injects. Key names and typed text are never logged (第33条).

The subscriber's own input always wins: :class:`LocalInputGuard` listens to the real keyboard and
mouse and pauses remote input for ``pause_seconds`` after a local key press, click or wheel turn
(and, by default, pointer motion), so a subscriber can take the machine back by simply using it.

Where pynput falls short (and what we do about it):

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
* Wayland: pynput can neither inject nor listen outside XWayland windows; remote control of a
  native Wayland session needs the desktop portal (RemoteDesktop) instead. Not done.
* macOS: injection and listening need the Accessibility and Input Monitoring permissions; without
  them pynput fails silently. The agent must check ``AXIsProcessTrusted`` and tell the subscriber.
* Windows: the secure desktop (UAC prompts, Ctrl+Alt+Del, the lock screen) rejects injected input
  from a normal process, and Ctrl+Alt+Del cannot be injected at all (SendSAS needs a service).
* High-DPI: coordinates are mapped in the capture's physical pixels; on Windows the agent process
  must be per-monitor DPI aware or pynput's logical coordinates will not match mss's.
* X11 typing: pynput's ``type()`` and character keys send *synthetic* events (``XSendEvent``) to
  the focused window, and many programs ignore those (xterm by default; a Tk entry under Xvfb
  in our tests received nothing). So on X11 this module types with XTest key events instead
  (what xdotool does): each character is looked up in the server's keymap and pressed with
  Shift if it sits on the shifted level. A character the keymap lacks (kana, kanji, accents on a
  US layout) is typed as xdotool does it: a spare keycode (one with no keysym) is mapped to the
  character's keysym with XChangeKeyboardMapping, pressed and released with XTest, and unmapped
  again when the text is done.
* Keyboard layouts: dead keys and IME composition (Japanese input) are not driven: text arrives as
  committed characters. Typing while the operator holds Shift down types shifted characters.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from agent.screen.capture import Monitor
from protocol.limits import MAX_INPUT_TEXT

__all__ = [
    "DOM_KEY_NAMES",
    "InputEvent",
    "InputInjector",
    "InputRejected",
    "LocalInputGuard",
]

EventKind = Literal["move", "button", "wheel", "key", "text"]
Button = Literal["left", "middle", "right"]
Action = Literal["down", "up", "click"]
GuardKind = Literal["key", "button", "scroll", "move"]

MAX_TEXT = MAX_INPUT_TEXT
"""Longest ``text`` event accepted: the wire's limit (:data:`protocol.limits.MAX_INPUT_TEXT`), so
the agent never accepts what the protocol refuses nor refuses what it carries."""

MAX_WHEEL = 50
"""Largest wheel step count in one event; a runaway scroll from a console bug stays bounded."""

MAX_CLICKS = 3
"""Triple-click is the most any desktop gives meaning to."""

DOM_KEY_NAMES: dict[str, str] = {
    "Enter": "enter",
    "Tab": "tab",
    "Backspace": "backspace",
    "Delete": "delete",
    "Escape": "esc",
    "Esc": "esc",
    " ": "space",
    "ArrowLeft": "left",
    "ArrowRight": "right",
    "ArrowUp": "up",
    "ArrowDown": "down",
    "Home": "home",
    "End": "end",
    "PageUp": "page_up",
    "PageDown": "page_down",
    "Insert": "insert",
    "Shift": "shift",
    "Control": "ctrl",
    "Alt": "alt",
    "AltGraph": "alt_gr",
    "Meta": "cmd",
    "OS": "cmd",
    "CapsLock": "caps_lock",
    "NumLock": "num_lock",
    "ScrollLock": "scroll_lock",
    "PrintScreen": "print_screen",
    "Pause": "pause",
    "ContextMenu": "menu",
    **{f"F{i}": f"f{i}" for i in range(1, 21)},
}
"""Browser ``KeyboardEvent.key`` names → pynput ``Key`` member names, so the console can forward
what the browser gives it. Names already in pynput's spelling (``"enter"``) pass through."""


class InputRejected(ValueError):
    """An input event is malformed or out of range; the adapter drops it and reports it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class InputEvent:
    """One operator input action, already decoded from the control message.

    kind "move":   ``x``, ``y`` in shared-screen pixels (origin: the shared monitor's top-left).
    kind "button": ``button`` and ``action`` ("down", "up", "click" with ``count`` 1-3); with
                   ``x``/``y`` the pointer moves there first.
    kind "wheel":  ``dx``, ``dy`` in wheel steps (positive ``dy`` scrolls down, like the DOM's
                   ``deltaY``); with ``x``/``y`` the pointer moves there first.
    kind "key":    ``action`` "down"/"up"/"click" of a key given by ``key`` (a pynput ``Key`` name,
                   a DOM ``KeyboardEvent.key`` name or one character) or by ``code`` (platform key
                   code: an X keysym, a Windows virtual-key code, a macOS key code).
    kind "text":   ``text`` typed as characters through the keyboard layout.
    """

    kind: EventKind
    x: int | None = None
    y: int | None = None
    button: Button | None = None
    action: Action | None = None
    count: int = 1
    dx: int = 0
    dy: int = 0
    key: str | None = None
    code: int | None = None
    text: str | None = None

    def __post_init__(self) -> None:
        if (self.x is None) != (self.y is None):
            raise InputRejected("x and y go together")
        if self.kind == "move":
            if self.x is None:
                raise InputRejected("move needs x and y")
        elif self.kind == "button":
            if self.button not in ("left", "middle", "right"):
                raise InputRejected("button must be left, middle or right")
            if self.action not in ("down", "up", "click"):
                raise InputRejected("button action must be down, up or click")
            if not 1 <= self.count <= MAX_CLICKS:
                raise InputRejected(f"click count must be 1..{MAX_CLICKS}")
        elif self.kind == "wheel":
            if not (abs(self.dx) <= MAX_WHEEL and abs(self.dy) <= MAX_WHEEL) or (self.dx, self.dy) == (0, 0):
                raise InputRejected(f"wheel steps must be -{MAX_WHEEL}..{MAX_WHEEL} and not both zero")
        elif self.kind == "key":
            if self.action not in ("down", "up", "click"):
                raise InputRejected("key action must be down, up or click")
            if (self.key is None) == (self.code is None):
                raise InputRejected("a key event needs exactly one of key and code")
            if self.key is not None and not 1 <= len(self.key) <= 32:
                raise InputRejected("key name must be 1..32 characters")
            if self.code is not None and not 0 < self.code <= 0x1FFFFFFF:
                raise InputRejected("key code out of range")
        elif self.kind == "text":
            if not self.text or len(self.text) > MAX_TEXT:
                raise InputRejected(f"text must be 1..{MAX_TEXT} characters")
            if any(ord(c) < 0x20 and c not in "\t\n" for c in self.text):
                raise InputRejected("text may not contain control characters other than tab and newline")
        else:
            raise InputRejected(f"unknown input kind {self.kind!r}")


def _needs_shift(char: str) -> bool:
    return char.isupper() or char in '~!@#$%^&*()_+{}|:"<>?'


def _xlib() -> Any:
    """The python-xlib package (pynput's X11 dependency), imported only where X11 is in use."""
    import Xlib.display  # type: ignore[import-untyped]
    import Xlib.ext.record  # type: ignore[import-untyped]
    import Xlib.ext.xtest  # type: ignore[import-untyped]
    import Xlib.X  # type: ignore[import-untyped]
    import Xlib.XK  # type: ignore[import-untyped]

    return Xlib


def _x11_disable_record(listener: Any) -> None:
    """Work around pynput 1.8 on X11: ``stop()`` sends XRecordDisableContext on the connection the
    listener thread is blocked reading, so it is not flushed, and the thread only ends at the next
    input event (seconds or never). Disabling the context from a connection of our own ends it."""
    context = getattr(listener, "_context", None)
    if context is None or not sys.platform.startswith("linux"):
        return
    try:
        d = _xlib().display.Display()
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
                _x11_disable_record(listener)
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


_CONTROL_KEYSYMS = {"\n": 0xFF0D, "\t": 0xFF09}  # Return, Tab


def _char_to_keysym(char: str) -> int:
    """X keysym of a character: Latin-1 maps to itself, the rest to 0x01000000 + code point."""
    if char in _CONTROL_KEYSYMS:
        return _CONTROL_KEYSYMS[char]
    code = ord(char)
    return code if code < 0x100 else code | 0x0100_0000


class _XTestTypist:
    """Types characters on X11 with XTest, through its own connection to the display.

    Characters missing from the keymap get a *borrowed* keycode: one of the server's spare
    keycodes (no keysym on any level) is mapped to the character's keysym, as xdotool does.
    Borrowed keycodes stay mapped while the injector lives, up to ``max_borrowed``, then the least
    recently used one is remapped; :meth:`close` gives them all back (unmapped again). Keeping
    them avoids a race in which a program reads the keymap again only when the key event
    arrives, after it had already been changed back.
    """

    def __init__(self, max_borrowed: int = 32) -> None:
        xlib = _xlib()
        self._X: Any = xlib.X
        self._xtest: Any = xlib.ext.xtest
        self._display: Any = xlib.display.Display()
        self._shift = int(self._display.keysym_to_keycode(xlib.XK.XK_Shift_L))
        self.max_borrowed = max_borrowed
        self._spare: list[int] | None = None
        self._borrowed: dict[int, int] = {}  # keysym -> keycode, oldest first

    def lookup(self, char: str) -> tuple[int, bool] | None:
        """(keycode, needs shift) of ``char`` on the unshifted or shifted level, or None."""
        best: tuple[int, int] | None = None
        for keycode, index in self._display.keysym_to_keycodes(_char_to_keysym(char)):
            if index in (0, 1) and (best is None or index < best[1]):
                best = (int(keycode), int(index))
        if best is None or (best[1] == 1 and not self._shift):
            return None
        return best[0], best[1] == 1

    def keysym_if_mapped(self, char: str) -> int | None:
        """The keysym of ``char`` if some key produces it (so pynput can press it with XTest)."""
        return _char_to_keysym(char) if self.lookup(char) is not None else None

    def _spare_keycodes(self) -> list[int]:
        if self._spare is None:
            info = self._display.display.info
            first, last = int(info.min_keycode), int(info.max_keycode)
            mapping = self._display.get_keyboard_mapping(first, last - first + 1)
            self._spare = [first + i for i, syms in enumerate(mapping) if not any(syms)][-self.max_borrowed :]
        return self._spare

    def borrow(self, char: str) -> int | None:
        """A keycode that types ``char`` (unshifted), borrowed from the spare ones; None if the
        server has no spare keycode."""
        keysym = _char_to_keysym(char)
        if keysym in self._borrowed:
            self._borrowed[keysym] = self._borrowed.pop(keysym)  # most recently used last
            return self._borrowed[keysym]
        spare = self._spare_keycodes()
        if not spare:
            return None
        used = set(self._borrowed.values())
        free = [k for k in spare if k not in used]
        if free:
            keycode = free[0]
        else:
            oldest = next(iter(self._borrowed))
            keycode = self._borrowed.pop(oldest)
        self._display.change_keyboard_mapping(keycode, [(keysym, keysym)])
        self._display.sync()
        self._borrowed[keysym] = keycode
        return keycode

    def key(self, keycode: int, *, down: bool) -> None:
        self._xtest.fake_input(self._display, self._X.KeyPress if down else self._X.KeyRelease, keycode)
        self._display.sync()

    def type_char(self, keycode: int, shift: bool) -> None:
        X, xtest = self._X, self._xtest
        if shift:
            xtest.fake_input(self._display, X.KeyPress, self._shift)
        xtest.fake_input(self._display, X.KeyPress, keycode)
        xtest.fake_input(self._display, X.KeyRelease, keycode)
        if shift:
            xtest.fake_input(self._display, X.KeyRelease, self._shift)
        self._display.sync()

    def close(self) -> None:
        try:
            for keycode in self._borrowed.values():
                self._display.change_keyboard_mapping(keycode, [(0, 0)])
            self._display.sync()
        except Exception:  # noqa: S110 - the X server may be gone already
            pass
        self._borrowed.clear()
        self._display.close()


class InputInjector:
    """Applies :class:`InputEvent` objects to the real desktop through pynput.

    ``monitor`` is the shared monitor (from :func:`agent.screen.capture.list_monitors`): event
    coordinates are relative to it, as the operator sees the shared screen, and are shifted by its
    ``left``/``top`` into desktop coordinates. Coordinates outside it are rejected, so an operator
    sharing one monitor cannot click on another. Keys and buttons held down are remembered, and
    :meth:`release_all` lets the adapter release them when control ends or pauses (a stuck Ctrl
    would otherwise outlive the session).
    """

    def __init__(
        self,
        monitor: Monitor,
        *,
        guard: LocalInputGuard | None = None,
        mouse_controller: Any = None,
        keyboard_controller: Any = None,
    ) -> None:
        from pynput import keyboard, mouse  # late: importing pynput on X11 needs a display

        self.monitor = monitor
        self._guard = guard
        self._keyboard_mod = keyboard
        self._mouse_mod = mouse
        self._mouse = mouse_controller if mouse_controller is not None else mouse.Controller()
        self._keyboard = keyboard_controller if keyboard_controller is not None else keyboard.Controller()
        self._held_keys: set[Any] = set()
        self._held_buttons: set[Any] = set()
        self._held_borrowed: set[int] = set()
        self._typist: _XTestTypist | None = None
        if (
            keyboard_controller is None
            and sys.platform.startswith("linux")
            and "xorg" in type(self._keyboard).__module__
        ):
            self._typist = _XTestTypist()

    def _expect(self, kind: GuardKind, count: int = 1, *, at: tuple[int, int] | None = None) -> None:
        if self._guard is not None and count > 0:
            self._guard.expect(kind, count, at=at)

    def to_desktop(self, x: int, y: int) -> tuple[int, int]:
        """Shared-screen pixel → desktop pixel; :class:`InputRejected` outside the monitor."""
        m = self.monitor
        if not (0 <= x < m.width and 0 <= y < m.height):
            raise InputRejected(f"({x}, {y}) is outside the shared {m.width}x{m.height} screen")
        return m.left + x, m.top + y

    def _move(self, x: int, y: int) -> None:
        target = self.to_desktop(x, y)
        # Announced even when the pointer is already there: XTest reports that motion too.
        self._expect("move", at=target)
        self._mouse.position = target

    def _move_to(self, event: InputEvent) -> None:
        if event.x is not None and event.y is not None:
            self._move(event.x, event.y)

    def key_for(self, event: InputEvent) -> Any:
        """The pynput key object for a key event (``Key`` member or ``KeyCode``)."""
        Key, KeyCode = self._keyboard_mod.Key, self._keyboard_mod.KeyCode
        if event.code is not None:
            return KeyCode.from_vk(event.code)
        name = DOM_KEY_NAMES.get(event.key or "", event.key or "")
        if len(name) == 1:
            keysym = self._typist.keysym_if_mapped(name) if self._typist is not None else None
            # With a vk, pynput presses the key with XTest rather than XSendEvent (see above).
            return KeyCode.from_vk(keysym) if keysym is not None else KeyCode.from_char(name)
        member = Key.__members__.get(name.lower())
        if member is None:
            raise InputRejected("unknown key name")  # the name itself is not echoed: it may be typed text
        return member

    def apply(self, event: InputEvent) -> None:
        """Inject one event now. Blocking for a few milliseconds (typing: ~1 ms per character)."""
        if event.kind == "move":
            self._move_to(event)
        elif event.kind == "button":
            self._button(event)
        elif event.kind == "wheel":
            self._move_to(event)
            self._expect("scroll", abs(event.dx) + abs(event.dy))
            # pynput: positive dy scrolls up; the DOM's positive deltaY scrolls down.
            self._mouse.scroll(event.dx, -event.dy)
        elif event.kind == "key":
            self._key(event)
        elif event.text is not None:
            self._type(event.text)

    def _type(self, text: str) -> None:
        if self._typist is None:
            self._expect("key", sum(1 + _needs_shift(c) for c in text))
            self._keyboard.type(text)
            return
        for char in text:
            found = self._typist.lookup(char)
            if found is None:
                borrowed = self._typist.borrow(char)
                if borrowed is None:
                    raise InputRejected("this character cannot be typed on this keyboard")
                found = (borrowed, False)
            keycode, shift = found
            self._expect("key", 1 + shift)
            self._typist.type_char(keycode, shift)

    def close(self) -> None:
        """Release held keys and buttons and close our own X connection."""
        self.release_all()
        if self._typist is not None:
            self._typist.close()
            self._typist = None

    def _button(self, event: InputEvent) -> None:
        self._move_to(event)
        button = getattr(self._mouse_mod.Button, str(event.button))
        if event.action == "down":
            self._expect("button")
            self._mouse.press(button)
            self._held_buttons.add(button)
        elif event.action == "up":
            self._mouse.release(button)
            self._held_buttons.discard(button)
        else:
            self._expect("button", event.count)
            self._mouse.click(button, event.count)

    def _key(self, event: InputEvent) -> None:
        name = DOM_KEY_NAMES.get(event.key or "", event.key or "")
        typist = self._typist
        if typist is not None and event.code is None and len(name) == 1 and typist.lookup(name) is None:
            # A character the keymap lacks: a borrowed keycode, pressed with XTest (never XSendEvent).
            keycode = typist.borrow(name)
            if keycode is None:
                raise InputRejected("this character cannot be typed on this keyboard")
            if event.action in ("down", "click"):
                self._expect("key")
                typist.key(keycode, down=True)
                self._held_borrowed.add(keycode)
            if event.action in ("up", "click"):
                typist.key(keycode, down=False)
                self._held_borrowed.discard(keycode)
            return
        key = self.key_for(event)
        if event.action in ("down", "click"):
            self._expect("key")
            self._keyboard.press(key)
            self._held_keys.add(key)
        if event.action in ("up", "click"):
            self._keyboard.release(key)
            self._held_keys.discard(key)

    def release_all(self) -> None:
        """Release every key and button this injector holds down."""
        for key in list(self._held_keys):
            self._keyboard.release(key)
        for button in list(self._held_buttons):
            self._mouse.release(button)
        if self._typist is not None:
            for keycode in list(self._held_borrowed):
                self._typist.key(keycode, down=False)
        self._held_keys.clear()
        self._held_buttons.clear()
        self._held_borrowed.clear()

    @property
    def holding(self) -> bool:
        """Whether a key or button pressed by the operator is still down."""
        return bool(self._held_keys or self._held_buttons or self._held_borrowed)
