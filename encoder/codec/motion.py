"""Motion map of one frame from the codec's own motion vectors (PAPER.md section 2, item 11).

Conventions of the reference, which decide whether we select the same patches:
- one vector per 4x4-pixel cell of the decoded frame; each exported block fills the cells of
  its footprint; cells with no vector (intra blocks) stay 0;
- vectors in whole pixels as `src - dst`; FFmpeg's src is dst + motion / scale in integer
  arithmetic, so sub-pixel motion is already truncated toward 0;
- L0 (past-reference) vectors only, from P and B frames alike: a block predicted only from the
  future counts as no motion, and I-frames have an all-zero map;
- `median` compensation subtracts the per-frame median vector taken over all cells, zeros
  included, from all cells (so intra cells get the camera's magnitude, as in the reference);
- `similarity` / `affine` fit a global motion model to the cells that carry a vector by
  trimmed least squares (3 rounds, each refit on the 70% of cells with the smallest error) and
  subtract it from those cells; cells without a vector stay 0 (the reference has no fit; this
  follows the paper's probe description);
- magnitude sqrt(vx^2 + vy^2), nearest-neighbour upsampled to pixels before the canvas resize.
"""

from __future__ import annotations

import numpy as np

CELL = 4  # pixels per motion-grid cell side
_FIT_ROUNDS = 3
_FIT_KEEP = 0.7


def motion_field(
    vectors: np.ndarray | None, height: int, width: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rasterise L0 vectors onto the 4x4 cell grid: (vx, vy, has_vector), each [H/4, W/4]."""
    gh, gw = -(-height // CELL), -(-width // CELL)
    field = np.zeros((3, gh * gw), np.float32)  # vx, vy, covered
    l0 = np.flatnonzero(vectors["source"] < 0) if vectors is not None else ()
    if len(l0):
        # Plain arrays first: indexing the structured array itself is far slower.
        bw, bh, dst_x, dst_y, src_x, src_y = (
            vectors[name][l0] for name in ("w", "h", "dst_x", "dst_y", "src_x", "src_y")
        )
        cells, block = _footprints(bw, bh, dst_x, dst_y, gh, gw)
        # int16 coordinates: widen before subtracting, a difference can leave int16's range
        field[0, cells] = np.subtract(src_x, dst_x, dtype=np.int32)[block]
        field[1, cells] = np.subtract(src_y, dst_y, dtype=np.int32)[block]
        field[2, cells] = 1.0
    field = field.reshape(3, gh, gw)
    return field[0], field[1], field[2] > 0


def _footprints(
    bw: np.ndarray, bh: np.ndarray, dst_x: np.ndarray, dst_y: np.ndarray, gh: int, gw: int
) -> tuple[np.ndarray, np.ndarray]:
    """Flat cell index of every 4x4 cell each block covers, and the block it belongs to.

    One vectorised expansion for every block size (one numpy call per step, not per block);
    dst is the block centre, and blocks are whole multiples of 4 px in every codec that exports.
    Cells outside the frame are dropped. Where blocks overlap, the later one wins.
    """
    bw, bh = bw.astype(np.int64), bh.astype(np.int64)
    left = (dst_x - bw // 2) // CELL
    top = (dst_y - bh // 2) // CELL
    ncols, nrows = np.maximum(bw // CELL, 1), np.maximum(bh // CELL, 1)
    per_block = ncols * nrows
    block = np.repeat(np.arange(len(bw)), per_block)
    k = np.arange(len(block)) - np.repeat(np.cumsum(per_block) - per_block, per_block)
    row_in, col_in = np.divmod(k, ncols[block])
    rows, cols = top[block] + row_in, left[block] + col_in
    inside = (rows >= 0) & (rows < gh) & (cols >= 0) & (cols < gw)
    return (rows * gw + cols)[inside], block[inside]


def _cell_centres(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    return xs * CELL + CELL / 2, ys * CELL + CELL / 2


def _design(x: np.ndarray, y: np.ndarray, model: str) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the linear systems for (vx, vy) as one stacked least-squares problem."""
    one, zero = np.ones_like(x), np.zeros_like(x)
    if model == "similarity":  # vx = a x - b y + tx ; vy = b x + a y + ty
        ax = np.stack([x, -y, one, zero], 1)
        ay = np.stack([y, x, zero, one], 1)
    else:  # affine: vx = a x + b y + c ; vy = d x + e y + f
        ax = np.concatenate([np.stack([x, y, one], 1), np.zeros((len(x), 3), x.dtype)], 1)
        ay = np.concatenate([np.zeros((len(x), 3), x.dtype), np.stack([x, y, one], 1)], 1)
    return ax, ay


def fit_global_motion(
    vx: np.ndarray, vy: np.ndarray, covered: np.ndarray, model: str
) -> tuple[np.ndarray, np.ndarray]:
    """Trimmed least-squares fit of a similarity or affine field; returns its (vx, vy) per cell."""
    xs, ys = _cell_centres(vx.shape)
    px, py = np.zeros_like(vx), np.zeros_like(vy)
    n_params = 4 if model == "similarity" else 6
    idx = np.flatnonzero(covered)
    if len(idx) < n_params:
        return px, py
    x, y = xs.ravel()[idx], ys.ravel()[idx]
    tx, ty = vx.ravel()[idx], vy.ravel()[idx]
    ax, ay = _design(x, y, model)
    keep = np.arange(len(idx))
    params = np.zeros(n_params, np.float64)
    for _ in range(_FIT_ROUNDS):
        a = np.concatenate([ax[keep], ay[keep]]).astype(np.float64)
        b = np.concatenate([tx[keep], ty[keep]]).astype(np.float64)
        params = np.linalg.lstsq(a, b, rcond=None)[0]
        err = (ax @ params - tx) ** 2 + (ay @ params - ty) ** 2
        n_keep = max(n_params, int(len(idx) * _FIT_KEEP))
        keep = np.sort(np.argsort(err, kind="stable")[:n_keep])
    ax_all, ay_all = _design(xs.ravel(), ys.ravel(), model)
    px = (ax_all @ params).reshape(vx.shape).astype(np.float32)
    py = (ay_all @ params).reshape(vy.shape).astype(np.float32)
    return px, py


def median_by_partition(values: np.ndarray) -> np.float32:
    """np.median by partition, without np.median's per-call checks (`benchmarks/codec_speed.py`
    times both)."""
    flat = values.ravel()
    n = len(flat)
    mid = n // 2
    if n % 2:
        return np.float32(np.partition(flat, mid)[mid])
    part = np.partition(flat, [mid - 1, mid])
    return np.float32((part[mid - 1] + part[mid]) / 2)


def motion_magnitude(
    vx: np.ndarray, vy: np.ndarray, covered: np.ndarray, compensate: str
) -> np.ndarray:
    """Per-cell motion magnitude [H/4, W/4] of a `motion_field` after camera compensation."""
    if compensate == "median":
        vx = vx - median_by_partition(vx)
        vy = vy - median_by_partition(vy)
    elif compensate in ("similarity", "affine"):
        px, py = fit_global_motion(vx, vy, covered, compensate)
        vx = np.where(covered, vx - px, 0.0)
        vy = np.where(covered, vy - py, 0.0)
    return np.sqrt(vx * vx + vy * vy).astype(np.float32)


def cells_to_pixels(cells: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour upsampling of a cell map to the [H, W] pixel grid."""
    return np.repeat(np.repeat(cells, CELL, axis=0), CELL, axis=1)[:height, :width]
