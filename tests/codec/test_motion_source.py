"""Which motion source each codec gets: its own exported vectors, or the H.264 re-encode."""

import pytest

from encoder.codec import CodecConfig, select_patches
from encoder.codec.synthetic import object_patches, recall
from encoder.codec.video import MV_EXPORTING_DECODERS

QUIET_X265 = {"x265-params": "log-level=error"}


@pytest.mark.parametrize(
    ("name", "codec", "pix_fmt", "size", "decoder"),
    [
        ("h264.mp4", "libx264", "yuv420p", (160, 128), "h264"),
        ("mpeg4.mp4", "mpeg4", "yuv420p", (160, 128), "mpeg4"),
        ("mpeg2.mpg", "mpeg2video", "yuv420p", (160, 128), "mpeg2video"),
        ("h263.avi", "h263", "yuv420p", (176, 144), "h263"),
    ],
)
def test_codecs_that_export_vectors_use_them(make_video, name, codec, pix_fmt, size, decoder):
    video = make_video(name, kind="mover", width=size[0], height=size[1], frames=48,
                       codec=codec, pix_fmt=pix_fmt)  # fmt: skip
    selection = select_patches(video.path, CodecConfig(canvas="crop", budget=600))
    assert selection.meta["source_codec"] == decoder and decoder in MV_EXPORTING_DECODERS
    assert selection.meta["motion_source"] == "exported"
    assert selection.meta["frames_with_vectors"] > 0
    assert selection.num_patches == 600


@pytest.mark.parametrize(
    ("name", "codec", "pix_fmt", "options", "decoder"),
    [
        ("hevc.mp4", "libx265", "yuv420p", QUIET_X265, "hevc"),
        ("mjpeg.avi", "mjpeg", "yuvj420p", None, "mjpeg"),
        ("vp9.webm", "libvpx-vp9", "yuv420p", None, "vp9"),
    ],
)
def test_streams_without_vectors_fall_back_to_the_reencode(
    make_video, name, codec, pix_fmt, options, decoder
):
    video = make_video(name, kind="mover", width=160, height=128, frames=48, codec=codec,
                       pix_fmt=pix_fmt, encoder_options=options)  # fmt: skip
    truth = object_patches(video, CodecConfig(canvas="crop"))
    cfg = CodecConfig(canvas="crop", budget=256 + 2 * len(truth))
    selection = select_patches(video.path, cfg)
    assert selection.meta["source_codec"] == decoder and decoder not in MV_EXPORTING_DECODERS
    assert selection.meta["motion_source"] == "reencoded"
    assert selection.meta["frames_with_vectors"] > 0
    assert recall(selection.positions, truth) >= 0.8
