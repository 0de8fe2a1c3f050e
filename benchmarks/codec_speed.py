"""Codec selection vs the decode every frame loader pays, measured in the same run.

Baseline: a PyAV decode of all frames with the same threading (slice, `threads`), plus
converting the T sampled frames to RGB arrays. Selection: `select_patches` with the default
settings (which decodes every frame once with vector export, scores T frames, cuts K patches).
Both wall-clock and CPU time (all threads) are reported, as medians over interleaved repeats;
the ratio target is <= 1.3x. The re-encode fallback (HEVC, MJPEG) is measured separately. Last,
each fast kernel of the selection against the plain way it replaces (why it exists).

    python benchmarks/codec_speed.py [--repeats 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter
from threadpoolctl import ThreadpoolController

from encoder.codec.canvas import Canvas, Painter
from encoder.codec.config import CodecConfig
from encoder.codec.frames import canvas_block
from encoder.codec.motion import median_by_partition
from encoder.codec.pipeline import select_patches
from encoder.codec.plan import sample_indices
from encoder.codec.saliency import uint8_histogram
from encoder.codec.synthetic import write_synthetic_video
from encoder.codec.topk import top_k_mask

REAL_VIDEOS = (
    Path(__file__).resolve().parents[1] / "../shared/real_data/video/onevision_demo/videos"
)


def decode_baseline(path: Path, frames: int, threads: int, canvas: int | None = None) -> None:
    """Decode every frame; convert the T sampled ones to RGB arrays (at native size, or
    letterboxed to `canvas` px as a loader feeding the 576 canvas would, with the project's
    fastest frame → canvas conversion)."""
    container = av.open(str(path))
    stream = container.streams.video[0]
    stream.codec_context.thread_type = "SLICE"
    stream.codec_context.thread_count = threads
    wanted = set(sample_indices(stream.frames, frames).tolist())
    geo = Canvas.fit(stream.height, stream.width, "letterbox", canvas, 16) if canvas else None
    painter = Painter()
    arrays = []
    for i, frame in enumerate(container.decode(stream)):
        if i in wanted:
            if canvas:
                arrays.append(geo.paint(frame, painter))
            else:
                arrays.append(frame.to_ndarray(format="rgb24"))
    container.close()


def timed(fn) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def compare(name: str, path: Path, cfgs: dict[str, CodecConfig], repeats: int, threads: int):
    runs: dict[str, list[tuple[float, float]]] = {"baseline": [], "canvas": []}
    runs |= {k: [] for k in cfgs}
    select_patches(path, next(iter(cfgs.values())))  # warm-up: first-use imports and caches
    for _ in range(repeats):  # interleaved, so drift on a shared machine hits all alike
        runs["baseline"].append(timed(lambda: decode_baseline(path, 64, threads)))
        runs["canvas"].append(timed(lambda: decode_baseline(path, 64, threads, canvas=576)))
        for key, cfg in cfgs.items():
            runs[key].append(timed(lambda cfg=cfg: select_patches(path, cfg)))
    wall = {k: statistics.median(w for w, _ in v) for k, v in runs.items()}
    cpu = {k: statistics.median(c for _, c in v) for k, v in runs.items()}
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        info = f"{s.codec_context.name} {s.width}x{s.height} {s.frames} frames"
    print(f"\n{name}: {info}  (x = ratio to the baseline; x576 = to the canvas baseline)")
    print(f"  {'':30s} {'wall s':>7s} {'cpu s':>7s} {'wall x':>7s} {'cpu x':>6s} {'wall x576':>9s}"
          f" {'clips/s':>7s}")  # fmt: skip
    labels = {"baseline": "baseline: decode + T RGB", "canvas": "decode + T RGB at 576 canvas"}
    for key in runs:
        print(
            f"  {labels.get(key, key):30s} {wall[key]:7.3f} {cpu[key]:7.3f}"
            f" {wall[key] / wall['baseline']:7.2f} {cpu[key] / cpu['baseline']:6.2f}"
            f" {wall[key] / wall['canvas']:9.2f} {1 / wall[key]:7.2f}"
        )


def ms_per_call(fn, repeats: int) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats * 1e3


def kernels(repeats: int) -> None:
    """Each fast kernel against the plain way it replaces, in ms per call."""
    rng = np.random.default_rng(0)
    rows: list[tuple[str, float, float]] = []
    for label, (h, w) in {"224p": (224, 224), "360p": (360, 640), "720p": (720, 1280)}.items():
        rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
        canvas = Canvas.fit(h, w, "letterbox", 576, 16)
        painter, straight = Painter(), VideoReformatter()

        def straight_to_rgb(frame=frame, canvas=canvas, straight=straight) -> np.ndarray:
            return straight.reformat(
                frame, canvas.resize_w, canvas.resize_h, "rgb24", interpolation="BILINEAR"
            ).to_ndarray()

        rows.append((
            f"paint {label}: own format, then RGB (vs straight to rgb24)",
            ms_per_call(straight_to_rgb, 20 * repeats),
            ms_per_call(lambda c=canvas, f=frame, p=painter: c.paint(f, p), 20 * repeats),
        ))  # fmt: skip
    residual = rng.integers(0, 40, (720, 1280), dtype=np.uint8)
    rows.append((
        "uint8 histogram 720p: pixel pairs (vs np.bincount)",
        ms_per_call(lambda: np.bincount(residual.ravel(), minlength=256), 20 * repeats),
        ms_per_call(lambda: uint8_histogram(residual), 20 * repeats),
    ))  # fmt: skip
    cells = rng.normal(size=(180, 320)).astype(np.float32)
    rows.append((
        "median of 720p motion cells: by partition (vs np.median)",
        ms_per_call(lambda: np.median(cells), 20 * repeats),
        ms_per_call(lambda: median_by_partition(cells), 20 * repeats),
    ))  # fmt: skip
    scores = rng.random(64 * 36 * 36).astype(np.float32)
    rows.append((
        "top-K of 64x36x36 scores: one partition (vs stable sort)",
        ms_per_call(lambda: np.argsort(-scores, kind="stable")[:9072], 20 * repeats),
        ms_per_call(lambda: top_k_mask(scores, 9072), 20 * repeats),
    ))  # fmt: skip
    shape = (64, 576, 576, 3)
    rows.append((
        "64 canvases of 576: reused block (vs fresh memory)",
        ms_per_call(lambda: np.empty(shape, np.uint8).fill(1), repeats),
        ms_per_call(lambda: canvas_block(64, 576).fill(1), repeats),
    ))  # fmt: skip
    cached = ThreadpoolController()

    def one_blas_thread(controller: ThreadpoolController) -> None:
        controller.limit(limits=1, user_api="blas").restore_original_limits()

    rows.append((
        "one BLAS thread: cached controller (vs a new one)",
        ms_per_call(lambda: one_blas_thread(ThreadpoolController()), repeats),
        ms_per_call(lambda: one_blas_thread(cached), repeats),
    ))  # fmt: skip
    print("\nkernels (ms per call; x = how many times faster than the plain way):")
    for name, plain, fast in rows:
        print(f"  {name:60s} {plain:8.3f} {fast:8.3f} {plain / fast:6.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    base = CodecConfig(threads=args.threads)
    cfgs = {
        "select (overlap thread)": base,
        "select (single thread)": replace(base, overlap=False),
        "select residual=mc": replace(base, overlap=False, residual="mc"),
    }
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        videos = sorted(REAL_VIDEOS.glob("*.mp4")) if REAL_VIDEOS.is_dir() else []
        for video in videos:
            compare(f"real {video.name}", video, cfgs, args.repeats, args.threads)
        synth_224 = write_synthetic_video(tmp / "s224.mp4", "pan", 224, 224, frames=320).path
        compare("synthetic 224p", synth_224, cfgs, args.repeats, args.threads)
        synth_720 = write_synthetic_video(
            tmp / "s720.mp4", "pan", 1280, 720, frames=300, encoder_options={"preset": "ultrafast"}
        ).path
        compare("synthetic 720p", synth_720, cfgs, args.repeats, args.threads)
        print("\nfallback (no exported vectors → in-memory H.264 re-encode):")
        hevc = write_synthetic_video(
            tmp / "s224_hevc.mp4",
            "pan",
            224,
            224,
            frames=320,
            codec="libx265",
            encoder_options={"x265-params": "log-level=error"},
        ).path
        mjpeg = write_synthetic_video(
            tmp / "s224.avi", "pan", 224, 224, frames=320, codec="mjpeg", pix_fmt="yuvj420p"
        ).path
        fallback_cfgs = {
            "re-encode (overlap thread)": base,
            "re-encode (single thread)": replace(base, overlap=False),
        }
        for name, path in [("HEVC 224p", hevc), ("MJPEG 224p", mjpeg)]:
            compare(name, path, fallback_cfgs, args.repeats, args.threads)
    kernels(args.repeats)
    np.set_printoptions()


if __name__ == "__main__":
    main()
