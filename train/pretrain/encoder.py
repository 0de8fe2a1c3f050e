"""The encoder of pretraining: OV-Encoder with its pooling head, whose `pooler_output` per item
is the embedding the cluster loss scores (PAPER.md section 3); its AdamW; its export.

The export is the encoder alone, saved with `save_pretrained` (config.json `model_type`
`onevision_encoder`, the official parameter names): the folder `ovmllm init` takes as
`tower.path` and `ovmllm probe` loads by its model_type.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from encoder.files import atomic_dir
from encoder.onevision import OneVisionEncoderConfig, OneVisionEncoderModel
from encoder.towers.base import TowerSpec
from encoder.towers.onevision import OneVisionTower
from ovmllm.config import write_config
from train.export import full_state_dict
from train.pretrain.config import EncoderConfig, PretrainConfig

MODEL_TYPE = "onevision_encoder"


class EncoderFolderError(ValueError):
    """`encoder.init_from` names a folder that holds no OV-Encoder; the message says why."""


class PooledEncoder(nn.Module):
    """Packed normalised cells → one pooled embedding per item ([B, D], float32)."""

    def __init__(self, model: OneVisionEncoderModel) -> None:
        super().__init__()
        if model.head is None:
            raise ValueError("the encoder has no pooling head (use_head=false): the loss "
                             "scores its pooler_output")  # fmt: skip
        self.model = model

    def forward(
        self, pixels: torch.Tensor, positions: torch.Tensor, cu_seqlens: torch.Tensor
    ) -> torch.Tensor:
        dtype = self.model.embeddings.patch_embedding.weight.dtype
        out = self.model.forward_packed(pixels.to(dtype), positions, cu_seqlens)
        return out.pooler_output.float()

    @property
    def spec(self) -> TowerSpec:
        """What the data producers cut and normalise for (patch size, mean, std)."""
        return OneVisionTower(self.model).spec


def load_encoder(cfg: EncoderConfig, seed: int) -> OneVisionEncoderModel:
    """The encoder a run starts from: an encoder folder, or a fresh one of `size` whose random
    init depends on `seed` only (the caller's RNG is left as it was)."""
    if cfg.init_from:
        folder = Path(cfg.init_from)
        config = folder / "config.json"
        if not config.is_file():
            raise EncoderFolderError(f"encoder.init_from={cfg.init_from}: no config.json there")
        model_type = json.loads(config.read_text()).get("model_type")
        if model_type != MODEL_TYPE:
            raise EncoderFolderError(
                f"encoder.init_from={cfg.init_from}: model_type {model_type!r}, expected "
                f"{MODEL_TYPE!r}"
            )
        return OneVisionEncoderModel.from_pretrained(folder)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return OneVisionEncoderModel(OneVisionEncoderConfig.from_size(cfg.size))


def build_encoder_optimizer(module: nn.Module, lr: float, weight_decay: float):
    """AdamW (a client torch optimizer: nothing for DeepSpeed to compile) with biases and norm
    weights out of weight decay, the LLM stages' rule (train/modules.py)."""
    decay = [p for p in module.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in module.parameters() if p.requires_grad and p.ndim < 2]
    groups = [
        {"name": "encoder", "params": decay, "lr": lr, "weight_decay": weight_decay},
        {"name": "encoder.no_decay", "params": no_decay, "lr": lr, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups)


def export_encoder(engine, model: OneVisionEncoderModel, cfg: PretrainConfig, out: Path):
    """Collective (a ZeRO-3 engine gathers its weights). Rank 0 writes `out` whole or not at
    all and returns it; other ranks return None."""
    state = full_state_dict(engine)
    if state is None:
        return None
    prefix = "model."
    weights = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
    fresh = OneVisionEncoderModel(model.config)
    dtype = next(v.dtype for v in weights.values() if v.is_floating_point())
    fresh.to(dtype).load_state_dict(weights, strict=True)
    with atomic_dir(out) as tmp:
        fresh.save_pretrained(tmp)
        write_config(cfg, tmp / "pretrain_config.yaml")
    return out
