"""Motion map conventions of the reference (PAPER.md section 2, item 11), on hand-made vectors."""

import numpy as np
import pytest

from encoder.codec import motion
from encoder.codec.saliency import (
    cell_map_percentile,
    percentile_of_counts,
    residual_percentile,
    uint8_histogram,
)

MV_DTYPE = np.dtype(
    [("source", "<i4"), ("w", "u1"), ("h", "u1"), ("src_x", "<i2"), ("src_y", "<i2"),
     ("dst_x", "<i2"), ("dst_y", "<i2"), ("flags", "<u8"), ("motion_x", "<i4"),
     ("motion_y", "<i4"), ("motion_scale", "<u2")]
)  # fmt: skip


def vectors(*rows):
    """rows of (source, w, h, dst_x, dst_y, dx, dy) with dst the block centre, src = dst + d."""
    out = np.zeros(len(rows), MV_DTYPE)
    for i, (source, w, h, dst_x, dst_y, dx, dy) in enumerate(rows):
        out[i] = (source, w, h, dst_x + dx, dst_y + dy, dst_x, dst_y, 0, 0, 0, 4)
    return out


def test_block_fills_its_footprint_of_4x4_cells_with_src_minus_dst():
    mvs = vectors((-1, 16, 8, 8 + 16, 4, 3, -2))  # 16x8 block at x 16..32, y 0..8
    vx, vy, covered = motion.motion_field(mvs, height=16, width=48)
    assert vx.shape == (4, 12)
    assert covered[0:2, 4:8].all() and covered.sum() == 8
    assert (vx[0:2, 4:8] == 3).all() and (vy[0:2, 4:8] == -2).all()
    assert (vx[~covered] == 0).all()


def test_only_past_reference_vectors_count():
    mvs = vectors((1, 16, 16, 8, 8, 5, 5), (-1, 8, 8, 20, 4, 1, 0))
    vx, _, covered = motion.motion_field(mvs, 16, 32)
    assert not covered[0:4, 0:4].any()  # the future-only block is no motion
    assert (vx[0:2, 4:6] == 1).all()


def test_blocks_partly_outside_the_frame_are_clipped():
    mvs = vectors((-1, 16, 16, 2, 2, 4, 0))
    _, _, covered = motion.motion_field(mvs, 8, 8)
    assert covered[0:2, 0:2].all() and covered.sum() == 4


def test_median_compensation_uses_all_cells_and_subtracts_from_all():
    vx = np.array([[3, 3, 3], [3, 0, 0]], np.float32)  # median over all 6 cells is 3
    vy = np.zeros_like(vx)
    covered = vx != 0
    mag = motion.motion_magnitude(vx, vy, covered, "median")
    np.testing.assert_allclose(mag, [[0, 0, 0], [0, 3, 3]])  # intra cells get the camera's 3
    assert motion.motion_magnitude(vx, vy, covered, "none")[0, 0] == 3


@pytest.mark.parametrize("model", ["similarity", "affine"])
def test_global_fit_removes_a_zoom_and_keeps_an_outlier(model):
    gh, gw = 30, 40
    xs, ys = np.meshgrid(np.arange(gw) * 4 + 2, np.arange(gh) * 4 + 2)
    vx = (0.05 * (xs - 80) + 2).astype(np.float32)  # zoom about x=80 plus a pan
    vy = (0.05 * (ys - 60)).astype(np.float32)
    vx[10:14, 10:14] += 12  # an independent mover
    covered = np.ones_like(vx, bool)
    mag = motion.motion_magnitude(vx, vy, covered, model)
    background = np.ones_like(covered)
    background[10:14, 10:14] = False
    assert np.abs(mag[background]).max() < 0.05
    assert mag[10:14, 10:14].min() > 11


def test_percentiles_equal_numpy_on_the_pixel_maps():
    rng = np.random.default_rng(0)
    for h, w in [(64, 36), (17, 9), (33, 20), (4, 4)]:
        cells = rng.random((-(-h // 4), -(-w // 4))).astype(np.float32)
        pixels = motion.cells_to_pixels(cells, h, w)
        assert cell_map_percentile(cells, h, w) == pytest.approx(np.percentile(pixels, 95))
    for shape in [(37, 53), (363, 365)]:  # counted directly; in pixel pairs, one unpaired
        residual = rng.integers(0, 256, shape, dtype=np.uint8)
        assert residual_percentile(residual) == pytest.approx(np.percentile(residual, 95))
        np.testing.assert_array_equal(
            uint8_histogram(residual), np.bincount(residual.ravel(), minlength=256)
        )
    values = np.array([1.0, 2.0, 5.0])
    counts = np.array([2, 0, 3])
    expect = np.percentile([1, 1, 5, 5, 5], 40)
    assert percentile_of_counts(values, counts, 40) == pytest.approx(expect)


def naive_field(vectors, height, width):
    """Block by block, the plain way."""
    gh, gw = -(-height // 4), -(-width // 4)
    vx, vy, cov = np.zeros((gh, gw)), np.zeros((gh, gw)), np.zeros((gh, gw), bool)
    for mv in vectors[vectors["source"] < 0]:
        x0, y0 = (int(mv["dst_x"]) - mv["w"] // 2) // 4, (int(mv["dst_y"]) - mv["h"] // 2) // 4
        for r in range(max(y0, 0), min(y0 + max(mv["h"] // 4, 1), gh)):
            for c in range(max(x0, 0), min(x0 + max(mv["w"] // 4, 1), gw)):
                vx[r, c] = int(mv["src_x"]) - int(mv["dst_x"])
                vy[r, c] = int(mv["src_y"]) - int(mv["dst_y"])
                cov[r, c] = True
    return vx, vy, cov


@pytest.mark.parametrize(
    ("name", "codec", "size"),
    [("pan.mp4", "libx264", (160, 120)), ("pan_m4v.mp4", "mpeg4", (100, 76))],
)
def test_rasterising_real_codec_vectors_matches_the_plain_loop(make_video, name, codec, size):
    from encoder.codec.config import CodecConfig
    from encoder.codec.video import open_video

    video = make_video(name, kind="pan", width=size[0], height=size[1], frames=24, codec=codec)
    cfg = CodecConfig()
    with open_video(video.path, cfg) as opened:
        frames = list(opened.decode(set(range(24)), cfg))
    checked = 0
    for sf in frames:
        if sf.motion_vectors is None:
            continue
        h, w = sf.luma.shape
        for got, want in zip(
            motion.motion_field(sf.motion_vectors, h, w),
            naive_field(sf.motion_vectors, h, w),
            strict=True,
        ):
            np.testing.assert_array_equal(got, want)
        checked += 1
    assert checked > 10
