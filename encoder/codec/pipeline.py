"""Codec patch selection of one video, top to bottom (PAPER.md section 2).

open the video (count and keep its packets, `video.py`) → plan T frame ids (`plan.py`) →
decode once, scoring each sampled frame as it comes (`frames.py`: motion and residual cues →
`saliency.score_frame` on the `Canvas`) → whole frames by policy and one global top-K over the
rest (`topk.py`; `random` ranks seeded draws instead of scores, `policies.py`) → cut the chosen
patches (→ `shuffle` permutes their positions). `uniform_frames`, the dense baseline, shares the
decode and the canvas and keeps every patch.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path

import numpy as np
from threadpoolctl import ThreadpoolController

from encoder.codec.config import CodecConfig
from encoder.codec.errors import VideoDecodeError
from encoder.codec.frames import SampledFrames, score_frames
from encoder.codec.plan import resolve_plan, sample_indices
from encoder.codec.policies import parse_controls, random_scores, shuffle_positions, video_rng
from encoder.codec.selection import PatchSelection, codec_timeline, uniform_timeline
from encoder.codec.topk import choose_rows, whole_frames
from encoder.codec.video import open_video


def select_patches(path: str | Path, cfg: CodecConfig) -> PatchSelection:
    """Codec selection: exactly K = cfg.num_patches patches out of cfg.frames sampled frames."""
    return _select(path, cfg)[0]


def select_with_frames(
    path: str | Path, cfg: CodecConfig
) -> tuple[PatchSelection, list[np.ndarray]]:
    """Selection plus the RGB canvases of the T sampled frames (for drawing them)."""
    selection, sampled, _ = _select(path, cfg)
    return selection, sampled.canvases(selection.frame_ids)


def select_with_scores(
    path: str | Path, cfg: CodecConfig
) -> tuple[PatchSelection, np.ndarray, np.ndarray]:
    """Selection plus the scores it chose on, [T, hb, wb] (saliency, or the seeded draws of
    `random`), and the candidate mask [hb, wb] (False on padding), for checking a selection."""
    selection, sampled, scores = _select(path, cfg)
    return selection, scores, sampled.canvas.candidate_mask()


def _select(path: str | Path, cfg: CodecConfig) -> tuple[PatchSelection, SampledFrames, np.ndarray]:
    controls = parse_controls(cfg.controls)
    # `random` needs no saliency: the same frames are decoded and painted, but not scored
    scored = cfg.policy == "saliency"
    frame_ids, sampled, meta = _decode_and_score(path, cfg, cfg.frames, with_scores=scored)
    start = time.perf_counter()
    frames = [sampled.by_ordinal[int(i)] for i in frame_ids]
    canvas = sampled.canvas
    if scored:
        scores = np.stack([f.scores for f in frames])
    else:
        scores = random_scores(str(path), (len(frames), canvas.grid, canvas.grid))
    per_frame = canvas.grid * canvas.grid
    whole = whole_frames([f.pict_type for f in frames], cfg.full_frame, cfg.num_patches, per_frame)
    candidate_mask = canvas.candidate_mask()
    if not whole and not candidate_mask.any():
        raise VideoDecodeError(
            path,
            f"nothing to select: no patch of the {canvas.resize_h}x{canvas.resize_w} px frame "
            f"on the {canvas.size} px canvas is a whole {canvas.patch} px patch, and "
            f"full_frame={cfg.full_frame!r} keeps no frame whole",
        )
    tie_rng = video_rng(str(path), "nonsalient") if controls.nonsalient else None
    positions, candidates = choose_rows(
        scores, candidate_mask, whole, cfg.num_patches, controls.nonsalient, tie_rng
    )
    patches = sampled.cut(frame_ids, positions, cfg.overlap)  # needs positions sorted by t
    if controls.shuffle:
        positions = shuffle_positions(str(path), positions)
    meta.update(
        policy=cfg.full_frame,
        whole_frames=whole,
        compensation=cfg.compensate,
        residual_mode=cfg.residual,
        fusion=cfg.fusion,
        residual_weight=cfg.residual_weight,
        settings=cfg.selection_settings(),
        selection_policy=cfg.policy,
        controls=list(cfg.controls),
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
        grid=(canvas.grid, canvas.grid),
        meta=meta,
    )
    return selection, sampled, scores


def uniform_frames(path: str | Path, num_frames: int, cfg: CodecConfig) -> PatchSelection:
    """Baseline with the same output type: n uniform frames, every patch, t = linspace(0, 63, n)."""
    frame_ids, sampled, meta = _decode_and_score(path, cfg, num_frames, with_scores=False)
    grid = sampled.canvas.grid
    flat = np.arange(num_frames * grid * grid)
    t, rest = np.divmod(flat, grid * grid)
    h, w = np.divmod(rest, grid)
    positions = np.stack([t, h, w], axis=1).astype(np.int32)
    meta.update(policy="uniform", K=len(positions), candidates=len(positions))
    return PatchSelection(
        kind="frames",
        frame_ids=frame_ids.astype(np.int32),
        positions=positions,
        patches=sampled.cut(frame_ids, positions, cfg.overlap),
        frame_times=uniform_timeline(num_frames),
        grid=(grid, grid),
        meta=meta,
    )


@functools.cache
def _blas_controller() -> ThreadpoolController:
    # Built once: inspecting the loaded libraries costs far more than setting the limit.
    return ThreadpoolController()


def _single_blas_thread(fn):
    """Run with one BLAS thread: the per-frame matrices are small, and OpenBLAS workers that
    spin on the other cores would double the CPU time (and starve dataloader workers)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with _blas_controller().limit(limits=1, user_api="blas"):
            return fn(*args, **kwargs)

    return wrapper


@_single_blas_thread
def _decode_and_score(
    path: str | Path, cfg: CodecConfig, count: int, with_scores: bool
) -> tuple[np.ndarray, SampledFrames, dict]:
    """The frame ids of the `count` sampled frames, the frames scored (`with_scores`) and
    painted, and the selection's meta so far."""
    start = time.perf_counter()
    with open_video(path, cfg) as video:
        plan = sample_indices(video.num_packets, count)
        wanted = set(plan.tolist())
        decode = video.decode(wanted, cfg, with_motion=with_scores)
        sampled = score_frames(decode, cfg, len(wanted), with_scores)
    if sampled is None:
        raise VideoDecodeError(path, "no sampled frame could be decoded")
    frame_ids, exact = resolve_plan(plan, sorted(sampled.by_ordinal), decode.frames_decoded)
    canvas = sampled.canvas
    width, height = video.width, video.height
    if canvas.rotation % 180:
        width, height = height, width
    # wall time of the decode loop (without the scoring and painting it waited for)
    waited = 0.0 if cfg.overlap else sampled.score_seconds + sampled.paint_seconds
    meta = {
        "source": str(path),
        "source_codec": video.codec,
        "resolution": [width, height],
        "rotation": canvas.rotation,
        "fps": video.fps,
        "motion_source": video.motion_source if with_scores else "none",
        "frames_planned": video.num_packets,
        "frames_decoded": decode.frames_decoded,
        "frames_in_header": video.header_frames,
        "plan_exact": exact and video.demux_error is None,
        "demux_error": video.demux_error,
        "packet_errors": decode.packet_errors,
        "frames_with_vectors": decode.frames_with_vectors,
        "T": count,
        "canvas": {
            "mode": canvas.mode,
            "size": canvas.size,
            "patch": canvas.patch,
            "resize": [canvas.resize_h, canvas.resize_w],
            "offset": [canvas.offset_y, canvas.offset_x],
        },
        "hb": canvas.grid,
        "wb": canvas.grid,
        "pad_box": list(canvas.content_box),
        "timings": {
            "decode_s": decode.seconds - waited,
            "score_s": sampled.score_seconds,
            "canvas_s": sampled.paint_seconds,
            "total_s": time.perf_counter() - start,
        },
    }
    return frame_ids, sampled, meta
