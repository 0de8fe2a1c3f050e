"""One frame's pieces: `open_video` and its `Decode`, and `score_frame` against the paper's
five steps written out plainly (percentiles, clip, fuse, bilinear resize onto the canvas, sum)."""

import numpy as np
import pytest

from encoder.codec.canvas import Canvas
from encoder.codec.config import CodecConfig
from encoder.codec.motion import cells_to_pixels
from encoder.codec.pooling import PatchPooler
from encoder.codec.saliency import frame_cues, score_frame
from encoder.codec.video import open_video
from tests.codec.test_canvas import explicit_scores


def test_open_video_counts_before_decoding_and_the_decode_yields_the_wanted_frames(make_video):
    video = make_video("mover.mp4", kind="mover", width=320, height=240, frames=96)
    cfg = CodecConfig()
    with open_video(video.path, cfg) as opened:
        assert (opened.num_packets, opened.width, opened.height) == (96, 320, 240)
        assert opened.codec == "h264" and opened.motion_source == "exported"
        decode = opened.decode({0, 10, 95}, cfg)
        assert decode.frames_decoded == 0  # nothing is decoded before the iteration
        frames = list(decode)
    assert [f.ordinal for f in frames] == [0, 10, 95]
    assert decode.frames_decoded == 96 and decode.packet_errors == 0
    assert frames[0].prev_luma is None and frames[1].prev_luma.shape == (240, 320)
    assert decode.frames_with_vectors == 2  # frame 0 is an I-frame


@pytest.mark.parametrize("weight", [0.25, 1.0, 3.0])
@pytest.mark.parametrize("fusion", ["mean", "sum", "max", "geomean"])
@pytest.mark.parametrize(("h", "w", "rotation"), [(48, 80, 0), (37, 22, 90), (30, 50, 180)])
def test_score_frame_is_the_five_steps(fusion, weight, h, w, rotation):
    rng = np.random.default_rng(h + rotation)
    motion = (rng.random((-(-h // 4), -(-w // 4))) * 6).astype(np.float32)
    residual = rng.integers(0, 60, (h, w), dtype=np.uint8)
    cfg = CodecConfig(canvas_size=96, patch=16, fusion=fusion, residual_weight=weight)
    canvas = Canvas.fit(h, w, "letterbox", 96, 16, rotation)
    got = score_frame(motion, residual, PatchPooler(canvas, h, w), cfg)

    motion_pixels = cells_to_pixels(motion, h, w).astype(np.float64)
    m = np.clip(motion_pixels / max(np.percentile(motion_pixels, 95), cfg.motion_floor), 0, 1)
    r = np.clip(residual / max(np.percentile(residual, 95), cfg.residual_floor), 0, 1)
    fused = {  # the weight applies to the mean only
        "mean": (m + weight * r) / (1 + weight),
        "sum": m + r,
        "max": np.maximum(m, r),
        "geomean": np.sqrt(m * r),
    }
    want = explicit_scores(np.rot90(fused[fusion], rotation // 90), canvas)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)


def test_the_residual_weight_defaults_to_a_quarter_and_must_not_be_negative():
    assert CodecConfig().residual_weight == 0.25
    with pytest.raises(ValueError, match=r"codec\.residual_weight"):
        CodecConfig(residual_weight=-1)


def test_i_frames_have_no_residual(make_video):
    gop = {"x264-params": "keyint=16:min-keyint=16:scenecut=0"}
    video = make_video("gop16.mp4", kind="mover", width=160, height=128, frames=64,
                       encoder_options=gop)  # fmt: skip
    cfg = CodecConfig(residual="mc")
    with open_video(video.path, cfg) as opened:
        frames = {f.ordinal: f for f in opened.decode({16, 17}, cfg)}
    assert frames[16].pict_type == 1 and frames[17].pict_type != 1  # I, then not I
    motion, residual = frame_cues(frames[16], cfg)
    assert not motion.any() and not residual.any()  # though frame 15 differs from frame 16
    assert (frames[16].luma != frames[16].prev_luma).any()
    assert frame_cues(frames[17], cfg)[1].any() and frame_cues(frames[17], CodecConfig())[1].any()
