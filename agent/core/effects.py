"""What runs on the subscriber's PC, kept in step with the consent record: sharing, remote input,
the indicator, and who is told they can see the screen.

:class:`Effects` remembers what it last told the adapter, so every change is one action and a
repeat is none: sharing starts exactly once per grant (one keyframe at the start of a stream),
however often the broker confirms the same state.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.messages import Viewer
from protocol.scopes import SCOPE_CONTROL, SCOPE_VIEW

from ..consent_record import ConsentRecord
from . import actions as a
from .texts import viewer_notices

__all__ = ["Effects", "Wanted"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Wanted:
    """What the session allows now (from the record, the connection and the capture)."""

    viewing: bool
    """Frames may flow: ``screen:view`` granted, no unexpected person, session confirmed."""
    control: bool
    """``input:control`` granted."""
    start: bool
    """Sharing may start now (not while a new grant waits for the guard's grace)."""
    capture: int | None
    """The monitor a frame source shows; None without capture."""


class Effects:
    def __init__(self, lang: str) -> None:
        self.lang = lang
        self.sharing: int | None = None
        """The monitor being shared; None: not sharing."""
        self.input_allowed = False
        self.indicator: tuple[tuple[Viewer, ...], tuple[str, ...]] = ((), ())
        self.viewers: tuple[Viewer, ...] = ()
        self._saw = False

    def sync(self, wanted: Wanted, record: ConsentRecord | None, operator: str) -> list[a.Action]:
        """Stop first, then start: the actions that make the PC match ``wanted``."""
        out: list[a.Action] = []
        if not wanted.viewing and self.sharing is not None:
            self.sharing = None
            out.append(a.StopSharing())
        if wanted.control != self.input_allowed:
            self.input_allowed = wanted.control
            out.append(a.AllowInput() if wanted.control else a.DenyInput())
        live = record is not None and not record.ended
        watched = live and record is not None and (record.allows(SCOPE_VIEW) or record.allows(SCOPE_CONTROL))
        shown = (self._watchers(operator), record.granted_in_order()) if watched and record else ((), ())
        if shown != self.indicator:
            self.indicator = shown
            out.append(a.ShowIndicator(viewers=shown[0], granted=shown[1]))
        if wanted.start and wanted.viewing and self.sharing is None and wanted.capture is not None:
            self.sharing = wanted.capture
            out.append(a.StartSharing(monitor=wanted.capture))
        return out

    def announce(
        self, record: ConsentRecord | None, viewers: tuple[Viewer, ...] | None = None
    ) -> list[a.Action]:
        """Who joined or left, and who can see the screen: only while the record grants
        ``screen:view`` (DESIGN §2). Held like chat while a question is open (``notice``)."""
        sees = record is not None and not record.ended and record.allows(SCOPE_VIEW)
        before = [(v.name, v.role, v.read_only) for v in self.viewers]
        if viewers is not None:
            self.viewers = viewers
        after = [(v.name, v.role, v.read_only) for v in self.viewers]
        lines = viewer_notices(before, after, saw=self._saw, sees=sees, lang=self.lang)
        self._saw = sees
        return [a.Say(text=line, notice=True) for line in lines]

    def _watchers(self, operator: str) -> tuple[Viewer, ...]:
        """Who can see the screen: the broker's list, else the operator who claimed the session."""
        if self.viewers:
            return self.viewers
        return (Viewer(name=operator, role="operator"),) if operator else ()
