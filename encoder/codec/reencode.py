"""Fallback motion source for streams whose decoder exports no motion vectors.

HEVC (FFmpeg's hevc decoder never exports them), VP9, AV1 and intra-only codecs (MJPEG,
Cinepak) are re-encoded in memory, as they are decoded, to H.264 luma, and the re-encode is
decoded with vector export. Only the frames motion is needed for are fed: each sampled frame
and the frame just before it (`video.Decode` picks them). The encoder has one
reference, no B-frames, no scene cut and no keyframe after the first, so every fed frame is a
P-frame predicted from the fed frame before it, which for a sampled frame is its predecessor
in the video: its vectors are its motion since the previous frame, as a stream's own P-frame
vectors are. (Feeding every frame would cost an encode per decoded frame; pairs cost 2T
encodes whatever the video's length.) The vectors describe the re-encoder's motion search,
not the original bitstream's: close for natural motion, but the source is recorded as
"reencoded" in every selection's meta. Pixels are never taken from the re-encode; patches come
from the original decode, and so do picture types (the `iframes` policy).

`tune=zerolatency` keeps the encoder one-in-one-out (no lookahead), so vectors arrive while
the original frame is still at hand; pairing still goes by pts so nothing depends on that.
"""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np


class MotionReencoder:
    """Encode luma frames to H.264 and decode them back with motion-vector export."""

    def __init__(self, width: int, height: int, preset: str) -> None:
        # x264 needs even sizes; edge-replicate one row/column, which leaves the 4x4 cell grid
        # of the original anchored at (0, 0).
        self.width, self.height = width, height
        self.encoder = av.CodecContext.create("libx264", "w")
        self.encoder.width = width + width % 2
        self.encoder.height = height + height % 2
        self.encoder.pix_fmt = "gray"
        self.encoder.time_base = Fraction(1, 25)
        self.encoder.framerate = Fraction(25, 1)
        self.encoder.options = {
            "preset": preset,
            "tune": "zerolatency",
            "x264-params": "keyint=infinite:scenecut=0:bframes=0:ref=1",
        }
        self.decoder = av.CodecContext.create("h264", "r")
        self.decoder.thread_type = "SLICE"
        self.decoder.thread_count = 1
        self.decoder.options = {"flags2": "+export_mvs"}

    def push(self, luma: np.ndarray, ordinal: int) -> list[tuple[int, np.ndarray | None]]:
        """Feed one frame; return (ordinal, vectors) of the frames re-decoded so far."""
        if luma.shape != (self.encoder.height, self.encoder.width):
            luma = np.pad(
                luma,
                ((0, self.encoder.height - luma.shape[0]), (0, self.encoder.width - luma.shape[1])),
                mode="edge",
            )
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(luma), format="gray")
        frame.pts = ordinal
        frame.time_base = self.encoder.time_base
        return self._decode(self.encoder.encode(frame))

    def flush(self) -> list[tuple[int, np.ndarray | None]]:
        results = self._decode(self.encoder.encode(None))
        for frame in self.decoder.decode(None):
            results.append(self._result(frame))
        return results

    def _decode(self, packets: list[av.Packet]) -> list[tuple[int, np.ndarray | None]]:
        results = []
        for packet in packets:
            for frame in self.decoder.decode(packet):
                results.append(self._result(frame))
        return results

    @staticmethod
    def _result(frame: av.VideoFrame) -> tuple[int, np.ndarray | None]:
        side = frame.side_data.get("MOTION_VECTORS")
        vectors = side.to_ndarray() if side is not None else None
        return int(frame.pts), vectors
