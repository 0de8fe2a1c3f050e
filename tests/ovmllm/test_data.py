"""Rows in Arrow, reproducible mixtures, confined media paths, counted rejections, packing."""

import json
import shutil
from collections import Counter

import datasets
import numpy as np
import pytest
import torch

from ovmllm.build import ModelConfig, build_model
from ovmllm.config import load_config
from ovmllm.data.dataset import MixtureDataset, Rejected, Rejections, Sample
from ovmllm.data.mixture import MixtureConfig, SourceConfig, epoch_order, source_counts
from ovmllm.data.packing import collate, pack
from ovmllm.data.rows import load_rows
from tests.conftest import REAL_DATA

QWEN3 = REAL_DATA / "tokenizers" / "qwen3"


@pytest.fixture(scope="module")
def model():
    if not QWEN3.is_dir():
        pytest.skip("../shared/real_data is absent")
    torch.manual_seed(0)
    cfg = load_config(
        ModelConfig, "configs/model/tiny.yaml", [f"tokenizer={QWEN3}", "media.image.size=56"]
    )
    return build_model(cfg).eval()


@pytest.fixture(scope="module")
def source(tmp_path_factory, make_video):
    root = tmp_path_factory.mktemp("data")
    (root / "img").mkdir()
    shutil.copy(
        REAL_DATA / "images" / "natural" / "skimage_coffee.png", root / "img" / "coffee.png"
    )
    shutil.copy(
        make_video("mover.mp4", kind="mover", width=320, height=240, frames=96).path,
        root / "clip.mp4",
    )
    turn = lambda q, a: [{"from": "human", "value": q}, {"from": "gpt", "value": a}]  # noqa: E731
    rows = [
        {"id": "text", "conversations": turn("Hello there.", "Hi! How can I help?")},
        {
            "id": "image",
            "image": "img/coffee.png",
            "conversations": turn("<image>\nWhat is this?", "A cup of coffee."),
        },
        {
            "id": "two",
            "image": ["img/coffee.png", "img/coffee.png"],
            "conversations": turn("<image><image> Same?", "Yes."),
        },
        {
            "id": "video",
            "video": "clip.mp4",
            "conversations": turn("<video>\nWhat moves?", "A square."),
        },
        {"id": "escape", "image": "../outside.png", "conversations": turn("<image> x", "y")},
        {"id": "missing", "image": "img/none.png", "conversations": turn("<image> x", "y")},
        {"id": "silent", "conversations": turn("Say nothing.", " ")},
    ]
    data = root / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return data


def test_rows_are_arrow_backed(source):
    rows = load_rows(source)
    assert isinstance(rows, datasets.Dataset) and rows.cache_files  # memory-mapped files
    assert rows[2]["images"] == ["img/coffee.png", "img/coffee.png"] and rows[0]["video"] == ""


def test_mixture_order_is_reproducible():
    mixture = MixtureConfig(
        [SourceConfig("a", weight=3), SourceConfig("b", weight=1), SourceConfig("c", count=5)],
        seed=7,
    )
    sizes = [100, 40, 3]
    assert source_counts(mixture, sizes) == [104, 34, 5]
    first, again = epoch_order(mixture, sizes, 0), epoch_order(mixture, sizes, 0)
    assert np.array_equal(first, again) and not np.array_equal(
        first, epoch_order(mixture, sizes, 1)
    )
    counts = np.bincount(first[:, 0], minlength=3)
    assert counts.tolist() == [104, 34, 5]
    assert all(first[first[:, 0] == s][:, 1].max() < sizes[s] for s in range(3))


def test_rejections_are_counted_by_reason_and_skipped_deterministically(model, source):
    dataset = MixtureDataset(
        MixtureConfig([SourceConfig("demo", str(source))], seed=1), model.processor
    )
    items = list(dataset.stream(epoch=0))
    built = [s.id for s in items if isinstance(s, Sample)]
    assert sorted(built) == ["image", "text", "two", "video"]
    rejections = Rejections()
    for item in items:
        if isinstance(item, Rejected):
            rejections.add(item.reason, item.id)
    assert dict(rejections.counts) == {
        "path_escape": 1,
        "media_failed": 1,
        "no_supervised_tokens": 1,
    }
    assert rejections.ids["path_escape"] == ["escape"]
    again = MixtureDataset(
        MixtureConfig([SourceConfig("demo", str(source))], seed=1), model.processor
    )
    position_of = {again.rows[0][int(r)]["id"]: p for p, (_, r) in enumerate(again.order(0))}
    resumed = [s.id for s in again.stream(epoch=0, start=3) if isinstance(s, Sample)]
    assert resumed == [i for i in built if position_of[i] >= 3]  # resume skips by index
    # dataloader workers / ranks: disjoint shares whose rejection records add up to the whole
    shares = [list(again.stream(epoch=0, shard=w, num_shards=3)) for w in range(3)]
    positions = sorted(item.position for share in shares for item in share)
    assert positions == list(range(7))
    per_share = Counter(
        item.reason for share in shares for item in share if isinstance(item, Rejected)
    )
    assert per_share == rejections.counts


@torch.no_grad()
def test_packed_loss_equals_unpacked(model, source):
    dataset = MixtureDataset(
        MixtureConfig([SourceConfig("demo", str(source))], seed=1), model.processor
    )
    built = [s for s in dataset.stream(epoch=0) if isinstance(s, Sample)]
    samples = sorted(built, key=lambda s: s.id)
    pad = model.processor.tokenizer.pad_token_id or 0
    loss_sum, tokens = 0.0, 0
    for s in samples:  # one by one
        batch = collate([[(s.encoded.input_ids, s.encoded.labels)]], pad)
        out = model(batch["input_ids"], labels=batch["labels"], visual=s.visual)
        loss_sum, tokens = loss_sum + float(out.loss_sum), tokens + int(out.num_tokens)
    lengths = [len(s.encoded.input_ids) for s in samples]
    groups = pack(lengths, max_length=max(lengths) + 60)
    assert len(groups) < len(samples)  # really packed
    batch = collate(
        [[(samples[i].encoded.input_ids, samples[i].encoded.labels) for i in g] for g in groups],
        pad,
    )
    items = [item for g in groups for i in g for item in samples[i].visual]
    assert {item.patch_size for item in items} == {14, 16}  # images and codec cells together
    out = model(**batch, visual=items)
    assert int(out.num_tokens) == tokens
    assert abs(float(out.loss) - loss_sum / tokens) <= 1e-5


def test_pack_is_next_fit_and_refuses_oversized_samples():
    assert pack([3, 4, 2, 5, 1], 7) == [[0, 1], [2, 3], [4]]
    with pytest.raises(ValueError, match="max_length"):
        pack([3, 9], 7)


@pytest.mark.parametrize("mode", ["codec", "frames"])
def test_online_video_tokens_are_cached_on_disk(model, make_video, tmp_path, monkeypatch, mode):
    """Codec selections and, in frames mode, decoded frames: written once, then read back
    (decoding again would fail here), identical to the uncached pixels."""
    import encoder.codec.pipeline as pipeline
    from ovmllm.media import load_video

    video = make_video("mover.mp4", kind="mover", width=320, height=240, frames=96)
    media = model.processor.media
    media = type(media)(**{**media.__dict__, "video_mode": mode, "frames": 4, "frame_size": 56})
    cached = type(media)(**{**media.__dict__, "cache_dir": str(tmp_path / "cache")})
    first = load_video(video.path, cached, model.tower.spec)
    folders = list((tmp_path / "cache").iterdir())
    assert len(folders) == 1 and (folders[0] / "patches.npy").is_file()
    assert folders[0].name.startswith("frames-") == (mode == "frames")

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again instead of reading the cache")

    with monkeypatch.context() as patch:
        patch.setattr(pipeline, "select_patches", no_decoding)
        patch.setattr(pipeline, "uniform_frames", no_decoding)
        again = load_video(video.path, cached, model.tower.spec)
    assert torch.equal(first.patches, again.patches)
    assert torch.equal(first.positions, again.positions) and first.grids == again.grids
    online = load_video(video.path, media, model.tower.spec)
    assert torch.equal(online.patches, first.patches)  # cached assets give identical pixels
    assert online.kinds == first.kinds == [mode]


def test_the_real_demo_video_rows_load_through_the_dataset(model, real_video_samples):
    data = REAL_DATA / "video" / "onevision_demo" / "raw_video_samples.json"
    dataset = MixtureDataset(
        MixtureConfig([SourceConfig("demo", str(data))], seed=0), model.processor
    )
    samples = list(dataset.stream(epoch=0))
    assert len(samples) == len(real_video_samples) == 2
    assert all(isinstance(s, Sample) for s in samples)  # none rejected
    k = model.processor.media.codec.num_patches
    video_pad = model.processor.chat.token_ids["video"]
    for sample in samples:
        assert sample.encoded.input_ids.count(video_pad) == k
        assert sample.visual[0].kinds == ["codec"] and sample.visual[0].lengths == [k]


def test_mixture_yaml_loads_into_typed_sources():
    from ovmllm.config import load_config

    mixture = load_config(MixtureConfig, "configs/data/demo_video.yaml", ["seed=3"])
    assert mixture.seed == 3 and mixture.sources[0].name == "onevision_demo"
    assert isinstance(mixture.sources[0], SourceConfig)
