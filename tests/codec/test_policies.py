"""Selection policies (`saliency`, `random`) and the probe's controls (`shuffle`,
`nonsalient:f`): what each changes, and that the default is today's selection."""

import numpy as np
import pytest

from encoder.codec import (
    AssetSettingsError,
    CodecConfig,
    read_assets,
    select_patches,
    write_assets,
)
from encoder.codec.assets import asset_key
from encoder.codec.pipeline import select_with_scores

# a short sample keeps these tests to a few seconds; 320x240 on the 576 letterbox has padding
SETTINGS = {"frames": 16, "budget_frames": 2.5}


@pytest.fixture(scope="module")
def mover(make_video):
    return make_video("mover.mp4", kind="mover", width=320, height=240, frames=96).path


@pytest.fixture(scope="module")
def other_mover(make_video):
    return make_video("mover.mp4", kind="mover", width=320, height=240, frames=96, seed=1).path


@pytest.fixture(scope="module")
def saliency(mover):
    return select_with_scores(mover, CodecConfig(**SETTINGS))


def _select(path, **settings):
    return select_patches(path, CodecConfig(**SETTINGS, **settings))


def _position_set(positions: np.ndarray) -> set[tuple[int, int, int]]:
    return {tuple(row) for row in positions.tolist()}


def test_the_default_policy_is_todays_saliency_top_k(mover, saliency):
    default, _, _ = saliency
    explicit = _select(mover, policy="saliency", controls=[])
    np.testing.assert_array_equal(explicit.positions, default.positions)
    np.testing.assert_array_equal(explicit.patches, default.patches)
    assert CodecConfig().policy == "saliency" and CodecConfig().controls == []


def test_random_draws_k_non_padding_patches_keeping_whole_frames(mover, saliency):
    chosen, _, candidates = saliency
    drawn = _select(mover, policy="random")
    cfg = CodecConfig(**SETTINGS)
    assert drawn.num_patches == cfg.num_patches
    np.testing.assert_array_equal(drawn.frame_ids, chosen.frame_ids)
    # frame 0 kept whole (full_frame='first'), as with saliency
    whole = drawn.positions[:, 0] == 0
    assert whole.sum() == cfg.patches_per_frame
    rest = drawn.positions[~whole]
    assert candidates[rest[:, 1], rest[:, 2]].all(), "a padding cell was drawn"
    assert len(_position_set(drawn.positions)) == drawn.num_patches  # no repeats
    assert _position_set(drawn.positions) != _position_set(chosen.positions)
    assert drawn.meta["settings"]["policy"] == "random"


def test_random_is_seeded_by_the_video_path(mover, other_mover):
    once, again = _select(mover, policy="random"), _select(mover, policy="random")
    np.testing.assert_array_equal(once.positions, again.positions)
    np.testing.assert_array_equal(once.patches, again.patches)
    elsewhere = _select(other_mover, policy="random")
    assert _position_set(elsewhere.positions) != _position_set(once.positions)


def test_shuffle_permutes_positions_among_the_same_patches(mover, saliency):
    chosen, _, _ = saliency
    shuffled = _select(mover, controls=["shuffle"])
    np.testing.assert_array_equal(shuffled.patches, chosen.patches)  # pixels and order kept
    assert sorted(map(tuple, shuffled.positions.tolist())) == sorted(
        map(tuple, chosen.positions.tolist())
    )
    moved = (shuffled.positions != chosen.positions).any(axis=1).mean()
    assert moved > 0.9, f"only {moved:.0%} of the patches got another position"
    again = _select(mover, controls=["shuffle"])
    np.testing.assert_array_equal(again.positions, shuffled.positions)
    # the shuffled tokens are what the encoder gets: the patch rows with the permuted positions
    assert (shuffled.to_packed().positions.numpy() != chosen.to_packed().positions.numpy()).any()


def test_nonsalient_half_takes_half_the_free_budget_from_the_lowest_scores(mover, saliency):
    _, scores, candidates = saliency  # the scores do not depend on the budget
    # a free budget small enough that the top half is all moving patches
    cfg = CodecConfig(frames=SETTINGS["frames"], budget=1296 + 200)
    mixed = select_patches(mover, CodecConfig(**{**cfg.__dict__, "controls": ["nonsalient:0.5"]}))
    assert mixed.num_patches == cfg.num_patches
    free = cfg.num_patches - cfg.patches_per_frame  # budget left after frame 0
    low_count = round(0.5 * free)
    eligible = np.broadcast_to(candidates, scores.shape).copy()
    eligible[0] = False
    eligible_scores = np.sort(scores[eligible])
    rows = mixed.positions[mixed.positions[:, 0] != 0]
    assert len(rows) == free and eligible[rows[:, 0], rows[:, 1], rows[:, 2]].all()
    picked = np.sort(scores[rows[:, 0], rows[:, 1], rows[:, 2]])
    # the low half are the lowest-scoring candidates, the high half the highest (as values,
    # so ties between equal scores do not matter)
    np.testing.assert_array_equal(picked[:low_count], eligible_scores[:low_count])
    np.testing.assert_array_equal(picked[low_count:], eligible_scores[-(free - low_count) :])
    assert eligible_scores[low_count - 1] < eligible_scores[-(free - low_count)]
    again = select_patches(mover, CodecConfig(**{**cfg.__dict__, "controls": ["nonsalient:0.5"]}))
    np.testing.assert_array_equal(again.positions, mixed.positions)


def test_nonsalient_zero_is_the_saliency_selection(mover, saliency):
    chosen, _, _ = saliency
    same = _select(mover, controls=["nonsalient:0"])
    np.testing.assert_array_equal(same.positions, chosen.positions)
    np.testing.assert_array_equal(same.patches, chosen.patches)


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"policy": "salience"}, r"codec\.policy='salience'"),
        ({"controls": ["shufle"]}, r"codec\.controls.*'shufle'"),
        ({"controls": ["nonsalient:1.5"]}, r"codec\.controls.*'nonsalient:1.5'"),
        ({"controls": ["nonsalient:x"]}, r"codec\.controls.*'nonsalient:x'"),
        ({"controls": ["nonsalient"]}, r"codec\.controls.*'nonsalient'"),
        ({"controls": ["shuffle", "shuffle"]}, r"codec\.controls.*'shuffle'"),
    ],
)
def test_bad_policy_or_controls_raise_naming_the_key_and_value(settings, named):
    with pytest.raises(ValueError, match=named):
        CodecConfig(**settings)


def test_assets_of_one_policy_are_refused_for_another(mover, tmp_path):
    drawn = _select(mover, policy="random")
    folder = write_assets(drawn, tmp_path / "random")
    read_assets(folder, expected=CodecConfig(**SETTINGS, policy="random"))
    with pytest.raises(AssetSettingsError, match="policy='random'"):
        read_assets(folder, expected=CodecConfig(**SETTINGS))
    shuffled = write_assets(_select(mover, controls=["shuffle"]), tmp_path / "shuffle")
    with pytest.raises(AssetSettingsError, match="controls="):
        read_assets(shuffled, expected=CodecConfig(**SETTINGS))


def test_the_cache_key_tells_policies_and_controls_apart(mover):
    from pathlib import Path

    keys = {
        asset_key(str(mover), Path(mover), CodecConfig(**SETTINGS, **change))
        for change in ({}, {"policy": "random"}, {"controls": ["shuffle"]})
    }
    assert len(keys) == 3


def test_assets_and_cache_keys_from_before_policies_stay_valid(mover, saliency, tmp_path):
    import hashlib
    import json
    from dataclasses import asdict
    from pathlib import Path

    folder = write_assets(saliency[0], tmp_path / "old")
    meta = json.loads((folder / "meta.json").read_text())
    del meta["settings"]["policy"], meta["settings"]["controls"]  # as written before
    (folder / "meta.json").write_text(json.dumps(meta))
    read_assets(folder, expected=CodecConfig(**SETTINGS))
    with pytest.raises(AssetSettingsError, match="policy='saliency'"):
        read_assets(folder, expected=CodecConfig(**SETTINGS, policy="random"))
    # the cache folder name of a default selection is the one computed before policies existed
    cfg = CodecConfig(**SETTINGS)
    before = {k: v for k, v in asdict(cfg).items() if k not in ("policy", "controls")}
    stat = Path(mover).stat()
    payload = {"video": str(mover), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    payload["codec"] = before
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]
    assert asset_key(str(mover), Path(mover), cfg) == digest


def test_the_command_line_takes_the_policy_and_controls(mover, tmp_path, capsys):
    from ovmllm.cli import main

    out = tmp_path / "assets"
    args = ["codec", "select", str(mover), "--out", str(out), "--frames", "16"]
    assert main([*args, "--policy", "random", "budget_frames=2.5", "controls=[shuffle]"]) == 0
    made_with = CodecConfig(**SETTINGS, policy="random", controls=["shuffle"])
    selection = read_assets(out, expected=made_with)
    assert selection.meta["settings"]["policy"] == "random"
    assert main([*args, "policy=random", "controls=[nonsalient:0.5]"]) == 1
    assert "codec.controls" in capsys.readouterr().err


def test_shuffled_tokens_keep_the_per_frame_token_counts(mover, saliency):
    """The frame separators of the chat layout count tokens per frame: a shuffle, which moves
    positions and not rows, must not split a frame's run."""
    from types import SimpleNamespace

    from ovmllm.multimodal_processor import MultimodalProcessor

    chosen = saliency[0]
    shuffled = _select(mover, controls=["shuffle"])
    stub = SimpleNamespace(num_visual_tokens=lambda item: int(item.positions.shape[0]))
    counts = [
        MultimodalProcessor.tokens_per_frame(stub, sel.to_packed()) for sel in (chosen, shuffled)
    ]
    assert counts[0] == counts[1] and sum(counts[0]) == chosen.num_patches
