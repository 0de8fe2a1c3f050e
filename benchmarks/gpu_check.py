"""GPU readiness: every GPU-only path in one command, and the figures that say whether a real run
is affordable.

Five parts, each in its own try block (a failure is recorded with its traceback and the rest run):

(a) packed LLM forward + backward equal the same samples run one at a time (loss and every
    gradient, at bf16 tolerance) under each packed attention kernel: sdpa, flex_attention;
(b) the OV-Encoder's packed path (varlen kernel on GPU) equals each item run alone (batched
    SDPA) on a mix of codec and image items;
(c) a bf16 instruct-stage training step (everything trains, activation checkpointing, AdamW) of a
    Qwen3-0.6B-shaped LLM (random init) + mlp2x_gelu + OV-Encoder-large on codec video
    (K = 10,368 patches a video): tokens/s, peak memory, MFU, a phase breakdown, and the same
    step without checkpointing and with flex_attention, to find the largest loss;
(d) OV-Encoder-large forward at the codec budget vs 64 and 8 dense frames;
(e) one ZeRO-3 run of the real training recipe (train/recipe.py, DeepSpeed, the tiny model on
    image-only toy data), when DeepSpeed can be imported and a tokenizer is given.

    python benchmarks/gpu_check.py [--out runs/gpu_check.json] [--parts a,b,c,d,e]
    python benchmarks/gpu_check.py --dry-run   # tiny sizes on CPU (`make test` runs it)

It writes one JSON (atomically) and prints a summary. On the GPU machine it runs on the image's
own torch and transformers: `bash benchmarks/gpu_check.sh` (README, "GPU check").
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import math
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the GPU image runs it from a plain checkout, not an install

from connector import ConnectorConfig  # noqa: E402
from encoder.attention import PackedSequences, packed_kernel  # noqa: E402
from encoder.files import write_text_atomic  # noqa: E402
from encoder.packed import PackedVisualTokens  # noqa: E402
from encoder.towers import TowerConfig, build_tower  # noqa: E402
from encoder.towers.base import normalised_cells  # noqa: E402
from ovmllm.chat_processor import IGNORE_INDEX  # noqa: E402
from ovmllm.data.packing import collate  # noqa: E402
from ovmllm.model import OVMLLMConfig, OVMLLMForCausalLM  # noqa: E402
from train.modules import enable_activation_checkpointing  # noqa: E402

# bf16 dense peak (no sparsity), by a substring of torch.cuda.get_device_name()
BF16_PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}
# Qwen3-0.6B's shape (its config.json), random init
QWEN3_06B = dict(
    vocab_size=151_936, hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
    num_attention_heads=16, num_key_value_heads=8, head_dim=128, tie_word_embeddings=True,
    max_position_embeddings=40_960, rope_theta=1_000_000.0,
)  # fmt: skip
QWEN3_TINY = dict(
    vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
    num_attention_heads=4, num_key_value_heads=2, head_dim=16, tie_word_embeddings=True,
)  # fmt: skip
# bf16 tolerance of the equivalence checks: relative to the reference's own size
LOSS_RTOL = 1e-2
GRAD_RTOL = 5e-2
OUTPUT_RTOL = 5e-2


@dataclass(frozen=True)
class Sizes:
    """What each part runs: the real sizes on a GPU, tiny ones for the CPU dry run."""

    llm: dict
    """Qwen3Config arguments of the LLM of (a) and (c)."""
    equivalence_layers: int
    """(a) runs the LLM's width with this many layers."""
    equivalence_lengths: tuple[int, ...]
    """(a): tokens of each sample (packed into one sequence)."""
    tower: str
    """OV-Encoder size of (b), (c), (d)."""
    grid: int
    """Patches per side of a frame (504 px / 14 = 36)."""
    codec_tokens: int
    """K: codec patches per video (8 x 1296 = 10,368)."""
    dense_frames: int
    """(d): the dense clip's frames."""
    encoder_items: tuple[tuple[str, int], ...]
    """(b): (kind, tokens) of each packed item; an image of n tokens is a sqrt(n)-side grid."""
    prompt_tokens: int
    """(c): text tokens before the answer in each sample."""
    answer_tokens: int
    """(c): supervised tokens in each sample."""
    samples: int
    """(c): videos per step, packed into one sequence."""
    warmup: int
    steps: int


FULL = Sizes(
    llm=QWEN3_06B, equivalence_layers=4, equivalence_lengths=(1500, 700, 2900, 64),
    tower="large", grid=36, codec_tokens=10_368, dense_frames=64,
    encoder_items=(("codec", 10_368), ("image", 1296), ("codec", 2590), ("image", 576)),
    prompt_tokens=96, answer_tokens=64, samples=2, warmup=2, steps=4,
)  # fmt: skip
DRY = Sizes(
    llm=QWEN3_TINY, equivalence_layers=2, equivalence_lengths=(17, 40, 9),
    tower="tiny", grid=6, codec_tokens=96, dense_frames=8,
    encoder_items=(("codec", 96), ("image", 36), ("codec", 50), ("image", 16)),
    prompt_tokens=12, answer_tokens=8, samples=2, warmup=1, steps=1,
)  # fmt: skip


@dataclass
class Context:
    device: torch.device
    dtype: torch.dtype
    sizes: Sizes
    tokenizer: Path | None
    deadline: float  # perf_counter time after which optional variants are skipped

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def time_left(self) -> float:
        return self.deadline - time.perf_counter()


class Skip(Exception):
    """A part (or variant) that cannot run here; the message is the reason."""


# -- inputs -------------------------------------------------------------------------------------


def codec_item(tokens: int, grid: int, gen: torch.Generator) -> PackedVisualTokens:
    """K codec patches at distinct (t, h, w) cells of the 64-step timeline, sorted as the
    selector emits them (random pixels: only the cost and the kernels matter here)."""
    cells = torch.randperm(64 * grid * grid, generator=gen)[:tokens].sort().values
    t, h, w = cells // (grid * grid), (cells // grid) % grid, cells % grid
    return _item("codec", torch.stack([t, h, w], 1), None, gen)


def grid_item(kind: str, frames: int, side: int, gen: torch.Generator) -> PackedVisualTokens:
    """An image (frames=1) or dense frames on the 64-step timeline: every cell of the grid."""
    step = 64 // frames
    t, h, w = torch.meshgrid(
        torch.arange(frames) * step, torch.arange(side), torch.arange(side), indexing="ij"
    )
    positions = torch.stack([t.flatten(), h.flatten(), w.flatten()], 1)
    return _item(kind, positions, (frames, side, side), gen)


def _item(kind, positions, grid, gen) -> PackedVisualTokens:
    n = positions.shape[0]
    return PackedVisualTokens(
        patches=torch.randint(0, 256, (n, 3, 14, 14), dtype=torch.uint8, generator=gen),
        positions=positions.to(torch.int32),
        cu_seqlens=torch.tensor([0, n], dtype=torch.int32),
        kinds=[kind],
        grids=[grid],
    )


def encoder_inputs(item: PackedVisualTokens, tower, ctx: Context) -> tuple[torch.Tensor, ...]:
    """The encoder's inputs as the tower makes them: normalised pixels, positions, cu_seqlens."""
    pixels = normalised_cells(item.to_device(ctx.device), tower.spec, ctx.dtype)
    return pixels, item.positions.to(ctx.device), item.cu_seqlens.to(ctx.device)


def encoder_tower(ctx: Context):
    """A random OV-Encoder tower of the check's size on the device, in its dtype, for inference."""
    torch.manual_seed(0)
    with torch.device(ctx.device):
        tower = build_tower(TowerConfig(name="onevision", size=ctx.sizes.tower))
    return tower.to(ctx.device, ctx.dtype).eval()


# -- models -------------------------------------------------------------------------------------

VIDEO_TOKEN, IMAGE_TOKEN = 5, 6  # placeholder ids (any ids below the vocabulary do)


def multimodal_model(ctx: Context, llm: dict, kernel: str, tower: str) -> OVMLLMForCausalLM:
    """OV-Encoder (`tower` size) + mlp2x_gelu + a random Qwen3 of shape `llm`, built on the
    device, its parameters in the check's dtype."""
    from transformers import AutoModelForCausalLM, Qwen3Config

    torch.manual_seed(0)
    with torch.device(ctx.device):
        tower_cfg = TowerConfig(name="onevision", size=tower)
        llm_model = AutoModelForCausalLM.from_config(Qwen3Config(**llm), attn_implementation=kernel)
        config = OVMLLMConfig(
            tower=asdict(tower_cfg),
            connector=asdict(ConnectorConfig()),
            llm_config=llm_model.config,
            vision_token_ids={"video": VIDEO_TOKEN, "image": IMAGE_TOKEN},
        )
        model = OVMLLMForCausalLM(config, llm=llm_model, tower=build_tower(tower_cfg))
    # parameters in the step's dtype, buffers kept in float32, as DeepSpeed's bf16 mode does it:
    # a bf16 copy of the LLM's RoPE inverse frequencies would shift angles at long positions
    for param in model.parameters():
        param.data = param.data.to(ctx.dtype)
    return model


def text_samples(lengths, vocab: int, gen) -> list[tuple[list[int], list[int]]]:
    """(ids, labels) per sample: random ids, the second half supervised."""
    out = []
    for n in lengths:
        ids = torch.randint(100, vocab, (n,), generator=gen).tolist()
        out.append((ids, [IGNORE_INDEX] * (n // 2) + ids[n // 2 :]))
    return out


def relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    value, reference = value.float(), reference.float()
    return float((value - reference).norm() / reference.norm().clamp(min=1e-12))


# -- (a) packed LLM = one sample at a time -----------------------------------------------------


def packed_llm(ctx: Context) -> dict:
    sizes = ctx.sizes
    llm = dict(sizes.llm, num_hidden_layers=sizes.equivalence_layers)
    gen = torch.Generator().manual_seed(1)
    parts = text_samples(sizes.equivalence_lengths, llm["vocab_size"], gen)
    result = {"samples": list(sizes.equivalence_lengths), "layers": sizes.equivalence_layers}
    for kernel in ("sdpa", "flex_attention"):
        result[kernel] = variant(
            ctx, lambda kernel=kernel: _packed_vs_alone(ctx, llm, kernel, parts)
        )
    ran = [result[k] for k in ("sdpa", "flex_attention") if result[k]["status"] != "skipped"]
    result["passed"] = bool(ran) and all(r.get("passed") for r in ran)
    return result


def variant(ctx: Context, run: Callable[[], dict]) -> dict:
    """A part, or one kernel or setting of a part: its result, or why it was skipped or failed
    (so one broken part or variant never hides the figures of the others)."""
    try:
        return run()
    except Skip as exc:
        return {"status": "skipped", "reason": str(exc)}
    except Exception as exc:
        return {
            "status": "failed",
            "error": f"{type(exc).__name__}: {exc}"[:2000],
            "traceback": traceback.format_exc()[-4000:],
        }
    finally:
        if ctx.cuda:
            torch.cuda.empty_cache()


def _packed_vs_alone(ctx: Context, llm: dict, kernel: str, parts) -> dict:
    if kernel == "flex_attention":
        if importlib.util.find_spec("torch.nn.attention.flex_attention") is None:
            raise Skip(f"this torch ({torch.__version__}) has no flex_attention")
        if not ctx.cuda:
            raise Skip(
                "flex_attention has no backward on CPU and compiles for ~30 s there "
                "(its forward is tested by `make test-all`)"
            )
    model = multimodal_model(ctx, llm, kernel, tower="tiny").train()
    params = [p for p in model.llm.parameters() if p.requires_grad]

    # one sample at a time: the global-token loss, summed over samples
    total = sum(sum(1 for x in labels[1:] if x != IGNORE_INDEX) for _, labels in parts)
    alone_loss = 0.0
    for ids, labels in parts:
        out = model(
            torch.tensor([ids], device=ctx.device), labels=torch.tensor([labels], device=ctx.device)
        )
        (out.loss_sum / total).backward()
        alone_loss += float(out.loss_sum.detach()) / total
    alone = [p.grad.detach().clone() for p in params]
    model.zero_grad(set_to_none=True)

    batch = {k: v.to(ctx.device) for k, v in collate([parts], pad_id=0).items()}
    start = time.perf_counter()
    out = model(**batch)
    out.loss.backward()
    ctx.sync()
    seconds = time.perf_counter() - start
    packed = [p.grad.detach() for p in params]
    loss_error = abs(float(out.loss.detach()) - alone_loss) / abs(alone_loss)
    grad_errors = [relative_error(g, r) for g, r in zip(packed, alone, strict=True)]
    passed = loss_error <= LOSS_RTOL and max(grad_errors) <= GRAD_RTOL
    return {
        "status": "ok",
        "passed": passed,
        "loss_packed": float(out.loss.detach()),
        "loss_alone": alone_loss,
        "loss_relative_error": loss_error,
        "grad_max_relative_error": max(grad_errors),
        "grad_median_relative_error": statistics.median(grad_errors),
        "tolerance": {"loss": LOSS_RTOL, "grad": GRAD_RTOL},
        "packed_forward_backward_s": seconds,
    }


# -- (b) encoder packed path = per item ---------------------------------------------------------


def packed_encoder(ctx: Context) -> dict:
    sizes = ctx.sizes
    gen = torch.Generator().manual_seed(2)
    items = [
        codec_item(n, sizes.grid, gen)
        if kind == "codec"
        else grid_item("image", 1, math.isqrt(n), gen)
        for kind, n in sizes.encoder_items
    ]
    packed = PackedVisualTokens.concat(items)
    tower = encoder_tower(ctx)
    model = tower.model
    with torch.inference_mode():
        out = model.features(*encoder_inputs(packed, tower, ctx))
        alone = torch.cat([model.features(*encoder_inputs(item, tower, ctx)) for item in items])
    config = model.config
    head_dim = config.hidden_size // config.num_attention_heads
    probe = torch.empty(1, config.num_attention_heads, head_dim, device=ctx.device, dtype=ctx.dtype)
    seqs = PackedSequences.from_cu_seqlens(packed.cu_seqlens)
    kernel = packed_kernel(probe, seqs, model.encoder.layers[0].self_attn.scale)
    errors = [
        relative_error(out[a:b], alone[a:b])
        for a, b in zip(
            packed.cu_seqlens[:-1].tolist(), packed.cu_seqlens[1:].tolist(), strict=True
        )
    ]
    result = {
        "items": [f"{kind} {n}" for kind, n in sizes.encoder_items],
        "packed_kernel": kernel,
        "reference_kernel": "batched_sdpa",
        "max_relative_error": max(errors),
        "tolerance": OUTPUT_RTOL,
        "passed": max(errors) <= OUTPUT_RTOL,
    }
    if kernel == "per_item_sdpa":
        result["note"] = "no varlen kernel here (GPU + half precision only): per-item SDPA ran"
    return result


# -- (c) training step: tokens/s, memory, MFU ---------------------------------------------------


def step_batch(ctx: Context, vocab: int) -> tuple[dict, list[PackedVisualTokens], list[int]]:
    """`samples` videos, each K codec patches + a prompt + a supervised answer, packed into one
    sequence as the collator does it; the visual items and each sample's length."""
    sizes = ctx.sizes
    gen = torch.Generator().manual_seed(3)
    parts, visual = [], []
    for _ in range(sizes.samples):
        visual.append(codec_item(sizes.codec_tokens, sizes.grid, gen).to_device(ctx.device))
        prompt = torch.randint(100, vocab, (sizes.prompt_tokens,), generator=gen).tolist()
        answer = torch.randint(100, vocab, (sizes.answer_tokens,), generator=gen).tolist()
        ids = [VIDEO_TOKEN] * sizes.codec_tokens + prompt + answer
        labels = [IGNORE_INDEX] * (sizes.codec_tokens + len(prompt)) + answer
        parts.append((ids, labels))
    batch = {k: v.to(ctx.device) for k, v in collate([parts], pad_id=0).items()}
    return batch, visual, [len(ids) for ids, _ in parts]


def model_flops(model: OVMLLMForCausalLM, lengths: list[int], visual, supervised: int) -> dict:
    """Training FLOPs of one step, checkpoint recompute not counted (the MFU convention):
    6 x parameters x tokens for every matmul weight a token passes (tower blocks up to the
    feature layer, connector, LLM blocks), 6 x vocab x hidden per supervised token (the LM head
    runs only there), plus attention: 3 x (4 x heads x head_dim x L^2) per block and item for the
    tower (bidirectional), 3 x (2 x heads x head_dim x L^2) per layer and sample for the LLM
    (causal: the half that is computed)."""
    tower = model.tower
    unused = {id(p) for m in tower.unused_modules() for p in m.parameters()}
    tower_params = sum(p.numel() for p in tower.parameters() if id(p) not in unused)
    connector_params = sum(p.numel() for p in model.connector.parameters())
    embedding = model.llm.get_input_embeddings().weight
    llm_params = sum(p.numel() for p in model.llm.parameters() if p is not embedding)
    vocab, hidden = embedding.shape
    visual_tokens = sum(item.patches.shape[0] for item in visual)
    text_tokens = sum(lengths)
    enc = tower.model.config
    enc_head_dim = enc.hidden_size // enc.num_attention_heads
    enc_attention = sum(
        12 * enc.num_attention_heads * enc_head_dim * n**2 * tower.layer_index
        for item in visual
        for n in item.lengths
    )
    llm_cfg = model.llm.config
    llm_attention = sum(
        6 * llm_cfg.num_attention_heads * llm_cfg.head_dim * n**2 * llm_cfg.num_hidden_layers
        for n in lengths
    )
    parts = {
        "tower_matmul": 6 * tower_params * visual_tokens,
        "connector_matmul": 6 * connector_params * visual_tokens,
        "llm_matmul": 6 * llm_params * text_tokens,
        "lm_head": 6 * vocab * hidden * supervised,
        "tower_attention": enc_attention,
        "llm_attention": llm_attention,
    }
    return {
        "total": sum(parts.values()),
        "parts": parts,
        "parameters": {"tower": tower_params, "connector": connector_params, "llm": llm_params},
        "formula": (
            "6 x params x tokens (tower blocks to the feature layer, connector, LLM blocks) "
            "+ 6 x vocab x hidden x supervised tokens + attention: tower 12 x heads x head_dim "
            "x L^2 x blocks per item, LLM 6 x heads x head_dim x L^2 x layers per sample "
            "(causal half); recompute not counted"
        ),
    }


def bf16_peak(ctx: Context) -> tuple[float | None, str]:
    if not ctx.cuda:
        return None, "no bf16 peak for a CPU: MFU is measured on a GPU"
    name = torch.cuda.get_device_name(ctx.device)
    for key, tflops in BF16_PEAK_TFLOPS.items():
        if key in name:
            return tflops * 1e12, f"{name}: {tflops:.0f} TFLOP/s bf16 dense"
    return None, f"{name}: no known bf16 peak (known: {', '.join(BF16_PEAK_TFLOPS)})"


def training_step(ctx: Context) -> dict:
    variants = [("sdpa", True), ("sdpa", False), ("flex_attention", True)]
    result = {}
    for kernel, checkpointing in variants:
        name = f"{kernel}{'' if checkpointing else '_no_checkpointing'}"

        def run(kernel=kernel, checkpointing=checkpointing, first=not result) -> dict:
            if not first and ctx.time_left() < 60:
                raise Skip(f"the check's time budget is spent ({ctx.time_left():.0f} s left)")
            if kernel == "flex_attention" and not ctx.cuda:
                raise Skip("flex_attention has no backward on CPU")
            return _timed_steps(ctx, kernel, checkpointing, breakdown=first)

        result[name] = variant(ctx, run)
    ok = {k: v for k, v in result.items() if v.get("status") == "ok"}
    if ok:
        result["fastest"] = min(ok, key=lambda k: ok[k]["step_s"])
    # the headline is sdpa with checkpointing; the other variants are there to explain its loss
    result["passed"] = result["sdpa"]["status"] == "ok"
    return result


def _timed_steps(ctx: Context, kernel: str, checkpointing: bool, breakdown: bool) -> dict:
    sizes = ctx.sizes
    model = multimodal_model(ctx, sizes.llm, kernel, tower=sizes.tower).train()
    if checkpointing:
        enable_activation_checkpointing(model)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5, fused=ctx.cuda)
    batch, visual, lengths = step_batch(ctx, sizes.llm["vocab_size"])
    supervised = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())

    def step() -> float:
        out = model(**batch, visual=visual)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(out.loss.detach())

    for _ in range(sizes.warmup):
        step()
    if ctx.cuda:
        torch.cuda.reset_peak_memory_stats(ctx.device)
    times = []
    for _ in range(sizes.steps):
        ctx.sync()
        start = time.perf_counter()
        loss = step()  # float(): waits for the step
        ctx.sync()
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    flops = model_flops(model, lengths, visual, supervised)
    peak, peak_source = bf16_peak(ctx)
    result = {
        "status": "ok",
        "kernel": kernel,
        "activation_checkpointing": checkpointing,
        "samples": sizes.samples,
        "visual_tokens_per_sample": sizes.codec_tokens,
        "llm_tokens": sum(lengths),
        "supervised_tokens": supervised,
        "step_s": seconds,
        "step_s_all": times,
        "llm_tokens_per_s": sum(lengths) / seconds,
        "loss": loss,
        "model_tflops_per_step": flops["total"] / 1e12,
        "achieved_tflops": flops["total"] / seconds / 1e12,
        "flops": flops,
        "bf16_peak": peak_source,
        "mfu": flops["total"] / seconds / peak if peak else None,
    }
    if ctx.cuda:
        result["peak_memory_gib"] = torch.cuda.max_memory_allocated(ctx.device) / 2**30
    else:
        result["peak_memory_gib"] = None
        result["peak_memory_note"] = "CUDA memory statistics only"
    if breakdown:
        result["phases_s"] = _phases(ctx, model, batch, visual, params, optimizer)
    return result


def _phases(ctx, model, batch, visual, params, optimizer) -> dict:
    """One more step with a device sync between its phases (so slightly slower than a step)."""
    marks = [time.perf_counter()]

    def mark() -> None:
        ctx.sync()
        marks.append(time.perf_counter())

    features = model.visual_features(visual)
    mark()
    embeds = model.embed_features(batch["input_ids"], features)
    out = model(**batch, inputs_embeds=embeds)
    mark()
    out.loss.backward()
    mark()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    mark()
    names = ("tower_connector_forward", "llm_forward", "backward_with_recompute", "optimizer")
    spans = [b - a for a, b in itertools.pairwise(marks)]
    return dict(zip(names, spans, strict=True))


# -- (d) encoder throughput: codec budget vs dense frames ---------------------------------------


def encoder_throughput(ctx: Context) -> dict:
    sizes = ctx.sizes
    gen = torch.Generator().manual_seed(4)
    frame_tokens = sizes.grid * sizes.grid
    budget_frames = sizes.codec_tokens // frame_tokens
    cases = {
        f"codec K={sizes.codec_tokens}": codec_item(sizes.codec_tokens, sizes.grid, gen),
        f"{sizes.dense_frames} dense frames": grid_item(
            "frames", sizes.dense_frames, sizes.grid, gen
        ),
        f"{budget_frames} dense frames": grid_item("frames", budget_frames, sizes.grid, gen),
    }
    tower = encoder_tower(ctx)
    model = tower.model
    layer = -2  # the LLM's features: the last block is not run
    rows = {}
    with torch.inference_mode():
        for name, item in cases.items():
            inputs = encoder_inputs(item, tower, ctx)
            model.features(*inputs, layer=layer)  # warm-up
            times = []
            for _ in range(max(2, sizes.steps)):
                ctx.sync()
                start = time.perf_counter()
                model.features(*inputs, layer=layer)
                ctx.sync()
                times.append(time.perf_counter() - start)
            seconds = statistics.median(times)
            tokens = item.patches.shape[0]
            rows[name] = {
                "tokens": tokens,
                "s_per_video": seconds,
                "tokens_per_s": tokens / seconds,
            }
    codec, dense = (rows[n]["s_per_video"] for n in list(cases)[:2])
    return {
        "tower": sizes.tower,
        "cases": rows,
        f"{sizes.dense_frames}_dense_frames_over_codec": dense / codec,
    }


# -- (e) one ZeRO-3 run of the real recipe --------------------------------------------------------


def deepspeed_recipe(ctx: Context) -> dict:
    try:
        import deepspeed  # noqa: F401
    except ImportError as exc:
        raise Skip(
            f"DeepSpeed cannot be imported ({exc}); on the GPU image carry .gpu/wheels "
            "(`make gpu-carry`)"
        ) from exc
    if ctx.tokenizer is None or not ctx.tokenizer.is_dir():
        raise Skip(f"no tokenizer folder ({ctx.tokenizer}): pass --tokenizer")
    import yaml

    from ovmllm.commands.train import prepare_process
    from ovmllm.data.toy import ToyDataConfig, write_toy_dataset
    from train.config import load_stage
    from train.recipe import train

    prepare_process()
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        data = write_toy_dataset(
            Path(tmp) / "data",
            ToyDataConfig(images=8, videos=0, heldout_images=0, heldout_videos=0),
        )
        stage = yaml.safe_load((ROOT / "configs/train/tiny_align.yaml").read_text())
        stage.update(
            model_file=str(ROOT / "configs/model/tiny.yaml"),
            data={"seed": 0, "sources": [{"name": "toy", "data": str(data / "train.jsonl")}]},
            eval_data="",
            deepspeed=str(ROOT / "configs/deepspeed/zero3.json"),
            output_dir=str(Path(tmp) / "run"),
            batch_size=2, grad_accum=1, max_steps=2, save_every=0,
            precision="bf16" if ctx.cuda else "fp32",
            trainability={"base_lr": 1e-3, "parts": {"connector": {"train": True},
                                                     "llm": {"train": True}}},
        )  # fmt: skip
        stage["model"]["tokenizer"] = str(ctx.tokenizer)
        path = Path(tmp) / "stage.yaml"
        path.write_text(yaml.safe_dump(stage))
        start = time.perf_counter()
        summary = train(load_stage(path))
        seconds = time.perf_counter() - start
    passed = summary["steps"] == 2 and math.isfinite(summary["final_loss"])
    return {
        "zero_stage": 3,
        "precision": stage["precision"],
        "steps": summary["steps"],
        "final_loss": summary["final_loss"],
        "exported": summary["export"] is not None,
        "train_s": seconds,
        "passed": passed,
    }


# -- the command --------------------------------------------------------------------------------

PARTS: dict[str, tuple[str, Callable[[Context], dict]]] = {
    "a": ("packed LLM = one sample at a time", packed_llm),
    "b": ("encoder packed = per item", packed_encoder),
    "c": ("bf16 training step, MFU", training_step),
    "d": ("encoder: codec vs dense frames", encoder_throughput),
    "e": ("DeepSpeed ZeRO-3 recipe step", deepspeed_recipe),
}


def run_part(key: str, ctx: Context) -> dict:
    title, fn = PARTS[key]
    start = time.perf_counter()
    result = variant(ctx, lambda: {"status": "ok", **fn(ctx)})  # a broken part: recorded
    if result.get("passed") is False:
        result["status"] = "failed"
    result["title"] = title
    result["wall_s"] = round(time.perf_counter() - start, 2)
    return result


def environment(ctx: Context) -> dict:
    import transformers

    env = {
        "device": torch.cuda.get_device_name(ctx.device) if ctx.cuda else "cpu",
        "dtype": str(ctx.dtype).removeprefix("torch."),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": sys.version.split()[0],
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    if ctx.cuda:
        env["cuda"] = torch.version.cuda
    return env


def summary_lines(report: dict) -> list[str]:
    env = report["environment"]
    dry = " [dry run]" if report["dry_run"] else ""
    lines = [
        f"GPU check on {env['device']} ({env['dtype']}, torch {env['torch']}, "
        f"transformers {env['transformers']}){dry}"
    ]
    for key, part in report["parts"].items():
        head = f"({key}) {part['title']}: {part['status']} in {part['wall_s']:.1f} s"
        lines.append(head)
        if part["status"] == "skipped":
            lines.append(f"    {part['reason']}")
        elif "error" in part:
            lines.append(f"    {part['error'].splitlines()[0]}")
        lines += [f"    {line}" for line in _figures(key, part)]
    return lines


def _figures(key: str, part: dict) -> list[str]:
    out = []
    if key == "a":
        for kernel in ("sdpa", "flex_attention"):
            r = part.get(kernel, {})
            if "passed" in r:
                out.append(
                    f"{kernel}: loss rel err {r['loss_relative_error']:.1e}, grads max rel err "
                    f"{r['grad_max_relative_error']:.1e} (tol {GRAD_RTOL:g}): "
                    f"{'equal' if r['passed'] else 'DIFFERENT'}"
                )
            elif r:
                out.append(f"{kernel}: {r.get('status')} ({r.get('reason', r.get('error'))})")
    elif key == "b" and "packed_kernel" in part:
        out.append(
            f"packed kernel {part['packed_kernel']} vs {part['reference_kernel']}: max rel err "
            f"{part['max_relative_error']:.1e} (tol {OUTPUT_RTOL:g})"
        )
    elif key == "c":
        for name, r in part.items():
            if not isinstance(r, dict) or "status" not in r:
                continue
            if r["status"] != "ok":
                out.append(f"{name}: {r['status']} ({r.get('reason', r.get('error'))})")
                continue
            mfu = f"MFU {r['mfu']:.1%}" if r["mfu"] is not None else "MFU n/a"
            memory = (
                f", peak {r['peak_memory_gib']:.1f} GiB" if r["peak_memory_gib"] is not None else ""
            )
            out.append(
                f"{name}: {r['step_s']:.3f} s/step, {r['llm_tokens_per_s']:,.0f} LLM tokens/s, "
                f"{r['achieved_tflops']:.1f} TFLOP/s, {mfu}{memory}"
            )
            if "phases_s" in r:
                spans = r["phases_s"]
                total = sum(spans.values())
                out.append(
                    "  phases: " + ", ".join(f"{k} {v / total:.0%}" for k, v in spans.items())
                )
        if "fastest" in part:
            out.append(f"fastest: {part['fastest']}; bf16 peak: {part['sdpa'].get('bf16_peak')}")
    elif key == "d" and "cases" in part:
        for name, r in part["cases"].items():
            out.append(
                f"{name}: {r['s_per_video'] * 1e3:.1f} ms/video, {r['tokens_per_s']:,.0f} tokens/s"
            )
        ratio = next(v for k, v in part.items() if k.endswith("_over_codec"))
        out.append(f"dense / codec time: {ratio:.2f}x")
    elif key == "e" and "steps" in part:
        out.append(
            f"ZeRO-{part['zero_stage']} {part['precision']}: {part['steps']} steps, final loss "
            f"{part['final_loss']:.3f}, export {'written' if part['exported'] else 'missing'}"
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on CPU")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "gpu_check.json")
    parser.add_argument("--parts", default="abcde", help="which parts, e.g. 'ac' (default all)")
    parser.add_argument(
        "--tokenizer",
        type=Path,
        default=ROOT.parent / "shared" / "real_data" / "tokenizers" / "qwen3",
        help="tokenizer folder for (e) (default ../shared/real_data/tokenizers/qwen3)",
    )
    parser.add_argument(
        "--budget-s", type=float, default=300, help="optional variants stop after this"
    )
    args = parser.parse_args(argv)
    unknown = set(args.parts.replace(",", "")) - set(PARTS)
    if unknown:
        parser.error(f"--parts: unknown part(s) {sorted(unknown)}; known: {''.join(PARTS)}")
    if not args.dry_run and not torch.cuda.is_available():
        parser.error("no CUDA device here: run it on a GPU, or pass --dry-run for the CPU check")
    device = torch.device("cpu") if args.dry_run else torch.device("cuda", 0)
    ctx = Context(
        device=device,
        dtype=torch.bfloat16,
        sizes=DRY if args.dry_run else FULL,
        tokenizer=args.tokenizer,
        deadline=time.perf_counter() + args.budget_s,
    )
    if ctx.cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
    report = {"dry_run": args.dry_run, "environment": environment(ctx), "parts": {}}
    for key in PARTS:
        if key in args.parts:
            report["parts"][key] = run_part(key, ctx)
            print("\n".join(summary_lines({**report, "parts": {key: report["parts"][key]}})[1:]),
                  flush=True)  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out, json.dumps(report, indent=1, default=str))
    print("\n" + "\n".join(summary_lines(report)))
    print(f"\nwritten: {args.out}")
    failed = [k for k, p in report["parts"].items() if p["status"] == "failed"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
