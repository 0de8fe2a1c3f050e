"""Producers of packed visual tokens for images and uniform frames, cut at a tower's patch size.

Codec selection (`encoder.codec`) is the third producer; all three give `PackedVisualTokens`.
The video producers load PyAV when they run, not on import, so images need no video library.
Image resolution policy (PAPER.md section 1):
- `square`: resize to size x size (the alignment stage: 504 x 504 → 36 x 36 patches of 14);
- `best_fit`: pick, among `resolutions`, the one that keeps the most of the image's own pixels
  (then wastes the least), resize keeping the aspect ratio, pad with zeros, encode as one
  native-resolution tile (the instruction stage: (574, 1120), (1120, 574), (1120, 1120), ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from encoder.codec.config import CodecConfig
from encoder.packed import PackedVisualTokens

INSTRUCT_RESOLUTIONS = [[574, 1120], [1120, 574], [1120, 1120], [1694, 574], [574, 1694]]


class ImageDecodeError(ValueError):
    """An image file could not be read: missing, unreadable, not an image, truncated."""


@dataclass
class ImagePolicy:
    mode: str = "square"
    """`square` (resized to size x size) or `best_fit` (the best of `resolutions`)."""
    size: int = 504
    """Side in px in `square` mode."""
    resolutions: list[list[int]] = field(
        default_factory=lambda: [list(r) for r in INSTRUCT_RESOLUTIONS]
    )
    """(height, width) candidates in `best_fit` mode."""

    def __post_init__(self) -> None:
        if self.mode not in ("square", "best_fit"):
            raise ValueError(f"image policy mode={self.mode!r} is not square or best_fit")

    def target(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) the image is brought to."""
        if self.mode == "square":
            return self.size, self.size
        return best_fit(height, width, [tuple(r) for r in self.resolutions])


def best_fit(height: int, width: int, resolutions: list[tuple[int, int]]) -> tuple[int, int]:
    """The (height, width) that keeps the most effective pixels, ties to the least padding."""

    def score(res: tuple[int, int]) -> tuple[int, int]:
        h, w = res
        scale = min(h / height, w / width)
        effective = min(int(height * scale) * int(width * scale), height * width)
        return effective, -(h * w - effective)

    return max(resolutions, key=score)


def cut_grid(pixels: np.ndarray, patch: int) -> np.ndarray:
    """[H, W, 3] uint8 (H, W multiples of patch) → [H/p * W/p, 3, p, p], row-major."""
    h, w = pixels.shape[0] // patch, pixels.shape[1] // patch
    cells = pixels[: h * patch, : w * patch].reshape(h, patch, w, patch, 3)
    return np.ascontiguousarray(cells.transpose(0, 2, 4, 1, 3).reshape(h * w, 3, patch, patch))


def image_item(
    image: Image.Image | str | Path, policy: ImagePolicy, patch: int, multiple: int = 1
) -> PackedVisualTokens:
    """One image as a packed item of kind `image`, grid (1, H/p, W/p), t = 0; the grid sides are
    rounded down to a multiple of `multiple` (a tower's own spatial merge)."""
    if not isinstance(image, Image.Image):
        try:
            image = Image.open(image)
            image.load()
        except (OSError, ValueError) as exc:
            raise ImageDecodeError(f"{image}: not a readable image ({exc})") from exc
    image = image.convert("RGB")
    th, tw = policy.target(image.height, image.width)
    unit = patch * multiple
    th, tw = max(unit, th // unit * unit), max(unit, tw // unit * unit)
    if policy.mode == "square":
        canvas = np.asarray(image.resize((tw, th), Image.BICUBIC))
    else:
        scale = min(th / image.height, tw / image.width)
        nh, nw = max(1, round(image.height * scale)), max(1, round(image.width * scale))
        canvas = np.zeros((th, tw, 3), np.uint8)
        top, left = (th - nh) // 2, (tw - nw) // 2
        canvas[top : top + nh, left : left + nw] = np.asarray(image.resize((nw, nh), Image.BICUBIC))
    gh, gw = th // patch, tw // patch
    hh, ww = np.divmod(np.arange(gh * gw), gw)
    positions = np.stack([np.zeros_like(hh), hh, ww], 1).astype(np.int32)
    return PackedVisualTokens(
        patches=torch.from_numpy(cut_grid(canvas, patch)),
        positions=torch.from_numpy(positions),
        cu_seqlens=torch.tensor([0, gh * gw], dtype=torch.int32),
        kinds=["image"],
        grids=[(1, gh, gw)],
    )


def frames_config(num_frames: int, size: int, patch: int) -> CodecConfig:
    """The settings `frames_item` decodes with (and a frames cache is keyed on)."""
    return CodecConfig(frames=num_frames, canvas_size=size, patch=patch, budget_frames=num_frames)


def frames_item(video: str | Path, num_frames: int, size: int, patch: int) -> PackedVisualTokens:
    """n uniform frames letterboxed to size x size, every patch, t = linspace(0, 63, n)."""
    from encoder.codec.pipeline import uniform_frames  # decodes: PyAV loads only for video

    cfg = frames_config(num_frames, size, patch)
    return uniform_frames(video, num_frames, cfg).to_packed()


def collage_item(
    frames: PackedVisualTokens,
    policy: ImagePolicy,
    patch: int,
    multiple: int = 1,
    rows: int = 2,
    columns: int = 4,
) -> PackedVisualTokens:
    """A video's uniform frames (one full-grid `frames` item of rows x columns frames, e.g. from
    `frames_item` or the frames cache) tiled row-major into one picture, time running left to
    right then top to bottom, and brought to `policy`'s resolution as an `image` item (PAPER.md
    section 4: 8 frames as 2 rows x 4 columns). The frames keep their canvas (letterbox padding
    included); in `square` mode the 2:1 mosaic is squeezed to a square, as a resize does."""
    if len(frames) != 1 or frames.kinds[0] != "frames" or frames.grids[0] is None:
        raise ValueError("a collage is made of one full-grid `frames` item")
    t, gh, gw = frames.grids[0]
    if t != rows * columns:
        raise ValueError(f"a {rows} x {columns} collage needs {rows * columns} frames, got {t}")
    p = frames.patch_size
    # [T*gh*gw, 3, p, p] row-major per frame → [rows, columns, gh, p, gw, p, 3] → one picture
    cells = frames.patches.reshape(rows, columns, gh, gw, 3, p, p)
    mosaic = cells.permute(0, 2, 5, 1, 3, 6, 4).reshape(rows * gh * p, columns * gw * p, 3)
    return image_item(Image.fromarray(mosaic.numpy()), policy, patch, multiple)
