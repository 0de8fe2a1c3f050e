"""The LLM-side token layout of media (PAPER.md section 1): `reference` (runs of `<image>` pads,
one per canvas frame / frame / image, newline-separated, unwrapped) and `compact` (one wrapped
run per item), and `<image>` placeholders that refer to a row's video."""

import pytest
import torch

from connector import ConnectorConfig
from encoder.codec import CodecConfig
from encoder.packed import PackedVisualTokens
from encoder.towers import TowerConfig, build_tower
from ovmllm.chat_processor import ChatConfig
from ovmllm.media import MediaConfig
from ovmllm.multimodal_processor import MultimodalProcessor
from tests.conftest import REAL_DATA

QWEN3 = REAL_DATA / "tokenizers" / "qwen3"
PAD, VIDEO_PAD = "<|image_pad|>", "<|video_pad|>"
CODEC = CodecConfig(frames=8, canvas_size=96, patch=16, budget_frames=2.5)  # 36 per frame, K 90


def item(kind: str, length: int, grid, patch: int) -> PackedVisualTokens:
    """A media item of random pixels: `codec` rows sorted by (t, h, w), full grids row-major."""
    if grid is None:
        side = CODEC.grid
        cells = torch.arange(length)
        t, hw = cells // (side * side), cells % (side * side)
        positions = torch.stack([t, hw // side, hw % side], 1)
    else:
        t, h, w = grid
        tt, hh, ww = torch.meshgrid(
            torch.arange(t), torch.arange(h), torch.arange(w), indexing="ij"
        )
        positions = torch.stack([tt.flatten(), hh.flatten(), ww.flatten()], 1)
    return PackedVisualTokens(
        patches=torch.randint(0, 255, (length, 3, patch, patch), dtype=torch.uint8),
        positions=positions.to(torch.int32),
        cu_seqlens=torch.tensor([0, length], dtype=torch.int32),
        kinds=[kind],
        grids=[grid],
    )


@pytest.fixture(scope="module")
def tokenizer(qwen3_tokenizer):
    return qwen3_tokenizer


@pytest.fixture(scope="module")
def spec():
    return build_tower(TowerConfig(name="onevision")).spec


def processor(tokenizer, spec, layout: str, **chat) -> MultimodalProcessor:
    media = MediaConfig(layout=layout, codec=CODEC)
    return MultimodalProcessor(tokenizer, spec, ConnectorConfig(), media, ChatConfig(**chat))


def user_text(proc: MultimodalProcessor, question: str, items) -> str:
    turns = [{"from": "human", "value": question}, {"from": "gpt", "value": "ok"}]
    text = proc.tokenizer.decode(proc.encode(turns, items).input_ids)
    return text[text.index("<|im_start|>user\n") + len("<|im_start|>user\n") : text.index("ok")]


def test_reference_cuts_a_codec_video_into_newline_separated_canvas_frames(tokenizer, spec):
    video = item("codec", 90, None, 16)  # K = 2.5 canvas frames of 36 patches
    text = user_text(processor(tokenizer, spec, "reference"), "<video>\nWhat?", [video])
    assert text.startswith((PAD * 36 + "\n") * 2 + PAD * 18 + "\nWhat?<|im_end|>")
    assert "<|vision_start|>" not in text and VIDEO_PAD not in text


def test_reference_gives_one_run_per_frame_and_per_image(tokenizer, spec):
    proc = processor(tokenizer, spec, "reference")
    frames = item("frames", 3 * 16, (3, 4, 4), 14)
    assert user_text(proc, "<video>\nHi", [frames]).startswith((PAD * 16 + "\n") * 3 + "Hi")
    images = [item("image", 4, (1, 2, 2), 14), item("image", 9, (1, 3, 3), 14)]
    assert user_text(proc, "<image>\n<image>\nSame?", images).startswith(
        PAD * 4 + "\n" + PAD * 9 + "\nSame?"
    )


def test_compact_keeps_one_wrapped_run_per_item(tokenizer, spec):
    video = item("codec", 90, None, 16)
    text = user_text(processor(tokenizer, spec, "compact"), "<video>\nWhat?", [video])
    assert text.startswith("<|vision_start|>" + VIDEO_PAD * 90 + "<|vision_end|>\nWhat?")
    image = item("image", 4, (1, 2, 2), 14)
    text = user_text(processor(tokenizer, spec, "compact"), "<image>\nSame?", [image])
    assert text.startswith("<|vision_start|>" + PAD * 4 + "<|vision_end|>\nSame?")


@torch.no_grad()
def test_an_image_placeholder_refers_to_the_video_of_a_llava_video_row(tokenizer):
    from ovmllm.build import ModelConfig, build_model
    from ovmllm.config import load_config

    torch.manual_seed(0)
    cfg = load_config(
        ModelConfig,
        "configs/model/tiny.yaml",
        [f"tokenizer={QWEN3}", "media.layout=reference", "media.codec.canvas_size=96"],
    )
    model = build_model(cfg).eval()
    video = item("codec", model.processor.media.codec.num_patches, None, 16)
    row = [{"from": "human", "value": "<image>\nWhat happens?"}, {"from": "gpt", "value": "A run."}]
    sample = model.processor.encode(row, [video])  # LLaVA-Video-178K rows say <image>
    ids = torch.tensor([sample.input_ids])
    slots = ids[0] == model.processor.chat.token_ids["image"]
    features = model.visual_features([video])
    assert int(slots.sum()) == len(features) == video.lengths[0]
    assert torch.equal(model.embed(ids, [video])[0, slots], features)  # in (t, h, w) order
    compact = MultimodalProcessor(
        tokenizer, model.tower.spec, cfg.connector, MediaConfig(codec=cfg.media.codec)
    )
    assert compact.encode(row, [video]).input_ids.count(
        tokenizer.convert_tokens_to_ids(VIDEO_PAD)
    ) == len(features)


def test_the_paper_recipe_configs_use_the_reference_layout():
    from ovmllm.build import ModelConfig
    from ovmllm.config import load_config
    from train.config import load_stage

    paper = load_config(ModelConfig, "configs/model/ov_large_qwen3_4b.yaml")
    assert paper.media.layout == "reference"
    for stage in ("align", "instruct"):
        assert load_stage(f"configs/train/{stage}.yaml").processor.media.layout == "reference"
