"""Bad input: each case gives a correct selection or a VideoDecodeError naming file and reason."""

import av
import numpy as np
import pytest

from encoder.codec import CodecConfig, VideoDecodeError, select_patches, select_with_frames
from encoder.codec.plan import sample_indices

CFG = CodecConfig(canvas="crop", budget=600)


def assert_valid(selection, cfg=CFG):
    hb, wb = selection.grid
    assert selection.positions.shape == (cfg.num_patches, 3)
    assert selection.patches.shape == (cfg.num_patches, 3, cfg.patch, cfg.patch)
    assert selection.frame_ids.shape == (cfg.frames,)
    assert (selection.positions[:, 0] < cfg.frames).all()
    assert (selection.positions[:, 1] < hb).all() and (selection.positions[:, 2] < wb).all()
    flat = selection.visible_indices
    assert (np.diff(flat) >= 0).all()


def test_missing_file(tmp_path):
    with pytest.raises(VideoDecodeError, match="file not found") as err:
        select_patches(tmp_path / "nope.mp4", CFG)
    assert err.value.path.endswith("nope.mp4")


def test_not_a_video(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("this is text, not a video\n" * 50)
    with pytest.raises(VideoDecodeError, match="not a readable media container"):
        select_patches(path, CFG)


def test_audio_only(tmp_path):
    path = tmp_path / "tone.m4a"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        samples = (np.sin(np.arange(16000) / 10) * 8000).astype(np.int16)[None]
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = 16000
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    with pytest.raises(VideoDecodeError, match="no video stream"):
        select_patches(path, CFG)


def test_zero_frames(tmp_path):
    path = tmp_path / "empty.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height = 64, 48
    with pytest.raises(VideoDecodeError):
        select_patches(path, CFG)


def test_truncated_mp4_without_index_is_an_error(make_video, tmp_path):
    video = make_video("mover.mp4", kind="mover", width=320, height=240, frames=96)
    path = tmp_path / "truncated.mp4"
    path.write_bytes(video.path.read_bytes()[: video.path.stat().st_size // 2])
    with pytest.raises(VideoDecodeError):
        select_patches(path, CFG)


def test_truncated_stream_selects_from_what_decodes(make_video, tmp_path):
    video = make_video("mover.ts", kind="mover", width=160, height=128, frames=96)
    path = tmp_path / "truncated.ts"
    path.write_bytes(video.path.read_bytes()[: video.path.stat().st_size * 2 // 3])
    selection = select_patches(path, CFG)
    assert_valid(selection)
    decoded = selection.meta["frames_decoded"]
    assert 0 < decoded < 96
    assert selection.frame_ids.max() < decoded


def test_corrupted_bytes_give_a_selection_or_a_clear_error(make_video, tmp_path):
    video = make_video("mover.ts", kind="mover", width=160, height=128, frames=96)
    data = bytearray(video.path.read_bytes())
    rng = np.random.default_rng(0)
    for start in rng.integers(2000, len(data) - 2000, 20):
        data[start : start + 200] = rng.integers(0, 256, 200, dtype=np.uint8).tobytes()
    path = tmp_path / "corrupted.ts"
    path.write_bytes(bytes(data))
    try:
        selection = select_patches(path, CFG)
    except VideoDecodeError as exc:
        assert "corrupted.ts" in str(exc)
    else:
        assert_valid(selection)


def test_one_frame(make_video):
    video = make_video("one.mp4", kind="mover", width=160, height=128, frames=1)
    selection = select_patches(video.path, CFG)
    assert_valid(selection)
    assert (selection.frame_ids == 0).all()


def test_fewer_frames_than_t_repeat_frames(make_video):
    video = make_video("ten.mp4", kind="mover", width=160, height=128, frames=10)
    selection = select_patches(video.path, CFG)
    assert_valid(selection)
    assert selection.frame_ids.tolist() == sample_indices(10, 64).tolist()
    assert selection.meta["plan_exact"]


@pytest.mark.parametrize(("width", "height"), [(17, 9), (9, 17), (2, 2)])
def test_odd_and_tiny_resolutions(make_video, width, height):
    video = make_video(f"tiny{width}x{height}.mp4", kind="mover", width=width, height=height,
                       frames=20, pix_fmt="yuv444p")  # fmt: skip
    for cfg in (CFG, CodecConfig(budget=2000)):
        selection = select_patches(video.path, cfg)
        assert_valid(selection, cfg)
        assert selection.meta["resolution"] == [width, height]


def test_rotation_applies_to_pixels_and_maps(make_video):
    plain = make_video("plain64x48.mp4", kind="mover", width=64, height=48, frames=40)
    turned = make_video(
        "rot90_64x48.mp4", kind="mover", width=64, height=48, frames=40, rotation=90
    )
    cfg = CodecConfig(budget=2000)
    a, frames_a = select_with_frames(plain.path, cfg)
    b, frames_b = select_with_frames(turned.path, cfg)
    assert b.meta["rotation"] == 90 and b.meta["resolution"] == [48, 64]
    for canvas_a, canvas_b in zip(frames_a, frames_b, strict=True):
        np.testing.assert_array_equal(np.rot90(canvas_a), canvas_b)  # display = 90 deg ccw
    g = a.grid[0]
    rotated = {(t, g - 1 - w, h) for t, h, w in a.positions.tolist()}
    same = len(rotated & {tuple(r) for r in b.positions.tolist()}) / len(rotated)
    assert same >= 0.99


def test_variable_frame_rate_plans_from_the_packet_count(make_video):
    video = make_video("vfr.mp4", kind="mover", width=160, height=128, frames=90,
                       variable_frame_rate=True)  # fmt: skip
    with av.open(str(video.path)) as container:
        stream = container.streams.video[0]
        by_duration = float(stream.duration * stream.time_base) * 25  # the declared rate
        timestamps = [f.pts for f in container.decode(stream)]
    assert len(set(np.diff(timestamps).tolist())) > 1  # really variable
    assert abs(by_duration - 90) >= 1  # duration x fps would mis-count the frames
    selection = select_patches(video.path, CFG)
    assert selection.meta["frames_planned"] == selection.meta["frames_decoded"] == 90
    assert selection.frame_ids.tolist() == sample_indices(90, 64).tolist()


def test_intra_only_codec(make_video):
    video = make_video("intra.avi", kind="mover", width=160, height=128, frames=40,
                       codec="mjpeg", pix_fmt="yuvj420p")  # fmt: skip
    selection = select_patches(video.path, CFG)
    assert_valid(selection)
    assert selection.meta["motion_source"] == "reencoded"


def test_decode_time_is_bounded(make_video):
    video = make_video("mover.mp4", kind="mover", width=320, height=240, frames=96)
    with pytest.raises(VideoDecodeError, match="exceeded"):
        select_patches(video.path, CodecConfig(max_decode_seconds=1e-9))


def test_bad_settings_name_the_key():
    with pytest.raises(ValueError, match=r"codec\.compensate"):
        CodecConfig(compensate="mean")
    with pytest.raises(ValueError, match="smaller than one whole frame"):
        CodecConfig(budget=100)
    assert CodecConfig(budget=100, full_frame="none").num_patches == 100


def test_nothing_selectable_without_whole_frames_is_a_decode_error(make_video):
    # 64x2 px letterboxed to 576x18: no 16-px patch lies inside the content
    video = make_video("strip64x2.mp4", kind="mover", width=64, height=2, frames=8,
                       pix_fmt="yuv444p")  # fmt: skip
    with pytest.raises(VideoDecodeError, match="nothing to select") as err:
        select_patches(video.path, CodecConfig(budget=100, full_frame="none"))
    assert err.value.path == str(video.path)


@pytest.mark.parametrize(
    ("name", "damage", "reason"),
    [("mover.mkv", "zero_middle", "bytes unread"), ("mover.avi", "cut_tail", "header declares")],
)
def test_a_demux_stop_mid_file_is_recorded_and_the_plan_is_not_exact(
    make_video, tmp_path, name, damage, reason
):
    # Matroska's demuxer ends at the zeroed bytes as if the file ended there (no error is
    # raised); AVI's header still declares the 96 frames its cut file no longer holds.
    video = make_video(name, kind="mover", width=160, height=128, frames=96)
    data = bytearray(video.path.read_bytes())
    if damage == "zero_middle":
        data[len(data) // 2 : len(data) // 2 + 2000] = bytes(2000)
    else:
        data = data[: len(data) * 2 // 3]
    path = tmp_path / name
    path.write_bytes(bytes(data))
    selection = select_patches(path, CFG)
    assert_valid(selection)
    meta = selection.meta
    assert meta["frames_planned"] < 96 and reason in meta["demux_error"]
    assert meta["plan_exact"] is False
    intact = select_patches(video.path, CFG).meta
    assert intact["plan_exact"] and intact["demux_error"] is None
