"""Data mixtures: sources with weights or counts, and a seed; reproducible bit for bit.

The sample order of an epoch is a pure function of (mixture, source sizes, seed, epoch), so a
position in that sequence is a complete data state: resuming at position p needs no sample to
be read again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class SourceConfig:
    name: str = ""
    """A label for the source (for readers of the config)."""
    data: str = ""
    """A LLaVA JSON / JSONL file."""
    root: str = ""
    """Media root (default: the data file's folder)."""
    assets_root: str = ""
    """Root of the rows' `codec_assets` paths, which may not leave it (default: `root`). Set it
    to the `--out` of `ovmllm codec precompute` when that lies outside `root`."""
    weight: float = 1.0
    """Share of the epoch (ignored when count is set)."""
    count: int = 0
    """Exact samples per epoch (drawn without replacement while they last)."""


@dataclass
class MixtureConfig:
    sources: list[SourceConfig] = field(default_factory=list)
    """The data sources."""
    seed: int = 0
    """Seed of the sample order (with the epoch)."""
    samples_per_epoch: int = 0
    """Samples per epoch; 0: the sum of the sources' sizes."""


def source_counts(mixture: MixtureConfig, sizes: list[int]) -> list[int]:
    """How many samples each source contributes per epoch."""
    if len(sizes) != len(mixture.sources):
        raise ValueError(f"{len(mixture.sources)} sources but {len(sizes)} sizes")
    total = mixture.samples_per_epoch or sum(sizes)
    fixed = [s.count for s in mixture.sources]
    left = max(total - sum(fixed), 0)
    weights = np.array([0.0 if s.count else s.weight for s in mixture.sources])
    if weights.sum() == 0:
        return fixed
    shares = np.floor(weights / weights.sum() * left).astype(int)
    shares[int(np.argmax(weights))] += left - int(shares.sum())  # rounding goes to the largest
    return [c if c else int(n) for c, n in zip(fixed, shares, strict=True)]


def epoch_order(mixture: MixtureConfig, sizes: list[int], epoch: int) -> np.ndarray:
    """[n, 2] (source, row) for one epoch, shuffled with a generator seeded by (seed, epoch)."""
    rng = np.random.default_rng([mixture.seed, epoch])
    parts = []
    for source, (size, count) in enumerate(zip(sizes, source_counts(mixture, sizes), strict=True)):
        if size == 0 or count == 0:
            continue
        rows = np.concatenate([rng.permutation(size) for _ in range(-(-count // size))])[:count]
        parts.append(np.stack([np.full(count, source), rows], axis=1))
    order = np.concatenate(parts) if parts else np.zeros((0, 2), np.int64)
    return order[rng.permutation(len(order))]
