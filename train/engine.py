"""DeepSpeed: the process group, the engine config (ZeRO JSON + the stage's values for its
`"auto"` keys), the client optimiser and the lr schedule.

On a machine without CUDA, DeepSpeed runs on its CPU accelerator with the gloo backend (a real
engine: ZeRO-2/3 partitioning, its own checkpoint format). The optimiser is always a client
`torch.optim.AdamW` with one group per trainable part (train/modules.py), so no DeepSpeed op is
JIT-compiled and per-part learning rates are plain parameter groups.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from train.config import SCHEDULES, StageConfig


@dataclass
class Dist:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed() -> Dist:
    """Join the process group a launcher (torchrun, deepspeed) describes in the environment, or
    form a group of one (an in-memory store: no address, no port) when started directly.

    DeepSpeed's engine reads LOCAL_RANK from the environment even for one process; the command
    line sets it once, with DeepSpeed's accelerator (ovmllm.commands.train.prepare_process).
    """
    if "LOCAL_RANK" not in os.environ:
        raise RuntimeError(
            "LOCAL_RANK is unset, and DeepSpeed reads it: start through a launcher or "
            "`ovmllm train`, or call ovmllm.commands.train.prepare_process() first"
        )
    cuda = torch.cuda.is_available()
    backend = "nccl" if cuda else "gloo"
    if not torch.distributed.is_initialized():
        if "RANK" in os.environ:  # a launcher's group
            import deepspeed

            deepspeed.init_distributed(dist_backend=backend, verbose=False)
        else:
            store = torch.distributed.HashStore()
            torch.distributed.init_process_group(backend, store=store, rank=0, world_size=1)
    local_rank = int(os.environ["LOCAL_RANK"])
    if cuda:
        torch.cuda.set_device(local_rank)
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    rank, world_size = torch.distributed.get_rank(), torch.distributed.get_world_size()
    return Dist(rank, world_size, local_rank, device)


def gather_objects(items: list) -> list[list]:
    """Collective: every rank's `items`, in rank order (`[items]` without a group of several)."""
    if not torch.distributed.is_initialized() or torch.distributed.get_world_size() == 1:
        return [items]
    gathered: list = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(gathered, items)
    return gathered


def deepspeed_config(cfg: StageConfig, world_size: int) -> dict:
    """The DeepSpeed JSON with every `"auto"` filled from the stage config."""
    path = Path(cfg.deepspeed)
    if not path.is_file():
        raise FileNotFoundError(f"DeepSpeed config not found: {path}")
    ds = json.loads(path.read_text())
    filled = {
        "train_micro_batch_size_per_gpu": cfg.batch_size,
        "gradient_accumulation_steps": cfg.grad_accum,
        "train_batch_size": cfg.batch_size * cfg.grad_accum * world_size,
        "gradient_clipping": cfg.max_grad_norm,
    }
    for key, value in filled.items():
        if ds.get(key, "auto") != "auto" and ds[key] != value:
            raise ValueError(f"{path}: {key}={ds[key]} conflicts with the stage's {value}")
        ds[key] = value
    bf16 = cfg.precision == "bf16"
    if ds.get("bf16", {}).get("enabled", "auto") not in ("auto", bf16):
        raise ValueError(f"{path}: bf16.enabled conflicts with precision={cfg.precision}")
    if ds.get("fp16", {}).get("enabled", False) not in (False, "auto"):
        raise ValueError(f"{path}: fp16 is not supported; the stage's precision is bf16 or fp32")
    ds["bf16"] = {**ds.get("bf16", {}), "enabled": bf16}
    ds.setdefault("zero_allow_untested_optimizer", True)  # the client torch AdamW
    ds.setdefault("steps_per_print", 10**9)  # progress is ours
    left = [key for key, value in _walk(ds) if value == "auto"]
    if left:
        raise ValueError(f"{path}: no stage value for the auto key(s) {left}")
    return ds


def _walk(tree: dict, prefix: str = ""):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _walk(value, f"{prefix}{key}.")
        else:
            yield prefix + key, value


def lr_multiplier(cfg: StageConfig, total_steps: int):
    """step → factor on each group's configured lr: linear warmup, then cosine / linear decay
    to min_lr_ratio, or constant."""
    sched = cfg.schedule
    shape = SCHEDULES[sched.name]
    warmup = sched.warmup_steps or math.ceil(sched.warmup_ratio * total_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return sched.min_lr_ratio + (1 - sched.min_lr_ratio) * shape(progress)

    return factor
