"""Fixtures for the training tests: the process prepared as `ovmllm train` prepares it, the toy
dataset, a fresh tiny model folder, stage YAMLs written from the tiny ones, the environment of
child processes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import yaml

from ovmllm.commands.train import prepare_process
from ovmllm.data.toy import ToyDataConfig, write_toy_dataset
from tests.conftest import REAL_DATA

ROOT = Path(__file__).resolve().parents[2]
TOKENIZER = REAL_DATA / "tokenizers" / "qwen3"


def pytest_configure(config) -> None:
    # the warnings prepare_process mutes, muted in every test too (pytest resets filters per test)
    for name in ("reduce_scatter_tensor", "all_gather_into_tensor"):
        config.addinivalue_line("filterwarnings", f"ignore:.*{name}. is deprecated:FutureWarning")


@pytest.fixture(scope="session", autouse=True)
def training_process() -> None:
    """In-process runs need what `ovmllm train` sets once per process (LOCAL_RANK, DeepSpeed's
    accelerator); child processes inherit it."""
    prepare_process()


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
    return {**os.environ, "PYTHONPATH": str(ROOT)}


@pytest.fixture(scope="session")
def init_folder(toy_data, tmp_path_factory) -> Path:
    """A fresh tiny model saved as an `ovmllm init` folder: the common starting point."""
    from train.config import load_stage
    from train.recipe import load_model

    folder = tmp_path_factory.mktemp("init") / "model"
    cfg = load_stage(write_stage(folder.parent / "s.yaml"))
    torch.manual_seed(0)
    load_model(cfg).save_pretrained(folder)
    return folder


def toy_sources(data: Path) -> dict:
    return {"seed": 0, "sources": [{"name": "toy", "data": str(data)}]}


def learning_stage(tmp_path: Path, init: Path, data_file: Path, zero: int, **changes) -> Path:
    stage = dict(
        init_from=str(init),
        model=None,
        output_dir=str(tmp_path / "run"),
        data=toy_sources(data_file),
        trainability={
            "base_lr": 2e-3,
            "parts": {"connector": {"train": True}, "llm": {"train": True, "lr_scale": 0.5}},
        },
        schedule={"name": "constant", "warmup_steps": 1},
        batch_size=4,
        grad_accum=1,
        max_steps=24,
        save_every=0,
        deepspeed=f"configs/deepspeed/zero{zero}.json",
        processor={"chat": {"system_prompt": "Answer briefly."}},
    )
    stage.update(changes)
    return write_stage(tmp_path / "stage.yaml", **stage)
