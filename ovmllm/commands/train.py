"""`ovmllm train configs/train/STAGE.yaml [key=value ...]`: one training stage.

Started directly it is a DeepSpeed group of one process; under a launcher
(`torchrun --nproc_per_node N -m ovmllm train ...`, or `deepspeed --num_gpus N $(which ovmllm)
train ...`) every rank runs it.
"""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="stage config YAML (configs/train/*.yaml)")
    parser.add_argument("overrides", nargs="*", metavar="key=value")


def run(args: argparse.Namespace) -> int:
    from ovmllm.config import ConfigError
    from train.config import load_stage
    from train.recipe import train

    try:
        cfg = load_stage(args.config, list(args.overrides))
    except (ConfigError, ValueError) as exc:
        print(f"ovmllm train: {exc}", file=sys.stderr)
        return 1
    try:
        summary = train(cfg)
    except (FileNotFoundError, FileExistsError) as exc:  # missing inputs, an occupied run
        print(f"ovmllm train: {exc}", file=sys.stderr)
        return 1
    if summary["world_size"] == 1 or _rank() == 0:
        print(json.dumps(summary))
    return 0


def _rank() -> int:
    import torch

    return torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
