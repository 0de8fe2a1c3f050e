"""`ovmllm train configs/train/STAGE.yaml [key=value ...]`: one training stage.

Started directly it is a DeepSpeed group of one process; under a launcher
(`torchrun --nproc_per_node N -m ovmllm train ...`, or `deepspeed --num_gpus N $(which ovmllm)
train ...`) every rank runs it.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import warnings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="stage config YAML (configs/train/*.yaml)")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    parser.epilog = "every key, resolved and documented: ovmllm config stage STAGE.yaml"


def prepare_process() -> None:
    """What a training process sets once, process-wide, before DeepSpeed is imported (every face
    that trains calls it: this command, the quickstart, the benchmark, the tests):

    - LOCAL_RANK=0 when no launcher set it: DeepSpeed's engine reads it even for one process;
    - DS_ACCELERATOR=cpu without CUDA: DeepSpeed picks its accelerator when imported (its own
      detection ends on the CPU too, with a warning);
    - DeepSpeed 0.19 calls the c10d collectives torch 2.13 renamed: one warning per step, muted.
    """
    import torch

    os.environ.setdefault("LOCAL_RANK", "0")
    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    for name in ("reduce_scatter_tensor", "all_gather_into_tensor"):
        warnings.filterwarnings("ignore", f".*{name}. is deprecated", FutureWarning)


def run(args: argparse.Namespace) -> int:
    prepare_process()
    from ovmllm.config import ConfigError
    from train.config import load_stage
    from train.manifest import CheckpointIntegrityError
    from train.recipe import train
    from train.stopping import EX_TEMPFAIL, TooManyRejected

    try:
        cfg = load_stage(args.config, list(args.overrides))
    except (ConfigError, ValueError) as exc:
        print(f"ovmllm train: {exc}", file=sys.stderr)
        return 1
    try:
        summary = train(cfg)
    # missing inputs, an occupied run, a model that cannot encode the data's media, a
    # checkpoint that changed since it was saved, mostly rejected data
    except (
        FileNotFoundError, FileExistsError, ConfigError, CheckpointIntegrityError,
        TooManyRejected,
    ) as exc:  # fmt: skip
        print(f"ovmllm train: {exc}", file=sys.stderr)
        return 1
    main = summary["world_size"] == 1 or _rank() == 0
    if main:
        print(json.dumps(summary))
    if summary["stopped_by_signal"]:  # a scheduler's "try again": requeue with resume=auto
        if main:
            print(
                f"ovmllm train: stopped by a signal after step {summary['steps']} of "
                f"{summary['total_steps']}, checkpoint {summary['checkpoint']}; resume with "
                f"(under a launcher, the same launch with these arguments): "
                f"{resume_command(args.config, args.overrides)}",
                file=sys.stderr,
            )
        return EX_TEMPFAIL
    return 0


def resume_command(config: str, overrides: list[str]) -> str:
    """The command that continues a stopped run: the same one with `resume=auto`."""
    kept = [o for o in overrides if not o.startswith("resume=")]
    return shlex.join(["ovmllm", "train", config, *kept, "resume=auto"])


def _rank() -> int:
    import torch

    return torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
