"""Training the attentive probe's head on cached features, top to bottom: seeded head → AdamW
(no weight decay) with a linear decay to zero → per epoch, shuffled batches with label
smoothing and gradient clipping, then val top-1. The result is the best val top-1 over epochs
(the protocol the paper reports), with every epoch's loss and top-1 kept.

Features stay where they are (a memory-mapped store or an array) and are read a batch at a time,
rows in ascending order so a memory map reads forward; an epoch costs only the head.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from eval.probe.head import AttentiveProbe


@dataclass
class HeadTrainConfig:
    epochs: int = 20
    """Passes over the training clips; the best val top-1 over them is reported."""
    batch_size: int = 32
    """Clips per step."""
    lr: float = 1e-4
    """AdamW peak learning rate, decayed linearly to zero over all steps."""
    weight_decay: float = 0.0
    """AdamW weight decay (the protocol uses none)."""
    label_smoothing: float = 0.1
    """Cross-entropy label smoothing."""
    grad_clip: float = 5.0
    """Gradient norm clip."""
    heads: int = 0
    """Attention heads of the pooling; 0: one per 64 feature channels."""
    seed: int = 0
    """Seed of the head's initialisation and the batch order."""

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"probe train: epochs={self.epochs} and batch_size="
                             f"{self.batch_size} must be >= 1")  # fmt: skip


@dataclass
class EpochResult:
    epoch: int
    loss: float
    """Mean training loss of the epoch."""
    top1: float
    """Val top-1 after the epoch, in percent."""


@dataclass
class HeadResult:
    best_top1: float
    best_epoch: int
    history: list[EpochResult] = field(default_factory=list)


def _batch(features, rows: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.asarray(features[rows], dtype=np.float32)).to(device)


@torch.no_grad()
def top1(head: AttentiveProbe, features, rows: np.ndarray, labels: np.ndarray,
         batch_size: int, device: torch.device) -> float:  # fmt: skip
    """Percent of `rows` whose arg-max class is their label."""
    head.eval()
    order = np.argsort(rows, kind="stable")
    rows, labels = rows[order], labels[order]
    correct = 0
    for start in range(0, len(rows), batch_size):
        logits = head(_batch(features, rows[start : start + batch_size], device))
        predicted = logits.argmax(-1).cpu().numpy()
        correct += int((predicted == labels[start : start + batch_size]).sum())
    return 100.0 * correct / len(rows)


def train_head(
    features,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    num_classes: int,
    cfg: HeadTrainConfig,
    device: torch.device | str = "cpu",
) -> HeadResult:
    """Train a fresh head on `features[rows]` ([N, L, D], any array a row index reads) with
    (rows, labels) of the train and val clips."""
    device = torch.device(device)
    train_rows, train_labels = train
    val_rows, val_labels = val
    if len(train_rows) == 0 or len(val_rows) == 0:
        raise ValueError(f"probe train: {len(train_rows)} train and {len(val_rows)} val clips")
    torch.manual_seed(cfg.seed)
    head = AttentiveProbe(features.shape[-1], num_classes, cfg.heads).to(device)
    optimizer = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = -(-len(train_rows) // cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 - step / total)
    order_rng = np.random.default_rng(cfg.seed)
    result = HeadResult(best_top1=-1.0, best_epoch=0)
    for epoch in range(1, cfg.epochs + 1):
        head.train()
        order = order_rng.permutation(len(train_rows))
        losses = []
        for start in range(0, len(order), cfg.batch_size):
            picked = order[start : start + cfg.batch_size]
            picked = picked[np.argsort(train_rows[picked], kind="stable")]  # forward reads
            x = _batch(features, train_rows[picked], device)
            y = torch.from_numpy(train_labels[picked]).to(device)
            loss = F.cross_entropy(head(x), y, label_smoothing=cfg.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(head.parameters(), cfg.grad_clip)
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
        accuracy = top1(head, features, val_rows, val_labels, cfg.batch_size, device)
        result.history.append(EpochResult(epoch, float(np.mean(losses)), accuracy))
        if accuracy > result.best_top1:
            result.best_top1, result.best_epoch = accuracy, epoch
    return result
