"""Batches of encoder pretraining, addressed by step (as `train/data.py` for the LLM stages).

The samples of all sources form one list; epoch e visits it in the order of a permutation
seeded by (seed, e), and step s of a run reads the global positions s*G ... (s+1)*G - 1 (G =
batch_size x world size), flat over epochs. The data state is therefore one integer. Rank r of
W takes the contiguous slice r*B ... (r+1)*B - 1 of each global batch, so the rows the loss
gathers from the ranks come in position order and W = 1 and W = 2 see the same global batch
in the same order (the loss's label draws are made on it).

A video sample is shown as one view (codec patches, uniform frames, or a collage of 8 frames)
drawn from the configured shares by a generator keyed on (seed, global position): a resumed or
re-sharded run shows every sample as the straight run did. Media go through the packed
visual-token path (`ovmllm.media`, whose `cache_dir` keeps codec selections and decoded frames
on disk); each item's cells are brought to the encoder's patch size and normalised here, in
the dataloader. A sample whose media fail (`MEDIA_FAILURES`) becomes a `Rejected` record (id
and reason) that the trainer logs and counts; any other error stops the run, naming the sample.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from encoder.packed import PackedVisualTokens
from encoder.producers import ImagePolicy, collage_item
from encoder.towers.base import TowerSpec, normalised_cells
from ovmllm.data.dataset import MEDIA_FAILURES, Rejected
from ovmllm.media import MediaConfig, load_image, load_video
from train.centres import derive_seed
from train.pretrain.config import VIEWS, PretrainConfig
from train.pretrain.labels import LabelledSource, head_width, padded_row

VIEW_STREAM = 2  # seed key of the view draw (the loss uses 0 and 1)
COLLAGE_ROWS, COLLAGE_COLUMNS = 2, 4


@dataclass
class Item:
    sample_id: str
    head: str
    view: str  # image, or one of VIEWS
    tokens: PackedVisualTokens
    labels: np.ndarray  # [head width]


@dataclass
class PretrainBatch:
    """This rank's share of one step: its items packed (normalised cells at the encoder's
    patch size), and the label rows of each head in item order."""

    pixels: torch.Tensor  # [N, 3, p, p] float32
    positions: torch.Tensor  # [N, 3] int32
    cu_seqlens: torch.Tensor  # [B + 1] int32
    heads: list[str]  # per item
    labels: dict[str, torch.Tensor]  # head -> [n_head, width]
    views: list[str]  # per item
    rejected: list[Rejected] = field(default_factory=list)

    @property
    def num_items(self) -> int:
        return len(self.heads)


class PretrainSamples:
    """Every labelled sample of every source, and how one is loaded."""

    def __init__(self, cfg: PretrainConfig, sources: list[LabelledSource], spec: TowerSpec) -> None:
        self.cfg, self.sources, self.spec = cfg, sources, spec
        self.index = [(s, i) for s, source in enumerate(sources) for i in range(len(source.rows))]
        if not self.index:
            raise ValueError("the sources hold no labelled sample")
        self.widths = {head: head_width(sources, head) for head in cfg.heads}
        shares = np.array([getattr(cfg.views, view) for view in VIEWS], dtype=np.float64)
        self.view_cdf = np.cumsum(shares / shares.sum())
        media = cfg.media
        cache = media.cache_dir
        self.codec_media = MediaConfig(video_mode="codec", codec=media.codec, cache_dir=cache)
        self.frames_media = MediaConfig(
            video_mode="frames", frames=media.frames, frame_size=media.frame_size, cache_dir=cache
        )
        self.collage_media = MediaConfig(
            video_mode="frames", frames=COLLAGE_ROWS * COLLAGE_COLUMNS,
            frame_size=media.collage_frame_size, cache_dir=cache,
        )  # fmt: skip

    def __len__(self) -> int:
        return len(self.index)

    def order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.cfg.seed, epoch]).permutation(len(self.index))

    def view_of(self, position: int) -> str:
        """The view of a video sample at a global position (keyed, never stateful)."""
        draw = np.random.default_rng(derive_seed(self.cfg.seed, VIEW_STREAM, position)).random()
        return VIEWS[min(int(np.searchsorted(self.view_cdf, draw, side="right")), len(VIEWS) - 1)]

    def image_policy(self, head: str) -> ImagePolicy:
        size = self.cfg.heads[head].image_size or self.cfg.media.image_size
        return ImagePolicy(mode="square", size=size)

    def load(self, source_index: int, row: int, position: int) -> Item | Rejected:
        source = self.sources[source_index]
        sample_id = source.sample_ids[row]
        path = (source.root / sample_id).resolve()
        labels = padded_row(source.rows[row], self.widths[source.head])
        view = "image" if source.head != "video" else self.view_of(position)
        try:
            if not path.is_relative_to(source.root):
                return Rejected(position, sample_id, f"path_escape: leaves {source.root}")
            tokens = self._tokens(path, source.head, view)
        except MEDIA_FAILURES as exc:
            return Rejected(position, sample_id, f"media_failed: {exc}")
        except Exception as exc:  # a bug or a setting, not a bad file: stop, naming the sample
            exc.add_note(f"while loading {sample_id!r} of source {source.name!r} ({view})")
            raise
        return Item(sample_id, source.head, view, tokens, labels)

    def _tokens(self, path, head: str, view: str) -> PackedVisualTokens:
        if view == "image":
            media = MediaConfig(image=self.image_policy(head))
            return load_image(path, media, self.spec)
        if view == "codec":
            return load_video(path, self.codec_media, self.spec)
        if view == "frames":
            return load_video(path, self.frames_media, self.spec)
        frames = load_video(path, self.collage_media, self.spec)
        return collage_item(frames, self.image_policy(head), self.spec.patch_size,
                            rows=COLLAGE_ROWS, columns=COLLAGE_COLUMNS)  # fmt: skip


class StepBatches(torch.utils.data.Dataset):
    """Map-style over step offsets: item s = this rank's batch of step start_step + s."""

    def __init__(
        self,
        samples: PretrainSamples,
        start_position: int,
        batch_size: int,
        num_steps: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.samples, self.start_position = samples, start_position
        self.batch_size, self.num_steps = batch_size, num_steps
        self.rank, self.world_size = rank, world_size
        self._orders: dict[int, np.ndarray] = {}

    @property
    def samples_per_step(self) -> int:
        return self.batch_size * self.world_size

    def __len__(self) -> int:
        return self.num_steps

    def _load(self, position: int) -> Item | Rejected:
        epoch, index = divmod(position, len(self.samples))
        if epoch not in self._orders:
            self._orders = {epoch: self.samples.order(epoch)}  # one epoch at a time
        source, row = self.samples.index[int(self._orders[epoch][index])]
        return self.samples.load(source, row, position)

    def __getitem__(self, offset: int) -> PretrainBatch:
        if not 0 <= offset < self.num_steps:
            raise IndexError(offset)
        first = self.start_position + offset * self.samples_per_step + self.rank * self.batch_size
        loaded = [self._load(position) for position in range(first, first + self.batch_size)]
        items = [x for x in loaded if isinstance(x, Item)]
        rejected = [x for x in loaded if isinstance(x, Rejected)]
        return pack_items(items, self.samples, rejected)


def pack_items(items: list[Item], samples: PretrainSamples, rejected: list[Rejected]):
    """Items → one `PretrainBatch` (each item's cells resized to the encoder's patch size on
    their own and normalised: items of different producers share the batch)."""
    spec = samples.spec
    pixels = [normalised_cells(item.tokens, spec, torch.float32) for item in items]
    lengths = [p.shape[0] for p in pixels]
    cu = torch.zeros(len(items) + 1, dtype=torch.int32)
    cu[1:] = torch.tensor(lengths, dtype=torch.int32).cumsum(0)
    labels = {}
    for head, width in samples.widths.items():
        rows = [item.labels for item in items if item.head == head]
        labels[head] = torch.from_numpy(np.stack(rows)) if rows else torch.zeros(0, width).long()
    p = spec.patch_size
    return PretrainBatch(
        pixels=torch.cat(pixels) if pixels else torch.zeros(0, 3, p, p),
        positions=torch.cat([i.tokens.positions for i in items]) if items
        else torch.zeros(0, 3, dtype=torch.int32),
        cu_seqlens=cu, heads=[i.head for i in items], labels=labels,
        views=[i.view for i in items], rejected=rejected,
    )  # fmt: skip
