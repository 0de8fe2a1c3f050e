"""One training stage, top to bottom: load → freeze → data → engine → (resume) → loop → save.

The loss of a step is the token-level mean over the global batch: each rank counts the
supervised tokens of its micro-batches, one all-reduce gives the global count N, and every
micro-batch back-propagates `loss_sum x world_size / N` (DeepSpeed averages gradients over
ranks; accumulation is not rescaled). Long and short samples thus weigh per token, whatever
rank or micro-batch they land in.
"""

from __future__ import annotations

import functools
import json
import math
import random
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from ovmllm.build import ModelConfig, build_model
from ovmllm.config import load_config, write_config
from ovmllm.data.dataset import MixtureDataset, Rejections
from ovmllm.data.mixture import MixtureConfig, SourceConfig
from ovmllm.model import OVMLLMForCausalLM
from train.checkpoint import (
    complete_checkpoints,
    find_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from train.config import StageConfig
from train.data import StepBatch, StepBatches
from train.engine import Dist, deepspeed_config, init_distributed, lr_multiplier
from train.export import export_model
from train.heldout import loss_sums
from train.lora import apply_lora
from train.metrics import RunLogger
from train.modules import apply_trainability, optimizer_groups

SUMMARY_FILE = "summary.json"


def resolve_init(init_from: str) -> Path:
    """An `ovmllm init` folder, or a stage's output folder (meaning its export)."""
    folder = Path(init_from)
    if (folder / "export" / "config.json").is_file():
        folder = folder / "export"
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"init_from={init_from}: no model there (config.json) nor in its export/ "
            "(run the previous stage first)"
        )
    return folder


def load_model(cfg: StageConfig) -> OVMLLMForCausalLM:
    overrides = [*cfg.processor_overrides, f"chat.max_length={cfg.max_length}"]
    if cfg.init_from:
        model = OVMLLMForCausalLM.from_pretrained(
            resolve_init(cfg.init_from), processor_overrides=overrides
        )
        if model.processor is None:
            raise FileNotFoundError(f"init_from={cfg.init_from}: the folder has no processor")
        return model
    return build_model(load_config(ModelConfig, None, overrides, base=asdict(cfg.model)))


def freeze(model: OVMLLMForCausalLM, cfg: StageConfig) -> dict[str, int]:
    """Trainability per part, the tower's unused modules frozen, LoRA adapters; returns the
    trainable parameter count per part."""
    apply_trainability(model, cfg.trainability)
    apply_lora(model, cfg.lora)
    for module in model.tower.unused_modules():  # their LoRA adapters included
        module.requires_grad_(False)
    return {
        name: sum(p.numel() for p in getattr(model, name).parameters() if p.requires_grad)
        for name in ("tower", "connector", "llm")
    }


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _all_reduce(values: list[float], device: torch.device) -> list[float]:
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    torch.distributed.all_reduce(tensor)
    return tensor.tolist()


def train_step(engine, step: StepBatch, tower_sizes: list[int], dist: Dist) -> dict:
    """One optimizer step over this rank's micro-batches; returns global loss and counts."""
    local = [
        sum(mb.num_supervised for mb in step.micro_batches),
        sum(mb.num_tokens for mb in step.micro_batches),
        sum(len(mb.sample_ids) for mb in step.micro_batches),
        len(step.rejected),
    ]
    supervised, tokens, samples, rejected = _all_reduce(local, dist.device)
    if supervised == 0:  # nothing to learn from: no AdamW update (the scheduler resets lr after)
        for group in engine.optimizer.param_groups:
            group["lr"] = 0.0
    loss_sum = torch.zeros((), dtype=torch.float64, device=dist.device)
    for micro in step.micro_batches:
        out = engine(**micro.model_inputs(dist.device), tower_sizes=tower_sizes)
        engine.backward(out.loss_sum * dist.world_size / max(supervised, 1.0), scale_wrt_gas=False)
        engine.step()
        loss_sum += out.loss_sum.detach().double()
    (total,) = _all_reduce([float(loss_sum)], dist.device)
    return {"loss": total / max(supervised, 1.0), "supervised": supervised, "tokens": tokens,
            "samples": samples, "rejected": rejected}  # fmt: skip


def evaluate(engine, dataset: MixtureDataset, cfg: StageConfig, tower_sizes, dist: Dist) -> float:
    """Held-out token-mean loss, the ranks sharing the samples."""
    engine.eval()
    sums = loss_sums(
        engine, dataset, cfg.max_length, tower_sizes, dist.device, dist.rank, dist.world_size
    )
    engine.train()
    loss_sum, tokens = _all_reduce(list(sums), dist.device)
    return loss_sum / max(tokens, 1.0)


def _identity(x):
    return x


def train(cfg: StageConfig) -> dict:
    dist = init_distributed()
    import deepspeed  # after init_distributed chose the accelerator

    out = Path(cfg.output_dir)
    if dist.is_main:
        config_file = write_config(cfg, out / "stage_config.yaml")
    config_files = {"stage_config.yaml": config_file.read_text()} if dist.is_main else {}
    seed_everything(cfg.seed)  # the same initial weights on every rank

    # 1. load, 2. freeze
    model = load_model(cfg)
    trainable = freeze(model, cfg)
    if cfg.gradient_checkpointing:
        model.activation_checkpointing_enable({"use_reentrant": False})
    tower_sizes = model.processor.patch_sizes()
    seed_everything(cfg.seed + dist.rank)  # own dropout masks per rank

    # 3. data
    dataset = MixtureDataset(cfg.data, model.processor)
    heldout = None
    if cfg.eval_data:
        source = SourceConfig(name="eval", data=cfg.eval_data, root=cfg.eval_root)
        heldout = MixtureDataset(MixtureConfig([source]), model.processor)
    global_batch = cfg.batch_size * cfg.grad_accum * dist.world_size
    epoch_size = len(dataset.order(0))
    # a partial last global batch is dropped (ceil would read into the next epoch's order)
    total_steps = cfg.max_steps or max(1, math.floor(cfg.epochs * epoch_size / global_batch))

    # 4. engine
    optimizer = torch.optim.AdamW(optimizer_groups(model, cfg.trainability))
    multiplier = lr_multiplier(cfg, total_steps)
    engine, _, _, _ = deepspeed.initialize(
        model=model,
        optimizer=optimizer,
        lr_scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, multiplier),
        config=deepspeed_config(cfg, dist.world_size),
    )

    # 5. resume
    state = {"step": 0, "position": 0, "tokens": 0, "rejected": {}, "rejected_ids": {}}
    loaded_step = -1
    checkpoints = out / "checkpoints"
    save = functools.partial(  # collective: (step, state) → the complete checkpoint folder
        save_checkpoint, engine, checkpoints, rank=dist.rank, keep=cfg.keep_checkpoints,
        files=config_files,
    )  # fmt: skip
    checkpoint = find_checkpoint(cfg.resume, checkpoints)
    if checkpoint is None and complete_checkpoints(checkpoints):
        raise FileExistsError(
            f"{checkpoints} holds checkpoints of an earlier run: resume=auto continues it; "
            "otherwise choose another output_dir or delete them"
        )
    batch_geometry = {"world_size": dist.world_size, "batch_size": cfg.batch_size,
                      "grad_accum": cfg.grad_accum}  # fmt: skip
    if checkpoint is not None:
        state = load_checkpoint(engine, checkpoint, dist.rank)
        loaded_step = state["step"]
        saved_geometry = {k: state.get(k) for k in batch_geometry}
        if saved_geometry != batch_geometry:
            raise ValueError(
                f"{checkpoint} was saved with {saved_geometry}, this run has {batch_geometry}: "
                "steps, schedule and ZeRO shards would not line up"
            )
    rejections = Rejections()
    rejections.counts.update(state["rejected"])
    rejections.ids.update(state["rejected_ids"])
    start_step = state["step"]

    # 6. loop
    batches = StepBatches(
        dataset, state["position"], cfg.batch_size, cfg.grad_accum, cfg.max_length,
        max(0, total_steps - start_step), dist.rank, dist.world_size,
    )  # fmt: skip
    loader = torch.utils.data.DataLoader(
        batches,
        batch_size=None,
        num_workers=cfg.num_workers,
        collate_fn=_identity,
        # its own generator: drawing worker seeds from the global one would shift the restored
        # RNG stream (dropout) of a resumed run
        generator=torch.Generator().manual_seed(cfg.seed),
    )
    logger = RunLogger(cfg, total_steps, start_step, dist.is_main)
    logger.note(
        f"{cfg.name}: {total_steps} steps x {global_batch} samples on {dist.world_size} rank(s), "
        f"trainable {trainable}, from step {start_step}"
        + (f" ({checkpoint})" if checkpoint else "")
    )
    engine.train()
    tokens, last_loss, started = state["tokens"], float("nan"), time.perf_counter()
    for step_batch in loader:
        step = start_step + step_batch.step + 1
        lrs = {g.get("name", str(i)): g["lr"] for i, g in enumerate(engine.optimizer.param_groups)}
        tick = time.perf_counter()
        result = train_step(engine, step_batch, tower_sizes, dist)
        seconds = time.perf_counter() - tick
        tokens += int(result["tokens"])
        last_loss = result["loss"]
        if result["supervised"] == 0:
            logger.note(f"step {step}: no supervised token in the global batch (all rejected?)")
        # the ids of rejected rows travel only in steps that have some (the count is reduced)
        for rank_rejected in _gather(step_batch.rejected, dist) if result["rejected"] else ():
            for item in rank_rejected:
                rejections.add(item.reason, item.id, keep_ids=100)
                logger.rejected(step, item.position, item.id, item.reason)
        evaluated = {}
        if heldout is not None and (
            step == total_steps or (cfg.eval_every and step % cfg.eval_every == 0)
        ):
            evaluated["heldout_loss"] = evaluate(engine, heldout, cfg, tower_sizes, dist)
        if step % cfg.log_every == 0 or step == total_steps or evaluated:
            counts = {k: int(result[k]) for k in ("tokens", "supervised", "samples")}
            logger.log(
                {"step": step, "loss": last_loss, "lr": lrs, **counts,
                 "tokens_per_s": result["tokens"] / seconds, "step_s": seconds,
                 "tokens_seen": tokens, "rejected": sum(rejections.counts.values()),
                 **evaluated}
            )  # fmt: skip
        state = {
            **batch_geometry,
            "step": step,
            "position": batches.position_after(step_batch.step + 1),
            "tokens": tokens,
            "loss": last_loss,
            "rejected": dict(rejections.counts),
            "rejected_ids": rejections.ids,
        }
        if cfg.stop_after and step - start_step >= cfg.stop_after and step < total_steps:
            break
        if cfg.save_every and step % cfg.save_every == 0 and step < total_steps:
            save(step, state)

    # 7. save: the last checkpoint (resumable) and the HF export
    # nothing to save when nothing trained since the checkpoint the run resumed from
    last = checkpoint if state["step"] == loaded_step else save(state["step"], state)
    finished = state["step"] >= total_steps
    if finished:
        export_model(engine, model, cfg, out / "export")
    logger.close()
    summary = {
        "stage": cfg.name,
        "steps": state["step"],
        "total_steps": total_steps,
        "final_loss": state.get("loss", last_loss),
        "tokens_seen": tokens,
        "train_seconds": round(time.perf_counter() - started, 2),
        "world_size": dist.world_size,
        "trainable_parameters": trainable,
        "rejected": dict(rejections.counts),
        "rejected_ids": rejections.ids,
        "checkpoint": str(last),
        "export": str(out / "export") if finished else None,
    }
    if dist.is_main:
        (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=1))
    return summary


def _gather(items: list, dist: Dist) -> list[list]:
    if dist.world_size == 1:
        return [items]
    gathered: list = [None] * dist.world_size
    torch.distributed.all_gather_object(gathered, items)
    return gathered
