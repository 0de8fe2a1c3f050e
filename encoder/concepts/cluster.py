"""`cluster`: the concept centres of a bank, by spherical k-means of its embeddings.

At most `k x points_per_centre` rows are clustered, drawn uniformly with the seed and read one
shard at a time (faiss's own default cap is 256 points per centre: more rarely moves the
centres, and the bank need not fit in memory). The centres file is written whole or not at all;
one that exists with the same settings and bank is kept (a finished step is not redone).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from encoder.concepts.kmeans import INIT_METHODS, spherical_kmeans
from encoder.concepts.store import FORMAT, Bank, read_tensor, write_tensor


@dataclass
class ClusterConfig:
    k: int = 1024
    """Number of centres (the paper: 2M for images, 400k for videos)."""
    iterations: int = 20
    """Lloyd iterations at most (faiss may stop earlier once the objective stops improving)."""
    init: str = "k-means++"
    """Initial centres: k-means++ | afk-mc2 (cheaper for very large k) | random."""
    restarts: int = 1
    """k-means runs from fresh initial centres; the best objective is kept (kmeans.py)."""
    points_per_centre: int = 256
    """Rows clustered per centre at most; the rest are assigned, not clustered."""
    seed: int = 0
    """Seeds the row draw, the initialisation and faiss."""

    def __post_init__(self) -> None:
        if self.init not in INIT_METHODS:
            raise ValueError(f"init={self.init!r} is not one of {INIT_METHODS}")
        for name in ("k", "iterations", "restarts", "points_per_centre"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")


def _settings(cfg: ClusterConfig, bank: Bank) -> dict[str, str]:
    return {**{key: str(value) for key, value in asdict(cfg).items()},
            "format": str(FORMAT), "kind": bank.manifest["kind"],
            "bank": f"{bank.manifest['list_digest']}:{bank.manifest['teacher_key']}"}  # fmt: skip


def cluster(bank_folder: str | Path, cfg: ClusterConfig, out: str | Path) -> dict[str, str]:
    """Write `out` (centres.safetensors, see `encoder.concepts.store`); its metadata back."""
    bank = Bank(bank_folder)
    settings = _settings(cfg, bank)
    out = Path(out)
    if out.is_file():
        _, meta = read_tensor(out, "centres")
        if all(meta.get(key) == value for key, value in settings.items()):
            return meta
    start = time.perf_counter()
    rows = bank.sample_rows(cfg.k * cfg.points_per_centre, cfg.seed)
    result = spherical_kmeans(rows.numpy(), cfg.k, cfg.iterations, cfg.seed, cfg.init, cfg.restarts)
    meta = {**settings, "dim": str(rows.shape[1]), "trained_on": str(rows.shape[0]),
            "iterations_run": str(result.iterations), "objective": f"{result.objective:.6g}",
            "seconds": f"{time.perf_counter() - start:.3f}"}  # fmt: skip
    write_tensor(out, "centres", torch.from_numpy(result.centres), meta)
    return meta
