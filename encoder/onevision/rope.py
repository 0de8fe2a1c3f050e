"""The 3D rotary position embedding of OneVision-Encoder, exactly as the official model has it.

Per head, half the head dimension holds frequencies split t:h:w = 4:6:6 (head_dim 64 → 8, 12,
12), each axis with its own `theta^(-k/n)` ladder; a token's angles are
concat(t * f_t, h * f_h, w * f_w), duplicated as [f, f] to the head dimension, and applied as
`x * cos + rotate_half(x) * sin` with an *interleaved* rotate_half (pairs (2i, 2i+1)). The
interleaved swap with half-concatenated angles is unusual, but official weights need exactly
it. Angles are computed in float32; the rotation runs in the activations' dtype.
Nothing here is in the state dict.
"""

from __future__ import annotations

import torch
from torch import nn


def rotate_half_interleaved(x: torch.Tensor) -> torch.Tensor:
    """(x0, x1, x2, x3, ...) -> (-x1, x0, -x3, x2, ...)."""
    return torch.stack((-x[..., 1::2], x[..., 0::2]), dim=-1).flatten(-2)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [N, heads, head_dim]; cos, sin [N, head_dim] (already in x's dtype)."""
    return x * cos[:, None] + rotate_half_interleaved(x) * sin[:, None]


class VideoRotaryEmbedding(nn.Module):
    """Angles of (t, h, w) positions.

    The inverse frequencies (at most 12 numbers per axis) are recomputed per call rather than
    kept as buffers: nothing to persist or to re-materialise after meta-device loading.
    """

    def __init__(self, head_dim: int, theta: float) -> None:
        super().__init__()
        unit = head_dim // 2 // 16
        self.sizes = (4 * unit, 6 * unit, 6 * unit)
        self.theta = theta

    def inverse_frequencies(self, device: torch.device) -> list[torch.Tensor]:
        return [
            1.0 / (self.theta ** (torch.arange(n, dtype=torch.float32, device=device) / n))
            for n in self.sizes
        ]

    def forward(
        self, positions: torch.Tensor, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """positions [N, 3] (t, h, w) → (cos, sin), each [N, head_dim] in `dtype`."""
        pos = positions.to(torch.float32)
        inv_t, inv_h, inv_w = self.inverse_frequencies(pos.device)
        angles = torch.cat([pos[:, 0:1] * inv_t, pos[:, 1:2] * inv_h, pos[:, 2:3] * inv_w], dim=-1)
        angles = torch.cat([angles, angles], dim=-1)
        return angles.cos().to(dtype), angles.sin().to(dtype)
