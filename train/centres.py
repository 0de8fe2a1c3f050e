"""Class centres of the cluster-discrimination heads, sharded across ranks (PAPER.md section 4).

Encoder pretraining scores every sample against millions of class centres (2M image clusters,
400k video clusters, 365,187 OCR word classes), so no rank holds a whole bank: rank r of W owns
the contiguous block `shard_range(num_classes, r, W)` of every head's classes (the first
`num_classes % W` ranks one class more, the layout of Partial FC implementations). The loss
(`train/cluster_loss.py`) scores the global batch against each rank's own block and combines
the ranks with a distributed softmax, so a rank's centre gradient is already the whole gradient
of its block.

That is why the centres must stay out of data-parallel gradient averaging: a `CentreBank` is a
module of its own, never registered under the encoder (so never inside a DDP wrapper or a
DeepSpeed engine), and it has its own optimizer (`build_centre_optimizer`) that steps on local
gradients only. A DDP/ZeRO averaging of the centre shards would mix different classes' rows.
With DeepSpeed: give `deepspeed.initialize` the encoder alone, call `engine.backward(loss)`
(its loss scaling, 1 / gradient-accumulation steps, reaches the centres too), then
`engine.step()` and, at the same accumulation boundaries, `clip_centre_gradients` and the
centre optimizer's `step()` / `zero_grad()`.

Centres start as N(0, init_std^2) (0.01, as the reference) drawn in fixed blocks of global class
ids, each block from its own seed, so a class's initial centre is the same whatever the world
size: a 2-rank run starts exactly where a 1-rank run does, and a shard is reproducible alone.

A rank saves and loads its own shard (and the optimizer state of it) with
`save_centre_shard` / `load_centre_shard`: one safetensors file per rank whose metadata records
the layout, so loading into a different layout (world size, rank, class count, width) fails
loudly instead of mixing classes. Re-sharding to another world size is not offered.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, safe_open, save_file
from torch import nn

from encoder.files import atomic_file

INIT_BLOCK = 65_536  # global classes per initialisation seed (independent of the world size)


def derive_seed(*keys: int) -> int:
    """A 64-bit seed that is a pure, well-mixed function of non-negative integer keys (numpy's
    SeedSequence hashing), so streams keyed by (seed, step, head, rank, ...) never overlap and a
    resumed run replays them exactly without saving any generator state."""
    words = np.random.SeedSequence([int(k) for k in keys]).generate_state(2, dtype=np.uint32)
    return (int(words[0]) << 32) | int(words[1])


def keyed_generator(*keys: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A fresh torch generator seeded by `derive_seed(*keys)`; never touches the global RNG."""
    generator = torch.Generator(device=device)
    generator.manual_seed(derive_seed(*keys))
    return generator


def name_key(name: str) -> int:
    """A stable integer for a head name (CRC-32), used as a seed key so that adding or
    reordering heads does not change another head's random streams."""
    return zlib.crc32(name.encode("utf-8"))


def shard_range(num_classes: int, rank: int, world_size: int) -> tuple[int, int]:
    """(first class id, number of classes) of `rank`'s contiguous block of `num_classes`."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in a world of size {world_size}")
    if num_classes < world_size:
        raise ValueError(f"{num_classes} classes cannot be sharded over {world_size} ranks")
    base, extra = divmod(num_classes, world_size)
    return base * rank + min(rank, extra), base + int(rank < extra)


class CentreBank(nn.Module):
    """One head's shard of class centres: `weight` is [num_local, dim], row i the centre of
    global class `start + i`. Kept apart from the encoder (see the module docstring)."""

    def __init__(
        self,
        num_classes: int,
        dim: int,
        *,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        init_std: float = 0.01,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        if dim < 1:
            raise ValueError(f"centre width must be positive, got {dim}")
        self.num_classes, self.dim, self.rank, self.world_size = num_classes, dim, rank, world_size
        self.start, self.num_local = shard_range(num_classes, rank, world_size)
        self.seed, self.init_std = seed, init_std
        self.weight = nn.Parameter(torch.empty(self.num_local, dim, device=device))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """N(0, init_std^2) per global block of INIT_BLOCK classes, each from its own seed: the
        rows of a class do not depend on how the classes are sharded."""
        end = self.start + self.num_local
        for block in range(self.start // INIT_BLOCK, (end - 1) // INIT_BLOCK + 1):
            lo = block * INIT_BLOCK
            rows = min(INIT_BLOCK, self.num_classes - lo)
            values = torch.randn(rows, self.dim, generator=keyed_generator(self.seed, block))
            a, b = max(lo, self.start), min(lo + rows, end)
            self.weight[a - self.start : b - self.start] = values[a - lo : b - lo] * self.init_std

    def layout(self) -> dict[str, int]:
        """What a saved shard must match to be loaded into this bank."""
        names = ("num_classes", "dim", "rank", "world_size", "start", "num_local")
        return {name: getattr(self, name) for name in names}

    def get_extra_state(self) -> dict[str, int]:
        return self.layout()

    def set_extra_state(self, state: dict[str, int]) -> None:
        if state != self.layout():
            raise ValueError(f"centre shard laid out as {state} cannot load into {self.layout()}")

    def extra_repr(self) -> str:
        return (f"classes {self.start}..{self.start + self.num_local - 1} of {self.num_classes}, "
                f"dim {self.dim}, rank {self.rank}/{self.world_size}")  # fmt: skip


def build_centre_banks(
    heads: Mapping[str, int],
    dim: int,
    *,
    rank: int = 0,
    world_size: int = 1,
    seed: int = 0,
    init_std: float = 0.01,
    device: torch.device | str | None = None,
) -> nn.ModuleDict:
    """One `CentreBank` per data-type head (`{"image": 2_000_000, ...}` → class counts); each
    head's initial centres come from (seed, head name), so heads differ from one another."""
    return nn.ModuleDict({
        name: CentreBank(num, dim, rank=rank, world_size=world_size, init_std=init_std,
                         seed=derive_seed(seed, name_key(name)), device=device)
        for name, num in heads.items()
    })  # fmt: skip


def build_centre_optimizer(
    banks: Mapping[str, CentreBank],
    lr: float,
    weight_decay: float,
    lr_scales: Mapping[str, float] | None = None,
    betas: tuple[float, float] = (0.9, 0.999),
) -> torch.optim.AdamW:
    """The centres' own AdamW (the reference trains them with the encoder's AdamW, at the base
    rate times a per-head scale and their own weight decay): one param group per head, named by
    `head`, so a scheduler can drive it like the encoder's. It steps each rank's shard on that
    rank's gradient: nothing here is averaged across ranks. The fused implementation: one pass
    over the shard, no temporaries (5x faster than the default one on a 1M x 256 CPU shard)."""
    scales = dict(lr_scales or {})
    unknown = sorted(set(scales) - set(banks))
    if unknown:
        raise ValueError(f"lr_scales name unknown heads {unknown}; heads are {sorted(banks)}")
    groups = [{"params": [bank.weight], "lr": lr * scales.get(name, 1.0), "head": name}
              for name, bank in banks.items()]  # fmt: skip
    return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay, betas=betas, fused=True)


def clip_centre_gradients(banks: Mapping[str, CentreBank], max_norm: float) -> dict[str, float]:
    """Clip each head's centre gradient on this rank to `max_norm` (the reference clips every
    head module to 5 after the encoder); returns the norms before clipping. The norm is the
    shard's own, as in the reference: no all-reduce, so with clipping active runs at different
    world sizes differ slightly."""
    return {
        name: float(nn.utils.clip_grad_norm_(bank.parameters(), max_norm))
        for name, bank in banks.items()
    }


def shard_file_name(rank: int, world_size: int) -> str:
    return f"centres_rank{rank:05d}_of_{world_size:05d}.safetensors"


def _group_of(optimizer: torch.optim.Optimizer, param: torch.Tensor) -> dict:
    for group in optimizer.param_groups:
        if any(param is p for p in group["params"]):
            return group
    raise ValueError("the optimizer does not hold this centre bank's weight")


def save_centre_shard(
    path: str | Path,
    banks: Mapping[str, CentreBank],
    optimizer: torch.optim.Optimizer | None = None,
) -> Path:
    """This rank's centres (and their optimizer state) as one safetensors file, written whole
    or not at all; the metadata holds each bank's layout. Nothing is pickled."""
    tensors, layouts = {}, {}
    for name, bank in banks.items():
        layouts[name] = bank.layout()
        tensors[f"{name}/weight"] = bank.weight.detach().contiguous().cpu()
        state = {}
        if optimizer is not None:
            _group_of(optimizer, bank.weight)
            state = optimizer.state.get(bank.weight, {})
        for key, value in state.items():
            if not isinstance(value, torch.Tensor):
                raise TypeError(f"optimizer state {key!r} of head {name!r} is not a tensor")
            tensors[f"{name}/optim/{key}"] = value.detach().contiguous().cpu()
    with atomic_file(path) as tmp:
        save_file(tensors, str(tmp), metadata={"layouts": json.dumps(layouts)})
    return Path(path)


def load_centre_shard(
    path: str | Path,
    banks: Mapping[str, CentreBank],
    optimizer: torch.optim.Optimizer | None = None,
) -> None:
    """Restore what `save_centre_shard` wrote into banks (and optimizer) of the same layout;
    raises ValueError naming the head when the heads or a layout differ."""
    with safe_open(str(path), framework="pt") as f:
        layouts = json.loads(f.metadata()["layouts"])
    if sorted(layouts) != sorted(banks):
        raise ValueError(f"{path} holds heads {sorted(layouts)}, the run has {sorted(banks)}")
    for name, bank in banks.items():
        if layouts[name] != bank.layout():
            raise ValueError(f"{path}: head {name!r} was saved as {layouts[name]}, "
                             f"the run lays it out as {bank.layout()}")  # fmt: skip
    tensors = load_file(str(path))
    for name, bank in banks.items():
        with torch.no_grad():
            bank.weight.copy_(tensors[f"{name}/weight"])
        if optimizer is None:
            continue
        prefix = f"{name}/optim/"
        state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        group = _group_of(optimizer, bank.weight)
        on_device = group.get("fused") or group.get("capturable")
        restored = {}
        for key, value in state.items():
            # as torch's own loading: `step` stays on the CPU unless fused or capturable
            keep = key == "step" and not on_device
            restored[key] = value if keep else value.to(bank.weight.device)
        optimizer.state[bank.weight] = restored
