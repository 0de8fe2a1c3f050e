"""Per-frame work of a selection: the saliency scores and RGB canvases of the sampled frames
of one video, as the decode yields them, and cutting the chosen patches from those canvases.

Frames larger than their canvas region are painted while decoding into a per-thread block of
canvases; smaller ones (upscaled: small videos, where decoding is cheap and the 576 canvas is
not) are kept and painted after the top-K, only where patches were chosen.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import av
import numpy as np

from encoder.codec import motion, residual, saliency
from encoder.codec.canvas import (
    CanvasConverter,
    CanvasGeometry,
    PatchPooler,
    canvas_geometry,
    cut_patches,
)
from encoder.codec.config import CodecConfig
from encoder.codec.decode import SampledFrame


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


def score_frames(
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


def cut_chosen(
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
