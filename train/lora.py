"""LoRA through PEFT on the LLM and/or the tower's encoder model, and merging it back.

The adapted part is replaced by its `PeftModel` (`model.llm`, `model.tower.model`), so the
trainability groups (train/modules.py) find the adapters under the same part names; PEFT
freezes the part's base weights.
"""

from __future__ import annotations

from peft import LoraConfig as PeftLoraConfig
from peft import PeftModel, get_peft_model
from torch import nn

from train.config import LoraConfig


def _slots(model: nn.Module) -> dict[str, tuple[nn.Module, str]]:
    """part → (owner module, attribute) of the sub-model LoRA wraps."""
    return {"llm": (model, "llm"), "tower": (model.tower, "model")}


def apply_lora(model: nn.Module, cfg: LoraConfig) -> None:
    for part in cfg.parts:
        owner, attr = _slots(model)[part]
        targets = cfg.llm_targets if part == "llm" else cfg.tower_targets
        peft_cfg = PeftLoraConfig(
            r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, target_modules=list(targets)
        )
        setattr(owner, attr, get_peft_model(getattr(owner, attr), peft_cfg))


def merge_lora(model: nn.Module) -> None:
    """Fold every adapter into its base weights and drop the PEFT wrappers (in place)."""
    for owner, attr in _slots(model).values():
        wrapped = getattr(owner, attr)
        if isinstance(wrapped, PeftModel):
            setattr(owner, attr, wrapped.merge_and_unload())
