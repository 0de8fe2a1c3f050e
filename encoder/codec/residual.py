"""Luma residual map of one sampled frame, in the pixel domain (PAPER.md section 2, item 11).

Stock FFmpeg exports no prediction residual, so it is rebuilt from decoded pixels:
- `diff` (default): |Y_t - Y_t-1| against the previous decoded frame. It agrees with the
  reference as well as `mc` does, and costs less (`benchmarks/codec_speed.py` times both).
- `mc`: |Y_t - P_t| where P_t is the motion-compensated prediction built from the previous
  decoded frame (display order) and the frame's integer L0 vectors. Approximations: exported
  vectors say only past or future, not which reference picture, so every L0 block is predicted
  from the immediately preceding frame; sub-pixel motion is truncated (no interpolation filter),
  weighted prediction is ignored, and cells without an L0 vector (intra, future-only) are
  predicted from the co-located pixels.
The first frame of a video has no predecessor: its residual is all zero (with the default
`first` policy it is kept whole, so this never affects the choice). I-frames get a zero residual
too (`saliency.frame_cues`).
Both maps are uint8 (absolute differences of 8-bit luma), which keeps percentiles exact and cheap.
"""

from __future__ import annotations

import numpy as np

from encoder.codec.motion import cells_to_pixels


def frame_difference(luma: np.ndarray, prev_luma: np.ndarray | None) -> np.ndarray:
    if prev_luma is None:
        return np.zeros_like(luma)
    return np.maximum(luma, prev_luma) - np.minimum(luma, prev_luma)  # |a - b| without widening


def motion_compensated(
    luma: np.ndarray, prev_luma: np.ndarray | None, vx: np.ndarray, vy: np.ndarray
) -> np.ndarray:
    """|Y_t - prediction| with the prediction fetched at (y + vy, x + vx) in the previous frame."""
    if prev_luma is None:
        return np.zeros_like(luma)
    h, w = luma.shape
    dx = cells_to_pixels(vx.astype(np.int32), h, w)
    dy = cells_to_pixels(vy.astype(np.int32), h, w)
    ys = np.clip(np.arange(h, dtype=np.int32)[:, None] + dy, 0, h - 1)
    xs = np.clip(np.arange(w, dtype=np.int32)[None, :] + dx, 0, w - 1)
    predicted = prev_luma[ys, xs]
    return np.maximum(luma, predicted) - np.minimum(luma, predicted)
