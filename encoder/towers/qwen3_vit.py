"""The Qwen3-VL vision tower ("Qwen3-ViT") through transformers' own `Qwen3VLVisionModel`.

Accepts items with full grids whose H and W are even. Frames go in temporal pairs (an odd last
frame is repeated; an image is its own pair, as Qwen's processor does), and the tower's own
merger turns each 2 x 2 window of a pair into one token of the LLM's width. The merger ships
with the tower and trains with it. Qwen3-VL's deepstack features are not used (the LLaVA-style
model reads the merger output only).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import Qwen3VLVisionConfig
from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLVisionModel

from encoder.packed import PackedVisualTokens
from encoder.towers.base import (
    HALF,
    TowerConfig,
    TowerOutput,
    TowerSpec,
    VisionTower,
    normalised_cells,
    output_cu_seqlens,
)

# Sizes buildable with random weights (tests, debugging); real sizes load from tower.path.
RANDOM_INIT_SIZES = {
    "tiny": dict(depth=2, hidden_size=64, intermediate_size=128, num_heads=2, patch_size=16,
                 out_hidden_size=96, num_position_embeddings=64, deepstack_visual_indexes=[]),
}  # fmt: skip


class Qwen3VitTower(VisionTower):
    def __init__(self, model: Qwen3VLVisionModel) -> None:
        super().__init__()
        self.model = model
        config = model.config
        self.spec = TowerSpec(
            name="qwen3_vit",
            patch_size=config.patch_size,
            output_width=config.out_hidden_size,
            kinds=frozenset({"image", "frames"}),
            mean=HALF,
            std=HALF,
            frame_size=512,  # 32 x 32 patches of 16 (PAPER.md section 1)
            spatial_merge=config.spatial_merge_size,
            temporal_patch=config.temporal_patch_size,
            lora_targets=("attn.qkv", "attn.proj", "mlp.linear_fc1", "mlp.linear_fc2"),
            lora_blocks="model.blocks",
        )

    @classmethod
    def from_model_config(cls, model_config: dict, cfg: TowerConfig) -> Qwen3VitTower:
        return cls(Qwen3VLVisionModel._from_config(Qwen3VLVisionConfig(**model_config)))

    @classmethod
    def build(cls, cfg: TowerConfig) -> Qwen3VitTower:
        if cfg.path:
            return cls(Qwen3VLVisionModel.from_pretrained(cfg.path))
        if cfg.size in RANDOM_INIT_SIZES:
            config = Qwen3VLVisionConfig(**RANDOM_INIT_SIZES[cfg.size])
            return cls(Qwen3VLVisionModel._from_config(config))
        raise ValueError(
            f"qwen3_vit random init has sizes {list(RANDOM_INIT_SIZES)}; "
            f"give tower.path for {cfg.size!r}"
        )

    def unused_modules(self) -> list[nn.Module]:
        # Qwen3-VL's deepstack mergers (the official 4B tower has three) feed its LLM's early
        # layers, which this model does not have: they run but reach no loss.
        return list(self.model.deepstack_merger_list)

    def _item_input(
        self, cells: torch.Tensor, grid: tuple[int, int, int]
    ) -> tuple[torch.Tensor, list[int]]:
        """[T*H*W, C, p, p] → Qwen's flattened patches in merge-window order, and its grid_thw."""
        t, h, w = grid
        tp, m = self.spec.temporal_patch, self.spec.spatial_merge
        c, p = cells.shape[1], cells.shape[-1]
        frames = cells.view(t, h, w, c, p, p)
        if t % tp:
            frames = torch.cat([frames, frames[-1:].expand(tp - t % tp, -1, -1, -1, -1, -1)])
        gt = frames.shape[0] // tp
        x = frames.view(gt, tp, h // m, m, w // m, m, c, p, p)
        x = x.permute(0, 2, 4, 3, 5, 6, 1, 7, 8)  # [gt, h/m, w/m, m, m, C, tp, p, p]
        return x.reshape(gt * h * w, c * tp * p * p), [gt, h, w]

    def encode(self, tokens: PackedVisualTokens) -> TowerOutput:
        device = self.model.device
        cells = normalised_cells(tokens, self.spec, self.dtype).to(device)
        bounds = tokens.cu_seqlens.tolist()
        inputs, grids = [], []
        for i, grid in enumerate(tokens.grids):
            flat, thw = self._item_input(cells[bounds[i] : bounds[i + 1]], grid)
            inputs.append(flat)
            grids.append(thw)
        grid_thw = torch.tensor(grids, device=device)
        merged = self.model(torch.cat(inputs), grid_thw=grid_thw).pooler_output
        m2 = self.spec.spatial_merge**2
        counts = (grid_thw.prod(-1) // m2).tolist()
        return TowerOutput(merged, output_cu_seqlens(counts, device))
