"""The loop of encoder pretraining: next batch → encoder → cluster loss → backward → encoder
step (DeepSpeed) and centre step (their own AdamW) → log → maybe save.

How the centres stay out of data-parallel averaging: the DeepSpeed engine wraps the encoder
alone, so ZeRO's gradient hooks, reduce-scatter and clipping see only encoder parameters. The
centre banks are separate modules whose gradients `engine.backward` fills through autograd (the
loss reaches them) but which no collective touches: a rank's centre gradient is already the
whole gradient of its shard (the loss's distributed softmax, `train/cluster_loss.py`), and
their optimizer (`CentreSteps`) steps each shard on its own rank. Every rank's shard and its
AdamW moments are saved with each checkpoint (`CentreShards`, the checkpointer's `RankFiles`).

Every rank makes the same collectives in the same order: the step's counts are all-reduced
first, so all ranks agree on which heads have rows in the global batch (a head with none this
step is left out of the loss; its draws are keyed by name, so the others' are unchanged) and
on skipping a step whose whole global batch failed (only the schedule advances then). A rank
without items of its own encodes one black cell and adds 0 x its output to the loss, so that
ZeRO's gradient reduction finds a gradient for every encoder parameter on every rank.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from train.centres import (
    CentreBank,
    clip_centre_gradients,
    load_centre_shard,
    save_centre_shard,
    shard_file_name,
)
from train.checkpoint import Checkpointer, TrainState
from train.cluster_loss import ClusterDiscriminationLoss, ClusterLossConfig
from train.engine import Dist, gather_objects
from train.metrics import RunLogger
from train.pretrain.config import PretrainConfig
from train.pretrain.data import PretrainBatch
from train.stopping import StopRequest, check_rejection_rate

KEEP_REJECTED_IDS = 100  # distinct ids per reason in the summary (rejected.jsonl has them all)


class CentreShards:
    """This rank's centre banks and their optimizer state, one file per rank in a checkpoint."""

    def __init__(self, banks: dict[str, CentreBank], optimizer: torch.optim.Optimizer) -> None:
        self.banks, self.optimizer = banks, optimizer
        bank = next(iter(banks.values()))
        self.file_name = shard_file_name(bank.rank, bank.world_size)

    def save(self, folder: Path) -> None:
        save_centre_shard(folder / self.file_name, self.banks, self.optimizer)

    def load(self, folder: Path) -> None:
        load_centre_shard(folder / self.file_name, self.banks, self.optimizer)


class CentreSteps:
    """The centres' optimizer on the encoder's schedule: at step s every head's group runs at
    its configured rate times `multiplier(s)`, as the engine's LambdaLR does for the encoder."""

    def __init__(self, optimizer: torch.optim.Optimizer, multiplier, max_norm: float) -> None:
        self.optimizer, self.multiplier, self.max_norm = optimizer, multiplier, max_norm
        self.base = [group["lr"] for group in optimizer.param_groups]

    def rates(self, step: int) -> dict[str, float]:
        groups = zip(self.optimizer.param_groups, self.base, strict=True)
        return {f"centres.{g['head']}": base * self.multiplier(step) for g, base in groups}

    def step(self, banks: dict[str, CentreBank], step: int) -> None:
        for group, rate in zip(self.optimizer.param_groups, self.rates(step).values(), strict=True):
            group["lr"] = rate
        clip_centre_gradients(banks, self.max_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


@dataclass
class StepResult:
    loss: float  # the weighted sum over heads (NaN for a skipped step)
    per_head: dict[str, float]
    samples: int  # global, loaded
    patches: int  # global
    rejected: int  # global
    views: dict[str, int]  # this rank's items per view
    seconds: float
    votes: list[bool]


def _all_reduce(values: list[float], device: torch.device) -> list[float]:
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    torch.distributed.all_reduce(tensor)
    return tensor.tolist()


def train_step(
    engine,
    banks: dict[str, CentreBank],
    centres: CentreSteps,
    heads: dict[str, ClusterLossConfig],
    batch: PretrainBatch,
    step: int,
    seed: int,
    dist: Dist,
    votes: Sequence[bool] = (),
) -> StepResult:
    """One optimizer step on this rank's batch; global loss and counts back."""
    tick = time.perf_counter()
    rows = [float(batch.labels[head].shape[0]) for head in heads]
    local = [*rows, float(batch.pixels.shape[0]), float(len(batch.rejected))]
    *global_rows, patches, rejected = _all_reduce(local, dist.device)
    present = {h: cfg for h, cfg, n in zip(heads, heads.values(), global_rows, strict=True) if n}
    loss, per_head = float("nan"), {}
    if not present:  # every sample of the global batch failed, on every rank alike
        engine.lr_scheduler.step()  # what the skipped engine.step() would have done
    else:
        pixels, positions, cu = batch.pixels, batch.positions, batch.cu_seqlens
        if batch.num_items == 0:  # one black cell: every rank runs the same forward/backward
            p = pixels.shape[-1]
            pixels, positions = torch.zeros(1, 3, p, p), torch.zeros(1, 3, dtype=torch.int32)
            cu = torch.tensor([0, 1], dtype=torch.int32)
        pooled = engine(pixels.to(dist.device), positions.to(dist.device), cu.to(dist.device))
        embeddings = {}
        for head in present:
            mine = [i for i, h in enumerate(batch.heads) if h == head]
            embeddings[head] = pooled[torch.tensor(mine, dtype=torch.long, device=dist.device)]
        labels = {head: batch.labels[head].to(dist.device) for head in present}
        out = ClusterDiscriminationLoss(present, seed=seed)(embeddings, labels, banks, step)
        total = out.total if batch.num_items else out.total + 0.0 * pooled.sum()
        engine.backward(total)
        centres.step(banks, step)  # the encoder's engine.step() below does not see them
        engine.step()
        loss, per_head = float(out.total.detach()), {h: float(v) for h, v in out.per_head.items()}
    samples = sum(global_rows)
    agreed = _all_reduce(list(map(float, votes)), dist.device) if votes else []
    return StepResult(loss, per_head, int(samples), int(patches), int(rejected),
                      dict(Counter(batch.views)), time.perf_counter() - tick,
                      [v > 0 for v in agreed])  # fmt: skip


class PretrainTrainer:
    """Runs the steps from `state` on, until the schedule's end, `stop_after`, or a stop signal
    to any rank (then `stopped`: the caller saves and exits with 75)."""

    def __init__(
        self,
        engine,
        banks: dict[str, CentreBank],
        centres: CentreSteps,
        cfg: PretrainConfig,
        dist: Dist,
        state: TrainState,
        checkpointer: Checkpointer,
        logger: RunLogger,
        stop: StopRequest,
    ) -> None:
        self.engine, self.banks, self.centres, self.cfg = engine, banks, centres, cfg
        self.dist, self.state, self.checkpointer = dist, state, checkpointer
        self.logger, self.stop = logger, stop
        self.heads = {head: head_cfg.loss for head, head_cfg in cfg.heads.items()}
        self.stopped = False

    def fit(self, batches: Iterable[PretrainBatch], samples_per_step: int) -> None:
        self.engine.train()
        for batch in batches:
            step = self.state.step
            lrs = {"encoder": self.engine.optimizer.param_groups[0]["lr"],
                   **self.centres.rates(step)}  # fmt: skip
            votes = [self.stop.requested, self.checkpointer.time_to_save()]
            result = train_step(self.engine, self.banks, self.centres, self.heads, batch, step,
                                self.cfg.seed, self.dist, votes)  # fmt: skip
            stop, save_due = result.votes
            self._advance(batch, result, samples_per_step)
            cfg = self.cfg
            check_rejection_rate(
                self.state.rejections, self.state.position, cfg.max_rejected_fraction,
                cfg.rejection_guard_after,
            )  # fmt: skip
            self._log(result, lrs)
            if stop:
                self.logger.note(f"stop signal ({self.stop.signal or 'another rank'}): "
                                 f"saving after step {self.state.step}")  # fmt: skip
                self.stopped = True
                break
            if self.checkpointer.should_stop(self.state):
                break
            self.checkpointer.maybe_save(self.state, save_due)

    def _advance(self, batch: PretrainBatch, result: StepResult, samples_per_step: int) -> None:
        state = self.state
        state.step += 1
        state.position += samples_per_step
        state.tokens += result.patches
        state.loss = result.loss
        if not result.per_head:
            self.logger.note(f"step {state.step}: every sample of the global batch failed: "
                             "no optimizer step")  # fmt: skip
        for rank_rejected in gather_objects(batch.rejected) if result.rejected else ():
            for item in rank_rejected:
                state.rejections.add(item.reason.split(":")[0], item.id, keep_ids=KEEP_REJECTED_IDS)
                self.logger.rejected(state.step, item.position, item.id, item.reason)

    def _log(self, result: StepResult, lrs: dict[str, float]) -> None:
        step = self.state.step
        if not (step % self.cfg.log_every == 0 or step == self.checkpointer.total_steps):
            return
        self.logger.log({
            "step": step, "loss": result.loss,
            **{f"loss_{head}": value for head, value in result.per_head.items()},
            "lr": lrs, "samples": result.samples, "tokens": result.patches,
            "samples_per_s": result.samples / result.seconds,
            "tokens_per_s": result.patches / result.seconds, "step_s": result.seconds,
            "views_rank0": result.views, "rejected": sum(self.state.rejections.counts.values()),
        })  # fmt: skip
