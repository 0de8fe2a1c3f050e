"""A generated action-classification set for the attentive probe (`ovmllm probe`), built from
the temporal QA generator (`temporal.py`, `temporal_scenes.py`): the same planned, rendered and
encoded videos, labelled by what their scene truth says happened instead of asked about.

Classes:
- from the `direction` family, the motion path: `left`, `right`, `left_then_back_right`, ...
  (8 classes over both axes). The out-and-back paths end where they started, so only frames
  inside the motion (about one 8-frame interval long) tell them apart from each other: timing
  matters;
- from the `event` family, `flash` / `no_flash`: a shape appears for 1.5-3 sampling intervals
  of 64 frames, or nothing does. The two classes differ only by that brief event.

Layout: the temporal dataset (`videos/`, its QA files, `config.json`) plus `train.txt` and
`val.txt` in the `path label` format of Kinetics/HMDB lists (paths relative to the folder),
`labels.json` (every class name -> its id, as SSv2's labels file: a small split may lack a class)
and `classes.json` (label -> count per split).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from encoder.files import write_text_atomic
from ovmllm.data.temporal import TemporalConfig, write_temporal_dataset
from ovmllm.data.temporal_scenes import PATHS

ACTION_FAMILIES = ("direction", "event")
LIST_FILES = {"train": "train.txt", "test": "val.txt"}  # temporal split -> list file
EVENT_LABELS = ("flash", "no_flash")


@dataclass
class ActionConfig:
    train_per_family: int = 80
    """Training videos per family (direction, event): ~1/8 of them per motion class, 1/2 per
    event class."""
    val_per_family: int = 40
    """Validation videos per family."""
    min_frames: int = 100
    """Fewest frames of a video (at least 64)."""
    max_frames: int = 200
    """Most frames of a video."""
    width: int = 128
    """Video width in pixels (even, at least 64)."""
    height: int = 96
    """Video height in pixels (even, at least 64)."""
    seed: int = 0
    """Seed of every draw."""

    def temporal(self) -> TemporalConfig:
        """The temporal QA settings whose videos this set labels: H.264 only (what action
        benchmarks mostly ship), and as many event videos with a flash as without."""
        return TemporalConfig(
            train_per_family=self.train_per_family,
            test_per_family=self.val_per_family,
            families=list(ACTION_FAMILIES),
            min_frames=self.min_frames,
            max_frames=self.max_frames,
            width=self.width,
            height=self.height,
            mpeg4_share=0.0,
            hevc_share=0.0,
            no_event_share=0.5,
            seed=self.seed,
        )


def _path_label(path: str) -> str:
    return path.replace(", then back ", "_then_back_")


def action_labels() -> list[str]:
    """Every class name, in id order: the motion paths of both axes, then the event pair."""
    return [_path_label(path) for paths in PATHS.values() for path in paths] + list(EVENT_LABELS)


def action_label(doc: dict) -> str:
    """The class of one temporal doc from its truth (not from its answer letter)."""
    truth = doc["truth"]
    if doc["family"] == "direction":
        return _path_label(truth["path"])
    if doc["family"] == "event":
        return EVENT_LABELS[0] if truth["event"] else EVENT_LABELS[1]
    raise ValueError(f"{doc['id']}: family {doc['family']!r} has no action label")


def write_action_dataset(
    out: str | Path,
    cfg: ActionConfig | None = None,
    *,
    overwrite: bool = False,
    workers: int = 1,
) -> Path:
    """Write (or keep, when written with the same settings) the videos, then the two lists,
    `labels.json` and `classes.json`, each whole or not at all. Same signature as
    `write_temporal_dataset`."""
    cfg = cfg or ActionConfig()
    out = write_temporal_dataset(out, cfg.temporal(), overwrite=overwrite, workers=workers)
    classes: dict[str, dict[str, int]] = {}
    for split, list_file in LIST_FILES.items():
        lines, counts = [], Counter()
        for family in ACTION_FAMILIES:
            for line in (out / split / f"{family}.jsonl").read_text().splitlines():
                doc = json.loads(line)
                label = action_label(doc)
                lines.append(f"{doc['video']} {label}\n")
                counts[label] += 1
        write_text_atomic(out / list_file, "".join(lines))
        classes[list_file.removesuffix(".txt")] = dict(sorted(counts.items()))
    write_text_atomic(out / "classes.json", json.dumps(classes, indent=1) + "\n")
    ids = {label: i for i, label in enumerate(action_labels())}
    write_text_atomic(out / "labels.json", json.dumps(ids, indent=1) + "\n")
    return out
