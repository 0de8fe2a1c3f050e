"""Offline precompute over a dataset: failures recorded, resumable, shardable, JSONL out."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from connector import ConnectorConfig
from encoder.codec import AssetSettingsError, read_assets
from encoder.codec.config import CodecConfig
from encoder.towers import TowerSpec
from ovmllm.chat_processor import SampleRejected
from ovmllm.data.dataset import MixtureDataset
from ovmllm.data.mixture import MixtureConfig, SourceConfig
from ovmllm.data.precompute import PrecomputeConfig, precompute
from ovmllm.media import MediaConfig
from ovmllm.multimodal_processor import MultimodalProcessor
from tests.conftest import REAL_DATA

QWEN3 = REAL_DATA / "tokenizers" / "qwen3"
# The OV-Encoder's spec, without building a tower (only media loading and token counts use it).
SPEC = TowerSpec("onevision", 14, 64, frozenset({"image", "frames", "codec"}), (0.5,) * 3,
                 (0.5,) * 3, 504)  # fmt: skip


@pytest.fixture()
def dataset(make_video, tmp_path):
    root = tmp_path / "data"
    (root / "clips").mkdir(parents=True)
    for name, kind in [("a.mp4", "mover"), ("b.mp4", "flash"), ("c.mp4", "static")]:
        video = make_video(f"pre_{name}", kind=kind, width=96, height=64, frames=24)
        shutil.copy(video.path, root / "clips" / name)
    (root / "clips" / "broken.mp4").write_text("not a video")
    rows = [
        {"id": 0, "video": "clips/a.mp4", "conversations": []},
        {"id": 1, "video": "clips/b.mp4", "conversations": []},
        {"id": 2, "video": "clips/a.mp4", "conversations": []},  # same video twice
        {"id": 3, "video": "clips/c.mp4", "conversations": []},
        {"id": 4, "video": "clips/missing.mp4", "conversations": []},
        {"id": 5, "video": "../outside.mp4", "conversations": []},
        {"id": 6, "video": "clips/broken.mp4", "conversations": []},
        {"id": 7, "image": "x.jpg", "conversations": []},
    ]
    data = root / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root, data


def job(data, root, **kwargs) -> PrecomputeConfig:
    codec = CodecConfig(canvas="crop", budget=300)
    return PrecomputeConfig(
        data=str(data), root=str(root), out=str(root / "assets"), codec=codec, **kwargs
    )


def test_precompute_records_failures_and_writes_the_jsonl(dataset):
    root, data = dataset
    summary = precompute(job(data, root), progress=False)
    assert (summary.rows, summary.video_rows, summary.videos) == (8, 7, 6)
    assert (summary.computed, summary.failed, summary.skipped_done) == (3, 3, 0)
    failures = [json.loads(line) for line in Path(summary.failures).read_text().splitlines()]
    reasons = {f["video"]: f["reason"] for f in failures}
    assert set(reasons) == {"clips/missing.mp4", "../outside.mp4", "clips/broken.mp4"}
    assert "outside the dataset root" in reasons["../outside.mp4"]
    assert "not a readable media container" in reasons["clips/broken.mp4"]
    rows = [json.loads(line) for line in Path(summary.output).read_text().splitlines()]
    assert [r["id"] for r in rows] == list(range(8))
    with_assets = {r["id"]: r["codec_assets"] for r in rows if "codec_assets" in r}
    assert set(with_assets) == {0, 1, 2, 3} and with_assets[0] == with_assets[2]
    selection = read_assets(root / with_assets[1])
    assert selection.num_patches == 300


def test_precompute_resumes_and_shards(dataset):
    root, data = dataset
    first = precompute(job(data, root, shard="0/2"), progress=False)
    second = precompute(job(data, root, shard="1/2"), progress=False)
    assert first.in_shard + second.in_shard == 4  # the 4 existing files, failures aside
    assert first.computed + second.computed == 3  # broken.mp4 fails in its shard
    again = precompute(job(data, root), progress=False)
    assert again.computed == 0 and again.skipped_done == 3
    rows = [json.loads(line) for line in Path(again.output).read_text().splitlines()]
    assert sum("codec_assets" in r for r in rows) == 4


def test_precompute_with_worker_processes(dataset):
    root, data = dataset
    summary = precompute(job(data, root, workers=2), progress=False)
    assert summary.computed == 3 and summary.failed == 3


def test_bad_shard_is_rejected(dataset):
    root, data = dataset
    with pytest.raises(ValueError, match="shard"):
        precompute(job(data, root, shard="2/2"), progress=False)


def test_assets_outside_the_dataset_root_round_trip_through_the_dataset(dataset, tmp_path):
    """precompute --out elsewhere → rows with codec_assets relative to that asset root → the
    dataset (its source naming that `assets_root`) builds the sample from the assets alone."""
    if not QWEN3.is_dir():
        pytest.skip("../shared/real_data is absent")
    root, data = dataset
    out = tmp_path / "elsewhere" / "assets"
    codec = CodecConfig(canvas="crop", budget=300)
    summary = precompute(
        PrecomputeConfig(data=str(data), root=str(root), out=str(out), codec=codec), progress=False
    )
    assert summary.assets_root == str(out.resolve())
    turn = [{"from": "human", "value": "<video>\nWhat moves?"}, {"from": "gpt", "value": "It."}]
    rows = [json.loads(line) for line in Path(summary.output).read_text().splitlines()]
    assert rows[1]["codec_assets"] and not Path(rows[1]["codec_assets"]).is_absolute()
    (root / "with_assets.jsonl").write_text(json.dumps({**rows[1], "conversations": turn}) + "\n")
    shutil.rmtree(root / "clips")  # the sample can only come from the assets now

    data = str(root / "with_assets.jsonl")
    sources = [
        SourceConfig("named", data, str(root), assets_root=summary.assets_root),
        SourceConfig("unnamed", data, str(root)),
    ]
    tokenizer = AutoTokenizer.from_pretrained(QWEN3)
    processor = MultimodalProcessor(tokenizer, SPEC, ConnectorConfig(), MediaConfig(codec=codec))
    dataset = MixtureDataset(MixtureConfig(sources), processor)
    sample = dataset.build(0, 0)
    want = read_assets(out / rows[1]["codec_assets"]).to_packed()
    assert torch.equal(sample.visual[0].patches, want.patches)
    assert torch.equal(sample.visual[0].positions, want.positions)
    with pytest.raises(SampleRejected, match="asset folder not found"):  # not under root
        dataset.build(1, 0)
    other = CodecConfig(canvas="crop", budget=300, residual_weight=1.0)
    dataset.processor = MultimodalProcessor(
        tokenizer, SPEC, ConnectorConfig(), MediaConfig(codec=other)
    )
    with pytest.raises(AssetSettingsError, match=r"residual_weight=0\.25.*residual_weight=1\.0"):
        dataset.build(0, 0)
