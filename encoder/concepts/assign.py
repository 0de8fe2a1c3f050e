"""`assign`: each embedded sample's `top_k` nearest centres (cosine, nearest first) and their
similarities, one labels file per bank shard (format in `encoder.concepts.store`).

The search is exact (faiss flat inner-product index over the unit centres). A labels folder
remembers its centres and top_k (`labels.json`), and shards already written are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from encoder.concepts.kmeans import faiss_module, unit_rows
from encoder.concepts.store import (
    Bank,
    StoreError,
    labels_table,
    open_manifest,
    read_tensor,
    shard_path,
    write_arrow,
)

LABELS_MANIFEST = "labels.json"


@dataclass
class AssignConfig:
    top_k: int = 10
    """Centres per sample (PAPER.md section 4: each sample is labelled with its 10 nearest)."""
    batch_size: int = 65536
    """Samples searched at once (bounds the [batch, K] similarity block)."""

    def __post_init__(self) -> None:
        for name in ("top_k", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")


def top_k_centres(
    x: np.ndarray, centres: np.ndarray, k: int, batch_size: int = 65536
) -> tuple[np.ndarray, np.ndarray]:
    """([n, k] int64 centre ids, [n, k] float32 cosines), nearest first, of the rows of `x`."""
    if not 1 <= k <= len(centres):
        raise ValueError(f"top_k={k} must be between 1 and the {len(centres)} centres")
    faiss = faiss_module()
    index = faiss.IndexFlatIP(centres.shape[1])
    index.add(unit_rows(centres))
    ids, sims = np.zeros((len(x), k), np.int64), np.zeros((len(x), k), np.float32)
    for a in range(0, len(x), batch_size):
        sims[a : a + batch_size], ids[a : a + batch_size] = index.search(
            unit_rows(x[a : a + batch_size]), k
        )
    return ids, sims


def assign(
    bank_folder: str | Path,
    centres_path: str | Path,
    cfg: AssignConfig,
    out: str | Path,
    progress: bool = True,
) -> dict[str, int]:
    """Write the labels folder `out`; counts of samples labelled and shards written/skipped."""
    bank = Bank(bank_folder)
    bank.check_complete()
    centres, meta = read_tensor(centres_path, "centres")
    if meta.get("bank", "").split(":")[-1] != bank.manifest["teacher_key"]:
        raise StoreError(f"{centres_path}: centres of another teacher than the bank "
                         f"{bank_folder} (teacher_key {bank.manifest['teacher_key']})")  # fmt: skip
    settings = {"top_k": cfg.top_k, "centres": str(Path(centres_path).resolve()),
                "centres_meta": meta, "bank": bank.manifest["list_digest"]}  # fmt: skip
    open_manifest(out, settings, LABELS_MANIFEST)
    counts = {"labelled": 0, "shards_written": 0, "shards_skipped": 0}
    centres_np = centres.float().numpy()
    for shard in tqdm(range(bank.shards), desc="assign", unit="shard", disable=not progress):
        path = shard_path(out, "labels", shard, ".arrow")
        if path.is_file():
            counts["shards_skipped"] += 1
            continue
        ids, embeddings = bank.embeddings(shard)
        if ids and embeddings.shape[1] != centres.shape[1]:
            raise StoreError(f"{centres_path}: centres of width {centres.shape[1]}, the bank's "
                             f"embeddings have {embeddings.shape[1]}")  # fmt: skip
        labels = np.zeros((0, cfg.top_k), np.int64)
        sims = np.zeros((0, cfg.top_k), np.float32)
        if ids:
            labels, sims = top_k_centres(embeddings.float().numpy(), centres_np, cfg.top_k,
                                         cfg.batch_size)  # fmt: skip
        write_arrow(labels_table(ids, labels, sims), path)
        counts["labelled"] += len(ids)
        counts["shards_written"] += 1
    return counts
