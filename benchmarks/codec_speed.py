"""Codec selection vs the decode every frame loader pays, measured in the same run.

Baseline: a PyAV decode of all frames with the same threading (slice, `threads`), plus
converting the T sampled frames to RGB arrays. Selection: `select_patches` with the default
settings (which decodes every frame once with vector export, scores T frames, cuts K patches).
Both wall-clock and CPU time (all threads) are reported, as medians over interleaved repeats;
the ratio target is <= 1.3x. The re-encode fallback (HEVC, MJPEG) is measured separately.

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

from encoder.codec.canvas import CanvasConverter, canvas_geometry
from encoder.codec.config import CodecConfig
from encoder.codec.select import sample_indices, select_patches
from encoder.codec.synthetic import write_synthetic_video

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
    geo = canvas_geometry(stream.height, stream.width, "letterbox", canvas, 16) if canvas else None
    to_canvas = CanvasConverter()
    arrays = []
    for i, frame in enumerate(container.decode(stream)):
        if i in wanted:
            if canvas:
                arrays.append(to_canvas(frame, 0, geo))
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
    np.set_printoptions()


if __name__ == "__main__":
    main()
