"""`ovmllm quickstart --fast` end to end, from a folder with no ../shared beside it (a user's
fresh machine): every phase runs, the report holds every cell of the table and every plot."""

from __future__ import annotations

import json
from pathlib import Path

from eval.scoring import chosen_letter
from ovmllm.cli import main
from ovmllm.quickstart import training_rows, wilson


def test_the_default_config_is_the_dataclass_defaults():
    """`ovmllm config quickstart` documents what `make quickstart` runs: configs/quickstart.yaml
    changes none of QuickstartConfig's defaults."""
    from ovmllm.config import load_config
    from ovmllm.quickstart import QuickstartConfig

    assert load_config(QuickstartConfig, "configs/quickstart.yaml", []) == QuickstartConfig()


def test_wilson_interval_matches_known_values():
    low, high = wilson(8, 10)  # a textbook case: 0.8 of 10 -> [0.490, 0.943]
    assert abs(low - 0.490) < 1e-3 and abs(high - 0.943) < 1e-3
    assert wilson(0, 0) == (0.0, 1.0)


def test_quickstart_fast_runs_every_phase(tmp_path, capsys, monkeypatch):
    workdir = tmp_path / "fresh" / "somewhere"
    workdir.mkdir(parents=True)
    monkeypatch.chdir(workdir)
    assert not Path("../shared").exists()
    out = tmp_path / "qs"
    assert main(["quickstart", "--fast", "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert list(report["tables"]) == ["likelihood", "generation"]
    for table in report["tables"].values():
        header, lines = table["header"], table["lines"]
        modes = [column.split(" @")[0] for column in header[2:]]
        assert sorted(set(modes)) == ["codec", "frames", "random"] and len(modes) == 6
        families = [line[0] for line in lines]
        expected = ["event", "which_moved", "direction", "entries", "static_control"]
        assert families == [*expected, "4 temporal families"]
        for line in lines:  # every cell measured: "NN% [lo, hi]"
            assert all("%" in cell and "[" in cell for cell in line[2:]), line
    assert set(report["plots"]) == {
        "loss", "accuracy_vs_tokens_likelihood", "accuracy_vs_tokens_generation", "selection"
    }  # fmt: skip
    for plot in report["plots"].values():
        assert Path(plot).read_bytes()[:4] == b"\x89PNG", plot
    # each way of replying ran every cell with its own model_args
    record = json.loads((out / "eval/likelihood/codec/cells/codec-200p-none-likelihood/run.json")
                        .read_text())  # fmt: skip
    assert record["model_args"]["answer_by"] == "likelihood"
    assert set(report["phases"]) == {
        "data", "selections", "train codec model", "train frames twin", "evaluate", "report"
    }  # fmt: skip
    for model in ("codec_model", "frames_model"):
        assert report[model]["instruct"]["steps"] == 4
    printed = capsys.readouterr().out
    assert "4 temporal families" in printed and "time per phase" in printed
    assert "replies by likelihood" in printed and "replies by generation" in printed

    for style in ("letter", "option"):
        rows = training_rows(out / "data" / "temporal", permutations=3, seed=0, answers=style)
        questions = [row for row in rows if "-qa" in row["id"]]
        assert len(questions) == 3 * 2 * 5  # three orders of 2 train questions of 5 families
        event = [row for row in questions if "-event-0-" in row["id"]]
        said = [row["conversations"][1]["value"] for row in event]
        # the same answer text, under whichever letter it moved to ("B. red" or "red")
        assert len({answer.split(". ", 1)[-1] for answer in said}) == 1
        for row, answer in zip(event, said, strict=True):
            options = row["conversations"][0]["value"].splitlines()[2:6]  # after <video>, question
            chosen = chosen_letter(answer, [option[3:] for option in options])
            assert f"{chosen}. {answer.split('. ', 1)[-1]}" in options
    without = training_rows(out / "data" / "temporal", permutations=1, seed=0, captions=False)
    assert len(without) == 2 * 5 and all("-qa" in row["id"] for row in without)
