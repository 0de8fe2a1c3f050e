"""Canvas geometry and patch pooling against an explicit resize-pad-sum."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from encoder.codec.canvas import Canvas
from encoder.codec.motion import cells_to_pixels
from encoder.codec.pooling import PatchPooler, linear_taps


def explicit_scores(display_map: np.ndarray, geo) -> np.ndarray:
    """The definition: bilinear resize onto the canvas, zero padding / crop, sum per patch."""
    src = torch.from_numpy(np.ascontiguousarray(display_map, dtype=np.float32))[None, None]
    resized = F.interpolate(src, size=(geo.resize_h, geo.resize_w), mode="bilinear")[0, 0]
    canvas = np.zeros((geo.size, geo.size), np.float32)
    top, left, bottom, right = geo.content_box
    sy, sx = top - geo.offset_y, left - geo.offset_x
    canvas[top:bottom, left:right] = resized.numpy()[sy : sy + bottom - top, sx : sx + right - left]
    g = geo.grid
    return canvas.reshape(g, geo.patch, g, geo.patch).sum(axis=(1, 3))


def test_letterbox_geometry_follows_the_reference_rounding():
    geo = Canvas.fit(360, 640, "letterbox", 576, 16)
    assert (geo.resize_h, geo.resize_w) == (324, 576)
    assert geo.content_box == (126, 0, 450, 576)
    mask = geo.candidate_mask()
    # rows fully inside 126..450: patch rows 8..27 (128..448)
    assert np.flatnonzero(mask.any(axis=1)).tolist() == list(range(8, 28))
    assert mask[8:28].all()


def test_crop_geometry_has_no_padding():
    geo = Canvas.fit(240, 320, "crop", 224, 14)
    assert (geo.resize_h, geo.resize_w) == (224, 299)
    assert geo.content_box == (0, 0, 224, 224)
    assert geo.candidate_mask().all()


def test_tiny_frames_keep_at_least_one_pixel():
    geo = Canvas.fit(1, 500, "letterbox", 576, 16)
    assert geo.resize_h == 1 and not geo.candidate_mask().any()


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
@pytest.mark.parametrize(("h", "w", "mode", "size", "patch"), [
    (48, 80, "letterbox", 96, 16), (37, 22, "letterbox", 96, 16), (30, 50, "crop", 56, 14),
])  # fmt: skip
def test_pooler_equals_explicit_resize_pad_sum(rotation, h, w, mode, size, patch):
    rng = np.random.default_rng(rotation + h)
    geo = Canvas.fit(h, w, mode, size, patch, rotation)
    pooler = PatchPooler(geo, h, w)
    pixels = rng.random((h, w)).astype(np.float32)
    display = np.rot90(pixels, rotation // 90)
    np.testing.assert_allclose(
        pooler.pool(pixels), explicit_scores(display, geo), rtol=1e-4, atol=1e-3
    )
    cells = rng.random((-(-h // 4), -(-w // 4))).astype(np.float32)
    display_cells = np.rot90(cells_to_pixels(cells, h, w), rotation // 90)
    np.testing.assert_allclose(pooler.cells_to_display_pixels(cells), display_cells)
    np.testing.assert_allclose(
        pooler.pool_cells(cells), explicit_scores(display_cells, geo), rtol=1e-4, atol=1e-3
    )


@pytest.mark.parametrize(
    ("src", "dst"), [(224, 576), (1280, 576), (17, 576), (1, 9), (9, 1), (720, 324)]
)
def test_linear_taps_are_torch_bilinear(src, dst):
    signal = np.random.default_rng(src).random((3, src))
    want = F.interpolate(torch.from_numpy(signal)[None], size=dst, mode="linear")[0].numpy()
    lo, hi, frac = linear_taps(src, dst)
    got = signal[:, lo] * (1 - frac) + signal[:, hi] * frac
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
