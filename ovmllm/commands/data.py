"""`ovmllm data GENERATOR --out DIR [key=value ...]`: write a generated dataset.

    ovmllm data temporal --out runs/temporal                 # temporal video QA, defaults
    ovmllm data temporal --out runs/temporal_small test_per_family=8 min_frames=100

A folder written before with the same settings is kept as it is; one with other settings is
an error unless --overwrite.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

# generator -> (module, config class, writer `(out, cfg, *, overwrite, workers) -> Path`, what
# it writes)
GENERATORS = {
    "temporal": (
        "ovmllm.data.temporal",
        "TemporalConfig",
        "write_temporal_dataset",
        "temporal video QA: test/<family>.jsonl lmms-eval docs, train.jsonl LLaVA rows",
    ),
    "actions": (
        "ovmllm.data.temporal_actions",
        "ActionConfig",
        "write_action_dataset",
        "labelled action clips for ovmllm probe: train.txt / val.txt (path label), labels.json",
    ),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    generators = "\n".join(f"  {name:10s} {what}" for name, (*_, what) in GENERATORS.items())
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = __doc__
    parser.epilog = f"generators:\n{generators}"
    parser.add_argument("generator", choices=list(GENERATORS))
    parser.add_argument("--out", required=True, help="dataset folder")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace a folder written with other settings"
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="processes drawing and encoding the videos"
    )
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config keys")


def run(args: argparse.Namespace) -> int:
    from ovmllm.config import ConfigError, load_config

    module_name, config_name, writer_name, _ = GENERATORS[args.generator]
    module = importlib.import_module(module_name)
    try:
        cfg = load_config(getattr(module, config_name), None, list(args.overrides))
        folder = getattr(module, writer_name)(
            args.out, cfg, overwrite=args.overwrite, workers=args.workers
        )
    except (ConfigError, ValueError, OSError) as exc:
        print(f"ovmllm data {args.generator}: {exc}", file=sys.stderr)
        return 1
    for path in sorted([*Path(folder).rglob("*.jsonl"), *Path(folder).glob("*.txt")]):
        print(f"{path}: {len(path.read_text().splitlines())} rows")
    return 0
