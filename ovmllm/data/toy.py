"""A toy LLaVA dataset the project generates itself, for the tiny CPU stages and tests.

Images: a coloured shape on a grey textured background, asked "What is in the picture?" and
answered with its colour and shape ("A red circle."). Videos: a textured square that moves
or a static scene (encoder/codec/synthetic.py), asked whether anything moves. The answers
depend on the media, so a model can only get below the answer-prior loss by looking; held-out
rows are new draws of the same kinds. Written whole or not at all (encoder/files.py): a folder
that exists is complete.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from encoder.files import atomic_dir

COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 80, 220),
           "yellow": (230, 210, 40)}  # fmt: skip
SHAPES = ("square", "circle", "triangle")
VIDEO_ANSWERS = {"mover": "Yes, a square moves across the scene.", "static": "No, nothing moves."}


@dataclass
class ToyDataConfig:
    images: int = 48
    """Training rows with an image."""
    videos: int = 8
    """Training rows with a video."""
    heldout_images: int = 12
    """Held-out rows with an image."""
    heldout_videos: int = 2
    """Held-out rows with a video."""
    image_size: int = 112
    """Side of the square images in pixels."""
    video_size: tuple[int, int] = (160, 96)
    """(width, height) of the videos in pixels."""
    video_frames: int = 24
    """Frames per video."""
    seed: int = 0
    """Seed of every draw (shapes, colours, motion, row order)."""


def _draw_shape(path: Path, colour: str, shape: str, size: int, rng: np.random.Generator) -> None:
    base = rng.integers(90, 150, size=(size, size, 1)) + rng.integers(-12, 12, size=(size, size, 3))
    image = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    side = int(rng.integers(size // 3, size // 2))
    x, y = (int(v) for v in rng.integers(4, size - side - 4, size=2))
    box = (x, y, x + side, y + side)
    fill = COLOURS[colour]
    if shape == "square":
        draw.rectangle(box, fill=fill)
    elif shape == "circle":
        draw.ellipse(box, fill=fill)
    else:
        draw.polygon([(x + side // 2, y), (x, y + side), (x + side, y + side)], fill=fill)
    image.save(path)


def _rows(folder: Path, split: str, n_images: int, n_videos: int, cfg: ToyDataConfig, rng):
    rows = []
    for i in range(n_images):
        colour = str(rng.choice(list(COLOURS)))
        shape = str(rng.choice(SHAPES))
        name = f"images/{split}_{i:04d}.png"
        _draw_shape(folder / name, colour, shape, cfg.image_size, rng)
        rows.append({
            "id": f"{split}-image-{i}", "image": name,
            "conversations": [
                {"from": "human", "value": "<image>\nWhat is in the picture?"},
                {"from": "gpt", "value": f"A {colour} {shape}."},
            ],
        })  # fmt: skip
    width, height = cfg.video_size
    if n_videos:  # PyAV encodes them; image-only toy data (the GPU check's) needs no PyAV
        from encoder.codec.synthetic import write_synthetic_video
    for i in range(n_videos):
        kind = ("mover", "static")[i % 2]
        name = f"videos/{split}_{i:04d}.mp4"
        write_synthetic_video(
            folder / name, kind=kind, width=width, height=height, frames=cfg.video_frames,
            object_size=24, seed=int(rng.integers(1 << 30)),
        )  # fmt: skip
        rows.append({
            "id": f"{split}-video-{i}", "video": name,
            "conversations": [
                {"from": "human", "value": "<video>\nDoes anything move in this video?"},
                {"from": "gpt", "value": VIDEO_ANSWERS[kind]},
            ],
        })  # fmt: skip
    order = rng.permutation(len(rows))
    return [rows[i] for i in order]


def write_toy_dataset(out: str | Path, cfg: ToyDataConfig | None = None) -> Path:
    """`out`/train.jsonl and `out`/heldout.jsonl with their media; kept when already there with
    the same settings (recorded in `toy_config.json`), rewritten otherwise."""
    cfg = cfg or ToyDataConfig()
    out = Path(out)
    settings = json.dumps(asdict(cfg), sort_keys=True)
    recorded = out / "toy_config.json"
    if recorded.is_file() and recorded.read_text() == settings:
        return out
    with atomic_dir(out) as tmp:
        (tmp / "images").mkdir()
        (tmp / "videos").mkdir()
        rng = np.random.default_rng(cfg.seed)
        splits = {"train": (cfg.images, cfg.videos),
                  "heldout": (cfg.heldout_images, cfg.heldout_videos)}  # fmt: skip
        for split, (n_img, n_vid) in splits.items():
            rows = _rows(tmp, split, n_img, n_vid, cfg, rng)
            (tmp / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (tmp / "toy_config.json").write_text(settings)
    return out
