"""Asset folders: lossless round trip, the reference's layout, and never a partial folder."""

import json

import numpy as np
import pytest
from PIL import Image

from encoder.codec import AssetFormatError, CodecConfig, read_assets, select_patches, write_assets
from encoder.codec.assets import mosaics


@pytest.fixture(scope="module")
def selection(make_video):
    video = make_video("mover.mp4", kind="mover", width=320, height=240, frames=96)
    return select_patches(video.path, CodecConfig(budget_frames=2.5))


def test_round_trip_is_lossless(selection, tmp_path):
    folder = write_assets(selection, tmp_path / "clip")
    names = sorted(p.name for p in folder.iterdir())
    mosaic_names = ["mosaic_000.jpg", "mosaic_001.jpg", "mosaic_002.jpg"]
    arrays = ["patches.npy", "positions_thw.npy", "visible_indices.npy"]
    assert names == sorted(["frame_ids.npy", "meta.json", *mosaic_names, *arrays])
    again = read_assets(folder)
    np.testing.assert_array_equal(again.patches, selection.patches)
    np.testing.assert_array_equal(again.positions, selection.positions)
    np.testing.assert_array_equal(again.frame_ids, selection.frame_ids)
    np.testing.assert_array_equal(again.frame_times, selection.frame_times)
    assert again.grid == selection.grid
    np.testing.assert_array_equal(
        np.load(folder / "visible_indices.npy"), selection.visible_indices
    )
    meta = json.loads((folder / "meta.json").read_text())
    for key in ("T", "canvas", "patch", "hb", "wb", "K", "frame_ids", "policy", "compensation",
                "residual_mode", "pad_box", "source_codec", "motion_source"):  # fmt: skip
        assert key in meta
    mosaic0 = np.asarray(Image.open(folder / "mosaic_000.jpg"))
    assert mosaic0.shape == (576, 576, 3)
    assert np.abs(mosaic0.astype(int) - mosaics(selection)[0]).mean() < 3  # mosaic 0 = frame 0
    assert (mosaics(selection)[2][288:] == 0).all()  # last mosaic: zero past K (2.5 frames)


def test_rewrite_replaces_only_when_complete(selection, tmp_path, monkeypatch):
    folder = write_assets(selection, tmp_path / "clip")

    def fail(_selection):
        raise OSError("disk full")  # after patches.npy and friends were written

    monkeypatch.setattr("encoder.codec.assets.mosaics", fail)
    with pytest.raises(OSError, match="disk full"):
        write_assets(selection, folder)
    assert read_assets(folder).num_patches == selection.num_patches  # the old one survived
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip"]  # no temp folder left
    with pytest.raises(OSError):
        write_assets(selection, tmp_path / "fresh")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip"]


def test_inconsistent_selection_is_rejected(selection):
    with pytest.raises(ValueError, match="patches"):
        type(selection)(**{**selection.__dict__, "patches": selection.patches[:10]})


def test_reference_layout_is_read(selection, tmp_path):
    folder = write_assets(selection, tmp_path / "ours")
    ref = tmp_path / "reference"
    ref.mkdir()
    for i in range(2):  # the reference: whole mosaics named by the video, and positions
        Image.open(folder / f"mosaic_{i:03d}.jpg").save(ref / f"clip_{i}.jpg", quality=95)
    np.save(ref / "positions_thw.npy", selection.positions[: 2 * 1296])
    loaded = read_assets(ref)
    np.testing.assert_array_equal(loaded.positions, selection.positions[: 2 * 1296])
    assert np.abs(loaded.patches.astype(int) - selection.patches[: 2 * 1296]).mean() < 3
    np.save(ref / "positions_thw.npy", selection.positions[1296 : 2 * 1296])  # stage-2 variant
    np.testing.assert_array_equal(read_assets(ref).positions, selection.positions[: 2 * 1296])


def test_bad_asset_folders_are_named(tmp_path):
    with pytest.raises(AssetFormatError, match="not found"):
        read_assets(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(AssetFormatError, match="positions_thw"):
        read_assets(tmp_path / "empty")
