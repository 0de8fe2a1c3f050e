"""Bidirectional attention over packed items: tokens attend only within their own item.

Never an N_total x N_total mask: items of equal length run as one batched SDPA call; otherwise
flash-attention's varlen kernel on GPU when it is installed, PyTorch's varlen kernel on GPU for
half precision, else one SDPA call per item (the CPU path).
"""

from __future__ import annotations

import inspect
import itertools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

try:  # optional GPU kernel
    from flash_attn import flash_attn_varlen_func
except ImportError:  # pragma: no cover - not installed on CPU machines
    flash_attn_varlen_func = None

try:
    from torch.nn.attention.varlen import varlen_attn
except ImportError:  # pragma: no cover - older torch
    varlen_attn = None

# an older torch's varlen_attn has no `scale` (it always uses head_dim ** -0.5); 2.13's has
VARLEN_TAKES_SCALE = (
    varlen_attn is not None and "scale" in inspect.signature(varlen_attn).parameters
)


@dataclass(frozen=True)
class PackedSequences:
    """Item boundaries of a packed batch, as a tensor for kernels and Python ints for loops.

    Built once per forward (one device sync), then shared by every layer.
    """

    cu_seqlens: torch.Tensor  # [B + 1] int32
    bounds: tuple[int, ...]  # the same as Python ints

    @classmethod
    def from_cu_seqlens(cls, cu_seqlens: torch.Tensor) -> PackedSequences:
        bounds = tuple(int(b) for b in cu_seqlens.tolist())
        return cls(cu_seqlens.to(torch.int32), bounds)

    @classmethod
    def uniform(cls, batch: int, length: int, device: torch.device) -> PackedSequences:
        cu = torch.arange(batch + 1, device=device, dtype=torch.int32) * length
        return cls(cu, tuple(i * length for i in range(batch + 1)))

    @property
    def lengths(self) -> list[int]:
        return [b - a for a, b in zip(self.bounds[:-1], self.bounds[1:], strict=True)]

    @property
    def max_length(self) -> int:
        return max(self.lengths, default=0)

    @property
    def equal_lengths(self) -> bool:
        return len(set(self.lengths)) <= 1


def packed_kernel(q: torch.Tensor, seqs: PackedSequences, scale: float | None = None) -> str:
    """Which kernel `packed_attention` runs for these queries [N, heads, head_dim] and items:
    batched_sdpa | flash_attn_varlen | torch_varlen | per_item_sdpa (`scale` None: the default
    head_dim ** -0.5)."""
    if seqs.equal_lengths and len(seqs.lengths) > 0:
        return "batched_sdpa"
    if q.is_cuda and q.dtype in (torch.float16, torch.bfloat16):
        if flash_attn_varlen_func is not None:
            return "flash_attn_varlen"
        default_scale = scale is None or math.isclose(scale, q.shape[-1] ** -0.5)
        if varlen_attn is not None and (VARLEN_TAKES_SCALE or default_scale):
            return "torch_varlen"
    return "per_item_sdpa"


def packed_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, seqs: PackedSequences, scale: float
) -> torch.Tensor:
    """q, k, v [N, heads, head_dim] → [N, heads, head_dim], attention inside each item."""
    n, heads, dim = q.shape
    kernel = packed_kernel(q, seqs, scale)
    if kernel == "batched_sdpa":
        batch = len(seqs.lengths)
        shape = (batch, n // batch, heads, dim)
        qb, kb, vb = (x.reshape(shape).transpose(1, 2) for x in (q, k, v))
        out = F.scaled_dot_product_attention(qb, kb, vb, scale=scale)
        return out.transpose(1, 2).reshape(n, heads, dim)
    cu, max_len = seqs.cu_seqlens, seqs.max_length
    if kernel == "flash_attn_varlen":
        return flash_attn_varlen_func(q, k, v, cu, cu, max_len, max_len, softmax_scale=scale)
    if kernel == "torch_varlen":
        extra = {"scale": scale} if VARLEN_TAKES_SCALE else {}  # else the default: checked above
        return varlen_attn(q, k, v, cu, cu, max_len, max_len, **extra)
    out = torch.empty_like(q)
    for a, b in itertools.pairwise(seqs.bounds):
        if b > a:
            # 4-D [1, heads, n, dim]: given 3-D, CPU SDPA falls back to its math kernel (~5x slower)
            qi, ki, vi = (x[a:b].transpose(0, 1)[None] for x in (q, k, v))
            out[a:b] = F.scaled_dot_product_attention(qi, ki, vi, scale=scale)[0].transpose(0, 1)
    return out
