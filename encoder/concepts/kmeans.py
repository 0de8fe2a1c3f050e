"""Spherical k-means of unit embeddings with faiss (CPU), k-means++ initialisation.

The embeddings and the training loss both live on the unit sphere (PAPER.md section 4: cosine
logits of the L2-normalised embedding and centres), so the clustering is spherical: assignment
by inner product, centres renormalised after every update. faiss draws the initial centres
(k-means++: each next centre is a point drawn with probability proportional to its squared
distance to the nearest centre so far) and runs Lloyd iterations from them; with `restarts`
> 1 it does so that many times and keeps the best objective. Plain k-means++ can still put two
centres in one well-separated group and none in another (seen on generated blobs: about one
run in four at k = 12), which Lloyd iterations cannot undo; restarts are the remedy faiss
offers. k-means++ costs O(n k d); for very large k, `afk-mc2` (a Markov-chain approximation
of the same draw) is the cheaper choice.

faiss is imported when clustering runs, so reading a bank never needs it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

INIT_METHODS = ("k-means++", "afk-mc2", "random")


@dataclass
class KMeansResult:
    centres: np.ndarray
    """[k, d] float32, unit rows."""
    objective: float
    """Sum over the clustered points of the cosine to their nearest centre."""
    iterations: int
    """Lloyd iterations run, over all restarts."""


def faiss_module():
    try:
        import faiss
    except ImportError as exc:  # a declared dependency; say how to get it when it is missing
        raise ImportError("k-means needs faiss: pip install faiss-cpu") from exc
    return faiss


def unit_rows(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _check(x: np.ndarray, k: int) -> None:
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"k-means needs a non-empty [n, d] array, got shape {x.shape}")
    if not 1 <= k <= x.shape[0]:
        raise ValueError(f"k={k} centres need 1 <= k <= {x.shape[0]} points")


def _init_method(faiss, name: str) -> int:
    if name not in INIT_METHODS:
        raise ValueError(f"k-means init {name!r} is not one of {INIT_METHODS}")
    return {
        "k-means++": faiss.ClusteringInitMethod_KMEANS_PLUS_PLUS,
        "afk-mc2": faiss.ClusteringInitMethod_AFK_MC2,
        "random": faiss.ClusteringInitMethod_RANDOM,
    }[name]


def initial_centres(x: np.ndarray, k: int, seed: int = 0, method: str = "k-means++") -> np.ndarray:
    """[k, d] initial centres: rows of the (unit-normalised) `x` chosen by `method`, as faiss
    draws them for `spherical_kmeans` (its first restart)."""
    faiss = faiss_module()
    x = unit_rows(x)
    _check(x, k)
    init = faiss.ClusteringInitialization(x.shape[1], k)
    init.method = _init_method(faiss, method)
    init.seed = seed
    centres = np.zeros((k, x.shape[1]), np.float32)
    init.init_centroids(x.shape[0], faiss.swig_ptr(x), faiss.swig_ptr(centres))
    return centres


def spherical_kmeans(
    x: np.ndarray,
    k: int,
    iterations: int = 20,
    seed: int = 0,
    init: str = "k-means++",
    restarts: int = 1,
) -> KMeansResult:
    """Cluster the rows of `x` (normalised first) into `k` unit centres; the best of
    `restarts` runs. Every row given is used: subsample before calling (faiss would otherwise
    subsample on its own)."""
    if iterations < 1 or restarts < 1:
        raise ValueError(f"k-means iterations={iterations} and restarts={restarts} must be >= 1")
    faiss = faiss_module()
    x = unit_rows(x)
    _check(x, k)
    kmeans = faiss.Kmeans(
        x.shape[1], k, niter=iterations, nredo=restarts, seed=seed, spherical=True,
        init_method=_init_method(faiss, init), verbose=False,
        max_points_per_centroid=max(1, -(-x.shape[0] // k)),  # never subsample again
        min_points_per_centroid=1,  # small runs are the caller's choice, not a warning
    )  # fmt: skip
    kmeans.train(x)
    centres = unit_rows(kmeans.centroids)
    # faiss's per-iteration record runs over every restart; the kept run's objective is recomputed
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(centres)
    nearest, _ = index.search(x, 1)
    return KMeansResult(centres, float(nearest.sum()), len(kmeans.obj))
