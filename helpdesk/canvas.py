"""Paint received screen updates onto an RGB canvas, the way a console does.

Uses the reference payload decoder (:func:`agent.screen.encode.decode_payload`): a third-party
console checks its own decoder against the same function.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from agent.screen.encode import decode_payload
from protocol.screen import FLAG_KEYFRAME, ScreenUpdate, decode_update


class Canvas:
    def __init__(self) -> None:
        self.pixels: npt.NDArray[np.uint8] | None = None
        self.updates = 0
        self.keyframes = 0
        self.last: ScreenUpdate | None = None

    def apply(self, frame: bytes) -> ScreenUpdate:
        update = decode_update(frame)
        shape = (update.height, update.width, 3)
        if self.pixels is None or self.pixels.shape != shape:
            self.pixels = np.zeros(shape, dtype=np.uint8)
        for rect in update.rects:
            self.pixels[rect.y : rect.y + rect.h, rect.x : rect.x + rect.w] = decode_payload(
                rect.encoding, rect.payload, rect.w, rect.h
            )
        self.updates += 1
        if update.flags & FLAG_KEYFRAME:
            self.keyframes += 1
        self.last = update
        return update

    def save_png(self, path: Path) -> None:
        from PIL import Image

        if self.pixels is None:
            raise ValueError("nothing received yet")
        Image.fromarray(self.pixels, "RGB").save(path)
