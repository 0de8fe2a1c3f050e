"""Which frames a selection samples: T ids on the original timeline, and the re-plan when the
decoder yields another frame count than the container promised (see `video.py`)."""

from __future__ import annotations

import numpy as np


def sample_indices(num_frames: int, count: int) -> np.ndarray:
    """floor(linspace(0, N-1, T)): uniform on the original timeline. With N < T frames repeat
    (each original frame appears about T/N times, in order)."""
    return np.floor(np.linspace(0, num_frames - 1, count)).astype(np.int64)


def resolve_plan(plan: np.ndarray, kept: list[int], decoded: int) -> tuple[np.ndarray, bool]:
    """Frame ids actually used. Exact when the decode matched the planned count; otherwise the
    plan is redone on the decoded count and each index is served by the nearest kept frame."""
    target = sample_indices(decoded, len(plan))
    if np.array_equal(target, plan) and set(plan.tolist()) <= set(kept):
        return plan, True
    kept_arr = np.asarray(sorted(kept))
    nearest = np.abs(kept_arr[None, :] - target[:, None]).argmin(axis=1)
    return kept_arr[nearest], False
