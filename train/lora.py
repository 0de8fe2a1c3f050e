"""LoRA through PEFT on the LLM and/or the vision tower, and merging it back.

An adapted part is replaced by its `PeftModel` (`model.llm`, `model.tower`), so the
trainability groups (train/modules.py) find the adapters under the same part names; PEFT
freezes the part's base weights. The tower's target layers come from its registered spec
(`TowerSpec.lora_targets`) unless the stage names them.
"""

from __future__ import annotations

from peft import LoraConfig as PeftLoraConfig
from peft import PeftModel, get_peft_model
from torch import nn

from train.config import LORA_PARTS, LoraConfig


def lora_targets(model: nn.Module, cfg: LoraConfig) -> dict[str, list[str]]:
    """Per part, the linear layers to adapt (module names as PEFT matches them)."""
    tower = cfg.tower_targets or model.tower.spec.lora_targets
    return {"llm": list(cfg.llm_targets), "tower": list(tower)}


def apply_lora(model: nn.Module, cfg: LoraConfig) -> None:
    targets = lora_targets(model, cfg)
    for part in cfg.parts:
        peft_cfg = PeftLoraConfig(
            r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=targets[part]
        )
        setattr(model, part, get_peft_model(getattr(model, part), peft_cfg))


def merge_lora(model: nn.Module) -> None:
    """Fold every adapter into its base weights and drop the PEFT wrappers (in place)."""
    for part in LORA_PARTS:
        wrapped = getattr(model, part)
        if isinstance(wrapped, PeftModel):
            setattr(model, part, wrapped.merge_and_unload())
