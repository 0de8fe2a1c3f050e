"""Typed partial settings (processor overrides), field documentation, and a stage that starts
from a model YAML."""

import pickle
from dataclasses import asdict

import pytest

from ovmllm.build import ModelConfig
from ovmllm.chat_processor import ChatConfig
from ovmllm.config import ConfigError, apply_overrides, field_docs, load_config
from ovmllm.media import MediaConfig
from ovmllm.multimodal_processor import ProcessorOverrides
from train.config import load_stage


def test_overrides_change_only_the_keys_they_set():
    saved = load_config(MediaConfig, None, ["image.size=112", "codec.frames=16", "frames=4"])
    overrides = load_config(
        ProcessorOverrides, None, ["media.image.mode=best_fit", "media.codec.budget_frames=2"]
    )
    media = apply_overrides(saved, overrides.media)
    assert (media.image.mode, media.image.size) == ("best_fit", 112)
    assert (media.codec.frames, media.codec.budget_frames, media.frames) == (16, 2.0, 4)
    assert apply_overrides(saved, ProcessorOverrides().media) == saved
    assert apply_overrides(ChatConfig(), overrides.chat) == ChatConfig()
    assert pickle.loads(pickle.dumps(overrides)) == overrides  # e.g. to spawned workers


def test_overrides_are_checked_like_the_config_they_change():
    with pytest.raises(ConfigError, match="bogus"):
        load_config(ProcessorOverrides, None, ["media.codec.bogus=1"])
    with pytest.raises(ConfigError, match="frames"):
        load_config(ProcessorOverrides, None, ["media.frames=many"])
    wrong = load_config(ProcessorOverrides, None, ["media.video_mode=audio"])
    with pytest.raises(ValueError, match="video_mode"):  # the schema's own check, on apply
        apply_overrides(MediaConfig(), wrong.media)


def test_field_docs_come_from_the_docstrings_under_the_fields():
    docs = field_docs(ChatConfig)
    assert set(docs) == {"max_length", "system_prompt", "frame_separator"}
    assert docs["system_prompt"].startswith("Added when a conversation has no system turn")
    assert field_docs(ProcessorOverrides)["media"].startswith("Keys of `MediaConfig`")
    # a generated override class documents itself with its schema's docstrings
    chat_overrides = type(ProcessorOverrides().chat)
    assert field_docs(chat_overrides) == docs


def test_a_stage_starts_from_its_model_file(tmp_path):
    stage = tmp_path / "s.yaml"
    stage.write_text(
        "model_file: configs/model/tiny.yaml\n"
        "model: {media: {codec: {budget: 2592}}}\n"
        "data: {sources: [{data: x.jsonl}]}\n"
    )
    cfg = load_stage(stage, ["model.tower.select_layer=-1"])
    expected = load_config(
        ModelConfig,
        "configs/model/tiny.yaml",
        ["media.codec.budget=2592", "tower.select_layer=-1"],
    )
    assert asdict(cfg.model) == asdict(expected)
    with pytest.raises(ConfigError, match="not found"):
        load_stage(stage, ["model_file=configs/model/none.yaml"])
