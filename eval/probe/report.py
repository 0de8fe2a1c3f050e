"""The probe's outputs: `probe.csv` (one row per cell), `probe.md` (rows budgets, columns modes
and controls) and `probe.png` (top-1 against budget), each written whole or not at all; with
the paper's reference, its averages over 8 action datasets (PAPER.md section 1) beside ours."""

from __future__ import annotations

import io
from pathlib import Path

from encoder.files import atomic_file, write_text_atomic
from eval.ablate import csv_text

CSV_FIELDS = ("dataset", "encoder", "mode", "control", "budget", "frame_equivalents", "top1",
              "epochs", "best_epoch", "tokens", "tower_patches_per_frame", "train_clips",
              "val_clips", "skipped", "status")  # fmt: skip

# PAPER.md section 1: average top-1 over SSv2, Diving48, Perception Test, Charades-Ego, Epic
# verb/noun, K400 and HMDB51, by budget in patches of 64 x 256; the controls at 4096.
PAPER_PROBE = {
    "paper: SigLIP2 frames": {512: 43.4, 1024: 50.8, 2048: 53.1, 4096: 55.7},
    "paper: OV-Encoder codec": {512: 50.1, 1024: 56.2, 2048: 60.2, 4096: 61.5},
}
PAPER_CONTROLS = {"paper: codec + nonsalient:0.5": (4096, 55.4),
                  "paper: codec + shuffle": (4096, 48.1)}  # fmt: skip


def series_name(row: dict) -> str:
    return row["mode"] if row["control"] == "none" else f"{row['mode']} + {row['control']}"


def _markdown(rows: list[dict], reference: bool) -> str:
    first = rows[0]
    series = list(dict.fromkeys(series_name(row) for row in rows))
    budgets = sorted({row["budget"] for row in rows})
    cell = {(series_name(row), row["budget"]): row for row in rows}
    columns = series + (list(PAPER_PROBE) if reference else [])
    lines = [f"# Attentive probe: {first['dataset']}, encoder {first['encoder']}", "",
             "Val top-1 (%, best over epochs) by budget (patches; frame-equivalents).", "",
             "| budget | frame-eq. | " + " | ".join(columns) + " |",
             "|---:|---:|" + "---:|" * len(columns)]  # fmt: skip
    for budget in budgets:
        values = []
        for name in series:
            row = cell.get((name, budget))
            if row is None:
                values.append("")
            elif row["top1"] == "":
                values.append(f"— ({row['status']})")
            else:
                values.append(f"{row['top1']:.1f}")
        if reference:
            values += [str(PAPER_PROBE[name].get(budget, "")) for name in PAPER_PROBE]
        frames = next(row["frame_equivalents"] for row in rows if row["budget"] == budget)
        lines.append(f"| {budget} | {frames:g} | " + " | ".join(values) + " |")
    if reference:
        controls = "; ".join(f"{name.removeprefix('paper: ')} at {budget}: {value}"
                             for name, (budget, value) in PAPER_CONTROLS.items())  # fmt: skip
        lines += ["", f"Paper columns: averages over its 8 action datasets; controls {controls}."]
    tokens = {row["mode"]: row["tokens"] for row in rows if row["tokens"] != ""}
    lines += ["", "Features per clip: " + ", ".join(f"{m} {t}" for m, t in tokens.items())
              + f" (tower patches per frame: {first['tower_patches_per_frame']})."]  # fmt: skip
    skipped = max((row["skipped"] or 0) for row in rows)
    if skipped:
        lines.append(f"Skipped (unreadable) videos: up to {skipped} per cell (skipped.json).")
    return "\n".join(lines) + "\n"


def _figure(rows: list[dict], reference: bool):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, ax = plt.subplots(figsize=(6.4, 4.2))
    for name in dict.fromkeys(series_name(row) for row in rows):
        points = sorted((row["budget"], row["top1"]) for row in rows
                        if series_name(row) == name and row["top1"] != "")  # fmt: skip
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", label=name)
    if reference:
        for name, values in PAPER_PROBE.items():
            ax.plot(list(values), list(values.values()), linestyle="--", marker="x", label=name)
        for name, (budget, value) in PAPER_CONTROLS.items():
            ax.plot([budget], [value], linestyle="none", marker="^", label=name)
    paper_budgets = {budget for values in PAPER_PROBE.values() for budget in values}
    budgets = sorted({row["budget"] for row in rows} | (paper_budgets if reference else set()))
    ax.set_xscale("log", base=2)
    ax.set_xticks(budgets, [str(b) for b in budgets])
    ax.set_xticks([], minor=True)
    ax.set_xlabel("budget (patches per clip)")
    ax.set_ylabel("val top-1 (%)")
    ax.set_title(f"attentive probe: {rows[0]['dataset']}, {rows[0]['encoder']}", fontsize=9)
    ax.legend(fontsize=7)
    figure.tight_layout()
    return figure


def write_report(rows: list[dict], out: Path, reference: bool = False) -> dict[str, Path]:
    paths = {
        "csv": write_text_atomic(out / "probe.csv", csv_text(rows, CSV_FIELDS)),
        "markdown": write_text_atomic(out / "probe.md", _markdown(rows, reference)),
    }
    from matplotlib import pyplot as plt

    figure = _figure(rows, reference)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    with atomic_file(out / "probe.png") as tmp:
        tmp.write_bytes(buffer.getvalue())
    paths["png"] = out / "probe.png"
    return paths
