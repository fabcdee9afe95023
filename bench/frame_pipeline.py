"""Benchmark: frames per second of capture + diff + encode at 1920×1080 (not a test: no assertions).

Run with ``.venv/bin/python -m bench.frame_pipeline``. It starts its own Xvfb (needs ``xvfb`` and
the venv's Tk, as the X11 tests do) and measures three screens:

* static: nothing changes (the common case: a subscriber reading the operator's instructions);
* 5 %: a 432×240 photo-like patch changes every frame (a video or an animation in a corner);
* full: every pixel changes every frame (scrolling a photo, a full-screen video).

For each it reports the same pipeline on synthetic numpy frames (no capture) beside the real
capture, so the cost of ``mss`` under X11 can be told from ours. Counts and time are bounded.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Generator

import numpy as np
import numpy.typing as npt

from agent.screen.capture import Capturer, Frame
from agent.screen.pipeline import FramePipeline
from protocol.screen import encode_update

WIDTH, HEIGHT = 1920, 1080
PATCH_W, PATCH_H = 432, 240  # 5.0 % of 1920×1080


def _photo(w: int, h: int, seed: int) -> npt.NDArray[np.uint8]:
    """BGRA, gradient plus noise (many colours, so the encoder picks JPEG)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    bgra = np.empty((h, w, 4), dtype=np.uint8)
    bgra[..., 0] = (xx + seed * 7) % 256
    bgra[..., 1] = (yy + seed * 3) % 256
    bgra[..., 2] = ((xx + yy) // 4) % 256
    noise = rng.integers(0, 16, (h, w, 3), dtype=np.uint8)
    bgra[..., :3] = bgra[..., :3] // 2 + noise
    bgra[..., 3] = 255
    return bgra


def _desktop() -> npt.NDArray[np.uint8]:
    """BGRA: a flat desktop with text-like stripes (few colours)."""
    bgra = np.full((HEIGHT, WIDTH, 4), 235, dtype=np.uint8)
    bgra[::16, :, :3] = 40
    bgra[:, ::9, :3] = 90
    return bgra


def _synthetic_frames(scene: str, n_variants: int = 4) -> Callable[[int], Frame]:
    base = _desktop()
    variants: list[npt.NDArray[np.uint8]] = []
    for i in range(n_variants):
        px = base.copy()
        if scene == "5%":
            px[HEIGHT - PATCH_H :, WIDTH - PATCH_W :] = _photo(PATCH_W, PATCH_H, i)
        elif scene == "full":
            px = _photo(WIDTH, HEIGHT, i)
        variants.append(px)

    def frame(i: int) -> Frame:
        return Frame(width=WIDTH, height=HEIGHT, pixels=variants[i % n_variants].copy())

    return frame


def _run(
    next_frame: Callable[[int], Frame],
    *,
    frames: int,
    seconds: float,
    lossless: bool,
    excluded: Callable[[], float] = lambda: 0.0,
) -> tuple[float, float]:
    """(frames per second, mean encoded KiB per frame) over at most ``frames`` / ``seconds``;
    ``excluded()`` is time inside the loop that is not ours (changing the screen) and is left out."""
    pipe = FramePipeline(lossless=lossless, keepalive_interval=1e9)
    first = pipe.next_update(next_frame(0), now=0.0)  # keyframe, not measured
    assert first is not None
    count = 0
    sent = 0
    before = excluded()
    start = time.perf_counter()
    deadline = start + seconds
    for i in range(1, frames + 1):
        update = pipe.next_update(next_frame(i), now=float(i))
        if update is not None:
            sent += len(encode_update(update))
        count += 1
        if time.perf_counter() > deadline:
            break
    elapsed = time.perf_counter() - start - (excluded() - before)
    return count / elapsed, sent / count / 1024


class _Screen:
    """Real frames: Tk windows on an Xvfb screen, captured with mss."""

    def __init__(self, display: str) -> None:
        self.display = display
        self.excluded = 0.0  # seconds spent changing the screen (xdotool), not in the pipeline

    def frames(self, scene: str, capturer: Capturer) -> Generator[Callable[[int], Frame], None, None]:
        from PIL import Image

        from tests.x11 import draw_pattern

        base = _desktop()[..., 2::-1]
        with draw_pattern(self.display, Image.fromarray(np.ascontiguousarray(base))):
            if scene == "static":
                yield lambda _i: capturer.grab()
                return
            if scene == "5%":
                patches = [_photo(PATCH_W, PATCH_H, i)[..., 2::-1] for i in range(2)]
                wins = [
                    draw_pattern(
                        self.display,
                        Image.fromarray(np.ascontiguousarray(p)),
                        x=WIDTH - PATCH_W,
                        y=HEIGHT - PATCH_H,
                    )
                    for p in patches
                ]
            else:
                patches = [_photo(WIDTH, HEIGHT, i)[..., 2::-1] for i in range(2)]
                wins = [draw_pattern(self.display, Image.fromarray(np.ascontiguousarray(p))) for p in patches]
            # Two stacked windows; raising one or the other with xdotool costs a round trip but no
            # drawing in Python, so the screen really changes between grabs.
            from tests.x11 import xdotool

            ids = xdotool(self.display, "search", "--class", "Tk").split()
            try:

                def grab(i: int) -> Frame:
                    if len(ids) >= 2:
                        t = time.perf_counter()
                        xdotool(self.display, "windowraise", ids[-1 - i % 2])
                        self.excluded += time.perf_counter() - t
                    return capturer.grab()

                yield grab
            finally:
                for w in wins:
                    w.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60, help="frames per measurement (60)")
    parser.add_argument("--seconds", type=float, default=8.0, help="time bound per measurement (8 s)")
    parser.add_argument("--lossless", action="store_true", help="PNG/zlib only, no JPEG")
    args = parser.parse_args()

    rows: list[tuple[str, float, float, float | None, float | None]] = []
    for scene in ("static", "5%", "full"):
        fps, kib = _run(
            _synthetic_frames(scene), frames=args.frames, seconds=args.seconds, lossless=args.lossless
        )
        rows.append((scene, fps, kib, None, None))

    from tests.x11 import missing_x11_tools, xvfb

    if not missing_x11_tools():
        with xvfb(WIDTH, HEIGHT) as display:
            os.environ["DISPLAY"] = display
            screen = _Screen(display)
            with Capturer(1, display=display) as cap:
                t0 = time.perf_counter()
                n = 0
                while n < args.frames and time.perf_counter() - t0 < args.seconds:
                    cap.grab()
                    n += 1
                grab_fps = n / (time.perf_counter() - t0)
                for i, scene in enumerate(("static", "5%", "full")):
                    gen = screen.frames(scene, cap)
                    next_frame = next(gen)
                    fps, kib = _run(
                        next_frame,
                        frames=args.frames,
                        seconds=args.seconds,
                        lossless=args.lossless,
                        excluded=lambda: screen.excluded,
                    )
                    gen.close()
                    rows[i] = (scene, rows[i][1], rows[i][2], fps, kib)
        print(f"mss grab alone at {WIDTH}x{HEIGHT}: {grab_fps:.1f} fps")
    else:
        print("Xvfb not found: capture columns skipped")

    mode = "lossless" if args.lossless else "lossy (JPEG q70 / PNG)"
    print(f"\nframe pipeline at {WIDTH}x{HEIGHT}, {mode}, {os.cpu_count()} CPUs")
    print(f"{'scene':<8} {'synthetic fps':>14} {'KiB/frame':>10} {'capture fps':>12} {'KiB/frame':>10}")
    for scene, sfps, skib, cfps, ckib in rows:
        cap_fps = f"{cfps:12.1f}" if cfps is not None else f"{'-':>12}"
        cap_kib = f"{ckib:10.1f}" if ckib is not None else f"{'-':>10}"
        print(f"{scene:<8} {sfps:14.1f} {skib:10.1f} {cap_fps} {cap_kib}")


if __name__ == "__main__":
    main()
