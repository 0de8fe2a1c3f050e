"""A training stage, as one typed config: where the model comes from, what data, which parts
train at which rate, the schedule, the batch, precision, DeepSpeed, checkpoints and logging.

The stage YAML owns everything about optimisation (lr, schedule, batch, accumulation,
precision); the DeepSpeed JSON it names holds the ZeRO settings, with `"auto"` for the values
the stage fills in (train/engine.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ovmllm.build import ModelConfig
from ovmllm.config import load_config, peek, read_yaml
from ovmllm.data.mixture import MixtureConfig
from ovmllm.multimodal_processor import ProcessorOverrides
from train.modules import TrainabilityConfig

# Decay shapes after warmup: progress through the decay (0 → 1) → share of the way from
# min_lr_ratio to the full rate.
SCHEDULES: dict[str, Callable[[float], float]] = {
    "cosine": lambda progress: 0.5 * (1 + math.cos(math.pi * progress)),
    "linear": lambda progress: 1 - progress,
    "constant": lambda progress: 1.0,
}
PRECISIONS = ("fp32", "bf16")
LORA_PARTS = ("llm", "tower")  # the model's parts that PEFT may wrap


@dataclass
class ScheduleConfig:
    name: str = "cosine"
    """Decay after warmup: cosine | linear | constant."""
    warmup_ratio: float = 0.03
    """Warmup as a share of max_steps (the paper's recipe)."""
    warmup_steps: int = 0
    """Warmup steps; when > 0, overrides warmup_ratio."""
    min_lr_ratio: float = 0.0
    """The decay ends at the base rate times this."""

    def __post_init__(self) -> None:
        if self.name not in SCHEDULES:
            raise ValueError(f"schedule.name={self.name!r} is not one of {list(SCHEDULES)}")


@dataclass
class LoraConfig:
    parts: list[str] = field(default_factory=list)
    """Parts that get LoRA adapters: llm and/or tower ([] = no LoRA)."""
    r: int = 16
    """Adapter rank."""
    alpha: int = 32
    """Adapter scale numerator (the update is scaled by alpha / r)."""
    dropout: float = 0.0
    """Dropout on the adapter input."""
    llm_targets: list[str] = field(
        default_factory=lambda: [
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        ]
    )
    """Linear layers of the LLM to adapt (module names as PEFT matches them)."""
    tower_targets: list[str] = field(default_factory=list)
    """Linear layers of the tower to adapt; [] = the tower's own (`TowerSpec.lora_targets`)."""

    def __post_init__(self) -> None:
        unknown = sorted(set(self.parts) - set(LORA_PARTS))
        if unknown:
            raise ValueError(f"lora.parts {unknown}: LoRA applies to llm and/or tower")


@dataclass
class WandbConfig:
    project: str = ""
    """wandb project; "" = no wandb."""
    mode: str = ""
    """online | offline | "" (online when a key is configured, else offline)."""
    name: str = ""  # default: the stage's run_name


@dataclass
class StageConfig:
    name: str = ""  # default: the config file's stem
    output_dir: str = ""  # default: runs/<name>
    run_name: str = ""
    """What ran, for wandb and the summary; default `<name>+<model>+x<seed>` (the model: its
    init_from folder, its model_file, or its tower and LLM)."""
    # where the model comes from: exactly one of model (with or without model_file) and init_from
    model_file: str = ""
    """A model YAML (configs/model/*.yaml) that `model` starts from: the stage's `model:` keys
    then change only what differs."""
    model: ModelConfig | None = None
    """A model config, built fresh."""
    init_from: str = ""
    """An `ovmllm init` folder, or a previous stage's output_dir (meaning its export)."""
    processor: ProcessorOverrides = field(default_factory=ProcessorOverrides)
    """Media / chat settings replacing the model's (e.g. `processor.media.image.mode`); the
    export records the result. `chat.max_length` always follows the stage's `max_length`."""
    data: MixtureConfig = field(default_factory=MixtureConfig)
    """The training data: sources and the seed of their order."""
    trainability: TrainabilityConfig = field(default_factory=lambda: TrainabilityConfig(parts={}))
    """Which parts train and at which rate; parts not listed stay frozen."""
    lora: LoraConfig = field(default_factory=LoraConfig)
    """LoRA adapters (through PEFT) on trainable parts."""
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    """Learning-rate warmup and decay."""
    batch_size: int = 4
    """Samples per micro-batch per rank (packed into sequences)."""
    grad_accum: int = 1
    """Micro-batches per optimizer step."""
    max_length: int = 4096
    """Tokens per packed sequence (and the processor's limit per sample)."""
    max_steps: int = 0
    """Optimizer steps; 0: epochs x samples per epoch / global batch."""
    epochs: float = 1.0
    """Passes over the data when max_steps is 0."""
    stop_after: int = 0
    """End this run after this many steps (checkpoint saved, no export) while keeping the
    schedule of max_steps: for time-limited job slots; `resume=auto` continues."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm."""
    precision: str = "bf16"
    """bf16 | fp32."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass (less memory, more time)."""
    deepspeed: str = "configs/deepspeed/zero2.json"
    """DeepSpeed JSON (ZeRO settings; "auto" values are filled from this stage)."""
    seed: int = 42
    """Seed of the run's random state (weight init, dropout, LoRA); the data order has its own
    (data.seed)."""
    num_workers: int = 0
    """Dataloader worker processes per rank."""
    save_every: int = 500
    """Optimizer steps between checkpoints (0 = none by step count); the run's last step and a
    stop signal (SIGTERM, SIGINT, SIGUSR1: the run exits with 75 after saving) always save."""
    save_every_minutes: float = 30.0
    """Minutes between checkpoints by rank 0's clock, whichever of this and save_every comes
    first (0 = none by time)."""
    keep_checkpoints: int = 2
    """Complete checkpoints kept (the newest)."""
    resume: str = ""
    """Empty (a fresh run, refused where output_dir holds checkpoints) | auto (the newest
    checkpoint of output_dir, if any) | a checkpoint folder."""
    log_every: int = 1
    """Optimizer steps between metric lines."""
    eval_data: str = ""
    """A LLaVA file whose held-out loss (token mean over every sample, all ranks sharing the
    work) is measured every eval_every steps and at the end; "" = none."""
    eval_root: str = ""
    """Media root of eval_data (default: its folder)."""
    eval_every: int = 0
    """Optimizer steps between held-out evaluations (0 = at the end only)."""
    max_rejected_fraction: float = 0.01
    """Stop the run (an error with the counts by reason, no checkpoint) when more than this
    share of the samples read were rejected (media that fail to load, rows the processor
    refuses); 1.0 = no limit."""
    rejection_guard_after: int = 200
    """Samples read before max_rejected_fraction is checked (then at every step)."""
    wandb: WandbConfig = field(default_factory=WandbConfig)

    def __post_init__(self) -> None:
        if (self.model is None) == (not self.init_from):
            raise ValueError("set exactly one of model (a model config) and init_from (a folder)")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision={self.precision!r} is not one of {PRECISIONS}")
        for key in ("batch_size", "grad_accum", "max_length", "log_every", "keep_checkpoints"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        if not 0.0 <= self.max_rejected_fraction <= 1.0:
            raise ValueError(
                f"max_rejected_fraction must be in [0, 1], got {self.max_rejected_fraction}"
            )
        for key in ("save_every", "save_every_minutes", "rejection_guard_after"):
            if getattr(self, key) < 0:
                raise ValueError(f"{key} must be >= 0, got {getattr(self, key)}")
        for part in self.lora.parts:
            if part not in self.trainability.parts or not self.trainability.parts[part].train:
                raise ValueError(f"lora on {part}: mark trainability.parts.{part}.train=true")


def load_stage(path: str | Path, overrides: list[str] = ()) -> StageConfig:
    """The stage config of a YAML file with `key=value` overrides; name and output_dir default
    to the file's stem and runs/<stem>. A `model_file` is read first, as the base of `model`."""
    model_file = peek("model_file", path, overrides)
    base = {"model": read_yaml(model_file)} if model_file else None
    cfg = load_config(StageConfig, path, list(overrides), base=base)
    cfg.name = cfg.name or Path(path).stem
    cfg.output_dir = cfg.output_dir or str(Path("runs") / cfg.name)
    cfg.run_name = cfg.run_name or f"{cfg.name}+{model_id(cfg)}+x{cfg.seed}"
    return cfg


def model_id(cfg: StageConfig) -> str:
    """The model of a run in a few characters: the folder it starts from, its model YAML, or
    its tower and LLM."""
    if cfg.init_from:
        return Path(cfg.init_from).name
    if cfg.model_file:
        return Path(cfg.model_file).stem
    tower, llm = cfg.model.tower, cfg.model.llm
    tower_id = Path(tower.path).name if tower.path else f"{tower.name}-{tower.size}"
    llm_id = Path(llm.path.replace("package:", "")).name if llm.path else f"{llm.family}-{llm.size}"
    return f"{tower_id}+{llm_id}"
