"""`ovmllm init` / `ovmllm chat` and the one-folder checkpoint (model + tokenizer + processor)."""

import json

import pytest
import torch

from ovmllm.cli import main
from ovmllm.config import load_config
from ovmllm.model import OVMLLMForCausalLM
from ovmllm.multimodal_processor import ProcessorOverrides
from tests.conftest import REAL_DATA

QWEN3 = REAL_DATA / "tokenizers" / "qwen3"
PICTURE = REAL_DATA / "images" / "natural" / "skimage_coffee.png"


def overrides(*keys: str) -> ProcessorOverrides:
    """Typed processor overrides from dotted keys, as a stage or eval face builds them."""
    return load_config(ProcessorOverrides, None, list(keys))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    if not QWEN3.is_dir():
        pytest.skip("../shared/real_data is absent")
    folder = tmp_path_factory.mktemp("ckpt") / "tiny"
    assert (
        main(
            [
                "init",
                "--config",
                "configs/model/tiny.yaml",
                "--out",
                str(folder),
                f"tokenizer={QWEN3}",
            ]
        )
        == 0
    )
    return folder


def test_init_writes_one_self_describing_folder(checkpoint):
    names = {p.name for p in checkpoint.iterdir()}
    assert {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "processor_config.json",
        "model_config.yaml",
    } <= names
    config = json.loads((checkpoint / "config.json").read_text())
    assert config["model_type"] == "ovmllm" and config["llm_config"]["model_type"] == "qwen3"
    assert config["tower_model"]["model_type"] == "onevision_encoder"
    model = OVMLLMForCausalLM.from_pretrained(checkpoint)
    assert model.processor.media.image.size == 112 and model.processor.media.codec.frames == 16
    assert model.processor.tokenizer.chat_template is not None
    again = OVMLLMForCausalLM.from_pretrained(
        checkpoint, processor_overrides=overrides("media.image.mode=best_fit")
    )
    assert again.processor.media.image.mode == "best_fit"  # an eval or stage config overrides media


def test_chat_answers_about_an_image_and_a_video(checkpoint, make_video, capsys):
    video = make_video("mover.mp4", kind="mover", width=320, height=240, frames=96)

    def chat(*args: str) -> int:
        return main(["chat", "--model", str(checkpoint), *args])

    assert chat("--image", str(PICTURE), "What is this?", "--max-new-tokens", "4") == 0
    assert capsys.readouterr().out.strip()
    assert chat("--video", str(video.path), "What moves?", "--max-new-tokens", "4") == 0
    frames = ["media.video_mode=frames", "media.frames=4"]
    assert chat("--video", str(video.path), "Hi", "--max-new-tokens", "2", *frames) == 0
    assert chat("--video", "/nonexistent.mp4", "Hi") == 1


def test_spatial_merge_with_codec_video_is_refused_at_init(tmp_path, capsys):
    if not QWEN3.is_dir():
        pytest.skip("../shared/real_data is absent")
    code = main(
        [
            "init",
            "--config",
            "configs/model/tiny.yaml",
            "--out",
            str(tmp_path / "x"),
            f"tokenizer={QWEN3}",
            "connector.name=spatial_merge",
        ]
    )
    assert code == 1 and "codec patches have none" in capsys.readouterr().err


@torch.no_grad()
def test_frames_mode_feeds_the_grid_towers(tmp_path, make_video):
    if not QWEN3.is_dir():
        pytest.skip("../shared/real_data is absent")
    from ovmllm.build import ModelConfig, build_model
    from ovmllm.config import load_config

    video = make_video("mover.mp4", kind="mover", width=320, height=240, frames=96)
    for tower in ("siglip2", "qwen3_vit"):
        cfg = load_config(
            ModelConfig,
            "configs/model/tiny.yaml",
            [
                f"tokenizer={QWEN3}",
                f"tower.name={tower}",
                "media.video_mode=frames",
                "media.frames=4",
                "media.frame_size=128",
            ],
        )
        model = build_model(cfg).eval()
        items = model.processor.load([PICTURE], video.path)
        sample = model.processor.encode(
            [{"from": "human", "value": "<image><video> hi"}, {"from": "gpt", "value": "ok"}], items
        )
        out = model(
            torch.tensor([sample.input_ids]), labels=torch.tensor([sample.labels]), visual=items
        )
        assert torch.isfinite(out.loss)


@torch.no_grad()
def test_cached_generation_equals_uncached_for_every_input_kind(checkpoint, make_video):
    model = OVMLLMForCausalLM.from_pretrained(checkpoint).eval()
    processor = model.processor
    video = make_video("mover.mp4", kind="mover", width=320, height=240, frames=96).path
    frames = OVMLLMForCausalLM.from_pretrained(
        checkpoint, processor_overrides=overrides("media.video_mode=frames", "media.frames=4")
    ).processor
    cases = {
        "image": (processor, "<image>\nWhat?", processor.load([PICTURE])),
        "multi-image": (processor, "<image><image>\nSame?", processor.load([PICTURE, PICTURE])),
        "frames": (frames, "<video>\nWhat?", frames.load(video=video)),
        "codec": (processor, "<video>\nWhat?", processor.load(video=video)),
    }
    for name, (proc, question, items) in cases.items():
        prompt = torch.tensor([proc.prompt([{"from": "human", "value": question}], items)])
        cached = model.generate(
            prompt, visual=items, max_new_tokens=6, do_sample=False, use_cache=True
        )
        plain = model.generate(
            prompt, visual=items, max_new_tokens=6, do_sample=False, use_cache=False
        )
        assert cached.shape[1] == 6 and torch.equal(cached, plain), name


@torch.no_grad()
def test_frame_separators_split_the_video_run_per_frame(checkpoint, make_video):
    model = OVMLLMForCausalLM.from_pretrained(
        checkpoint,
        processor_overrides=overrides('chat.frame_separator="\\n"', "media.codec.budget_frames=2"),
    ).eval()
    processor = model.processor
    video = make_video("mover.mp4", kind="mover", width=320, height=240, frames=96).path
    items = processor.load(video=video)
    per_frame = processor.tokens_per_frame(items[0])
    assert sum(per_frame) == processor.num_visual_tokens(items[0]) and len(per_frame) > 1
    sample = processor.encode(
        [{"from": "human", "value": "<video>\nWhat?"}, {"from": "gpt", "value": "A square."}], items
    )
    text = processor.tokenizer.decode(sample.input_ids)
    run = text[text.index("<|vision_start|>") : text.index("<|vision_end|>")]
    assert [len(chunk.split("<|video_pad|>")) - 1 for chunk in run.split("\n")] == per_frame
    out = model(
        torch.tensor([sample.input_ids]), labels=torch.tensor([sample.labels]), visual=items
    )
    assert torch.isfinite(out.loss)


def test_chat_with_no_checkpoint_there_says_so_in_one_line(tmp_path, capsys):
    assert main(["chat", "--model", str(tmp_path / "MISSING"), "Hi"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "MISSING: no checkpoint folder there" in err
