"""`ovmllm ablate`: which cells a budget list means (and which it refuses), equal visual tokens
across modes, the table and curves, and a re-run that recomputes only a missing cell."""

from __future__ import annotations

import csv
import shutil

import pytest

from eval.ablate import AblationConfig, Cell, Geometry, cell_folder, cell_model_args, plan_cells
from ovmllm.config import ConfigError

OV = Geometry(patches_per_frame=324, frame_side=252, full_first=True, codec=True)
GRID = Geometry(patches_per_frame=1024, frame_side=512, full_first=True, codec=False)


def test_cells_cover_modes_budgets_and_codec_controls(tmp_path):
    cfg = AblationConfig(budgets=[2, 4], controls=["shuffle", "nonsalient:0.5"])
    cells = plan_cells(cfg, OV)
    assert len(cells) == 2 * (3 + 2)
    assert Cell("codec", 2, 648, "shuffle") in cells
    assert not any(cell.control and cell.mode != "codec" for cell in cells)
    assert cell_model_args(Cell("frames", 2, 648), OV) == {
        "video_mode": "frames", "frames": "2", "frame_size": "252"}  # fmt: skip
    assert cell_model_args(Cell("random", 2, 648), OV)["budget"] == "648"
    # replies by likelihood are other results: a re-run of the folder must not take them as its own
    cell = Cell("codec", 2, 648)
    assert cell_folder(tmp_path, cell) != cell_folder(tmp_path, cell, "likelihood")
    by_patches = plan_cells(AblationConfig(budget_patches=[648], modes=["codec", "frames"]), OV)
    assert [(cell.mode, cell.budget) for cell in by_patches] == [("codec", 2), ("frames", 2)]


@pytest.mark.parametrize(
    "cfg, geo, reason",
    [
        (AblationConfig(budgets=[1]), OV, "first frame in every mode"),
        (AblationConfig(budgets=[2.5]), OV, "whole number"),
        (AblationConfig(budgets=[2], modes=["codec"]), GRID, "whole frames only"),
        (AblationConfig(budgets=[2], modes=["frames"], controls=["shuffle"]), GRID, "grid tower"),
        (AblationConfig(budgets=[2], modes=["codec", "dense"]), OV, "dense"),
        (AblationConfig(budgets=[2], answer_by="loglik"), OV, "answer_by"),
    ],
)
def test_impossible_cells_are_refused_with_the_reason(cfg, geo, reason):
    with pytest.raises(ConfigError, match=reason):
        plan_cells(cfg, geo)


def test_ablation_writes_table_and_curves_and_resumes(
    tiny_checkpoint, local_tasks, lmms_task_manager, tmp_path
):
    from eval.ablate import run_ablation

    cfg = AblationConfig(
        budgets=[2, 3], controls=["shuffle", "nonsalient:0.5"], limit=2, batch_size=2
    )
    task = "ovmllm_temporal_event"
    out = tmp_path / "ablation"

    def ablate():
        messages = []
        run_ablation(str(tiny_checkpoint), cfg, out, [task], cache_dir=str(tmp_path / "cache"),
                     progress=messages.append, task_manager=lmms_task_manager)  # fmt: skip
        return messages

    ablate()
    rows = list(csv.DictReader((out / "ablation.csv").open()))
    assert len(rows) == 2 * 5 and all(row["status"] == "ok" for row in rows), rows
    for budget in (2, 3):  # equal visual tokens across modes and controls
        tokens = {float(row["visual_tokens"]) for row in rows if float(row["budget"]) == budget}
        assert tokens == {budget * 324}
    assert all(row["metric"] == "accuracy" and row["n"] == "2" for row in rows)
    assert "| random | none | 3 | 972 |" in (out / "ablation.md").read_text()
    assert (out / "ablation.png").read_bytes()[:4] == b"\x89PNG"

    kept = (out / "cells" / "codec-648p-none" / "run.json").stat().st_mtime_ns
    shutil.rmtree(out / "cells" / "frames-972p-none")
    messages = ablate()
    assert [m for m in messages if "kept" not in m] == ["[9/10] frames-972p-none"]
    assert (out / "cells" / "codec-648p-none" / "run.json").stat().st_mtime_ns == kept
    assert len(list(csv.DictReader((out / "ablation.csv").open()))) == 10
