"""Probe features: extracted once per (video, cell, encoder), kept in a memory-mapped store, so
every epoch and every re-run costs only the head.

A store holds one cell's features for one encoder: a row [L, D] per video (every item of a cell
has the same L: K codec patches, or n frames of a tower's patches) in one array `features.npy`,
memory-mapped. Its folder is keyed on the encoder's fingerprint and the cell's selection
settings and storage dtype; inside, `index.json` maps each video (its resolved path, size and
mtime, so a changed file is a new video) to its row. Videos new to the store get new rows at the
end (the array is grown by a copy, once per run that brings new videos), so another list over
the same videos reuses their rows. Rows are written in place; what is complete is `filled.npy`
(one flag per row), replaced whole after each batch's rows are flushed, so an interrupted
extraction resumes at the first batch it had not committed. Videos that fail (unreadable,
undecodable) are recorded in `failed.json` with the reason, counted, and tried again by the next
run. Without a cache folder the same store lives in memory (the uncached path: identical
arrays, nothing written).

Extraction runs selection in DataLoader workers and the tower in the main process, a batch of
items at a time through the packed varlen path (no padding, attention inside each item).
"""

from __future__ import annotations

import hashlib
import json
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from encoder.files import atomic_file, commit, temp_path, write_text_atomic
from encoder.packed import PackedVisualTokens
from eval.probe.encoder import FrozenEncoder

STORE_DTYPES = {"float16": np.float16, "float32": np.float32}
FEATURES_FILE, FILLED_FILE, FAILED_FILE, INDEX_FILE = (
    "features.npy", "filled.npy", "failed.json", "index.json"
)  # fmt: skip
COPY_ROWS = 256  # rows copied at a time when a store grows


def video_key(path: Path) -> str:
    """A video's identity in a store: resolved path, size and mtime (missing: path only; its
    extraction records the failure)."""
    try:
        stat = path.stat()
    except OSError:
        return f"{path}|missing"
    return f"{path}|{stat.st_size}|{stat.st_mtime_ns}"


def store_folder(root: Path, encoder_key: str, cell_name: str, settings: dict, dtype: str) -> Path:
    """Where one cell's features of one encoder live under the cache root."""
    record = json.dumps({"settings": settings, "dtype": dtype}, sort_keys=True)
    digest = hashlib.sha256(record.encode()).hexdigest()[:12]
    return root / encoder_key / f"{cell_name}-{digest}"


@dataclass
class FeatureStore:
    """Rows [L, D] of features by video key; on disk (memory-mapped) when `folder` is set."""

    dtype: str = "float16"
    folder: Path | None = None
    index: dict[str, int] = field(default_factory=dict)
    """Video key -> row."""
    features: np.ndarray | None = None
    """[rows, L, D], allocated when the first features arrive."""
    filled: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    failed: dict[str, str] = field(default_factory=dict)
    """Video key -> why it has no features."""

    def __post_init__(self) -> None:
        if self.dtype not in STORE_DTYPES:
            raise ValueError(f"feature dtype {self.dtype!r} is not one of {list(STORE_DTYPES)}")

    @classmethod
    def open(cls, folder: str | Path, dtype: str) -> FeatureStore:
        """The store in `folder` (an empty one when absent)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        store = cls(dtype, folder)
        if (folder / INDEX_FILE).is_file():
            store.index = json.loads((folder / INDEX_FILE).read_text())
        store.filled = np.zeros(len(store.index), bool)
        if (folder / FILLED_FILE).is_file():
            filled = np.load(folder / FILLED_FILE)
            store.filled[: len(filled)] = filled
            store.features = np.load(folder / FEATURES_FILE, mmap_mode="r+")
        if (folder / FAILED_FILE).is_file():
            store.failed = json.loads((folder / FAILED_FILE).read_text())
        return store

    def add(self, keys: list[str]) -> np.ndarray:
        """The rows of `keys`, new videos appended (and the index saved before any is filled)."""
        new = [key for key in dict.fromkeys(keys) if key not in self.index]
        if new:
            self.index.update({key: len(self.index) + i for i, key in enumerate(new)})
            self.filled = np.concatenate([self.filled, np.zeros(len(new), bool)])
            self._grow()
            if self.folder is not None:
                write_text_atomic(self.folder / INDEX_FILE, json.dumps(self.index))
        return np.array([self.index[key] for key in keys], np.int64)

    def _grow(self) -> None:
        """Room for a row per indexed video (a copy: new rows never move old ones)."""
        if self.features is None or len(self.features) >= len(self.index):
            return
        shape = (len(self.index), *self.features.shape[1:])
        if self.folder is None:
            grown = np.zeros(shape, self.features.dtype)
            grown[: len(self.features)] = self.features
            self.features = grown
            return
        tmp = temp_path(self.folder / FEATURES_FILE)
        grown = np.lib.format.open_memmap(tmp, mode="w+", dtype=self.features.dtype, shape=shape)
        old = len(self.features)
        for start in range(0, old, COPY_ROWS):
            stop = min(start + COPY_ROWS, old)
            grown[start:stop] = self.features[start:stop]
        grown.flush()
        del grown
        self.features = None  # unmapped before the file under it is replaced
        commit(tmp, self.folder / FEATURES_FILE)
        self.features = np.load(self.folder / FEATURES_FILE, mmap_mode="r+")

    def _allocate(self, rows: int, width: int) -> None:
        shape = (len(self.index), rows, width)
        if self.folder is None:
            self.features = np.zeros(shape, STORE_DTYPES[self.dtype])
            return
        final = self.folder / FEATURES_FILE
        tmp = temp_path(final)
        np.lib.format.open_memmap(tmp, mode="w+", dtype=STORE_DTYPES[self.dtype], shape=shape)
        commit(tmp, final)  # the header and size are whole before anyone maps the file
        self.features = np.load(final, mmap_mode="r+")

    def put(self, row: int, key: str, features: np.ndarray) -> None:
        if self.features is None:
            self._allocate(*features.shape)
        self._grow()  # rows indexed before a crash, never grown into the file
        if features.shape != self.features.shape[1:]:
            rows, width = self.features.shape[1:]
            raise ValueError(f"{features.shape[0]} x {features.shape[1]} features, the cell's "
                             f"others {rows} x {width}")  # fmt: skip
        self.features[row] = features
        self.failed.pop(key, None)

    def commit(self, rows: list[int]) -> None:
        """Mark `rows` complete, after their features are on disk."""
        if isinstance(self.features, np.memmap):
            self.features.flush()
        self.filled[rows] = True
        if self.folder is None:
            return
        with atomic_file(self.folder / FILLED_FILE) as tmp, tmp.open("wb") as f:
            np.save(f, self.filled)
        write_text_atomic(self.folder / FAILED_FILE, json.dumps(self.failed, indent=1))

    def rows_of(self, keys: list[str]) -> np.ndarray:
        """Row of each video key (-1 for one without features)."""
        rows = [self.index.get(key, -1) for key in keys]
        return np.array([r if r >= 0 and self.filled[r] else -1 for r in rows], np.int64)


class _Items(Dataset):
    """Selection in DataLoader workers: (row, key, item or None, failure reason or None)."""

    def __init__(self, jobs: list[tuple[int, str, Path]], producer: Callable) -> None:
        self.jobs, self.producer = jobs, producer

    def __len__(self) -> int:
        return len(self.jobs)

    def __getitem__(self, i: int) -> tuple[int, str, PackedVisualTokens | None, str | None]:
        row, key, path = self.jobs[i]
        if not path.is_file():
            return row, key, None, f"{path}: file not found"
        try:
            return row, key, self.producer(path), None
        except Exception as exc:  # a batch job records every failure and goes on
            return row, key, None, f"{path}: {type(exc).__name__}: {exc}"


def _as_list(batch: list) -> list:
    return batch


@dataclass
class Extracted:
    rows: np.ndarray
    """The store row of each video asked for, -1 for one without features."""
    extracted: int = 0
    kept: int = 0
    """Videos whose features were in the store before this run."""
    failed: dict[str, str] = field(default_factory=dict)
    """Path -> reason, for the videos asked for that have no features."""


def _encode(encoder: FrozenEncoder, items: list[PackedVisualTokens]) -> list[np.ndarray]:
    features = encoder.features(PackedVisualTokens.concat(items))
    return [f.float().cpu().numpy() for f in features]


def _encode_batch(encoder: FrozenEncoder, batch: list, store: FeatureStore) -> list[int]:
    """Features of a batch's good items into the store; the rows filled."""
    good = [(row, key, item) for row, key, item, _ in batch if item is not None]
    try:
        encoded = _encode(encoder, [item for *_, item in good]) if good else []
    except Exception:  # one bad item must not fail its batch: encode them one by one
        traceback.print_exc()
        encoded = []
        for _, key, item in good:
            try:
                encoded.extend(_encode(encoder, [item]))
            except Exception as exc:
                store.failed[key] = f"encoder: {type(exc).__name__}: {exc}"
                encoded.append(None)
    done = []
    for (row, key, _), features in zip(good, encoded, strict=True):
        if features is None:
            continue
        try:
            store.put(row, key, features)
            done.append(row)
        except ValueError as exc:
            store.failed[key] = f"{key.split('|')[0]}: {exc}"
    return done


def extract(
    encoder: FrozenEncoder,
    producer: Callable[[Path], PackedVisualTokens],
    paths: list[Path],
    store: FeatureStore,
    batch_size: int = 8,
    workers: int = 0,
    desc: str = "features",
    progress: bool = True,
) -> Extracted:
    """Features of every video in `paths` that `store` lacks, then where each one's are."""
    keys = [video_key(path) for path in paths]
    rows = store.add(keys)
    jobs = list({int(r): (int(r), k, p) for r, k, p in zip(rows, keys, paths, strict=True)
                 if not store.filled[r]}.values())  # fmt: skip
    result = Extracted(rows, kept=len(set(rows.tolist())) - len(jobs))
    if jobs:
        loader = DataLoader(_Items(jobs, producer), batch_size=batch_size, num_workers=workers,
                            collate_fn=_as_list)  # fmt: skip
        bar = tqdm(total=len(jobs), desc=desc, unit="video", disable=not progress)
        for batch in loader:
            for _, key, _, reason in batch:
                if reason is not None:
                    store.failed[key] = reason
            done = _encode_batch(encoder, batch, store)
            store.commit(done)
            result.extracted += len(done)
            bar.update(len(batch))
        bar.close()
    result.rows = store.rows_of(keys)
    result.failed = {str(path): store.failed.get(key, "no features")
                     for path, key, row in zip(paths, keys, result.rows, strict=True)
                     if row < 0}  # fmt: skip
    return result
