"""The cluster-discrimination loss on one process: equal to a margin softmax written out directly,
positives always sampled, negatives without replacement and uniform, draws keyed by the step."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from train.centres import CentreBank, build_centre_banks, keyed_generator, name_key
from train.cluster_loss import (
    DRAW_STREAM,
    NEGATIVE_STREAM,
    ClusterDiscriminationLoss,
    ClusterLossConfig,
    _Cosines,
    cluster_head_loss,
    draw_labels,
    sample_centres,
)

C, D, N, K = 40, 4, 12, 5  # width 4: random cosines often exceed 0.75, so the filter acts


def label_rows(n: int, k: int, classes: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randperm(classes, generator=g)[:k] for _ in range(n)])


def assert_close_to_scale(actual: torch.Tensor, expected: torch.Tensor, rel: float = 1e-5):
    """Equal up to float rounding relative to the tensor's largest entry: sums taken in another
    order (a softmax denominator in one piece or in shards) differ by rounding, which the
    cancellations in a gradient magnify for its small entries."""
    scale = expected.abs().max().item() if expected.numel() else 0.0
    torch.testing.assert_close(actual, expected, rtol=rel, atol=rel * scale)


def direct_loss(emb, labels, centres, margin=0.3, scale=64.0, threshold=None) -> torch.Tensor:
    """The definition over all classes: per label column, cosines, filter of non-targets above
    the threshold, CosFace margin on the target, scale, cross-entropy; mean over columns."""
    cos = F.normalize(emb, dim=1) @ F.normalize(centres, dim=1).T
    losses = []
    for k in range(labels.shape[1]):
        target = F.one_hot(labels[:, k], centres.shape[0]).bool()
        c = cos if threshold is None else cos.masked_fill((cos > threshold) & ~target, 0.0)
        losses.append(F.cross_entropy(scale * (c - margin * target), labels[:, k]))
    return torch.stack(losses).mean()


@pytest.mark.parametrize("threshold", [None, 0.75])
def test_sample_rate_1_equals_the_full_margin_softmax_with_its_gradients(threshold):
    bank = CentreBank(C, D, seed=1)
    emb = torch.randn(N, D, generator=torch.Generator().manual_seed(2), requires_grad=True)
    labels = label_rows(N, K, C, seed=3)
    # all K labels drawn: the draw only permutes each row, which the mean over columns ignores
    cfg = ClusterLossConfig(num_draw=K, sample_rate=1.0, filter_threshold=threshold)
    ours = cluster_head_loss(emb, labels, bank, cfg, seed=0, step=0, head="image")
    ours_grads = torch.autograd.grad(ours, (emb, bank.weight))
    ref = direct_loss(emb, labels, bank.weight, threshold=threshold)
    ref_grads = torch.autograd.grad(ref, (emb, bank.weight))
    torch.testing.assert_close(ours, ref)
    for a, b in zip(ours_grads, ref_grads, strict=True):
        assert_close_to_scale(a, b)
    if threshold is not None:  # the filter did something here, so the case tests it
        unfiltered = direct_loss(emb, labels, bank.weight)
        assert not torch.isclose(ref, unfiltered)


def test_partial_fc_is_the_margin_softmax_over_exactly_the_sampled_centres():
    """Sample rate 0.5: each drawn label's softmax runs over its positives and negatives only
    (rebuilt here from the same keyed streams), loss and gradients alike."""
    bank = CentreBank(C, D, seed=1)
    emb = torch.randn(N, D, generator=torch.Generator().manual_seed(2), requires_grad=True)
    labels = label_rows(N, K, C, seed=3)
    cfg = ClusterLossConfig(num_draw=3, sample_rate=0.5)
    ours = cluster_head_loss(emb, labels, bank, cfg, seed=4, step=9, head="ocr")
    ours_grads = torch.autograd.grad(ours, (emb, bank.weight))

    drawn = draw_labels(labels, 3, keyed_generator(4, 9, DRAW_STREAM, name_key("ocr")))
    losses = []
    for j in range(3):
        negatives = keyed_generator(4, 9, NEGATIVE_STREAM, name_key("ocr"), 0, j)
        positives = drawn[:, j].unique()
        index = sample_centres(positives, C, 0.5, negatives)
        assert index.numel() == 20 > positives.numel()  # 20 of 40 centres: negatives drawn
        target = torch.searchsorted(index, drawn[:, j].contiguous())
        assert torch.equal(index[target], drawn[:, j])
        losses.append(direct_loss(emb, target[:, None], bank.weight[index], threshold=0.75))
    ref = torch.stack(losses).mean()
    ref_grads = torch.autograd.grad(ref, (emb, bank.weight))
    torch.testing.assert_close(ours, ref)
    for a, b in zip(ours_grads, ref_grads, strict=True):
        assert_close_to_scale(a, b)


def test_hand_written_cosine_gradients_pass_gradcheck():
    g = torch.Generator().manual_seed(0)
    unit = (0.3 * torch.randn(5, 3, generator=g, dtype=torch.float64)).requires_grad_()
    weight = torch.randn(7, 3, generator=g, dtype=torch.float64).requires_grad_()
    index = torch.tensor([4, 0, 4, 6, 2])  # a centre drawn for two labels appears twice
    assert torch.autograd.gradcheck(_Cosines.apply, (unit, weight, index))
    assert torch.autograd.gradcheck(_Cosines.apply, (unit, weight, None))


def test_heads_are_summed_with_their_weights():
    banks = build_centre_banks({"image": C, "ocr": 30}, D, seed=4)
    emb = {"image": torch.randn(N, D), "ocr": torch.randn(5, D)}
    labels = {"image": label_rows(N, K, C, 5), "ocr": label_rows(5, 9, 30, 6)}
    cfgs = {"image": ClusterLossConfig(num_draw=4), "ocr": ClusterLossConfig(weight=0.5)}
    out = ClusterDiscriminationLoss(cfgs, seed=7)(emb, labels, banks, step=3)
    for head, cfg in cfgs.items():
        alone = cluster_head_loss(
            emb[head], labels[head], banks[head], cfg, seed=7, step=3, head=head
        )
        torch.testing.assert_close(out.per_head[head], alone)
    torch.testing.assert_close(out.total, out.per_head["image"] + 0.5 * out.per_head["ocr"])


def test_sampled_centres_hold_every_positive_and_distinct_uniform_negatives():
    num_local, rate = 20, 0.25  # 5 centres per draw
    positives = torch.tensor([3, 11])
    counts = torch.zeros(num_local)
    for seed in range(2000):
        index = sample_centres(positives, num_local, rate, torch.Generator().manual_seed(seed))
        assert index.numel() == 5 and index.unique().numel() == 5  # no repeats
        assert torch.equal(index, index.sort().values)
        assert set(positives.tolist()) <= set(index.tolist())
        counts[index] += 1
    assert counts[positives].tolist() == [2000, 2000]
    negatives = torch.ones(num_local, dtype=torch.bool)
    negatives[positives] = False
    expected = 2000 * 3 / 18  # 3 negative slots over 18 negatives
    assert (counts[negatives] - expected).abs().max() < 0.15 * expected


def test_more_positives_than_the_sample_keeps_just_the_positives():
    positives = torch.arange(0, 30, 3)  # 10 positives, sample of 5
    index = sample_centres(positives, 50, 0.1, torch.Generator().manual_seed(0))
    assert torch.equal(index, positives)
    assert torch.equal(sample_centres(positives, 50, 1.0, torch.Generator()), torch.arange(50))


def test_label_draw_is_a_subset_of_each_row_without_replacement():
    labels = label_rows(200, 10, 100, seed=8)
    drawn = draw_labels(labels, 8, torch.Generator().manual_seed(0))
    assert drawn.shape == (200, 8)
    for row, picked in zip(labels.tolist(), drawn.tolist(), strict=True):
        assert len(set(picked)) == 8 and set(picked) <= set(row)
    position_hits = (labels[:, :, None] == drawn[:, None, :]).any(2).float().mean(0)
    assert ((position_hits - 0.8).abs() < 0.1).all()  # every label position kept 8/10 of times
    with pytest.raises(ValueError, match="fewer than 8"):
        draw_labels(labels[:, :5], 8, torch.Generator())


def test_draws_are_keyed_by_step_replay_exactly_and_leave_the_global_rng_alone():
    bank = CentreBank(C, D, seed=1)
    emb, labels = torch.randn(N, D), label_rows(N, K, C, seed=9)
    cfg = ClusterLossConfig(num_draw=3, sample_rate=0.2)

    def loss(step: int, seed: int = 0) -> torch.Tensor:
        return cluster_head_loss(emb, labels, bank, cfg, seed=seed, step=step, head="image")

    before = torch.get_rng_state()
    first = loss(5)
    assert torch.equal(torch.get_rng_state(), before)
    torch.manual_seed(1234)  # a resumed process has another global RNG state: no effect
    assert torch.equal(loss(5), first)
    assert not torch.equal(loss(6), first)
    assert not torch.equal(loss(5, seed=1), first)


def test_bad_inputs_raise_and_name_the_problem():
    bank = CentreBank(C, D)
    emb, labels = torch.randn(N, D), label_rows(N, K, C, seed=0)
    cfg = ClusterLossConfig(num_draw=K, sample_rate=1.0)
    with pytest.raises(ValueError, match="no rank's shard"):
        cluster_head_loss(emb, labels + C, bank, cfg, seed=0, step=0, head="image")
    with pytest.raises(ValueError, match="rank 1 of 2"):
        sharded = CentreBank(C, D, rank=1, world_size=2)
        cluster_head_loss(emb, labels, sharded, cfg, seed=0, step=0, head="image")
    with pytest.raises(ValueError, match=r"expected \[n, 4\]"):
        cluster_head_loss(torch.randn(N, 3), labels, bank, cfg, seed=0, step=0, head="image")
    loss = ClusterDiscriminationLoss({"image": cfg, "video": cfg})
    with pytest.raises(ValueError, match=r"lack heads \['video'\]"):
        loss({"image": emb}, {"image": labels}, {"image": bank}, step=0)
    with pytest.raises(ValueError, match="sample_rate"):
        ClusterLossConfig(sample_rate=0.0)
