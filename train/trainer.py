"""The training loop of a stage: next batch → step → maybe evaluate → maybe log → maybe save.

The loss of a step is the token-level mean over the global batch: each rank counts the
supervised tokens of its micro-batches, one all-reduce gives the global count N, and every
micro-batch back-propagates `loss_sum x world_size / N` (DeepSpeed averages gradients over
ranks; accumulation is not rescaled). Long and short samples thus weigh per token, whatever
rank or micro-batch they land in. A step whose global batch has no supervised token (every row
rejected) makes no forward, backward nor optimizer step on any rank: AdamW's moments and step
count stay as they were; only the schedule advances, as after any step.

The all-reduce that ends a step also carries the ranks' votes on what to do next (stop after a
signal, save by rank 0's clock), so every rank takes the same decision after the same step.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch

from ovmllm.data.dataset import MixtureDataset
from train.checkpoint import Checkpointer, TrainState
from train.config import StageConfig
from train.data import StepBatch
from train.engine import Dist, gather_objects
from train.heldout import loss_sums
from train.metrics import RunLogger
from train.stopping import StopRequest, check_rejection_rate

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
    votes: list[bool]  # per vote passed to train_step: did any rank vote yes


def _all_reduce(values: list[float], device: torch.device) -> list[float]:
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    torch.distributed.all_reduce(tensor)
    return tensor.tolist()


def train_step(engine, step: StepBatch, dist: Dist, votes: Sequence[bool] = ()) -> StepResult:
    """One optimizer step over this rank's micro-batches; returns global loss and counts, and
    for each of this rank's `votes` whether any rank voted yes."""
    tick = time.perf_counter()
    local = [
        sum(mb.num_supervised for mb in step.micro_batches),
        sum(mb.num_tokens for mb in step.micro_batches),
        sum(len(mb.sample_ids) for mb in step.micro_batches),
        len(step.rejected),
    ]
    supervised, tokens, samples, rejected = _all_reduce(local, dist.device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=dist.device)
    if supervised == 0:  # the same on every rank (a global count): all skip alike
        engine.lr_scheduler.step()  # what the skipped engine.step() would have done to it
    else:
        for micro in step.micro_batches:
            out = engine(**micro.model_inputs(dist.device))
            engine.backward(out.loss_sum * dist.world_size / supervised, scale_wrt_gas=False)
            engine.step()
            loss_sum += out.loss_sum.detach().double()
    total, *agreed = _all_reduce([float(loss_sum), *map(float, votes)], dist.device)
    return StepResult(
        total / max(supervised, 1.0), int(supervised), int(tokens), int(samples), int(rejected),
        time.perf_counter() - tick, [vote > 0 for vote in agreed],
    )  # fmt: skip


def evaluate(engine, dataset: MixtureDataset, max_length: int, dist: Dist) -> dict[str, float]:
    """Held-out token-mean loss and the rows it left out (rejected), the ranks sharing the
    samples."""
    engine.eval()
    sums = loss_sums(engine, dataset, max_length, dist.device, dist.rank, dist.world_size)
    engine.train()
    loss_sum, tokens, rejected = _all_reduce(list(sums), dist.device)
    return {"heldout_loss": loss_sum / max(tokens, 1.0), "heldout_rejected": int(rejected)}


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
        stop: StopRequest,
    ) -> None:
        self.engine, self.cfg, self.dist = engine, cfg, dist
        self.state, self.checkpointer, self.logger = state, checkpointer, logger
        self.heldout, self.stop = heldout, stop
        self.total_steps = checkpointer.total_steps
        self.stopped = False  # by a signal (to some rank): the run saves and exits with 75

    def fit(self, batches: Iterable[StepBatch], samples_per_step: int) -> None:
        """The steps, until the schedule's end, `stop_after`, or a stop signal to any rank
        (raises `TooManyRejected` when too many rows are rejected)."""
        self.engine.train()
        for batch in batches:
            lrs = self._learning_rates()  # the ones this step uses
            votes = [self.stop.requested, self.checkpointer.time_to_save()]
            result = train_step(self.engine, batch, self.dist, votes)
            stop, save_due = result.votes
            self._advance(batch, result, samples_per_step)
            cfg = self.cfg
            check_rejection_rate(
                self.state.rejections, self.state.position, cfg.max_rejected_fraction,
                cfg.rejection_guard_after,
            )  # fmt: skip
            if stop:  # the grace time before a kill goes to the checkpoint, not to evaluation
                self.maybe_log(result, lrs, {})
                self.logger.note(f"stop signal ({self.stop.signal or 'another rank'}): "
                                 f"saving after step {self.state.step}")  # fmt: skip
                self.stopped = True
                break
            evaluated = self.maybe_evaluate()
            self.maybe_log(result, lrs, evaluated)
            if self.checkpointer.should_stop(self.state):
                break
            self.checkpointer.maybe_save(self.state, save_due)

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
                f"step {state.step}: no supervised token in the global batch (all rejected?): "
                "no optimizer step"
            )
        for rank_rejected in gather_objects(batch.rejected) if result.rejected else ():
            for item in rank_rejected:
                state.rejections.add(item.reason, item.id, keep_ids=KEEP_REJECTED_IDS)
                self.logger.rejected(state.step, item.position, item.id, item.reason)

    def maybe_evaluate(self) -> dict[str, float]:
        """The held-out loss every `eval_every` steps and at the last one."""
        step, every = self.state.step, self.cfg.eval_every
        if self.heldout is None or not (step == self.total_steps or (every and step % every == 0)):
            return {}
        return evaluate(self.engine, self.heldout, self.cfg.max_length, self.dist)

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
