"""Pixels for a teacher: an image as one RGB picture, a video as its uniform frames.

A video gives `count` frames at floor(linspace(0, N-1, count)) of its N frames (the sampling
every uniform-frame path of the project uses, `encoder.codec.plan`), decoded once, shown in
their display rotation. When the decoder yields another frame count than the container
promised, the plan is redone on the decoded count (`resolve_plan`), as codec selection does.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from encoder.codec.config import CodecConfig
from encoder.codec.errors import VideoDecodeError
from encoder.codec.plan import resolve_plan, sample_indices
from encoder.codec.video import open_video
from encoder.producers import ImageDecodeError

VIDEO_FRAMES = 8  # PAPER.md section 4: a video's teacher embedding spans 8 uniform frames


def load_image(path: str | Path) -> Image.Image:
    """The image at `path` in RGB; `ImageDecodeError` names the file when it cannot be read."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageDecodeError(f"{path}: not a readable image ({exc})") from exc


def uniform_video_frames(path: str | Path, count: int = VIDEO_FRAMES) -> list[Image.Image]:
    """`count` uniformly sampled RGB frames of the video, in time order (a frame repeats when
    the video has fewer); `VideoDecodeError` names the file when it cannot be decoded."""
    cfg = CodecConfig()  # decode limits and threads only: no patch selection happens here
    with open_video(path, cfg) as video:
        plan = sample_indices(video.num_packets, count)
        decode = video.decode(set(plan.tolist()), cfg, with_motion=False)
        kept: dict[int, Image.Image] = {}
        for sampled in decode:
            image = sampled.frame.to_image()
            if sampled.rotation:
                image = image.rotate(sampled.rotation, expand=True)  # counter-clockwise
            kept[sampled.ordinal] = image
    if not kept:
        raise VideoDecodeError(path, "no sampled frame could be decoded")
    frame_ids, _ = resolve_plan(plan, sorted(kept), decode.frames_decoded)
    return [kept[int(i)] for i in frame_ids]
