"""The data of encoder pretraining: the collage producer, keyed view draws, each rank's slice of
the global batch, OCR label rows."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from encoder.concepts.ocr_labels import OcrConfig, ocr_labels
from encoder.packed import PackedVisualTokens
from encoder.producers import ImagePolicy, collage_item
from train.cluster_loss import ClusterLossConfig
from train.pretrain.config import HeadConfig, PretrainConfig, SourceConfig
from train.pretrain.data import PretrainSamples, StepBatches
from train.pretrain.encoder import PooledEncoder, load_encoder
from train.pretrain.labels import LabelsError, read_source, resolve_heads


def frames_of_colours(t: int = 8, grid: int = 2, patch: int = 4) -> PackedVisualTokens:
    """A frames item whose frame i is filled with grey level 10 * (i + 1)."""
    patches = torch.cat([torch.full((grid * grid, 3, patch, patch), 10 * (i + 1), dtype=torch.uint8)
                         for i in range(t)])  # fmt: skip
    tt, hh, ww = np.meshgrid(np.arange(t), np.arange(grid), np.arange(grid), indexing="ij")
    positions = torch.from_numpy(np.stack([tt, hh, ww], -1).reshape(-1, 3).astype(np.int32))
    n = t * grid * grid
    return PackedVisualTokens(patches, positions, torch.tensor([0, n], dtype=torch.int32),
                              ["frames"], [(t, grid, grid)])  # fmt: skip


def test_a_collage_tiles_8_frames_2_by_4_in_time_order_at_the_image_size():
    item = collage_item(frames_of_colours(), ImagePolicy(size=28), patch=14)
    assert item.kinds == ["image"] and item.grids == [(1, 2, 2)]
    # with a 2 x 4 mosaic of 8 x 8 frames resized to 28 x 28 (nearest would keep cells whole;
    # bicubic blurs borders): the centre of each tile holds its frame's level, row-major
    pixels = item.patches.reshape(2, 2, 3, 14, 14).permute(0, 3, 1, 4, 2).reshape(28, 28, 3)
    tile_h, tile_w = 28 / 2, 28 / 4
    for i in range(8):
        y, x = int((i // 4 + 0.5) * tile_h), int((i % 4 + 0.5) * tile_w)
        assert abs(int(pixels[y, x, 0]) - 10 * (i + 1)) <= 2, i
    with pytest.raises(ValueError, match="needs 8 frames"):
        collage_item(frames_of_colours(t=4), ImagePolicy(size=28), patch=14)


@pytest.fixture
def samples(tmp_path) -> PretrainSamples:
    """An OCR labels folder of 12 pictures (one without a known word, one unreadable)."""
    words = ["alpha", "beta", "gamma", "delta", "eps"]
    (tmp_path / "vocab.txt").write_text("\n".join(words) + "\n")
    lines = []
    for i in range(12):
        Image.new("RGB", (28, 28), (20 * i, 0, 0)).save(tmp_path / f"{i}.png")
        (tmp_path / f"{i}.txt").write_text(" ".join(words[: 1 + i % 5]) if i != 3 else "none")
        lines.append(f"{i}.png {i}.txt")
    (tmp_path / "4.png").write_bytes(b"?")
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    ocr_labels(OcrConfig(list=str(tmp_path / "list.txt"), vocab=str(tmp_path / "vocab.txt"),
                         max_tags=4), tmp_path / "ocr", progress=False)  # fmt: skip
    source = SourceConfig(labels=str(tmp_path / "ocr"), root=str(tmp_path), head="ocr")
    head = HeadConfig(image_size=28, loss=ClusterLossConfig(num_draw=2))
    cfg = PretrainConfig(sources=[source], heads={"ocr": head}, seed=3)
    labelled = [read_source(source)]
    assert resolve_heads(cfg, labelled) == {"ocr": 5}
    return PretrainSamples(cfg, labelled, PooledEncoder(load_encoder(cfg.encoder, 0)).spec)


def test_ocr_rows_without_labels_are_not_samples_and_short_rows_repeat(samples):
    source = samples.sources[0]
    assert len(samples) == 10 and source.skipped == 2 and source.width == 4
    item = samples.load(0, 0, position=0)  # "alpha": one word, repeated to the head's width
    assert item.labels.tolist() == [0, 0, 0, 0] and item.tokens.grids == [(1, 2, 2)]


def test_two_ranks_take_contiguous_halves_of_the_one_rank_batch(samples):
    one = StepBatches(samples, 0, 6, num_steps=3)[2]
    halves = [StepBatches(samples, 0, 3, num_steps=3, rank=r, world_size=2)[2] for r in (0, 1)]
    torch.testing.assert_close(torch.cat([h.pixels for h in halves]), one.pixels)
    torch.testing.assert_close(torch.cat([h.labels["ocr"] for h in halves]), one.labels["ocr"])
    # positions 12..17 run into the second epoch, in its own order
    assert samples.order(0).tolist() != samples.order(1).tolist()


def test_views_are_keyed_by_position_and_follow_the_shares(samples):
    views = [samples.view_of(p) for p in range(4000)]
    assert views == [samples.view_of(p) for p in range(4000)]  # no state: a resume replays
    shares = Counter(views)
    assert abs(shares["codec"] / 4000 - 0.5) < 0.03 and abs(shares["collage"] / 4000 - 0.1) < 0.02


def test_a_labels_folder_of_no_kind_and_labels_out_of_range_are_named(samples, tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    with pytest.raises(LabelsError, match=r"neither labels\.json"):
        read_source(SourceConfig(labels=str(folder), name="pages"))
    cfg = samples.cfg
    cfg.heads["ocr"].num_classes = 3
    with pytest.raises(LabelsError, match=r"label 3 is not below heads\.ocr\.num_classes=3"):
        resolve_heads(cfg, samples.sources)


def test_a_head_without_a_source_is_refused(tmp_path: Path):
    heads = {"image": HeadConfig(), "video": HeadConfig()}
    with pytest.raises(ValueError, match=r"heads\.video: no source feeds it"):
        PretrainConfig(sources=[SourceConfig(labels="x")], heads=heads)
