"""Encoder pretraining by cluster discrimination, top to bottom: load → data → engine + centres
→ resume → loop → save (PAPER.md section 4; the loop is train/pretrain/trainer.py).

The encoder (OV-Encoder with its pooling head) runs in a DeepSpeed engine with a client torch
AdamW, as the LLM stages do (ZeRO-2 by default; on a machine without CUDA, DeepSpeed's CPU
accelerator with gloo). The class centres are sharded across ranks (`train/centres.py`) and
stay outside the engine with their own AdamW on the same schedule: see trainer.py for why they
are never averaged across ranks. Checkpoints are the LLM stages' (`train/checkpoint.py`: atomic
step folders, manifest, RNG, trainer state, resume=auto, stop_after, keep) with each rank's
centre shard inside; a stop signal saves and ends the run (the command exits with 75). At the
schedule's end the encoder is exported to `<output_dir>/export/` (an encoder folder).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from encoder.files import write_text_atomic
from ovmllm.config import write_config
from train.centres import build_centre_banks, build_centre_optimizer
from train.checkpoint import BatchGeometry, Checkpointer, TrainState, find_checkpoint
from train.engine import deepspeed_config, init_distributed, lr_multiplier
from train.metrics import RunLogger
from train.pretrain.config import PretrainConfig
from train.pretrain.data import PretrainSamples, StepBatches
from train.pretrain.encoder import (
    PooledEncoder,
    build_encoder_optimizer,
    export_encoder,
    load_encoder,
)
from train.pretrain.labels import describe_heads, read_source, resolve_heads
from train.pretrain.trainer import CentreShards, CentreSteps, PretrainTrainer
from train.stopping import stop_signals

SUMMARY_FILE = "summary.json"
CONFIG_FILE = "pretrain_config.yaml"


def _as_is(batch):
    return batch  # batches are built whole by StepBatches


def pretrain(cfg: PretrainConfig) -> dict:
    dist = init_distributed()
    import deepspeed  # after the command line chose the accelerator

    out = Path(cfg.output_dir)
    find_checkpoint(cfg.resume, out / "checkpoints")  # an occupied output_dir: refused untouched

    # 1. labels (every source and head checked before anything heavy), the encoder
    sources = [read_source(source) for source in cfg.sources]
    num_classes = resolve_heads(cfg, sources)
    if dist.is_main:
        config_file = write_config(cfg, out / CONFIG_FILE)
    config_files = {CONFIG_FILE: config_file.read_text()} if dist.is_main else {}
    model = load_encoder(cfg.encoder, cfg.seed)  # the same initial weights on every rank
    encoder = PooledEncoder(model)

    # 2. data: one global order, each rank its slice of every global batch
    samples = PretrainSamples(cfg, sources, encoder.spec)
    total_steps = cfg.max_steps

    # 3. engine (the encoder alone) and the centres (this rank's shards, their own AdamW)
    multiplier = lr_multiplier(cfg, total_steps)
    engine, _, _, _ = deepspeed.initialize(
        model=encoder,
        optimizer=build_encoder_optimizer(encoder, cfg.lr, cfg.weight_decay),
        lr_scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, multiplier),
        config=deepspeed_config(cfg, dist.world_size),
    )
    banks = build_centre_banks(
        num_classes, model.config.hidden_size, rank=dist.rank, world_size=dist.world_size,
        seed=cfg.seed, device=dist.device,
    )  # fmt: skip
    scales = {head: head_cfg.centre_lr_scale for head, head_cfg in cfg.heads.items()}
    centre_optimizer = build_centre_optimizer(banks, cfg.centre_lr, cfg.centre_weight_decay, scales)
    centres = CentreSteps(centre_optimizer, multiplier, cfg.max_grad_norm)

    # 4. resume: engine, RNG, counters and this rank's centre shard, or a fresh start
    state = TrainState(BatchGeometry(dist.world_size, cfg.batch_size, cfg.grad_accum))
    checkpointer = Checkpointer(
        engine, out / "checkpoints", dist.rank, total_steps=total_steps,
        save_every=cfg.save_every, save_every_minutes=cfg.save_every_minutes,
        stop_after=cfg.stop_after, keep=cfg.keep_checkpoints, files=config_files,
        rank_files=CentreShards(dict(banks), centre_optimizer),
    )  # fmt: skip
    checkpoint = checkpointer.resume(cfg.resume, state)
    start_step = state.step

    # 5. loop
    batches = StepBatches(samples, state.position, cfg.batch_size,
                          max(0, total_steps - start_step), dist.rank, dist.world_size)  # fmt: skip
    loader = torch.utils.data.DataLoader(
        batches, batch_size=None, num_workers=cfg.num_workers, collate_fn=_as_is,
        generator=torch.Generator().manual_seed(cfg.seed),  # the global RNG stays untouched
    )  # fmt: skip
    logger = RunLogger(cfg, total_steps, start_step, dist.is_main)
    logger.note(
        f"{cfg.run_name}: {total_steps} steps x {batches.samples_per_step} samples on "
        f"{dist.world_size} rank(s); {len(samples)} samples; heads "
        f"{describe_heads(cfg.heads, num_classes)}; from step {start_step}"
        + (f" ({checkpoint})" if checkpoint else "")
    )
    started = time.perf_counter()
    with stop_signals() as stop:
        trainer = PretrainTrainer(engine, dict(banks), centres, cfg, dist, state, checkpointer,
                                  logger, stop)  # fmt: skip
        trainer.fit(loader, batches.samples_per_step)
        # 6. save: the last checkpoint (resumable) and, at the schedule's end, the encoder
        last = checkpointer.save_final(state)
    finished = state.step >= total_steps and not trainer.stopped
    if finished:
        export_encoder(engine, model, cfg, out / "export")
    logger.close()
    summary = {
        "run": cfg.run_name,
        "steps": state.step,
        "total_steps": total_steps,
        "final_loss": state.loss,
        "patches_seen": state.tokens,
        "train_seconds": round(time.perf_counter() - started, 2),
        "world_size": dist.world_size,
        "samples": len(samples),
        "classes": num_classes,
        "rejected": dict(state.rejections.counts),
        "rejected_ids": state.rejections.ids,
        "checkpoint": str(last),
        "export": str(out / "export") if finished else None,
        "stopped_by_signal": trainer.stopped,
    }
    if dist.is_main:
        write_text_atomic(out / SUMMARY_FILE, json.dumps(summary, indent=1))
    return summary
