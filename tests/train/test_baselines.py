"""The like-for-like baselines of Table 2 (README "Baselines"): each tiny baseline builds as
`ovmllm init` builds it, is a frames-mode model at its configured frame size that passes the setup
checks, trains through the tiny align stage named with `model_file=` and reloads with its
processor; the paper-size configs resolve, without weights, to the paper's frame sides and
tokens per frame; every trainable tower parameter either gets a gradient or is declared unused
(the instruct stage trains the tower under ZeRO-3)."""

from __future__ import annotations

import json
import math

import pytest
import torch
from transformers import AutoTokenizer, Qwen3VLVisionConfig
from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLVisionModel

from encoder.onevision import OneVisionEncoderConfig
from encoder.packed import PackedVisualTokens
from encoder.towers import TOWERS, TowerConfig, VisionTower, build_tower
from encoder.towers.qwen3_vit import RANDOM_INIT_SIZES as QWEN3_VIT_SIZES
from encoder.towers.qwen3_vit import Qwen3VitTower
from ovmllm.build import ModelConfig, build_model
from ovmllm.config import load_config
from ovmllm.model import OVMLLMForCausalLM
from ovmllm.multimodal_processor import MultimodalProcessor
from ovmllm.validate import check_processor
from tests.train.conftest import ROOT, TOKENIZER, toy_sources, write_stage
from train.config import load_stage
from train.heldout import heldout_loss
from train.recipe import train

MODELS = ROOT / "configs" / "model"
TINY_TOWERS = {"tiny_siglip2": "siglip2", "tiny_qwen3_vit": "qwen3_vit", "tiny_frames": "onevision"}
VIDEO_FRAMES = 8  # the baselines' dense frames (PAPER.md section 1)

# paper config → (frame side in px, patches per frame, LLM tokens per 8-frame video)
PAPER_COLUMNS = {
    "siglip2_qwen3_4b": (512, 1024, 8 * 1024),
    "qwen3_vit_qwen3_4b": (512, 1024, 4 * 16 * 16),  # its merger: 2 frames x 2 x 2 patches
    "ov_large_frames_qwen3_4b": (504, 1296, 8 * 1296),
}
# What the official folders' config.json holds (google/siglip2-so400m-patch16-naflex's vision
# config; Qwen/Qwen3-VL-4B-Instruct's vision_config; OV-Encoder large), so that the paper-size
# towers' specs come out of the same code as with weights, on the meta device.
OFFICIAL_TOWER_CONFIGS = {
    "siglip2": dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27,
                    num_attention_heads=16, patch_size=16, num_patches=256),
    "qwen3_vit": dict(depth=24, hidden_size=1024, intermediate_size=4096, num_heads=16,
                      patch_size=16, temporal_patch_size=2, spatial_merge_size=2,
                      out_hidden_size=2560, num_position_embeddings=2304,
                      deepstack_visual_indexes=[5, 11, 17]),
    "onevision": OneVisionEncoderConfig.from_size("large").to_dict(),
}  # fmt: skip


@pytest.fixture(scope="module")
def tokenizer():
    if not TOKENIZER.is_dir():
        pytest.skip("../shared/real_data (the Qwen3 tokenizer) is absent")
    return AutoTokenizer.from_pretrained(TOKENIZER)


def a_video(toy_data) -> str:
    row = next(r for r in map(json.loads, (toy_data / "train.jsonl").open()) if r.get("video"))
    return str(toy_data / row["video"])


@pytest.mark.parametrize("name", list(TINY_TOWERS))
def test_tiny_baseline_builds_as_a_frames_model_that_passes_the_setup_checks(name, toy_data):
    # what `ovmllm init --config configs/model/NAME.yaml --out DIR` builds before saving it
    cfg = load_config(ModelConfig, MODELS / f"{name}.yaml", [f"tokenizer={TOKENIZER}"])
    model = build_model(cfg)
    processor = model.processor
    spec = processor.spec
    assert spec.name == TINY_TOWERS[name]
    assert processor.media.video_mode == "frames" and processor.media.frames == VIDEO_FRAMES
    check_processor(processor)  # what `ovmllm init` and a stage's start check
    (item,) = processor.load(video=a_video(toy_data))
    side = processor.media.frame_size // spec.patch_size
    assert item.kinds == ["frames"] and item.grids == [(VIDEO_FRAMES, side, side)]
    assert item.patch_size == spec.patch_size
    # the reference layout: one run of image pads per temporal token of the tower
    runs = processor.token_runs(item)
    assert len(runs) == math.ceil(VIDEO_FRAMES / spec.temporal_patch)
    with torch.no_grad():
        features = model.tower(item).features
    assert features.shape[0] == sum(runs)


# one training run is in the fast suite (the tower with its own merger and frame pairs); each
# run costs 10-20 s on two cores
TRAINED = [
    pytest.param(name, marks=[] if name == "tiny_qwen3_vit" else [pytest.mark.slow])
    for name in TINY_TOWERS
]


@pytest.mark.parametrize("name", TRAINED)
def test_tiny_baseline_trains_through_the_align_stage_and_reloads_with_its_processor(
    name, toy_data, tmp_path
):
    # every video row and as many image rows: one pass of 2 steps of 4 samples
    rows = [json.loads(line) for line in (toy_data / "train.jsonl").open()]
    videos = [r for r in rows if r.get("video")]
    images = [r for r in rows if r.get("image")][: len(videos)]
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in videos + images))
    sources = toy_sources(data)
    sources["sources"][0]["root"] = str(toy_data)
    stage = write_stage(
        tmp_path / "stage.yaml",
        base="tiny_align",  # as README: ovmllm train configs/train/tiny_align.yaml model_file=...
        model_file=str(MODELS / f"{name}.yaml"),
        output_dir=str(tmp_path / "run"),
        data=sources,
        batch_size=4,
        grad_accum=1,
        max_steps=2,
        save_every=0,
    )
    summary = train(load_stage(stage))

    assert summary["steps"] == 2 and summary["rejected"] == {}  # every video was encoded
    model = OVMLLMForCausalLM.from_pretrained(tmp_path / "run" / "export").eval()
    assert model.tower.spec.name == TINY_TOWERS[name]
    assert model.processor.media.video_mode == "frames"
    assert model.processor.media.frames == VIDEO_FRAMES
    assert math.isfinite(heldout_loss(model, toy_data / "heldout.jsonl"))  # videos included


def paper_tower(cfg: TowerConfig) -> VisionTower:
    """The paper-size tower of `cfg`, without its weights: the official architecture on the
    meta device."""
    with torch.device("meta"):
        return TOWERS[cfg.name].from_model_config(OFFICIAL_TOWER_CONFIGS[cfg.name], cfg)


@pytest.mark.parametrize("name", list(PAPER_COLUMNS))
def test_paper_config_resolves_to_the_paper_s_frames_and_tokens(name, tokenizer):
    side, patches_per_frame, video_tokens = PAPER_COLUMNS[name]
    cfg = load_config(ModelConfig, MODELS / f"{name}.yaml")  # as `ovmllm config model` does
    reference = load_config(ModelConfig, MODELS / "ov_large_qwen3_4b.yaml")
    assert (cfg.llm, cfg.connector, cfg.chat) == (
        reference.llm,
        reference.connector,
        reference.chat,
    )
    assert cfg.media.layout == reference.media.layout == "reference"
    assert cfg.tower.path.startswith("pretrained/")

    spec = paper_tower(cfg.tower).spec
    processor = MultimodalProcessor(tokenizer, spec, cfg.connector, cfg.media, cfg.chat)
    check_processor(processor)
    assert cfg.media.video_mode == "frames" and cfg.media.frames == VIDEO_FRAMES
    assert cfg.media.frame_size == spec.frame_size == side
    assert (side // spec.patch_size) ** 2 == patches_per_frame
    grid = (VIDEO_FRAMES, side // spec.patch_size, side // spec.patch_size)
    tower_tokens = spec.num_output_tokens("frames", VIDEO_FRAMES * patches_per_frame, grid)
    assert cfg.connector.num_output_tokens("frames", tower_tokens, grid) == video_tokens
    assert video_tokens < cfg.chat.max_length


def frames_item(spec, frames: int = 2, side: int = 4) -> PackedVisualTokens:
    t, h, w = torch.meshgrid(
        torch.arange(frames), torch.arange(side), torch.arange(side), indexing="ij"
    )
    n = frames * side * side
    return PackedVisualTokens(
        patches=torch.randint(0, 256, (n, 3, spec.patch_size, spec.patch_size), dtype=torch.uint8),
        positions=torch.stack([t.flatten(), h.flatten(), w.flatten()], 1).to(torch.int32),
        cu_seqlens=torch.tensor([0, n], dtype=torch.int32),
        kinds=["frames"],
        grids=[(frames, side, side)],
    )


def qwen3_vit_with_deepstack() -> Qwen3VitTower:
    """The tiny Qwen3-ViT with a deepstack merger, as the official 4B tower has three."""
    config = Qwen3VLVisionConfig(**{**QWEN3_VIT_SIZES["tiny"], "deepstack_visual_indexes": [0]})
    return Qwen3VitTower(Qwen3VLVisionModel._from_config(config))


TOWER_BUILDS = {
    "siglip2": lambda: build_tower(TowerConfig(name="siglip2", size="tiny")),
    "qwen3_vit": lambda: build_tower(TowerConfig(name="qwen3_vit", size="tiny")),
    "qwen3_vit_deepstack": qwen3_vit_with_deepstack,
    "onevision": lambda: build_tower(TowerConfig(name="onevision", size="tiny")),
}


@pytest.mark.parametrize("name", list(TOWER_BUILDS))
def test_every_tower_parameter_gets_a_gradient_or_is_declared_unused(name):
    """A trainable parameter without a gradient breaks ZeRO's reduction: the instruct stage
    trains the tower, and freezes exactly `unused_modules()`."""
    torch.manual_seed(0)
    tower = TOWER_BUILDS[name]()
    tower(frames_item(tower.spec)).features.square().sum().backward()
    unused = {id(p) for m in tower.unused_modules() for p in m.parameters()}
    undeclared = [n for n, p in tower.named_parameters() if p.grad is None and id(p) not in unused]
    assert undeclared == []
