"""Where a frame lands on the square canvas that patches are cut from, and painting it there
(PAPER.md section 2, item 3).

- `letterbox` (LLM path, 576 px, 16-px cells): the longer side is scaled to the canvas,
  `round()` gives the other side (at least 1 px), the image is centred with floor offsets and
  zero padding. A patch is a candidate only when it lies fully inside the content box.
- `crop` (probe path, 224 px, 14-px patches): the shorter side is scaled to the canvas and the
  centre is cropped; every patch is content.
Maps (`pooling.py`) and pixels go through the same geometry (bilinear resize, like the
reference's INTER_LINEAR), after display rotation, so a score and the pixels it scores always
line up.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import av
import numpy as np
from av.video.reformatter import VideoReformatter


class Painter:
    """One thread's swscale contexts (a resize, then a conversion to RGB), cached across the
    frames of a video; not thread-safe, so each painting thread holds its own."""

    def __init__(self) -> None:
        self.scaler = VideoReformatter()
        self.to_rgb = VideoReformatter()
        self.seconds = 0.0  # spent painting so far


@dataclass(frozen=True)
class Canvas:
    """One video's canvas: the size its frames are resized to, where they land, and how they
    are turned for display."""

    mode: str
    size: int
    patch: int
    resize_h: int  # the frame (display orientation) is resized to resize_h x resize_w ...
    resize_w: int
    offset_y: int  # ... and its top-left corner lands here (negative: cropped away)
    offset_x: int
    rotation: int = 0  # display rotation of the decoded frames, degrees counter-clockwise

    @classmethod
    def fit(
        cls, height: int, width: int, mode: str, size: int, patch: int, rotation: int = 0
    ) -> Canvas:
        """The canvas for frames decoded at `height` x `width`, shown turned by `rotation`."""
        if rotation % 180:
            height, width = width, height
        if mode == "letterbox":
            scale = size / max(height, width)
            rh, rw = max(1, round(height * scale)), max(1, round(width * scale))
            return cls(mode, size, patch, rh, rw, (size - rh) // 2, (size - rw) // 2, rotation)
        scale = size / min(height, width)
        rh, rw = max(size, round(height * scale)), max(size, round(width * scale))
        offset_y, offset_x = -((rh - size) // 2), -((rw - size) // 2)
        return cls(mode, size, patch, rh, rw, offset_y, offset_x, rotation)

    @property
    def grid(self) -> int:
        return self.size // self.patch

    @property
    def content_box(self) -> tuple[int, int, int, int]:
        """(top, left, bottom, right) of real pixels on the canvas, bottom/right exclusive."""
        top, left = max(self.offset_y, 0), max(self.offset_x, 0)
        bottom = min(self.offset_y + self.resize_h, self.size)
        right = min(self.offset_x + self.resize_w, self.size)
        return top, left, bottom, right

    def candidate_mask(self) -> np.ndarray:
        """[grid, grid] bool: patches fully inside the content box."""
        top, left, bottom, right = self.content_box
        starts = np.arange(self.grid) * self.patch
        rows = (starts >= top) & (starts + self.patch <= bottom)
        cols = (starts >= left) & (starts + self.patch <= right)
        return rows[:, None] & cols[None, :]

    def paint(
        self, frame: av.VideoFrame, painter: Painter, out: np.ndarray | None = None
    ) -> np.ndarray:
        """The frame's RGB canvas [size, size, 3] uint8, written into `out` when given.

        The resize runs in the frame's own pixel format (for 4:2:0 video the chroma planes are
        a quarter of the work), then an unscaled conversion to RGB: faster than scaling straight
        to rgb24 and closer to a bilinear resize of the RGB frame (the reference's
        cv2.INTER_LINEAR); `benchmarks/codec_speed.py` measures both."""
        start = time.perf_counter()
        turns = self.rotation // 90 % 4
        out_h, out_w = self.resize_h, self.resize_w
        if turns % 2:  # resized in decoded orientation, turned after
            out_h, out_w = out_w, out_h
        resized = painter.scaler.reformat(
            frame, width=out_w, height=out_h, format=frame.format.name, interpolation="BILINEAR"
        )
        image = np.rot90(painter.to_rgb.reformat(resized, format="rgb24").to_ndarray(), turns)
        if out is None:
            out = np.empty((self.size, self.size, 3), np.uint8)
        self._paste(out, image)
        painter.seconds += time.perf_counter() - start
        return out

    def _paste(self, canvas: np.ndarray, image: np.ndarray) -> None:
        """Write `image` (the resized frame) onto `canvas` and zero the padding around it."""
        top, left, bottom, right = self.content_box
        src_y, src_x = top - self.offset_y, left - self.offset_x
        canvas[:top] = 0
        canvas[bottom:] = 0
        canvas[top:bottom, :left] = 0
        canvas[top:bottom, right:] = 0
        canvas[top:bottom, left:right] = image[
            src_y : src_y + bottom - top, src_x : src_x + right - left
        ]


def cut_patches(
    canvases: np.ndarray, slots: np.ndarray, rows: np.ndarray, cols: np.ndarray, patch: int
) -> np.ndarray:
    """Patches at grid cells (rows[i], cols[i]) of canvases[slots[i]]: [n, 3, p, p] uint8.

    `canvases` is [S, size, size, 3] RGB; viewed as cells, the whole cut is one numpy gather."""
    n_slots, size = canvases.shape[:2]
    g = size // patch
    cells = canvases.reshape(n_slots, g, patch, g, patch, 3).transpose(0, 1, 3, 5, 2, 4)
    return cells[slots, rows, cols]
