"""One training stage, top to bottom: load → freeze → data → engine → resume → loop → save.

The loop itself (steps, held-out loss, logging, periodic saves) is train/trainer.py; the
checkpoint policy and resume checks are train/checkpoint.py.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from encoder.files import write_text_atomic
from ovmllm.build import build_model
from ovmllm.config import apply_overrides, write_config
from ovmllm.data.dataset import MixtureDataset
from ovmllm.data.mixture import MixtureConfig, SourceConfig
from ovmllm.model import OVMLLMForCausalLM
from ovmllm.validate import check_training_setup
from train.checkpoint import BatchGeometry, Checkpointer, TrainState, find_checkpoint
from train.config import StageConfig
from train.data import StepBatches
from train.engine import deepspeed_config, init_distributed, lr_multiplier
from train.export import export_model
from train.lora import apply_lora
from train.metrics import RunLogger
from train.modules import apply_trainability, build_optimizer, enable_activation_checkpointing
from train.stopping import stop_signals
from train.trainer import Trainer
from train.uniform_calls import UniformTowerCalls

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
    """The stage's model with its processor: the stage's processor overrides (its chat limit
    being its own max_length) replace the saved or configured media / chat settings."""
    chat = replace(cfg.processor.chat, max_length=cfg.max_length)
    overrides = replace(cfg.processor, chat=chat)
    if cfg.init_from:
        model = OVMLLMForCausalLM.from_pretrained(
            resolve_init(cfg.init_from), processor_overrides=overrides
        )
        if model.processor is None:
            raise FileNotFoundError(f"init_from={cfg.init_from}: the folder has no processor")
        return model
    return build_model(apply_overrides(cfg.model, overrides))


def initial_model(cfg: StageConfig) -> OVMLLMForCausalLM:
    """The model a stage starts from, with the weights `train` starts from (a fresh model's
    random init depends on the seed, set first on every rank)."""
    seed_everything(cfg.seed)
    return load_model(cfg)


def freeze(model: OVMLLMForCausalLM, cfg: StageConfig) -> dict[str, int]:
    """Trainability per part, the tower's unused modules frozen, LoRA adapters; returns the
    trainable parameter count per part."""
    apply_trainability(model, cfg.trainability)
    apply_lora(model, cfg.lora)
    for module in model.tower.unused_modules():  # LoRA gives them no adapters (train/lora.py)
        module.requires_grad_(False)
    return {
        name: sum(p.numel() for p in getattr(model, name).parameters() if p.requires_grad)
        for name in ("tower", "connector", "llm")
    }


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _identity(x):
    return x


def train(cfg: StageConfig) -> dict:
    dist = init_distributed()
    import deepspeed  # after the command line chose the accelerator

    out = Path(cfg.output_dir)
    find_checkpoint(cfg.resume, out / "checkpoints")  # an occupied output_dir: refused untouched
    if dist.is_main:
        config_file = write_config(cfg, out / "stage_config.yaml")
    config_files = {"stage_config.yaml": config_file.read_text()} if dist.is_main else {}

    # 1. load (the same initial weights on every rank), 2. freeze
    model = initial_model(cfg)
    trainable = freeze(model, cfg)
    if cfg.gradient_checkpointing:
        enable_activation_checkpointing(model)
    seed_everything(cfg.seed + dist.rank)  # own dropout masks per rank

    # 3. data
    dataset = MixtureDataset(cfg.data, model.processor)
    heldout = None
    if cfg.eval_data:
        source = SourceConfig(name="eval", data=cfg.eval_data, root=cfg.eval_root)
        heldout = MixtureDataset(MixtureConfig([source]), model.processor)
    # media the data has and the model cannot encode: an error now, not skipped rows later
    check_training_setup(model.processor, [d for d in (dataset, heldout) if d is not None])
    global_batch = cfg.batch_size * cfg.grad_accum * dist.world_size
    epoch_size = len(dataset.order(0))
    # a partial last global batch is dropped (ceil would read into the next epoch's order)
    total_steps = cfg.max_steps or max(1, math.floor(cfg.epochs * epoch_size / global_batch))

    # 4. engine: the model wrapped so that every rank makes the same tower calls (ZeRO-3)
    optimizer = build_optimizer(model, cfg.trainability)
    multiplier = lr_multiplier(cfg, total_steps)
    engine, _, _, _ = deepspeed.initialize(
        model=UniformTowerCalls(model, model.processor.patch_sizes()),
        optimizer=optimizer,
        lr_scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, multiplier),
        config=deepspeed_config(cfg, dist.world_size),
    )

    # 5. resume
    state = TrainState(BatchGeometry(dist.world_size, cfg.batch_size, cfg.grad_accum))
    checkpointer = Checkpointer(
        engine, out / "checkpoints", dist.rank, total_steps=total_steps,
        save_every=cfg.save_every, save_every_minutes=cfg.save_every_minutes,
        stop_after=cfg.stop_after, keep=cfg.keep_checkpoints, files=config_files,
    )  # fmt: skip
    checkpoint = checkpointer.resume(cfg.resume, state)
    start_step = state.step

    # 6. loop
    batches = StepBatches(
        dataset, state.position, cfg.batch_size, cfg.grad_accum, cfg.max_length,
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
        f"{cfg.run_name}: {total_steps} steps x {global_batch} samples on {dist.world_size} "
        f"rank(s), trainable {trainable}, from step {start_step}"
        + (f" ({checkpoint})" if checkpoint else "")
    )
    started = time.perf_counter()
    # a stop signal ends the loop after the step it arrives in, on every rank, with a checkpoint
    with stop_signals() as stop:
        trainer = Trainer(engine, cfg, dist, state, checkpointer, logger, heldout, stop)
        trainer.fit(loader, batches.samples_per_step)
        # 7. save: the last checkpoint (resumable) and, at the schedule's end, the HF export
        last = checkpointer.save_final(state)
    finished = state.step >= total_steps and not trainer.stopped
    if finished:
        export_model(engine, model, cfg, out / "export")
    logger.close()
    summary = {
        "stage": cfg.name,
        "run": cfg.run_name,
        "steps": state.step,
        "total_steps": total_steps,
        "final_loss": state.loss,
        "tokens_seen": state.tokens,
        "train_seconds": round(time.perf_counter() - started, 2),
        "world_size": dist.world_size,
        "trainable_parameters": trainable,
        "rejected": dict(state.rejections.counts),
        "rejected_ids": state.rejections.ids,
        "checkpoint": str(last),
        "export": str(out / "export") if finished else None,
        "stopped_by_signal": trainer.stopped,
    }
    if dist.is_main:
        write_text_atomic(out / SUMMARY_FILE, json.dumps(summary, indent=1))
    return summary
