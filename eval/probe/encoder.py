"""The probe's frozen encoder: a tower folder, or the tower of an ovmllm model folder, and the
features the probe reads from it.

Features are the tower's final normalised hidden state of every patch (PAPER.md section 3: the
probe uses the post-norm `last_hidden_state`), not what the LLM reads (`hidden_states[-2]`):
- OneVision-Encoder: the last block's output through `layernorm_post` (a model without a head
  has none, and its last block's output is used as it is);
- SigLIP2: `last_hidden_state`, after its `post_layernorm`;
- Qwen3-ViT: the last block's output through its merger's LayerNorm, before the merge (one
  token per temporal pair of frames and patch).

A folder says which it is by its `config.json` `model_type` (a registry, not name sniffing).
An ovmllm folder's tower is rebuilt from its saved config and only its `tower.*` weights are
read, so probing a checkpoint does not load its LLM.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open

from encoder.packed import PackedVisualTokens
from encoder.towers import TOWERS, TowerConfig, TowerSpec, VisionTower, build_tower
from encoder.towers.base import inference_device

OVMLLM_MODEL_TYPE = "ovmllm"
# config.json model_type of a tower folder -> the tower that loads it
TOWER_OF_MODEL_TYPE = {
    "onevision_encoder": "onevision",
    "siglip2_vision_model": "siglip2",
    "qwen3_vl_vision": "qwen3_vit",
}
FINAL_LAYER = -1  # every tower is built to hand out its last hidden state


class EncoderError(ValueError):
    """A folder that holds no probe-able encoder; the message names it and why."""


def _onevision_features(tower: VisionTower, tokens: PackedVisualTokens) -> torch.Tensor:
    features = tower(tokens).features
    norm = tower.model.layernorm_post
    return features if norm is None else norm(features)


def _siglip2_features(tower: VisionTower, tokens: PackedVisualTokens) -> torch.Tensor:
    return tower(tokens).features  # select_layer -1: after post_layernorm


def _qwen3_vit_features(tower: VisionTower, tokens: PackedVisualTokens) -> torch.Tensor:
    # The tower hands out the merger's output; its input (the last block's output, one row per
    # temporal patch) is caught on the way in and given the merger's own LayerNorm.
    caught: list[torch.Tensor] = []
    merger = tower.model.merger
    handle = merger.register_forward_pre_hook(lambda _, args: caught.append(args[0]))
    try:
        tower(tokens)
    finally:
        handle.remove()
    return merger.norm(caught[0])


def _qwen3_vit_count(spec: TowerSpec, grid: tuple[int, int, int]) -> int:
    t, h, w = grid
    return math.ceil(t / spec.temporal_patch) * h * w


# tower name -> (final normalised features of packed items, feature rows of one item or None
# when it is one per patch)
FINAL_FEATURES: dict[str, tuple[Callable, Callable | None]] = {
    "onevision": (_onevision_features, None),
    "siglip2": (_siglip2_features, None),
    "qwen3_vit": (_qwen3_vit_features, _qwen3_vit_count),
}


@dataclass
class FrozenEncoder:
    tower: VisionTower
    folder: Path
    key: str
    """Digest of the config and weight files: features cached under it are this encoder's."""

    @property
    def spec(self) -> TowerSpec:
        return self.tower.spec

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def takes_codec(self) -> bool:
        return "codec" in self.spec.kinds

    @property
    def device(self) -> torch.device:
        return next(self.tower.parameters()).device

    def rows_per_item(self, tokens: PackedVisualTokens) -> list[int]:
        count = FINAL_FEATURES[self.spec.name][1]
        if count is None:
            return tokens.lengths
        return [count(self.spec, grid) for grid in tokens.grids]

    @torch.inference_mode()
    def features(self, tokens: PackedVisualTokens) -> list[torch.Tensor]:
        """One [rows, width] float tensor per item (on the encoder's device)."""
        extract = FINAL_FEATURES[self.spec.name][0]
        out = extract(self.tower, tokens.to_device(self.device))
        return list(out.split(self.rows_per_item(tokens)))


def _read_config(folder: Path) -> dict:
    path = folder / "config.json"
    if not path.is_file():
        raise EncoderError(f"{folder}: no config.json (not a tower or ovmllm model folder)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise EncoderError(f"{path}: not JSON ({exc})") from exc


def _weight_files(folder: Path) -> list[Path]:
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise EncoderError(f"{folder}: no *.safetensors weights")
    return files


def _tower_of_model(folder: Path, config: dict) -> VisionTower:
    """The tower of an ovmllm model folder, from its saved configs and `tower.*` weights."""
    if not config.get("tower_model"):
        raise EncoderError(f"{folder}: the ovmllm config has no saved tower_model config")
    tower_cfg = TowerConfig(**{**config["tower"], "path": "", "select_layer": FINAL_LAYER})
    if tower_cfg.name not in TOWERS:
        raise EncoderError(f"{folder}: tower {tower_cfg.name!r} is not one of {', '.join(TOWERS)}")
    tower = TOWERS[tower_cfg.name].from_model_config(config["tower_model"], tower_cfg)
    prefix, state = "tower.", {}
    for path in _weight_files(folder):
        with safe_open(str(path), "pt") as weights:
            for key in weights.keys():  # noqa: SIM118 (safe_open is not a mapping)
                if key.startswith(prefix):
                    state[key.removeprefix(prefix)] = weights.get_tensor(key)
    try:
        tower.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise EncoderError(f"{folder}: its tower weights do not fit its config ({exc})") from exc
    return tower


def _fingerprint(folder: Path) -> str:
    digest = hashlib.sha256((folder / "config.json").read_bytes())
    for path in _weight_files(folder):
        stat = path.stat()
        digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def load_encoder(folder: str | Path, device: str = "auto") -> FrozenEncoder:
    """The frozen tower of `folder` (a tower folder or an ovmllm model folder), in eval mode
    without gradients, on `device` (bf16 on a GPU, fp32 on the CPU)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise EncoderError(f"{folder}: encoder folder not found")
    config = _read_config(folder)
    model_type = config.get("model_type")
    if model_type == OVMLLM_MODEL_TYPE:
        tower = _tower_of_model(folder, config)
    elif model_type in TOWER_OF_MODEL_TYPE:
        name = TOWER_OF_MODEL_TYPE[model_type]
        tower = build_tower(TowerConfig(name=name, path=str(folder), select_layer=FINAL_LAYER))
    else:
        known = ", ".join([OVMLLM_MODEL_TYPE, *TOWER_OF_MODEL_TYPE])
        raise EncoderError(f"{folder}: model_type {model_type!r} is not a probe-able encoder "
                           f"({known})")  # fmt: skip
    torch_device, dtype = inference_device(device)
    tower = tower.to(device=torch_device, dtype=dtype).eval().requires_grad_(False)
    return FrozenEncoder(tower, folder, _fingerprint(folder))
