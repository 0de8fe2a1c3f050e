"""Patch saliency of one sampled frame (PAPER.md section 2): `score_frame`, in the paper's steps.

The two cues are the codec's motion (magnitude per 4x4 cell after camera compensation,
`motion.py`) and the luma residual (`residual.py`). Each map is divided by its own 95th
percentile (floored: 1e-6 for motion, 1.0 for residual), clipped to [0, 1], the two are fused
(`mean`, the default: (m + w r) / (1 + w) with w = `residual_weight`, 0.25 by default, 1 the
paper's 1:1; `max`, `sum`, `geomean` are options that ignore w), resized onto the canvas and
summed per patch. An I-frame has no residual: its map is zero (PAPER.md section 2, item 12).

Percentiles use numpy's default linear interpolation, computed exactly but cheaply: the
residual is uint8 (a 256-bin histogram) and the motion map is piecewise constant on 4x4 cells
(cell values weighted by the pixels each covers), so neither needs a sort over all pixels.
"""

from __future__ import annotations

import numpy as np

from encoder.codec import motion as motion_maps
from encoder.codec import residual as residual_maps
from encoder.codec.config import CodecConfig
from encoder.codec.motion import CELL
from encoder.codec.pooling import PatchPooler
from encoder.codec.video import PICT_TYPE_I, SampledFrame

PERCENTILE = 95.0
# Fusions that are weighted sums (see `fusion_weights`): they commute with the linear
# resize-and-sum, so each map is pooled on its own and no pixel motion map is built.
LINEAR_FUSIONS = ("mean", "sum")


def fusion_weights(cfg: CodecConfig) -> tuple[float, float]:
    """(motion weight, residual weight) of a linear fusion: `mean` is (1, w) / (1 + w)."""
    if cfg.fusion == "mean":
        w = cfg.residual_weight
        return 1.0 / (1.0 + w), w / (1.0 + w)
    return 1.0, 1.0


def frame_cues(frame: SampledFrame, cfg: CodecConfig) -> tuple[np.ndarray, np.ndarray]:
    """(motion magnitude per 4x4 cell [H/4, W/4] float32, luma residual [H, W] uint8)."""
    height, width = frame.luma.shape
    vx, vy, covered = motion_maps.motion_field(frame.motion_vectors, height, width)
    motion = motion_maps.motion_magnitude(vx, vy, covered, cfg.compensate)
    if frame.pict_type == PICT_TYPE_I and frame.motion_vectors is None:
        # An I-frame is not predicted, so it has no residual (its motion map is zero too).
        # Streams without exported vectors get P-frame vectors from the re-encode for their
        # I-frames (`reencode.py`), and keep their residual with them.
        residual = np.zeros_like(frame.luma)
    elif cfg.residual == "mc":
        residual = residual_maps.motion_compensated(frame.luma, frame.prev_luma, vx, vy)
    else:
        residual = residual_maps.frame_difference(frame.luma, frame.prev_luma)
    return motion, residual


def score_frame(
    motion: np.ndarray, residual: np.ndarray, pooler: PatchPooler, cfg: CodecConfig
) -> np.ndarray:
    """[grid, grid] float32 patch saliency of one frame from its two cues (see `frame_cues`).

    The division by each normaliser commutes with the linear resize-and-sum, so maps are only
    clipped at their normaliser and the patch sums are divided (a multiply per patch, not per
    pixel)."""
    height, width = residual.shape
    # 1. Normalisers: each map's 95th percentile, floored.
    motion_scale = max(cell_map_percentile(motion, height, width), cfg.motion_floor)
    residual_scale = max(residual_percentile(residual), cfg.residual_floor)
    # 2. Clip to [0, 1] of the normalised maps.
    motion = np.minimum(motion, np.float32(motion_scale))
    residual = np.minimum(residual, np.float32(residual_scale), dtype=np.float32)  # one pass
    # 3-5. Fuse, resize onto the canvas, sum per patch.
    if cfg.fusion in LINEAR_FUSIONS:
        w_motion, w_residual = fusion_weights(cfg)
        return (w_motion / motion_scale) * pooler.pool_cells(motion) + (
            w_residual / residual_scale
        ) * pooler.pool(residual)
    motion_pixels = pooler.cells_to_display_pixels(motion) / np.float32(motion_scale)
    residual_pixels = pooler.display(residual) / np.float32(residual_scale)
    return pooler.pool_display(fuse_pixels(motion_pixels, residual_pixels, cfg.fusion))


def fuse_pixels(motion: np.ndarray, residual: np.ndarray, fusion: str) -> np.ndarray:
    """Pixel-wise fusion of two normalised maps of the same shape, for the fusions that are no
    weighted sum."""
    if fusion == "max":
        return np.maximum(motion, residual)
    if fusion == "geomean":
        return np.sqrt(motion * residual)
    raise ValueError(f"unknown fusion {fusion!r}")


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
    bytes' counts. Small maps count directly (the table costs more).
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
