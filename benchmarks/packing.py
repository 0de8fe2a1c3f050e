"""Packed vs padded LLM training step (forward + backward), measured in the same run.

A Qwen3-architecture LLM (hidden 512, 8 layers, vocabulary 8,192 so the output layer does not
dominate on CPU) on a fixed mix: 12 image-caption samples (256 visual + 30-60 text tokens) and
4 video samples (2,048 visual + 40-120 text tokens). Visual tokens enter as embeddings (the
LLM's cost is what differs between the two layouts). Padded: one batch padded to the longest
sample. Packed: next-fit sequences of at most 4,096 tokens, positions reset per sample,
block-diagonal causal attention (a [L, L] mask per sequence on CPU); activation checkpointing
on for both. Prints tokens/s, the
padding fraction of each layout and the ratio (target packed >= 1.5x).

    python benchmarks/packing.py [--repeats 1]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, Qwen3Config

from ovmllm.data.packing import block_causal_mask, collate, pack
from train.modules import enable_activation_checkpointing

from mixes import sample_mix  # benchmarks/ is the script's folder

VOCAB = 8192


def step(model, ids, labels, position_ids, attention_mask) -> None:
    embeds = model.get_input_embeddings()(ids)
    logits = model(
        inputs_embeds=embeds, attention_mask=attention_mask, position_ids=position_ids
    ).logits
    loss = F.cross_entropy(
        logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=-100
    )
    loss.backward()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--max-length", type=int, default=4096)
    args = parser.parse_args()
    torch.manual_seed(0)
    config = Qwen3Config(
        vocab_size=VOCAB,
        hidden_size=512,
        intermediate_size=1536,
        num_hidden_layers=8,
        num_attention_heads=8,
        num_key_value_heads=4,
        head_dim=64,
    )
    model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa")
    # Masked SDPA on CPU keeps [heads, L, L] probabilities per layer for backward: recompute them
    # per layer (both layouts alike) so the step fits in a 24 GB machine.
    enable_activation_checkpointing(model)
    model.train()
    gen = torch.Generator().manual_seed(0)
    samples = []
    for visual, text in sample_mix(gen):
        ids = torch.randint(0, VOCAB, (visual + text,), generator=gen).tolist()
        labels = [-100] * visual + ids[visual:]  # text supervised, visual not
        samples.append((ids, labels))
    real = sum(len(ids) for ids, _ in samples)

    padded = collate([[s] for s in samples], pad_id=0)
    pad_mask = (padded["segment_ids"] > 0).long()
    groups = pack([len(ids) for ids, _ in samples], args.max_length)
    packed = collate([[samples[i] for i in g] for g in groups], pad_id=0)
    packed_mask = block_causal_mask(packed["segment_ids"])

    timings = {"padded": [], "packed": []}
    for _ in range(args.repeats):  # interleaved
        start = time.perf_counter()
        step(model, padded["input_ids"], padded["labels"], padded["position_ids"], pad_mask)
        timings["padded"].append(time.perf_counter() - start)
        model.zero_grad()
        start = time.perf_counter()
        step(model, packed["input_ids"], packed["labels"], packed["position_ids"], packed_mask)
        timings["packed"].append(time.perf_counter() - start)
        model.zero_grad()
    print(f"Qwen3-arch LLM (hidden 512, 8 layers), 16 samples, {real} real tokens, fp32 CPU")
    rates = {}
    for name, batch in (("padded", padded), ("packed", packed)):
        slots = batch["input_ids"].numel()
        seconds = min(timings[name])
        rates[name] = real / seconds
        shape = str(tuple(batch["input_ids"].shape))
        print(f"  {name:7s} {shape:14s} padding {1 - real / slots:6.1%}  "
              f"{seconds:7.2f} s/step  {rates[name]:8.0f} tokens/s")  # fmt: skip
    print(f"packed / padded tokens/s: {rates['packed'] / rates['padded']:.2f}x")


if __name__ == "__main__":
    main()
