"""Leaderboard tables and chart: evaluated runs side by side with the paper's columns.

Each run is a folder with lmms-eval's `results.json` (the dict `simple_evaluate` returns) and
the `run.json` that `ovmllm eval` writes (name, tower, video_mode, per-task status, ...).
Rows are the suite's benchmarks, then the video, image and overall means; columns are the
runs, the paper's columns, and per run its difference to the paper column it matches.

A cell is a value, a status ("unavailable" / "failed" from run.json, "needs judge" for a
judge metric that is absent while no judge is configured) or missing. Missing is never zero:
a mean is shown only when every value it averages is present. Means average each row as a
percentage of its full scale (OCRBench's 0-1000 counts as /10), so one row cannot outweigh
the others.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from encoder.files import atomic_file, write_text_atomic
from eval.suite import GROUPS, PaperColumn, Suite, SuiteTask, column_for, metric_value

RESULTS_FILE = "results.json"
RUN_FILE = "run.json"
STATUSES = ("ok", "unavailable", "failed")
NEEDS_JUDGE = "needs judge"
MISSING_MARKDOWN = "—"


class LeaderboardInputError(ValueError):
    """A results folder or file that cannot be read as a run."""


@dataclass(frozen=True)
class Run:
    folder: Path
    name: str
    """Column name (run.json "name")."""
    info: dict
    """run.json as written by `ovmllm eval`."""
    results: dict
    """lmms-eval's results JSON."""
    column: PaperColumn | None
    """The paper column this run is compared with."""


@dataclass(frozen=True)
class Cell:
    value: float | None = None
    status: str | None = None
    """Why there is no value: unavailable | failed | needs judge (None: just missing)."""


@dataclass(frozen=True)
class Row:
    label: str
    key: str
    """The task name, or mean:<group> / mean:overall."""
    cells: tuple[Cell, ...]
    decimals: int
    full_scale: float = 100.0


@dataclass(frozen=True)
class Table:
    suite: str
    headers: tuple[str, ...]
    kinds: tuple[str, ...]
    """Per column: run | paper | delta."""
    rows: tuple[Row, ...]
    notes: tuple[str, ...]


# -- reading runs ----------------------------------------------------------------------------


def read_runs(
    folders: Sequence[str | Path], suite: Suite, match: Mapping[str, str] | None = None
) -> list[Run]:
    """Read each results folder; `match` maps a run name to a paper column id, overriding the
    automatic tower/video_mode match (e.g. a run to compare with ov_enc_lang_codec)."""
    match = dict(match or {})
    runs = []
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            raise LeaderboardInputError(f"{folder}: not a results folder")
        info = _read_json(folder / RUN_FILE)
        results = _read_json(folder / RESULTS_FILE)
        _check_run_info(info, folder / RUN_FILE)
        if not isinstance(results.get("results"), dict):
            raise LeaderboardInputError(
                f"{folder / RESULTS_FILE}: no 'results' mapping (not an lmms-eval results JSON)"
            )
        name = info["name"]
        if name in match:
            try:
                column = suite.column(match.pop(name))
            except KeyError as exc:
                raise LeaderboardInputError(f"run {name!r}: {exc.args[0]}") from exc
        else:
            column = column_for(info, suite)
        runs.append(Run(folder, name, info, results, column))
    names = [run.name for run in runs]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise LeaderboardInputError(f"several results folders have the run name(s) {duplicates}")
    if match:
        raise LeaderboardInputError(f"no run named {sorted(match)} (runs: {names})")
    return runs


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise LeaderboardInputError(
            f"{path}: missing (a results folder holds {RESULTS_FILE} and {RUN_FILE})"
        )
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LeaderboardInputError(f"{path}: malformed JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise LeaderboardInputError(f"{path}: a JSON object is required")
    return data


def _check_run_info(info: dict, path: Path) -> None:
    if not isinstance(info.get("name"), str) or not info["name"].strip():
        raise LeaderboardInputError(f"{path}: name: a non-empty string is required")
    tasks = info.get("tasks", {})
    if not isinstance(tasks, dict):
        raise LeaderboardInputError(f"{path}: tasks: a mapping task -> {{status, reason}}")
    for task, entry in tasks.items():
        status = entry.get("status") if isinstance(entry, dict) else None
        if status not in STATUSES:
            raise LeaderboardInputError(
                f"{path}: tasks.{task}.status: one of {STATUSES}, got {status!r}"
            )


# -- the table -------------------------------------------------------------------------------


def run_cell(run: Run, task: SuiteTask, environ: Mapping[str, str] | None = None) -> Cell:
    value = metric_value(run.results, task)
    if value is not None:
        return Cell(value)
    status = run.info.get("tasks", {}).get(task.task, {}).get("status")
    if status in ("unavailable", "failed"):
        return Cell(status=status)
    if task.judge is not None and not task.judge.configured(environ):
        return Cell(status=NEEDS_JUDGE)
    return Cell()


def build_table(
    suite: Suite, runs: Sequence[Run], environ: Mapping[str, str] | None = None
) -> Table:
    """Benchmark rows, then the means; columns: runs, paper columns, each matched run's delta."""
    matched = [run for run in runs if run.column is not None]
    headers = (
        *(run.name for run in runs),
        *(f"{column.label} (paper)" for column in suite.columns),
        *(f"Δ {run.name} vs {run.column.label}" for run in matched),
    )
    kinds = ("run",) * len(runs) + ("paper",) * len(suite.columns) + ("delta",) * len(matched)
    rows = []
    for task in suite.tasks:
        runs_cells = [run_cell(run, task, environ) for run in runs]
        paper_cells = [Cell(task.paper.get(column.id)) for column in suite.columns]
        deltas = [
            _difference(runs_cells[runs.index(run)], Cell(task.paper.get(run.column.id)))
            for run in matched
        ]
        decimals = 1 if task.full_scale <= 100 else 0
        cells = (*runs_cells, *paper_cells, *deltas)
        rows.append(Row(task.label, task.task, cells, decimals, task.full_scale))
    groups = [
        (g, [r for r, t in zip(rows, suite.tasks, strict=True) if t.group == g]) for g in GROUPS
    ]
    means = [(f"{g} mean", f"mean:{g}", members) for g, members in groups if members]
    if len(means) > 1:
        means.append(("overall mean", "mean:overall", rows))
    for label, key, members in means:
        cells = tuple(_mean(members, j) for j in range(len(headers)))
        rows.append(Row(label, key, cells, decimals=1))
    return Table(suite.name, headers, kinds, tuple(rows), _notes(suite, runs, rows))


def _difference(run: Cell, paper: Cell) -> Cell:
    if run.value is None or paper.value is None:
        return Cell()
    return Cell(run.value - paper.value)


def _mean(members: Sequence[Row], column: int) -> Cell:
    """Mean of one column over `members` as percent of each row's full scale; missing unless
    every member has a value."""
    values = [row.cells[column].value for row in members]
    if any(value is None for value in values):
        return Cell()
    percents = [value / row.full_scale * 100 for value, row in zip(values, members, strict=True)]
    return Cell(sum(percents) / len(percents))


def _notes(suite: Suite, runs: Sequence[Run], rows: Sequence[Row]) -> tuple[str, ...]:
    notes = []
    for run in runs:
        info = run.info
        compared = run.column.label if run.column else "no paper column matched"
        notes.append(
            f"{run.name}: {run.folder} (model {info.get('model', '?')}, tower "
            f"{info.get('tower', '?')}, video_mode {info.get('video_mode', '?')}; "
            f"compared with: {compared})"
        )
    if any(row.full_scale != 100 for row in rows):
        scaled = ", ".join(
            f"{r.label} /{r.full_scale / 100:g}" for r in rows if r.full_scale != 100
        )
        notes.append(f"Means average percent of each row's full scale ({scaled}).")
    notes.append("Means are left empty unless every value they average is present.")
    judged = [task for task in suite.tasks if task.judge is not None]
    if any(cell.status == NEEDS_JUDGE for row in rows for cell in row.cells):
        for task in judged:
            keys = ", ".join(
                f"{key} ({task.judge.selector_env}={api})"
                for api, key in task.judge.key_env.items()
            )
            notes.append(
                f"{NEEDS_JUDGE}: {task.label} ({task.task}) scores with an API judge; set {keys}"
                + (
                    f", or run {task.judge.static_alternative} (no judge, not the paper's protocol)"
                    if task.judge.static_alternative
                    else ""
                )
                + "."
            )
    return tuple(notes)


# -- rendering -------------------------------------------------------------------------------


def _text(cell: Cell, decimals: int, kind: str, missing: str) -> str:
    if cell.value is not None:
        sign = "+" if kind == "delta" else ""
        return f"{cell.value:{sign}.{decimals}f}"
    return cell.status or missing


def to_markdown(table: Table) -> str:
    lines = [
        f"# Leaderboard: {table.suite}",
        "",
        "| benchmark | " + " | ".join(_escape(h) for h in table.headers) + " |",
        "|---|" + "---:|" * len(table.headers),
    ]
    for row in table.rows:
        label = f"**{row.label}**" if row.key.startswith("mean:") else _escape(row.label)
        texts = [
            _text(cell, row.decimals, kind, MISSING_MARKDOWN)
            for cell, kind in zip(row.cells, table.kinds, strict=True)
        ]
        lines.append(f"| {label} | " + " | ".join(texts) + " |")
    lines += ["", *(f"- {note}" for note in table.notes)]
    return "\n".join(lines) + "\n"


def _escape(text: str) -> str:
    """A run name inside a Markdown table cell."""
    return text.replace("|", "\\|")


def to_csv(table: Table) -> str:
    """Values rounded to 6 decimals, statuses as text, missing cells empty."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["benchmark", "task", *table.headers])
    for row in table.rows:
        texts = [
            str(round(cell.value, 6)) if cell.value is not None else (cell.status or "")
            for cell in row.cells
        ]
        writer.writerow([row.label, row.key, *texts])
    return buffer.getvalue()


def draw_chart(table: Table) -> Any:
    """A grouped bar chart (matplotlib Figure, Agg canvas, no pyplot state): per benchmark one
    bar per run and paper column, as percent of the row's full scale; absent values get no bar."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = [row for row in table.rows if not row.key.startswith("mean:")]
    series = [j for j, kind in enumerate(table.kinds) if kind in ("run", "paper")]
    figure = Figure(figsize=(max(8.0, 0.9 * len(rows)), 5.0), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    width = 0.8 / max(1, len(series))
    for n, j in enumerate(series):
        present = [(i, row) for i, row in enumerate(rows) if row.cells[j].value is not None]
        xs = [i - 0.4 + width * (n + 0.5) for i, _ in present]
        heights = [row.cells[j].value / row.full_scale * 100 for _, row in present]
        axes.bar(xs, heights, width, label=table.headers[j])
    labels = [
        row.label if row.full_scale == 100 else f"{row.label} (/{row.full_scale / 100:g})"
        for row in rows
    ]
    axes.set_xticks(range(len(rows)), labels, rotation=45, ha="right")
    axes.set_ylabel("score (% of full scale)")
    axes.set_title(f"Leaderboard: {table.suite}")
    axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return figure


def write_leaderboard(table: Table, out: str | Path) -> dict[str, Path]:
    """leaderboard.md, leaderboard.csv and leaderboard.png in `out`, each written whole."""
    out = Path(out)
    paths = {
        "markdown": write_text_atomic(out / "leaderboard.md", to_markdown(table)),
        "csv": write_text_atomic(out / "leaderboard.csv", to_csv(table)),
    }
    figure = draw_chart(table)
    with atomic_file(out / "leaderboard.png") as tmp:
        figure.savefig(tmp, format="png", dpi=120)
    paths["png"] = out / "leaderboard.png"
    return paths
