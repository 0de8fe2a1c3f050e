"""The pipeline's patch scores and selection on a real clip against a slow, float64 reference of
the per-frame score written straight from PAPER.md section 2 (items 2-5, 11, 12), sharing no
code with the pipeline beyond the decoded frames it exposes (`video.open_video`)."""

import numpy as np
import torch
import torch.nn.functional as F

from encoder.codec import CodecConfig, select_patches
from encoder.codec.frames import score_frames
from encoder.codec.plan import sample_indices
from encoder.codec.video import open_video

# 15 sampled frames (one of them, frame 173 of the smaller demo clip, an I-frame), 4 frame-
# equivalents: frame 0 whole and 3888 patches chosen from the 14 others.
CFG = CodecConfig(frames=15, budget_frames=4)


def reference_motion(vectors, height: int, width: int) -> np.ndarray:
    """Motion magnitude per pixel [H, W]: one vector per 4x4 cell, each L0 block filling the
    cells of its footprint (later blocks win), whole pixels src - dst (sub-pixel motion
    truncated toward 0), cells without a vector 0; the per-frame median vector over all cells
    (zeros included) subtracted; magnitude; nearest-neighbour upsampled to the pixels."""
    rows, cols = -(-height // 4), -(-width // 4)
    vx, vy = np.zeros((rows, cols)), np.zeros((rows, cols))
    for mv in vectors if vectors is not None else []:
        if mv["source"] >= 0:  # predicted from the future only: no motion
            continue
        dx = np.trunc(mv["motion_x"] / mv["motion_scale"])
        dy = np.trunc(mv["motion_y"] / mv["motion_scale"])
        left, top = int(mv["dst_x"]) - int(mv["w"]) // 2, int(mv["dst_y"]) - int(mv["h"]) // 2
        for y in range(top, top + int(mv["h"]), 4):
            for x in range(left, left + int(mv["w"]), 4):
                if 0 <= y // 4 < rows and 0 <= x // 4 < cols:
                    vx[y // 4, x // 4], vy[y // 4, x // 4] = dx, dy
    vx, vy = vx - np.median(vx), vy - np.median(vy)
    magnitude = np.sqrt(vx**2 + vy**2)
    return np.repeat(np.repeat(magnitude, 4, axis=0), 4, axis=1)[:height, :width]


def reference_scores(sampled, cfg: CodecConfig) -> np.ndarray:
    """[grid, grid] patch scores of one sampled frame on the letterbox canvas."""
    height, width = sampled.luma.shape
    motion = reference_motion(sampled.motion_vectors, height, width)
    if sampled.prev_luma is None or sampled.pict_type == 1:  # first frame, I-frame: no residual
        residual = np.zeros((height, width))
    else:
        residual = np.abs(sampled.luma.astype(np.float64) - sampled.prev_luma.astype(np.float64))
    m = np.clip(motion / max(np.percentile(motion, 95), cfg.motion_floor), 0, 1)
    r = np.clip(residual / max(np.percentile(residual, 95), cfg.residual_floor), 0, 1)
    w = cfg.residual_weight
    fused = (m + w * r) / (1 + w)
    # letterbox: longer side to the canvas, rounded, centred (floor offsets), zero padding
    size, patch = cfg.canvas_size, cfg.patch
    scale = size / max(height, width)
    rh, rw = round(height * scale), round(width * scale)
    top, left = (size - rh) // 2, (size - rw) // 2
    resized = F.interpolate(torch.from_numpy(fused)[None, None], size=(rh, rw), mode="bilinear")
    canvas = np.zeros((size, size))
    canvas[top : top + rh, left : left + rw] = resized[0, 0].numpy()
    grid = size // patch
    return canvas.reshape(grid, patch, grid, patch).sum(axis=(1, 3))


def reference_selection(scores: np.ndarray, height: int, width: int, cfg: CodecConfig) -> set:
    """Frame 0 whole; the rest of K by one global top-K over patches wholly inside the picture."""
    t_count, grid, _ = scores.shape
    size, patch = cfg.canvas_size, cfg.patch
    scale = size / max(height, width)
    rh, rw = round(height * scale), round(width * scale)
    top, left = (size - rh) // 2, (size - rw) // 2
    chosen = {(0, h, w) for h in range(grid) for w in range(grid)}
    candidates = [
        (scores[t, h, w], t, h, w)
        for t in range(1, t_count)
        for h in range(grid)
        for w in range(grid)
        if top <= h * patch and (h + 1) * patch <= top + rh
        and left <= w * patch and (w + 1) * patch <= left + rw
    ]  # fmt: skip
    candidates.sort(key=lambda c: -c[0])
    chosen |= {c[1:] for c in candidates[: cfg.num_patches - len(chosen)]}
    return chosen


def test_patch_scores_and_selection_match_the_paper_written_out(real_videos):
    path = min(real_videos, key=lambda p: p.stat().st_size)
    frames = []

    def kept(decode):
        for sampled in decode:
            frames.append(sampled)
            yield sampled

    with open_video(path, CFG) as video:
        plan = sample_indices(video.num_packets, CFG.frames)
        wanted = set(plan.tolist())
        scored = score_frames(kept(video.decode(wanted, CFG)), CFG, len(wanted))
    by_ordinal = {sampled.ordinal: sampled for sampled in frames}
    assert frames[0].rotation == 0 and len(by_ordinal) == len(wanted) == CFG.frames
    assert any(by_ordinal[i].pict_type == 1 for i in plan[1:])  # an I-frame past frame 0
    got = np.stack([scored.by_ordinal[int(i)].scores for i in plan]).astype(np.float64)
    want = np.stack([reference_scores(by_ordinal[int(i)], CFG) for i in plan])
    assert (want[1:] > 0).mean() > 0.5  # most patches score: a real test of the values
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=0)  # measured: 4e-7, zeros exact

    height, width = frames[0].luma.shape
    reference = reference_selection(want, height, width, CFG)
    selected = {tuple(row) for row in select_patches(path, CFG).positions.tolist()}
    assert len(selected) == len(reference) == CFG.num_patches
    assert len(selected & reference) / len(selected | reference) >= 0.999
