"""The `ovmllm` command. Subcommands import their modules lazily, so `ovmllm codec ...` never
pays for training or evaluation imports."""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> module with `add_arguments(parser)` and `run(args) -> int`
SUBCOMMANDS = {
    "config": (
        "ovmllm.commands.config",
        "show a config resolved, with every field's documentation",
    ),
    "codec": ("ovmllm.commands.codec", "codec patch selection: select, show, precompute"),
    "init": ("ovmllm.commands.init", "build a model from a config and save a checkpoint"),
    "chat": ("ovmllm.commands.chat", "answer one question about images or a video"),
    "toydata": ("ovmllm.commands.toydata", "write the toy dataset of the tiny training stages"),
    "data": ("ovmllm.commands.data", "write a generated dataset (temporal video QA)"),
    "train": ("ovmllm.commands.train", "run one training stage (DeepSpeed)"),
    "pretrain-encoder": (
        "ovmllm.commands.pretrain_encoder",
        "pretrain an OV-Encoder by cluster discrimination on concept labels (DeepSpeed)",
    ),
    "eval": ("ovmllm.commands.eval", "evaluate a checkpoint on an lmms-eval suite"),
    "ablate": ("ovmllm.commands.ablate", "accuracy against visual-token budgets, per mode"),
    "probe": (
        "ovmllm.commands.probe",
        "attentive probe of a frozen encoder: codec patches vs dense frames per patch budget",
    ),
    "concepts": (
        "ovmllm.commands.concepts",
        "concept bank for encoder pretraining: extract, cluster, assign, ocr labels",
    ),
    "leaderboard": (
        "ovmllm.commands.leaderboard",
        "tables and a chart of evaluated runs beside the paper's numbers",
    ),
    "quickstart": (
        "ovmllm.commands.quickstart",
        "the most complete pipeline so far, on its own data",
    ),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    argv = _without_local_rank(argv)
    parser = argparse.ArgumentParser(prog="ovmllm", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_, help_text) in SUBCOMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    if not argv or argv[0] not in SUBCOMMANDS:
        parser.parse_args(argv)  # prints usage or the error for an unknown command
        return 2
    module = importlib.import_module(SUBCOMMANDS[argv[0]][0])
    sub_parser = argparse.ArgumentParser(prog=f"ovmllm {argv[0]}")
    module.add_arguments(sub_parser)
    # `key=value` overrides may follow the flags; argparse stops filling positionals after them.
    args, extra = sub_parser.parse_known_args(argv[1:])
    unknown = [item for item in extra if item.startswith("-") or "=" not in item]
    if unknown:
        sub_parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if extra:
        args.overrides = [*getattr(args, "overrides", []), *extra]
    return module.run(args)


def _without_local_rank(argv: list[str]) -> list[str]:
    """Drop the `--local_rank=N` the `deepspeed` launcher puts before the script's own
    arguments; the rank also comes in the environment (LOCAL_RANK), which training reads."""
    out, skip = [], False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
        elif arg.startswith("--local_rank="):
            continue
        elif arg == "--local_rank" and i + 1 < len(argv):
            skip = True
        else:
            out.append(arg)
    return out


if __name__ == "__main__":
    sys.exit(main())
