"""Decode a video once with PyAV and hand over what selection needs of each sampled frame.

Frame count: the plan needs N (decoded frames) before decoding, so `probe_video` demuxes the
file without decoding (cheap: compressed packets only) and counts the video packets. It keeps
those packets (up to `KEEP_PACKETS_BYTES`) and the open container, so decoding reads them from
memory: the file is opened and read once. Longer videos are demuxed a second time. That
count is exact for ordinary files, constant or variable frame rate alike, because it never
estimates N from duration x fps; the header's own count (`stream.frames`, often 0 for MKV/WebM
or raw streams) is recorded but not trusted. If the decoder then yields a different number of
frames (corrupt packets dropped, a truncated tail), selection re-plans on the decoded count and
serves each re-planned index by the nearest frame it kept (see `select.resolve_plan`); the
meta records both counts.

Motion vectors are read from the side data of the frames that are decoded anyway. Slice
threading only: frame-threaded decoding makes the exported vectors non-deterministic.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

from encoder.codec.config import CodecConfig
from encoder.codec.errors import VideoDecodeError
from encoder.codec.reencode import MotionReencoder

# Decoders whose FFmpeg build exports motion vectors with flags2=+export_mvs (each checked by
# tests/codec/test_motion_source.py). Everything else (hevc, vp9, av1, mjpeg, cinepak, ...) goes
# through the in-memory H.264 re-encode in `reencode.py`.
MV_EXPORTING_DECODERS = frozenset({"h264", "mpeg4", "mpeg1video", "mpeg2video", "h263", "msmpeg4"})
# Pixel formats whose first plane is 8-bit luma at full resolution (read without conversion).
_PLANAR_8BIT_LUMA = frozenset(
    {
        "yuv420p",
        "yuvj420p",
        "yuv422p",
        "yuvj422p",
        "yuv444p",
        "yuvj444p",
        "yuv440p",
        "yuvj440p",
        "yuv411p",
        "yuv410p",
        "gray",
        "nv12",
        "nv21",
    }
)
PICT_TYPE_I = 1
# Compressed bytes a probe keeps in memory for the decode (a minute of 1080p is ~60 MB).
KEEP_PACKETS_BYTES = 256 << 20


@dataclass
class VideoProbe:
    """What the container says about a video's first video stream, before decoding."""

    path: str
    codec: str
    width: int  # decoded (coded-orientation) size
    height: int
    num_packets: int  # the planned frame count N
    header_frames: int  # stream.frames as the container header states it (0 = unknown)
    fps: float
    motion_source: str  # "exported" (the stream's own vectors) | "reencoded" (H.264 fallback)
    # The still-open container and its demuxed packets, for `decode_sampled` (which closes it);
    # None when the packets were too many bytes to keep.
    opened: tuple[av.container.InputContainer, list[av.Packet]] | None = field(
        default=None, repr=False
    )

    def close(self) -> None:
        if self.opened is not None:
            self.opened[0].close()
            self.opened = None


@dataclass
class SampledFrame:
    """One decoded frame that the plan samples, with what the saliency maps need."""

    ordinal: int  # index in decode (presentation) order
    frame: av.VideoFrame
    luma: np.ndarray  # [H, W] uint8
    prev_luma: np.ndarray | None  # luma of frame ordinal - 1 (None for the first frame)
    motion_vectors: np.ndarray | None  # FFmpeg AVMotionVector records, or None
    pict_type: int  # 1 = I, 2 = P, 3 = B, of the original stream
    rotation: int  # display rotation, degrees counter-clockwise


@dataclass
class DecodeStats:
    frames_decoded: int = 0
    packet_errors: int = 0
    frames_with_vectors: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)


def _open(path: str | Path) -> tuple[av.container.InputContainer, av.video.stream.VideoStream]:
    path = Path(path)
    if not path.exists():
        raise VideoDecodeError(path, "file not found")
    if not path.is_file():
        raise VideoDecodeError(path, "not a regular file")
    try:
        container = av.open(str(path), timeout=30.0)
    except (av.error.FFmpegError, UnicodeDecodeError) as exc:
        raise VideoDecodeError(path, f"not a readable media container ({exc})") from exc
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        container.close()
        raise VideoDecodeError(path, f"no video stream (streams: {', '.join(kinds)})")
    return container, container.streams.video[0]


def probe_video(path: str | Path, cfg: CodecConfig) -> VideoProbe:
    """Open the video, count its packets without decoding, and choose the motion source."""
    container, stream = _open(path)
    deadline = time.monotonic() + cfg.max_decode_seconds
    num_packets = 0
    kept: list[av.Packet] | None = []
    kept_bytes = 0
    try:
        for packet in container.demux(stream):
            if packet.size > 0:
                num_packets += 1
                kept_bytes += packet.size
            if kept is not None:
                kept.append(packet)  # the empty packets at the end flush the decoder
                if kept_bytes > KEEP_PACKETS_BYTES:
                    kept = None
            if time.monotonic() > deadline:
                raise VideoDecodeError(path, f"demux exceeded {cfg.max_decode_seconds}s")
    except av.error.FFmpegError:
        pass  # a damaged tail ends the count; decoding will say whether any frame survives
    except BaseException:
        container.close()
        raise
    if num_packets == 0 or kept is None:
        container.close()
    if num_packets == 0:
        raise VideoDecodeError(path, "video stream has no packets (zero decodable frames)")
    ctx = stream.codec_context
    codec = ctx.name
    rate = stream.average_rate or stream.guessed_rate or 0
    return VideoProbe(
        path=str(path),
        codec=codec,
        width=ctx.width,
        height=ctx.height,
        num_packets=num_packets,
        header_frames=int(stream.frames or 0),
        fps=float(rate),
        motion_source="exported" if codec in MV_EXPORTING_DECODERS else "reencoded",
        opened=(container, kept) if kept is not None else None,
    )


def luma_of(frame: av.VideoFrame) -> np.ndarray:
    """The frame's 8-bit luma plane [H, W] as a fresh array (no colour conversion if planar)."""
    if frame.format.name in _PLANAR_8BIT_LUMA:
        plane = frame.planes[0]
        rows = np.frombuffer(plane, np.uint8).reshape(frame.height, plane.line_size)
        return rows[:, : frame.width].copy()
    return frame.to_ndarray(format="gray")


def _rotation(frame: av.VideoFrame) -> int:
    # Display matrices of real files are multiples of 90 degrees; snap anything else.
    return round((frame.rotation or 0) / 90.0) * 90 % 360


def decode_sampled(
    probe: VideoProbe,
    wanted: set[int],
    cfg: CodecConfig,
    stats: DecodeStats,
    with_motion: bool = True,
) -> Iterator[SampledFrame]:
    """Decode every frame once, yielding the wanted ordinals in order.

    Every frame is decoded (prediction needs them all) but only wanted frames are converted.
    Corrupt packets are counted and skipped; a decode longer than `cfg.max_decode_seconds`
    raises `VideoDecodeError`.
    """
    start = time.monotonic()
    if probe.opened is not None:
        container, packets = probe.opened
        probe.opened = None  # this decode owns (and closes) the container now
        stream = container.streams.video[0]
    else:
        container, stream = _open(probe.path)
        packets = container.demux(stream)
    ctx = stream.codec_context
    ctx.thread_type = "SLICE"
    ctx.thread_count = cfg.threads
    exported = with_motion and probe.motion_source == "exported"
    if exported:
        ctx.options = {"flags2": "+export_mvs"}
    reencoder = None
    if with_motion and probe.motion_source == "reencoded":
        reencoder = MotionReencoder(probe.width, probe.height, cfg.reencode_preset)
    # The re-encode needs each sampled frame and its predecessor (see reencode.py).
    fed = wanted | {ordinal - 1 for ordinal in wanted if ordinal > 0}
    waiting: dict[int, SampledFrame] = {}  # sampled frames whose re-encoded vectors are pending
    prev: av.VideoFrame | None = None
    ordinal = 0
    try:
        for packet in packets:
            if time.monotonic() - start > cfg.max_decode_seconds:
                raise VideoDecodeError(probe.path, f"decode exceeded {cfg.max_decode_seconds}s")
            try:
                frames = ctx.decode(packet)
            except av.error.FFmpegError as exc:
                stats.packet_errors += 1
                stats.errors.append(f"packet {packet.pts}: {exc}")
                continue
            for frame in frames:
                sampled = None
                if ordinal in wanted:
                    vectors = None
                    if exported:
                        side = frame.side_data.get("MOTION_VECTORS")
                        vectors = side.to_ndarray() if side is not None else None
                        stats.frames_with_vectors += vectors is not None
                    sampled = SampledFrame(
                        ordinal=ordinal,
                        frame=frame,
                        luma=luma_of(frame),
                        prev_luma=luma_of(prev) if prev is not None else None,
                        motion_vectors=vectors,
                        pict_type=int(frame.pict_type),
                        rotation=_rotation(frame),
                    )
                if reencoder is not None and ordinal in fed:
                    if sampled is not None:
                        waiting[ordinal] = sampled
                    luma = sampled.luma if sampled is not None else luma_of(frame)
                    yield from _attach(reencoder.push(luma, ordinal), waiting, stats)
                elif sampled is not None:
                    yield sampled
                prev = frame
                ordinal += 1
        if reencoder is not None:
            yield from _attach(reencoder.flush(), waiting, stats)
    finally:
        container.close()
        stats.frames_decoded = ordinal
        stats.seconds = time.monotonic() - start
    if ordinal == 0:
        raise VideoDecodeError(
            probe.path, f"zero decodable frames ({stats.packet_errors} bad packets)"
        )


def _attach(
    results: list[tuple[int, np.ndarray | None]],
    waiting: dict[int, SampledFrame],
    stats: DecodeStats,
) -> Iterator[SampledFrame]:
    """Give waiting sampled frames the vectors of their re-encoded twin."""
    for ordinal, vectors in results:
        sampled = waiting.pop(ordinal, None)
        if sampled is None:
            continue
        sampled.motion_vectors = vectors
        stats.frames_with_vectors += vectors is not None
        yield sampled
