"""LoRA through PEFT on the LLM and/or the vision tower, and merging it back.

An adapted part is replaced by its `PeftModel` (`model.llm`, `model.tower`), so the
trainability groups (train/modules.py) find the adapters under the same part names; PEFT
freezes the part's base weights. The tower's targets come from its registered spec
(`TowerSpec.lora_targets`, inside the blocks of `TowerSpec.lora_blocks`) unless the stage names
them. Every target must be found in every block the features reach (the LLM's decoder layers;
the tower's blocks up to its selected layer): a target that some blocks lack would leave them
silently unadapted, so it is an error. Blocks the features never reach get no adapters.
"""

from __future__ import annotations

from peft import LoraConfig as PeftLoraConfig
from peft import PeftModel, get_peft_model
from torch import nn

from train.config import LORA_PARTS, LoraConfig


def reached_blocks(model: nn.Module, part: str) -> list[tuple[str, nn.Module]]:
    """(name in the part, block) of each transformer block of `part` that the features reach."""
    module = getattr(model, part)
    if part == "tower":
        unused = {id(m) for m in module.unused_modules()}
        blocks = [b for b in module.get_submodule(module.spec.lora_blocks) if id(b) not in unused]
    else:
        blocks = list(getattr(module.get_decoder(), "layers", []))
        if not blocks:
            raise ValueError(f"lora on llm: {type(module).__name__} has no get_decoder().layers")
    names = {id(m): name for name, m in module.named_modules()}
    return [(names[id(block)], block) for block in blocks]


def lora_targets(model: nn.Module, cfg: LoraConfig) -> dict[str, list[str]]:
    """Per requested part, the full names of the modules to adapt: each target in each block
    the features reach. Raises ValueError naming a target that some of those blocks lack."""
    out = {}
    for part in cfg.parts:
        if part == "llm":
            key, targets = "lora.llm_targets", cfg.llm_targets
        elif cfg.tower_targets:
            key, targets = "lora.tower_targets", cfg.tower_targets
        else:
            key, targets = "the tower's lora_targets", model.tower.spec.lora_targets
        blocks = reached_blocks(model, part)
        names, partial = [], []
        for target in targets:
            hits = {
                block_name: [
                    f"{block_name}.{name}"
                    for name, _ in block.named_modules()
                    if name == target or name.endswith(f".{target}")  # as PEFT matches
                ]
                for block_name, block in blocks
            }
            matched = [block_name for block_name, found in hits.items() if found]
            if len(matched) < len(blocks):
                partial.append(f"{target!r} matched {len(matched)} of {len(blocks)} {matched}")
            names += [name for found in hits.values() for name in found]
        if partial:
            raise ValueError(
                f"lora on {part}: each of {key} {list(targets)} must be a module of every block "
                f"the features reach ({', '.join(name for name, _ in blocks)}); "
                + "; ".join(partial)
            )
        out[part] = names
    return out


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
