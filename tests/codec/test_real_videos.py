"""The real H.264 clips in ../shared/real_data/video (skipped when ../shared is absent)."""

import numpy as np
import pytest

from encoder.codec import CodecConfig, select_patches
from encoder.codec.plan import sample_indices


@pytest.fixture(scope="module")
def selections(real_videos):
    cfg = CodecConfig()
    return [(video, select_patches(video, cfg), cfg) for video in real_videos]


def test_output_is_valid_and_exact(selections):
    for video, selection, cfg in selections:
        meta = selection.meta
        assert meta["motion_source"] == "exported" and meta["source_codec"] == "h264"
        assert selection.num_patches == cfg.num_patches == 10368
        assert selection.patches.shape == (10368, 3, 16, 16) and selection.patches.dtype == np.uint8
        assert selection.frame_ids.tolist() == sample_indices(meta["frames_decoded"], 64).tolist()
        assert meta["plan_exact"] and meta["frames_planned"] == meta["frames_decoded"]
        flat = selection.visible_indices
        assert (np.diff(flat) > 0).all(), f"{video.name}: rows not sorted by (t, h, w) or repeated"


def test_first_frame_is_whole_and_padding_is_never_chosen_after_it(selections):
    for _, selection, _ in selections:
        positions = selection.positions
        first = positions[positions[:, 0] == 0]
        assert len(first) == 36 * 36
        assert (first[:, 1:] == np.stack(np.divmod(np.arange(1296), 36), 1)).all()
        top, left, bottom, right = selection.meta["pad_box"]
        later = positions[positions[:, 0] > 0]
        assert (later[:, 1] * 16 >= top).all() and ((later[:, 1] + 1) * 16 <= bottom).all()
        assert (later[:, 2] * 16 >= left).all() and ((later[:, 2] + 1) * 16 <= right).all()


def test_deterministic_across_runs_and_threading(selections):
    video, first, _ = selections[0]
    again = select_patches(video, CodecConfig(overlap=False, threads=2))
    np.testing.assert_array_equal(first.positions, again.positions)
    np.testing.assert_array_equal(first.patches, again.patches)
    np.testing.assert_array_equal(first.frame_ids, again.frame_ids)


def test_packed_tokens(selections):
    _, selection, _ = selections[0]
    packed = selection.to_packed()
    assert packed.kinds == ["codec"] and packed.lengths == [10368]
    assert packed.positions[:, 0].max() <= 63
