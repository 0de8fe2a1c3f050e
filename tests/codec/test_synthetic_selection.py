"""Selection behaviour on synthetic videos with known ground truth (encoded by the tests)."""

import numpy as np
import pytest

from encoder.codec import CodecConfig, select_patches, uniform_frames
from encoder.codec import motion as motion_maps
from encoder.codec.synthetic import object_patches, recall
from encoder.codec.video import open_video


@pytest.mark.parametrize(
    ("canvas", "residual", "fusion", "least_recall"),
    [("letterbox", "diff", "mean", 0.9), ("crop", "diff", "mean", 0.9),
     ("letterbox", "mc", "mean", 0.9), ("crop", "diff", "max", 0.9), ("crop", "diff", "sum", 0.9),
     # geomean is an AND of the cues: flat parts of the sprite with no residual drop out
     ("crop", "mc", "geomean", 0.8)],
)  # fmt: skip
def test_the_mover_is_chosen(make_video, canvas, residual, fusion, least_recall):
    video = make_video("mover.mp4", kind="mover", width=320, height=240, frames=96)
    truth = object_patches(video, CodecConfig(canvas=canvas))
    # K covers the mover's area across frames twice over: once for where it is, once for the
    # background it just uncovered (the frame difference lights up both).
    budget = CodecConfig(canvas=canvas).patches_per_frame + 2 * len(truth)
    cfg = CodecConfig(canvas=canvas, budget=budget, residual=residual, fusion=fusion)
    selection = select_patches(video.path, cfg)
    assert selection.meta["motion_source"] == "exported"
    assert recall(selection.positions, truth) >= least_recall


def test_median_compensation_removes_the_pan(make_video):
    video = make_video("pan.mp4", kind="pan", width=320, height=240, frames=96, pan_speed=3)
    cfg = CodecConfig()
    with open_video(video.path, cfg) as opened:
        frames = list(opened.decode({30, 60}, cfg))
    for sf in frames:
        h, w = sf.luma.shape
        vx, vy, covered = motion_maps.motion_field(sf.motion_vectors, h, w)
        top, left, bottom, right = np.asarray(video.boxes[sf.ordinal]) // 4
        background = covered.copy()
        background[top - 1 : bottom + 1, left - 1 : right + 1] = False
        raw = motion_maps.motion_magnitude(vx, vy, covered, "none")[background]
        compensated = motion_maps.motion_magnitude(vx, vy, covered, "median")[background]
        assert np.mean(raw >= 2) > 0.9  # the pan is everywhere before compensation ...
        assert np.mean(compensated <= 1) > 0.9  # ... and gone after it
    # On the selection: the crop canvas drops the borders where the pan brings in new (intra
    # coded) content, which median compensation, like the reference, cannot tell from motion.
    truth = object_patches(video, CodecConfig(canvas="crop"))
    budget = CodecConfig(canvas="crop").patches_per_frame + 2 * len(truth)
    found = {
        mode: recall(
            select_patches(
                video.path, CodecConfig(canvas="crop", compensate=mode, budget=budget)
            ).positions,
            truth,
        )
        for mode in ("none", "median", "similarity")
    }
    # Measured 0.50 / 0.67 / 0.04: the frame-difference residual is not compensated and lights
    # up the whole panning background, so recall stays below the static-camera case.
    assert found["median"] >= 0.4 and found["similarity"] >= 0.4
    assert found["median"] >= 5 * found["none"] and found["similarity"] >= 5 * found["none"]


def test_a_brief_event_is_caught_where_uniform_frames_miss_it(make_video):
    video = make_video("flash.mp4", kind="flash", width=320, height=240, frames=128, event_start=60)
    cfg = CodecConfig()
    selection = select_patches(video.path, cfg)
    uniform = uniform_frames(video.path, 8, cfg)
    assert not set(uniform.frame_ids.tolist()) & set(video.event_frames)
    onset = int(np.flatnonzero(selection.frame_ids == video.event_frames[0])[0])
    truth = object_patches(video, cfg)
    at_onset = truth[truth[:, 0] == onset]
    assert len(at_onset) > 0 and recall(selection.positions, at_onset) == 1.0


def test_a_static_video_fills_the_budget_in_index_order(make_video):
    """Documented choice: no motion, no residual → all scores 0 → ties go to the lowest index,
    so after the whole first frame the budget takes frames t = 1, 2, ... in raster order."""
    video = make_video("static.mp4", kind="static", width=160, height=120, frames=80)
    cfg = CodecConfig(canvas="crop", budget=1000)
    selection = select_patches(video.path, cfg)
    t, rest = np.divmod(np.arange(1000), 256)
    expected = np.stack([t, *np.divmod(rest, 16)], axis=1)
    np.testing.assert_array_equal(selection.positions, expected)


def test_uniform_baseline_has_the_same_output_type(make_video):
    video = make_video("mover.mp4", kind="mover", width=320, height=240, frames=96)
    cfg = CodecConfig()
    uniform = uniform_frames(video.path, 8, cfg)
    assert uniform.num_patches == cfg.num_patches  # equal token count by construction
    assert uniform.frame_ids.tolist() == np.floor(np.linspace(0, 95, 8)).astype(int).tolist()
    packed = uniform.to_packed()
    assert packed.kinds == ["frames"] and packed.grids == [(8, 36, 36)]
    assert sorted(set(packed.positions[:, 0].tolist())) == [0, 9, 18, 27, 36, 45, 54, 63]


def test_iframes_policy_keeps_every_sampled_i_frame_whole(make_video):
    gop = {"x264-params": "keyint=16:min-keyint=16:scenecut=0"}
    video = make_video("gop16.mp4", kind="mover", width=160, height=128, frames=64,
                       encoder_options=gop)  # fmt: skip
    cfg = CodecConfig(canvas="crop", full_frame="iframes", budget=256 * 6)
    selection = select_patches(video.path, cfg)
    whole = selection.meta["whole_frames"]
    assert whole == [0, 16, 32, 48]  # T = N = 64: t is the frame number, I-frames every 16
    for t in whole:
        assert (selection.positions[:, 0] == t).sum() == 256


def test_reading_packets_kept_by_the_probe_equals_reading_the_file_again(make_video, monkeypatch):
    from encoder.codec import video as video_module

    opened = []
    real_open = video_module._open
    monkeypatch.setattr(video_module, "_open", lambda path: opened.append(path) or real_open(path))
    video = make_video("mover.mp4", kind="mover", width=320, height=240, frames=96)
    cfg = CodecConfig()
    from_memory = select_patches(video.path, cfg)
    assert len(opened) == 1  # a small clip is decoded from the packets its count demuxed
    monkeypatch.setattr(video_module, "KEEP_PACKETS_BYTES", 1000)
    reread = select_patches(video.path, cfg)
    assert len(opened) == 3  # over the cap: the decode opens and demuxes the file again
    assert from_memory.meta["frames_decoded"] == reread.meta["frames_decoded"] == 96
    np.testing.assert_array_equal(from_memory.positions, reread.positions)
    np.testing.assert_array_equal(from_memory.patches, reread.patches)


@pytest.mark.parametrize("overlap", [True, False])
def test_painting_while_decoding_or_after_the_selection_gives_the_same_pixels(
    make_video, monkeypatch, overlap
):
    from encoder.codec import frames, pipeline

    video = make_video("mover.mp4", kind="mover", width=320, height=240, frames=96)
    cfg = CodecConfig(overlap=overlap)
    got = {}
    for deferred in (True, False):
        monkeypatch.setattr(frames, "paints_after_selection", lambda *_, d=deferred: d)
        got[deferred], canvases = pipeline.select_with_frames(video.path, cfg)
        t, h, w = got[deferred].positions[-1]
        p = cfg.patch
        cell = canvases[t][h * p : (h + 1) * p, w * p : (w + 1) * p].transpose(2, 0, 1)
        np.testing.assert_array_equal(got[deferred].patches[-1], cell)
    np.testing.assert_array_equal(got[True].positions, got[False].positions)
    np.testing.assert_array_equal(got[True].patches, got[False].patches)
