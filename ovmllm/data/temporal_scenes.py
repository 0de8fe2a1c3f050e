"""Scene planning of the generated temporal video QA (`ovmllm/data/temporal.py`): for each
family, what one video shows and asks — sprites with their corners per frame, the question, its
options and answer, a caption — from the row's own random stream, without pixels."""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ovmllm.data.temporal import TemporalConfig

SAMPLED_FRAMES = 64  # frames codec selection samples (CodecConfig.frames)
DENSE_FRAMES = 8  # frames of the uniform dense baseline
COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 80, 220),
           "yellow": (230, 210, 40)}  # fmt: skip
SHAPES = ("square", "circle", "triangle", "diamond")
NOTHING = "nothing appeared"
PATHS = {
    "horizontal": ("left", "right", "left, then back right", "right, then back left"),
    "vertical": ("up", "down", "up, then back down", "down, then back up"),
}
TIMES = ("once", "twice", "three times", "four times")


@dataclass
class Sprite:
    """A coloured shape: its top-left corner per frame, drawn where `shown` is True (it may be
    partly or wholly outside the frame)."""

    colour: str
    shape: str
    size: int
    corners: np.ndarray  # [frames, 2] int (top, left)
    shown: np.ndarray  # [frames] bool


@dataclass
class Scene:
    """What a family planner decides for one video."""

    question: str
    options: list[str]
    answer: int  # index into options
    truth: dict
    caption: str
    sprites: list[Sprite] = field(default_factory=list)
    background: str | None = None  # tint colour; None: neutral grey


def row_rng(seed: int, *parts: str | int) -> np.random.Generator:
    """An independent stream per (seed, purpose, split, family, index): one row's draws never
    depend on how many rows other families or splits have."""
    words = [zlib.crc32(p.encode()) if isinstance(p, str) else p for p in parts]
    return np.random.default_rng([seed, *words])


def _intervals(frames: int) -> tuple[float, float]:
    """Spacing of the 64 sampled and of the 8 dense frames on a video of `frames` frames."""
    return (frames - 1) / (SAMPLED_FRAMES - 1), (frames - 1) / (DENSE_FRAMES - 1)


def _span(rng: np.random.Generator, frames: int, length: int) -> tuple[int, int]:
    """[start, stop) of `length` frames, away from the first and last tenth of the video."""
    margin = frames // 10
    start = int(rng.integers(margin, frames - margin - length + 1))
    return start, start + length


def draw_event_span(rng: np.random.Generator, frames: int) -> tuple[int, int]:
    """[start, stop) of a flash lasting ceil(1.5..3 x the 64-frame sampling interval) frames.
    Consecutive 64-sample ids differ by at most ceil(interval), so every span of at least that
    many frames holds one of them; 8 uniform frames are ~9 intervals apart and usually miss it."""
    sampled, _ = _intervals(frames)
    return _span(rng, frames, math.ceil(rng.uniform(1.5, 3.0) * sampled))


def object_size(width: int, height: int) -> int:
    return max(8, round(0.18 * min(width, height)))


def _still(corner: tuple[int, int], frames: int) -> np.ndarray:
    return np.tile(np.asarray(corner, np.float64), (frames, 1))


def place(rng, size: int, width: int, height: int, box=None) -> tuple[int, int]:
    """A random top-left corner keeping the object inside `box` (top, left, bottom, right)."""
    top, left, bottom, right = box or (0, 0, height, width)
    return int(rng.integers(top, bottom - size + 1)), int(rng.integers(left, right - size + 1))


def _arrange(correct: str, distractors: list[str], target: int, rng) -> list[str]:
    """Options with the distractors in random order and the correct one at `target`."""
    options = [distractors[i] for i in rng.permutation(len(distractors))]
    options.insert(target, correct)
    return options


def _when(frame: float, frames: int) -> str:
    words = ("near the start", "early on", "around the middle", "later on", "near the end")
    return words[min(4, int(5 * frame / frames))]


def _sprite(colour, shape, size, corners, shown=None) -> Sprite:
    shown = np.ones(len(corners), bool) if shown is None else shown
    return Sprite(str(colour), str(shape), size, np.rint(corners).astype(np.int64), shown)


def _plan_event(rng, frames: int, cfg: TemporalConfig, target: int, variant: int) -> Scene:
    question = "Did a coloured shape briefly appear during the video? If so, what colour was it?"
    colours = [str(c) for c in rng.permutation(list(COLOURS))]
    if variant == 0:
        options = _arrange(NOTHING, colours[:3], target, rng)
        caption = "Nothing appears: a grey patch drifts slowly and a small dark square jitters."
        return Scene(question, options, target, {"event": False, "span": None}, caption)
    colour, shape, size = colours[0], str(rng.choice(SHAPES)), object_size(cfg.width, cfg.height)
    start, stop = draw_event_span(rng, frames)
    shown = np.zeros(frames, bool)
    shown[start:stop] = True
    corners = _still(place(rng, size, cfg.width, cfg.height), frames)
    truth = {"event": True, "colour": colour, "shape": shape, "span": [start, stop]}
    caption = f"A {colour} {shape} flashes briefly {_when(start, frames)}, then is gone."
    options = _arrange(colour, [NOTHING, *colours[1:3]], target, rng)
    sprites = [_sprite(colour, shape, size, corners, shown)]
    return Scene(question, options, target, truth, caption, sprites)


def _plan_which_moved(rng, frames: int, cfg: TemporalConfig, target: int, variant: int) -> Scene:
    count, size = 3 + variant, object_size(cfg.width, cfg.height)
    colours = [str(c) for c in rng.permutation(list(COLOURS))]
    shapes = [str(s) for s in rng.permutation(SHAPES)]
    names = [f"{c} {s}" for c, s in zip(colours, shapes, strict=True)]
    half_h, half_w = cfg.height // 2, cfg.width // 2
    cells = [(r * half_h, c * half_w, (r + 1) * half_h, (c + 1) * half_w) for r in (0, 1)
             for c in (0, 1)]  # fmt: skip
    cells = [cells[i] for i in rng.permutation(4)[:count]]  # one object per quarter: no overlap
    corners = [_still(place(rng, size, cfg.width, cfg.height, cell), frames) for cell in cells]
    mover = int(rng.integers(count))
    _, dense = _intervals(frames)
    start, stop = _span(rng, frames, math.ceil(rng.uniform(0.4, 0.8) * dense))
    # out towards the frame centre and back (a sine bump), so first and last frames agree
    centre = np.array([cfg.height - size, cfg.width - size]) / 2
    heading = math.atan2(*(centre - corners[mover][0])) + rng.uniform(-0.6, 0.6)
    reach = rng.uniform(1.2, 1.8) * size * np.array([math.sin(heading), math.cos(heading)])
    bump = np.sin(np.pi * np.arange(stop - start) / (stop - start - 1))
    corners[mover][start:stop] += bump[:, None] * reach
    np.clip(corners[mover], 0, [cfg.height - size, cfg.width - size], out=corners[mover])
    absent = [f"{colours[3]} {shapes[3]}"] if count == 3 else []  # fourth option: not shown
    others = [n for i, n in enumerate(names[:count]) if i != mover]
    options = _arrange(names[mover], others + absent, target, rng)
    truth = {"objects": names[:count], "mover": names[mover], "span": [start, stop]}
    listed = ", ".join(f"a {n}" for n in names[: count - 1]) + f" and a {names[count - 1]}"
    caption = (f"There are {listed}; the {names[mover]} moves away {_when(start, frames)} and "
               "comes back, the others stay still.")  # fmt: skip
    sprites = [_sprite(colours[i], shapes[i], size, corners[i]) for i in range(count)]
    return Scene("Which object moved during the video?", options, target, truth, caption, sprites)


def _plan_direction(rng, frames: int, cfg: TemporalConfig, target: int, variant: int) -> Scene:
    axis = ("horizontal", "vertical")[int(rng.integers(2))]
    paths, path = PATHS[axis], PATHS[axis][variant]
    sign, returns = (-1, 1, -1, 1)[variant], variant >= 2
    colour, shape = str(rng.choice(list(COLOURS))), str(rng.choice(SHAPES))
    size, name = object_size(cfg.width, cfg.height), f"{colour} {shape}"
    along = 1 if axis == "horizontal" else 0  # column of (top, left) that moves
    extent = (cfg.height, cfg.width)[along] - size
    travel = rng.uniform(0.35, 0.55) * extent
    origin = rng.uniform(0, extent - travel) + (travel if sign < 0 else 0)
    corner = list(place(rng, size, cfg.width, cfg.height))
    corner[along] = origin
    corners = _still(tuple(corner), frames)
    _, dense = _intervals(frames)
    start, stop = _span(rng, frames, math.ceil(rng.uniform(0.6, 1.2) * dense))
    phase = np.arange(stop - start) / (stop - start - 1)
    profile = 1 - np.abs(2 * phase - 1) if returns else phase  # out and back, or one way
    corners[start:stop, along] += sign * travel * profile
    if not returns:
        corners[stop:, along] += sign * travel
    truth = {"object": name, "axis": axis, "path": path, "span": [start, stop],
             "turn": start + (stop - start - 1) // 2 if returns else None}  # fmt: skip
    caption = f"{_when(start, frames).capitalize()}, the {name} moves {path}."
    options = _arrange(path, [p for p in paths if p != path], target, rng)
    sprites = [_sprite(colour, shape, size, corners)]
    return Scene(f"How did the {name} move?", options, target, truth, caption, sprites)


def _visible_spans(corners: np.ndarray, shown: np.ndarray, size: int, width: int, height: int):
    """[start, stop) runs of frames where any pixel of the object is inside the frame."""
    top, left = corners[:, 0], corners[:, 1]
    inside = shown & (top < height) & (top + size > 0) & (left < width) & (left + size > 0)
    edges = np.diff(np.concatenate([[0], inside.astype(np.int8), [0]]))
    return [[int(a), int(b)] for a, b in zip(np.flatnonzero(edges == 1),
                                             np.flatnonzero(edges == -1), strict=True)]  # fmt: skip


def _outside(rng, edge: int, size: int, width: int, height: int) -> tuple[int, int]:
    """A corner just outside edge 0 left, 1 right, 2 top, 3 bottom."""
    top, left = place(rng, size, width, height)
    return ((top, -size), (top, width), (-size, left), (height, left))[edge]


def _plan_entries(rng, frames: int, cfg: TemporalConfig, target: int, variant: int) -> Scene:
    count, width, height = target + 1, cfg.width, cfg.height
    colour, shape = str(rng.choice(list(COLOURS))), str(rng.choice(SHAPES))
    size, name = object_size(width, height), f"{colour} {shape}"
    sampled, dense = _intervals(frames)
    lengths = [math.ceil(rng.uniform(0.4, 0.8) * dense) for _ in range(count)]
    gap, margin = math.ceil(2 * sampled), frames // 10  # out of frame long enough to be seen
    slack = frames - 2 * margin - sum(lengths) - (count - 1) * gap
    cuts = np.sort(rng.integers(0, slack + 1, count))
    corners, shown = np.zeros((frames, 2)), np.zeros(frames, bool)
    start = margin
    for k in range(count):
        start += int(cuts[k] - (cuts[k - 1] if k else 0)) + (gap if k else 0)
        stop = start + lengths[k]
        # in from one edge to a point well inside (so it shows at once), out by any edge
        middle = place(
            rng,
            size,
            width,
            height,
            (height // 5, width // 5, height - height // 5, width - width // 5),
        )
        turn = start + (stop - start) // 2
        way_in = np.linspace(_outside(rng, int(rng.integers(4)), size, width, height), middle,
                             turn - start + 2)  # fmt: skip
        way_out = np.linspace(middle, _outside(rng, int(rng.integers(4)), size, width, height),
                              stop - turn + 1)  # fmt: skip
        corners[start - 1 : turn + 1], corners[turn : stop + 1] = way_in, way_out
        shown[start:stop] = True
        start = stop
    sprite = _sprite(colour, shape, size, corners, shown)
    spans = _visible_spans(sprite.corners, shown, size, width, height)
    if len(spans) != count:
        raise RuntimeError(f"entries plan drew {len(spans)} visits instead of {count}")
    truth = {"object": name, "entries": count, "spans": spans}
    caption = f"The {name} enters the frame {TIMES[count - 1]}, leaving again each time."
    question = f"How many times did the {name} enter the frame?"
    return Scene(question, [str(n) for n in range(1, 5)], target, truth, caption, [sprite])


def _plan_static_control(rng, frames: int, cfg: TemporalConfig, target: int, variant: int):
    colours = [str(c) for c in rng.permutation(list(COLOURS))]
    if variant == 0:
        truth = {"asked": "background", "colour": colours[0]}
        caption = f"A still, textured {colours[0]} background with nothing coloured on it."
        options = _arrange(colours[0], colours[1:], target, rng)
        question = "What colour is the background of the video?"
        return Scene(question, options, target, truth, caption, background=colours[0])
    shapes = [str(s) for s in rng.permutation(SHAPES)]
    size = object_size(cfg.width, cfg.height)
    corners = _still(place(rng, size, cfg.width, cfg.height), frames)
    truth = {"asked": "shape", "colour": colours[0], "shape": shapes[0]}
    caption = f"A {colours[0]} {shapes[0]} stays still on a textured grey background."
    options = _arrange(shapes[0], shapes[1:], target, rng)
    sprites = [_sprite(colours[0], shapes[0], size, corners)]
    question = "What shape is the coloured object in the video?"
    return Scene(question, options, target, truth, caption, sprites)


def balanced(rng, n: int, k: int) -> np.ndarray:
    """n values in 0..k-1, each count within one of the others, in random order."""
    return rng.permutation(np.arange(n) % k)


# family -> (planner, its variants for n rows: event with/without, objects, path, -, asked)
FAMILY_PLANS: dict[str, tuple[Callable[..., Scene], Callable[..., np.ndarray]]] = {
    "event": (_plan_event, lambda rng, n, cfg: (
        rng.permutation(n) >= round(cfg.no_event_share * n)).astype(int)),
    "which_moved": (_plan_which_moved, lambda rng, n, cfg: balanced(rng, n, 2)),
    "direction": (_plan_direction, lambda rng, n, cfg: balanced(rng, n, 4)),
    "entries": (_plan_entries, lambda rng, n, cfg: np.zeros(n, int)),
    "static_control": (_plan_static_control, lambda rng, n, cfg: balanced(rng, n, 2)),
}  # fmt: skip
FAMILIES = tuple(FAMILY_PLANS)
