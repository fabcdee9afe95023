"""Change detection on a tile grid, and merging of changed tiles into few rectangles.

Comparing whole tiles (default 64×64) instead of exact pixel boxes keeps the diff one vectorised
pass over the frame and gives the encoder blocks big enough to compress well; merging neighbours
keeps the rect count (and so per-rect headers and JPEG/PNG overhead) low. Merging is two steps:
runs of changed tiles in one tile row become one rect, then runs with the same column span in
consecutive rows are stacked into one taller rect. That is exact (never marks an unchanged tile
as changed) and simple enough for the browser-side reasoning in ``docs/screen-format.md``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["DEFAULT_TILE", "RectXYWH", "changed_rects", "changed_tiles", "merge_tiles"]

DEFAULT_TILE = 64
"""Tile edge in pixels: 510 tiles on 1920×1080, small enough that a blinking cursor costs ~1 tile."""

RectXYWH = tuple[int, int, int, int]


def _as_words(frame: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint32]:
    """View a (h, w, 4) frame as (h, w) 32-bit words: one compare per pixel instead of four."""
    if frame.ndim != 3 or frame.shape[2] != 4:
        raise ValueError(f"expected a (height, width, 4) frame, not {frame.shape}")
    contiguous = np.ascontiguousarray(frame)
    return contiguous.view(np.uint32).reshape(frame.shape[0], frame.shape[1])


def changed_tiles(
    prev: npt.NDArray[np.uint8], cur: npt.NDArray[np.uint8], *, tile: int = DEFAULT_TILE
) -> npt.NDArray[np.bool_]:
    """Boolean grid ``(ceil(h/tile), ceil(w/tile))``: True where any pixel of the tile differs.

    Edge tiles may be smaller than ``tile``; ``reduceat`` handles the ragged edge without padding
    (no copy of the frame).
    """
    if tile < 1:
        raise ValueError("tile must be at least 1 pixel")
    if prev.shape != cur.shape:
        raise ValueError(f"frames differ in shape: {prev.shape} vs {cur.shape}")
    diff = _as_words(prev) != _as_words(cur)
    height, width = diff.shape
    rows = np.arange(0, height, tile)
    cols = np.arange(0, width, tile)
    by_rows = np.logical_or.reduceat(diff, rows, axis=0)
    grid: npt.NDArray[np.bool_] = np.logical_or.reduceat(by_rows, cols, axis=1)
    return grid


def merge_tiles(
    grid: npt.NDArray[np.bool_], *, tile: int = DEFAULT_TILE, width: int, height: int
) -> list[RectXYWH]:
    """Merge a changed-tile grid into ``(x, y, w, h)`` pixel rects, clipped to ``width``×``height``.

    Row runs first, then runs with an identical column span in consecutive rows are stacked.
    Rects come out sorted by their top row, then left column.
    """
    open_runs: dict[tuple[int, int], int] = {}  # (col0, col1) -> first tile row
    done: list[tuple[int, int, int, int]] = []  # (row0, row1, col0, col1), half-open
    n_rows = grid.shape[0]
    for r in range(n_rows + 1):
        runs: set[tuple[int, int]] = set()
        if r < n_rows:
            row = grid[r]
            if row.any():
                padded = np.concatenate(([False], row, [False]))
                edges = np.flatnonzero(padded[1:] != padded[:-1])
                runs = {(int(edges[i]), int(edges[i + 1])) for i in range(0, len(edges), 2)}
        for span in [s for s in open_runs if s not in runs]:
            done.append((open_runs.pop(span), r, span[0], span[1]))
        for span in runs:
            open_runs.setdefault(span, r)
    done.sort()
    rects: list[RectXYWH] = []
    for row0, row1, col0, col1 in done:
        x, y = col0 * tile, row0 * tile
        rects.append((x, y, min(col1 * tile, width) - x, min(row1 * tile, height) - y))
    return rects


def changed_rects(
    prev: npt.NDArray[np.uint8] | None, cur: npt.NDArray[np.uint8], *, tile: int = DEFAULT_TILE
) -> list[RectXYWH]:
    """The rects of ``cur`` that differ from ``prev``; the whole frame when there is no ``prev``
    or the size changed (a resolution change repaints everything)."""
    height, width = cur.shape[0], cur.shape[1]
    if prev is None or prev.shape != cur.shape:
        return [(0, 0, width, height)]
    return merge_tiles(changed_tiles(prev, cur, tile=tile), tile=tile, width=width, height=height)
