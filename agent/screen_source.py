"""The real screen and the real pointer/keyboard, behind the session's source and sink interfaces.

Capture runs in the sharer's one worker thread (an X connection, like ``mss``, belongs to the
thread that opened it), so the capturer is opened lazily on the first grab there. Input is
applied with :mod:`agent.input.inject`, and paused for a moment after any local key press or
pointer move: the subscriber's own input always wins. Neither class logs pixels, keys or typed
text (第33条 secrecy of communications).
"""

from __future__ import annotations

import logging
import threading
import time

from protocol.messages import InputEvent

from .input.inject import InputInjector, InputRejected, LocalInputGuard
from .screen.capture import Capturer, Frame, Monitor, list_monitors

log = logging.getLogger("agent.screen_source")

__all__ = ["CaptureSource", "InjectorSink", "NoInputSink"]


class CaptureSource:
    """One monitor of the real desktop (mss numbering: 0 = all monitors, 1.. = one each).

    ``lossless`` asks the session for a pipeline without JPEG (exact pixels, more bytes): for
    reading small print, and for tests that compare pixels exactly.
    """

    def __init__(self, monitor: int = 1, *, lossless: bool = False) -> None:
        self._layout = list_monitors()  # raises NoDisplayError without a display
        self._wanted = monitor if any(m.index == monitor for m in self._layout) else 1
        self.lossless = lossless
        self._capturer: Capturer | None = None
        self._lock = threading.Lock()  # select() runs on the event loop, grab() in the worker

    def monitors(self) -> list[Monitor]:
        return list(self._layout)

    @property
    def current(self) -> Monitor:
        wanted = self._wanted
        return next(m for m in self._layout if m.index == wanted)

    def select(self, index: int) -> None:
        """Share monitor ``index`` from the next grab on; ``ValueError`` if there is none."""
        if not any(m.index == index for m in self._layout):
            # A monitor may have been plugged in since we started: look once more.
            layout = list_monitors()
            if not any(m.index == index for m in layout):
                raise ValueError(f"no monitor {index}")
            with self._lock:
                self._layout = layout
        with self._lock:
            self._wanted = index

    def grab(self) -> Frame:
        with self._lock:
            wanted = self._wanted
        if self._capturer is None or self._capturer.monitor_index != wanted:
            if self._capturer is not None:
                self._capturer.close()
            self._capturer = Capturer(wanted)
        return self._capturer.grab()

    def close(self) -> None:
        if self._capturer is not None:
            self._capturer.close()
            self._capturer = None


class InjectorSink:
    """Applies operator input to the monitor being shared, unless the subscriber is busy.

    Coordinates are relative to the shared monitor (what the operator sees), so switching the
    shared monitor switches where clicks land; input outside it is dropped.
    """

    def __init__(self, source: CaptureSource, *, pause_seconds: float = 2.0) -> None:
        self.source = source
        self.guard = LocalInputGuard(pause_seconds=pause_seconds)
        self.guard.start()
        self._injector: InputInjector | None = None
        self._monitor: Monitor | None = None
        self.applied = 0
        self.paused_drops = 0
        self._was_paused = False
        self.rejected = 0

    def apply(self, event: InputEvent) -> None:
        if self.guard.paused(time.monotonic()):
            # The subscriber is using the PC right now: their input wins. Whatever the operator
            # held down is let go at once (and a release still goes through), so no button or key
            # stays pressed under the subscriber's hand.
            if self.paused_drops == 0 or not self._was_paused:
                log.info("remote input paused: the subscriber is using the keyboard or mouse")
            self._was_paused = True
            self.paused_drops += 1
            if self._injector is not None and self._injector.holding:
                self._injector.release_all()
            return
        self._was_paused = False
        monitor = self.source.current
        if self._injector is None or self._monitor != monitor:
            if self._injector is not None:
                self._injector.close()  # releases anything held on the previous monitor
            self._injector = InputInjector(monitor, guard=self.guard)
            self._monitor = monitor
        try:
            self._injector.apply(event)
        except InputRejected:
            self.rejected += 1
            log.info("dropped malformed input (%s event)", event.kind)  # never the key or text
            return
        self.applied += 1

    def release(self) -> None:
        """Release keys and buttons held down by the operator (control withdrawn or ended): a
        stuck Ctrl or mouse button must not outlive the consent."""
        if self._injector is not None:
            self._injector.release_all()

    def close(self) -> None:
        if self._injector is not None:
            self._injector.release_all()
            self._injector.close()
            self._injector = None
        self.guard.stop()


class NoInputSink:
    """Where the screen can be shared but input cannot be injected (no XTest, macOS without the
    Accessibility permission, a Wayland session): input is dropped, counted and logged once."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        self.dropped = 0

    def apply(self, event: InputEvent) -> None:
        if self.dropped == 0:
            log.warning("remote control is unavailable on this PC: %s", self.reason)
        self.dropped += 1
