"""Draw the sampled frames with the chosen patches highlighted, for judging a selection by eye."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from encoder.codec.selection import PatchSelection
from encoder.files import atomic_file

DIM = 0.3  # brightness of patches that were not chosen


def selection_sheet(
    selection: PatchSelection, canvases: list[np.ndarray], columns: int = 8, thumb: int = 192
) -> Image.Image:
    """A contact sheet: one tile per sampled frame, unchosen patches dimmed, labelled t / frame."""
    hb, wb = selection.grid
    tiles = []
    for t, canvas in enumerate(canvases):
        p = canvas.shape[0] // hb
        chosen = np.zeros((hb, wb), bool)
        rows = selection.positions[selection.positions[:, 0] == t]
        chosen[rows[:, 1], rows[:, 2]] = True
        weight = np.where(chosen, 1.0, DIM).repeat(p, 0).repeat(p, 1)[..., None]
        tile = Image.fromarray((canvas * weight).astype(np.uint8)).resize((thumb, thumb))
        draw = ImageDraw.Draw(tile)
        label = f"t={t} f={int(selection.frame_ids[t])} n={int(chosen.sum())}"
        draw.rectangle((0, 0, thumb, 12), fill=(0, 0, 0))
        draw.text((2, 0), label, fill=(255, 255, 0))
        tiles.append(tile)
    n_rows = -(-len(tiles) // columns)
    sheet = Image.new("RGB", (columns * thumb, n_rows * thumb))
    for i, tile in enumerate(tiles):
        sheet.paste(tile, ((i % columns) * thumb, (i // columns) * thumb))
    return sheet


def save_sheet(image: Image.Image, path: str | Path) -> Path:
    """Save as PNG, atomically."""
    with atomic_file(path) as tmp:
        image.save(tmp, format="PNG")
    return Path(path)
