"""The concept bank on disk: teacher embeddings, k-means centres, labels (format version 1).

    <bank>/concepts.json                what made the embeddings; compared when a run resumes:
        {"format": 1, "kind": "image" | "video", "frames": 8 (video; 1 for images),
         "teacher": {...}, "teacher_key": "<16 hex>", "shard_size": N, "samples": S,
         "list_digest": "<16 hex of the sample ids in order>"}
    <bank>/embeddings-00000.safetensors tensor "embeddings": float32 [rows, D], unit rows, the
        shard's embedded samples in list order. An image row is its teacher embedding
        (D = teacher width W); a video row is the L2-normalised concatenation of the unit
        embeddings of its 8 uniform frames, in time order (D = 8 x W; the cosine of two videos
        is the mean of their frame-by-frame cosines). Metadata: {"format", "shard", "dim"}.
    <bank>/index-00000.arrow            one row per list entry of the shard, in list order:
        sample_id string (path relative to the list root), position int64 (its place among
        the list's samples), row int32 (its row in the shard's embeddings; -1 when it failed),
        error string (null when embedded, else the reason it was skipped).
    centres.safetensors                 tensor "centres": float32 [K, D], unit rows (spherical
        k-means); metadata (strings): format, k, dim, kind, init, seed, iterations,
        restarts, points_per_centre, iterations_run, objective, trained_on (rows clustered),
        seconds, bank ("<list_digest>:<teacher_key>" of the bank clustered).
    <labels>/labels.json                the centres file, its metadata and top_k the labels use.
    <labels>/labels-00000.arrow         nearest centres of the embedded samples of bank shard
        00000, in its row order: sample_id string, labels list<int32> [top_k] (centre ids,
        nearest first), similarities list<float32> [top_k] (cosine, descending).
    <ocr>/ocr.json                      the vocabulary (path, size, digest), max_tags, lowercase.
    <ocr>/labels-00000.arrow            OCR word classes, one row per list entry: sample_id
        string, labels list<int32> (word ids = vocabulary line numbers from 0, in order of first
        appearance, each once, at most max_tags), unknown_words int32 (words of the text not in
        the vocabulary: dropped), error string (null, or why the sample has no labels).

Shard s holds list entries [s x N, (s + 1) x N). Arrow files are IPC streams (what
`datasets.Dataset.from_file` and `pyarrow.ipc.open_stream` read). Every file is written under a
temporary name and renamed; a bank shard is complete once its index exists (written after its
embeddings), a labels shard once its file exists, so a resumed run skips exactly those.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from encoder.files import atomic_file, write_text_atomic

FORMAT = 1
MANIFEST = "concepts.json"
KINDS = ("image", "video")
INDEX_SCHEMA = pa.schema(
    [("sample_id", pa.string()), ("position", pa.int64()), ("row", pa.int32()),
     ("error", pa.string())]
)  # fmt: skip


class StoreError(ValueError):
    """A concept-bank folder or file that is missing, incomplete or made with other settings."""


def shard_path(folder: str | Path, prefix: str, shard: int, suffix: str) -> Path:
    return Path(folder) / f"{prefix}-{shard:05d}{suffix}"


def num_shards(samples: int, shard_size: int) -> int:
    return -(-samples // shard_size)


def ids_digest(sample_ids: list[str]) -> str:
    return hashlib.sha256("\n".join(sample_ids).encode()).hexdigest()[:16]


def write_arrow(table: pa.Table, path: str | Path) -> Path:
    with (
        atomic_file(path) as tmp,
        pa.OSFile(str(tmp), "wb") as sink,
        pa.ipc.new_stream(sink, table.schema) as writer,
    ):
        writer.write_table(table)
    return Path(path)


def read_arrow(path: str | Path) -> pa.Table:
    try:
        with pa.memory_map(str(path)) as source:
            return pa.ipc.open_stream(source).read_all()
    except (OSError, pa.ArrowInvalid) as exc:
        raise StoreError(f"{path}: not a readable Arrow stream ({exc})") from exc


def write_tensor(path: str | Path, name: str, tensor: torch.Tensor, metadata: dict) -> Path:
    with atomic_file(path) as tmp:
        save_file({name: tensor.contiguous()}, str(tmp), {k: str(v) for k, v in metadata.items()})
    return Path(path)


def read_tensor(path: str | Path, name: str) -> tuple[torch.Tensor, dict[str, str]]:
    try:
        with safe_open(str(path), "pt") as f:
            return f.get_tensor(name), f.metadata() or {}
    except (OSError, KeyError, RuntimeError) as exc:  # safetensors raises these on bad files
        raise StoreError(f"{path}: no readable tensor {name!r} ({exc})") from exc


def read_metadata(path: str | Path) -> dict[str, str]:
    """A safetensors file's metadata, without reading its tensors."""
    try:
        with safe_open(str(path), "pt") as f:
            return f.metadata() or {}
    except (OSError, RuntimeError) as exc:
        raise StoreError(f"{path}: not a readable safetensors file ({exc})") from exc


def open_manifest(folder: str | Path, settings: dict, name: str = MANIFEST) -> dict:
    """Write `settings` as the folder's manifest, or check an existing one holds the same: a
    bank (or labels folder) is never continued with other settings (teacher, kind, shard size,
    list; centres, top_k)."""
    path = Path(folder) / name
    manifest = {"format": FORMAT, **settings}
    if path.is_file():
        existing = json.loads(path.read_text())
        changed = sorted(k for k in manifest.keys() | existing.keys()
                         if manifest.get(k) != existing.get(k))  # fmt: skip
        if changed:
            raise StoreError(f"{folder}: holds files made with other {', '.join(changed)}; "
                             "give another output folder")  # fmt: skip
        return existing
    write_text_atomic(path, json.dumps(manifest, indent=2) + "\n")
    return manifest


def labels_table(sample_ids: list[str], labels: np.ndarray, similarities: np.ndarray) -> pa.Table:
    """Top-k labels as Arrow: [n, k] int centre ids and float similarities per sample."""
    k = labels.shape[1]
    flat_labels = pa.array(labels.astype(np.int32).ravel())
    flat_sims = pa.array(similarities.astype(np.float32).ravel())
    offsets = pa.array(np.arange(0, (len(sample_ids) + 1) * k, k, dtype=np.int32))
    return pa.table({"sample_id": pa.array(sample_ids, pa.string()),
                     "labels": pa.ListArray.from_arrays(offsets, flat_labels),
                     "similarities": pa.ListArray.from_arrays(offsets, flat_sims)})  # fmt: skip


class Bank:
    """A bank folder written by `extract`, read shard by shard."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        path = self.folder / MANIFEST
        if not path.is_file():
            raise StoreError(f"{self.folder}: no {MANIFEST} (not a concept bank)")
        self.manifest = json.loads(path.read_text())
        if self.manifest.get("format") != FORMAT:
            raise StoreError(f"{path}: format {self.manifest.get('format')}, expected {FORMAT}")
        self.shards = num_shards(self.manifest["samples"], self.manifest["shard_size"])

    def complete(self, shard: int) -> bool:
        return shard_path(self.folder, "index", shard, ".arrow").is_file()

    def missing(self) -> list[int]:
        return [s for s in range(self.shards) if not self.complete(s)]

    def check_complete(self) -> None:
        missing = self.missing()
        if missing:
            raise StoreError(f"{self.folder}: {len(missing)} of {self.shards} shards are not "
                             f"extracted yet (first: {missing[0]}); run extract again")  # fmt: skip

    @property
    def dim(self) -> int:
        """The embedding width (0 while no complete shard holds a row)."""
        for shard in range(self.shards):
            path = shard_path(self.folder, "embeddings", shard, ".safetensors")
            if self.complete(shard):
                dim = int(read_metadata(path).get("dim", 0))
                if dim:
                    return dim
        return 0

    def index(self, shard: int) -> pa.Table:
        return read_arrow(shard_path(self.folder, "index", shard, ".arrow"))

    def embeddings(self, shard: int) -> tuple[list[str], torch.Tensor]:
        """Ids and [rows, D] embeddings of the shard's embedded samples."""
        index = self.index(shard)
        rows = index.column("row").to_numpy()
        ids = [sid for sid, row in zip(index.column("sample_id").to_pylist(), rows, strict=True)
               if row >= 0]  # fmt: skip
        path = shard_path(self.folder, "embeddings", shard, ".safetensors")
        if not ids:
            return [], torch.zeros(0, 0)
        tensor, _ = read_tensor(path, "embeddings")
        if tensor.shape[0] != len(ids):
            raise StoreError(f"{path}: {tensor.shape[0]} rows, its index lists {len(ids)}")
        return ids, tensor

    def sample_rows(self, count: int, seed: int) -> torch.Tensor:
        """`count` embedded rows drawn uniformly without replacement (all when fewer), read one
        shard at a time so the bank never has to fit in memory."""
        self.check_complete()
        counts = [int((self.index(s).column("row").to_numpy() >= 0).sum())
                  for s in range(self.shards)]  # fmt: skip
        total = sum(counts)
        if total == 0:
            raise StoreError(f"{self.folder}: no sample was embedded")
        chosen = np.sort(np.random.default_rng(seed).permutation(total)[: min(count, total)])
        parts, start = [], 0
        for shard, n in enumerate(counts):
            mine = chosen[(chosen >= start) & (chosen < start + n)] - start
            if len(mine):
                parts.append(self.embeddings(shard)[1][torch.from_numpy(mine)])
            start += n
        return torch.cat(parts).float()
