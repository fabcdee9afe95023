"""Applying the operator's mouse and keyboard input on the subscriber's PC, with ``pynput``.

Remote control needs its own consent (``input:control``, 第31条 1項④⑤); the adapter checks the
scope and :meth:`LocalInputGuard.paused` (:mod:`agent.input.local_guard`) before it calls
:meth:`InputInjector.apply`, and this module only injects. Key names and typed text are never logged (第33条).

Where pynput falls short (and what we do about it):

* X11: the guard's matching of our own events (:mod:`agent.input.local_guard`).
* Wayland: pynput can neither inject nor listen outside XWayland windows; remote control of a
  native Wayland session needs the desktop portal (RemoteDesktop) instead. Not done.
* macOS: injection and listening need the Accessibility and Input Monitoring permissions; without
  them pynput fails silently. The agent must check ``AXIsProcessTrusted`` and tell the subscriber.
* Windows: the secure desktop (UAC prompts, Ctrl+Alt+Del, the lock screen) rejects injected input
  from a normal process, and Ctrl+Alt+Del cannot be injected at all (SendSAS needs a service).
* High-DPI: coordinates are mapped in the capture's physical pixels; on Windows the agent process
  must be per-monitor DPI aware or pynput's logical coordinates will not match mss's.
* X11 typing: XTest key events, borrowing spare keycodes for characters the keymap lacks
  (:mod:`agent.input.xtest`).
* Keyboard layouts: dead keys and IME composition (Japanese input) are not driven: text arrives as
  committed characters. Typing while the operator holds Shift down types shifted characters.
"""

from __future__ import annotations

import sys
from typing import Any

from agent.errors import AgentError, AgentErrorCode
from agent.screen.capture import Monitor
from protocol.messages import InputEvent

from .local_guard import GuardKind, LocalInputGuard
from .xtest import XTestTypist, needs_shift

__all__ = [
    "DOM_KEY_NAMES",
    "GuardKind",
    "InputInjector",
    "InputRejected",
    "LocalInputGuard",
]

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


class InputRejected(AgentError):
    """An input event this PC cannot apply (a key name it does not know, a point outside the shared
    monitor); the adapter drops it and reports it. Malformed events never get here: the protocol's
    :class:`~protocol.messages.InputEvent` refuses them when decoded or built."""

    code = AgentErrorCode.INPUT_REJECTED


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
        self._typist: XTestTypist | None = None
        if (
            keyboard_controller is None
            and sys.platform.startswith("linux")
            and "xorg" in type(self._keyboard).__module__
        ):
            self._typist = XTestTypist()

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
            self._expect("key", sum(1 + needs_shift(c) for c in text))
            self._keyboard.type(text)
            return
        typist = self._typist
        keys = {char: typist.lookup(char) for char in dict.fromkeys(text)}
        borrowed = typist.borrow_all([char for char, found in keys.items() if found is None])
        for char in text:
            found = keys[char]
            if found is None:
                keycode = borrowed.get(char)
                if keycode is None:
                    raise InputRejected("this character cannot be typed on this keyboard")
                found = (keycode, False)
            keycode, shift = found
            self._expect("key", 1 + shift)
            typist.type_char(keycode, shift)

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
