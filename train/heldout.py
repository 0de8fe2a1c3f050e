"""Held-out loss: the token-mean loss over every sample of a LLaVA data file, for a plain model
or, inside training, a DeepSpeed engine whose ranks share the samples."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from ovmllm.data.dataset import MixtureDataset
from ovmllm.data.mixture import MixtureConfig, SourceConfig
from ovmllm.model import OVMLLMForCausalLM
from ovmllm.processor import SampleRejected
from train.data import micro_batch, pad_token_id


@torch.no_grad()
def loss_sums(
    forward: Callable,
    dataset: MixtureDataset,
    max_length: int,
    tower_sizes: Sequence[int],
    device: torch.device,
    rank: int = 0,
    world_size: int = 1,
) -> tuple[float, float]:
    """(summed token loss, supervised tokens) over the samples of epoch 0, one per forward.

    Rank r takes samples r, r + world_size, ...; every rank makes the same number of forward
    calls (an empty micro-batch where it has run out or a row is rejected), as ZeRO-3 needs.
    """
    order = dataset.order(0)
    pad_id = pad_token_id(dataset.processor.tokenizer)
    loss_sum, tokens = 0.0, 0.0
    for start in range(0, len(order), world_size):
        index = start + rank
        samples = []
        if index < len(order):
            source, row = (int(x) for x in order[index])
            with contextlib.suppress(SampleRejected):  # rejected rows are left out
                samples = [dataset.build(source, row, index)]
        micro = micro_batch(samples, max_length, pad_id)
        out = forward(**micro.model_inputs(device), tower_sizes=tower_sizes)
        loss_sum += float(out.loss_sum)
        tokens += float(out.num_tokens)
    return loss_sum, tokens


def heldout_loss(model: OVMLLMForCausalLM, data: str | Path, root: str = "") -> float:
    """Summed token losses / supervised tokens of a model over a data file."""
    processor = model.processor
    dataset = MixtureDataset(MixtureConfig([SourceConfig(data=str(data), root=root)]), processor)
    was_training = model.training
    model.eval()
    loss_sum, tokens = loss_sums(
        model, dataset, processor.chat.cfg.max_length, processor.patch_sizes(), model.device
    )
    model.train(was_training)
    if tokens == 0:
        raise ValueError(f"{data}: no supervised token in any sample")
    return loss_sum / tokens
