"""Fixtures for the evaluation tests, built once per session: the local task folder (real data
plus a tiny generated temporal QA set, and one task whose second video is missing), lmms-eval's
task index over its own tasks and that folder, and a tiny random checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import QWEN3, REAL_DATA

REPO = Path(__file__).resolve().parents[2]
# 200-400 frames is the design; the tests only need every family present and decodable
TINY_TEMPORAL = {"train_per_family": 1, "test_per_family": 2, "min_frames": 64,
                 "max_frames": 96, "width": 96, "height": 64}  # fmt: skip


@pytest.fixture(scope="session")
def temporal_dataset(tmp_path_factory) -> Path:
    from ovmllm.data.temporal import TemporalConfig, write_temporal_dataset

    out = tmp_path_factory.mktemp("temporal") / "data"
    return write_temporal_dataset(out, TemporalConfig(**TINY_TEMPORAL))


@pytest.fixture(scope="session")
def local_tasks(tmp_path_factory, temporal_dataset) -> tuple[Path, Path]:
    """(the local task folder, a folder with `ovmllm_broken_video_mc`: two temporal docs, the
    second one's video missing)."""
    from eval.local_tasks import write_local_tasks

    real_data = REAL_DATA if REAL_DATA.is_dir() else None
    root = tmp_path_factory.mktemp("eval_tasks")
    folder = write_local_tasks(root / "local", real_data, temporal_dataset).folder
    broken = root / "broken"
    broken.mkdir()
    docs = [json.loads(line) for line in (folder / "temporal_event.jsonl").open()][:2]
    docs[1]["video"] = str(broken / "missing.mp4")
    (broken / "docs.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    yaml = (folder / "ovmllm_temporal_event.yaml").read_text()
    yaml = yaml.replace("task: ovmllm_temporal_event", "task: ovmllm_broken_video_mc")
    yaml = yaml.replace(str(folder / "temporal_event.jsonl"), str(broken / "docs.jsonl"))
    (broken / "ovmllm_broken_video_mc.yaml").write_text(yaml)
    (broken / "utils.py").write_text((folder / "utils.py").read_text())
    return folder, broken


@pytest.fixture(scope="session")
def lmms_task_manager(local_tasks):
    """lmms-eval's TaskManager over its installed tasks and the local ones (it reads ~2,000 task
    YAMLs, 11-17 s, and downloads nothing); every eval test shares this one."""
    tasks = pytest.importorskip("lmms_eval.tasks", reason="lmms-eval is not installed")
    return tasks.TaskManager(verbosity="ERROR", include_path=[str(p) for p in local_tasks])


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """configs/model/tiny.yaml with random weights (seeded), saved as a checkpoint folder."""
    if not QWEN3.is_dir():
        pytest.skip("../shared/real_data is absent")
    import torch

    from ovmllm.build import ModelConfig, build_model
    from ovmllm.config import load_config

    torch.manual_seed(0)
    cfg = load_config(ModelConfig, REPO / "configs/model/tiny.yaml", [f"tokenizer={QWEN3}"])
    folder = tmp_path_factory.mktemp("checkpoint") / "tiny"
    build_model(cfg).save_pretrained(folder)
    return folder
