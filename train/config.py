"""A training stage, as one typed config: where the model comes from, what data, which parts
train at which rate, the schedule, the batch, precision, DeepSpeed, checkpoints and logging.

The stage YAML owns everything about optimisation (lr, schedule, batch, accumulation,
precision); the DeepSpeed JSON it names holds the ZeRO settings, with `"auto"` for the values
the stage fills in (train/engine.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ovmllm.build import ModelConfig
from ovmllm.config import load_config
from ovmllm.data.mixture import MixtureConfig
from train.modules import TrainabilityConfig

SCHEDULES = ("cosine", "linear", "constant")
PRECISIONS = ("fp32", "bf16")


@dataclass
class ScheduleConfig:
    name: str = "cosine"  # cosine | linear | constant (after warmup)
    warmup_ratio: float = 0.03  # of max_steps (the paper's recipe)
    warmup_steps: int = 0  # when > 0, overrides warmup_ratio
    min_lr_ratio: float = 0.0  # the decay ends at base x this

    def __post_init__(self) -> None:
        if self.name not in SCHEDULES:
            raise ValueError(f"schedule.name={self.name!r} is not one of {SCHEDULES}")


@dataclass
class LoraConfig:
    parts: list[str] = field(default_factory=list)  # [] = no LoRA; llm and/or tower
    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
    # linear layers to adapt, per part (module names inside the part, as PEFT matches them)
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
    tower_targets: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]
    )

    def __post_init__(self) -> None:
        unknown = sorted(set(self.parts) - {"llm", "tower"})
        if unknown:
            raise ValueError(f"lora.parts {unknown}: LoRA applies to llm and/or tower")


@dataclass
class WandbConfig:
    project: str = ""  # "" = no wandb
    mode: str = ""  # online | offline | "" (online when a key is configured, else offline)
    name: str = ""  # run name (default: the stage name)


@dataclass
class StageConfig:
    name: str = ""  # default: the config file's stem
    output_dir: str = ""  # default: runs/<name>
    # where the model comes from: exactly one of them
    model: ModelConfig | None = None  # a model config, built fresh
    init_from: str = ""  # an `ovmllm init` folder, or a previous stage's output_dir (its export)
    # dotted media.* / chat.* settings for the processor (recorded in the export)
    processor_overrides: list[str] = field(default_factory=list)
    data: MixtureConfig = field(default_factory=MixtureConfig)
    # parts not listed stay frozen
    trainability: TrainabilityConfig = field(default_factory=lambda: TrainabilityConfig(parts={}))
    lora: LoraConfig = field(default_factory=LoraConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    batch_size: int = 4  # samples per micro-batch per rank (packed into sequences)
    grad_accum: int = 1
    max_length: int = 4096  # tokens per packed sequence (and the processor's limit)
    max_steps: int = 0  # 0: epochs x samples per epoch / global batch
    epochs: float = 1.0
    # end this run after this many steps (checkpoint saved, no export) while keeping the schedule
    # of max_steps: for time-limited job slots; `resume=auto` continues
    stop_after: int = 0
    max_grad_norm: float = 1.0
    precision: str = "bf16"  # bf16 | fp32
    gradient_checkpointing: bool = False
    deepspeed: str = "configs/deepspeed/zero2.json"
    seed: int = 42
    num_workers: int = 0  # dataloader worker processes per rank
    save_every: int = 0  # optimizer steps; 0 = at the end only
    keep_checkpoints: int = 2
    resume: str = ""  # "" | auto | a checkpoint folder
    log_every: int = 1
    # held-out loss (token mean over every sample of a LLaVA file, all ranks sharing the work)
    # every eval_every steps and at the end; "" = none
    eval_data: str = ""
    eval_root: str = ""  # media root of eval_data (default: its folder)
    eval_every: int = 0
    wandb: WandbConfig = field(default_factory=WandbConfig)

    def __post_init__(self) -> None:
        if (self.model is None) == (not self.init_from):
            raise ValueError("set exactly one of model (a model config) and init_from (a folder)")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision={self.precision!r} is not one of {PRECISIONS}")
        for key in ("batch_size", "grad_accum", "max_length", "log_every", "keep_checkpoints"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        bad = [o for o in self.processor_overrides if not o.startswith(("media.", "chat."))]
        if bad:
            raise ValueError(f"processor_overrides must be media.* or chat.* keys: {bad}")
        for part in self.lora.parts:
            if part not in self.trainability.parts or not self.trainability.parts[part].train:
                raise ValueError(f"lora on {part}: mark trainability.parts.{part}.train=true")


def load_stage(path: str | Path, overrides: list[str] = ()) -> StageConfig:
    """The stage config of a YAML file with `key=value` overrides; name and output_dir default
    to the file's stem and runs/<stem>."""
    cfg = load_config(StageConfig, path, list(overrides))
    cfg.name = cfg.name or Path(path).stem
    cfg.output_dir = cfg.output_dir or str(Path("runs") / cfg.name)
    return cfg
