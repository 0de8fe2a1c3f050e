"""The labelled samples of encoder pretraining, read from the concept bank's label folders
(formats in `encoder/concepts/store.py`).

- an `ovmllm concepts assign` folder (labels.json): every row holds its top_k centre ids; the
  head's class count is the centres' k;
- an `ovmllm concepts ocr` folder (ocr.json): a row holds its word ids (at most max_tags, any
  number); rows the OCR step failed on, or with no known word, are not samples; the class count
  is the vocabulary size.

The loss needs label rows of one width per head (`ClusterDiscriminationLoss`): a head's width
is the largest of its sources' (top_k or max_tags), and a shorter row is repeated cyclically
to that width. Knowingly approximate: a label of a short row is drawn more often than once per
`num_draw`, and may be drawn twice in a step (its cross-entropy then counts twice).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from encoder.concepts.store import read_arrow
from train.pretrain.config import HeadConfig, PretrainConfig, SourceConfig

ASSIGN_MANIFEST = "labels.json"
OCR_MANIFEST = "ocr.json"


class LabelsError(ValueError):
    """A labels folder or head that cannot be trained on; the message names it and why."""


@dataclass
class LabelledSource:
    name: str
    head: str
    root: Path
    sample_ids: list[str]
    rows: list[np.ndarray]  # per sample: its label ids (int64), nearest / first-read first
    width: int  # top_k, or max_tags
    num_classes: int  # k of the centres, or the vocabulary size
    skipped: int  # OCR rows with an error or no known word


def read_source(source: SourceConfig) -> LabelledSource:
    folder = Path(source.labels)
    name = source.name or folder.name
    if not folder.is_dir():
        raise LabelsError(f"source {name!r}: labels folder {folder} not found")
    if (folder / ASSIGN_MANIFEST).is_file():
        manifest = json.loads((folder / ASSIGN_MANIFEST).read_text())
        width, num_classes = int(manifest["top_k"]), int(manifest["centres_meta"]["k"])
    elif (folder / OCR_MANIFEST).is_file():
        manifest = json.loads((folder / OCR_MANIFEST).read_text())
        width, num_classes = int(manifest["max_tags"]), int(manifest["vocab_size"])
    else:
        raise LabelsError(f"source {name!r}: {folder} has neither {ASSIGN_MANIFEST} (ovmllm "
                          f"concepts assign) nor {OCR_MANIFEST} (ovmllm concepts ocr)")  # fmt: skip
    shards = sorted(folder.glob("labels-*.arrow"))
    if not shards:
        raise LabelsError(f"source {name!r}: {folder} holds no labels-*.arrow files")
    ids, rows, skipped = [], [], 0
    for shard in shards:
        table = read_arrow(shard)
        errors = table.column("error").to_pylist() if "error" in table.column_names else None
        for i, (sample_id, labels) in enumerate(
            zip(table.column("sample_id").to_pylist(), table.column("labels").to_pylist(),
                strict=True)
        ):  # fmt: skip
            if (errors is not None and errors[i] is not None) or not labels:
                skipped += 1
                continue
            ids.append(sample_id)
            rows.append(np.asarray(labels, dtype=np.int64))
    root = Path(source.root or folder).resolve()
    return LabelledSource(name, source.head, root, ids, rows, width, num_classes, skipped)


def resolve_heads(cfg: PretrainConfig, sources: list[LabelledSource]) -> dict[str, int]:
    """Class count per head (configured, or the labels' own); raises `LabelsError` naming the
    head when it has no class, no sample, a label out of range, or rows too short to draw
    `num_draw` labels from."""
    counts = {}
    for head, head_cfg in cfg.heads.items():
        mine = [s for s in sources if s.head == head]
        num_classes = head_cfg.num_classes or max(s.num_classes for s in mine)
        if num_classes < 1:
            raise LabelsError(f"heads.{head}: no classes (num_classes=0 and its labels name none)")
        if not any(s.sample_ids for s in mine):
            raise LabelsError(f"heads.{head}: its sources {[s.name for s in mine]} hold no "
                              "labelled sample")  # fmt: skip
        for source in mine:
            top = max((int(r.max()) for r in source.rows), default=-1)
            if top >= num_classes:
                raise LabelsError(f"source {source.name!r}: label {top} is not below heads.{head}"
                                  f".num_classes={num_classes}")  # fmt: skip
        width = head_width(sources, head)
        if width < head_cfg.loss.num_draw:
            raise LabelsError(f"heads.{head}: label rows of {width} cannot give "
                              f"loss.num_draw={head_cfg.loss.num_draw} labels")  # fmt: skip
        counts[head] = num_classes
    return counts


def head_width(sources: list[LabelledSource], head: str) -> int:
    return max(s.width for s in sources if s.head == head)


def padded_row(labels: np.ndarray, width: int) -> np.ndarray:
    """A label row brought to `width` by repeating it cyclically (see the module docstring)."""
    return np.resize(labels, width) if len(labels) != width else labels


def describe_heads(heads: dict[str, HeadConfig], counts: dict[str, int]) -> str:
    return ", ".join(f"{h}: {counts[h]} classes, weight {c.loss.weight}" for h, c in heads.items())
