"""Remote input cannot answer a consent question or press the "being watched" indicator's buttons.

DESIGN §2: "Consent questions and the 'being watched' indicator cannot be operated by remote
input" (第31条1項④: the consent must be the subscriber's own). An operator who holds
``input:control`` could otherwise click the consent window's checkbox and its 許可 button, type
an answer into the terminal, or press "end" on the indicator. The session asks
:meth:`ConsentGuard.refusal` before every remote input event and drops the event when it answers
with a reason:

- ``question_open``: a consent question (terminal or window) or a question that belongs to it
  (the control confirmation, the router login) is open: no remote pointer or key input at all;
- ``grace``: for :data:`DEFAULT_GRACE` seconds after the last question closed, still none, so a
  click aimed at a closing window cannot land on whatever appears under it;
- ``protected_window``: a pointer event (move, button, wheel) whose position lies inside a
  protected window (the indicator, the consent window) on the desktop;
- ``protected_focus``: a key or text event while a protected window has the keyboard focus.

And a line typed into the agent's own terminal is not an answer when it arrives within
:data:`DEFAULT_KEY_SETTLE` of a remote key or text event (:meth:`ConsentGuard.may_be_remote_typing`):
the operator cannot type an answer just before a question opens either.

Where this holds: on X11 the agent is the one injecting, so a dropped event never reaches the X
server; this check is the guarantee there. Events from other programs (xdotool, the subscriber's
own hands) are not ours and are not filtered: the subscriber's real click is what counts.
Windows and macOS: see docs/consent.md (secure desktop / UIPI, and the macOS plan).

Pure and thread-safe: times are arguments (a monotonic clock), windows report their rectangles and
focus from their own threads. Nothing here logs an event's keys, text or position (第33条).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal, Protocol

__all__ = ["DEFAULT_GRACE", "DEFAULT_KEY_SETTLE", "ConsentGuard", "Rect", "Refusal", "desktop_point"]

DEFAULT_GRACE: Final = 1.5
"""Seconds after a consent question closes during which remote input stays refused."""

DEFAULT_KEY_SETTLE: Final = 1.0
"""Seconds after the last remote key or text event during which a line typed into the agent's
own terminal is not taken as an answer: it may be the operator's typing, still on its way from
the X server through the terminal emulator."""

Refusal = Literal["question_open", "grace", "protected_window", "protected_focus"]

POINTER_KINDS: Final = frozenset({"move", "button", "wheel"})
KEY_KINDS: Final = frozenset({"key", "text"})


@dataclass(frozen=True, slots=True)
class Rect:
    """A window's place on the desktop, in root-window pixels."""

    x: int
    y: int
    width: int
    height: int

    def contains(self, x: int, y: int) -> bool:
        return self.x <= x < self.x + self.width and self.y <= y < self.y + self.height


class _Event(Protocol):
    @property
    def kind(self) -> str: ...
    @property
    def x(self) -> int | None: ...
    @property
    def y(self) -> int | None: ...


class _Monitor(Protocol):
    @property
    def left(self) -> int: ...
    @property
    def top(self) -> int: ...


def desktop_point(
    event: _Event,
    monitor: _Monitor | None,
    pointer: Callable[[], tuple[int, int] | None] | None = None,
) -> tuple[int, int] | None:
    """Where on the desktop a pointer event acts: its shared-screen ``x``/``y`` shifted by the
    shared monitor's origin; for a button or wheel event without a position, where the pointer is
    now (``pointer()``), because that is where the click lands."""
    if event.kind not in POINTER_KINDS:
        return None
    if event.x is not None and event.y is not None:
        if monitor is None:
            return event.x, event.y
        return monitor.left + event.x, monitor.top + event.y
    return pointer() if pointer is not None else None


class ConsentGuard:
    """Which remote input events must be dropped now (see the module docstring).

    grace:
        Seconds (:data:`DEFAULT_GRACE`) after the last question closed during which remote input
        is still refused.
    """

    def __init__(self, grace: float = DEFAULT_GRACE, *, key_settle: float = DEFAULT_KEY_SETTLE) -> None:
        self.grace = grace
        self.key_settle = key_settle
        self._last_remote_keys: float | None = None
        self._lock = threading.Lock()
        self._open: dict[str, int] = {}
        self._closed_at: float | None = None
        self._rects: dict[str, Rect] = {}
        self._focus: set[str] = set()
        self.refused: dict[str, int] = {}

    # -- what is on screen -------------------------------------------------------------------------

    def question_opened(self, name: str) -> None:
        """A question called ``name`` is open (several may be at once)."""
        with self._lock:
            self._open[name] = self._open.get(name, 0) + 1

    def question_closed(self, name: str, now: float) -> None:
        with self._lock:
            left = self._open.get(name, 0) - 1
            if left > 0:
                self._open[name] = left
            else:
                self._open.pop(name, None)
            self._closed_at = now

    @property
    def questions_open(self) -> bool:
        with self._lock:
            return bool(self._open)

    def protect(self, name: str, rect: Rect | None) -> None:
        """Window ``name`` is on screen at ``rect`` (None: gone)."""
        with self._lock:
            if rect is None:
                self._rects.pop(name, None)
                self._focus.discard(name)
            else:
                self._rects[name] = rect

    def focus(self, name: str, focused: bool) -> None:
        """Window ``name`` got or lost the keyboard focus."""
        with self._lock:
            if focused:
                self._focus.add(name)
            else:
                self._focus.discard(name)

    # -- remote typing -----------------------------------------------------------------------------

    def remote_keys_applied(self, now: float) -> None:
        """A remote key or text event was applied at ``now``."""
        with self._lock:
            self._last_remote_keys = now

    def may_be_remote_typing(self, now: float) -> bool:
        """Whether a line typed in the terminal at ``now`` may come from remote typing (then it is
        not an answer to a question: :data:`DEFAULT_KEY_SETTLE`)."""
        with self._lock:
            last = self._last_remote_keys
        return last is not None and now - last < self.key_settle

    # -- the check ---------------------------------------------------------------------------------

    def refusal(self, kind: str, at: tuple[int, int] | None, now: float) -> Refusal | None:
        """Why a remote event of ``kind`` acting at desktop point ``at`` must be dropped, or None.

        Counts every refusal by reason in :attr:`refused`.
        """
        reason = self._reason(kind, at, now)
        if reason is not None:
            with self._lock:
                self.refused[reason] = self.refused.get(reason, 0) + 1
        return reason

    def _reason(self, kind: str, at: tuple[int, int] | None, now: float) -> Refusal | None:
        with self._lock:
            if self._open:
                return "question_open"
            if self._closed_at is not None and now - self._closed_at < self.grace:
                return "grace"
            if kind in POINTER_KINDS:
                if at is None and kind != "move" and self._rects:
                    return "protected_window"  # we cannot tell where it lands: not on our windows
                if at is not None and any(r.contains(*at) for r in self._rects.values()):
                    return "protected_window"
            elif kind in KEY_KINDS and self._focus:
                return "protected_focus"
            return None
