"""The attentive probe, top to bottom: read the lists and their labels → load the frozen encoder
→ plan the cells (mode, budget, control) → per cell, extract the features of every listed video
into its store (or find them there) → train a fresh head on them, keep the best val top-1 →
the table, CSV and figure over all cells.

Each cell's training history is kept in `cells/<cell>.json`; videos that could not be read are
in `skipped.json` (cell → video → reason); the resolved config is `config.yaml`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from encoder.files import write_text_atomic
from eval.ablate import Cell
from eval.probe.cells import cell_producer, frame_side, plan_probe_cells
from eval.probe.config import ProbeConfig
from eval.probe.encoder import FrozenEncoder, load_encoder
from eval.probe.features import FeatureStore, extract, store_folder
from eval.probe.lists import Sample, encode_labels, label_ids, read_list
from eval.probe.report import CSV_FIELDS, write_report
from eval.probe.train import HeadResult, train_head
from ovmllm.config import write_config


@dataclass
class ProbeData:
    """The lists read, their class ids, and every listed video once (key → file)."""

    train: list[Sample]
    val: list[Sample]
    ids: dict[str, int]
    train_labels: np.ndarray
    val_labels: np.ndarray
    videos: dict[str, Path]


def read_data(cfg: ProbeConfig) -> ProbeData:
    """Both lists and their labels; a bad line or an unknown label fails here, before anything
    is loaded."""
    lists = cfg.lists
    read = {"root": cfg.root or None, "fmt": lists.format, "video_ext": lists.video_ext,
            "path_column": lists.path_column, "label_column": lists.label_column}  # fmt: skip
    train, val = read_list(cfg.train, **read), read_list(cfg.val, **read)
    ids = label_ids(train, cfg.labels or None)
    videos = {sample.video: sample.path for sample in sorted(train + val, key=lambda s: s.video)}
    return ProbeData(train, val, ids, encode_labels(train, ids, cfg.train),
                     encode_labels(val, ids, cfg.val), videos)  # fmt: skip


def open_store(cfg: ProbeConfig, out: Path, encoder: FrozenEncoder, cell: Cell,
               settings: dict) -> FeatureStore:  # fmt: skip
    if not cfg.extract.cache:
        return FeatureStore(cfg.extract.dtype)
    root = Path(cfg.extract.cache_dir or out / "features")
    folder = store_folder(root, encoder.key, cell.name, settings, cfg.extract.dtype)
    return FeatureStore.open(folder, cfg.extract.dtype)


def _split(row_of: dict[str, int], samples: list[Sample], labels: np.ndarray):
    """(store rows, labels) of the samples that have features."""
    rows = np.array([row_of[sample.video] for sample in samples], np.int64)
    keep = rows >= 0
    return rows[keep], labels[keep]


def run_cell(cfg: ProbeConfig, out: Path, encoder: FrozenEncoder, cell: Cell, data: ProbeData,
             row: dict, bars: bool = True) -> tuple[dict, dict[str, str], str]:  # fmt: skip
    """One cell: features (extracted or cached), then a fresh head. `row` (the cell's CSV row)
    filled in; the videos skipped (video → reason) and a line saying what happened."""
    producer = cell_producer(cell, cfg.codec, encoder.spec)
    store = open_store(cfg, out, encoder, cell, producer.settings())
    done = extract(encoder, producer, list(data.videos.values()), store,
                   cfg.extract.batch_size, cfg.extract.workers, cell.name, bars)  # fmt: skip
    row_of = dict(zip(data.videos, done.rows.tolist(), strict=True))
    skipped = {video: done.failed[str(path)] for video, path in data.videos.items()
               if row_of[video] < 0}  # fmt: skip
    train = _split(row_of, data.train, data.train_labels)
    val = _split(row_of, data.val, data.val_labels)
    row |= {"train_clips": len(train[0]), "val_clips": len(val[0]), "skipped": len(skipped)}
    if store.features is None or not len(train[0]) or not len(val[0]):
        row["status"] = "failed: no features (every video unreadable?)"
        return row, skipped, row["status"]
    result = train_head(store.features, train, val, len(data.ids), cfg.head, encoder.device)
    row |= {"top1": round(result.best_top1, 2), "best_epoch": result.best_epoch,
            "tokens": store.features.shape[1]}  # fmt: skip
    _write_cell(out, cell, row, result)
    said = (f"top-1 {result.best_top1:.1f} (epoch {result.best_epoch}; features: "
            f"{done.extracted} extracted, {done.kept} cached, "
            f"{len(done.failed)} unreadable)")  # fmt: skip
    return row, skipped, said


def run_probe(
    cfg: ProbeConfig, out: str | Path, progress: Callable[[str], None] = print, bars: bool = True
) -> list[dict]:
    """Every cell of `cfg`, then `probe.csv` / `.md` / `.png` in `out`; returns the CSV rows."""
    cfg.check_inputs()
    out = Path(out)
    data = read_data(cfg)
    encoder = load_encoder(cfg.encoder, cfg.extract.device)
    spec = encoder.spec
    cells = plan_probe_cells(cfg.budgets, cfg.modes, cfg.controls, cfg.codec, spec, cfg.encoder)
    dataset = cfg.dataset_name()
    per_frame = (frame_side(cfg.codec, spec) // spec.patch_size) ** 2
    progress(f"probe: {dataset}, {len(data.train)} train / {len(data.val)} val clips, "
             f"{len(data.ids)} classes; encoder {encoder.name} ({spec.name}, frozen, on "
             f"{encoder.device}); {len(cells)} cells")  # fmt: skip
    write_config(cfg, out / "config.yaml")
    rows, skipped = [], {}
    for number, cell in enumerate(cells, start=1):
        row = {"dataset": dataset, "encoder": encoder.name, "mode": cell.mode,
               "control": cell.control or "none", "budget": cell.patches,
               "frame_equivalents": cell.budget, "top1": "", "epochs": cfg.head.epochs,
               "best_epoch": "", "tokens": "", "tower_patches_per_frame": per_frame,
               "status": "ok"}  # fmt: skip
        row, skipped[cell.name], said = run_cell(cfg, out, encoder, cell, data, row, bars)
        progress(f"[{number}/{len(cells)}] {cell.name}: {said}")
        rows.append({key: row.get(key, "") for key in CSV_FIELDS})
    write_text_atomic(out / "skipped.json", json.dumps(skipped, indent=1) + "\n")
    write_report(rows, out, reference=cfg.reference == "paper")
    return rows


def _write_cell(out: Path, cell: Cell, row: dict, result: HeadResult) -> None:
    record = {"row": row, "history": [asdict(epoch) for epoch in result.history]}
    write_text_atomic(out / "cells" / f"{cell.name}.json", json.dumps(record, indent=1) + "\n")
