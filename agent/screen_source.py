"""The real screen and the real pointer/keyboard, behind the session's source and sink interfaces.

Capture runs in the sharer's one worker thread (an X connection, like ``mss``, belongs to the
thread that opened it), so the capturer is opened lazily on the first grab there. Input is
applied with :mod:`agent.input.inject`, and paused for a moment after any local key press or
pointer move: the subscriber's own input always wins.
"""

from __future__ import annotations

import logging
import time

from protocol.messages import InputEvent as WireInput

from .input.inject import InputEvent, InputInjector, InputRejected, LocalInputGuard
from .screen.capture import Capturer, Frame, Monitor, list_monitors

log = logging.getLogger("agent.screen_source")


class CaptureSource:
    def __init__(self, monitor: int = 1) -> None:
        self._layout = list_monitors()  # raises NoDisplayError without a display
        self._wanted = monitor if any(m.index == monitor for m in self._layout) else 1
        self._capturer: Capturer | None = None

    def monitors(self) -> list[Monitor]:
        return list(self._layout)

    @property
    def current(self) -> Monitor:
        return next(m for m in self._layout if m.index == self._wanted)

    def select(self, index: int) -> None:
        if not any(m.index == index for m in self._layout):
            raise ValueError(f"no monitor {index}")
        self._wanted = index

    def grab(self) -> Frame:
        if self._capturer is None or self._capturer.monitor().index != self._wanted:
            if self._capturer is not None:
                self._capturer.close()
            self._capturer = Capturer(self._wanted)
        return self._capturer.grab()


def to_local(event: WireInput) -> InputEvent:
    """The wire message → the injector's event; raises ``InputRejected`` for nonsense."""
    return InputEvent(
        kind=event.kind,
        x=event.x,
        y=event.y,
        button=event.button,
        action=event.action,
        count=event.count,
        dx=event.dx,
        dy=event.dy,
        key=event.key,
        code=event.code,
        text=event.text,
    )


class InjectorSink:
    """Applies operator input to the monitor being shared, unless the subscriber is busy."""

    def __init__(self, source: CaptureSource, *, pause_seconds: float = 2.0) -> None:
        self.source = source
        self.guard = LocalInputGuard(pause_seconds=pause_seconds)
        self.guard.start()
        self._injector: InputInjector | None = None
        self._monitor: Monitor | None = None
        self.applied = 0
        self.paused_drops = 0

    def apply(self, event: WireInput) -> None:
        if self.guard.paused(time.monotonic()):
            self.paused_drops += 1  # the subscriber is using the PC right now
            return
        monitor = self.source.current
        if self._injector is None or self._monitor != monitor:
            self._injector = InputInjector(monitor, guard=self.guard)
            self._monitor = monitor
        try:
            self._injector.apply(to_local(event))
        except InputRejected as exc:
            log.info("dropped malformed input: %s", exc)
            return
        self.applied += 1

    def close(self) -> None:
        if self._injector is not None:
            self._injector.release_all()
            self._injector.close()
        self.guard.stop()
