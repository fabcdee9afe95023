"""Screen capture with ``mss`` on Windows, macOS and X11.

Monitor indexes follow mss and the binary screen format (``docs/screen-format.md``): 0 is the
bounding box of all monitors, 1.. one monitor each. Frames are BGRA, as every mss backend
delivers them, so capture costs no conversion; the encoder converts only the rects it sends.
"""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import numpy as np
import numpy.typing as npt

from agent.errors import AgentError, AgentErrorCode

__all__ = [
    "CaptureError",
    "Capturer",
    "Frame",
    "Monitor",
    "MonitorNotFound",
    "NoDisplayError",
    "list_monitors",
]


class CaptureError(AgentError):
    """The screen cannot be captured; the agent reports "screen sharing unavailable"."""

    code = AgentErrorCode.CAPTURE_FAILED


class NoDisplayError(CaptureError):
    """No graphical session to capture: the agent runs on a console or as a service without a display."""

    MESSAGE = (
        "画面を取得できません：表示装置（DISPLAY）が見つかりません。"
        "デスクトップにログインした状態でエージェントを起動してください。 / "
        "Cannot capture the screen: no display (DISPLAY is not set or unreachable). "
        "Start the agent from a logged-in desktop session."
    )
    code = AgentErrorCode.NO_DISPLAY

    def __init__(self, detail: str = "") -> None:
        super().__init__(self.MESSAGE + (f" ({detail})" if detail else ""))


class MonitorNotFound(CaptureError):
    """The requested monitor index does not exist (a monitor was unplugged, or a bad request)."""

    code = AgentErrorCode.MONITOR_NOT_FOUND


@dataclass(frozen=True, slots=True, kw_only=True)
class Monitor:
    """One entry of the monitor layout, in virtual-desktop pixels (left/top may be negative)."""

    index: int
    left: int
    top: int
    width: int
    height: int


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class Frame:
    """One captured screen: ``pixels`` is a read-only ``(height, width, 4)`` uint8 BGRA array.

    The pipeline keeps the previous frame to diff against, so the array is made read-only here:
    a caller that reused the buffer would silently corrupt change detection.
    """

    width: int
    height: int
    pixels: npt.NDArray[np.uint8]
    monitor_index: int = 1

    def __post_init__(self) -> None:
        if self.pixels.shape != (self.height, self.width, 4) or self.pixels.dtype != np.uint8:
            raise ValueError(
                f"pixels must be uint8 of shape ({self.height}, {self.width}, 4), "
                f"not {self.pixels.dtype} {self.pixels.shape}"
            )
        self.pixels.flags.writeable = False

    @property
    def bgra(self) -> bytes:
        """The pixels as packed BGRA bytes, row by row (a copy)."""
        return self.pixels.tobytes()

    @classmethod
    def from_bgra(cls, data: bytes | bytearray, width: int, height: int, *, monitor_index: int = 1) -> Frame:
        pixels = np.frombuffer(bytes(data), dtype=np.uint8).reshape(height, width, 4)
        return cls(width=width, height=height, pixels=pixels, monitor_index=monitor_index)


def _check_display(display: str | None) -> None:
    if sys.platform.startswith("linux") and not (display or os.environ.get("DISPLAY")):
        raise NoDisplayError("DISPLAY is not set")


def _open_mss(display: str | None) -> Any:
    """Open an mss instance, turning "no X server" into :class:`NoDisplayError`."""
    _check_display(display)
    import mss  # Imported late: on a headless Linux box the agent must still start.

    try:
        # ``display`` exists only on X11; elsewhere it is always None and not passed.
        return mss.MSS(display=display) if display else mss.MSS()
    except mss.ScreenShotError as exc:
        raise NoDisplayError(str(exc)) from exc


def _monitors_from(sct: Any) -> list[Monitor]:
    return [
        Monitor(
            index=i, left=int(m["left"]), top=int(m["top"]), width=int(m["width"]), height=int(m["height"])
        )
        for i, m in enumerate(sct.monitors)
    ]


def list_monitors(*, display: str | None = None) -> list[Monitor]:
    """The monitor layout: index 0 is all monitors combined, 1.. each monitor (mss order)."""
    sct = _open_mss(display)
    try:
        return _monitors_from(sct)
    finally:
        sct.close()


class Capturer:
    """Grabs one monitor (or all, index 0) as :class:`Frame` objects.

    One mss connection is kept for the capturer's life (opening one per grab costs an X round
    trip and shared-memory setup). Grabs are serialized by a lock, so the adapter may call
    :meth:`grab` from whichever worker thread ``asyncio.to_thread`` picks. The monitor layout is
    re-read on every grab: a resolution change shows up as a frame of another size, which the
    pipeline answers with a keyframe.
    """

    def __init__(self, monitor_index: int = 1, *, display: str | None = None) -> None:
        self.monitor_index = monitor_index
        self._display = display
        self._lock = threading.Lock()
        self._sct: Any = None

    def _instance(self) -> Any:
        if self._sct is None:
            self._sct = _open_mss(self._display)
        return self._sct

    def monitor(self) -> Monitor:
        """The captured monitor's current position and size."""
        with self._lock:
            return self._monitor_locked()

    def _monitor_locked(self) -> Monitor:
        monitors = _monitors_from(self._instance())
        if not 0 <= self.monitor_index < len(monitors):
            raise MonitorNotFound(
                f"monitor {self.monitor_index} does not exist ({len(monitors) - 1} monitors)"
            )
        return monitors[self.monitor_index]

    def grab(self) -> Frame:
        """Capture the monitor now. Blocking; call it off the event loop."""
        import mss

        with self._lock:
            m = self._monitor_locked()
            region = {"left": m.left, "top": m.top, "width": m.width, "height": m.height}
            try:
                shot = self._instance().grab(region)
            except mss.ScreenShotError as exc:
                raise CaptureError(f"screen capture failed: {exc}") from exc
            pixels = np.frombuffer(shot.raw, dtype=np.uint8).reshape(shot.height, shot.width, 4)
            return Frame(
                width=shot.width, height=shot.height, pixels=pixels, monitor_index=self.monitor_index
            )

    def close(self) -> None:
        with self._lock:
            if self._sct is not None:
                self._sct.close()
                self._sct = None

    def __enter__(self) -> Capturer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
