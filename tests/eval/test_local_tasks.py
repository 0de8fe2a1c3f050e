"""The local task folder: every task of eval/tasks/ is written from its sources, the local suite
names exactly those tasks, and docs carry what the scoring hooks read."""

from __future__ import annotations

import json
from pathlib import Path

from eval.local_tasks import task_names, write_local_tasks
from eval.suite import load_suite
from tests.conftest import REAL_DATA


def test_the_local_suite_names_every_local_task():
    assert sorted(task.task for task in load_suite("local").tasks) == task_names()


def test_every_task_is_written_when_its_source_is_there(local_tasks):
    folder = local_tasks[0]
    written = sorted(path.stem for path in folder.glob("*.yaml"))
    expected = task_names() if REAL_DATA.is_dir() else [
        name for name in task_names() if name.startswith("ovmllm_temporal_")
    ]  # fmt: skip
    assert written == expected
    for name in written:
        yaml = (folder / f"{name}.yaml").read_text()
        data = yaml.split("data_files: {test: ")[1].split("}")[0]
        docs = [json.loads(line) for line in Path(data).read_text().splitlines()]
        assert docs, name
        for doc in docs:
            assert doc["prompt"]
            if "options" in doc:  # multiple choice: the answer is one of the letters
                assert doc["answer"] in "ABCDEFGH"[: len(doc["options"])], doc


def test_a_missing_source_makes_its_tasks_unavailable_with_the_reason(tmp_path):
    result = write_local_tasks(tmp_path / "tasks", real_data=tmp_path / "nowhere")
    assert not result.available
    assert "raw_video_samples.json" in result.unavailable["ovmllm_demo_video_mc"]
    assert "not given" in result.unavailable["ovmllm_temporal_event"]
    assert (tmp_path / "tasks" / "utils.py").is_file()
