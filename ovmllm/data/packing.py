"""Packing: several samples per sequence, each with its own positions and attention block.

`pack` is a deterministic function of the sample lengths in order (greedy, next-fit), so the
packing of an epoch follows from the mixture order alone. The collator resets positions per
sample and returns segment ids; the model turns them into a block-diagonal causal mask (one
[L, L] block matrix per packed sequence): boolean for SDPA, additive (0 / the dtype's minimum)
for eager attention, which adds the mask to the scores, and a block-sparse `BlockMask` for
flex_attention, which skips the blocks no sample reaches instead of reading an [L, L] mask.
"""

from __future__ import annotations

import torch

from ovmllm.chat_processor import IGNORE_INDEX


def pack(lengths: list[int], max_length: int) -> list[list[int]]:
    """Group consecutive samples (by index) into sequences of at most max_length tokens."""
    groups, current, used = [], [], 0
    for i, n in enumerate(lengths):
        if n > max_length:
            raise ValueError(f"sample {i} has {n} tokens > max_length {max_length}")
        if current and used + n > max_length:
            groups.append(current)
            current, used = [], 0
        current.append(i)
        used += n
    if current:
        groups.append(current)
    return groups


def collate(
    samples: list[list[tuple[list[int], list[int]]]], pad_id: int
) -> dict[str, torch.Tensor]:
    """samples[b] = the (input_ids, labels) packed into sequence b → padded batch tensors with
    position_ids reset per sample and segment_ids (0 = padding, 1.. = sample within sequence)."""
    length = max(sum(len(ids) for ids, _ in seq) for seq in samples)
    batch = len(samples)
    input_ids = torch.full((batch, length), pad_id, dtype=torch.long)
    labels = torch.full((batch, length), IGNORE_INDEX, dtype=torch.long)
    position_ids = torch.zeros((batch, length), dtype=torch.long)
    segment_ids = torch.zeros((batch, length), dtype=torch.long)
    for b, seq in enumerate(samples):
        start = 0
        for k, (ids, labs) in enumerate(seq, 1):
            end = start + len(ids)
            input_ids[b, start:end] = torch.tensor(ids)
            labels[b, start:end] = torch.tensor(labs)
            position_ids[b, start:end] = torch.arange(len(ids))
            segment_ids[b, start:end] = k
            start = end
    return {
        "input_ids": input_ids,
        "labels": labels,
        "position_ids": position_ids,
        "segment_ids": segment_ids,
    }


def block_causal_mask(segment_ids: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """[B, L] segment ids → [B, 1, L, L]: attend causally within the same sample only.

    Boolean (True = attend) by default; with `dtype`, the additive form in that dtype: 0 where
    attended, the dtype's minimum where blocked (for kernels that add the mask to the scores)."""
    same = segment_ids[:, :, None] == segment_ids[:, None, :]
    causal = torch.ones(
        segment_ids.shape[1], segment_ids.shape[1], dtype=torch.bool, device=segment_ids.device
    ).tril()
    valid = (segment_ids > 0)[:, :, None]
    # padding queries may attend anywhere (their outputs are never read): no empty softmax rows
    allowed = (same & causal & valid)[:, None] | ~valid[:, None]
    if dtype is None:
        return allowed
    blocked = torch.full(allowed.shape, torch.finfo(dtype).min, dtype=dtype, device=allowed.device)
    return blocked.masked_fill_(allowed, 0)


def flex_block_mask(segment_ids: torch.Tensor):
    """[B, L] segment ids → a flex_attention `BlockMask` with the same rule as
    `block_causal_mask` (causal inside each sample; padding queries attend anywhere)."""
    from torch.nn.attention.flex_attention import create_block_mask

    def allowed(batch, head, query, key):
        query_segment = segment_ids[batch, query]
        same = query_segment == segment_ids[batch, key]
        return (same & (query >= key) & (query_segment > 0)) | (query_segment == 0)

    batch, length = segment_ids.shape
    return create_block_mask(allowed, batch, None, length, length, device=segment_ids.device)
