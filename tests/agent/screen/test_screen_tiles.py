"""Tile change detection and rect merging, on synthetic numpy frames."""

from __future__ import annotations

import numpy as np
import pytest

from agent.screen.tiles import changed_rects, changed_tiles, merge_tiles


def _frame(h: int = 256, w: int = 320) -> np.ndarray:
    return np.zeros((h, w, 4), dtype=np.uint8)


def test_identical_frames_have_no_rects() -> None:
    a = _frame()
    assert changed_rects(a, a.copy()) == []


def test_no_previous_frame_is_everything() -> None:
    assert changed_rects(None, _frame()) == [(0, 0, 320, 256)]


def test_size_change_is_everything() -> None:
    assert changed_rects(_frame(64, 64), _frame()) == [(0, 0, 320, 256)]


def test_one_pixel_marks_one_tile() -> None:
    a = _frame()
    b = a.copy()
    b[70, 130, 1] = 1
    assert changed_rects(a, b) == [(128, 64, 64, 64)]


def test_ragged_edge_is_clipped() -> None:
    a = _frame(100, 150)
    b = a.copy()
    b[99, 149] = 255
    assert changed_rects(a, b) == [(128, 64, 22, 36)]


def test_row_runs_and_vertical_merge() -> None:
    grid = np.array(
        [
            [1, 1, 0, 1],
            [1, 1, 0, 0],
            [0, 1, 1, 0],
            [0, 0, 0, 0],
        ],
        dtype=bool,
    )
    rects = merge_tiles(grid, tile=10, width=40, height=40)
    assert sorted(rects) == sorted([(0, 0, 20, 20), (30, 0, 10, 10), (10, 20, 20, 10)])


def test_merge_covers_exactly_the_changed_tiles() -> None:
    rng = np.random.default_rng(3)
    grid = rng.random((17, 30)) < 0.3
    rects = merge_tiles(grid, tile=8, width=30 * 8, height=17 * 8)
    covered = np.zeros_like(grid, dtype=int)
    for x, y, w, h in rects:
        covered[y // 8 : (y + h) // 8, x // 8 : (x + w) // 8] += 1
    assert np.array_equal(covered, grid.astype(int))  # every changed tile once, nothing else
    assert len(rects) < grid.sum()


def test_changed_tiles_grid_shape() -> None:
    a = _frame(130, 129)
    assert changed_tiles(a, a, tile=64).shape == (3, 3)


def test_shape_mismatch_rejected() -> None:
    with pytest.raises(ValueError, match="shape"):
        changed_tiles(_frame(64, 64), _frame(64, 128))
