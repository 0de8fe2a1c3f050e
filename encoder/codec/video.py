"""Open a video, count its frames without decoding, and decode it once for its sampled frames.

Frame count: the plan needs N (decoded frames) before decoding, so `open_video` demuxes the
file without decoding (cheap: compressed packets only) and counts the video packets. It keeps
those packets (up to `KEEP_PACKETS_BYTES`), so decoding reads them from memory: the file is
opened and read once. Longer videos are demuxed a second time. That count is exact for ordinary
files, constant or variable frame rate alike, because it never estimates N from duration x fps;
the header's own count (`stream.frames`, often 0 for MKV/WebM or raw streams) is recorded but
not trusted. If the decoder then yields a different number of frames (corrupt packets dropped,
a truncated tail), selection re-plans on the decoded count and serves each re-planned index by
the nearest frame it kept (see `plan.resolve_plan`); the meta records both counts. A count that
stops early (a demux error, or data the demuxer cannot read past, which it treats as the end)
plans on the packets before it; `demux_error` says why, and the plan is then not exact.

Motion vectors are read from the side data of the frames that are decoded anyway. Slice
threading only: frame-threaded decoding makes the exported vectors non-deterministic.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
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
# Compressed bytes `open_video` keeps in memory for the decode (a minute of 1080p is ~60 MB).
KEEP_PACKETS_BYTES = 256 << 20
# Demuxers stop at damaged data as if the file ended. A count that stops with more of the file
# unread than this (a share of the file, and bytes) is recorded as a demux stop: far more than
# the index a container keeps after its last packet (an MP4 `moov`, Matroska cues: at most a few
# percent, a few KB on small clips). Other streams running on long after the video (an audio
# tail) also read as a stop; that only marks the plan as not exact.
UNREAD_TAIL_SHARE = 0.2
UNREAD_TAIL_BYTES = 8 << 10


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


class OpenVideo:
    """What the container says about a video's first video stream, before decoding, and the
    way to decode it (from the packets demuxed while counting, or from the file again)."""

    def __init__(
        self,
        path: str | Path,
        stream: av.video.stream.VideoStream,
        packets: list[av.Packet] | None,
        num_packets: int,
        resources: ExitStack,
        demux_error: str | None = None,
    ) -> None:
        ctx = stream.codec_context
        rate = stream.average_rate or stream.guessed_rate or 0
        self.path = str(path)
        self.codec: str = ctx.name
        self.width: int = ctx.width  # decoded (coded-orientation) size
        self.height: int = ctx.height
        self.num_packets = num_packets  # the planned frame count N
        self.header_frames = int(stream.frames or 0)  # as the header states it (0 = unknown)
        # Why the count may have stopped short of the real N (None: it read to the end).
        self.demux_error = demux_error
        self.fps = float(rate)
        # "exported" (the stream's own vectors) | "reencoded" (the H.264 fallback)
        self.motion_source = "exported" if self.codec in MV_EXPORTING_DECODERS else "reencoded"
        self._stream = stream
        self._packets = packets  # None when they were too many bytes to keep
        self._resources = resources

    def stream_and_packets(
        self,
    ) -> tuple[av.video.stream.VideoStream, list[av.Packet] | Iterator[av.Packet]]:
        """The stream to decode and its packets: those kept in memory, or the file demuxed
        again (closed with the `open_video` block)."""
        if self._packets is not None:
            return self._stream, self._packets
        container, stream = _open(self.path)
        self._resources.callback(container.close)
        return stream, _packets_until_error(container, stream)

    def decode(self, wanted: set[int], cfg: CodecConfig, with_motion: bool = True) -> Decode:
        """One decode of the whole video that yields the `wanted` ordinals (see `Decode`)."""
        return Decode(self, wanted, cfg, with_motion)


@contextmanager
def open_video(path: str | Path, cfg: CodecConfig) -> Iterator[OpenVideo]:
    """Open the video and count its packets without decoding; every container it opens (the
    decode may open the file again) is closed when the block ends."""
    with ExitStack() as resources:
        container, stream = _open(path)
        resources.callback(container.close)
        deadline = time.monotonic() + cfg.max_decode_seconds
        num_packets = 0
        kept: list[av.Packet] | None = []
        kept_bytes = 0
        read_to = 0  # end of the furthest packet in the file
        demux_error = None
        try:
            for packet in container.demux(stream):
                if packet.size > 0:
                    num_packets += 1
                    kept_bytes += packet.size
                    if packet.pos is not None and packet.pos >= 0:
                        read_to = max(read_to, packet.pos + packet.size)
                if kept is not None:
                    kept.append(packet)  # the empty packets at the end flush the decoder
                    if kept_bytes > KEEP_PACKETS_BYTES:
                        kept = None
                if time.monotonic() > deadline:
                    raise VideoDecodeError(path, f"demux exceeded {cfg.max_decode_seconds}s")
        except av.error.FFmpegError as exc:
            # damaged data ends the count; decoding will say whether any frame survives
            demux_error = f"demux error after {num_packets} packets ({exc})"
        if num_packets == 0:
            raise VideoDecodeError(path, "video stream has no packets (zero decodable frames)")
        demux_error = demux_error or _stopped_short(path, stream, num_packets, read_to)
        video = OpenVideo(path, stream, kept, num_packets, resources, demux_error)
        if kept is None:  # the decode demuxes the file again
            container.close()
        yield video


def _stopped_short(
    path: str | Path, stream: av.video.stream.VideoStream, num_packets: int, read_to: int
) -> str | None:
    """Why a count that ended without an error still stopped short, or None: the header
    declares more frames, or much of the file lies unread after the last packet."""
    declared = int(stream.frames or 0)
    if declared > num_packets:
        return f"demux ended after {num_packets} packets; the header declares {declared}"
    size = Path(path).stat().st_size
    unread = size - read_to
    if read_to > 0 and unread > max(UNREAD_TAIL_SHARE * size, UNREAD_TAIL_BYTES):
        return f"demux ended after {num_packets} packets with {unread} of {size} bytes unread"
    return None


def _packets_until_error(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream
) -> Iterator[av.Packet]:
    """The stream's packets until the end or the first demux error (which `open_video`, when
    it counted the same packets, already recorded)."""
    try:
        yield from container.demux(stream)
    except av.error.FFmpegError:
        return


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


class Decode:
    """Decoding every frame of an open video once, yielding the wanted ordinals in order.

    Every frame is decoded (prediction needs them all) but only wanted frames are converted.
    Corrupt packets are counted and skipped; a decode longer than `cfg.max_decode_seconds`
    raises `VideoDecodeError`. The counts describe the decode so far, and all of it once the
    iteration ended.
    """

    def __init__(
        self, video: OpenVideo, wanted: set[int], cfg: CodecConfig, with_motion: bool
    ) -> None:
        self.video, self.wanted, self.cfg, self.with_motion = video, wanted, cfg, with_motion
        self.frames_decoded = 0
        self.packet_errors = 0
        self.frames_with_vectors = 0
        self.seconds = 0.0

    def __iter__(self) -> Iterator[SampledFrame]:
        video, wanted, cfg = self.video, self.wanted, self.cfg
        start = time.monotonic()
        stream, packets = video.stream_and_packets()
        ctx = stream.codec_context
        ctx.thread_type = "SLICE"
        ctx.thread_count = cfg.threads
        exported = self.with_motion and video.motion_source == "exported"
        if exported:
            ctx.options = {"flags2": "+export_mvs"}
        reencoder = None
        if self.with_motion and video.motion_source == "reencoded":
            reencoder = MotionReencoder(video.width, video.height, cfg.reencode_preset)
        # The re-encode needs each sampled frame and its predecessor (see reencode.py).
        fed = wanted | {ordinal - 1 for ordinal in wanted if ordinal > 0}
        waiting: dict[int, SampledFrame] = {}  # sampled frames whose re-encoded vectors are pending
        prev: av.VideoFrame | None = None
        ordinal = 0
        try:
            for packet in packets:
                if time.monotonic() - start > cfg.max_decode_seconds:
                    raise VideoDecodeError(video.path, f"decode exceeded {cfg.max_decode_seconds}s")
                try:
                    frames = ctx.decode(packet)
                except av.error.FFmpegError:
                    self.packet_errors += 1
                    continue
                for frame in frames:
                    sampled = None
                    if ordinal in wanted:
                        vectors = None
                        if exported:
                            side = frame.side_data.get("MOTION_VECTORS")
                            vectors = side.to_ndarray() if side is not None else None
                            self.frames_with_vectors += vectors is not None
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
                        yield from self._attach(reencoder.push(luma, ordinal), waiting)
                    elif sampled is not None:
                        yield sampled
                    prev = frame
                    ordinal += 1
            if reencoder is not None:
                yield from self._attach(reencoder.flush(), waiting)
        finally:
            self.frames_decoded = ordinal
            self.seconds = time.monotonic() - start
        if ordinal == 0:
            raise VideoDecodeError(
                video.path, f"zero decodable frames ({self.packet_errors} bad packets)"
            )

    def _attach(
        self, results: list[tuple[int, np.ndarray | None]], waiting: dict[int, SampledFrame]
    ) -> Iterator[SampledFrame]:
        """Give waiting sampled frames the vectors of their re-encoded twin."""
        for ordinal, vectors in results:
            sampled = waiting.pop(ordinal, None)
            if sampled is None:
                continue
            sampled.motion_vectors = vectors
            self.frames_with_vectors += vectors is not None
            yield sampled
