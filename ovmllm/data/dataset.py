"""From mixture positions to trainable samples: rows → media → tokens, with rejections counted.

Media paths are relative to their source's root and may not leave it. A row whose media fail
to load (a file that cannot be read or decoded: `MEDIA_FAILURES`), or that the processor
rejects, is skipped deterministically (the same positions are
skipped on every run and every resume) and counted by reason with its id.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from encoder.codec import AssetFormatError, AssetSettingsError, VideoDecodeError
from encoder.packed import PackedVisualTokens
from encoder.producers import ImageDecodeError
from ovmllm.chat_processor import EncodedSample, SampleRejected
from ovmllm.data.mixture import MixtureConfig, epoch_order
from ovmllm.data.rows import load_rows
from ovmllm.multimodal_processor import MultimodalProcessor

# a file that could not be read or decoded; any other error (a setting the tower cannot take,
# a bug) stops the run instead of turning every row into a silent rejection
MEDIA_FAILURES = (ImageDecodeError, VideoDecodeError, AssetFormatError)


@dataclass
class Sample:
    position: int  # in the epoch order: the complete data state
    id: str
    encoded: EncodedSample
    visual: list[PackedVisualTokens]  # media items in placeholder order


@dataclass
class Rejected:
    """A skipped position, passed down the stream so the consumer can count it (one process
    collects the rejections of all dataloader workers; training sums them across ranks)."""

    position: int
    id: str
    reason: str


@dataclass
class Rejections:
    """Counts by reason and the ids behind them; merge the ones of several workers / ranks."""

    counts: Counter = field(default_factory=Counter)
    ids: dict[str, list[str]] = field(default_factory=dict)

    def add(self, reason: str, sample_id: str, keep_ids: int | None = None) -> None:
        """Count a rejection; `keep_ids` bounds the distinct ids kept per reason (a long
        training run's summary stays small; it logs every id to its rejected.jsonl)."""
        self.counts[reason] += 1
        ids = self.ids.setdefault(reason, [])
        if keep_ids is None or (len(ids) < keep_ids and sample_id not in ids):
            ids.append(sample_id)


class MixtureDataset:
    def __init__(
        self, mixture: MixtureConfig, processor: MultimodalProcessor, cache_dir: str | None = None
    ) -> None:
        self.mixture = mixture
        self.processor = processor
        self.rows = [load_rows(s.data, cache_dir) for s in mixture.sources]
        self.roots = [Path(s.root or Path(s.data).parent).resolve() for s in mixture.sources]
        self.asset_roots = [
            Path(s.assets_root).resolve() if s.assets_root else root
            for s, root in zip(mixture.sources, self.roots, strict=True)
        ]

    @property
    def sizes(self) -> list[int]:
        return [len(rows) for rows in self.rows]

    def order(self, epoch: int) -> np.ndarray:
        return epoch_order(self.mixture, self.sizes, epoch)

    def media_path(self, source: int, relative: str, root: Path | None = None) -> Path:
        """`relative` under the source's root (or `root`, e.g. its asset root); it may not
        leave it."""
        root = root or self.roots[source]
        path = (root / relative).resolve()
        if not path.is_relative_to(root):
            raise SampleRejected("path_escape", f"{relative!r} leaves the dataset root {root}")
        return path

    def build(self, source: int, row_index: int, position: int = -1) -> Sample:
        row = self.rows[source][int(row_index)]
        try:
            images = [self.media_path(source, p) for p in row["images"]]
            video = self.media_path(source, row["video"]) if row["video"] else None
            assets = (
                self.media_path(source, row["codec_assets"], self.asset_roots[source])
                if row["codec_assets"]
                else None
            )
            items = self.processor.load(images, video, assets)
        except (SampleRejected, AssetSettingsError):  # other settings: a setup mistake
            raise
        except MEDIA_FAILURES as exc:
            raise SampleRejected("media_failed", str(exc)) from exc
        except Exception as exc:  # a bug or a setting, not a bad file: stop, naming the row
            exc.add_note(f"while loading the media of row {row['id']!r} of source {source}")
            raise
        encoded = self.processor.encode(row["conversations"], items)
        return Sample(position, row["id"], encoded, items)

    def build_at(self, order: np.ndarray, index: int, position: int) -> Sample | Rejected:
        """The row at `index` of an epoch order as a sample, or as the record of its rejection
        (media that fail to load are rejections too); `position` is what both carry."""
        source, row_index = (int(x) for x in order[index])
        try:
            return self.build(source, row_index, position)
        except SampleRejected as exc:
            return Rejected(position, str(self.rows[source][row_index]["id"]), exc.reason)

    def stream(
        self, epoch: int, start: int = 0, shard: int = 0, num_shards: int = 1
    ) -> Iterator[Sample | Rejected]:
        """Positions start, start + 1, ... of an epoch that belong to `shard` (position mod
        num_shards: a dataloader worker's or rank's share), as samples or rejection records."""
        order = self.order(epoch)
        first = start + (shard - start) % num_shards
        for position in range(first, len(order), num_shards):
            yield self.build_at(order, position, position)
