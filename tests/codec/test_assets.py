"""Asset folders: lossless round trip, the reference's layout, and never a partial folder."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from encoder.codec import (
    AssetFormatError,
    AssetSettingsError,
    CodecConfig,
    read_assets,
    select_patches,
    write_assets,
)
from encoder.codec.assets import mosaics
from encoder.files import atomic_dir


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


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"frames": 32}, "frames"),
        ({"budget_frames": 3}, "K"),
        ({"canvas": "crop", "full_frame": "none", "budget": 3240}, "patch"),
        ({"full_frame": "iframes"}, "full_frame"),
        ({"residual_weight": 1.0}, "residual_weight"),
        ({"compensate": "affine"}, "compensate"),
    ],
)
def test_assets_made_with_other_settings_are_refused_naming_both_values(
    selection, tmp_path, change, key
):
    folder = write_assets(selection, tmp_path / "clip")
    made_with = CodecConfig(budget_frames=2.5)
    assert read_assets(folder, expected=made_with).num_patches == selection.num_patches
    other = CodecConfig(**{"budget_frames": 2.5, **change})
    with pytest.raises(AssetSettingsError, match=rf"codec ({key})=") as err:
        read_assets(folder, expected=other)
    mine, theirs = (made_with.selection_settings(), other.selection_settings())
    # both values named: what the assets have, what the model has
    assert f"{key}={mine[key]!r}" in str(err.value) and f"{key}={theirs[key]!r}" in str(err.value)


def test_fusions_that_ignore_the_residual_weight_do_not_compare_it(selection, tmp_path):
    made_with = CodecConfig(budget_frames=2.5, fusion="max")
    folder = write_assets(select_patches(selection.meta["source"], made_with), tmp_path / "max")
    read_assets(folder, expected=CodecConfig(budget_frames=2.5, fusion="max", residual_weight=1))
    with pytest.raises(AssetSettingsError, match="fusion='max'"):
        read_assets(folder, expected=CodecConfig(budget_frames=2.5))


def test_assets_without_recorded_settings_are_refused(selection, tmp_path):
    folder = write_assets(selection, tmp_path / "clip")
    meta = json.loads((folder / "meta.json").read_text())
    del meta["settings"]  # as written before the settings were recorded
    (folder / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(AssetSettingsError, match="records no codec settings"):
        read_assets(folder, expected=CodecConfig(budget_frames=2.5))


def test_a_cache_folder_that_another_worker_committed_first_wins(selection, tmp_path):
    """Two dataloader workers select the same video into the same cache folder: the one that
    commits second keeps the first one's folder, without an error or a leftover temporary."""
    folder = tmp_path / "cache" / "key"
    other = select_patches(selection.meta["source"], CodecConfig(budget_frames=2.5, overlap=False))
    other.patches = other.patches.copy()
    other.patches[0] = 7  # tell the two writers' folders apart
    with atomic_dir(folder, keep_existing=True) as tmp:
        (tmp / "mine.txt").write_text("second")
        write_assets(other, folder, keep_existing=True)  # the other worker finishes first
    assert sorted(p.name for p in folder.parent.iterdir()) == ["key"]
    assert not (folder / "mine.txt").exists()
    assert (read_assets(folder).patches[0] == 7).all()
    write_assets(selection, folder, keep_existing=True)  # an existing folder stays as it is
    assert (read_assets(folder).patches[0] == 7).all()
    write_assets(selection, folder)  # the default still replaces it
    np.testing.assert_array_equal(read_assets(folder).patches, selection.patches)


def test_workers_racing_on_the_codec_cache_keep_the_first_complete_folder(
    selection, tmp_path, monkeypatch
):
    """Two dataloader workers miss the cache for the same video at once; the one that commits
    second loads the first one's folder (no error, no swap, no partial folder left)."""
    from encoder.codec import pipeline
    from encoder.codec.assets import asset_key
    from encoder.towers import TowerSpec
    from ovmllm.media import MediaConfig, load_video

    video = Path(selection.meta["source"]).resolve()
    media = MediaConfig(codec=CodecConfig(budget_frames=2.5), cache_dir=str(tmp_path / "cache"))
    folder = tmp_path / "cache" / asset_key(str(video), video, media.codec)
    first = select_patches(video, media.codec)
    first.patches = first.patches.copy()
    first.patches[0] = 7  # tell the two workers' folders apart

    def select_while_the_other_worker_commits(path, cfg):
        write_assets(first, folder, keep_existing=True)
        return selection

    monkeypatch.setattr(pipeline, "select_patches", select_while_the_other_worker_commits)
    spec = TowerSpec("onevision", 14, 64, frozenset({"codec"}), (0.5,) * 3, (0.5,) * 3, 504)
    loaded = load_video(video, media, spec)
    assert (loaded.patches[0] == 7).all()
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]
