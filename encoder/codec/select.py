"""Codec patch selection for one video, top to bottom (PAPER.md section 2).

probe (count and keep packets) → plan T frame ids → decode once, scoring each sampled frame as
it comes (motion field → compensated magnitude, residual → normalise, fuse → rotate → canvas →
patch sums) → whole frames by policy → one global top-K over the rest → cut patches. A frame's
RGB canvas is painted while decoding when the frame is larger than its canvas region, and after
the top-K (only where patches were chosen) when it is smaller (`paints_after_selection`).
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from threadpoolctl import ThreadpoolController

from encoder.codec import motion, residual, saliency
from encoder.codec.canvas import (
    CanvasConverter,
    CanvasGeometry,
    PatchPooler,
    canvas_geometry,
    cut_patches,
)
from encoder.codec.config import CodecConfig
from encoder.codec.decode import PICT_TYPE_I, DecodeStats, SampledFrame, decode_sampled, probe_video
from encoder.codec.errors import VideoDecodeError
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


@dataclass
class ScoredFrame:
    ordinal: int
    pict_type: int
    slot: int  # when painted while decoding, its canvas is FrameScorer.canvases[slot]
    scores: np.ndarray | None  # [grid, grid] float32 patch saliency (None for uniform frames)
    frame: av.VideoFrame | None = None  # kept instead when painting is deferred


_thread_canvases = threading.local()


def _canvas_block(slots: int, size: int) -> np.ndarray:
    """[slots, size, size, 3] uint8 scratch for the sampled frames' canvases, reused by the
    next video on the same thread. Fresh memory for 64 canvases of 1 MB each costs more in
    page faults and kernel zeroing than making the canvases (~0.9 ms a frame); reused it is
    ~0.1 ms. The block stays allocated per thread (64 MB at T=64 on the 576 canvas); callers
    get copies (patches are cut out; `select_with_frames` copies the canvases)."""
    block = getattr(_thread_canvases, "block", None)
    if block is None or block.shape[0] < slots or block.shape[1] != size:
        block = np.empty((max(slots, 1), size, size, 3), np.uint8)
        _thread_canvases.block = block
    return block[:slots]


def paints_after_selection(height: int, width: int, geo: CanvasGeometry) -> bool:
    """Whether frames are painted after the selection (from the kept decoded frames) rather
    than while decoding: when the frame is smaller than its canvas region, so keeping it costs
    less memory than a canvas and painting is the dearer part of the work."""
    return height * width < geo.resize_h * geo.resize_w


class FrameScorer:
    """Scores and paints sampled frames; owns the video's canvas geometry and canvases.

    Frames smaller than their canvas region (upscaled: small videos, where decoding is cheap
    and the 576 canvas is not) are painted after the selection, only where patches were chosen
    and on two threads, from the decoded frames kept meanwhile (each smaller than its canvas);
    larger frames are painted while decoding into a per-thread block of canvases.
    `scores` runs on one thread at a time; each painter (swscale contexts, not thread-safe)
    too: painter 0 on the helper thread, 1 on the calling one.
    """

    def __init__(self, cfg: CodecConfig, slots: int, with_scores: bool = True) -> None:
        """`slots`: how many distinct frames will be scored."""
        self.cfg = cfg
        self.with_scores = with_scores
        self.slots = slots
        self.geometry: CanvasGeometry | None = None
        self.pooler: PatchPooler | None = None
        self.rotation = 0
        self.defer_paint = False
        self.canvases: np.ndarray | None = None
        self.score_seconds = 0.0
        self.painters = (CanvasConverter(), CanvasConverter())

    def setup(self, sf: SampledFrame) -> None:
        """Fix the geometry on the first frame (display size depends on its rotation). Runs on
        the calling thread, which owns the canvas block."""
        if self.geometry is not None:
            return
        h, w = sf.luma.shape
        self.rotation = sf.rotation
        if sf.rotation % 180:
            h, w = w, h
        cfg = self.cfg
        geo = canvas_geometry(h, w, cfg.canvas, cfg.canvas_size, cfg.patch)
        self.geometry = geo
        self.pooler = PatchPooler(geo, *sf.luma.shape, sf.rotation)
        self.defer_paint = paints_after_selection(h, w, geo)
        if not self.defer_paint:
            self.canvases = _canvas_block(self.slots, geo.size)

    def scores(self, sf: SampledFrame) -> np.ndarray | None:
        """[grid, grid] float32 patch saliency (None for uniform frames)."""
        if not self.with_scores:
            return None
        start = time.perf_counter()
        scores = self._scores(sf)
        self.score_seconds += time.perf_counter() - start
        return scores

    def paint(self, frame: av.VideoFrame, out: np.ndarray | None, painter: int = 0) -> np.ndarray:
        return self.painters[painter](frame, self.rotation, self.geometry, out)

    @property
    def paint_seconds(self) -> float:
        return sum(painter.seconds for painter in self.painters)

    def canvas(self, scored: ScoredFrame) -> np.ndarray:
        """A copy of the frame's RGB canvas [size, size, 3] (for drawing)."""
        if scored.frame is not None:
            return self.paint(scored.frame, None, painter=1)
        return self.canvases[scored.slot].copy()

    def _scores(self, sf: SampledFrame) -> np.ndarray:
        cfg = self.cfg
        h, w = sf.luma.shape
        vx, vy, covered = motion.motion_field(sf.motion_vectors, h, w)
        magnitude = motion.motion_magnitude(vx, vy, covered, cfg.compensate)
        if cfg.residual == "mc":
            res = residual.motion_compensated(sf.luma, sf.prev_luma, vx, vy)
        else:
            res = residual.frame_difference(sf.luma, sf.prev_luma)
        motion_map, motion_scale, res_map, res_scale = saliency.clip_to_percentile(
            magnitude, res, cfg.motion_floor, cfg.residual_floor
        )
        pooler = self.pooler
        if cfg.fusion in saliency.LINEAR_FUSIONS:  # pool each map on its own: no pixel motion map
            w_motion, w_res = saliency.LINEAR_FUSIONS[cfg.fusion]
            return (w_motion / motion_scale) * pooler.pool_cells(motion_map) + (
                w_res / res_scale
            ) * pooler.pool(res_map)
        motion_pixels = pooler.cells_to_display_pixels(motion_map) / np.float32(motion_scale)
        res_pixels = pooler.display(res_map) / np.float32(res_scale)
        return pooler.pool_display(saliency.fuse_pixels(motion_pixels, res_pixels, cfg.fusion))


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


def _score_all(
    frames: Iterator[SampledFrame], scorer: FrameScorer, overlap: bool
) -> dict[int, ScoredFrame]:
    """Score (and unless deferred, paint) every sampled frame the decode yields, in slots
    0, 1, ... by arrival.

    With `overlap`, a helper thread scores and paints while the main thread decodes on (PyAV
    and swscale release the GIL). When the helper falls two frames behind, the main thread
    paints the next frame itself. Who paints changes no pixel."""

    def score(sf: SampledFrame, slot: int, paint: bool) -> ScoredFrame:
        scored = ScoredFrame(sf.ordinal, sf.pict_type, slot, scorer.scores(sf))
        if scorer.defer_paint:
            scored.frame = sf.frame
        elif paint:
            scorer.paint(sf.frame, scorer.canvases[slot])
        return scored

    if not overlap:
        kept = {}
        for slot, sf in enumerate(frames):
            scorer.setup(sf)
            kept[sf.ordinal] = score(sf, slot, paint=True)
        return kept
    pending: list[Future] = []
    with ThreadPoolExecutor(max_workers=1) as pool:
        for slot, sf in enumerate(frames):
            scorer.setup(sf)
            behind = len(pending) >= 2 and not (pending[-1].done() or pending[-2].done())
            main_paints = behind and not scorer.defer_paint
            pending.append(pool.submit(score, sf, slot, paint=not main_paints))
            if main_paints:
                scorer.paint(sf.frame, scorer.canvases[slot], painter=1)
    return {scored.ordinal: scored for scored in (future.result() for future in pending)}


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
        kept = _score_all(frames, scorer, cfg.overlap)
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


def _cut(
    frame_ids: np.ndarray,
    kept: dict[int, ScoredFrame],
    scorer: FrameScorer,
    positions: np.ndarray,
    overlap: bool,
) -> np.ndarray:
    """Pixels of the selected patches, [K, 3, p, p] uint8."""
    patch = scorer.geometry.patch
    if not scorer.defer_paint:  # one gather over the painted canvases
        slot_of_t = np.array([kept[int(i)].slot for i in frame_ids])
        slots, rows, cols = slot_of_t[positions[:, 0]], positions[:, 1], positions[:, 2]
        return cut_patches(scorer.canvases, slots, rows, cols, patch)
    # Deferred: paint each frame that has chosen patches into a scratch canvas and cut them;
    # rows are sorted by t, so each frame's rows are one run.
    out = np.empty((len(positions), 3, patch, patch), np.uint8)
    ts, starts = np.unique(positions[:, 0], return_index=True)
    ends = np.append(starts[1:], len(positions))
    runs = [(kept[int(frame_ids[t])].frame, a, b) for t, a, b in zip(ts, starts, ends, strict=True)]

    def paint_and_cut(runs: list, painter: int) -> None:
        size = scorer.geometry.size
        scratch = np.empty((1, size, size, 3), np.uint8)
        for frame, a, b in runs:
            scorer.paint(frame, scratch[0], painter)
            rows, cols = positions[a:b, 1], positions[a:b, 2]
            out[a:b] = cut_patches(scratch, np.zeros(b - a, np.int64), rows, cols, patch)

    if overlap and len(runs) > 1:
        with ThreadPoolExecutor(max_workers=1) as pool:
            helper = pool.submit(paint_and_cut, runs[1::2], 0)
            paint_and_cut(runs[::2], 1)
            helper.result()
    else:
        paint_and_cut(runs, 1)
    return out


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
    patches = _cut(frame_ids, kept, scorer, positions, cfg.overlap)
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
        patches=_cut(frame_ids, kept, scorer, positions, cfg.overlap),
        frame_times=uniform_timeline(num_frames),
        grid=(geo.grid, geo.grid),
        meta=meta,
    )
