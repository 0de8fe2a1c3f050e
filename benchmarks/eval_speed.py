"""Samples/s of the lmms-eval plugin `ovmllm` (eval/lmms_model.py) on local video tasks: codec vs
frames mode at an equal visual-token budget, batch 1 vs 8, cold vs warm selection cache, and the
share of a sample's time spent loading its media (codec selection or cache read).

Model: configs/model/tiny.yaml with random weights (seeded) and the real Qwen3 tokenizer from
../shared/real_data, saved as a checkpoint in a temporary folder. Tasks: the generated temporal
QA (ovmllm/data/temporal.py, test videos of 200-400 frames at 160x120, docs as
eval/local_tasks.py writes them) and, when ../shared/real_data is present, the real demo-video
questions (`ovmllm_demo_video_mc`: 10 questions on 2 YouTube clips).

Modes: codec is the checkpoint's own setting (16 sampled frames on a 288 px canvas, budget 2
frame-equivalents = 2 x 324 patches of 16); frames is 2 uniform frames at the side giving the
same tokens per frame with the tower's patch (18 x 18 patches of 14 = 252 px). The token counts
of one item in each mode are printed. Cold: an empty cache_dir; warm: the same docs again with
that cache_dir (frames mode caches nothing: every pass decodes).

The plugin is driven directly: `OVMLLMEval(...)` and `generate_until` on lmms-eval `Instance`s
built as lmms-eval builds them, the docs in the plugin's `task_dict`. That is all of the plugin's
work without the harness's per-task costs (dataset loading, scoring, sample logging), which are
the same in both modes and would only blur the ratios. Generation is greedy with
max_new_tokens fixed at 16 (the tasks' own setting). One warm-up request per mode runs first.
Configurations alternate within each of --repeats rounds (so drift on a shared machine hits all
alike); figures are medians over rounds. samples/s = docs / wall-clock of `generate_until`;
media share = media_s / (media_s + generate_s) from the plugin's `timing`. The plugin's media_s
also covers building the prompt (chat template, tokenizer), so the target line times the cache
read alone (`load_video` on the warm cache, right after each warm pass) against the same sample
time, and prints the whole media share beside it.

Threads: torch runs on --threads (default 1). On a small machine shared with other work, OpenMP
threads waiting at every op's barrier for a core another process holds made generation several
times slower and erratic; one thread measured steadier (and about as fast when the machine was
idle). Codec selection keeps its own setting (CodecConfig.threads).

    python benchmarks/eval_speed.py [--repeats 3] [--videos 8] [--data DIR] [--quick]

(progress bars go to stderr: add `2>/dev/null` for the figures alone)
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
REAL_DATA = ROOT / ".." / "shared" / "real_data"
QWEN3 = REAL_DATA / "tokenizers" / "qwen3"
MAX_NEW_TOKENS = 16  # the local video tasks' own generation_kwargs
# the docs of the five ovmllm_temporal_<family> tasks, taken in turn, as one request list
TEMPORAL = "ovmllm_temporal_*"
TARGET_SHARE = 0.05  # issue 12: selection with a warm cache < 5% of a sample


@dataclass
class Config:
    mode: str  # codec | frames
    batch: int
    cache: str  # cold | warm | none (frames mode)

    @property
    def label(self) -> str:
        return f"{self.mode:6s} batch {self.batch}  {self.cache:5s}"


@dataclass
class Pass:
    """One pass of one configuration over a task's docs."""

    docs: int
    wall_s: float
    media_s: float
    generate_s: float
    read_s: float = 0.0
    """Warm passes: reading the docs' selections from the cache alone, timed right after."""

    @property
    def samples_per_s(self) -> float:
        return self.docs / self.wall_s

    @property
    def media_share(self) -> float:
        return self.media_s / (self.media_s + self.generate_s)

    @property
    def read_share(self) -> float:
        return self.read_s / (self.media_s + self.generate_s)


def build_checkpoint(folder: Path) -> Path:
    """configs/model/tiny.yaml with seeded random weights, saved as a checkpoint folder."""
    from ovmllm.build import ModelConfig, build_model
    from ovmllm.config import load_config

    torch.manual_seed(0)
    cfg = load_config(ModelConfig, ROOT / "configs/model/tiny.yaml", [f"tokenizer={QWEN3}"])
    build_model(cfg).save_pretrained(folder)
    return folder


def temporal_docs(data: Path, videos: int, width: int, height: int) -> list[dict]:
    """`videos` test docs of the generated temporal QA, the families taken in turn."""
    from eval.local_tasks import temporal_docs as family_docs
    from ovmllm.data.temporal import FAMILIES, TemporalConfig, write_temporal_dataset

    per_family = math.ceil(videos / len(FAMILIES))
    cfg = TemporalConfig(train_per_family=0, test_per_family=per_family, width=width, height=height)
    started = time.perf_counter()
    dataset = write_temporal_dataset(data, cfg)
    print(f"temporal QA: {len(FAMILIES)} x {per_family} test videos of {width}x{height}, "
          f"200-400 frames, in {dataset} ({time.perf_counter() - started:.1f} s)")  # fmt: skip
    by_family = [family_docs(dataset, family) for family in FAMILIES]
    in_turn = [doc for row in zip(*by_family, strict=True) for doc in row]
    return in_turn[:videos]


def demo_docs() -> list[dict]:
    from eval.local_tasks import demo_video_docs

    return demo_video_docs(REAL_DATA.resolve())


def requests_for(task: str, docs: list[dict]) -> list:
    """The Instances lmms-eval builds for a generate_until video task: the messages come from
    doc_to_visual (a video path) and doc_to_text (the doc's ready prompt)."""
    from lmms_eval.api.instance import Instance

    def doc_to_messages(doc: dict) -> list[dict]:
        return [{"role": "user", "content": [{"type": "video", "url": doc["video"]},
                                             {"type": "text", "text": doc["prompt"]}]}]  # fmt: skip

    settings = {"max_new_tokens": MAX_NEW_TOKENS, "temperature": 0, "do_sample": False}
    return [
        Instance(
            "generate_until",
            (None, doc_to_messages, settings, i, task, "test"),
            i,
            {"task": task, "doc_id": i, "repeats": 1},
        )
        for i in range(len(docs))
    ]


def plugin(checkpoint: Path, batch: int, mode_args: dict, cache_dir: str, tasks: dict):
    from eval.lmms_model import OVMLLMEval

    lm = OVMLLMEval(pretrained=str(checkpoint), batch_size=batch, cache_dir=cache_dir, **mode_args)
    lm.task_dict = {task: {"test": docs} for task, docs in tasks.items()}
    return lm


def run_pass(lm, requests: list) -> Pass:
    before = dict(lm.timing)
    started = time.perf_counter()
    lm.generate_until(requests)
    wall = time.perf_counter() - started
    if lm.media_failures:
        sys.exit(f"eval_speed: media failed to load: {lm.media_failures[:3]}")
    return Pass(
        docs=len(requests),
        wall_s=wall,
        media_s=lm.timing["media_s"] - before["media_s"],
        generate_s=lm.timing["generate_s"] - before["generate_s"],
    )


def cache_read_s(lm, docs: list[dict]) -> float:
    """Seconds to load the docs' videos through the plugin's media settings: with a warm cache,
    the selection's share of the plugin's media_s (the rest is building the prompt)."""
    from ovmllm.media import load_video

    started = time.perf_counter()
    for doc in docs:
        load_video(doc["video"], lm.processor.media, lm.processor.spec)
    return time.perf_counter() - started


def equal_budget_frames(checkpoint: Path, video: str) -> dict:
    """Frames-mode model_args with the codec budget's visual tokens: as many frames as the
    budget's frame-equivalents, each with as many patches (of the tower's own size) as a codec
    canvas frame has; prints the token counts of one item in each mode."""
    from ovmllm.media import load_video

    codec_lm = plugin(checkpoint, 1, {}, "none", {})
    codec, spec = codec_lm.processor.media.codec, codec_lm.processor.spec
    if codec.budget_frames is None or codec.budget_frames != int(codec.budget_frames):
        sys.exit(f"eval_speed: the checkpoint's codec budget_frames={codec.budget_frames} is not a "
                 "whole number of frames; frames mode cannot match it")  # fmt: skip
    side = math.isqrt(codec.patches_per_frame)
    args = {"video_mode": "frames", "frames": int(codec.budget_frames),
            "frame_size": side * spec.patch_size}  # fmt: skip
    frames_lm = plugin(checkpoint, 1, args, "none", {})
    counts = {}
    for name, lm in (("codec", codec_lm), ("frames", frames_lm)):
        item = load_video(video, lm.processor.media, lm.processor.spec)
        counts[name] = (lm.processor.num_visual_tokens(item), lm.processor.tokens_per_frame(item))
    print(f"codec:  {codec.frames} sampled frames, canvas {codec.canvas_size} px, budget "
          f"{codec.budget_frames:g} frames → {counts['codec'][0]} visual tokens "
          f"(per frame {counts['codec'][1]})")  # fmt: skip
    print(f"frames: {args['frames']} frames at {args['frame_size']} px, patch {spec.patch_size} → "
          f"{counts['frames'][0]} visual tokens (per frame {counts['frames'][1]})")  # fmt: skip
    if counts["codec"][0] != counts["frames"][0]:
        sys.exit("eval_speed: the two modes' visual tokens differ; the comparison is not fair")
    return args


def warm_up(checkpoint: Path, mode_args: dict, task: str, docs: list[dict]) -> None:
    """First-use costs (imports, allocator, kernels) paid on one request outside the figures."""
    lm = plugin(checkpoint, 1, mode_args, "none", {task: docs[:1]})
    lm.generate_until(requests_for(task, docs[:1]))


def measure(checkpoint: Path, frames_args: dict, tasks: dict, batches, repeats: int, tmp: Path):
    """task → config → passes, configurations alternating within each round."""
    passes: dict[str, dict[str, list[Pass]]] = {task: {} for task in tasks}
    for round_ in range(repeats):
        for task, docs in tasks.items():
            requests = requests_for(task, docs)
            for batch in batches:
                cache = tmp / f"cache-{task}-b{batch}-r{round_}"  # empty: cold
                lm = plugin(checkpoint, batch, {}, str(cache), {task: docs})
                cold = run_pass(lm, requests)
                warm = run_pass(lm, requests)
                warm.read_s = cache_read_s(lm, docs)
                for state, measured in (("cold", cold), ("warm", warm)):
                    key = Config("codec", batch, state).label
                    passes[task].setdefault(key, []).append(measured)
                lm = plugin(checkpoint, batch, frames_args, "none", {task: docs})
                key = Config("frames", batch, "none").label
                passes[task].setdefault(key, []).append(run_pass(lm, requests))
            print(f"round {round_ + 1}/{repeats}: {task} done", flush=True)
    return passes


def report(passes: dict[str, dict[str, list[Pass]]], batches) -> None:
    for task, by_config in passes.items():
        baseline_key = Config("frames", batches[0], "none").label
        baseline = statistics.median(p.samples_per_s for p in by_config[baseline_key])
        docs = next(iter(by_config.values()))[0].docs
        print(f"\n{task}: {docs} docs (x = samples/s ratio to frames batch {batches[0]})")
        print(f"  {'':24s} {'samples/s':>9s} {'x':>5s} {'media ms':>9s} {'generate ms':>11s}"
              f" {'media share':>11s}")  # fmt: skip
        for key, runs in by_config.items():
            rate = statistics.median(p.samples_per_s for p in runs)
            media = statistics.median(p.media_s / p.docs for p in runs) * 1e3
            generate = statistics.median(p.generate_s / p.docs for p in runs) * 1e3
            share = statistics.median(p.media_share for p in runs)
            print(f"  {key:24s} {rate:9.2f} {rate / baseline:5.2f} {media:9.1f} {generate:11.1f}"
                  f" {share:10.1%}")  # fmt: skip
        for batch in batches:
            runs = by_config[Config("codec", batch, "warm").label]
            share = statistics.median(p.read_share for p in runs)
            read = statistics.median(p.read_s / p.docs for p in runs) * 1e3
            sample = statistics.median((p.media_s + p.generate_s) / p.docs for p in runs) * 1e3
            media = statistics.median(p.media_share for p in runs)
            verdict = "met" if share < TARGET_SHARE else "NOT met"
            print(f"  selection with a warm cache: {share:.1%} of a sample (target < "
                  f"{TARGET_SHARE:.0%}: {verdict}) [batch {batch}: cache read {read:.1f} ms of "
                  f"{sample:.0f} ms; with the prompt build, media_s is {media:.1%}]")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="rounds over all configurations")
    parser.add_argument("--videos", type=int, default=8, help="temporal QA docs per pass")
    parser.add_argument("--data", type=Path, default=None,
                        help="temporal dataset folder (written once, then reused)")  # fmt: skip
    parser.add_argument("--width", type=int, default=160, help="temporal video width")
    parser.add_argument("--height", type=int, default=120, help="temporal video height")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8], help="batch sizes")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: on a shared machine, OpenMP threads that wait "
                        "for a busy core stretch every op; see the docstring)")  # fmt: skip
    parser.add_argument("--no-demo", action="store_true", help="skip ovmllm_demo_video_mc")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 1 round, 4 videos, batch 1 and 2, no demo")  # fmt: skip
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.videos, args.batch, args.no_demo = 1, 4, [1, 2], True
    if args.repeats < 1 or args.videos < 1 or min(args.batch) < 1 or args.threads < 1:
        parser.error("--repeats, --videos, --batch and --threads must be positive")
    if not QWEN3.is_dir():
        sys.exit(f"eval_speed: the Qwen3 tokenizer is missing ({QWEN3.resolve()}): this benchmark "
                 "needs ../shared/real_data/tokenizers/qwen3 beside the repository")  # fmt: skip
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    print(f"torch threads: {torch.get_num_threads()}; max_new_tokens {MAX_NEW_TOKENS}; "
          f"{args.repeats} round(s)")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        checkpoint = build_checkpoint(tmp / "tiny")
        data = args.data or tmp / "temporal"
        tasks = {TEMPORAL: temporal_docs(data, args.videos, args.width, args.height)}
        demo_videos = REAL_DATA / "video" / "onevision_demo"
        if not args.no_demo and demo_videos.is_dir():
            tasks["ovmllm_demo_video_mc"] = demo_docs()
        elif not args.no_demo:
            print(f"no {demo_videos}: the demo-video task is skipped")
        frames_args = equal_budget_frames(checkpoint, tasks[TEMPORAL][0]["video"])
        for mode_args in ({}, frames_args):
            warm_up(checkpoint, mode_args, TEMPORAL, tasks[TEMPORAL])
        passes = measure(checkpoint, frames_args, tasks, args.batch, args.repeats, tmp)
    report(passes, args.batch)
    print(
        f"\ntotal {time.perf_counter() - started:.0f} s (a shared machine: other work may "
        "inflate any figure; the ratios within a round are the robust part)"
    )


if __name__ == "__main__":
    main()
