"""Remote input in a support session (part of :class:`agent.support.SupportSession`, split off to
keep modules small): applied only when the agent's own consent record grants ``input:control``
(第31条1項④, DESIGN §2: the core's :class:`agent.core.actions.InjectInput`) and the consent
guard lets it through (no question open, not aimed at the indicator or the consent window:
:mod:`agent.input.consent_guard`). Nothing here logs keys, text or positions (第33条).
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import TYPE_CHECKING

from protocol.errors import ErrorCode
from protocol.messages import Error, InputEvent

from .i18n import t
from .input.consent_guard import desktop_point

if TYPE_CHECKING:
    from .connection import AgentClient
    from .input.consent_guard import ConsentGuard
    from .sharing import FrameSource, InputSink

__all__ = ["REFUSAL_REPORT_INTERVAL", "SUBSCRIBER_ACTIVE", "InputMixin"]

REFUSAL_REPORT_INTERVAL = 1.0
"""Seconds between two reports to the broker of remote input dropped by the consent guard or
because the subscriber was using the PC (each report carries the count since the last one)."""

SUBSCRIBER_ACTIVE = "subscriber_active"
"""The reason reported when :class:`agent.screen_source.InjectorSink` dropped input because the
subscriber was using the keyboard or mouse (the consent guard's reasons are the others)."""

log = logging.getLogger("agent.support")


class InputMixin:
    """Remote input for :class:`agent.support.SupportSession` (which sets these)."""

    source: FrameSource | None
    sink: InputSink
    guard: ConsentGuard
    client: AgentClient
    lang: str
    _mouse: object | None
    _last_refusal_report: float
    _unreported_refusals: int

    def say(self, line: str) -> None:
        raise NotImplementedError

    async def _inject(self, event: InputEvent) -> None:
        """Apply an event the core let through (its record grants ``input:control``); the consent
        guard has the last word (a question open, the indicator or the consent window hit)."""
        at = desktop_point(event, getattr(self.source, "current", None), self._pointer)
        reason = self.guard.refusal(event.kind, at, time.monotonic())
        if reason is not None:
            await self._report_guarded(reason)
            return
        if event.kind in ("key", "text"):
            self.guard.remote_keys_applied(time.monotonic())
        busy_before = getattr(self.sink, "paused_drops", 0)
        try:
            self.sink.apply(event)
        except Exception as exc:  # an X error must not end the session; never log the event itself
            log.warning("could not apply %s input: %s", event.kind, type(exc).__name__)
        if getattr(self.sink, "paused_drops", 0) > busy_before:
            # The subscriber is using the keyboard or mouse: their input wins (InjectorSink).
            await self._report_guarded(SUBSCRIBER_ACTIVE)
            return
        sharer = getattr(self, "sharer", None)
        if sharer is not None and sharer.running:
            sharer.boost()  # its effect shows soon: capture at the fast rate (issue 13)

    def _pointer(self) -> tuple[int, int] | None:
        """Where the real pointer is (a click without a position lands there); None without one."""
        if getattr(self.source, "current", None) is None:
            return None
        try:
            if self._mouse is None:
                from pynput import mouse

                self._mouse = mouse.Controller()
            x, y = self._mouse.position  # type: ignore[attr-defined]
        except Exception:  # no pointer to ask: the guard then refuses position-less clicks
            return None
        return int(x), int(y)

    async def _report_guarded(self, reason: str) -> None:
        """Dropped by the consent guard or for the subscriber's own input: counted, reported to the
        broker at most once a second as ``input_paused`` / ``subscriber_busy`` with the count in
        the stable form ``input refused: REASON (N events)``; the broker audits it and tells the
        operator (broker/input_refusals.py)."""
        self._unreported_refusals += 1
        now = time.monotonic()
        if now - self._last_refusal_report < REFUSAL_REPORT_INTERVAL:
            return
        if self._last_refusal_report == float("-inf") and reason != SUBSCRIBER_ACTIVE:
            self.say(t("support.input_paused", self.lang))
        self._last_refusal_report = now
        count, self._unreported_refusals = self._unreported_refusals, 0
        log.info("remote input refused: %s (%d events)", reason, count)
        code = ErrorCode.SUBSCRIBER_BUSY if reason == SUBSCRIBER_ACTIVE else ErrorCode.INPUT_PAUSED
        with contextlib.suppress(Exception):
            report = f"input refused: {reason} ({count} events)"
            await self.client.send(Error(code=code.value, message=report))
