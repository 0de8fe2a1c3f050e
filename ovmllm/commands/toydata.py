"""`ovmllm toydata --out DIR`: write the toy image/video dataset the tiny stages train on."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/toy_data", help="dataset folder")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="ToyDataConfig keys")


def run(args: argparse.Namespace) -> int:
    from ovmllm.config import load_config
    from ovmllm.data.toy import ToyDataConfig, write_toy_dataset

    folder = write_toy_dataset(args.out, load_config(ToyDataConfig, None, list(args.overrides)))
    for split in ("train", "heldout"):
        rows = (folder / f"{split}.jsonl").read_text().count("\n")
        print(f"{folder / f'{split}.jsonl'}: {rows} rows")
    return 0
