"""The vision-tower interface: packed visual tokens in, per-item features out (DESIGN.md).

A tower owns everything model-specific after the producers: resizing each patch cell to its
own patch size (per cell, so neighbours never bleed), normalising with its own mean/std,
converting to its model's input layout, and how many output tokens an item yields. That count
lives on `TowerSpec`, a small frozen description that needs no model, so dataloader workers and
the processor can call it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from encoder.packed import PackedVisualTokens

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
HALF = (0.5, 0.5, 0.5)


@dataclass
class TowerConfig:
    """Which tower, and where its weights come from (random init when `path` is empty)."""

    name: str = "onevision"
    """A key of `encoder.towers.TOWERS`: onevision | siglip2 | qwen3_vit."""
    size: str = "tiny"
    """Random-init size (onevision: tiny | base | large | huge; the others: tiny)."""
    path: str = ""
    """A `from_pretrained` folder; empty for random init."""
    select_layer: int = -2
    """Hidden state handed to the LLM, counted from the end when negative (onevision, siglip2;
    siglip2's -1 is its post-norm output)."""


@dataclass(frozen=True)
class TowerSpec:
    """What a tower expects and produces, without the model."""

    name: str
    patch_size: int
    output_width: int
    kinds: frozenset[str]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    frame_size: int
    """Side in px of a uniform video frame when the media config sets no frame_size: the
    resolution the paper fed this tower's frames at (PAPER.md section 1)."""
    spatial_merge: int = 1
    """The tower merges each spatial_merge x spatial_merge window of patches into one token."""
    temporal_patch: int = 1
    """Frames per temporal token."""
    lora_targets: tuple[str, ...] = ()
    """Linear layers LoRA adapts by default, named inside a block (module name suffixes): the
    attention and MLP projections, each of which every block of `lora_blocks` has."""
    lora_blocks: str = ""
    """The tower's list of transformer blocks (a module path in the tower); LoRA adapts the
    blocks the features reach (not those in `unused_modules`)."""

    def check_item(self, kind: str, length: int, grid: tuple[int, int, int] | None) -> None:
        if kind not in self.kinds:
            raise ValueError(
                f"tower {self.name} does not accept {kind!r} items (only {sorted(self.kinds)})"
            )
        if kind != "codec" and grid is None:
            raise ValueError(f"tower {self.name}: a {kind!r} item needs its grid")
        if grid is not None and self.spatial_merge > 1:
            _, h, w = grid
            if h % self.spatial_merge or w % self.spatial_merge:
                raise ValueError(
                    f"tower {self.name}: grid {grid} is not divisible by its {self.spatial_merge}x"
                    f"{self.spatial_merge} merge"
                )

    def num_output_tokens(self, kind: str, length: int, grid: tuple[int, int, int] | None) -> int:
        """Output tokens of one item: a pure function of the spec and the item's metadata."""
        self.check_item(kind, length, grid)
        if grid is None:
            return length
        t, h, w = grid
        frames = -(-t // self.temporal_patch)
        return frames * (h // self.spatial_merge) * (w // self.spatial_merge)


@dataclass
class TowerOutput:
    features: torch.Tensor  # [N_out, output_width], items concatenated
    cu_seqlens: torch.Tensor  # [B + 1] int32 item boundaries in `features`


def normalised_cells(
    tokens: PackedVisualTokens, spec: TowerSpec, dtype: torch.dtype
) -> torch.Tensor:
    """uint8 [N, 3, p_in, p_in] → float [N, 3, p, p] at the tower's patch size, normalised.

    Each cell is resized on its own (bicubic, antialiased when shrinking), so pixels of
    neighbouring cells never mix.
    """
    cells = tokens.patches.to(torch.float32) / 255.0
    p = spec.patch_size
    if cells.shape[-1] != p:
        cells = F.interpolate(
            cells, size=(p, p), mode="bicubic", antialias=True, align_corners=False
        )
        cells = cells.clamp_(0.0, 1.0)
    mean = torch.tensor(spec.mean, device=cells.device).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, device=cells.device).view(1, 3, 1, 1)
    return ((cells - mean) / std).to(dtype)


class VisionTower(nn.Module):
    """Base class: subclasses set `spec` and `model` (the wrapped encoder, a transformers
    model) and implement `encode`."""

    spec: TowerSpec
    model: nn.Module

    def model_config(self) -> dict:
        """The encoder's own config, as `from_model_config` takes it back."""
        return self.model.config.to_dict()

    @classmethod
    def from_model_config(cls, model_config: dict, cfg: TowerConfig) -> VisionTower:
        """The tower around a freshly initialised model of the given config."""
        raise NotImplementedError(f"{cls.__name__} must build from its model config")

    def encode(self, tokens: PackedVisualTokens) -> TowerOutput:
        raise NotImplementedError(f"{type(self).__name__} must implement encode")

    def unused_modules(self) -> list[nn.Module]:
        """Sub-modules the features never pass through (blocks after the selected layer, a
        pooling head): training keeps them frozen, since a trainable parameter without a
        gradient breaks ZeRO's gradient reduction."""
        return []

    def forward(self, tokens: PackedVisualTokens) -> TowerOutput:
        for kind, grid, length in zip(tokens.kinds, tokens.grids, tokens.lengths, strict=True):
            self.spec.check_item(kind, length, grid)
        out = self.encode(tokens)
        expected = [
            self.spec.num_output_tokens(k, n, g)
            for k, n, g in zip(tokens.kinds, tokens.lengths, tokens.grids, strict=True)
        ]
        got = (out.cu_seqlens[1:] - out.cu_seqlens[:-1]).tolist()
        if got != expected:  # the processor expands placeholders from num_output_tokens
            raise RuntimeError(f"tower {self.spec.name} produced {got} tokens, declared {expected}")
        return out

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def dummy_item(self, patch_size: int = 0) -> PackedVisualTokens:
        """The smallest item this tower accepts: one image of merge x merge black patches
        (cut at `patch_size`, default the tower's own)."""
        m = self.spec.spatial_merge
        p = patch_size or self.spec.patch_size
        hh, ww = torch.meshgrid(torch.arange(m), torch.arange(m), indexing="ij")
        positions = torch.stack(
            [torch.zeros(m * m, dtype=torch.long), hh.flatten(), ww.flatten()], 1
        )
        return PackedVisualTokens(
            patches=torch.zeros(m * m, 3, p, p, dtype=torch.uint8),
            positions=positions.to(torch.int32),
            cu_seqlens=torch.tensor([0, m * m], dtype=torch.int32),
            kinds=["image"],
            grids=[(1, m, m)],
        )


def inference_device(name: str) -> tuple[torch.device, torch.dtype]:
    """Where a frozen tower runs and in which precision: `auto` is the GPU in bf16 when there
    is one, else the CPU in fp32 (bf16 matmuls are slow on CPUs)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    return device, torch.bfloat16 if device.type == "cuda" else torch.float32


def output_cu_seqlens(counts: list[int], device: torch.device) -> torch.Tensor:
    cu = torch.zeros(len(counts) + 1, dtype=torch.int32, device=device)
    cu[1:] = torch.tensor(counts, device=device).cumsum(0)
    return cu
