"""The full training step (DeepSpeed engine, packing and collation included) vs a bare PyTorch
forward + backward + AdamW of the same model on the same batch, measured in the same run.

Model: configs/model/tiny.yaml (OV-Encoder tiny + mlp2x_gelu + Qwen3 tiny with the real Qwen3
tokenizer), every part trainable. Batch: the fixed mix of benchmarks/mixes.py (12 images of
256 visual tokens, 4 codec videos of 2,048 patches; random pixels and text ids) as one
micro-batch packed into sequences of at most 4,096 tokens. The engine step is what
train/trainer.py runs: pack + collate, one tower call per patch size, the global-token loss,
DeepSpeed backward and step (ZeRO-2 on one CPU rank, client torch AdamW). The bare step takes
the pre-collated batch. Steps alternate; medians of --repeats after one warm-up each. Prints
seconds per step, tokens/s and the overhead ratio (target <= 1.15x).

    python benchmarks/train_step.py [--repeats 5] [--zero 2]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from pathlib import Path

import torch

from encoder.packed import PackedVisualTokens
from ovmllm.chat_processor import IGNORE_INDEX, EncodedSample
from ovmllm.commands.train import prepare_process
from ovmllm.data.dataset import Sample
from train.config import load_stage
from train.data import StepBatch, micro_batch
from train.engine import deepspeed_config, init_distributed
from train.modules import build_optimizer
from train.recipe import freeze, load_model
from train.trainer import train_step
from train.uniform_calls import UniformTowerCalls

from mixes import sample_mix

ROOT = Path(__file__).resolve().parents[1]


def visual_item(tokens: int, gen: torch.Generator) -> PackedVisualTokens:
    """A 16x16 image at 14 px (256 tokens) or a codec item of 16 px cells over 16 frames."""
    if tokens == 256:
        kind, patch, grid = "image", 14, (1, 16, 16)
        t, h, w = torch.meshgrid(
            torch.zeros(1, dtype=torch.long), torch.arange(16), torch.arange(16), indexing="ij"
        )
    else:
        kind, patch, grid = "codec", 16, None  # sparse: positions, no grid
        cells = torch.randperm(16 * 36 * 36, generator=gen)[:tokens].sort().values
        t, h, w = cells // (36 * 36), (cells // 36) % 36, cells % 36
    positions = torch.stack([t.flatten(), h.flatten(), w.flatten()], 1).to(torch.int32)
    return PackedVisualTokens(
        patches=torch.randint(0, 256, (tokens, 3, patch, patch), dtype=torch.uint8, generator=gen),
        positions=positions,
        cu_seqlens=torch.tensor([0, tokens], dtype=torch.int32),
        kinds=[kind],
        grids=[grid],
    )


def build_samples(token_ids: dict[str, int], vocab: int) -> list[Sample]:
    gen = torch.Generator().manual_seed(0)
    samples = []
    for n, (visual, text) in enumerate(sample_mix(gen)):
        item = visual_item(visual, gen)
        pad = token_ids[item.kinds[0] if item.kinds[0] == "image" else "video"]
        words = torch.randint(1000, vocab - 1000, (text,), generator=gen).tolist()
        ids = [pad] * visual + words
        labels = [IGNORE_INDEX] * visual + words
        samples.append(Sample(n, f"s{n}", EncodedSample(ids, labels, [visual]), [item]))
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--zero", type=int, default=2, choices=[2, 3])
    args = parser.parse_args()
    prepare_process()
    dist = init_distributed()
    import deepspeed

    overrides = [
        f"deepspeed={ROOT}/configs/deepspeed/zero{args.zero}.json",
        "batch_size=16", "grad_accum=1", "max_length=4096", "precision=fp32",
        f"model.tokenizer={ROOT}/../shared/real_data/tokenizers/qwen3",
        "trainability.parts={connector: {train: true}, llm: {train: true}, tower: {train: true}}",
    ]  # fmt: skip
    cfg = load_stage(ROOT / "configs/train/tiny_align.yaml", overrides)
    torch.manual_seed(0)
    model = load_model(cfg)
    freeze(model, cfg)
    model.train()
    bare = copy.deepcopy(model)
    samples = build_samples(model.processor.chat.token_ids, len(model.processor.tokenizer))

    # the engine path: collation inside the timed step, as the recipe's data loader does it
    engine, *_ = deepspeed.initialize(
        model=UniformTowerCalls(model, model.processor.patch_sizes()),
        optimizer=build_optimizer(model, cfg.trainability),
        config=deepspeed_config(cfg, dist.world_size),
    )
    pad_id = model.processor.tokenizer.pad_token_id

    def engine_step() -> int:
        micro = micro_batch(samples, cfg.max_length, pad_id)
        train_step(engine, StepBatch(0, [micro]), dist)
        return micro.num_tokens

    # the bare path: same weights, same packed batch, plain forward + backward + AdamW
    micro = micro_batch(samples, cfg.max_length, pad_id)
    optimizer = build_optimizer(bare, cfg.trainability)

    def bare_step() -> int:
        out = bare(**micro.tensors, visual=micro.visual)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(bare.parameters(), cfg.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return micro.num_tokens

    timings: dict[str, list[float]] = {"engine": [], "bare": []}
    for repeat in range(args.repeats + 1):  # the first round warms up
        for name, step in (("bare", bare_step), ("engine", engine_step)):
            start = time.perf_counter()
            tokens = step()
            if repeat:
                timings[name].append(time.perf_counter() - start)
    seconds = {name: statistics.median(t) for name, t in timings.items()}
    shape = tuple(micro.tensors["input_ids"].shape)
    print(
        f"tiny model, 16 samples ({tokens} tokens, packed {shape}), fp32, "
        f"{torch.get_num_threads()} threads, ZeRO-{args.zero} on {dist.world_size} CPU rank"
    )
    for name in ("bare", "engine"):
        print(f"  {name:6s} {seconds[name]:7.3f} s/step  {tokens / seconds[name]:8.0f} tokens/s")
    print(f"engine / bare step time: {seconds['engine'] / seconds['bare']:.3f}x (target <= 1.15x)")


if __name__ == "__main__":
    main()
