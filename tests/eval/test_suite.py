"""Suite files against the installed lmms-eval: task names, metric keys, splits and generation
settings as the task YAMLs give them; metric lookup in results JSON; column matching."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from eval.suite import (
    Judge,
    SuiteTask,
    column_for,
    load_suite,
    metric_value,
    missing_env,
    missing_packages,
)
from ovmllm.config import ConfigError

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_UNTIL = ["\n\n"]  # lmms-eval's few-shot delimiter, added when a YAML sets no `until`


def _task_yaml(task_manager, name: str) -> dict:
    """A task's YAML as lmms-eval resolves it (includes merged, !function left unresolved)."""
    from lmms_eval.utils import load_yaml_config

    return load_yaml_config(task_manager.task_index[name]["yaml_path"], mode="simple")


def test_paper16_task_names_resolve_in_the_lmms_eval_registry(lmms_task_manager):
    suite = load_suite("paper16")
    index = lmms_task_manager.task_index
    assert [t.task for t in suite.tasks if t.task not in index] == []
    for task in suite.tasks:
        if task.subtasks:
            assert index[task.task]["type"] == "group"
            group = _task_yaml(lmms_task_manager, task.task)
            assert sorted(group["task"]) == sorted(task.subtasks)
            assert "aggregate_metric_list" not in group  # why the score is a subtask mean
        else:
            assert index[task.task]["type"] == "task", task.task


def test_paper16_metric_keys_splits_and_generation_match_the_task_yamls(lmms_task_manager):
    for task in load_suite("paper16").tasks:
        for name in task.subtasks or (task.task,):
            config = _task_yaml(lmms_task_manager, name)
            # TaskConfig's default output_type is generate_until (longvideobench sets none)
            assert config.get("output_type", "generate_until") == "generate_until", name
            assert task.metric in [m["metric"] for m in config["metric_list"]], name
            filters = [f["name"] for f in config.get("filter_list", [])] or ["none"]
            assert task.filter in filters, name
            assert config["test_split"] == task.split, name
            generation = config.get("generation_kwargs") or {}
            assert generation.get("max_new_tokens") == task.generation.max_new_tokens, name
            assert generation.get("until", DEFAULT_UNTIL) == list(task.generation.until), name
            assert not generation.get("do_sample", False), name  # greedy


def test_paper16_holds_the_papers_table():
    suite = load_suite("paper16")
    assert [c.id for c in suite.columns] == [
        "ov_enc_lang_codec",
        "qwen3_vit_frames",
        "ov_enc_codec",
        "ov_enc_frames",
        "siglip2_frames",
    ]
    video = [t for t in suite.tasks if t.group == "video"]
    assert (len(video), len(suite.tasks)) == (7, 16)
    assert all(set(t.paper) == {c.id for c in suite.columns} for t in suite.tasks)
    # the paper's "+4.1 on video over Qwen3-ViT": mean over the 7 video rows
    gain = sum(t.paper["ov_enc_lang_codec"] - t.paper["qwen3_vit_frames"] for t in video) / 7
    assert round(gain, 1) == 4.1
    assert suite.task("ocrbench").paper["qwen3_vit_frames"] == 706
    assert (suite.task("ocrbench").scale, suite.task("ocrbench").full_scale) == (1000, 1000)
    assert suite.task("ai2d").metric_key == "exact_match,flexible-extract"
    assert suite.task("mmbench_en_dev").judge.static_alternative == "mmbench_en_dev_static"


def test_local_suite_matches_the_local_task_yamls():
    suite = load_suite("local")
    assert suite.columns == ()
    groups = {t.task: t.group for t in suite.tasks}
    assert groups["ovmllm_ocr_pages"] == groups["ovmllm_chartqa_local"] == "image"
    assert sum(group == "video" for group in groups.values()) == 6
    for task in suite.tasks:
        assert task.scale == 100 and task.paper == {}
        config = yaml.safe_load(
            "\n".join(
                line
                for line in (ROOT / "eval" / "tasks" / f"{task.task}.yaml").read_text().splitlines()
                if "!function" not in line
            )
        )
        assert config["task"] == task.task
        assert task.metric in [m["metric"] for m in config["metric_list"]]
        assert config["test_split"] == task.split


def test_a_bad_suite_file_names_the_file_and_the_field(tmp_path):
    good = (ROOT / "configs" / "eval" / "local.yaml").read_text()
    cases = {
        "group": (good.replace("group: image", "group: audio", 1), r"tasks\[6\] \(ovmllm_ocr"),
        "scale": (good.replace("scale: 100", "scale: lots", 1), r"tasks\[0\].*lots"),
        "paper": (good.replace("split: test}", "split: test, paper: {x: 1}}", 1), "paper"),
        "key": (good.replace("split: test}", "split: test, metrc: a}", 1), "metrc"),
        "version": (good.replace("version: 1", "version: 2"), "version"),
        "twice": (good + good[good.index("  - {task: ovmllm_ocr") :], "listed twice"),
    }
    for name, (text, pattern) in cases.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(text)
        with pytest.raises(ConfigError, match=pattern) as info:
            load_suite(path)
        assert str(path) in str(info.value), name
    with pytest.raises(ConfigError, match=r"known suites: .*paper16"):
        load_suite("paper17")
    with pytest.raises(ConfigError, match="not found"):
        load_suite(tmp_path / "absent.yaml")


def _entry(metric_key: str, value) -> dict:
    """One task's entry as lmms-eval's evaluator writes it."""
    metric, filter_name = metric_key.split(",")
    return {"alias": "x", metric_key: value, f"{metric}_stderr,{filter_name}": "N/A"}


def test_metric_value_reads_the_key_and_applies_the_scale():
    suite = load_suite("paper16")
    ocrbench, ai2d, mvbench = (suite.task(n) for n in ("ocrbench", "ai2d", "mvbench"))
    results = {
        "results": {
            "ocrbench": _entry("ocrbench_accuracy,none", 0.657),
            "ai2d": _entry("exact_match,flexible-extract", 0.75),
            "chartqa": _entry("relaxed_overall,none", "N/A"),
            "realworldqa": _entry("exact_match,none", float("nan")),
        }
    }
    assert metric_value(results, ocrbench) == pytest.approx(657.0)
    assert metric_value(results, ai2d) == pytest.approx(75.0)
    assert metric_value(results, suite.task("chartqa")) is None  # not a number
    assert metric_value(results, suite.task("realworldqa")) is None
    assert metric_value(results, suite.task("mmstar")) is None  # not run
    assert metric_value({"results": {"ai2d": _entry("exact_match,none", 0.9)}}, ai2d) is None
    assert metric_value({}, ai2d) is None

    # mvbench: the group entry has no score; the mean of all 20 subtasks is the score
    per_task = {"mvbench": {" ": " ", "alias": "mvbench"}}
    per_task |= {
        n: _entry("mvbench_accuracy,none", 40.0 + i) for i, n in enumerate(mvbench.subtasks)
    }
    assert metric_value({"results": per_task}, mvbench) == pytest.approx(49.5)
    del per_task[mvbench.subtasks[3]]
    assert metric_value({"results": per_task}, mvbench) is None
    with_group = {"results": per_task, "groups": {"mvbench": _entry("mvbench_accuracy,none", 51.0)}}
    assert metric_value(with_group, mvbench) == 51.0


def test_missing_packages_looks_up_without_importing():
    task = SuiteTask(
        task="t",
        label="t",
        group="image",
        metric="m",
        packages=("json", "this", "no_such_module_ovmllm", "no_such_parent_ovmllm.child"),
    )
    assert missing_packages(task) == ["no_such_module_ovmllm", "no_such_parent_ovmllm.child"]
    assert "this" not in sys.modules  # `import this` prints the Zen of Python
    paper16 = load_suite("paper16")
    assert paper16.task("videomme").packages == ("cv2",)
    assert missing_packages(paper16.task("ai2d")) == []
    assert missing_env(paper16.task("nextqa_mc_test"), {}) == ["HF_HOME"]
    assert missing_env(paper16.task("nextqa_mc_test"), {"HF_HOME": "/x"}) == []


def test_column_for_matches_tower_and_video_mode():
    suite = load_suite("paper16")

    def column(tower, video_mode):
        found = column_for({"tower": tower, "video_mode": video_mode}, suite)
        return found.id if found else None

    assert column("onevision", "codec") == "ov_enc_codec"  # never the language-aligned one
    assert column("onevision", "frames") == "ov_enc_frames"
    assert column("siglip2", "frames") == "siglip2_frames"
    assert column("qwen3_vit", "frames") == "qwen3_vit_frames"
    assert column("qwen3_vit", "codec") is None
    assert column_for({"name": "no tower"}, suite) is None
    assert column_for({"tower": "onevision", "video_mode": "codec"}).id == "ov_enc_codec"
    assert column_for({"tower": "onevision", "video_mode": "codec"}, load_suite("local")) is None


def test_the_judge_counts_as_configured_only_with_the_key_of_the_chosen_api():
    judge = Judge(
        selector_env="API_TYPE",
        default="openai",
        key_env={"openai": "OPENAI_API_KEY", "azure": "AZURE_API_KEY"},
    )
    assert not judge.configured({})
    assert judge.configured({"OPENAI_API_KEY": "k"})
    assert not judge.configured({"OPENAI_API_KEY": "k", "API_TYPE": "azure"})
    assert judge.configured({"AZURE_API_KEY": "k", "API_TYPE": "azure"})
    assert not judge.configured({"OPENAI_API_KEY": "k", "API_TYPE": "other"})
