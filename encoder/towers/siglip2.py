"""SigLIP2 (NaFlex) as a tower, through transformers' own `Siglip2VisionModel`.

Accepts items with full grids: an image is one NaFlex image of H x W patches; a frames item is
T images of H x W patches (the paper fed SigLIP2 512 x 512 frames: 32 x 32 patches of 16). Each
patch token becomes one output token.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import Siglip2VisionConfig
from transformers.models.siglip2.modeling_siglip2 import Siglip2VisionModel

from encoder.hidden_states import hidden_state_index
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
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=2, patch_size=16, num_patches=256),
}  # fmt: skip


class Siglip2Tower(VisionTower):
    def __init__(self, model: Siglip2VisionModel, select_layer: int = -1) -> None:
        super().__init__()
        self.model = model
        self.select_layer = select_layer  # -1: the output after post_layernorm
        self.layer_index = hidden_state_index(select_layer, model.config.num_hidden_layers)
        self.spec = TowerSpec(
            name="siglip2",
            patch_size=model.config.patch_size,
            output_width=model.config.hidden_size,
            kinds=frozenset({"image", "frames"}),
            mean=HALF,
            std=HALF,
            frame_size=512,  # 32 x 32 patches of 16 (PAPER.md section 1)
            lora_targets=("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"),
            lora_blocks="model.encoder.layers",
        )

    @classmethod
    def from_model_config(cls, model_config: dict, cfg: TowerConfig) -> Siglip2Tower:
        config = Siglip2VisionConfig(**model_config)
        return cls(Siglip2VisionModel._from_config(config), cfg.select_layer)

    @classmethod
    def build(cls, cfg: TowerConfig) -> Siglip2Tower:
        if cfg.path:
            model = Siglip2VisionModel.from_pretrained(cfg.path)
        elif cfg.size in RANDOM_INIT_SIZES:
            config = Siglip2VisionConfig(**RANDOM_INIT_SIZES[cfg.size])
            model = Siglip2VisionModel._from_config(config)
        else:
            raise ValueError(
                f"siglip2 random init has sizes {list(RANDOM_INIT_SIZES)}; "
                f"give tower.path for {cfg.size!r}"
            )
        return cls(model, cfg.select_layer)

    def unused_modules(self) -> list[nn.Module]:
        unused = [self.model.head] if getattr(self.model, "head", None) is not None else []
        if self.select_layer == -1:
            return unused
        return [*unused, *self.model.encoder.layers[self.layer_index :], self.model.post_layernorm]

    def encode(self, tokens: PackedVisualTokens) -> TowerOutput:
        device = self.model.device
        cells = normalised_cells(tokens, self.spec, self.dtype).to(device)
        # NaFlex patches are flattened channel-last: (p, p, C)
        flat = cells.permute(0, 2, 3, 1).flatten(1)
        images, shapes, owner = [], [], []
        for i, (start, grid) in enumerate(
            zip(tokens.cu_seqlens[:-1].tolist(), tokens.grids, strict=True)
        ):
            t, h, w = grid
            for f in range(t):
                a = start + f * h * w
                images.append(flat[a : a + h * w])
                shapes.append((h, w))
                owner.append(i)
        longest = max(len(x) for x in images)
        pixel_values = flat.new_zeros(len(images), longest, flat.shape[1])
        mask = torch.zeros(len(images), longest, dtype=torch.long, device=device)
        for j, image in enumerate(images):
            pixel_values[j, : len(image)] = image
            mask[j, : len(image)] = 1
        out = self.model(
            pixel_values=pixel_values,
            pixel_attention_mask=mask,
            spatial_shapes=torch.tensor(shapes, device=device),
            output_hidden_states=self.select_layer != -1,
        )
        hidden = (
            out.last_hidden_state
            if self.select_layer == -1
            else out.hidden_states[self.layer_index]
        )
        features = torch.cat([hidden[j, : len(image)] for j, image in enumerate(images)])
        counts = [0] * len(tokens)
        for j, image in enumerate(images):
            counts[owner[j]] += len(image)
        return TowerOutput(features, output_cu_seqlens(counts, device))
