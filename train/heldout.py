"""Held-out loss: the token-mean loss of a model over every sample of a LLaVA data file."""

from __future__ import annotations

from pathlib import Path

import torch

from ovmllm.data.dataset import MixtureDataset
from ovmllm.data.mixture import MixtureConfig, SourceConfig
from ovmllm.model import OVMLLMForCausalLM


@torch.no_grad()
def heldout_loss(model: OVMLLMForCausalLM, data: str | Path, root: str = "") -> float:
    """Summed token losses / supervised tokens, one sample at a time (rejected rows skipped)."""
    source = MixtureConfig([SourceConfig(data=str(data), root=root)])
    total, count = 0.0, 0
    was_training, device = model.training, model.device
    model.eval()
    for sample in MixtureDataset(source, model.processor).samples(0):
        out = model(
            torch.tensor([sample.encoded.input_ids], device=device),
            labels=torch.tensor([sample.encoded.labels], device=device),
            visual=[item.to_device(device) for item in sample.visual],
        )
        total, count = total + float(out.loss_sum), count + int(out.num_tokens)
    model.train(was_training)
    if count == 0:
        raise ValueError(f"{data}: no supervised token in any sample")
    return total / count
