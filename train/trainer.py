"""The training loop of a stage: next batch → step → maybe evaluate → maybe log → maybe save.

The loss of a step is the token-level mean over the global batch: each rank counts the
supervised tokens of its micro-batches, one all-reduce gives the global count N, and every
micro-batch back-propagates `loss_sum x world_size / N` (DeepSpeed averages gradients over
ranks; accumulation is not rescaled). Long and short samples thus weigh per token, whatever
rank or micro-batch they land in.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

import torch

from ovmllm.data.dataset import MixtureDataset
from train.checkpoint import Checkpointer, TrainState
from train.config import StageConfig
from train.data import StepBatch
from train.engine import Dist
from train.heldout import loss_sums
from train.metrics import RunLogger

KEEP_REJECTED_IDS = 100  # distinct ids per reason in the summary (rejected.jsonl has them all)


@dataclass
class StepResult:
    """One optimizer step, summed over the ranks."""

    loss: float  # token mean over the global batch
    supervised: int
    tokens: int
    samples: int
    rejected: int
    seconds: float


def _all_reduce(values: list[float], device: torch.device) -> list[float]:
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    torch.distributed.all_reduce(tensor)
    return tensor.tolist()


def _gather(items: list, dist: Dist) -> list[list]:
    if dist.world_size == 1:
        return [items]
    gathered: list = [None] * dist.world_size
    torch.distributed.all_gather_object(gathered, items)
    return gathered


def train_step(engine, step: StepBatch, dist: Dist) -> StepResult:
    """One optimizer step over this rank's micro-batches; returns global loss and counts."""
    tick = time.perf_counter()
    local = [
        sum(mb.num_supervised for mb in step.micro_batches),
        sum(mb.num_tokens for mb in step.micro_batches),
        sum(len(mb.sample_ids) for mb in step.micro_batches),
        len(step.rejected),
    ]
    supervised, tokens, samples, rejected = _all_reduce(local, dist.device)
    if supervised == 0:  # nothing to learn from: no AdamW update (the scheduler resets lr after)
        for group in engine.optimizer.param_groups:
            group["lr"] = 0.0
    loss_sum = torch.zeros((), dtype=torch.float64, device=dist.device)
    for micro in step.micro_batches:
        out = engine(**micro.model_inputs(dist.device))
        engine.backward(out.loss_sum * dist.world_size / max(supervised, 1.0), scale_wrt_gas=False)
        engine.step()
        loss_sum += out.loss_sum.detach().double()
    (total,) = _all_reduce([float(loss_sum)], dist.device)
    return StepResult(
        total / max(supervised, 1.0), int(supervised), int(tokens), int(samples), int(rejected),
        time.perf_counter() - tick,
    )  # fmt: skip


def evaluate(engine, dataset: MixtureDataset, max_length: int, dist: Dist) -> float:
    """Held-out token-mean loss, the ranks sharing the samples."""
    engine.eval()
    sums = loss_sums(engine, dataset, max_length, dist.device, dist.rank, dist.world_size)
    engine.train()
    loss_sum, tokens = _all_reduce(list(sums), dist.device)
    return loss_sum / max(tokens, 1.0)


class Trainer:
    """Runs the steps of a stage on a DeepSpeed engine, from `state` on."""

    def __init__(
        self,
        engine,
        cfg: StageConfig,
        dist: Dist,
        state: TrainState,
        checkpointer: Checkpointer,
        logger: RunLogger,
        heldout: MixtureDataset | None,
    ) -> None:
        self.engine, self.cfg, self.dist = engine, cfg, dist
        self.state, self.checkpointer, self.logger = state, checkpointer, logger
        self.heldout = heldout
        self.total_steps = checkpointer.total_steps

    def fit(self, batches: Iterable[StepBatch], samples_per_step: int) -> None:
        self.engine.train()
        for batch in batches:
            lrs = self._learning_rates()  # the ones this step uses
            result = train_step(self.engine, batch, self.dist)
            self._advance(batch, result, samples_per_step)
            evaluated = self.maybe_evaluate()
            self.maybe_log(result, lrs, evaluated)
            if self.checkpointer.should_stop(self.state):
                break
            self.checkpointer.maybe_save(self.state)

    def _learning_rates(self) -> dict[str, float]:
        groups = self.engine.optimizer.param_groups
        return {g.get("name", str(i)): g["lr"] for i, g in enumerate(groups)}

    def _advance(self, batch: StepBatch, result: StepResult, samples_per_step: int) -> None:
        """The state after a step: counters, and the rejected rows of every rank (their ids
        travel only in steps that have some; the count is reduced)."""
        state = self.state
        state.step += 1
        state.position += samples_per_step
        state.tokens += result.tokens
        state.loss = result.loss
        if result.supervised == 0:
            self.logger.note(
                f"step {state.step}: no supervised token in the global batch (all rejected?)"
            )
        for rank_rejected in _gather(batch.rejected, self.dist) if result.rejected else ():
            for item in rank_rejected:
                state.rejections.add(item.reason, item.id, keep_ids=KEEP_REJECTED_IDS)
                self.logger.rejected(state.step, item.position, item.id, item.reason)

    def maybe_evaluate(self) -> dict[str, float]:
        """The held-out loss every `eval_every` steps and at the last one."""
        step, every = self.state.step, self.cfg.eval_every
        if self.heldout is None or not (step == self.total_steps or (every and step % every == 0)):
            return {}
        return {"heldout_loss": evaluate(self.engine, self.heldout, self.cfg.max_length, self.dist)}

    def maybe_log(self, result: StepResult, lrs: dict[str, float], evaluated: dict) -> None:
        step = self.state.step
        if not (step % self.cfg.log_every == 0 or step == self.total_steps or evaluated):
            return
        self.logger.log(
            {"step": step, "loss": result.loss, "lr": lrs, "tokens": result.tokens,
             "supervised": result.supervised, "samples": result.samples,
             "tokens_per_s": result.tokens / result.seconds, "step_s": result.seconds,
             "tokens_seen": self.state.tokens,
             "rejected": sum(self.state.rejections.counts.values()), **evaluated}
        )  # fmt: skip
