"""`ovmllm codec select | show | precompute`: codec patch selection from the command line.

Flags are shorthands for config keys (`--frames 32` is `frames=32`); any key can also be given
as a trailing `key=value` override, after an optional `--config configs/codec/*.yaml`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ovmllm.config import ConfigError, load_config

# flag -> codec config key
CODEC_FLAGS = {
    "frames": "frames",
    "canvas": "canvas",
    "canvas_size": "canvas_size",
    "patch": "patch",
    "budget_frames": "budget_frames",
    "budget": "budget",
    "full_frame": "full_frame",
    "policy": "policy",
    "compensate": "compensate",
    "residual": "residual",
    "fusion": "fusion",
    "residual_weight": "residual_weight",
    "threads": "threads",
}


def _add_codec_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML of codec settings (e.g. configs/codec/probe.yaml)")
    parser.add_argument("--frames", type=int, help="T sampled frames (64)")
    parser.add_argument("--canvas", choices=["letterbox", "crop"])
    parser.add_argument("--canvas-size", type=int, help="576 letterbox, 224 crop")
    parser.add_argument("--patch", type=int, help="16 letterbox, 14 crop")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--budget-frames", type=float, help="K as frame-equivalents (8)")
    budget.add_argument("--budget", type=int, help="K as a number of patches")
    parser.add_argument("--full-frame", choices=["first", "iframes", "none"])
    parser.add_argument(
        "--policy",
        choices=["saliency", "random"],
        help="top-K (saliency) or the seeded uniform draw (random); controls go as an "
        "override: 'controls=[shuffle,nonsalient:0.5]'",
    )
    parser.add_argument("--compensate", choices=["none", "median", "similarity", "affine"])
    parser.add_argument("--residual", choices=["diff", "mc"])
    parser.add_argument("--fusion", choices=["mean", "max", "sum", "geomean"])
    parser.add_argument(
        "--residual-weight", type=float, help="w in mean = (m + w r) / (1 + w) (0.25; 1 = 1:1)"
    )
    parser.add_argument("--threads", type=int, help="decoder threads (slice threading)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")


def flag_overrides(args: argparse.Namespace, prefix: str = "") -> list[str]:
    """The codec flags that were given, as dotted overrides."""
    items = [
        f"{prefix}{key}={getattr(args, flag)}"
        for flag, key in CODEC_FLAGS.items()
        if getattr(args, flag, None) is not None
    ]
    if getattr(args, "budget_frames", None) is not None:
        items.append(f"{prefix}budget=null")  # an explicit frame budget replaces a patch budget
    return items


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    select = sub.add_parser("select", help="write the asset folder of one video")
    select.add_argument("video")
    select.add_argument("--out", required=True, help="asset folder to write")
    _add_codec_flags(select)
    show = sub.add_parser("show", help="draw the sampled frames with the chosen patches")
    show.add_argument("video")
    show.add_argument("--out", required=True, help="PNG to write")
    _add_codec_flags(show)
    pre = sub.add_parser("precompute", help="asset folders for every video of a dataset")
    pre.add_argument("data", help="JSON or JSONL of samples with a `video` field")
    pre.add_argument("--root", help="dataset root (default: the data file's folder)")
    pre.add_argument(
        "--out",
        help="asset root (default: <root>/codec_assets); outside the dataset root, the output's "
        "codec_assets are relative to it: set it as the data source's assets_root",
    )
    pre.add_argument("--output", help="output JSONL (default: <out>/<data>.codec.jsonl)")
    pre.add_argument("--workers", type=int, help="parallel worker processes")
    pre.add_argument("--shard", help="i/n: this node's share of the videos")
    _add_codec_flags(pre)


def _codec_config(args: argparse.Namespace):
    from encoder.codec.config import CodecConfig

    return load_config(CodecConfig, args.config, flag_overrides(args) + list(args.overrides))


def _summary(selection) -> dict:
    meta = selection.meta
    return {
        "K": selection.num_patches,
        "candidates": meta["candidates"],
        "whole_frames": meta["whole_frames"],
        "motion_source": meta["motion_source"],
        "source_codec": meta["source_codec"],
        "resolution": meta["resolution"],
        "frames_decoded": meta["frames_decoded"],
        "seconds": round(meta["timings"]["total_s"], 3),
    }


def run(args: argparse.Namespace) -> int:
    from encoder.codec import VideoDecodeError

    try:
        if args.action == "precompute":
            return _run_precompute(args)
        cfg = _codec_config(args)
        from encoder.codec import select_with_frames, write_assets

        selection, canvases = select_with_frames(args.video, cfg)
        if args.action == "select":
            folder = write_assets(selection, args.out)
            print(json.dumps({"assets": str(folder), **_summary(selection)}))
        else:
            from encoder.codec.show import save_sheet, selection_sheet

            path = save_sheet(selection_sheet(selection, canvases), args.out)
            print(json.dumps({"image": str(path), **_summary(selection)}))
    except (ConfigError, VideoDecodeError, FileNotFoundError, ValueError) as exc:
        print(f"ovmllm codec {args.action}: {exc}", file=sys.stderr)
        return 1
    return 0


def _run_precompute(args: argparse.Namespace) -> int:
    """Top-level keys of PrecomputeConfig from the flags; codec flags and a codec YAML go to
    the nested `codec.` settings; trailing overrides use full keys (`codec.frames=32`)."""
    import yaml

    from ovmllm.data.precompute import PrecomputeConfig, precompute

    job_flags = [
        f"{key}={getattr(args, key)}"
        for key in ("root", "out", "output", "workers", "shard")
        if getattr(args, key) is not None
    ]
    base = {"codec": yaml.safe_load(Path(args.config).read_text())} if args.config else None
    overrides = [f"data={args.data}", *job_flags, *flag_overrides(args, "codec."), *args.overrides]
    summary = precompute(load_config(PrecomputeConfig, None, overrides, base=base))
    print(json.dumps(vars(summary)))
    return 0 if summary.failed == 0 else 3
