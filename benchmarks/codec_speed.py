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

from encoder.codec.config import CodecConfig
from encoder.codec.select import sample_indices, select_patches
from encoder.codec.synthetic import write_synthetic_video

REAL_VIDEOS = (
    Path(__file__).resolve().parents[1] / "../shared/real_data/video/onevision_demo/videos"
)


def decode_baseline(path: Path, frames: int, threads: int) -> None:
    container = av.open(str(path))
    stream = container.streams.video[0]
    stream.codec_context.thread_type = "SLICE"
    stream.codec_context.thread_count = threads
    wanted = set(sample_indices(stream.frames, frames).tolist())
    arrays = []
    for i, frame in enumerate(container.decode(stream)):
        if i in wanted:
            arrays.append(frame.to_ndarray(format="rgb24"))
    container.close()


def timed(fn) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def compare(name: str, path: Path, cfgs: dict[str, CodecConfig], repeats: int, threads: int):
    runs: dict[str, list[tuple[float, float]]] = {"baseline": []} | {k: [] for k in cfgs}
    for _ in range(repeats):  # interleaved, so drift on a shared machine hits all alike
        runs["baseline"].append(timed(lambda: decode_baseline(path, 64, threads)))
        for key, cfg in cfgs.items():
            runs[key].append(timed(lambda cfg=cfg: select_patches(path, cfg)))
    base_wall = statistics.median(w for w, _ in runs["baseline"])
    base_cpu = statistics.median(c for _, c in runs["baseline"])
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        info = f"{s.codec_context.name} {s.width}x{s.height} {s.frames} frames"
    print(f"\n{name}: {info}")
    print(f"  {'':28s} {'wall s':>8s} {'cpu s':>8s} {'wall x':>7s} {'cpu x':>7s} {'clips/s':>8s}")
    print(
        f"  {'baseline (decode + T RGB)':28s} {base_wall:8.3f} {base_cpu:8.3f} {1:7.2f} {1:7.2f}"
        f" {1 / base_wall:8.2f}"
    )
    for key in cfgs:
        wall = statistics.median(w for w, _ in runs[key])
        cpu = statistics.median(c for _, c in runs[key])
        print(
            f"  {key:28s} {wall:8.3f} {cpu:8.3f} {wall / base_wall:7.2f} {cpu / base_cpu:7.2f}"
            f" {1 / wall:8.2f}"
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
        for name, path in [("HEVC 224p", hevc), ("MJPEG 224p", mjpeg)]:
            compare(
                name,
                path,
                {"select (re-encode)": replace(base, overlap=False)},
                args.repeats,
                args.threads,
            )
    np.set_printoptions()


if __name__ == "__main__":
    main()
