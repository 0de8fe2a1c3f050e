"""The one contract between visual producers and towers: packed visual tokens (DESIGN.md).

Items (an image, uniform frames, codec-selected patches) are concatenated along the token axis
with `cu_seqlens` marking their boundaries, so a batch has no padding and a tower can keep
attention inside each item. Positions are (t, h, w) on each item's own grid, t on the 64-step
virtual timeline (0 for images).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

ITEM_KINDS = ("image", "frames", "codec")
TIMELINE_STEPS = 64  # the virtual timeline every video position lives on


@dataclass
class PackedVisualTokens:
    patches: torch.Tensor  # [N_total, 3, p, p] uint8
    positions: torch.Tensor  # [N_total, 3] int32 (t, h, w)
    cu_seqlens: torch.Tensor  # [B + 1] int32, cu_seqlens[0] = 0, cu_seqlens[-1] = N_total
    kinds: list[str]  # per item, one of ITEM_KINDS
    grids: list[tuple[int, int, int] | None]  # per item: (T, H, W) for full grids, else None

    def __post_init__(self) -> None:
        n = self.patches.shape[0]
        if (
            self.patches.dtype != torch.uint8
            or self.patches.dim() != 4
            or self.patches.shape[1] != 3
        ):
            raise ValueError(
                f"patches must be uint8 [N, 3, p, p], got {self.patches.dtype} "
                f"{tuple(self.patches.shape)}"
            )
        if self.positions.shape != (n, 3):
            raise ValueError(f"positions must be [{n}, 3], got {tuple(self.positions.shape)}")
        if (
            self.cu_seqlens.dim() != 1
            or int(self.cu_seqlens[0]) != 0
            or int(self.cu_seqlens[-1]) != n
        ):
            raise ValueError(f"cu_seqlens must run from 0 to {n}, got {self.cu_seqlens.tolist()}")
        if torch.any(self.cu_seqlens[1:] < self.cu_seqlens[:-1]):
            raise ValueError("cu_seqlens must be non-decreasing")
        items = len(self.cu_seqlens) - 1
        if len(self.kinds) != items or len(self.grids) != items:
            raise ValueError(
                f"{items} items but {len(self.kinds)} kinds and {len(self.grids)} grids"
            )
        for kind, grid, length in zip(self.kinds, self.grids, self.lengths, strict=True):
            if kind not in ITEM_KINDS:
                raise ValueError(f"item kind {kind!r} is not one of {ITEM_KINDS}")
            if grid is not None and grid[0] * grid[1] * grid[2] != length:
                raise ValueError(f"{kind} item with grid {grid} has {length} tokens")

    def to_device(self, device: torch.device | str) -> PackedVisualTokens:
        return PackedVisualTokens(
            self.patches.to(device),
            self.positions.to(device),
            self.cu_seqlens.to(device),
            list(self.kinds),
            list(self.grids),
        )

    @property
    def patch_size(self) -> int:
        return int(self.patches.shape[-1])

    @property
    def lengths(self) -> list[int]:
        return (self.cu_seqlens[1:] - self.cu_seqlens[:-1]).tolist()

    def __len__(self) -> int:
        return len(self.kinds)

    def item(self, i: int) -> PackedVisualTokens:
        a, b = int(self.cu_seqlens[i]), int(self.cu_seqlens[i + 1])
        return PackedVisualTokens(
            self.patches[a:b],
            self.positions[a:b],
            torch.tensor([0, b - a], dtype=torch.int32),
            [self.kinds[i]],
            [self.grids[i]],
        )

    @staticmethod
    def concat(items: Sequence[PackedVisualTokens]) -> PackedVisualTokens:
        if not items:
            raise ValueError("cannot pack zero items")
        sizes = {it.patch_size for it in items}
        if len(sizes) != 1:
            raise ValueError(f"items have different patch sizes {sorted(sizes)}")
        lengths = [n for it in items for n in it.lengths]
        cu = torch.zeros(len(lengths) + 1, dtype=torch.int32)
        cu[1:] = torch.cumsum(torch.tensor(lengths, dtype=torch.int32), 0)
        return PackedVisualTokens(
            torch.cat([it.patches for it in items]),
            torch.cat([it.positions for it in items]),
            cu,
            [k for it in items for k in it.kinds],
            [g for it in items for g in it.grids],
        )
