"""Synthetic test videos with known ground truth, encoded with PyAV.

Used by the tests, the benchmarks and `ovmllm quickstart`, so every check of the selection
runs on a video whose salient region is known: a textured static background with a small
textured square moving across it (`mover`), the same under a camera pan (`pan`), a bright
square shown for a few frames only (`flash`), or nothing moving at all (`static`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from encoder.codec.config import CodecConfig

KINDS = ("mover", "pan", "flash", "static")


@dataclass
class SyntheticVideo:
    """Ground truth of a written synthetic video (boxes in display pixels, before rotation)."""

    path: Path
    width: int
    height: int
    frames: int
    boxes: np.ndarray  # [frames, 4] (top, left, bottom, right) of the object; -1 when absent
    event_frames: list[int] = field(default_factory=list)  # frames where the flash is visible


def _texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Natural-looking texture: smooth blobs plus fine grain, so the codec finds real matches."""
    coarse = rng.random((height // 16 + 2, width // 16 + 2, 3))
    ys = np.linspace(0, coarse.shape[0] - 1.001, height)
    xs = np.linspace(0, coarse.shape[1] - 1.001, width)
    y0, x0 = ys.astype(int), xs.astype(int)
    fy, fx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
    smooth = (
        coarse[y0][:, x0] * (1 - fy) * (1 - fx)
        + coarse[y0 + 1][:, x0] * fy * (1 - fx)
        + coarse[y0][:, x0 + 1] * (1 - fy) * fx
        + coarse[y0 + 1][:, x0 + 1] * fy * fx
    )
    grain = rng.random((height, width, 1))
    return np.clip(40 + 150 * smooth + 50 * grain, 0, 255).astype(np.uint8)


def write_synthetic_video(
    path: str | Path,
    kind: str = "mover",
    width: int = 224,
    height: int = 224,
    frames: int = 96,
    fps: int = 25,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    object_size: int = 32,
    pan_speed: int = 3,
    rotation: int | None = None,
    variable_frame_rate: bool = False,
    seed: int = 0,
    event_start: int | None = None,
    event_length: int = 3,
    encoder_options: dict[str, str] | None = None,
) -> SyntheticVideo:
    """Encode a synthetic clip to `path` (container from the suffix) and return its truth."""
    if kind not in KINDS:
        raise ValueError(f"synthetic kind {kind!r} is not one of {KINDS}")
    path = Path(path)
    object_size = max(1, min(object_size, min(width, height) // 3))
    rng = np.random.default_rng(seed)
    margin = pan_speed * frames + 8 if kind == "pan" else 0
    background = _texture(rng, height, width + margin)
    sprite = _texture(rng, object_size, object_size) // 2 + 120
    boxes = np.full((frames, 4), -1, np.int64)
    if event_start is None:
        event_start = frames // 2 - 4  # off the uniform 8-frame grid for most lengths
    events = list(range(event_start, event_start + event_length)) if kind == "flash" else []
    container = av.open(str(path), "w")
    try:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        if encoder_options:
            stream.options = dict(encoder_options)
        if variable_frame_rate:
            stream.codec_context.time_base = Fraction(1, 1000)
        if rotation is not None:
            stream.set_display_rotation(rotation)
        pts = 0
        for i in range(frames):
            x0 = pan_speed * i if kind == "pan" else 0
            image = background[:, x0 : x0 + width].copy()
            if kind in ("mover", "pan"):
                top = (height - object_size) // 2 + int(0.25 * height * np.sin(i / 9))
                left = int((width - object_size) * i / max(frames - 1, 1))
                image[top : top + object_size, left : left + object_size] = sprite
                boxes[i] = (top, left, top + object_size, left + object_size)
            if i in events:
                top, left = height // 4, width // 2
                image[top : top + object_size, left : left + object_size] = 255
                boxes[i] = (top, left, top + object_size, left + object_size)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            if variable_frame_rate:
                frame.pts = pts
                frame.time_base = Fraction(1, 1000)
                pts += int(rng.choice([20, 40, 80]))
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    finally:
        container.close()
    return SyntheticVideo(path, width, height, frames, boxes, events)


def object_patches(
    video: SyntheticVideo, cfg: CodecConfig, frames: int | None = None
) -> np.ndarray:
    """Canvas patches (t, h, w) at least half covered by the object, t >= 1 (t = 0 is whole),
    from the generator's own geometry: its boxes, its frame count sampled uniformly
    (`frames`, default `cfg.frames`), and `cfg`'s canvas laid out from first principles
    (letterbox fits the longer side, crop fills with the shorter, centred), independent of the
    pipeline's `Canvas`. The video must not be rotated."""
    count = cfg.frames if frames is None else frames
    size, p = cfg.canvas_size, cfg.patch
    fit = max if cfg.canvas == "letterbox" else min
    scale = size / fit(video.height, video.width)
    oy, ox = (size - video.height * scale) / 2, (size - video.width * scale) / 2
    starts = np.arange(size // p) * p
    frame_ids = np.floor(np.linspace(0, video.frames - 1, count)).astype(np.int64)
    cells = []
    for t, frame in enumerate(frame_ids):
        top, left, bottom, right = video.boxes[frame]
        if t == 0 or top < 0:
            continue
        cover_y = np.clip(
            np.minimum(bottom * scale + oy, starts + p) - np.maximum(top * scale + oy, starts), 0, p
        )
        cover_x = np.clip(
            np.minimum(right * scale + ox, starts + p) - np.maximum(left * scale + ox, starts), 0, p
        )
        hh, ww = np.nonzero(cover_y[:, None] * cover_x[None, :] >= 0.5 * p * p)
        cells.extend((t, h, w) for h, w in zip(hh, ww, strict=True))
    return np.asarray(cells, np.int64).reshape(-1, 3)


def recall(selected: np.ndarray, wanted: np.ndarray) -> float:
    """Fraction of `wanted` (t, h, w) rows present in `selected`."""
    if len(wanted) == 0:
        return 1.0
    chosen = {tuple(row) for row in selected.tolist()}
    return sum(tuple(row) in chosen for row in wanted.tolist()) / len(wanted)
