"""The result of codec selection (or of the uniform-frame baseline) for one video."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from encoder.packed import TIMELINE_STEPS, PackedVisualTokens


def codec_timeline(num_frames: int) -> np.ndarray:
    """t on the 64-step timeline of sampled frame i: round(i * 63 / (T - 1)) (DESIGN.md)."""
    if num_frames == 1:
        return np.zeros(1, np.int32)
    i = np.arange(num_frames, dtype=np.float64)
    return np.rint(i * (TIMELINE_STEPS - 1) / (num_frames - 1)).astype(np.int32)


def uniform_timeline(num_frames: int) -> np.ndarray:
    """t of n uniform frames: linspace(0, 63, n) truncated, as the official encoder does."""
    return np.linspace(0, TIMELINE_STEPS - 1, num_frames).astype(np.int32)


@dataclass
class PatchSelection:
    """K patches chosen from T sampled frames of one video.

    `positions` hold t as the index into the sampled frames (the asset-file convention);
    `frame_times` maps that index onto the 64-step virtual timeline for the encoder.
    """

    kind: str  # "codec" (saliency top-K) | "frames" (uniform baseline, every patch)
    frame_ids: np.ndarray  # int32 [T], original frame numbers
    # int32 [K, 3], (t, h, w); rows sorted by (t, h, w) unless the `shuffle` control permuted them
    positions: np.ndarray
    patches: np.ndarray  # uint8 [K, 3, p, p]
    frame_times: np.ndarray  # int32 [T]
    grid: tuple[int, int]  # (hb, wb) patches per canvas side
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        k = len(self.positions)
        if self.kind not in ("codec", "frames"):
            raise ValueError(f"selection kind {self.kind!r} is not 'codec' or 'frames'")
        if self.positions.ndim != 2 or self.positions.shape[1] != 3:
            raise ValueError(f"positions must be [K, 3], got {self.positions.shape}")
        if self.patches.ndim != 4 or self.patches.shape[:2] != (k, 3):
            raise ValueError(f"patches must be [{k}, 3, p, p], got {self.patches.shape}")
        if self.frame_times.shape != self.frame_ids.shape:
            raise ValueError(f"{len(self.frame_ids)} frame ids but {len(self.frame_times)} times")

    @property
    def num_patches(self) -> int:
        return int(self.positions.shape[0])

    @property
    def visible_indices(self) -> np.ndarray:
        """int64 [K]: t * hb * wb + h * wb + w on the T-frame grid (the official call's input)."""
        hb, wb = self.grid
        p = self.positions.astype(np.int64)
        return p[:, 0] * hb * wb + p[:, 1] * wb + p[:, 2]

    def timeline_positions(self) -> np.ndarray:
        out = self.positions.copy()
        out[:, 0] = self.frame_times[self.positions[:, 0]]
        return out

    def to_packed(self) -> PackedVisualTokens:
        """One item of the packed visual-token contract (t on the 64-step timeline)."""
        grid = None
        if self.kind == "frames":
            grid = (len(self.frame_ids), *self.grid)
        return PackedVisualTokens(
            patches=torch.from_numpy(np.ascontiguousarray(self.patches)),
            positions=torch.from_numpy(self.timeline_positions()),
            cu_seqlens=torch.tensor([0, self.num_patches], dtype=torch.int32),
            kinds=[self.kind],
            grids=[grid],
        )
