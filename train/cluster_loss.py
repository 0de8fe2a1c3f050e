"""The cluster-discrimination loss of encoder pretraining, as the reference implements it
(PAPER.md section 4; the paper's equation writes a sigmoid form, the code a margin softmax).

Per head (image, OCR, video) and step:
1. the embeddings and label rows of every rank are gathered (the global batch);
2. `num_draw` (8) of each sample's labels are drawn without replacement;
3. per drawn label, each rank scores the global batch against a subset of its own shard of
   centres (Partial FC): every positive class on the shard plus random negatives, in all
   `int(sample_rate * num_local)` centres (sample rate 0.1), or the positives alone when they
   are more;
4. logits are cosines of the L2-normalised embedding and centres (clamped to [-1, 1]);
   non-target cosines above `filter_threshold` (0.75) are set to 0; the target gets the
   CosFace margin (cos - 0.3); all are multiplied by the scale (64);
5. a softmax over the union of the ranks' subsets (all-reduce of the row maxima, of the sums of
   exponentials and of the target logits) gives a cross-entropy per sample and drawn label,
   averaged over the global batch and the drawn labels;
6. the heads' losses are summed with per-head weights (1 by default).

The loss is the same number on every rank. Backward keeps each rank's centre gradient on its own
shard (nothing about centres is communicated); the gradient of the gathered embeddings is summed
over ranks and handed back to the rank that produced them, multiplied by the world size, so that
the data-parallel averaging of encoder gradients (DDP, DeepSpeed ZeRO: sum / world size) yields
exactly the gradient of this global-batch loss. The centres are not data-parallel parameters
(see `train/centres.py`).

Random draws are keyed, not stateful: the label draw by (seed, step, head) — identical on every
rank and, because it is made on the gathered batch, independent of the world size — and the
negatives by (seed, step, head, rank, drawn-label index). A resumed run at the same world size
replays every draw exactly without saving generator state, and the global RNG is never used.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from train.centres import CentreBank, keyed_generator, name_key

DRAW_STREAM = 0  # seed key of the label draw
NEGATIVE_STREAM = 1  # seed key of the negative sampling
NORM_EPS = 1e-12  # as F.normalize: x / max(|x|, eps)


@dataclass
class ClusterLossConfig:
    """One head's loss settings; the defaults are the reference's."""

    num_draw: int = 8
    """labels drawn per sample and step (out of the sample's label row)"""
    sample_rate: float = 0.1
    """centres scored per drawn label, as a fraction of the local shard (positives always in)"""
    margin: float = 0.3
    """CosFace margin subtracted from the target cosine"""
    scale: float = 64.0
    """logit scale applied after the margin"""
    filter_threshold: float | None = 0.75
    """non-target cosines above this are set to 0 (None: no filter)"""
    weight: float = 1.0
    """this head's weight in the summed loss"""

    def __post_init__(self) -> None:
        if self.num_draw < 1:
            raise ValueError(f"num_draw must be at least 1, got {self.num_draw}")
        if not 0.0 < self.sample_rate <= 1.0:
            raise ValueError(f"sample_rate must be in (0, 1], got {self.sample_rate}")


@dataclass
class ClusterLossOutput:
    total: torch.Tensor
    """the weighted sum over heads, to backpropagate"""
    per_head: dict[str, torch.Tensor]
    """each head's unweighted loss, detached (for logging)"""


def group_layout(group: dist.ProcessGroup | None = None) -> tuple[int, int]:
    """(rank, world size) in `group`; (0, 1) when torch.distributed is not initialised."""
    if not (dist.is_available() and dist.is_initialized()):
        return 0, 1
    return dist.get_rank(group), dist.get_world_size(group)


def draw_labels(labels: torch.Tensor, num_draw: int, generator: torch.Generator) -> torch.Tensor:
    """`num_draw` of each row's labels, drawn without replacement (a random permutation per row,
    kept to its first `num_draw`): [N, K] → [N, num_draw]."""
    if labels.dim() != 2 or labels.shape[1] < num_draw:
        raise ValueError(f"label rows {tuple(labels.shape)} hold fewer than {num_draw} labels")
    noise = torch.rand(labels.shape, generator=generator, device=labels.device)
    return labels.gather(1, noise.argsort(dim=1)[:, :num_draw])


def sample_centres(
    positives: torch.Tensor, num_local: int, sample_rate: float, generator: torch.Generator
) -> torch.Tensor:
    """Sorted local centre ids to score: all of `positives` (sorted unique local ids) plus
    negatives drawn uniformly without replacement from the rest of the shard, in all
    `int(sample_rate * num_local)` ids, or just the positives when they are more. (Random scores
    with the positives' set to 2, then top-k, as Partial FC does.)"""
    num_sample = int(sample_rate * num_local)
    if num_sample >= num_local:
        return torch.arange(num_local, device=positives.device)
    if positives.numel() >= num_sample:
        return positives
    score = torch.rand(num_local, generator=generator, device=positives.device)
    score[positives] = 2.0
    return score.topk(num_sample).indices.sort().values


def margin_logits(cos: torch.Tensor, targets: torch.Tensor, cfg: ClusterLossConfig) -> torch.Tensor:
    """Filter, margin and scale on cosines [N, S]; `targets` [J, N] holds, per drawn label and
    row, the target's column in `cos`, or -1 when the target lives on another rank. (One new
    [N, S] tensor, edited in place: these matrices are the head's largest.)"""
    rows = (targets >= 0).nonzero()[:, 1]
    cols = targets[targets >= 0]
    logits = cos * cfg.scale
    if cfg.filter_threshold is not None:
        with torch.no_grad():
            dirty = cos > cfg.filter_threshold
            dirty[rows, cols] = False
        logits.masked_fill_(dirty, 0.0)
    return logits.index_put_((rows, cols), logits[rows, cols] - cfg.margin * cfg.scale)


class _Cosines(torch.autograd.Function):
    """Cosines [N, S] of unit embeddings [N, D] with the centre rows `weight[index]` (all rows
    when `index` is None), clamped to [-1, 1]. Written out because autograd's version (gather,
    normalise, matmul) makes several [S, D] temporaries in backward, S being up to 8 x 10% of
    a shard; here backward makes one and adds it into a dense weight gradient:
    d cos_ic / d w_c = (unit_i - cos_ic w_c / |w_c|) / |w_c|."""

    @staticmethod
    def forward(ctx, unit: torch.Tensor, weight: torch.Tensor, index: torch.Tensor | None):
        rows = weight.detach() if index is None else weight.detach()[index]
        inv = rows.norm(dim=1).clamp_min_(NORM_EPS).reciprocal_()
        cos = (unit.detach() @ rows.T).mul_(inv)
        clamped = cos.abs() > 1.0  # rare rounding: no gradient there, as torch.clamp
        cos.clamp_(-1.0, 1.0)
        ctx.save_for_backward(unit, weight, index, rows, inv, cos, clamped)
        return cos

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        unit, weight, index, rows, inv, cos, clamped = ctx.saved_tensors
        grad = grad.masked_fill(clamped, 0.0)
        along = (grad * cos).sum(dim=0).mul_(inv).mul_(inv)  # sum_i g_ic cos_ic / |w_c|^2
        grad.mul_(inv)
        grad_unit = grad @ rows if ctx.needs_input_grad[0] else None
        grad_weight = None
        if ctx.needs_input_grad[1]:
            grad_rows = (grad.T @ unit).addcmul_(rows, along[:, None], value=-1.0)
            if index is None:
                grad_weight = grad_rows
            else:
                grad_weight = torch.zeros_like(weight).index_add_(0, index, grad_rows)
        return grad_unit, grad_weight, None


class _GatherRows(torch.autograd.Function):
    """All-gather of row blocks of any sizes; backward sums the global gradient over ranks, keeps
    this rank's rows and multiplies them by the world size (see the module docstring)."""

    @staticmethod
    def forward(ctx, local: torch.Tensor, sizes: list[int], group) -> torch.Tensor:
        ctx.sizes, ctx.group = sizes, group
        return _gather(local, sizes, group)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        grad = grad.clone(memory_format=torch.contiguous_format)  # reduced in place
        dist.all_reduce(grad, dist.ReduceOp.SUM, group=ctx.group)
        rank = dist.get_rank(ctx.group)
        start = sum(ctx.sizes[:rank])
        return grad[start : start + ctx.sizes[rank]] * len(ctx.sizes), None, None


def _gather(local: torch.Tensor, sizes: list[int], group) -> torch.Tensor:
    pad = max(sizes) - local.shape[0]
    padded = F.pad(local, (0, 0, 0, pad)) if pad else local.contiguous()
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded, group=group)
    return torch.cat([part[:n] for part, n in zip(parts, sizes, strict=True)])


def _row_counts(n: int, device: torch.device, group) -> list[int]:
    count = torch.tensor([n], dtype=torch.int64, device=device)
    counts = [torch.empty_like(count) for _ in range(dist.get_world_size(group))]
    dist.all_gather(counts, count, group=group)
    return [int(c) for c in counts]


class _ShardedSoftmaxCE(torch.autograd.Function):
    """Mean cross-entropy of J softmaxes whose classes are split across ranks. `logits` [N, S]
    holds this rank's J column blocks of widths `sizes` side by side; `targets` [J, N] the
    target's column in `logits`, -1 where it is on another rank. Three all-reduces (row maxima,
    sums of exponentials, target logits with a hit count); backward is local:
    (softmax - one-hot) / (N J) on this rank's columns."""

    @staticmethod
    def forward(ctx, targets: torch.Tensor, sizes: list[int], group, world: int, logits):
        n = logits.shape[0]
        blocks = logits.detach().split(sizes, dim=1)
        empty = torch.full((n,), float("-inf"), device=logits.device)
        maxima = torch.stack([b.amax(dim=1) if b.shape[1] else empty for b in blocks])
        if world > 1:
            dist.all_reduce(maxima, dist.ReduceOp.MAX, group=group)
        probs = torch.empty_like(logits)
        for block, out, m in zip(blocks, probs.split(sizes, dim=1), maxima, strict=True):
            torch.sub(block, m[:, None], out=out)
        probs.exp_()
        sums = torch.stack([p.sum(dim=1) for p in probs.split(sizes, dim=1)])
        hit = targets >= 0
        found = torch.zeros(2, *targets.shape, device=logits.device)
        found[0][hit] = logits.detach()[hit.nonzero()[:, 1], targets[hit]]
        found[1][hit] = 1.0
        if world > 1:
            dist.all_reduce(sums, dist.ReduceOp.SUM, group=group)
            dist.all_reduce(found, dist.ReduceOp.SUM, group=group)
        if not torch.equal(found[1], torch.ones_like(found[1])):
            raise ValueError(
                "a drawn label is on no rank's shard or on several: labels must be class ids "
                "in [0, num_classes) of banks laid out for this group"
            )
        for p, s in zip(probs.split(sizes, dim=1), sums, strict=True):
            p.div_(s[:, None])
        ctx.save_for_backward(targets, probs)
        return (maxima + sums.log() - found[0]).mean()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        targets, probs = ctx.saved_tensors
        hit = targets >= 0
        probs[hit.nonzero()[:, 1], targets[hit]] -= 1.0
        return None, None, None, None, probs.mul_(grad / targets.numel())


def cluster_head_loss(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    bank: CentreBank,
    cfg: ClusterLossConfig,
    *,
    seed: int,
    step: int,
    head: str,
    group: dist.ProcessGroup | None = None,
) -> torch.Tensor:
    """One head's loss (unweighted) for this rank's `embeddings` [n, D] and label rows [n, K]
    (class ids; K equal on all ranks, n may differ and be 0). Every rank of `group` must call it,
    with its own shard `bank`, in the same order of heads."""
    rank, world = group_layout(group)
    if (bank.rank, bank.world_size) != (rank, world):
        raise ValueError(f"head {head!r}: bank laid out for rank {bank.rank} of "
                         f"{bank.world_size}, the group is rank {rank} of {world}")  # fmt: skip
    if embeddings.dim() != 2 or embeddings.shape[1] != bank.dim:
        raise ValueError(
            f"head {head!r}: embeddings {tuple(embeddings.shape)}, expected [n, {bank.dim}]"
        )
    if labels.dim() != 2 or labels.shape[0] != embeddings.shape[0]:
        raise ValueError(
            f"head {head!r}: labels {tuple(labels.shape)} for {embeddings.shape[0]} rows"
        )
    labels = labels.long()
    if world > 1:
        sizes = _row_counts(embeddings.shape[0], embeddings.device, group)
        embeddings = _GatherRows.apply(embeddings, sizes, group)
        labels = _gather(labels, sizes, group)
    n = embeddings.shape[0]
    if n == 0:  # no sample of this head anywhere: a zero that keeps both graphs connected
        return embeddings.sum() * 0.0 + bank.weight.sum() * 0.0
    device = embeddings.device
    draw_generator = keyed_generator(seed, step, DRAW_STREAM, name_key(head), device=device)
    drawn = draw_labels(labels, cfg.num_draw, draw_generator)
    local = drawn - bank.start
    here = (local >= 0) & (local < bank.num_local)

    indices = []
    for j in range(cfg.num_draw):
        positives = local[here[:, j], j].unique()
        generator = keyed_generator(seed, step, NEGATIVE_STREAM, name_key(head), rank, j,
                                    device=device)  # fmt: skip
        indices.append(sample_centres(positives, bank.num_local, cfg.sample_rate, generator))
    # All drawn labels' centre subsets side by side: one gather, one matrix product, one logit
    # matrix whose column blocks are the J softmaxes.
    sizes = [index.numel() for index in indices]
    full = all(size == bank.num_local for size in sizes)  # sample rate 1: the whole shard
    unit = F.normalize(embeddings.float(), dim=1, eps=NORM_EPS)
    cos = _Cosines.apply(unit, bank.weight, None if full else torch.cat(indices))
    if full:
        cos = cos.repeat(1, cfg.num_draw)
    offsets = [0, *itertools.accumulate(sizes)]
    targets = torch.full((cfg.num_draw, n), -1, dtype=torch.long, device=device)
    for j, index in enumerate(indices):
        cols = torch.searchsorted(index, local[here[:, j], j])
        targets[j, here[:, j]] = cols + offsets[j]
    logits = margin_logits(cos, targets, cfg)
    return _ShardedSoftmaxCE.apply(targets, sizes, group, world, logits)


class ClusterDiscriminationLoss:
    """The summed, weighted loss of all heads. `heads` fixes the heads and their order (every
    rank runs the same collectives in the same order); `seed` keys all random draws."""

    def __init__(
        self,
        heads: Mapping[str, ClusterLossConfig],
        *,
        seed: int = 0,
        group: dist.ProcessGroup | None = None,
    ) -> None:
        if not heads:
            raise ValueError("at least one head is needed")
        self.heads, self.seed, self.group = dict(heads), seed, group

    def __call__(
        self,
        embeddings: Mapping[str, torch.Tensor],
        labels: Mapping[str, torch.Tensor],
        banks: Mapping[str, CentreBank],
        step: int,
    ) -> ClusterLossOutput:
        """`embeddings[head]` [n_head, D] (pooler outputs of this rank's samples of the head,
        possibly none), `labels[head]` [n_head, K_head], `banks[head]` this rank's shard."""
        for what, given in (("embeddings", embeddings), ("labels", labels), ("banks", banks)):
            missing = sorted(set(self.heads) - set(given))
            if missing:
                raise ValueError(f"{what} lack heads {missing} (pass empty tensors for a head "
                                 "with no sample on this rank)")  # fmt: skip
        per_head, total = {}, None
        for head, cfg in self.heads.items():
            loss = cluster_head_loss(
                embeddings[head], labels[head], banks[head], cfg,
                seed=self.seed, step=step, head=head, group=self.group,
            )  # fmt: skip
            per_head[head] = loss.detach()
            total = loss * cfg.weight if total is None else total + loss * cfg.weight
        return ClusterLossOutput(total=total, per_head=per_head)
