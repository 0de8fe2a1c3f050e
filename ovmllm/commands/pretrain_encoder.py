"""`ovmllm pretrain-encoder configs/pretrain/STAGE.yaml [key=value ...]`: encoder pretraining by
cluster discrimination (PAPER.md section 4) on labels from `ovmllm concepts`.

Started directly it is a DeepSpeed group of one process; under a launcher
(`torchrun --nproc_per_node N -m ovmllm pretrain-encoder ...`) every rank runs it, the class
centres sharded across the ranks. Exit status: 0 done (the encoder in <output_dir>/export/),
1 bad input (one line on stderr naming it), 75 stopped by a signal after saving (resume with
the same command and `resume=auto`).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys

from ovmllm.commands.train import prepare_process


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = __doc__
    parser.add_argument("config", help="pretraining config YAML (configs/pretrain/*.yaml)")
    parser.add_argument("overrides", nargs="*", metavar="key=value")


def run(args: argparse.Namespace) -> int:
    prepare_process()
    from ovmllm.config import ConfigError
    from train.manifest import CheckpointIntegrityError
    from train.pretrain.config import load_pretrain
    from train.pretrain.encoder import EncoderFolderError
    from train.pretrain.labels import LabelsError
    from train.pretrain.recipe import pretrain
    from train.stopping import EX_TEMPFAIL, TooManyRejected

    try:
        cfg = load_pretrain(args.config, list(args.overrides))  # its checks raise ValueError
    except (ConfigError, ValueError) as exc:
        print(f"ovmllm pretrain-encoder: {exc}", file=sys.stderr)
        return 1
    try:
        summary = pretrain(cfg)
    # a missing or unusable labels folder or head, an encoder folder that is none, an occupied
    # run, a checkpoint that changed since it was saved, mostly failing media
    except (
        LabelsError, EncoderFolderError, FileNotFoundError, FileExistsError,
        CheckpointIntegrityError, TooManyRejected,
    ) as exc:  # fmt: skip
        print(f"ovmllm pretrain-encoder: {exc}", file=sys.stderr)
        return 1
    main = summary["world_size"] == 1 or _rank() == 0  # one summary line per run
    if main:
        print(json.dumps(summary))
    if summary["stopped_by_signal"]:
        if main:
            kept = [o for o in args.overrides if not o.startswith("resume=")]
            again = shlex.join(["ovmllm", "pretrain-encoder", args.config, *kept, "resume=auto"])
            print(f"ovmllm pretrain-encoder: stopped by a signal after step {summary['steps']} "
                  f"of {summary['total_steps']}, checkpoint {summary['checkpoint']}; resume "
                  f"with (under a launcher, the same launch with these arguments): {again}",
                  file=sys.stderr)  # fmt: skip
        return EX_TEMPFAIL
    return 0


def _rank() -> int:
    import torch

    return torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
