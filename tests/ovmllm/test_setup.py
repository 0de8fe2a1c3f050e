"""Setup mistakes fail before step 1 (at build / `ovmllm init` and at train start), each tower's
default frame size is the paper's, and the tiny config's codec budget selects beyond frame 0."""

import json

import pytest
import torch

from connector import ConnectorConfig
from encoder.towers import TowerConfig, build_tower
from ovmllm.build import ModelConfig, build_model
from ovmllm.cli import main
from ovmllm.config import ConfigError, load_config
from ovmllm.data.dataset import MixtureDataset
from ovmllm.data.mixture import MixtureConfig, SourceConfig
from ovmllm.media import MediaConfig, load_video
from ovmllm.multimodal_processor import MultimodalProcessor
from ovmllm.validate import check_training_setup
from tests.conftest import REAL_DATA

QWEN3 = REAL_DATA / "tokenizers" / "qwen3"


@pytest.fixture(scope="module")
def tokenizer(qwen3_tokenizer):
    return qwen3_tokenizer


@pytest.fixture(scope="module")
def specs():
    torch.manual_seed(0)
    return {
        name: build_tower(TowerConfig(name=name)).spec
        for name in ("onevision", "siglip2", "qwen3_vit")
    }


def tiny(*overrides: str) -> ModelConfig:
    return load_config(ModelConfig, "configs/model/tiny.yaml", [f"tokenizer={QWEN3}", *overrides])


def test_each_tower_gets_the_papers_frame_size_by_default(specs, make_video):
    video = make_video("mover.mp4", kind="mover", width=320, height=240, frames=96)
    media = MediaConfig(video_mode="frames", frames=2)
    for name, side in {"onevision": 504, "siglip2": 512, "qwen3_vit": 512}.items():
        spec = specs[name]
        item = load_video(video.path, media, spec)
        cells = side // spec.patch_size  # 36 x 36 patches of 14, 32 x 32 of 16
        assert item.grids == [(2, cells, cells)] and item.patch_size == spec.patch_size, name


def test_build_and_init_refuse_what_the_tower_cannot_take(tokenizer, tmp_path, capsys):
    with pytest.raises(ConfigError, match=r"tower.name=siglip2 .*media.video_mode=codec"):
        build_model(tiny("tower.name=siglip2"))  # tiny.yaml selects codec video
    with pytest.raises(ConfigError, match=r"media.frame_size=500 .* patch 14"):
        build_model(tiny("media.video_mode=frames", "media.frame_size=500"))
    with pytest.raises(ConfigError, match=r"media.frame_size=48 .*2x2 merge"):  # 3 x 3 patches
        build_model(tiny("tower.name=qwen3_vit", "media.video_mode=frames", "media.frame_size=48"))
    out = str(tmp_path / "model")
    args = ["init", "--config", "configs/model/tiny.yaml", "--out", out, f"tokenizer={QWEN3}"]
    assert main([*args, "tower.name=qwen3_vit"]) == 1
    assert "tower.name=qwen3_vit cannot take media.video_mode=codec" in capsys.readouterr().err
    assert not (tmp_path / "model").exists()


def rows_file(folder, name: str, rows: list[dict]) -> SourceConfig:
    path = folder / f"{name}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return SourceConfig(name, str(path))


def test_train_start_refuses_media_the_data_has_and_the_model_cannot_encode(
    tokenizer, specs, tmp_path
):
    turn = [{"from": "human", "value": "<image>\nWhat?"}, {"from": "gpt", "value": "A cat."}]
    images = rows_file(tmp_path, "images", [{"id": "i0", "image": "a.png", "conversations": turn}])
    text, video = {"id": "v0", "conversations": turn}, {"id": "v1", "video": "a.mp4"}
    videos = rows_file(tmp_path, "videos", [text, {**video, "conversations": turn}])

    def check(spec, media: MediaConfig, *sources: SourceConfig) -> None:
        processor = MultimodalProcessor(tokenizer, spec, ConnectorConfig(), media)
        data = MixtureDataset(MixtureConfig(list(sources)), processor, str(tmp_path / "arrow"))
        check_training_setup(processor, [data])

    codec = MediaConfig(video_mode="codec")  # e.g. a stage's override on a SigLIP2 checkpoint
    check(specs["siglip2"], codec, images)  # no video in the data: nothing to refuse
    with pytest.raises(ConfigError, match=r"'videos' .*video rows \(e.g. id 'v1'\).*siglip2"):
        check(specs["siglip2"], codec, images, videos)
    check(specs["siglip2"], MediaConfig(video_mode="frames"), images, videos)
    with pytest.raises(ConfigError, match=r"media.frame_size=500 .* patch 14"):
        check(specs["onevision"], MediaConfig(video_mode="frames", frame_size=500), images)
    spatial = MultimodalProcessor(tokenizer, specs["onevision"], ConnectorConfig("spatial_merge"))
    data = MixtureDataset(MixtureConfig([videos]), spatial, str(tmp_path / "arrow"))
    with pytest.raises(ConfigError, match="codec patches have none"):
        check_training_setup(spatial, [data])


def test_the_tiny_configs_codec_budget_selects_beyond_the_first_frame(make_video):
    from encoder.codec import select_patches

    codec = load_config(ModelConfig, "configs/model/tiny.yaml").media.codec
    video = make_video("mover.mp4", kind="mover", width=320, height=240, frames=96)
    frames = select_patches(video.path, codec).positions[:, 0]
    assert codec.full_frame == "first" and int((frames > 0).sum()) >= codec.patches_per_frame
