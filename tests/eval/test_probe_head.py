"""The attentive probe's head and its training, on feature arrays alone (no encoder)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from eval.probe.head import AttentiveProbe
from eval.probe.train import HeadTrainConfig, train_head


@pytest.fixture(autouse=True)
def one_thread():
    """The toy tensors are tiny: on a busy 2-core machine, a second OpenMP thread waiting on the
    first costs ~40x the work itself."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _toy(n: int, classes: int, tokens: int, width: int, seed: int = 0):
    """Clips of `tokens` noisy features; a class shows as a shift of a third of its tokens
    along the class's own direction, so the set is linearly separable after pooling."""
    rng = np.random.default_rng(seed)
    directions = rng.normal(size=(classes, width))
    labels = np.arange(n) % classes
    features = rng.normal(size=(n, tokens, width))
    features[:, : tokens // 3] += 1.5 * directions[labels][:, None, :]
    return features.astype(np.float32), labels.astype(np.int64)


def test_the_head_alone_learns_a_linearly_separable_toy_set():
    features, labels = _toy(240, classes=4, tokens=12, width=32)
    rows = np.arange(240)
    # the protocol's optimiser settings; only the epochs are sized for the toy set
    cfg = HeadTrainConfig(epochs=12, batch_size=16)
    result = train_head(features, (rows[:160], labels[:160]), (rows[160:], labels[160:]), 4, cfg)
    assert result.best_top1 > 95.0
    losses = [epoch.loss for epoch in result.history]
    assert losses[-1] < losses[0]
    assert result.history[result.best_epoch - 1].top1 == result.best_top1


def test_training_is_a_function_of_the_seed():
    features, labels = _toy(64, classes=3, tokens=6, width=16, seed=1)
    rows = np.arange(64)
    run = lambda seed: train_head(  # noqa: E731
        features, (rows[:48], labels[:48]), (rows[48:], labels[48:]), 3,
        HeadTrainConfig(epochs=2, batch_size=8, seed=seed),
    )  # fmt: skip
    first, again, other = run(0), run(0), run(1)
    assert [e.loss for e in first.history] == [e.loss for e in again.history]
    assert [e.loss for e in first.history] != [e.loss for e in other.history]


def test_the_untrained_head_predicts_near_uniformly():
    torch.manual_seed(0)
    head = AttentiveProbe(64, 10)
    assert head.attention.num_heads == 1  # one head per 64 channels
    logits = head(torch.randn(4, 20, 64))
    assert logits.shape == (4, 10)
    assert logits.abs().max() < 0.2  # small classifier init: no class favoured at the start
    assert AttentiveProbe(128, 3).attention.num_heads == 2
