"""The two projectors (PAPER.md section 1; DESIGN.md).

- `mlp2x_gelu` (the reference's): Linear → GELU → Linear, token by token; any item kind.
- `spatial_merge`: LayerNorm, concatenate each 2 x 2 neighbourhood of a frame's patch grid,
  then the same MLP shape; 4x fewer tokens. Only for items with a full grid (images, uniform
  frames) whose tower emits one token per patch in (t, h, w) order; codec patches have no grid
  to merge, so asking for it is a config error, raised before any model is built.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class ConnectorConfig:
    name: str = "mlp2x_gelu"  # mlp2x_gelu | spatial_merge
    merge: int = 2  # spatial_merge: neighbourhood side

    def check_items(self, kinds: set[str]) -> None:
        if self.name not in CONNECTORS:
            raise ValueError(f"connector.name={self.name!r} is not one of {', '.join(CONNECTORS)}")
        if self.name == "spatial_merge" and "codec" in kinds:
            raise ValueError(
                "connector.name='spatial_merge' needs items with a full grid, but codec patches "
                "have none; use connector.name='mlp2x_gelu' for codec video"
            )

    def num_output_tokens(
        self, kind: str, tokens_in: int, grid: tuple[int, int, int] | None
    ) -> int:
        """Tokens after the connector, for an item whose tower emitted `tokens_in` tokens on
        `grid` (the tower's output grid)."""
        self.check_items({kind})
        if self.name == "mlp2x_gelu":
            return tokens_in
        t, h, w = _mergeable(grid, self.merge)
        return t * (h // self.merge) * (w // self.merge)


def _mergeable(grid: tuple[int, int, int] | None, merge: int) -> tuple[int, int, int]:
    if grid is None:
        raise ValueError("spatial_merge needs each item's grid")
    t, h, w = grid
    if h % merge or w % merge:
        raise ValueError(f"spatial_merge: grid {grid} is not divisible by {merge}x{merge}")
    return t, h, w


class Mlp2xGelu(nn.Module):
    def __init__(self, vision_width: int, llm_width: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(vision_width, llm_width)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(llm_width, llm_width)

    def forward(
        self, features: torch.Tensor, grids: list | None = None, lengths: list | None = None
    ) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(features)))


class SpatialMergeProjector(nn.Module):
    def __init__(self, vision_width: int, llm_width: int, merge: int = 2) -> None:
        super().__init__()
        self.merge = merge
        self.norm = nn.LayerNorm(vision_width)
        self.fc1 = nn.Linear(vision_width * merge * merge, llm_width)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(llm_width, llm_width)

    def forward(self, features: torch.Tensor, grids: list, lengths: list[int]) -> torch.Tensor:
        """features [N, D] of items with `grids` (t, h, w) → [N / merge^2, llm_width]."""
        m = self.merge
        x = self.norm(features)
        merged, start = [], 0
        for grid, length in zip(grids, lengths, strict=True):
            t, h, w = _mergeable(grid, m)
            if t * h * w != length:
                raise ValueError(f"spatial_merge: {length} tokens do not fill grid {grid}")
            item = x[start : start + length].view(t, h // m, m, w // m, m, -1)
            merged.append(item.permute(0, 1, 3, 2, 4, 5).reshape(t * (h // m) * (w // m), -1))
            start += length
        return self.fc2(self.act(self.fc1(torch.cat(merged))))


CONNECTORS = {"mlp2x_gelu": Mlp2xGelu, "spatial_merge": SpatialMergeProjector}


def build_connector(cfg: ConnectorConfig, vision_width: int, llm_width: int) -> nn.Module:
    cfg.check_items(set())
    if cfg.name == "spatial_merge":
        return SpatialMergeProjector(vision_width, llm_width, cfg.merge)
    return Mlp2xGelu(vision_width, llm_width)
