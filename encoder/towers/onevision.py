"""OneVision-Encoder as a tower: consumes every item kind (images, frames, codec patches)."""

from __future__ import annotations

from torch import nn

from encoder.hidden_states import hidden_state_index
from encoder.onevision import OneVisionEncoderConfig, OneVisionEncoderModel
from encoder.packed import PackedVisualTokens
from encoder.towers.base import (
    CLIP_MEAN,
    CLIP_STD,
    TowerConfig,
    TowerOutput,
    TowerSpec,
    VisionTower,
    normalised_cells,
)


class OneVisionTower(VisionTower):
    """Features are hidden_states[select_layer] (default -2, no post-norm), one per patch."""

    def __init__(self, model: OneVisionEncoderModel, select_layer: int = -2) -> None:
        super().__init__()
        self.model = model
        self.layer_index = hidden_state_index(select_layer, model.config.num_hidden_layers)
        self.spec = TowerSpec(
            name="onevision",
            patch_size=model.config.patch_size,
            output_width=model.config.hidden_size,
            kinds=frozenset({"image", "frames", "codec"}),
            mean=CLIP_MEAN,
            std=CLIP_STD,
            frame_size=504,  # 36 x 36 patches of 14 (PAPER.md section 1)
            lora_targets=("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"),
            lora_blocks="model.encoder.layers",
        )

    @classmethod
    def from_model_config(cls, model_config: dict, cfg: TowerConfig) -> OneVisionTower:
        """Random weights of a known shape (for loading a checkpoint into)."""
        return cls(OneVisionEncoderModel(OneVisionEncoderConfig(**model_config)), cfg.select_layer)

    @classmethod
    def build(cls, cfg: TowerConfig) -> OneVisionTower:
        if cfg.path:
            model = OneVisionEncoderModel.from_pretrained(cfg.path)
        else:
            model = OneVisionEncoderModel(OneVisionEncoderConfig.from_size(cfg.size))
        return cls(model, cfg.select_layer)

    def unused_modules(self) -> list[nn.Module]:
        unused = list(self.model.encoder.layers[self.layer_index :])
        return unused + [m for m in (self.model.layernorm_post, self.model.head) if m is not None]

    def encode(self, tokens: PackedVisualTokens) -> TowerOutput:
        pixels = normalised_cells(tokens, self.spec, self.dtype).to(self.model.device)
        positions = tokens.positions.to(self.model.device)
        cu = tokens.cu_seqlens.to(self.model.device)
        features = self.model.features(pixels, positions, cu, layer=self.layer_index)
        return TowerOutput(features, cu)
