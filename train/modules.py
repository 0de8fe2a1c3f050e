"""Which parts train, and at which learning rate: addressed by registered module names.

The model's parts are registered by name (`tower`, `connector`, `llm`: the attribute and the
state-dict prefix), so freezing and optimiser groups never match substrings of parameter names.
A stage says, per part, whether it trains and its learning rate (an absolute value, or a
multiplier of the stage's base rate). The paper's recipe (PAPER.md section 1): align trains the
connector at 1e-3; instruct trains everything at 1e-5 with the tower at 2e-6.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

# part name → attribute of the multimodal model
PARTS = ("tower", "connector", "llm")


@dataclass
class PartConfig:
    train: bool = False
    lr: float = 0.0  # absolute learning rate; 0 = base lr x lr_scale
    lr_scale: float = 1.0


@dataclass
class TrainabilityConfig:
    base_lr: float = 1e-3
    weight_decay: float = 0.0
    parts: dict[str, PartConfig] = field(
        default_factory=lambda: {"connector": PartConfig(train=True)}
    )

    def __post_init__(self) -> None:
        unknown = sorted(set(self.parts) - set(PARTS))
        if unknown:
            raise ValueError(f"unknown model parts {unknown}; parts are {', '.join(PARTS)}")

    def lr_of(self, part: str) -> float:
        cfg = self.parts[part]
        return cfg.lr if cfg.lr > 0 else self.base_lr * cfg.lr_scale


def part_modules(model: nn.Module) -> dict[str, nn.Module]:
    missing = [name for name in PARTS if not isinstance(getattr(model, name, None), nn.Module)]
    if missing:
        raise ValueError(f"model has no part(s) {missing}")
    return {name: getattr(model, name) for name in PARTS}


def apply_trainability(model: nn.Module, cfg: TrainabilityConfig) -> dict[str, int]:
    """Freeze every part not marked `train`; returns trainable parameter counts per part."""
    counts = {}
    for name, module in part_modules(model).items():
        train = name in cfg.parts and cfg.parts[name].train
        for param in module.parameters():
            param.requires_grad_(train)
        counts[name] = sum(p.numel() for p in module.parameters() if p.requires_grad)
    return counts


def optimizer_groups(model: nn.Module, cfg: TrainabilityConfig) -> list[dict]:
    """One group per trainable part (its lr), with biases and norms out of weight decay."""
    groups = []
    for name, module in part_modules(model).items():
        if not (name in cfg.parts and cfg.parts[name].train):
            continue
        decay, no_decay = [], []
        for param in module.parameters():
            if param.requires_grad:
                (no_decay if param.ndim < 2 else decay).append(param)
        for params, wd, suffix in ((decay, cfg.weight_decay, ""), (no_decay, 0.0, ".no_decay")):
            if params:
                groups.append(
                    {
                        "name": name + suffix,
                        "params": params,
                        "lr": cfg.lr_of(name),
                        "weight_decay": wd,
                    }
                )
    if not groups:
        raise ValueError(
            "no part is trainable: mark at least one of tower, connector, llm as train"
        )
    return groups


def build_optimizer(model: nn.Module, cfg: TrainabilityConfig) -> torch.optim.Optimizer:
    """The client optimiser of every stage: torch AdamW over the part groups (no DeepSpeed op
    to compile)."""
    return torch.optim.AdamW(optimizer_groups(model, cfg))


def enable_activation_checkpointing(model: nn.Module) -> None:
    """Recompute every block's activations in backward (non-reentrant checkpoints), on a
    transformers model and the sub-models inside it.

    transformers 5.24 names this `activation_checkpointing_enable`; 5.17 (the GPU image's, see
    benchmarks/gpu_check.py) has only `gradient_checkpointing_enable`, deprecated since."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
