"""`ovmllm probe`'s settings: one typed config, written resolved next to every run's outputs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from encoder.codec import CodecConfig
from eval.probe.features import STORE_DTYPES
from eval.probe.lists import FORMATS
from eval.probe.train import HeadTrainConfig
from ovmllm.config import ConfigError

REFERENCES = ("", "paper")


def probe_codec() -> CodecConfig:
    """The probe path of PAPER.md section 2 (configs/codec/probe.yaml): 64 frames on a 224 px
    centre crop of 14-px patches, no whole frames, global-motion compensation; the budget is
    set per cell."""
    return CodecConfig(canvas="crop", full_frame="none", compensate="similarity", budget=2048)


@dataclass
class ListsConfig:
    format: str = "auto"
    """`lines` (path label), `csv` (with a header), `ssv2` (JSON of id + template), or `auto`
    (by extension: .json ssv2, .csv csv, else lines)."""
    video_ext: str = ".webm"
    """Extension of SSv2 videos (`<id><video_ext>`)."""
    path_column: str = ""
    """CSV column of the video path; empty: the first of path, video, filename, file, clip."""
    label_column: str = ""
    """CSV column of the label; empty: the first of label, class, category, action."""

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ConfigError(f"lists.format={self.format!r} is not one of {', '.join(FORMATS)}")


@dataclass
class ExtractConfig:
    batch_size: int = 8
    """Videos per tower call (packed, no padding)."""
    workers: int = 2
    """DataLoader workers running the selection (0: in the main process)."""
    cache: bool = True
    """Keep features in a memory-mapped store (else in memory, recomputed every run)."""
    cache_dir: str = ""
    """Root of the feature stores; empty: <out>/features."""
    dtype: str = "float16"
    """Storage of cached features: float16 (half the disk; bf16 GPU features fit it) or
    float32."""
    device: str = "auto"
    """`auto` (the GPU in bf16 when there is one, else the CPU in fp32), `cpu`, `cuda:N`."""

    def __post_init__(self) -> None:
        if self.dtype not in STORE_DTYPES:
            raise ConfigError(f"extract.dtype={self.dtype!r} is not one of {list(STORE_DTYPES)}")
        if self.batch_size < 1 or self.workers < 0:
            raise ConfigError(f"extract.batch_size={self.batch_size} must be >= 1 and "
                              f"extract.workers={self.workers} >= 0")  # fmt: skip


@dataclass
class ProbeConfig:
    encoder: str = ""
    """A tower folder (OneVision-Encoder, SigLIP2 or Qwen3-ViT) or an ovmllm model folder."""
    train: str = ""
    """The training video list."""
    val: str = ""
    """The validation video list (top-1 is measured on it)."""
    root: str = ""
    """Folder the lists' video paths are relative to (and confined to); default: each list's
    folder."""
    labels: str = ""
    """A labels JSON (class name -> id); default: the sorted set of the training labels."""
    dataset: str = ""
    """The dataset's name in the table; default: the training list's folder name."""
    budgets: list[int] = field(default_factory=lambda: [512, 1024, 2048, 4096])
    """Budgets in patches of the codec canvas (frames mode: budget / patches per frame)."""
    modes: list[str] = field(default_factory=lambda: ["codec", "frames", "random"])
    """Of codec | frames | random; a grid tower takes frames only."""
    controls: list[str] = field(default_factory=list)
    """Codec-mode controls, each its own cell per budget: `shuffle`, `nonsalient:F`."""
    reference: str = ""
    """`paper`: the paper's probe averages beside ours in the table and the figure."""
    codec: CodecConfig = field(default_factory=probe_codec)
    """Selection settings (the budget, policy and controls are set per cell)."""
    lists: ListsConfig = field(default_factory=ListsConfig)
    """How the lists are read."""
    extract: ExtractConfig = field(default_factory=ExtractConfig)
    """Feature extraction and its cache."""
    head: HeadTrainConfig = field(default_factory=HeadTrainConfig)
    """The head and its training."""

    def __post_init__(self) -> None:
        if self.reference not in REFERENCES:
            raise ConfigError(f"reference={self.reference!r} is not one of: paper")
        if not self.budgets or min(self.budgets) < 1:
            raise ConfigError(f"budgets {self.budgets}: give positive patch counts")

    def dataset_name(self) -> str:
        """`dataset`, else the training list's folder name."""
        return self.dataset or Path(self.train).resolve().parent.name

    def check_inputs(self) -> None:
        missing = [key for key in ("encoder", "train", "val") if not getattr(self, key)]
        if missing:
            raise ConfigError(f"give {', '.join(missing)} (--{' --'.join(missing)})")
