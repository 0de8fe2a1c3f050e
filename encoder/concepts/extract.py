"""`extract`: teacher embeddings of every listed image or video, in resumable shards (the format
is in `encoder.concepts.store`).

Files are decoded by a DataLoader (`workers` processes; 0 decodes in this one) and embedded in
batches of `batch_size` pictures. A file that cannot be decoded is recorded in its shard's index
with the reason and skipped; the run goes on. Shards already complete are not recomputed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from encoder.codec.errors import VideoDecodeError
from encoder.concepts.lists import ListedFile, read_media_list
from encoder.concepts.media import VIDEO_FRAMES, load_image, uniform_video_frames
from encoder.concepts.store import (
    FORMAT,
    INDEX_SCHEMA,
    KINDS,
    Bank,
    ids_digest,
    open_manifest,
    shard_path,
    write_arrow,
    write_tensor,
)
from encoder.concepts.teacher import (
    Teacher,
    TeacherConfig,
    build_teacher,
    describe_teacher,
    teacher_key,
)
from encoder.producers import ImageDecodeError


@dataclass
class ExtractConfig:
    list: str = ""
    """The media list: one path per line, relative to `root`."""
    root: str = ""
    """Folder the list's paths are relative to and may not leave (default: the list's)."""
    kind: str = "image"
    """`image` (one embedding per picture) or `video` (8 uniform frames, concatenated)."""
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    """The model whose embeddings are clustered."""
    shard_size: int = 4096
    """List entries per shard (a shard is the unit that is written and resumed)."""
    batch_size: int = 32
    """Pictures per teacher forward (a video counts its 8 frames)."""
    workers: int = 0
    """DataLoader processes that decode files (0: decode in the main process)."""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind={self.kind!r} is not one of {KINDS}")
        for name in ("shard_size", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
        if self.workers < 0:
            raise ValueError(f"workers={self.workers} must be >= 0")


@dataclass
class ExtractSummary:
    samples: int
    embedded: int = 0
    failed: int = 0
    shards_written: int = 0
    shards_skipped: int = 0
    dim: int = 0


class _Pictures(Dataset):
    """(position in the shard, pictures, None) of each file, or (position, [], reason)."""

    def __init__(self, files: list[ListedFile], kind: str) -> None:
        self.files, self.kind = files, kind

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[int, list, str | None]:
        path = self.files[i].path
        try:
            if self.kind == "image":
                return i, [load_image(path)], None
            return i, uniform_video_frames(path, VIDEO_FRAMES), None
        except (ImageDecodeError, VideoDecodeError) as exc:
            return i, [], str(exc)


def _as_is(sample: tuple) -> tuple:
    return sample  # no collation: pictures stay PIL images


def _embed_shard(
    teacher: Teacher, files: list[ListedFile], cfg: ExtractConfig, bar: tqdm
) -> tuple[torch.Tensor, list[int], list[str | None]]:
    """[embedded, D] rows, and per file its row (-1 if failed) and error."""
    loader = DataLoader(_Pictures(files, cfg.kind), batch_size=None, collate_fn=_as_is,
                        num_workers=cfg.workers)  # fmt: skip
    rows, errors = [-1] * len(files), [None] * len(files)
    per_sample = 1 if cfg.kind == "image" else VIDEO_FRAMES
    per_batch = max(1, cfg.batch_size // per_sample)
    parts: list[torch.Tensor] = []
    waiting: list[list] = []

    def flush() -> None:
        pictures = [picture for sample in waiting for picture in sample]
        embedded = teacher.embed(pictures).view(len(waiting), -1)
        # a video: unit frame embeddings concatenated in time order, then unit-normalised
        parts.append(F.normalize(embedded, dim=-1))
        waiting.clear()

    embedded_so_far = 0
    for i, pictures, error in loader:
        if error is not None:
            errors[i] = error
        else:
            rows[i], embedded_so_far = embedded_so_far, embedded_so_far + 1
            waiting.append(pictures)
            if len(waiting) == per_batch:
                flush()
        bar.update(1)
    if waiting:
        flush()
    return (torch.cat(parts) if parts else torch.zeros(0, 0)), rows, errors


def extract(cfg: ExtractConfig, out: str | Path, progress: bool = True) -> ExtractSummary:
    """Write (or complete) the bank folder `out` for the listed files."""
    if not cfg.list:
        raise ValueError("list= is required: the media list to embed")
    files = read_media_list(cfg.list, cfg.root or None)
    description = describe_teacher(cfg.teacher)
    settings = {
        "kind": cfg.kind,
        "frames": VIDEO_FRAMES if cfg.kind == "video" else 1,
        "teacher": description,
        "teacher_key": teacher_key(description),
        "shard_size": cfg.shard_size,
        "samples": len(files),
        "list_digest": ids_digest([f.sample_id for f in files]),
    }
    open_manifest(out, settings)
    bank = Bank(out)
    pending = bank.missing()
    summary = ExtractSummary(samples=len(files), shards_skipped=bank.shards - len(pending))
    if not pending:
        summary.dim = bank.dim
        return summary
    teacher = build_teacher(cfg.teacher)
    todo = sum(min(cfg.shard_size, len(files) - s * cfg.shard_size) for s in pending)
    with tqdm(total=len(files), initial=len(files) - todo, unit="file", desc="extract",
              disable=not progress) as bar:  # fmt: skip
        for shard in pending:
            first = shard * cfg.shard_size
            chunk = files[first : first + cfg.shard_size]
            embeddings, rows, errors = _embed_shard(teacher, chunk, cfg, bar)
            meta = {"format": FORMAT, "shard": shard, "dim": embeddings.shape[1]}
            write_tensor(shard_path(out, "embeddings", shard, ".safetensors"), "embeddings",
                         embeddings.float(), meta)  # fmt: skip
            index = pa.table({"sample_id": [f.sample_id for f in chunk],
                              "position": list(range(first, first + len(chunk))),
                              "row": rows, "error": errors}, schema=INDEX_SCHEMA)  # fmt: skip
            write_arrow(index, shard_path(out, "index", shard, ".arrow"))  # the commit mark
            summary.shards_written += 1
            summary.embedded += sum(r >= 0 for r in rows)
            summary.failed += sum(e is not None for e in errors)
            summary.dim = summary.dim or embeddings.shape[1]
    return summary
