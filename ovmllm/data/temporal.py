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
A row is planned from its own seed (`plan_videos`, no pixels; the families' scenes are in
`temporal_scenes.py`), then rendered and encoded, so
the same config gives the same JSONL and truths, and the truths can be checked without video.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path

import av
import numpy as np

from encoder.files import atomic_dir
from ovmllm.data.temporal_scenes import (
    COLOURS,
    FAMILIES,
    FAMILY_PLANS,
    SAMPLED_FRAMES,
    Scene,
    balanced,
    object_size,
    place,
    row_rng,
)

GENERATOR_VERSION = 3  # bump when a change alters what a config generates (invalidates caches)
LETTERS = "ABCD"
ANSWER_INSTRUCTION = "Answer with the option's letter from the given choices directly."
CAPTION_PROMPT = "Describe what happens in the video."

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
class PlannedVideo:
    """One row before any pixel exists: its lmms-eval doc, caption and how to draw it."""

    doc: dict
    caption: str
    encoder: str
    scene: Scene
    pixel_seed: list[int]


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
        kinds = [kinds[i] for i in row_rng(cfg.seed, "codecs", split).permutation(total)]
        for f, family in enumerate(cfg.families):
            planner, variants_of = FAMILY_PLANS[family]
            answers_rng = row_rng(cfg.seed, "answers", split, family)
            targets = balanced(answers_rng, count, len(LETTERS))
            variants = variants_of(answers_rng, count, cfg)
            for i in range(count):
                rng = row_rng(cfg.seed, "scene", split, family, i)
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
    jitter_size = max(4, object_size(width, height) // 2)
    jitter_pixels = (40 + 40 * rng.random((jitter_size, jitter_size, 1))).repeat(3, axis=2)
    jitter_pixels = jitter_pixels.astype(np.uint8)
    jitter_anchor = np.array(place(rng, jitter_size + 4, width, height)) + 2
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


def _write_video(job: tuple[Path, PlannedVideo, TemporalConfig]) -> None:
    path, video, cfg = job
    _encode(path, _render(video, cfg), video.encoder, cfg)


def _write_videos(jobs: list[tuple[Path, PlannedVideo, TemporalConfig]]) -> None:
    for job in jobs:
        _write_video(job)


def _encode(path: Path, images: Iterator[np.ndarray], encoder: str, cfg: TemporalConfig) -> None:
    container = av.open(str(path), "w")
    try:
        stream = container.add_stream(encoder, rate=cfg.fps)
        stream.width, stream.height, stream.pix_fmt = cfg.width, cfg.height, "yuv420p"
        # One encoder thread: by default x264 sizes its threads (and its slices) to the CPUs it
        # sees, which made the same config write other bytes in another process or machine.
        stream.codec_context.thread_count = 1
        if encoder == "mpeg4":
            stream.bit_rate = 800_000  # its 200 kb/s default turns the grain into blocks
        if encoder == "libx264":
            # x264's macroblock-tree rate control wrote other bytes for the same frames on
            # repeated encodes in one process (measured: 3 different files in 12 encodes of
            # train-which_moved-67; ~2-3% of a default dataset's H.264 videos differed between
            # two runs). Without it the bytes are the same every time.
            stream.options = {"x264-params": "mbtree=0"}
        if encoder == "libx265":
            # x265 logs to stderr by default; its frame threads and pool follow the CPU count
            stream.options = {"x265-params": "log-level=error:frame-threads=1:pools=1"}
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
    out: str | Path,
    cfg: TemporalConfig | None = None,
    *,
    overwrite: bool = False,
    workers: int = 1,
) -> Path:
    """Write the dataset to `out` whole or not at all, or return `out` as it is when it already
    holds one written with the same settings (`config.json`). A folder with other settings or
    other contents is an error unless `overwrite`.

    Layout: videos/<split>_<family>_<i>.mp4; test/<family>.jsonl and train/<family>.jsonl (one
    lmms-eval doc a line: id, family, video relative to `out`, question, options, answer
    letter, truth; spans are [start, stop) frame ids); train.jsonl (LLaVA rows: a caption row
    and a QA row per train video); config.json.

    `workers` processes draw and encode the videos (each from its own seed: the same bytes for
    any count), and one more encodes the HEVC ones."""
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
        jobs = [(tmp / video.doc["video"], video, cfg) for video in planned]
        # Encoded in fresh processes, never in the caller's, HEVC ones in a process of their own
        # in a fixed order: what a process encoded before must not change a video's bytes (an
        # x265 encode did change x264's, through its macroblock tree: now off, see _encode).
        hevc = [job for job in jobs if job[1].encoder == "libx265"]
        rest = [job for job in jobs if job[1].encoder != "libx265"]
        spawn = get_context("spawn")
        with ProcessPoolExecutor(1, mp_context=spawn) as hevc_pool:
            hevc_done = hevc_pool.submit(_write_videos, hevc)
            with ProcessPoolExecutor(max(1, workers), mp_context=spawn) as pool:
                list(pool.map(_write_video, rest, chunksize=4))
            hevc_done.result()
        for split in ("train", "test"):
            for family in cfg.families:
                docs = [v.doc for v in planned if v.doc["id"].startswith(f"{split}-{family}-")]
                text = "".join(json.dumps(doc) + "\n" for doc in docs)
                (tmp / split / f"{family}.jsonl").write_text(text)
        rows = _train_rows([v for v in planned if v.doc["id"].startswith("train-")], cfg.seed)
        (tmp / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
        (tmp / "config.json").write_text(record)
    return out


def qa_row(doc: dict, row_id: str | None = None) -> dict:
    """A doc's question as a LLaVA row: the evaluation prompt, answered "B. red"."""
    return llava_row(row_id or f"{doc['id']}-qa", doc["video"], mc_prompt(doc), answer_text(doc))


def llava_row(row_id: str, video: str, prompt: str, answer: str) -> dict:
    return {"id": row_id, "video": video,
            "conversations": [{"from": "human", "value": f"<video>\n{prompt}"},
                              {"from": "gpt", "value": answer}]}  # fmt: skip


def _train_rows(planned: list[PlannedVideo], seed: int) -> list[dict]:
    """A caption row and a QA row (prompt as in evaluation, answer "B. red") per video."""
    rows = []
    for video in planned:
        doc = video.doc
        rows.append(llava_row(f"{doc['id']}-caption", doc["video"], CAPTION_PROMPT, video.caption))
        rows.append(qa_row(doc))
    order = row_rng(seed, "train rows").permutation(len(rows))
    return [rows[i] for i in order]
