"""Held-out loss: the token-mean loss over every sample of a LLaVA data file, for a plain model
or, inside training, a DeepSpeed engine whose ranks share the samples."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from ovmllm.data.dataset import MixtureDataset, Rejected, Sample
from ovmllm.data.mixture import MixtureConfig, SourceConfig
from ovmllm.model import OVMLLMForCausalLM
from train.data import micro_batch, pad_token_id


@torch.no_grad()
def loss_sums(
    forward: Callable,
    dataset: MixtureDataset,
    max_length: int,
    device: torch.device,
    rank: int = 0,
    world_size: int = 1,
) -> tuple[float, float, float]:
    """(summed token loss, supervised tokens, rejected rows) over this rank's share of epoch 0,
    one sample per forward.

    Rank r takes samples r, r + world_size, ...; every rank makes the same number of forward
    calls (an empty micro-batch where it has run out or a row is rejected), as ZeRO-3 needs
    (`forward` is then the training engine, whose module makes uniform tower calls).
    """
    share = dataset.stream(0, shard=rank, num_shards=world_size)
    pad_id = pad_token_id(dataset.processor.tokenizer)
    loss_sum, tokens, rejected = 0.0, 0.0, 0.0
    for _ in range(math.ceil(len(dataset.order(0)) / world_size)):
        item = next(share, None)  # rejected rows are left out, and counted
        rejected += isinstance(item, Rejected)
        micro = micro_batch([item] if isinstance(item, Sample) else [], max_length, pad_id)
        out = forward(**micro.model_inputs(device))
        loss_sum += float(out.loss_sum)
        tokens += float(out.num_tokens)
    return loss_sum, tokens, rejected


def heldout_loss(model: OVMLLMForCausalLM, data: str | Path, root: str = "") -> float:
    """Summed token losses / supervised tokens of a model over a data file (a warning says how
    many rows were rejected, thus left out)."""
    processor = model.processor
    dataset = MixtureDataset(MixtureConfig([SourceConfig(data=str(data), root=root)]), processor)
    was_training = model.training
    model.eval()
    loss_sum, tokens, rejected = loss_sums(
        model, dataset, processor.chat.cfg.max_length, model.device
    )
    model.train(was_training)
    if rejected:
        warnings.warn(f"{data}: {int(rejected)} rejected row(s) left out", stacklevel=2)
    if tokens == 0:
        raise ValueError(f"{data}: no supervised token in any sample")
    return loss_sum / tokens
