"""The fixed sample mix the LLM-side benchmarks share (packing.py, train_step.py)."""

from __future__ import annotations

import torch


def sample_mix(gen: torch.Generator) -> list[tuple[int, int]]:
    """(visual tokens, text tokens) of 16 samples: 12 image-caption samples (256 visual + 30-60
    text tokens) and 4 video samples (2,048 visual + 40-120 text tokens)."""

    def text(lo: int, hi: int) -> int:
        return int(torch.randint(lo, hi + 1, (1,), generator=gen))

    return [(256, text(30, 60)) for _ in range(12)] + [(2048, text(40, 120)) for _ in range(4)]
