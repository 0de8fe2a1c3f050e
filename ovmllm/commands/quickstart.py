"""`ovmllm quickstart`: the most complete real pipeline so far, on data it makes itself.

1. Codec patch selection: two synthetic clips with known ground truth (a textured square
   moving over a textured background; a brief flash), selected with the default LLM-path
   settings, written as asset folders and contact sheets, compared against uniform frame
   sampling at the same token count.
2. The tiny model: built, saved, reloaded, a loss and a greedy answer on the mover clip.
3. Training: the toy image/video dataset, then the two tiny stages (configs/train/tiny_align,
   tiny_instruct: connector only under ZeRO-2, then everything under ZeRO-3, each a real
   DeepSpeed engine on CPU), held-out loss before and after, and an answer of the trained
   model to a held-out picture. Every figure it prints is measured.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

DEMO_TURNS = ("<video>\nWhat moves?", "A square.")


def _toy_data_and_tokenizer(out: Path) -> tuple[Path, Path]:
    """The toy dataset, and a tokenizer trained on its texts: the quickstart needs nothing but
    what it makes (configs/model/tiny.yaml names the Qwen3 tokenizer of ../shared, which only
    the development setup has)."""
    from ovmllm.chat_processor import ChatConfig
    from ovmllm.data.toy import write_toy_dataset
    from ovmllm.data.toy_tokenizer import write_toy_tokenizer

    data = write_toy_dataset(out / "toy_data")
    texts = [ChatConfig().system_prompt, *DEMO_TURNS]
    for split in ("train", "heldout"):
        for line in (data / f"{split}.jsonl").read_text().splitlines():
            texts += [turn["value"] for turn in json.loads(line)["conversations"]]
    return data, write_toy_tokenizer(out / "tokenizer", texts)


def _model_demo(out: Path, tokenizer: Path) -> dict:
    """Tiny random model (configs/model/tiny.yaml with the toy tokenizer): checkpoint, reload,
    loss and a greedy answer on the mover clip. Random weights, so the answer is noise until
    trained; what this shows is the pipeline from video to LLM tokens and back."""
    import torch

    from ovmllm.build import ModelConfig, build_model
    from ovmllm.config import load_config
    from ovmllm.model import OVMLLMForCausalLM

    cfg = load_config(ModelConfig, "configs/model/tiny.yaml", [f"tokenizer={tokenizer}"])
    start = time.perf_counter()
    torch.manual_seed(0)
    build_model(cfg).save_pretrained(out / "tiny_model")
    model = OVMLLMForCausalLM.from_pretrained(out / "tiny_model").eval()
    processor = model.processor
    items = processor.load(video=out / "mover.mp4")
    turns = [
        {"from": "human", "value": DEMO_TURNS[0]},
        {"from": "gpt", "value": DEMO_TURNS[1]},
    ]
    sample = processor.encode(turns, items)
    with torch.no_grad():
        out_ = model(
            torch.tensor([sample.input_ids]), labels=torch.tensor([sample.labels]), visual=items
        )
        prompt = torch.tensor([processor.prompt(turns[:1], items)])
        answer = model.generate(prompt, visual=items, max_new_tokens=8, do_sample=False)
    row = {
        "checkpoint": str(out / "tiny_model"),
        "sequence_tokens": len(sample.input_ids),
        "visual_tokens": sample.media_tokens,
        "supervised_tokens": int(out_.num_tokens),
        "loss": round(float(out_.loss), 4),
        "answer_random_weights": processor.tokenizer.decode(answer[0], skip_special_tokens=True),
        "seconds": round(time.perf_counter() - start, 2),
    }
    print(f"\n[model] tiny OV-Encoder + Qwen3, random weights, reloaded from {row['checkpoint']}")
    print(
        f"  {row['sequence_tokens']} tokens ({row['visual_tokens']} visual), "
        f"loss {row['loss']} over {row['supervised_tokens']} supervised tokens"
    )
    print(f"  greedy answer (noise until trained): {row['answer_random_weights']!r}")  # fmt: skip
    return row


def _training_demo(out: Path, data: Path, tokenizer: Path) -> dict:
    """toy data → tiny_align → tiny_instruct (in this process), then held-out loss and an
    answer from the exported model."""
    import torch

    from ovmllm.model import OVMLLMForCausalLM
    from train.config import load_stage
    from train.heldout import heldout_loss
    from train.recipe import initial_model, train
    from train.stopping import EX_TEMPFAIL

    heldout = data / "heldout.jsonl"

    report = {}
    init = None
    for stage in ("tiny_align", "tiny_instruct"):
        overrides = [
            f"output_dir={out / stage}",
            f"data.sources=[{{name: toy, data: {data / 'train.jsonl'}}}]",
            f"eval_data={heldout}",
        ]
        # the first stage builds the model (with the toy tokenizer); the next starts from its
        # export, which carries the tokenizer
        overrides.append(f"init_from={init}" if init else f"model.tokenizer={tokenizer}")
        shutil.rmtree(out / stage, ignore_errors=True)  # a demo run starts fresh each time
        summary = train(load_stage(f"configs/train/{stage}.yaml", overrides))
        if summary["stopped_by_signal"]:  # the next stage needs this one's export
            print(f"\n[train] {stage} stopped by a signal; the demo starts afresh when rerun")
            raise SystemExit(EX_TEMPFAIL)
        rows = [json.loads(x) for x in (out / stage / "metrics.jsonl").read_text().splitlines()]
        report[stage] = {
            "steps": summary["steps"],
            "first_loss": round(rows[0]["loss"], 4),
            "last_loss": round(rows[-1]["loss"], 4),
            "seconds": summary["train_seconds"],
            "export": summary["export"],
        }
        init = out / stage
        print(
            f"\n[train] {stage}: {summary['steps']} steps, loss {rows[0]['loss']:.3f} -> "
            f"{rows[-1]['loss']:.3f} in {summary['train_seconds']} s; export {summary['export']}"
        )
    first_stage = load_stage("configs/train/tiny_align.yaml", [f"model.tokenizer={tokenizer}"])
    before = initial_model(first_stage).eval()  # its init
    after = OVMLLMForCausalLM.from_pretrained(out / "tiny_instruct" / "export").eval()
    report["heldout_loss_before"] = round(heldout_loss(before, heldout), 4)
    report["heldout_loss_after"] = round(heldout_loss(after, heldout), 4)
    row = next(json.loads(x) for x in heldout.read_text().splitlines() if "image" in json.loads(x))
    items = after.processor.load([data / row["image"]])
    prompt = torch.tensor([after.processor.prompt(row["conversations"][:1], items)])
    answer = after.generate(prompt, visual=items, max_new_tokens=8, do_sample=False)
    report["heldout_answer"] = after.processor.tokenizer.decode(answer[0], skip_special_tokens=True)
    report["heldout_truth"] = row["conversations"][1]["value"]
    print(
        f"[train] held-out loss {report['heldout_loss_before']} (random init) -> "
        f"{report['heldout_loss_after']} (after both stages)"
    )
    print(
        f"  held-out picture: answer {report['heldout_answer']!r}, "
        f"truth {report['heldout_truth']!r}"
    )
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/quickstart", help="output folder")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="codec config overrides")


def run(args: argparse.Namespace) -> int:
    from encoder.codec import (
        CodecConfig,
        read_assets,
        select_with_frames,
        uniform_frames,
        write_assets,
    )
    from encoder.codec.show import save_sheet, selection_sheet
    from encoder.codec.synthetic import object_patches, recall, write_synthetic_video
    from ovmllm.commands.train import prepare_process
    from ovmllm.config import load_config, write_config

    prepare_process()  # the stages run in this process, set up as `ovmllm train` sets up one
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = load_config(CodecConfig, None, list(args.overrides))
    write_config(cfg, out / "codec_config.yaml")
    frames_equiv = cfg.num_patches // cfg.patches_per_frame
    print(
        f"codec settings: T={cfg.frames} canvas={cfg.canvas} {cfg.canvas_size}px/{cfg.patch}px "
        f"K={cfg.num_patches} ({frames_equiv} frame-equivalents), full_frame={cfg.full_frame}, "
        f"compensate={cfg.compensate}, residual={cfg.residual}"
    )
    report = {}
    clips = {
        "mover": dict(kind="mover", width=480, height=272, frames=192),
        "flash": dict(kind="flash", width=480, height=272, frames=128, event_start=60),
    }
    for name, spec in clips.items():
        start = time.perf_counter()
        video = write_synthetic_video(out / f"{name}.mp4", **spec)
        encode_s = time.perf_counter() - start
        selection, canvases = select_with_frames(video.path, cfg)
        folder = write_assets(selection, out / f"{name}_assets")
        again = read_assets(folder)
        assert (again.patches == selection.patches).all(), "asset round trip changed pixels"
        sheet = save_sheet(selection_sheet(selection, canvases), out / f"{name}_selection.png")
        uniform = uniform_frames(video.path, max(1, frames_equiv), cfg)
        truth_codec = object_patches(video, cfg)
        truth_uniform = object_patches(video, cfg, len(uniform.frame_ids))
        meta = selection.meta
        row = {
            "video": str(video.path),
            "frames": video.frames,
            "resolution": f"{video.width}x{video.height}",
            "encode_s": round(encode_s, 3),
            "select_s": round(meta["timings"]["total_s"], 3),
            "motion_source": meta["motion_source"],
            "K": selection.num_patches,
            "candidates": meta["candidates"],
            "object_patches_in_64_frames": len(truth_codec),
            "object_recall_codec": round(recall(selection.positions, truth_codec), 3),
            "object_patches_seen_by_uniform": len(truth_uniform),
            "assets": str(folder),
            "sheet": str(sheet),
        }
        if video.event_frames:
            seen = set(selection.frame_ids.tolist()) & set(video.event_frames)
            row["event_frames"] = video.event_frames
            row["event_frames_sampled_by_codec"] = sorted(seen)
            row["event_frames_in_uniform"] = sorted(
                set(uniform.frame_ids.tolist()) & set(video.event_frames)
            )
        report[name] = row
        print(
            f"\n[{name}] {video.frames} frames {video.width}x{video.height}, motion from "
            f"{row['motion_source']} vectors, selection {row['select_s']} s"
        )
        print(
            f"  K={row['K']} of {row['candidates']} candidate patches; object recall "
            f"{row['object_recall_codec']:.3f} over {len(truth_codec)} object patches "
            f"(uniform {frames_equiv} frames contain {len(truth_uniform)} object patches)"
        )
        if video.event_frames:
            print(
                f"  flash in frames {video.event_frames}: codec sampled "
                f"{row['event_frames_sampled_by_codec']}, "
                f"uniform {frames_equiv} frames hit {row['event_frames_in_uniform']}"
            )
        print(f"  assets: {folder}\n  sheet:  {sheet}")
    data, tokenizer = _toy_data_and_tokenizer(out)
    report["model"] = _model_demo(out, tokenizer)
    report["train"] = _training_demo(out, data, tokenizer)
    (out / "report.json").write_text(json.dumps(report, indent=1))
    print(f"\nreport: {out / 'report.json'}")
    return 0
