"""Video lists in the formats action benchmarks ship, read into (video, label) samples.

- `path label` lines (Kinetics, HMDB51, UCF101 style): the label is the last word of the line,
  a class name or an id; blank lines and `#` comments are skipped;
- CSV with a header: the path and label columns named by the config, else the first of
  `PATH_COLUMNS` / `LABEL_COLUMNS` the header has;
- SSv2-style JSON: a list of `{"id", "template", ...}`; the video is `<id><video_ext>` and the
  label is the template with its brackets removed ("Putting [something] on [something]" →
  "Putting something on something"), as SSv2's labels file names the classes.

Paths are relative to a root (default: the list's folder) and may not leave it. Class ids come
from a labels JSON (name → id, SSv2's `labels.json` format) when given, else from the sorted
set of the training list's labels (numerically when every label is an integer).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FORMATS = ("auto", "lines", "csv", "ssv2")
PATH_COLUMNS = ("path", "video", "filename", "file", "clip")
LABEL_COLUMNS = ("label", "class", "category", "action")


class ListError(ValueError):
    """A video list or labels file that cannot be used; the message names the file and why."""


@dataclass(frozen=True)
class Sample:
    video: str
    """The path relative to the root (posix): the video's key in the feature store."""
    path: Path
    """The resolved file path."""
    label: str
    """The class as the list names it."""


def without_brackets(template: str) -> str:
    return template.replace("[", "").replace("]", "")


def _list_format(path: Path, fmt: str) -> str:
    if fmt not in FORMATS:
        raise ListError(f"list format {fmt!r} is not one of {', '.join(FORMATS)}")
    if fmt != "auto":
        return fmt
    return {".json": "ssv2", ".csv": "csv"}.get(path.suffix.lower(), "lines")


def _lines(path: Path) -> list[tuple[str, str, str]]:
    """(where, video, label) of each `path label` line."""
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.rsplit(maxsplit=1)
        if len(parts) != 2:
            raise ListError(f"{path}:{number}: {line!r} is not `path label`")
        rows.append((f"{path}:{number}", parts[0], parts[1]))
    return rows


def _column(header: list[str], given: str, known: tuple[str, ...], what: str, path: Path) -> str:
    if given:
        if given not in header:
            raise ListError(f"{path}: no {what} column {given!r} in the header {header}")
        return given
    for name in known:
        if name in header:
            return name
    raise ListError(f"{path}: the header {header} has no {what} column ({', '.join(known)}); "
                    f"name it with lists.{what}_column")  # fmt: skip


def _csv(path: Path, path_column: str, label_column: str) -> list[tuple[str, str, str]]:
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        header = list(reader.fieldnames or [])
        video_key = _column(header, path_column, PATH_COLUMNS, "path", path)
        label_key = _column(header, label_column, LABEL_COLUMNS, "label", path)
        rows = []
        for number, row in enumerate(reader, start=2):
            video, label = (row.get(video_key) or "").strip(), (row.get(label_key) or "").strip()
            if not video or not label:
                raise ListError(f"{path}:{number}: empty {video_key!r} or {label_key!r}")
            rows.append((f"{path}:{number}", video, label))
    return rows


def _ssv2(path: Path, video_ext: str) -> list[tuple[str, str, str]]:
    try:
        entries = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ListError(f"{path}: not JSON ({exc})") from exc
    if not isinstance(entries, list):
        raise ListError(f"{path}: an SSv2 list is a JSON list of entries")
    rows = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or "id" not in entry or "template" not in entry:
            raise ListError(f"{path}: entry {index} has no `id` and `template` (a test list?)")
        video = f"{entry['id']}{video_ext}"
        rows.append((f"{path}[{index}]", video, without_brackets(str(entry["template"]))))
    return rows


def read_list(
    path: str | Path,
    root: str | Path | None = None,
    fmt: str = "auto",
    video_ext: str = ".webm",
    path_column: str = "",
    label_column: str = "",
) -> list[Sample]:
    """The samples of one list, paths confined to `root` (default: the list's folder).
    `video_ext` is the SSv2 videos' extension."""
    path = Path(path)
    if not path.is_file():
        raise ListError(f"{path}: video list not found")
    root = Path(root or path.parent).resolve()
    kind = _list_format(path, fmt)
    if kind == "lines":
        rows = _lines(path)
    elif kind == "csv":
        rows = _csv(path, path_column, label_column)
    else:
        rows = _ssv2(path, video_ext)
    samples = []
    for where, video, label in rows:
        resolved = (root / video).resolve()
        if not resolved.is_relative_to(root):
            raise ListError(f"{where}: {video!r} is outside the root {root}")
        samples.append(Sample(resolved.relative_to(root).as_posix(), resolved, label))
    if not samples:
        raise ListError(f"{path}: no videos listed")
    return samples


def read_label_ids(path: str | Path) -> dict[str, int]:
    """A labels JSON (class name → id, ids as integers or digit strings; names with SSv2
    brackets lose them)."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ListError(f"{path}: not a readable labels JSON ({exc})") from exc
    if not isinstance(raw, dict) or not raw:
        raise ListError(f"{path}: a labels file is a JSON object of class name -> id")
    ids = {}
    for name, value in raw.items():
        try:
            ids[without_brackets(name)] = int(value)
        except (TypeError, ValueError):
            raise ListError(f"{path}: the id of {name!r} is {value!r}, not an integer") from None
    if sorted(ids.values()) != list(range(len(ids))):
        raise ListError(f"{path}: ids must be 0..{len(ids) - 1}, each once")
    return ids


def label_ids(train: list[Sample], labels_file: str | Path | None = None) -> dict[str, int]:
    """Class name → id: from the labels file, else the sorted set of the training labels."""
    if labels_file:
        return read_label_ids(labels_file)
    names = {sample.label for sample in train}
    numeric = all(name.lstrip("-").isdigit() for name in names)
    ordered = sorted(names, key=int) if numeric else sorted(names)
    return {name: i for i, name in enumerate(ordered)}


def encode_labels(samples: list[Sample], ids: dict[str, int], list_path: str | Path) -> np.ndarray:
    """int64 class ids of the samples; a label the ids lack is an error naming it."""
    unknown = sorted({sample.label for sample in samples} - set(ids))
    if unknown:
        shown = ", ".join(repr(label) for label in unknown[:5])
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        raise ListError(f"{list_path}: unknown label(s) {shown}{more} (not in the training "
                        "labels or the labels file)")  # fmt: skip
    return np.array([ids[sample.label] for sample in samples], dtype=np.int64)
