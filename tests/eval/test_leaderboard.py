"""`ovmllm leaderboard` from results folders written in lmms-eval's own results format: values,
statuses, missing cells, means left missing, deltas to the matched paper column, the chart."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from eval.leaderboard import (
    LeaderboardInputError,
    build_table,
    draw_chart,
    read_runs,
    to_csv,
    to_markdown,
)
from eval.suite import load_suite
from ovmllm.cli import main

NO_JUDGE: dict[str, str] = {}


@pytest.fixture(scope="module")
def paper16():
    return load_suite("paper16")


def lmms_results(values: dict[str, float], suite) -> dict:
    """A results JSON as lmms-eval 0.7.3's evaluator returns it (evaluator.py, results_dict):
    per task "<metric>,<filter>" plus its stderr; the mvbench group entry holds no score and
    its subtasks carry indented aliases (evaluator_utils.prepare_print_tasks)."""
    per_task, subtasks = {}, {}
    for name, value in values.items():
        task = suite.task(name)
        stderr = f"{task.metric}_stderr,{task.filter}"
        if task.subtasks:
            per_task[name] = {" ": " ", "alias": name}
            for sub in task.subtasks:
                per_task[sub] = {"alias": f" - {sub}", task.metric_key: value, stderr: "N/A"}
            subtasks[name] = list(task.subtasks)
        else:
            per_task[name] = {"alias": name, task.metric_key: value, stderr: 0.01}
            subtasks[name] = []
    return {
        "results": per_task,
        "group_subtasks": subtasks,
        "configs": {},
        "versions": {},
        "n-shot": {name: 0 for name in per_task},
        "higher_is_better": {},
        "n-samples": {},
        "config": {"model": "ovmllm", "limit": None},
    }


def write_run(folder: Path, name: str, tower: str, video_mode: str, values, statuses, suite):
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps(lmms_results(values, suite)))
    tasks = {t.task: {"status": "ok", "reason": ""} for t in suite.tasks}
    tasks |= {task: {"status": status, "reason": "test"} for task, status in statuses.items()}
    info = {
        "name": name,
        "model": f"runs/{name}",
        "suite": suite.name,
        "tower": tower,
        "video_mode": video_mode,
        "policy": "codec",
        "budget_frames": 8,
        "tasks": tasks,
    }
    (folder / "run.json").write_text(json.dumps(info))
    return folder


VIDEO = {  # lmms-eval's own units: mvbench/mlvu/videomme in percent, the others 0-1
    "mvbench": 50.0,
    "mlvu_dev": 45.0,
    "nextqa_mc_test": 0.74,
    "videomme": 52.0,
    "perceptiontest_val_mc": 0.6,
    "tomato": 0.22,
    "longvideobench_val_v": 0.5,
}


@pytest.fixture
def two_runs(tmp_path, paper16):
    image = {"ai2d": 0.7, "chartqa": 0.75, "ocrbench": 0.612, "mmstar": 0.5, "realworldqa": 0.6}
    codec = write_run(
        tmp_path / "codec",
        "ours codec",
        "onevision",
        "codec",
        VIDEO | image,
        {"ocrbench_v2": "unavailable", "docvqa_val": "failed"},
        paper16,
    )
    partial = {"mvbench": 47.0, "ai2d": 0.78}
    frames = write_run(
        tmp_path / "sig", "siglip2 8f", "siglip2", "frames", partial, {"tomato": "failed"}, paper16
    )
    return [codec, frames]


def _csv_rows(table) -> dict[str, dict[str, str]]:
    return {row["task"]: row for row in csv.DictReader(io.StringIO(to_csv(table)))}


def test_cells_statuses_means_and_deltas(two_runs, paper16):
    runs = read_runs(two_runs, paper16)
    assert [run.column.id for run in runs] == ["ov_enc_codec", "siglip2_frames"]
    table = build_table(paper16, runs, environ=NO_JUDGE)
    assert table.headers[:2] == ("ours codec", "siglip2 8f")
    assert table.headers[2] == "OV-Enc-Lang codec (paper)"
    assert table.headers[-2:] == ("Δ ours codec vs OV-Enc codec", "Δ siglip2 8f vs SigLIP2 frames")
    rows = _csv_rows(table)
    codec, sig = "ours codec", "siglip2 8f"
    assert float(rows["ocrbench"][codec]) == pytest.approx(612.0)
    assert float(rows["ocrbench"]["Δ ours codec vs OV-Enc codec"]) == pytest.approx(7.0)
    assert float(rows["nextqa_mc_test"][codec]) == pytest.approx(74.0)
    assert rows["ocrbench_v2"][codec] == "unavailable"
    assert rows["docvqa_val"][codec] == "failed"
    assert rows["tomato"][sig] == "failed"
    assert rows["mmbench_en_dev"][codec] == "needs judge"  # absent, no judge in the environment
    assert rows["mlvu_dev"][sig] == ""  # simply missing
    assert rows["mlvu_dev"]["Δ siglip2 8f vs SigLIP2 frames"] == ""

    # video mean: every video value is there for the codec run, as percent
    expected = (50.0 + 45.0 + 74.0 + 52.0 + 60.0 + 22.0 + 50.0) / 7
    assert float(rows["mean:video"][codec]) == pytest.approx(expected)
    paper_video = sum(paper16.task(n).paper["ov_enc_codec"] for n in VIDEO) / 7
    assert float(rows["mean:video"]["OV-Enc codec (paper)"]) == pytest.approx(paper_video)
    assert float(rows["mean:video"]["Δ ours codec vs OV-Enc codec"]) == pytest.approx(
        expected - paper_video
    )
    # image/overall means need values the runs lack: missing, never a partial mean or zero
    for key in ("mean:image", "mean:overall"):
        assert rows[key][codec] == rows[key][sig] == ""
    assert rows["mean:video"][sig] == ""
    # the paper columns are complete, OCRBench counted as percent (/10)
    paper_image = [paper16.task(t.task).paper["qwen3_vit_frames"] for t in paper16.tasks[7:]]
    paper_image = [v / 10 if v > 100 else v for v in paper_image]
    assert float(rows["mean:image"]["Qwen3-ViT frames (paper)"]) == pytest.approx(
        sum(paper_image) / 9
    )

    markdown = to_markdown(table)
    mvbench_line = next(line for line in markdown.splitlines() if line.startswith("| MVBench |"))
    assert mvbench_line.split(" | ")[1:3] == ["50.0", "47.0"]
    image_mean = next(line for line in markdown.splitlines() if "**image mean**" in line)
    assert image_mean.split(" | ")[1:3] == ["—", "—"]
    assert "| OCRBench | 612 |" in markdown
    assert "+7" in markdown and "needs judge: MMBench-EN" in markdown
    assert "OPENAI_API_KEY (API_TYPE=openai)" in markdown


def test_a_configured_judge_leaves_the_absent_mmbench_cell_plainly_missing(two_runs, paper16):
    table = build_table(paper16, read_runs(two_runs, paper16), environ={"OPENAI_API_KEY": "k"})
    assert _csv_rows(table)["mmbench_en_dev"]["ours codec"] == ""
    assert "needs judge" not in to_markdown(table)


def test_the_chart_leaves_missing_bars_out(two_runs, paper16):
    table = build_table(paper16, read_runs(two_runs, paper16), environ=NO_JUDGE)
    axes = draw_chart(table).axes[0]
    heights = {c.get_label(): [bar.get_height() for bar in c] for c in axes.containers}
    assert len(heights["ours codec"]) == 12  # 16 rows - unavailable/failed/needs judge/infovqa
    assert len(heights["siglip2 8f"]) == 2
    assert heights["siglip2 8f"] == pytest.approx([47.0, 78.0])
    assert all(len(heights[f"{c.label} (paper)"]) == 16 for c in paper16.columns)
    assert max(heights["OV-Enc codec (paper)"]) < 100  # OCRBench drawn as percent


def test_the_command_writes_markdown_csv_and_png(two_runs, tmp_path, capsys):
    out = tmp_path / "board"
    code = main(
        [
            "leaderboard",
            *map(str, two_runs),
            "--out",
            str(out),
            "--column",
            "ours codec=ov_enc_lang_codec",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "Δ ours codec vs OV-Enc-Lang codec" in printed
    assert (out / "leaderboard.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "leaderboard.md").read_text().startswith("# Leaderboard: paper16")
    assert "mean:overall" in (out / "leaderboard.csv").read_text()
    assert sorted(p.name for p in out.iterdir()) == [
        "leaderboard.csv",
        "leaderboard.md",
        "leaderboard.png",
    ]


def test_the_local_suite_has_no_paper_columns(tmp_path):
    local = load_suite("local")
    values = {t.task: 0.5 for t in local.tasks if t.group == "video"}
    folder = write_run(tmp_path / "r", "tiny", "onevision", "codec", values, {}, local)
    table = build_table(local, read_runs([folder], local))
    assert table.headers == ("tiny",) and table.kinds == ("run",)
    rows = _csv_rows(table)
    assert float(rows["mean:video"]["tiny"]) == pytest.approx(50.0)
    assert rows["mean:image"]["tiny"] == rows["mean:overall"]["tiny"] == ""


def test_bad_results_folders_are_named(two_runs, tmp_path, paper16, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["leaderboard", str(empty), "--out", str(tmp_path / "o")]) == 1
    assert f"{empty / 'run.json'}: missing" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()

    broken = two_runs[0] / "results.json"
    broken.write_text('{"results": {')
    with pytest.raises(LeaderboardInputError, match=f"{broken}: malformed JSON"):
        read_runs(two_runs, paper16)
    broken.write_text('{"version": 1}')
    with pytest.raises(LeaderboardInputError, match="no 'results' mapping"):
        read_runs(two_runs, paper16)

    run_json = two_runs[1] / "run.json"
    info = json.loads(run_json.read_text())
    run_json.write_text(json.dumps(info | {"tasks": {"ai2d": {"status": "skipped"}}}))
    with pytest.raises(LeaderboardInputError, match=r"run.json: tasks.ai2d.status"):
        read_runs(two_runs[1:], paper16)
    run_json.write_text(json.dumps(info))
    with pytest.raises(LeaderboardInputError, match="run name"):
        read_runs([two_runs[1], two_runs[1]], paper16)
    with pytest.raises(LeaderboardInputError, match="no paper column 'nope'"):
        read_runs(two_runs[1:], paper16, {"siglip2 8f": "nope"})
    with pytest.raises(LeaderboardInputError, match="no run named"):
        read_runs(two_runs[1:], paper16, {"other": "ov_enc_codec"})
    assert main(["leaderboard", str(tmp_path / "absent")]) == 1
    assert "not a results folder" in capsys.readouterr().err
