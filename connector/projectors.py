"""The two projectors (PAPER.md section 1; DESIGN.md), registered by name in `CONNECTORS`.

- `mlp2x_gelu` (the reference's): Linear → GELU → Linear, token by token; any item kind.
- `spatial_merge`: LayerNorm, concatenate each 2 x 2 neighbourhood of a frame's patch grid,
  then the same MLP shape; 4x fewer tokens. Only for items with a full grid (images, uniform
  frames) whose tower emits one token per patch in (t, h, w) order; codec patches have no grid
  to merge, so asking for it is a config error, raised before any model is built.

Each registered class carries what callers need: whether it needs grids, its output token count
(a pure function of the config and the item's metadata, for the processor), and how it is built.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class ConnectorConfig:
    name: str = "mlp2x_gelu"
    """A key of `CONNECTORS`: mlp2x_gelu | spatial_merge."""
    merge: int = 2
    """spatial_merge: side of the neighbourhood merged into one token."""

    @property
    def projector(self) -> type[Projector]:
        """The registered class of `name`."""
        if self.name not in CONNECTORS:
            raise ValueError(f"connector.name={self.name!r} is not one of {', '.join(CONNECTORS)}")
        return CONNECTORS[self.name]

    def check_items(self, kinds: set[str]) -> None:
        """Raise when the projector cannot take items of these kinds."""
        if self.projector.needs_grid and "codec" in kinds:
            raise ValueError(
                f"connector.name={self.name!r} needs items with a full grid, but codec patches "
                "have none; use connector.name='mlp2x_gelu' for codec video"
            )

    def num_output_tokens(
        self, kind: str, tokens_in: int, grid: tuple[int, int, int] | None
    ) -> int:
        """Tokens after the connector, for an item whose tower emitted `tokens_in` tokens on
        `grid` (the tower's output grid)."""
        self.check_items({kind})
        return self.projector.num_output_tokens(self, tokens_in, grid)


class Projector(nn.Module):
    """Base of the registered projectors: `forward(features, grids, lengths)` maps the tower's
    [N, vision_width] features of items with `grids` and token `lengths` to LLM width."""

    needs_grid = False  # True: every item must come with its (t, h, w) grid

    @staticmethod
    def num_output_tokens(
        cfg: ConnectorConfig, tokens_in: int, grid: tuple[int, int, int] | None
    ) -> int:
        return tokens_in


class Mlp2xGelu(Projector):
    def __init__(self, cfg: ConnectorConfig, vision_width: int, llm_width: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(vision_width, llm_width)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(llm_width, llm_width)

    def forward(
        self, features: torch.Tensor, grids: list | None = None, lengths: list | None = None
    ) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(features)))


class SpatialMergeProjector(Projector):
    needs_grid = True

    def __init__(self, cfg: ConnectorConfig, vision_width: int, llm_width: int) -> None:
        super().__init__()
        self.merge = cfg.merge
        self.norm = nn.LayerNorm(vision_width)
        self.fc1 = nn.Linear(vision_width * cfg.merge * cfg.merge, llm_width)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(llm_width, llm_width)

    @staticmethod
    def num_output_tokens(
        cfg: ConnectorConfig, tokens_in: int, grid: tuple[int, int, int] | None
    ) -> int:
        t, h, w = _mergeable(grid, cfg.merge)
        return t * (h // cfg.merge) * (w // cfg.merge)

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


def _mergeable(grid: tuple[int, int, int] | None, merge: int) -> tuple[int, int, int]:
    if grid is None:
        raise ValueError("spatial_merge needs each item's grid")
    t, h, w = grid
    if h % merge or w % merge:
        raise ValueError(f"spatial_merge: grid {grid} is not divisible by {merge}x{merge}")
    return t, h, w


CONNECTORS: dict[str, type[Projector]] = {
    "mlp2x_gelu": Mlp2xGelu,
    "spatial_merge": SpatialMergeProjector,
}


def build_connector(cfg: ConnectorConfig, vision_width: int, llm_width: int) -> Projector:
    return cfg.projector(cfg, vision_width, llm_width)
