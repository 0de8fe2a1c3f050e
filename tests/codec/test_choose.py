"""Frame sampling, whole-frame policies and the global top-K, on hand-made scores."""

import numpy as np

from encoder.codec.plan import resolve_plan, sample_indices
from encoder.codec.selection import codec_timeline, uniform_timeline
from encoder.codec.topk import choose_rows, whole_frames


def test_sample_indices_are_floor_linspace_and_repeat_short_clips():
    assert (
        sample_indices(487, 64).tolist() == np.floor(np.linspace(0, 486, 64)).astype(int).tolist()
    )
    short = sample_indices(5, 8)
    assert short.tolist() == [0, 0, 1, 1, 2, 2, 3, 4]
    assert sample_indices(1, 4).tolist() == [0, 0, 0, 0]


def test_resolve_plan_exact_and_when_the_decoder_came_up_short():
    plan = sample_indices(100, 8)
    ids, exact = resolve_plan(plan, plan.tolist(), 100)
    assert exact and ids is plan
    kept = [i for i in plan.tolist() if i < 60]  # the last 40 frames never decoded
    ids, exact = resolve_plan(plan, kept, 60)
    assert not exact and len(ids) == 8 and set(ids.tolist()) <= set(kept)
    assert ids.tolist() == sorted(ids.tolist())


def test_timelines():
    assert codec_timeline(64).tolist() == list(range(64))
    assert codec_timeline(8).tolist() == [0, 9, 18, 27, 36, 45, 54, 63]
    assert codec_timeline(1).tolist() == [0]
    assert uniform_timeline(8).tolist() == [0, 9, 18, 27, 36, 45, 54, 63]
    assert uniform_timeline(5).tolist() == [0, 15, 31, 47, 63]


def test_top_k_keeps_the_first_frame_whole_and_never_picks_padding():
    rng = np.random.default_rng(0)
    scores = rng.random((4, 3, 3)).astype(np.float32)
    candidates = np.ones((3, 3), bool)
    candidates[0] = False  # the top row is padding
    scores[:, 0] = 100.0  # ... with huge scores
    rows, n_candidates = choose_rows(scores, candidates, [0], budget=9 + 5)
    assert n_candidates == 3 * 6
    assert (rows[:9] == np.stack([np.zeros(9), *np.divmod(np.arange(9), 3)], 1)).all()
    assert (rows[9:, 1] > 0).all()  # padding (row 0) never chosen after t = 0
    flat = rows[:, 0] * 9 + rows[:, 1] * 3 + rows[:, 2]
    assert (np.diff(flat) > 0).all()  # sorted by (t, h, w), no duplicates
    best = np.argsort(-np.where(candidates, scores, -1)[1:].ravel(), kind="stable")[:5] + 9
    assert sorted(flat[9:].tolist()) == sorted(best.tolist())


def test_ties_go_to_the_lower_index_and_short_supply_repeats_the_last_row():
    scores = np.zeros((3, 2, 2), np.float32)
    rows, _ = choose_rows(scores, np.ones((2, 2), bool), [], budget=3)
    assert rows.tolist() == [[0, 0, 0], [0, 0, 1], [0, 1, 0]]
    rows, n = choose_rows(scores, np.eye(2, dtype=bool), [0], budget=10)
    assert n == 4 and len(rows) == 10
    assert rows[4:8].tolist() == [[1, 0, 0], [1, 1, 1], [2, 0, 0], [2, 1, 1]]
    assert rows[8:].tolist() == [[2, 1, 1]] * 2


def test_whole_frame_policies():
    types = [1, 3, 2, 1, 2, 1]
    assert whole_frames(types, "first", 100, 10) == [0]
    assert whole_frames(types, "none", 100, 10) == []
    assert whole_frames(types, "iframes", 100, 10) == [0, 3, 5]
    assert whole_frames(types, "iframes", 25, 10) == [0, 3]  # only as many as the budget holds


def test_top_k_equals_a_stable_sort_with_many_ties():
    rng = np.random.default_rng(1)
    scores = rng.integers(0, 5, (6, 4, 4)).astype(np.float32)  # few distinct values: ties galore
    candidates = rng.random((4, 4)) > 0.2
    for budget in (16, 20, 37, 60, 200):
        rows, _ = choose_rows(scores, candidates, [0], budget)
        eligible = np.broadcast_to(candidates, scores.shape).copy()
        eligible[0] = False
        flat_eligible = np.flatnonzero(eligible)
        order = np.argsort(-scores.ravel()[flat_eligible], kind="stable")
        want = np.sort(np.concatenate([np.arange(16), flat_eligible[order[: budget - 16]]]))
        got = rows[:, 0] * 16 + rows[:, 1] * 4 + rows[:, 2]
        n = min(budget, len(want))
        assert got[:n].tolist() == want.tolist()[:n]
