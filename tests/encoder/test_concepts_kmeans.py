"""Spherical k-means (faiss) and the top-k assignment, on generated blobs with known truth."""

from __future__ import annotations

import numpy as np
import pytest

from encoder.concepts.assign import top_k_centres
from encoder.concepts.kmeans import initial_centres, spherical_kmeans, unit_rows


def blobs(n: int, k: int, d: int, spread: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit points around k random unit directions, and each point's blob."""
    rng = np.random.default_rng(seed)
    centres = unit_rows(rng.standard_normal((k, d)))
    truth = rng.permutation(np.arange(n) % k)  # every blob gets n / k points
    return unit_rows(centres[truth] + spread * rng.standard_normal((n, d))), truth


def blob_of(points: np.ndarray, x: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """The blob of the data point each of `points` is (exactly one per point)."""
    matches = (np.abs(points[:, None, :] - x[None, :, :]).max(-1) < 1e-6).argmax(1)
    return truth[matches]


def test_kmeans_recovers_separated_blobs_up_to_relabelling():
    x, truth = blobs(3000, 12, 32, spread=0.03)
    result = spherical_kmeans(x, 12, iterations=20, seed=0, restarts=3)
    found = (x @ result.centres.T).argmax(1)
    pairs = set(zip(truth.tolist(), found.tolist(), strict=True))
    assert len(pairs) == 12  # a bijection: each blob is exactly one cluster
    assert len({t for t, _ in pairs}) == len({f for _, f in pairs}) == 12
    np.testing.assert_allclose(np.linalg.norm(result.centres, axis=1), 1.0, atol=1e-5)
    assert result.centres.dtype == np.float32 and result.centres.shape == (12, 32)
    # the objective is the sum of the points' cosines to their centres
    assert result.objective == pytest.approx((x @ result.centres.T).max(1).sum(), rel=1e-3)


def test_restarts_keep_the_best_run():
    x, _ = blobs(3000, 12, 32, spread=0.1)
    single = spherical_kmeans(x, 12, seed=0)
    best = spherical_kmeans(x, 12, seed=0, restarts=4)  # its first run is the single one
    assert best.objective >= single.objective - 1e-3
    assert best.iterations > single.iterations


def test_kmeans_is_reproducible_with_its_seed():
    x, _ = blobs(800, 6, 16, spread=0.3, seed=1)
    a, b = spherical_kmeans(x, 6, seed=5), spherical_kmeans(x, 6, seed=5)
    np.testing.assert_array_equal(a.centres, b.centres)


def test_kmeans_plus_plus_picks_one_point_per_blob_where_random_picks_do_not():
    x, truth = blobs(2000, 8, 32, spread=0.001)
    plus_plus, uniform = [], []
    for seed in range(5):
        init = initial_centres(x, 8, seed, "k-means++")
        plus_plus.append(len(set(blob_of(init, x, truth).tolist())))
        uniform.append(len(set(blob_of(initial_centres(x, 8, seed, "random"), x, truth).tolist())))
    # D²-weighted draws land in an uncovered blob with probability ~1 - 1e-4 per draw; eight
    # uniform draws cover all eight blobs with probability 8!/8^8 ≈ 0.24%
    assert plus_plus == [8] * 5
    assert max(uniform) < 8


def test_initial_centres_are_data_points():
    x, truth = blobs(500, 5, 8, spread=0.2, seed=2)
    init = initial_centres(x, 5, seed=3)
    assert len(blob_of(init, x, truth)) == 5
    assert np.abs(init[:, None, :] - x[None]).max(-1).min(1).max() < 1e-6


def test_top_k_gives_the_nearest_centres_in_order():
    rng = np.random.default_rng(3)
    x, centres = rng.standard_normal((300, 24)), rng.standard_normal((50, 24))
    ids, sims = top_k_centres(x, centres, k=10, batch_size=64)  # several search batches
    cosines = unit_rows(x) @ unit_rows(centres).T
    expected = np.argsort(-cosines, axis=1, kind="stable")[:, :10]
    np.testing.assert_array_equal(ids, expected)
    np.testing.assert_allclose(sims, np.take_along_axis(cosines, expected, 1), atol=1e-5)
    assert np.all(np.diff(sims, axis=1) <= 0)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda x: spherical_kmeans(x, 11), "k=11"),
        (lambda x: spherical_kmeans(x, 2, iterations=0), "iterations"),
        (lambda x: spherical_kmeans(x, 2, init="kmeans||"), "init"),
        (lambda x: initial_centres(x, 2, method="kmeans||"), "init"),
        (lambda x: top_k_centres(x, x[:3], k=4), "top_k=4"),
    ],
)
def test_bad_arguments_are_named(call, message):
    x = np.random.default_rng(0).standard_normal((10, 4))
    with pytest.raises(ValueError, match=message):
        call(x)
