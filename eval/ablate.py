"""Token-budget ablations: one evaluation per (mode, budget, control) cell on one loaded model.

Budgets are frame-equivalents b (or patches K), equal in visual tokens across modes: `codec`
(saliency) and `random` (the random policy) take K = b x patches-per-canvas-frame patches of the
T sampled frames; `frames` takes b dense frames at the side that gives a frame as many tokens as a
canvas frame (canvas / codec patch x tower patch: 576 / 16 x 14 = the paper's 504). Controls
(`shuffle`, `nonsalient:f`) apply to the codec mode. Each finished cell is a run folder under
`cells/` (written whole by `eval/run.py`), so a re-run skips it; a failing cell is reported and
the rest go on. The table is `ablation.csv` / `ablation.md`, the curves `ablation.png`.
"""

from __future__ import annotations

import csv
import io
import json
import math
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from encoder.files import atomic_file, write_text_atomic
from eval.model_args import ANSWER_BY
from ovmllm.config import ConfigError

MODES = ("codec", "frames", "random")
CSV_FIELDS = ("task", "mode", "control", "budget", "visual_tokens", "metric", "value", "n",
              "stderr", "status")  # fmt: skip


@dataclass
class AblationConfig:
    tasks: list[str] = field(default_factory=list)
    """lmms-eval task names; with `suite`, the ones of the suite to run (default: all)."""
    suite: str = ""
    """A suite (`local`, `paper16`, a YAML path) whose tasks to run; `local` also writes its
    task folder (real data and the generated temporal QA)."""
    budgets: list[float] = field(default_factory=lambda: [2.0, 4.0, 8.0, 16.0])
    """Budgets in frame-equivalents (dense frames in `frames` mode)."""
    budget_patches: list[int] = field(default_factory=list)
    """Budgets in patches instead (each a whole number of canvas frames for `frames` mode)."""
    modes: list[str] = field(default_factory=lambda: list(MODES))
    """Which of codec | frames | random."""
    controls: list[str] = field(default_factory=list)
    """Codec-mode controls, each its own cell per budget: `shuffle`, `nonsalient:F`."""
    limit: int | None = None
    """At most this many docs per task."""
    batch_size: int = 1
    """lmms-eval's batch size."""
    answer_by: str = "generation"
    """How each cell's model replies (model_args `answer_by`): `generation`, the greedy reply,
    or `likelihood`, the likeliest of the doc's options (multiple-choice tasks)."""


@dataclass(frozen=True)
class Cell:
    mode: str
    budget: float
    """Frame-equivalents."""
    patches: int
    """The same budget in patches (= visual tokens)."""
    control: str = ""

    @property
    def name(self) -> str:
        control = self.control.replace(":", "") or "none"
        return f"{self.mode}-{self.patches}p-{control}"


@dataclass(frozen=True)
class Geometry:
    """What a budget means for one checkpoint."""

    patches_per_frame: int
    """Codec patches of one canvas frame."""
    frame_side: int
    """The frames-mode side with as many tokens per frame as a canvas frame."""
    full_first: bool
    """The first sampled frame is kept whole before the top-K."""
    codec: bool
    """The tower takes codec patches (grid towers take whole frames only)."""


def geometry(processor) -> Geometry:
    codec = processor.media.codec
    return Geometry(
        patches_per_frame=codec.patches_per_frame,
        frame_side=codec.grid * processor.spec.patch_size,
        full_first=codec.full_frame == "first",
        codec="codec" in processor.spec.kinds,
    )


def plan_cells(cfg: AblationConfig, geo: Geometry) -> list[Cell]:
    """The cells in run order; impossible ones refused with the reason."""
    if cfg.answer_by not in ANSWER_BY:
        raise ConfigError(f"answer_by: {cfg.answer_by!r} is not {' or '.join(ANSWER_BY)}")
    unknown = sorted(set(cfg.modes) - set(MODES))
    if unknown:
        raise ConfigError(f"modes: {', '.join(unknown)} not in {', '.join(MODES)}")
    if not geo.codec and set(cfg.modes) - {"frames"}:
        raise ConfigError("this tower takes whole frames only: modes must be frames")
    if not geo.codec and cfg.controls:
        raise ConfigError("controls select codec patches: a grid tower takes whole frames only")
    if cfg.budget_patches:
        budgets = [(k / geo.patches_per_frame, k) for k in cfg.budget_patches]
    else:
        budgets = [(b, round(b * geo.patches_per_frame)) for b in cfg.budgets]
    if not budgets:
        raise ConfigError("no budgets given")
    cells = []
    for budget, patches in budgets:
        if budget <= 1 and geo.full_first and set(cfg.modes) & {"codec", "random"}:
            raise ConfigError(
                f"budget {budget:g} frame-equivalents with codec.full_frame=first is the first "
                f"frame in every mode: use budgets above 1 (or full_frame=none)"
            )
        if "frames" in cfg.modes and (budget != int(budget) or budget < 1):
            raise ConfigError(
                f"budget {patches} patches is {budget:g} frames: frames mode needs a whole number"
            )
        for mode in cfg.modes:
            cells.append(Cell(mode, budget, patches))
            if mode == "codec":
                cells.extend(Cell(mode, budget, patches, control) for control in cfg.controls)
    return cells


def cell_model_args(cell: Cell, geo: Geometry) -> dict[str, str]:
    if cell.mode == "frames":
        return {"video_mode": "frames", "frames": str(int(cell.budget)),
                "frame_size": str(geo.frame_side)}  # fmt: skip
    return {
        "video_mode": "codec",
        "policy": "random" if cell.mode == "random" else "saliency",
        "budget": str(cell.patches),
        "controls": cell.control or "none",
    }


def run_ablation(
    model: str,
    cfg: AblationConfig,
    out: str | Path,
    tasks: list[str],
    include_paths: list[str] = (),
    cache_dir: str = "",
    progress=print,
    task_manager=None,
) -> list[dict]:
    """Every cell not yet in `out/cells/`, then the table and curves over all of them; returns
    the table's rows. `task_manager`: lmms-eval's, with `include_paths`, when the caller has one
    already."""
    from lmms_eval.tasks import TaskManager

    from eval.lmms_model import OVMLLMEval
    from eval.run import EvalRequest, run_eval

    out = Path(out)
    lm = OVMLLMEval(pretrained=model, batch_size=cfg.batch_size)
    geo = geometry(lm.processor)
    cells = plan_cells(cfg, geo)
    if task_manager is None:
        task_manager = TaskManager(verbosity="ERROR", include_path=list(include_paths) or None)
    failed: dict[str, str] = {}
    for number, cell in enumerate(cells, start=1):
        folder = cell_folder(out, cell, cfg.answer_by)
        if (folder / "run.json").is_file():
            progress(f"[{number}/{len(cells)}] {cell.name}: done before, kept")
            continue
        progress(f"[{number}/{len(cells)}] {cell.name}")
        model_args = cell_model_args(cell, geo) | {"answer_by": cfg.answer_by}
        if cache_dir:
            model_args["cache_dir"] = cache_dir
        request = EvalRequest(
            model=model, tasks=tasks, suite="ablation", out=str(folder), model_args=model_args,
            limit=cfg.limit, batch_size=cfg.batch_size, name=cell.name,
        )  # fmt: skip
        try:
            run_eval(request, task_manager=task_manager, progress=lambda _: None, lm=lm)
        except Exception as exc:  # one failing cell must not stop the others
            traceback.print_exc()
            failed[cell.name] = f"{type(exc).__name__}: {exc}"
    rows = collect_rows(cells, out, tasks, failed, cfg.answer_by)
    write_outputs(rows, out)
    return rows


def _metric_of(task: str, results: dict, known: dict) -> tuple[str, float | None, float | None]:
    """(metric name, value in the suite's unit, its stderr) of a task in a results JSON: the
    suite's metric and scale for a task in `known` (task -> SuiteTask), else the first metric."""
    from eval.suite import metric_value

    entry = known.get(task)
    if entry is not None:
        value = results.get("results", {}).get(task, {})
        stderr = value.get(f"{entry.metric}_stderr,{entry.filter}")
        scaled = stderr * entry.scale if isinstance(stderr, int | float) else None
        return entry.metric, metric_value(results, entry), scaled
    for key, value in results.get("results", {}).get(task, {}).items():
        metric, _, _ = key.partition(",")
        if "," in key and "_stderr" not in metric and isinstance(value, int | float):
            stderr = results["results"][task].get(key.replace(",", "_stderr,", 1))
            return metric, float(value), stderr if isinstance(stderr, int | float) else None
    return "", None, None


def cell_folder(out: Path, cell: Cell, answer_by: str = "generation") -> Path:
    """A cell's run folder; replies by likelihood get their own, so a re-run of the same folder
    with the other `answer_by` does not take the first one's results as its own."""
    return out / "cells" / (cell.name if answer_by == "generation" else f"{cell.name}-{answer_by}")


def collect_rows(
    cells: list[Cell], out: Path, tasks: list[str], failed: dict, answer_by: str = "generation"
) -> list[dict]:
    from eval.suite import load_suite

    known = {entry.task: entry for name in ("local", "paper16") for entry in load_suite(name).tasks}
    rows = []
    for cell in cells:
        folder = cell_folder(out, cell, answer_by)
        record = results = None
        if (folder / "run.json").is_file():
            record = json.loads((folder / "run.json").read_text())
            results = json.loads((folder / "results.json").read_text())
        for task in tasks:
            row = {"task": task, "mode": cell.mode, "control": cell.control or "none",
                   "budget": cell.budget, "visual_tokens": "", "metric": "", "value": "",
                   "n": "", "stderr": "", "status": ""}  # fmt: skip
            if record is None:
                row["status"] = "failed: " + failed.get(cell.name, "no result")
                rows.append(row)
                continue
            state = record["tasks"].get(task, {"status": "absent", "reason": "not run"})
            tokens = record.get("video_tokens", {})
            row["visual_tokens"] = tokens.get("mean", "")
            metric, value, stderr = _metric_of(task, results, known)
            n = results.get("n-samples", {}).get(task, {}).get("effective", "")
            row |= {"metric": metric, "value": "" if value is None else value, "n": n,
                    "stderr": "" if stderr is None else stderr}  # fmt: skip
            row["status"] = state["status"] if state["status"] == "ok" else (
                f"{state['status']}: {state.get('reason', '')}"
            )  # fmt: skip
            rows.append(row)
    return rows


def csv_text(rows: list[dict], fields: tuple[str, ...] | list[str] = CSV_FIELDS) -> str:
    """Rows as CSV text with a header (the ablation's columns unless `fields` says others)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _markdown(rows: list[dict]) -> str:
    lines = ["# Token-budget ablation", ""]
    for task in dict.fromkeys(row["task"] for row in rows):
        mine = [row for row in rows if row["task"] == task]
        lines += [f"## {task} ({mine[0]['metric'] or 'metric'})", "",
                  "| mode | control | budget (frames) | visual tokens | value | ± stderr | n |",
                  "|---|---|---:|---:|---:|---:|---:|"]  # fmt: skip
        for row in mine:
            value = "—" if row["value"] == "" else f"{row['value']:.1f}"
            stderr = "" if row["stderr"] == "" else f"{row['stderr']:.1f}"
            tokens = "" if row["visual_tokens"] == "" else f"{row['visual_tokens']:.0f}"
            note = "" if row["status"] == "ok" else f" ({row['status']})"
            lines.append(
                f"| {row['mode']} | {row['control']} | {row['budget']:g} | {tokens} | "
                f"{value}{note} | {stderr} | {row['n']} |"
            )
        lines.append("")
    return "\n".join(lines)


def _figure(rows: list[dict]):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    tasks = list(dict.fromkeys(row["task"] for row in rows))
    columns = min(3, len(tasks))
    lines_of_plots = math.ceil(len(tasks) / columns)
    figure, axes = plt.subplots(
        lines_of_plots, columns, figsize=(5 * columns, 3.6 * lines_of_plots), squeeze=False
    )
    for ax, task in zip(axes.flat, tasks, strict=False):
        mine = [row for row in rows if row["task"] == task and row["value"] != ""]
        for series in dict.fromkeys((row["mode"], row["control"]) for row in mine):
            points = sorted(
                (row["visual_tokens"] or row["budget"], row["value"], row["stderr"] or 0.0)
                for row in mine
                if (row["mode"], row["control"]) == series
            )
            x, y, err = zip(*points, strict=True)
            label = series[0] if series[1] == "none" else f"{series[0]} + {series[1]}"
            ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=label)
        ax.set_xscale("log")
        ticks = sorted({row["visual_tokens"] or row["budget"] for row in mine})
        ax.set_xticks(ticks, [f"{tick:.0f}" for tick in ticks], minor=False)
        ax.set_xticks([], minor=True)
        ax.set_title(task, fontsize=9)
        ax.set_xlabel("visual tokens per video")
        ax.set_ylabel(mine[0]["metric"] if mine else "")
        if mine:
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(tasks) :]:
        ax.set_visible(False)
    figure.tight_layout()
    return figure


def write_outputs(rows: list[dict], out: Path) -> dict[str, Path]:
    paths = {
        "csv": write_text_atomic(out / "ablation.csv", csv_text(rows)),
        "markdown": write_text_atomic(out / "ablation.md", _markdown(rows)),
    }
    figure = _figure(rows)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    with atomic_file(out / "ablation.png") as tmp:
        tmp.write_bytes(buffer.getvalue())
    paths["png"] = out / "ablation.png"
    return paths
