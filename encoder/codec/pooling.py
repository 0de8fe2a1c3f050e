"""Patch sums of a map on the canvas: rotate to display, bilinear resize onto the canvas, zero
padding, sum per patch (PAPER.md section 2: a map's patch score is the sum over the patch of
the map resized onto the canvas).

All of it is linear, so it collapses into `left @ map @ right` with a [grid, H] and a [W, grid]
matrix built once per video (by `np.bincount` over the resampling taps); no canvas-sized map is
ever materialised.
"""

from __future__ import annotations

import numpy as np

from encoder.codec.canvas import Canvas
from encoder.codec.motion import CELL


def linear_taps(src: int, dst: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """1-D linear resampling of `src` samples to `dst`, exactly torch's bilinear (half-pixel
    centres, positions left of sample 0 clamped to it, the last sample repeated): output i is
    (1 - frac[i]) * x[lo[i]] + frac[i] * x[hi[i]]."""
    x = np.maximum((np.arange(dst) + 0.5) * (src / dst) - 0.5, 0.0)
    lo = x.astype(np.int64)
    hi = np.minimum(lo + 1, src - 1)
    return lo, hi, np.clip(x - lo, 0.0, 1.0)


def _pool_matrix(
    src: int, dst: int, offset: int, canvas: Canvas, labels: np.ndarray | None = None
) -> np.ndarray:
    """[grid, n] weights of source samples in the patch rows of the canvas: resize `src`
    samples to `dst`, place them at `offset`, sum each patch's `patch` rows. With `labels`
    ([src] ints < n), samples sharing a label share one column (a 4x4 cell's pixels)."""
    lo, hi, frac = linear_taps(src, dst)
    rows = offset + np.arange(dst)
    inside = (rows >= 0) & (rows < canvas.size)
    patch_row = rows[inside] // canvas.patch
    labels = np.arange(src) if labels is None else labels
    n = int(labels.max()) + 1
    index = np.concatenate([patch_row * n + labels[lo[inside]], patch_row * n + labels[hi[inside]]])
    weight = np.concatenate([1.0 - frac[inside], frac[inside]])
    return np.bincount(index, weight, minlength=canvas.grid * n).reshape(canvas.grid, n)


class PatchPooler:
    """Patch sums of maps of one video's frames on its canvas.

    A map that is constant on 4x4 motion cells pools straight from the cells through
    `left_cells` / `right_cells` (the nearest-neighbour upsampling folded into the matrices).
    """

    def __init__(self, canvas: Canvas, height: int, width: int) -> None:
        """`height` x `width`: the decoded frame (turned for display by `canvas.rotation`)."""
        self.turns = canvas.rotation // 90 % 4
        disp_h, disp_w = (width, height) if self.turns % 2 else (height, width)
        self.left = _pool_matrix(disp_h, canvas.resize_h, canvas.offset_y, canvas).astype(
            np.float32
        )
        self.right = _pool_matrix(disp_w, canvas.resize_w, canvas.offset_x, canvas).T.astype(
            np.float32
        )
        # Which row / column of the rotated cell grid each display row / column falls in;
        # rotating broadcast views keeps this O(H + W), not a full-frame index map.
        gh, gw = -(-height // CELL), -(-width // CELL)
        cell_y = np.rot90(
            np.broadcast_to((np.arange(height) // CELL)[:, None], (height, width)), self.turns
        )
        cell_x = np.rot90(
            np.broadcast_to((np.arange(width) // CELL)[None, :], (height, width)), self.turns
        )
        cell_ids = np.rot90(np.arange(gh * gw).reshape(gh, gw), self.turns)
        row_of, col_of = np.empty(gh * gw, np.int64), np.empty(gh * gw, np.int64)
        row_of[cell_ids.ravel()] = np.repeat(np.arange(cell_ids.shape[0]), cell_ids.shape[1])
        col_of[cell_ids.ravel()] = np.tile(np.arange(cell_ids.shape[1]), cell_ids.shape[0])
        self.row_cell = row_of[cell_y[:, 0] * gw + cell_x[:, 0]]  # [disp_h]
        self.col_cell = col_of[cell_y[0, :] * gw + cell_x[0, :]]  # [disp_w]
        self.left_cells = _pool_matrix(
            disp_h, canvas.resize_h, canvas.offset_y, canvas, self.row_cell
        ).astype(np.float32)
        self.right_cells = _pool_matrix(
            disp_w, canvas.resize_w, canvas.offset_x, canvas, self.col_cell
        ).T.astype(np.float32)

    def display(self, decoded: np.ndarray) -> np.ndarray:
        """A decoded-orientation map (pixels or cells) in display orientation."""
        return np.rot90(decoded, self.turns) if self.turns else decoded

    def pool(self, pixels: np.ndarray) -> np.ndarray:
        """[H, W] map (decoded orientation) → [grid, grid] float32 patch sums."""
        return self.pool_display(self.display(pixels))

    def pool_display(self, pixels: np.ndarray) -> np.ndarray:
        """Same for a map already in display orientation."""
        return (self.left @ pixels) @ self.right

    def pool_cells(self, cells: np.ndarray) -> np.ndarray:
        """Same for a map given per 4x4 cell [H/4, W/4] and nearest-upsampled to pixels."""
        return (self.left_cells @ self.display(cells)) @ self.right_cells

    def cells_to_display_pixels(self, cells: np.ndarray) -> np.ndarray:
        """The nearest-upsampled pixel map of `cells`, in display orientation."""
        return self.display(cells)[self.row_cell][:, self.col_cell]
