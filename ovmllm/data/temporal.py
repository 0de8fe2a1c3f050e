"""Generated temporal video QA: multiple-choice questions whose answers live in time.

Five families, one lmms-eval task each (`FAMILIES`):

- `event`: a coloured shape flashes in for 1.5-3x the 64-frame sampling interval, so the 64
  frames codec selection samples always see it and 8 uniform frames usually miss it (some
  rows have no event). "Did something appear, and what colour?"
- `which_moved`: 3-4 objects, each unique in colour and shape; one leaves its place and comes
  back within less than one 8-frame interval. "Which one moved?"
- `direction`: an object moves left/right (or up/down) and maybe back, within about one
  8-frame interval. "How did it move?"
- `entries`: an object enters the frame 1-4 times, leaving in between. "How many times?"
- `static_control`: the background colour or a static object's shape, visible in any frame;
  sampling many frames should give no edge here.

Every video has a grey textured background (tinted for the background-colour question), a
slowly drifting texture patch and a small jittering dark square: motion that is never the
answer. Every question has four options; answer letters are balanced per family and split.
A row is planned from its own seed (`plan_videos`, no pixels), then rendered and encoded, so
the same config gives the same JSONL and truths, and the truths can be checked without video.
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import av
import numpy as np

from encoder.files import atomic_dir

SAMPLED_FRAMES = 64  # frames codec selection samples (CodecConfig.frames)
DENSE_FRAMES = 8  # frames of the uniform dense baseline
GENERATOR_VERSION = 1  # bump when a change alters what a config generates (invalidates caches)
LETTERS = "ABCD"
ANSWER_INSTRUCTION = "Answer with the option's letter from the given choices directly."
CAPTION_PROMPT = "Describe what happens in the video."
COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 80, 220),
           "yellow": (230, 210, 40)}  # fmt: skip
SHAPES = ("square", "circle", "triangle", "diamond")
NOTHING = "nothing appeared"
PATHS = {
    "horizontal": ("left", "right", "left, then back right", "right, then back left"),
    "vertical": ("up", "down", "up, then back down", "down, then back up"),
}
TIMES = ("once", "twice", "three times", "four times")
# codec kind -> (encoder, decoder name PyAV reports when reading it back)
ENCODERS = {"h264": ("libx264", "h264"), "mpeg4": ("mpeg4", "mpeg4"), "hevc": ("libx265", "hevc")}


@dataclass
class TemporalConfig:
    train_per_family: int = 40
    """Training videos per family; each gives a caption row and a QA row in train.jsonl."""
    test_per_family: int = 20
    """Test videos per family: the lines of test/<family>.jsonl."""
    families: list[str] = field(default_factory=lambda: list(FAMILIES))
    """Families to generate (event, which_moved, direction, entries, static_control)."""
    min_frames: int = 200
    """Fewest frames of a video (at least 64, so 64 sampled frames are all distinct)."""
    max_frames: int = 400
    """Most frames of a video; each video draws its count in [min_frames, max_frames]."""
    width: int = 160
    """Video width in pixels (even, at least 64)."""
    height: int = 120
    """Video height in pixels (even, at least 64)."""
    fps: int = 25
    """Frame rate written in the container."""
    mpeg4_share: float = 0.15
    """Share of each split's videos encoded as MPEG-4 part 2 (`mpeg4`); the rest not taken
    by mpeg4 or HEVC is H.264 (`libx264`)."""
    hevc_share: float = 0.15
    """Share encoded as HEVC (`libx265`). Where PyAV lacks libx265 these videos are encoded
    with `mpeg4` instead, and config.json records `"hevc": "mpeg4 (libx265 unavailable)"`."""
    no_event_share: float = 0.25
    """Share of `event` rows where nothing appears (the answer is "nothing appeared")."""
    seed: int = 0
    """Seed of every draw (scenes, options, codecs, textures, row order)."""

    def __post_init__(self) -> None:
        unknown = [name for name in self.families if name not in FAMILIES]
        if unknown or not self.families or len(set(self.families)) != len(self.families):
            raise ValueError(f"families {self.families}: give distinct names of {list(FAMILIES)}")
        if self.train_per_family < 0 or self.test_per_family < 0:
            raise ValueError("train_per_family and test_per_family must be >= 0")
        if not SAMPLED_FRAMES <= self.min_frames <= self.max_frames:
            raise ValueError(f"frames range [{self.min_frames}, {self.max_frames}]: need "
                             f"{SAMPLED_FRAMES} <= min_frames <= max_frames")  # fmt: skip
        if min(self.width, self.height) < 64 or self.width % 2 or self.height % 2:
            raise ValueError(f"size {self.width}x{self.height}: need even sides of at least 64")
        if self.fps <= 0:
            raise ValueError(f"fps {self.fps}: must be positive")
        shares = (self.mpeg4_share, self.hevc_share, self.no_event_share)
        if min(shares) < 0 or self.mpeg4_share + self.hevc_share > 1 or self.no_event_share > 1:
            raise ValueError(f"shares {shares}: need values in [0, 1], mpeg4 + hevc <= 1")


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


@dataclass
class PlannedVideo:
    """One row before any pixel exists: its lmms-eval doc, caption and how to draw it."""

    doc: dict
    caption: str
    encoder: str
    scene: Scene
    pixel_seed: list[int]


def _rng(seed: int, *parts: str | int) -> np.random.Generator:
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


def _object_size(width: int, height: int) -> int:
    return max(8, round(0.18 * min(width, height)))


def _still(corner: tuple[int, int], frames: int) -> np.ndarray:
    return np.tile(np.asarray(corner, np.float64), (frames, 1))


def _place(rng, size: int, width: int, height: int, box=None) -> tuple[int, int]:
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
    colour, shape, size = colours[0], str(rng.choice(SHAPES)), _object_size(cfg.width, cfg.height)
    start, stop = draw_event_span(rng, frames)
    shown = np.zeros(frames, bool)
    shown[start:stop] = True
    corners = _still(_place(rng, size, cfg.width, cfg.height), frames)
    truth = {"event": True, "colour": colour, "shape": shape, "span": [start, stop]}
    caption = f"A {colour} {shape} flashes briefly {_when(start, frames)}, then is gone."
    options = _arrange(colour, [NOTHING, *colours[1:3]], target, rng)
    sprites = [_sprite(colour, shape, size, corners, shown)]
    return Scene(question, options, target, truth, caption, sprites)


def _plan_which_moved(rng, frames: int, cfg: TemporalConfig, target: int, variant: int) -> Scene:
    count, size = 3 + variant, _object_size(cfg.width, cfg.height)
    colours = [str(c) for c in rng.permutation(list(COLOURS))]
    shapes = [str(s) for s in rng.permutation(SHAPES)]
    names = [f"{c} {s}" for c, s in zip(colours, shapes, strict=True)]
    half_h, half_w = cfg.height // 2, cfg.width // 2
    cells = [(r * half_h, c * half_w, (r + 1) * half_h, (c + 1) * half_w) for r in (0, 1)
             for c in (0, 1)]  # fmt: skip
    cells = [cells[i] for i in rng.permutation(4)[:count]]  # one object per quarter: no overlap
    corners = [_still(_place(rng, size, cfg.width, cfg.height, cell), frames) for cell in cells]
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
    size, name = _object_size(cfg.width, cfg.height), f"{colour} {shape}"
    along = 1 if axis == "horizontal" else 0  # column of (top, left) that moves
    extent = (cfg.height, cfg.width)[along] - size
    travel = rng.uniform(0.35, 0.55) * extent
    origin = rng.uniform(0, extent - travel) + (travel if sign < 0 else 0)
    corner = list(_place(rng, size, cfg.width, cfg.height))
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
    top, left = _place(rng, size, width, height)
    return ((top, -size), (top, width), (-size, left), (height, left))[edge]


def _plan_entries(rng, frames: int, cfg: TemporalConfig, target: int, variant: int) -> Scene:
    count, width, height = target + 1, cfg.width, cfg.height
    colour, shape = str(rng.choice(list(COLOURS))), str(rng.choice(SHAPES))
    size, name = _object_size(width, height), f"{colour} {shape}"
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
        middle = _place(
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
    size = _object_size(cfg.width, cfg.height)
    corners = _still(_place(rng, size, cfg.width, cfg.height), frames)
    truth = {"asked": "shape", "colour": colours[0], "shape": shapes[0]}
    caption = f"A {colours[0]} {shapes[0]} stays still on a textured grey background."
    options = _arrange(shapes[0], shapes[1:], target, rng)
    sprites = [_sprite(colours[0], shapes[0], size, corners)]
    question = "What shape is the coloured object in the video?"
    return Scene(question, options, target, truth, caption, sprites)


def _balanced(rng, n: int, k: int) -> np.ndarray:
    """n values in 0..k-1, each count within one of the others, in random order."""
    return rng.permutation(np.arange(n) % k)


# family -> (planner, its variants for n rows: event with/without, objects, path, -, asked)
_FAMILY_PLANS: dict[str, tuple[Callable[..., Scene], Callable[..., np.ndarray]]] = {
    "event": (_plan_event, lambda rng, n, cfg: (
        rng.permutation(n) >= round(cfg.no_event_share * n)).astype(int)),
    "which_moved": (_plan_which_moved, lambda rng, n, cfg: _balanced(rng, n, 2)),
    "direction": (_plan_direction, lambda rng, n, cfg: _balanced(rng, n, 4)),
    "entries": (_plan_entries, lambda rng, n, cfg: np.zeros(n, int)),
    "static_control": (_plan_static_control, lambda rng, n, cfg: _balanced(rng, n, 2)),
}  # fmt: skip
FAMILIES = tuple(_FAMILY_PLANS)


def encoders() -> dict[str, str]:
    """Codec kind -> the encoder this PyAV build uses for it (HEVC falls back to mpeg4)."""
    found = {kind: encoder for kind, (encoder, _) in ENCODERS.items()}
    if "libx265" not in av.codecs_available:
        found["hevc"] = "mpeg4 (libx265 unavailable)"
    return found


def plan_videos(cfg: TemporalConfig) -> list[PlannedVideo]:
    """Every row of the dataset, train then test, family by family, without pixels."""
    used = {kind: enc.split()[0] for kind, enc in encoders().items()}
    planned = []
    for split, count in (("train", cfg.train_per_family), ("test", cfg.test_per_family)):
        total = count * len(cfg.families)
        n_mpeg4, n_hevc = round(cfg.mpeg4_share * total), round(cfg.hevc_share * total)
        kinds = ["mpeg4"] * n_mpeg4 + ["hevc"] * n_hevc + ["h264"] * (total - n_mpeg4 - n_hevc)
        kinds = [kinds[i] for i in _rng(cfg.seed, "codecs", split).permutation(total)]
        for f, family in enumerate(cfg.families):
            planner, variants_of = _FAMILY_PLANS[family]
            answers_rng = _rng(cfg.seed, "answers", split, family)
            targets = _balanced(answers_rng, count, len(LETTERS))
            variants = variants_of(answers_rng, count, cfg)
            for i in range(count):
                rng = _rng(cfg.seed, "scene", split, family, i)
                frames = int(rng.integers(cfg.min_frames, cfg.max_frames + 1))
                scene = planner(rng, frames, cfg, int(targets[i]), int(variants[i]))
                kind = kinds[f * count + i]
                encoder = used[kind]
                decoder = next(dec for enc, dec in ENCODERS.values() if enc == encoder)
                doc = {
                    "id": f"{split}-{family}-{i}", "family": family,
                    "video": f"videos/{split}_{family}_{i}.mp4", "question": scene.question,
                    "options": scene.options, "answer": LETTERS[scene.answer],
                    "truth": {"frames": frames, "fps": cfg.fps, "codec": decoder,
                              "encoder": encoder, **scene.truth},
                }  # fmt: skip
                seed = [cfg.seed, zlib.crc32(doc["id"].encode())]
                planned.append(PlannedVideo(doc, scene.caption, encoder, scene, seed))
    return planned


def mc_prompt(doc: dict) -> str:
    """The question, its lettered options and the answer instruction: the one prompt that
    training rows and the evaluation tasks both show."""
    options = [f"{LETTERS[i]}. {option}" for i, option in enumerate(doc["options"])]
    return "\n".join([doc["question"], *options, ANSWER_INSTRUCTION])


def answer_text(doc: dict) -> str:
    """The full answer, e.g. "B. red"."""
    return f"{doc['answer']}. {doc['options'][LETTERS.index(doc['answer'])]}"


def _texture(rng, height: int, width: int, tint: str | None, lift: int = 0) -> np.ndarray:
    """Smooth blobs plus grain (so the encoder finds real matches), grey or tinted."""
    coarse = rng.random((height // 12 + 2, width // 12 + 2))
    xs = np.linspace(0, coarse.shape[1] - 1, width)
    ys = np.linspace(0, coarse.shape[0] - 1, height)
    rows = np.stack([np.interp(xs, np.arange(coarse.shape[1]), row) for row in coarse])
    smooth = np.stack([np.interp(ys, np.arange(rows.shape[0]), col) for col in rows.T], axis=1)
    grey = (70 + lift + 100 * smooth + 30 * rng.random((height, width)))[..., None]
    image = grey if tint is None else 0.45 * grey + 0.55 * np.asarray(COLOURS[tint])
    return np.clip(np.broadcast_to(image, (height, width, 3)), 0, 255).astype(np.uint8)


def _mask(shape: str, size: int) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size] + 0.5
    c = size / 2
    masks = {"square": np.ones((size, size), bool),
             "circle": (y - c) ** 2 + (x - c) ** 2 <= c * c,
             "triangle": np.abs(x - c) <= y / 2,
             "diamond": np.abs(x - c) + np.abs(y - c) <= c}  # fmt: skip
    return masks[shape]


def _paste(image: np.ndarray, pixels: np.ndarray, mask: np.ndarray, top: int, left: int):
    """Draw `pixels` where `mask` holds, clipped to the frame."""
    height, width = image.shape[:2]
    size_y, size_x = mask.shape
    y0, x0, y1, x1 = max(top, 0), max(left, 0), min(top + size_y, height), min(left + size_x, width)
    if y0 >= y1 or x0 >= x1:
        return
    region = (slice(y0 - top, y1 - top), slice(x0 - left, x1 - left))
    view = image[y0:y1, x0:x1]
    view[mask[region]] = pixels[region][mask[region]]


def _render(video: PlannedVideo, cfg: TemporalConfig) -> Iterator[np.ndarray]:
    """The frames of one video: background, the two distractors, then the scene's sprites."""
    rng, scene = np.random.default_rng(video.pixel_seed), video.scene
    frames, width, height = video.doc["truth"]["frames"], cfg.width, cfg.height
    background = _texture(rng, height, width, scene.background)
    patch = _texture(rng, height // 3, width // 3, scene.background, lift=25)
    room = (height - patch.shape[0] + 1, width - patch.shape[1] + 1)
    drift = rng.integers(0, room, size=(2, 2)).astype(np.float64)  # from, to (top, left)
    jitter_size = max(4, _object_size(width, height) // 2)
    jitter_pixels = (40 + 40 * rng.random((jitter_size, jitter_size, 1))).repeat(3, axis=2)
    jitter_pixels = jitter_pixels.astype(np.uint8)
    jitter_anchor = np.array(_place(rng, jitter_size + 4, width, height)) + 2
    jitter = jitter_anchor + rng.integers(-2, 3, size=(frames, 2))
    square = np.ones((jitter_size, jitter_size), bool)
    looks = []
    for sprite in scene.sprites:
        grain = rng.integers(-15, 16, size=(sprite.size, sprite.size, 1))
        pixels = np.clip(np.asarray(COLOURS[sprite.colour]) + grain, 0, 255).astype(np.uint8)
        looks.append((pixels, _mask(sprite.shape, sprite.size)))
    for i in range(frames):
        image = background.copy()
        top, left = np.rint(drift[0] + (drift[1] - drift[0]) * i / (frames - 1)).astype(int)
        image[top : top + patch.shape[0], left : left + patch.shape[1]] = patch
        _paste(image, jitter_pixels, square, *jitter[i])
        for sprite, (pixels, mask) in zip(scene.sprites, looks, strict=True):
            if sprite.shown[i]:
                _paste(image, pixels, mask, *sprite.corners[i])
        yield image


def _encode(path: Path, images: Iterator[np.ndarray], encoder: str, cfg: TemporalConfig) -> None:
    container = av.open(str(path), "w")
    try:
        stream = container.add_stream(encoder, rate=cfg.fps)
        stream.width, stream.height, stream.pix_fmt = cfg.width, cfg.height, "yuv420p"
        if encoder == "mpeg4":
            stream.bit_rate = 800_000  # its 200 kb/s default turns the grain into blocks
        if encoder == "libx265":
            stream.options = {"x265-params": "log-level=error"}  # x265 logs to stderr by default
        for image in images:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    finally:
        container.close()


def _record(cfg: TemporalConfig) -> str:
    record = {"generator": "temporal", "version": GENERATOR_VERSION, "config": asdict(cfg),
              "encoders": encoders()}  # fmt: skip
    return json.dumps(record, indent=2, sort_keys=True) + "\n"


def _refuse(out: Path, found: str, wanted: str) -> FileExistsError:
    try:
        old, new = json.loads(found), json.loads(wanted)
        keys = sorted({*old.get("config", {}), *new["config"]})
        diff = [f"{k}: {old['config'].get(k)!r} -> {new['config'].get(k)!r}" for k in keys
                if old["config"].get(k) != new["config"].get(k)]  # fmt: skip
        diff += [f"{k} differs" for k in ("generator", "version", "encoders")
                 if old.get(k) != new[k]]  # fmt: skip
    except (json.JSONDecodeError, AttributeError, TypeError):
        diff = ["config.json is not a temporal dataset record"]
    reason = "; ".join(diff)
    return FileExistsError(f"{out} holds a temporal dataset written with other settings "
                           f"({reason}); choose another folder or overwrite it")  # fmt: skip


def write_temporal_dataset(
    out: str | Path, cfg: TemporalConfig | None = None, *, overwrite: bool = False
) -> Path:
    """Write the dataset to `out` whole or not at all, or return `out` as it is when it already
    holds one written with the same settings (`config.json`). A folder with other settings or
    other contents is an error unless `overwrite`.

    Layout: videos/<split>_<family>_<i>.mp4; test/<family>.jsonl and train/<family>.jsonl (one
    lmms-eval doc a line: id, family, video relative to `out`, question, options, answer
    letter, truth; spans are [start, stop) frame ids); train.jsonl (LLaVA rows: a caption row
    and a QA row per train video); config.json."""
    cfg = cfg or TemporalConfig()
    out, record = Path(out), _record(cfg)
    recorded = out / "config.json"
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out}: is a file, not a dataset folder")
    if recorded.is_file() and recorded.read_text() == record:
        return out
    if not overwrite and recorded.is_file():
        raise _refuse(out, recorded.read_text(), record)
    if not overwrite and out.is_dir() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty and holds no config.json (not a temporal "
                              "dataset); choose another folder or overwrite it")  # fmt: skip
    planned = plan_videos(cfg)
    # without overwrite, a twin process that committed the same dataset first wins
    with atomic_dir(out, keep_existing=not overwrite) as tmp:
        for sub in ("videos", "train", "test"):
            (tmp / sub).mkdir()
        for video in planned:
            _encode(tmp / video.doc["video"], _render(video, cfg), video.encoder, cfg)
        for split in ("train", "test"):
            for family in cfg.families:
                docs = [v.doc for v in planned if v.doc["id"].startswith(f"{split}-{family}-")]
                text = "".join(json.dumps(doc) + "\n" for doc in docs)
                (tmp / split / f"{family}.jsonl").write_text(text)
        rows = _train_rows([v for v in planned if v.doc["id"].startswith("train-")], cfg.seed)
        (tmp / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
        (tmp / "config.json").write_text(record)
    return out


def _train_rows(planned: list[PlannedVideo], seed: int) -> list[dict]:
    """A caption row and a QA row (prompt as in evaluation, answer "B. red") per video."""
    rows = []
    for video in planned:
        doc = video.doc
        for kind, prompt, answer in (("caption", CAPTION_PROMPT, video.caption),
                                     ("qa", mc_prompt(doc), answer_text(doc))):  # fmt: skip
            rows.append({
                "id": f"{doc['id']}-{kind}", "video": doc["video"],
                "conversations": [{"from": "human", "value": f"<video>\n{prompt}"},
                                  {"from": "gpt", "value": answer}],
            })  # fmt: skip
    order = _rng(seed, "train rows").permutation(len(rows))
    return [rows[i] for i in order]
