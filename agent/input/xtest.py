"""Typing on X11 with XTest key events, as xdotool does (used by :mod:`agent.input.inject`).

pynput's ``type()`` and character keys send *synthetic* events (``XSendEvent``) to
the focused window, and many programs ignore those (xterm by default; a Tk entry under Xvfb
in our tests received nothing). So on X11 this module types with XTest key events instead
(what xdotool does): each character is looked up in the server's keymap and pressed with
Shift if it sits on the shifted level. A character the keymap lacks (kana, kanji, accents on a
US layout) is typed as xdotool does it: a spare keycode (one with no keysym) is mapped to the
character's keysym with XChangeKeyboardMapping, pressed and released with XTest, and unmapped
again when the text is done.
"""

from __future__ import annotations

from typing import Any

__all__ = ["XTestTypist", "load_xlib", "needs_shift"]


def needs_shift(char: str) -> bool:
    return char.isupper() or char in '~!@#$%^&*()_+{}|:"<>?'


def load_xlib() -> Any:
    """The python-xlib package (pynput's X11 dependency), imported only where X11 is in use."""
    import Xlib.display  # type: ignore[import-untyped]
    import Xlib.ext.record  # type: ignore[import-untyped]
    import Xlib.ext.xtest  # type: ignore[import-untyped]
    import Xlib.X  # type: ignore[import-untyped]
    import Xlib.XK  # type: ignore[import-untyped]

    return Xlib


_CONTROL_KEYSYMS = {"\n": 0xFF0D, "\t": 0xFF09}  # Return, Tab


def _char_to_keysym(char: str) -> int:
    """X keysym of a character: Latin-1 maps to itself, the rest to 0x01000000 + code point."""
    if char in _CONTROL_KEYSYMS:
        return _CONTROL_KEYSYMS[char]
    code = ord(char)
    return code if code < 0x100 else code | 0x0100_0000


class XTestTypist:
    """Types characters on X11 with XTest, through its own connection to the display.

    Characters missing from the keymap get a *borrowed* keycode: one of the server's spare
    keycodes (no keysym on any level) is mapped to the character's keysym, as xdotool does.
    Borrowed keycodes stay mapped while the injector lives, up to ``max_borrowed``, then the least
    recently used one is remapped; :meth:`close` gives them all back (unmapped again). Keeping
    them avoids a race in which a program reads the keymap again only when the key event
    arrives, after it had already been changed back.
    """

    def __init__(self, max_borrowed: int = 32) -> None:
        xlib = load_xlib()
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
        return self.borrow_all([char]).get(char)

    def borrow_all(self, chars: list[str]) -> dict[str, int]:
        """Borrowed keycodes for every character of ``chars``, mapped in ONE keymap change.

        Each change makes the server send every client a MappingNotify, and a client re-reads
        the keymap when it handles one. Several changes in quick succession (one per character of
        a pasted word) were seen to leave a receiving program with a stale map now and then, so a
        character typed right after its own change came out as nothing (issue 13, defect 6:
        "é ü 日本語" lost "ü" and "語" about one run in three). One change for the whole text
        leaves one notification, which the client handles before the key events that follow it.
        Characters beyond the spare keycodes are left out (the caller refuses them)."""
        wanted: dict[str, int] = {}
        for char in chars:
            wanted.setdefault(char, _char_to_keysym(char))
        found: dict[str, int] = {}
        for char, keysym in wanted.items():  # already borrowed: most recently used last
            if keysym in self._borrowed:
                self._borrowed[keysym] = self._borrowed.pop(keysym)
                found[char] = self._borrowed[keysym]
        spare = self._spare_keycodes()
        changes: dict[int, int] = {}
        for char, keysym in wanted.items():
            if char in found or not spare:
                continue
            used = set(self._borrowed.values()) | set(changes)
            free = [k for k in spare if k not in used]
            if free:
                keycode = free[0]
            else:
                oldest = next((s for s, k in self._borrowed.items() if k not in found.values()), None)
                if oldest is None:
                    continue  # every spare keycode is taken by this very text
                keycode = self._borrowed.pop(oldest)
            changes[keycode] = keysym
            self._borrowed[keysym] = keycode
            found[char] = keycode
        if changes:
            self._remap(changes)
        return found

    def _remap(self, changes: dict[int, int]) -> None:
        """Map each keycode of ``changes`` to its keysym (both levels) in one request over the
        smallest range holding them; the keycodes between keep what they had."""
        first, last = min(changes), max(changes)
        current = self._display.get_keyboard_mapping(first, last - first + 1)
        width = max(2, max((len(row) for row in current), default=2))
        rows = []
        for offset, row in enumerate(current):
            keysym = changes.get(first + offset)
            rows.append((keysym, keysym) + (0,) * (width - 2) if keysym is not None else tuple(row))
        self._display.change_keyboard_mapping(first, rows)
        self._display.sync()

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
