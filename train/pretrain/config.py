"""Encoder pretraining, as one typed config: the encoder, the labelled data and its heads, the
video views and media settings, optimisation, checkpoints and logging (PAPER.md section 4).

Field names shared with the LLM stages (`batch_size`, `max_grad_norm`, `precision`,
`deepspeed`, `schedule`, `save_every`, ...) mean the same there, so `train.engine`'s DeepSpeed
JSON filling and lr schedule and `train.metrics.RunLogger` read this config as they read a
`StageConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from encoder.codec.config import CodecConfig
from ovmllm.config import load_config
from train.cluster_loss import ClusterLossConfig
from train.config import PRECISIONS, ScheduleConfig, WandbConfig

HEAD_KINDS = ("image", "ocr", "video")  # one loss head per data type (PAPER.md section 4)
VIEWS = ("codec", "frames", "collage")  # what a video sample is shown as


@dataclass
class EncoderConfig:
    size: str = "tiny"
    """OV-Encoder size for a fresh encoder: tiny | base | large | huge (random init, seeded)."""
    init_from: str = ""
    """An encoder folder (`save_pretrained`, model_type onevision_encoder, e.g. another run's
    export/) to continue from; wins over `size`."""


@dataclass
class SourceConfig:
    labels: str = ""
    """A labels folder of `ovmllm concepts assign` (labels.json) or `ovmllm concepts ocr`
    (ocr.json)."""
    root: str = ""
    """The folder the labelled media were listed from (their sample ids are paths under it)."""
    head: str = "image"
    """The head this source feeds: image | ocr (pictures) | video (videos, shown as a drawn
    view)."""
    name: str = ""
    """For logs and errors; default: the labels folder's name."""

    def __post_init__(self) -> None:
        if self.head not in HEAD_KINDS:
            raise ValueError(f"source head={self.head!r} is not one of {HEAD_KINDS}")


@dataclass
class HeadConfig:
    num_classes: int = 0
    """Classes (centres) of the head; 0 = the labels' own count (k of the centres, or the OCR
    vocabulary size). Every label must be below it."""
    loss: ClusterLossConfig = field(default_factory=ClusterLossConfig)
    """Draws, Partial-FC sample rate, margin, scale, filter, and the head's weight."""
    centre_lr_scale: float = 1.0
    """The head's centres learn at centre_lr times this."""
    image_size: int = 0
    """Square side in px of this head's pictures (and collages); 0 = media.image_size (the
    paper: images 224, OCR 448)."""


@dataclass
class ViewMixConfig:
    codec: float = 0.5
    """Share of video samples shown as codec-selected patches."""
    frames: float = 0.4
    """Share shown as uniform dense frames."""
    collage: float = 0.1
    """Share shown as one picture of 8 uniform frames (2 rows x 4 columns)."""

    def __post_init__(self) -> None:
        shares = [self.codec, self.frames, self.collage]
        if min(shares) < 0 or sum(shares) <= 0:
            raise ValueError(f"view shares {shares} must be >= 0 with a positive sum")


@dataclass
class PretrainMediaConfig:
    image_size: int = 224
    """Square side in px of pictures (a head may set its own)."""
    codec: CodecConfig = field(default_factory=lambda: CodecConfig(
        frames=64, canvas="crop", canvas_size=224, patch=14, budget=2048))  # fmt: skip
    """Codec view: T sampled frames, canvas, budget K (the paper's stage 2: 2048 of 64 x 256)."""
    frames: int = 8
    """Frames view: uniform frames per video."""
    frame_size: int = 224
    """Frames view: canvas side in px (letterboxed)."""
    collage_frame_size: int = 224
    """Collage view: canvas side in px of each of its 8 frames before the mosaic is resized to
    the image size."""
    cache_dir: str = ""
    """Codec selections and decoded frames cached here (ovmllm.media); "" = no cache."""


@dataclass
class PretrainConfig:
    name: str = ""
    """Default: the config file's stem."""
    output_dir: str = ""
    """Default: runs/<name>."""
    run_name: str = ""
    """Default: `<name>+ov-<size>+x<seed>`."""
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    """The OV-Encoder trained (its pooling head's output is what the loss scores)."""
    sources: list[SourceConfig] = field(default_factory=list)
    """Labelled data: a labels folder, its media root and its head, per source."""
    heads: dict[str, HeadConfig] = field(default_factory=dict)
    """Per head (image, ocr, video): class count and loss settings; every head a source feeds
    needs an entry (an entry with no source is an error, as is one with no classes)."""
    views: ViewMixConfig = field(default_factory=ViewMixConfig)
    """How video samples are shown, drawn per sample from (seed, global position)."""
    media: PretrainMediaConfig = field(default_factory=PretrainMediaConfig)
    """Picture sizes, the codec, frames and collage views, the asset cache."""
    batch_size: int = 32
    """Samples per rank per step (the global batch is batch_size x ranks)."""
    max_steps: int = 1000
    """Optimizer steps."""
    lr: float = 1e-4
    """Encoder learning rate (peak; the paper: 1e-3 stage 1, 5e-5 to 1e-4 stage 2)."""
    weight_decay: float = 0.05
    """Encoder AdamW weight decay (biases and norms: none)."""
    centre_lr: float = 1e-4
    """Learning rate of the class centres (their own AdamW), on the same schedule."""
    centre_weight_decay: float = 0.05
    """Weight decay of the class centres."""
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    """Warmup then decay, for encoder and centres alike."""
    max_grad_norm: float = 5.0
    """Gradient clipping of the encoder (global norm) and of each head's centre shard."""
    precision: str = "fp32"
    """fp32 | bf16 (the encoder under DeepSpeed; the loss always in fp32)."""
    deepspeed: str = "configs/deepspeed/zero2.json"
    """DeepSpeed JSON for the encoder ("auto" values filled from this config)."""
    seed: int = 0
    """Seeds the encoder init, the data order, the views, the centres and the loss's draws."""
    num_workers: int = 0
    """Dataloader worker processes per rank."""
    resume: str = ""
    """"" (fresh; refused where output_dir holds checkpoints) | auto | a checkpoint folder."""
    stop_after: int = 0
    """End this run after this many steps (checkpoint, no export); resume=auto continues."""
    save_every: int = 500
    """Steps between checkpoints (0 = by time and at the end only)."""
    save_every_minutes: float = 30.0
    """Minutes between checkpoints by rank 0's clock (0 = none by time)."""
    keep_checkpoints: int = 2
    """Complete checkpoints kept (the newest)."""
    log_every: int = 1
    """Steps between metric lines."""
    max_rejected_fraction: float = 0.01
    """Stop (an error with the counts) when more than this share of the samples read failed."""
    rejection_guard_after: int = 200
    """Samples read before max_rejected_fraction is checked."""
    wandb: WandbConfig = field(default_factory=WandbConfig)
    """wandb logging (project "" = none), as the LLM stages log."""

    @property
    def grad_accum(self) -> int:
        """One micro-batch per step: the loss's softmax spans the whole global batch at once."""
        return 1

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision={self.precision!r} is not one of {PRECISIONS}")
        for key in ("batch_size", "max_steps", "log_every", "keep_checkpoints"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        for key in ("stop_after", "save_every", "save_every_minutes", "num_workers"):
            if getattr(self, key) < 0:
                raise ValueError(f"{key} must be >= 0, got {getattr(self, key)}")
        if not self.sources:
            raise ValueError("sources is empty: give at least one labels folder")
        fed, configured = {source.head for source in self.sources}, set(self.heads)
        checks = (
            (configured - set(HEAD_KINDS), f"not a head; heads are {', '.join(HEAD_KINDS)}"),
            (fed - configured, "a source feeds it but it has no settings"),
            (configured - fed, "no source feeds it (drop it, or add a source)"),
        )
        for heads, reason in checks:
            if heads:
                raise ValueError(f"heads.{sorted(heads)[0]}: {reason}")
        for head, cfg in self.heads.items():
            if cfg.num_classes < 0 or cfg.image_size < 0:
                raise ValueError(f"heads.{head}: num_classes and image_size must be >= 0")


def load_pretrain(path: str | Path, overrides: list[str] = ()) -> PretrainConfig:
    """The config of a YAML file with `key=value` overrides; name, output_dir and run_name get
    their defaults."""
    cfg = load_config(PretrainConfig, path, list(overrides))
    cfg.name = cfg.name or Path(path).stem
    cfg.output_dir = cfg.output_dir or str(Path("runs") / cfg.name)
    encoder_id = Path(cfg.encoder.init_from).name if cfg.encoder.init_from else cfg.encoder.size
    cfg.run_name = cfg.run_name or f"{cfg.name}+ov-{encoder_id}+x{cfg.seed}"
    return cfg
