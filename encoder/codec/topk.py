"""Which patches, on the scores of the T sampled frames: whole frames by policy, then one
global top-K over the candidate patches of the other frames (PAPER.md section 2)."""

from __future__ import annotations

import numpy as np

from encoder.codec.policies import lowest_first
from encoder.codec.video import PICT_TYPE_I


def whole_frames(pict_types: list[int], policy: str, budget: int, per_frame: int) -> list[int]:
    """Sampled frames kept whole: `first` → [0]; `iframes` → every I-frame, earliest first, as
    many as the budget holds; `none` → []."""
    if policy == "first":
        return [0]
    if policy == "iframes":
        iframes = [t for t, kind in enumerate(pict_types) if kind == PICT_TYPE_I]
        return iframes[: budget // per_frame]
    return []


def choose_rows(
    scores: np.ndarray,
    candidates: np.ndarray,
    whole: list[int],
    budget: int,
    lowest_fraction: float = 0.0,
    tie_rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, int]:
    """Positions [K, 3] (t, h, w) sorted by (t, h, w), and the number of scored candidates.

    Whole frames contribute every patch (padding included); the remaining budget goes to one
    global top-K over candidate patches of the other frames, ties broken by lower flat index
    t * hb * wb + h * wb + w. With `lowest_fraction` f (the `nonsalient:f` control), the
    top-K takes only round(f x remaining) fewer, and that many of the other candidates are
    taken from the lowest score up, equal scores in the order of `tie_rng`. Fewer candidates
    than K: the last row repeats up to exactly K.
    """
    _, hb, wb = scores.shape
    per_frame = hb * wb
    eligible = np.broadcast_to(candidates, scores.shape).copy()
    eligible[whole] = False
    flat_eligible = np.flatnonzero(eligible)
    remaining = budget - len(whole) * per_frame
    eligible_scores = scores.ravel()[flat_eligible]
    lowest_count = round(lowest_fraction * remaining) if remaining > 0 else 0
    keep = top_k_mask(eligible_scores, remaining - lowest_count)
    if lowest_count:
        others = np.flatnonzero(~keep)
        keep[others[lowest_first(eligible_scores[others], tie_rng)[:lowest_count]]] = True
    chosen = flat_eligible[keep]
    whole_idx = (np.asarray(whole, np.int64)[:, None] * per_frame + np.arange(per_frame)).ravel()
    flat = np.sort(np.concatenate([whole_idx, chosen]))
    if len(flat) < budget:
        flat = np.concatenate([flat, np.full(budget - len(flat), flat[-1])])
    t, rest = np.divmod(flat, per_frame)
    h, w = np.divmod(rest, wb)
    return np.stack([t, h, w], axis=1).astype(np.int32), len(flat_eligible)


def top_k_mask(values: np.ndarray, k: int) -> np.ndarray:
    """Mask of the k largest values, ties going to lower indices: the first k of a stable
    descending sort, found by one partition instead of a full sort."""
    if k >= len(values):
        return np.ones(len(values), bool)
    if k <= 0:
        return np.zeros(len(values), bool)
    threshold = np.partition(values, len(values) - k)[len(values) - k]
    mask = values > threshold
    ties = np.flatnonzero(values == threshold)
    mask[ties[: k - int(mask.sum())]] = True
    return mask
