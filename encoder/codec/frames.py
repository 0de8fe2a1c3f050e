"""The sampled frames of one video: scored and painted as the decode yields them, and the chosen
patches cut from their pixels.

Frames larger than their canvas region are painted while decoding, into a block of canvases
reused by the thread's next video; smaller ones (upscaled: small videos, where decoding is cheap
and the 576 canvas is not) are kept and painted after the top-K, only where patches were chosen.
With `cfg.overlap`, a helper thread scores and paints while the calling thread decodes on (PyAV
and swscale release the GIL).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import chain

import av
import numpy as np

from encoder.codec.canvas import Canvas, Painter, cut_patches
from encoder.codec.config import CodecConfig
from encoder.codec.pooling import PatchPooler
from encoder.codec.saliency import frame_cues, score_frame
from encoder.codec.video import SampledFrame


@dataclass
class ScoredFrame:
    ordinal: int
    pict_type: int
    slot: int  # when painted while decoding, its canvas is SampledFrames.painted[slot]
    scores: np.ndarray | None  # [grid, grid] float32 patch saliency (None for uniform frames)
    score_seconds: float
    frame: av.VideoFrame | None = None  # kept instead when painting after the selection


_thread_canvases = threading.local()


def canvas_block(slots: int, size: int) -> np.ndarray:
    """[slots, size, size, 3] uint8 scratch for the sampled frames' canvases, reused by the
    next video on the same thread: fresh memory for 64 canvases of 1 MB each costs more in page
    faults and kernel zeroing than painting them. The block stays allocated per thread (64 MB
    at T=64 on the 576 canvas); callers get copies (patches are cut out; `canvases` copies)."""
    block = getattr(_thread_canvases, "block", None)
    if block is None or block.shape[0] < slots or block.shape[1] != size:
        block = np.empty((max(slots, 1), size, size, 3), np.uint8)
        _thread_canvases.block = block
    return block[:slots]


def paints_after_selection(height: int, width: int, canvas: Canvas) -> bool:
    """Whether frames are painted after the selection (from the kept decoded frames) rather
    than while decoding: when the frame is smaller than its canvas region, so keeping it costs
    less memory than a canvas and painting is the dearer part of the work."""
    return height * width < canvas.resize_h * canvas.resize_w


@dataclass
class SampledFrames:
    """The scored sampled frames of one video, by ordinal, and their pixels: canvases painted
    while decoding (`painted`), or else the decoded frames kept for painting later."""

    by_ordinal: dict[int, ScoredFrame]
    canvas: Canvas
    painted: np.ndarray | None  # [slots, size, size, 3], the thread's canvas block
    paint_seconds: float  # painting while decoding

    @property
    def score_seconds(self) -> float:
        return sum(scored.score_seconds for scored in self.by_ordinal.values())

    def canvases(self, frame_ids: np.ndarray) -> list[np.ndarray]:
        """Copies of the RGB canvases [size, size, 3] of the frames `frame_ids` (for drawing)."""
        painter = Painter()
        return [self._canvas(self.by_ordinal[int(i)], painter) for i in frame_ids]

    def _canvas(self, scored: ScoredFrame, painter: Painter) -> np.ndarray:
        if self.painted is None:
            return self.canvas.paint(scored.frame, painter)
        return self.painted[scored.slot].copy()

    def cut(self, frame_ids: np.ndarray, positions: np.ndarray, overlap: bool) -> np.ndarray:
        """Pixels of the patches at `positions` (rows sorted by t), [K, 3, p, p] uint8."""
        patch = self.canvas.patch
        if self.painted is not None:  # one gather over the painted canvases
            slot_of_t = np.array([self.by_ordinal[int(i)].slot for i in frame_ids])
            slots, rows, cols = slot_of_t[positions[:, 0]], positions[:, 1], positions[:, 2]
            return cut_patches(self.painted, slots, rows, cols, patch)
        # Paint each frame that has chosen patches into a scratch canvas and cut them; rows are
        # sorted by t, so each frame's rows are one run. With `overlap`, on two threads.
        out = np.empty((len(positions), 3, patch, patch), np.uint8)
        ts, starts = np.unique(positions[:, 0], return_index=True)
        ends = np.append(starts[1:], len(positions))
        runs = [
            (self.by_ordinal[int(frame_ids[t])].frame, a, b)
            for t, a, b in zip(ts, starts, ends, strict=True)
        ]

        def paint_and_cut(runs: list, painter: Painter) -> None:
            scratch = np.empty((1, self.canvas.size, self.canvas.size, 3), np.uint8)
            for frame, a, b in runs:
                self.canvas.paint(frame, painter, scratch[0])
                rows, cols = positions[a:b, 1], positions[a:b, 2]
                out[a:b] = cut_patches(scratch, np.zeros(b - a, np.int64), rows, cols, patch)

        if overlap and len(runs) > 1:
            with ThreadPoolExecutor(max_workers=1) as pool:
                helper = pool.submit(paint_and_cut, runs[1::2], Painter())
                paint_and_cut(runs[::2], Painter())
                helper.result()
        else:
            paint_and_cut(runs, Painter())
        return out


def score_frames(
    frames: Iterable[SampledFrame], cfg: CodecConfig, slots: int, with_scores: bool = True
) -> SampledFrames | None:
    """Score (and unless painting after the selection, paint) every sampled frame the decode
    yields, in slots 0, 1, ... by arrival; None when it yields none. `slots`: how many distinct
    frames will come.

    With `cfg.overlap`, when the helper thread falls two frames behind, the calling thread
    paints the next frame itself. Who paints changes no pixel."""
    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        return None
    height, width = first.luma.shape
    # The canvas depends on the display rotation, which only a decoded frame carries.
    canvas = Canvas.fit(height, width, cfg.canvas, cfg.canvas_size, cfg.patch, first.rotation)
    pooler = PatchPooler(canvas, height, width) if with_scores else None
    paint_later = paints_after_selection(height, width, canvas)
    painted = None if paint_later else canvas_block(slots, canvas.size)
    # swscale contexts are not thread-safe: painters[0] paints inside `score` (on the helper
    # thread when overlapping), painters[1] on the calling thread when the helper falls behind.
    painters = (Painter(), Painter())

    def score(sf: SampledFrame, slot: int, paint: bool) -> ScoredFrame:
        start = time.perf_counter()
        scores = score_frame(*frame_cues(sf, cfg), pooler, cfg) if with_scores else None
        scored = ScoredFrame(sf.ordinal, sf.pict_type, slot, scores, time.perf_counter() - start)
        if paint_later:
            scored.frame = sf.frame
        elif paint:
            canvas.paint(sf.frame, painters[0], painted[slot])
        return scored

    all_frames = enumerate(chain([first], frames))
    if not cfg.overlap:
        kept = [score(sf, slot, paint=True) for slot, sf in all_frames]
    else:
        pending: list[Future] = []
        with ThreadPoolExecutor(max_workers=1) as pool:
            for slot, sf in all_frames:
                behind = len(pending) >= 2 and not (pending[-1].done() or pending[-2].done())
                main_paints = behind and not paint_later
                pending.append(pool.submit(score, sf, slot, paint=not main_paints))
                if main_paints:
                    canvas.paint(sf.frame, painters[1], painted[slot])
        kept = [future.result() for future in pending]
    paint_seconds = sum(painter.seconds for painter in painters)
    return SampledFrames({s.ordinal: s for s in kept}, canvas, painted, paint_seconds)
