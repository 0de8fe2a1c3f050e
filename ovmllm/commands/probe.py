"""`ovmllm probe --encoder DIR --train LIST --val LIST [--root DIR] --budgets 512,1024,2048,4096
--modes codec,frames,random [--controls shuffle,nonsalient:0.5] [--epochs N] [--out DIR]
[--reference paper] [key=value ...]`: the attentive probe of a frozen encoder (a tower folder or
an ovmllm model folder), codec patches against dense frames at equal patch budgets.

    ovmllm probe --encoder runs/ckpt --train data/train.txt --val data/val.txt \\
        --labels data/labels.json --budgets 512,1024 --controls shuffle,nonsalient:0.5
    ovmllm probe --encoder siglip2_folder --train k400/train.csv --val k400/val.csv \\
        --modes frames --reference paper extract.workers=8 head.epochs=20

Features are cached (memory-mapped, per encoder, cell and videos) under <out>/features, so a
re-run or another head setting costs only the head. Outputs: probe.csv, probe.md, probe.png.
`ovmllm probe --help` lists the flags; every key of the config (extract.*, head.*, codec.*,
lists.*) can be set as key=value.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = __doc__
    parser.add_argument("--config", help="a probe YAML (configs/eval/probe_*.yaml)")
    parser.add_argument("--encoder", help="tower folder or ovmllm model folder")
    parser.add_argument("--train", help="training list (path label lines, CSV, SSv2 JSON)")
    parser.add_argument("--val", help="validation list")
    parser.add_argument("--root", help="folder the list paths are relative to (and stay in)")
    parser.add_argument("--labels", help="labels JSON, class name -> id")
    parser.add_argument("--dataset", help="dataset name in the table")
    parser.add_argument("--budgets", help="patches, comma-separated (default 512,1024,2048,4096)")
    parser.add_argument("--modes", help="of codec,frames,random (default all three)")
    parser.add_argument("--controls", help="codec controls, comma-separated (shuffle,nonsalient:F)")
    parser.add_argument("--epochs", type=int, help="head training epochs")
    parser.add_argument("--workers", type=int, help="DataLoader workers for the selection")
    parser.add_argument("--reference", choices=["paper"], help="the paper's averages alongside")
    parser.add_argument("--out", help="output folder (default runs/probe/<encoder>/<dataset>)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="ProbeConfig keys")


def _overrides(args: argparse.Namespace) -> list[str]:
    out = []
    lists = {"budgets": args.budgets, "modes": args.modes, "controls": args.controls}
    for key, value in lists.items():
        if value is not None:
            items = [item.strip() for item in value.split(",") if item.strip()]
            out.append(f"{key}=[{','.join(items)}]")
    scalars = {"encoder": args.encoder, "train": args.train, "val": args.val, "root": args.root,
               "labels": args.labels, "dataset": args.dataset, "reference": args.reference,
               "head.epochs": args.epochs, "extract.workers": args.workers}  # fmt: skip
    out += [f"{key}={value}" for key, value in scalars.items() if value is not None]
    return out + list(args.overrides)


def run(args: argparse.Namespace) -> int:
    from eval.probe.config import ProbeConfig
    from eval.probe.encoder import EncoderError
    from eval.probe.lists import ListError
    from eval.probe.run import run_probe
    from ovmllm.config import ConfigError, load_config

    try:
        cfg = load_config(ProbeConfig, args.config, _overrides(args))
        cfg.check_inputs()  # before `out` is named from the inputs
        out = Path(args.out or Path("runs/probe") / Path(cfg.encoder).name / cfg.dataset_name())
        run_probe(cfg, out)
    except (ConfigError, EncoderError, ListError, ValueError, OSError) as exc:
        print(f"ovmllm probe: {exc}", file=sys.stderr)
        return 1
    print((out / "probe.md").read_text())
    for kind in ("csv", "md", "png"):
        print(f"{kind}: {out / f'probe.{kind}'}")
    return 0
