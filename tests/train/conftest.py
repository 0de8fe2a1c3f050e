"""Fixtures for the training tests: the toy dataset, stage YAMLs written from the tiny ones,
and a clean environment for child processes (no inherited process-group variables)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from ovmllm.data.toy import ToyDataConfig, write_toy_dataset
from tests.conftest import REAL_DATA

ROOT = Path(__file__).resolve().parents[2]
TOKENIZER = REAL_DATA / "tokenizers" / "qwen3"


@pytest.fixture(scope="session")
def toy_data(tmp_path_factory) -> Path:
    if not TOKENIZER.is_dir():
        pytest.skip("../shared/real_data (the Qwen3 tokenizer) is absent")
    cfg = ToyDataConfig(images=40, videos=4, heldout_images=12, heldout_videos=2)
    return write_toy_dataset(tmp_path_factory.mktemp("toy") / "data", cfg)


def write_stage(path: Path, base: str = "tiny_align", **changes) -> Path:
    """configs/train/<base>.yaml with top-level keys replaced, written to `path` (absolute
    tokenizer and DeepSpeed paths, so the stage runs from any directory)."""
    stage = yaml.safe_load((ROOT / "configs" / "train" / f"{base}.yaml").read_text())
    stage["eval_data"] = ""  # the tiny stages name runs/toy_data, which a test must not read
    stage.update(changes)
    if stage.get("model"):
        stage["model"]["tokenizer"] = str(TOKENIZER)
    stage["deepspeed"] = str(ROOT / stage["deepspeed"])
    path.write_text(yaml.safe_dump(stage))
    return path


def child_env() -> dict[str, str]:
    """The environment minus the process-group variables an in-process run has set."""
    drop = {"RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "LOCAL_WORLD_SIZE"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PYTHONPATH"] = str(ROOT)
    return env
