"""Per-frame normalisation and fusion of the motion and residual maps (PAPER.md section 2).

Each map is divided by its own 95th percentile (floored: 1e-6 for motion, 1.0 for residual),
clipped to [0, 1], and the two are fused 1:1 (`mean`, the default; `max`, `sum`, `geomean`
are options). Percentiles use numpy's default linear interpolation, computed exactly but
cheaply: the residual is uint8 (a 256-bin histogram) and the motion map is piecewise constant
on 4x4 cells (cell values weighted by the pixels each covers), so neither needs a sort over
all pixels.
"""

from __future__ import annotations

import numpy as np

from encoder.codec.motion import CELL

PERCENTILE = 95.0


def percentile_of_counts(values: np.ndarray, counts: np.ndarray, q: float) -> float:
    """np.percentile(q, method='linear') of a sample given as sorted values with multiplicities."""
    keep = counts > 0
    values, counts = values[keep], counts[keep]
    total = int(counts.sum())
    if total == 0:
        return 0.0
    position = q / 100.0 * (total - 1)
    lo, frac = int(np.floor(position)), position - np.floor(position)
    ends = np.cumsum(counts)  # order statistic k is values[first i with ends[i] > k]
    v_lo = values[np.searchsorted(ends, lo, side="right")]
    v_hi = values[np.searchsorted(ends, min(lo + 1, total - 1), side="right")]
    return float(v_lo + frac * (float(v_hi) - float(v_lo)))


def uint8_histogram(values: np.ndarray) -> np.ndarray:
    """Counts of each of the 256 values of a uint8 array.

    np.bincount widens every element to intp first; for large maps, counting adjacent pixel
    pairs as uint16 halves that work and the 256 x 256 pair table folds back into the two
    bytes' counts (720p: 1.2 vs 2.2 ms). Small maps count directly (the table costs more).
    (torch.bincount is faster still, but its OpenMP workers spin on the core the decoder needs.)
    """
    flat = np.ascontiguousarray(values).reshape(-1)
    if len(flat) < 1 << 17:
        return np.bincount(flat, minlength=256)
    pairs = flat[: len(flat) // 2 * 2].view(np.uint16)
    table = np.bincount(pairs, minlength=65536).reshape(256, 256)
    counts = table.sum(axis=0) + table.sum(axis=1)  # one byte each, whatever the endianness
    if len(flat) % 2:
        counts[flat[-1]] += 1
    return counts


def residual_percentile(residual: np.ndarray, q: float = PERCENTILE) -> float:
    return percentile_of_counts(np.arange(256, dtype=np.float64), uint8_histogram(residual), q)


def cell_map_percentile(cells: np.ndarray, height: int, width: int, q: float = PERCENTILE) -> float:
    """Percentile of the pixel map that nearest-upsampling `cells` to [height, width] gives."""
    gh, gw = cells.shape
    if height % CELL == 0 and width % CELL == 0:
        # Every cell covers CELL^2 pixels: pixel order statistic k is cell order statistic
        # k // CELL^2, so two partitions of the cells replace a sort of all pixels.
        total = height * width
        position = q / 100.0 * (total - 1)
        lo = int(np.floor(position))
        hi = min(lo + 1, total - 1)
        ks = sorted({lo // CELL**2, hi // CELL**2})
        part = np.partition(cells.ravel(), ks)
        v_lo, v_hi = float(part[lo // CELL**2]), float(part[hi // CELL**2])
        return v_lo + (position - lo) * (v_hi - v_lo)
    rows = np.full(gh, CELL)
    rows[-1] = height - CELL * (gh - 1)
    cols = np.full(gw, CELL)
    cols[-1] = width - CELL * (gw - 1)
    weights = (rows[:, None] * cols[None, :]).ravel()
    flat = cells.ravel().astype(np.float64)
    order = np.argsort(flat, kind="stable")
    return percentile_of_counts(flat[order], weights[order], q)


# Fusions that are weighted sums, so motion and residual can be pooled separately.
LINEAR_FUSIONS = {"mean": (0.5, 0.5), "sum": (1.0, 1.0)}


def clip_to_percentile(
    motion_cells: np.ndarray, residual: np.ndarray, motion_floor: float, residual_floor: float
) -> tuple[np.ndarray, float, np.ndarray, float]:
    """Both maps clipped at their normalisers: (min(motion, s_m), s_m, min(residual, s_r), s_r).

    The normalised map is clipped / s; the division is left to the caller because it commutes
    with pooling (one multiply per patch instead of one per pixel). Motion stays per 4x4 cell;
    its percentile is that of the nearest-upsampled pixel map.
    """
    height, width = residual.shape
    motion_scale = max(cell_map_percentile(motion_cells, height, width), motion_floor)
    residual_scale = max(residual_percentile(residual), residual_floor)
    motion = np.minimum(motion_cells, np.float32(motion_scale))
    res = np.minimum(residual, np.float32(residual_scale), dtype=np.float32)  # one pass
    return motion, motion_scale, res, residual_scale


def fuse_pixels(motion: np.ndarray, res: np.ndarray, fusion: str) -> np.ndarray:
    """Pixel-wise fusion of two normalised maps of the same shape."""
    if fusion in LINEAR_FUSIONS:
        w_motion, w_res = LINEAR_FUSIONS[fusion]
        return motion * np.float32(w_motion) + res * np.float32(w_res)
    if fusion == "max":
        return np.maximum(motion, res)
    if fusion == "geomean":
        return np.sqrt(motion * res)
    raise ValueError(f"unknown fusion {fusion!r}")
