"""Codec patch selection for one video, top to bottom (PAPER.md section 2).

probe (count and keep packets) → plan T frame ids → decode once, scoring each sampled frame as
it comes (motion field → compensated magnitude, residual → normalise, fuse → rotate → canvas →
patch sums) → whole frames by policy → one global top-K over the rest → cut patches. A frame's
RGB canvas is painted while decoding when the frame is larger than its canvas region, and after
the top-K (only where patches were chosen) when it is smaller (`scorer.py`).
"""

from __future__ import annotations

import functools
import time
from pathlib import Path

import numpy as np
from threadpoolctl import ThreadpoolController

from encoder.codec.config import CodecConfig
from encoder.codec.decode import PICT_TYPE_I, DecodeStats, decode_sampled, probe_video
from encoder.codec.errors import VideoDecodeError
from encoder.codec.scorer import FrameScorer, ScoredFrame, cut_chosen, score_frames
from encoder.codec.selection import PatchSelection, codec_timeline, uniform_timeline


@functools.cache
def _blas_controller() -> ThreadpoolController:
    # Built once: inspecting the loaded libraries costs ~1 ms, the limit itself ~0.03 ms.
    return ThreadpoolController()


def _single_blas_thread(fn):
    """Run with one BLAS thread: the per-frame matrices are small, and OpenBLAS workers that
    spin on the other cores would double the CPU time (and starve dataloader workers)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with _blas_controller().limit(limits=1, user_api="blas"):
            return fn(*args, **kwargs)

    return wrapper


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
    scores: np.ndarray, candidates: np.ndarray, whole: list[int], budget: int
) -> tuple[np.ndarray, int]:
    """Positions [K, 3] (t, h, w) sorted by (t, h, w), and the number of scored candidates.

    Whole frames contribute every patch (padding included); the remaining budget goes to one
    global top-K over candidate patches of the other frames, ties broken by lower flat index
    t * hb * wb + h * wb + w. Fewer candidates than K: the last row repeats up to exactly K.
    """
    _, hb, wb = scores.shape
    per_frame = hb * wb
    eligible = np.broadcast_to(candidates, scores.shape).copy()
    eligible[whole] = False
    flat_eligible = np.flatnonzero(eligible)
    remaining = budget - len(whole) * per_frame
    chosen = flat_eligible[_top_k_mask(scores.ravel()[flat_eligible], remaining)]
    whole_idx = (np.asarray(whole, np.int64)[:, None] * per_frame + np.arange(per_frame)).ravel()
    flat = np.sort(np.concatenate([whole_idx, chosen]))
    if len(flat) < budget:
        flat = np.concatenate([flat, np.full(budget - len(flat), flat[-1])])
    t, rest = np.divmod(flat, per_frame)
    h, w = np.divmod(rest, wb)
    return np.stack([t, h, w], axis=1).astype(np.int32), len(flat_eligible)


def _top_k_mask(values: np.ndarray, k: int) -> np.ndarray:
    """Mask of the k largest values, ties going to lower indices: the first k of a stable
    descending sort, found by one partition (a full sort of 83k scores took ~10 ms)."""
    if k >= len(values):
        return np.ones(len(values), bool)
    if k <= 0:
        return np.zeros(len(values), bool)
    threshold = np.partition(values, len(values) - k)[len(values) - k]
    mask = values > threshold
    ties = np.flatnonzero(values == threshold)
    mask[ties[: k - int(mask.sum())]] = True
    return mask


@_single_blas_thread
def _decode_and_score(
    path: str | Path, cfg: CodecConfig, count: int, with_scores: bool
) -> tuple[np.ndarray, dict[int, ScoredFrame], FrameScorer, dict]:
    start = time.perf_counter()
    probe = probe_video(path, cfg)
    plan = sample_indices(probe.num_packets, count)
    stats = DecodeStats()
    wanted = set(plan.tolist())
    scorer = FrameScorer(cfg, len(wanted), with_scores)
    frames = decode_sampled(probe, wanted, cfg, stats, with_motion=with_scores)
    try:
        kept = score_frames(frames, scorer, cfg.overlap)
    finally:
        probe.close()  # the decode closes the probe's container; this covers a failed start
    if not kept:
        raise VideoDecodeError(path, "no sampled frame could be decoded")
    frame_ids, exact = resolve_plan(plan, sorted(kept), stats.frames_decoded)
    geo = scorer.geometry
    h, w = (
        (probe.height, probe.width) if scorer.rotation % 180 == 0 else (probe.width, probe.height)
    )
    meta = {
        "source": str(path),
        "source_codec": probe.codec,
        "resolution": [w, h],
        "rotation": scorer.rotation,
        "fps": probe.fps,
        "motion_source": probe.motion_source if with_scores else "none",
        "frames_planned": probe.num_packets,
        "frames_decoded": stats.frames_decoded,
        "frames_in_header": probe.header_frames,
        "plan_exact": exact,
        "packet_errors": stats.packet_errors,
        "frames_with_vectors": stats.frames_with_vectors,
        "T": count,
        "canvas": {
            "mode": geo.mode,
            "size": geo.size,
            "patch": geo.patch,
            "resize": [geo.resize_h, geo.resize_w],
            "offset": [geo.offset_y, geo.offset_x],
        },
        "hb": geo.grid,
        "wb": geo.grid,
        "pad_box": list(geo.content_box),
        "timings": {
            # wall time of the decode loop (without the scoring and painting it waited for)
            "decode_s": stats.seconds
            - (0.0 if cfg.overlap else scorer.score_seconds + scorer.paint_seconds),
            "score_s": scorer.score_seconds,
            "canvas_s": scorer.paint_seconds,
            "total_s": time.perf_counter() - start,
        },
    }
    return frame_ids, kept, scorer, meta


def select_patches(path: str | Path, cfg: CodecConfig) -> PatchSelection:
    """Codec selection: exactly K = cfg.num_patches patches out of cfg.frames sampled frames."""
    return _select(path, cfg)[0]


def select_with_frames(
    path: str | Path, cfg: CodecConfig
) -> tuple[PatchSelection, list[np.ndarray]]:
    """Selection plus the RGB canvases of the T sampled frames (for drawing them)."""
    selection, frames, scorer = _select(path, cfg)
    return selection, [scorer.canvas(f) for f in frames]


def _select(
    path: str | Path, cfg: CodecConfig
) -> tuple[PatchSelection, list[ScoredFrame], FrameScorer]:
    frame_ids, kept, scorer, meta = _decode_and_score(path, cfg, cfg.frames, with_scores=True)
    start = time.perf_counter()
    frames = [kept[int(i)] for i in frame_ids]
    scores = np.stack([f.scores for f in frames])
    geo = scorer.geometry
    per_frame = geo.grid * geo.grid
    whole = whole_frames([f.pict_type for f in frames], cfg.full_frame, cfg.num_patches, per_frame)
    positions, candidates = choose_rows(scores, geo.candidate_mask(), whole, cfg.num_patches)
    patches = cut_chosen(frame_ids, kept, scorer, positions, cfg.overlap)
    meta.update(
        policy=cfg.full_frame,
        whole_frames=whole,
        compensation=cfg.compensate,
        residual_mode=cfg.residual,
        fusion=cfg.fusion,
        K=cfg.num_patches,
        candidates=candidates,
    )
    meta["timings"]["select_s"] = time.perf_counter() - start
    meta["timings"]["total_s"] += meta["timings"]["select_s"]
    selection = PatchSelection(
        kind="codec",
        frame_ids=frame_ids.astype(np.int32),
        positions=positions,
        patches=patches,
        frame_times=codec_timeline(cfg.frames),
        grid=(geo.grid, geo.grid),
        meta=meta,
    )
    return selection, frames, scorer


def uniform_frames(path: str | Path, num_frames: int, cfg: CodecConfig) -> PatchSelection:
    """Baseline with the same output type: n uniform frames, every patch, t = linspace(0, 63, n)."""
    frame_ids, kept, scorer, meta = _decode_and_score(path, cfg, num_frames, with_scores=False)
    geo = scorer.geometry
    per_frame = geo.grid * geo.grid
    flat = np.arange(num_frames * per_frame)
    t, rest = np.divmod(flat, per_frame)
    h, w = np.divmod(rest, geo.grid)
    positions = np.stack([t, h, w], axis=1).astype(np.int32)
    meta.update(policy="uniform", K=len(positions), candidates=len(positions))
    return PatchSelection(
        kind="frames",
        frame_ids=frame_ids.astype(np.int32),
        positions=positions,
        patches=cut_chosen(frame_ids, kept, scorer, positions, cfg.overlap),
        frame_times=uniform_timeline(num_frames),
        grid=(geo.grid, geo.grid),
        meta=meta,
    )
