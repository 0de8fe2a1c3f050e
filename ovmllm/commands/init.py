"""`ovmllm init --config configs/model/NAME.yaml --out DIR [key=value ...]`: build a model from
a config (random init, or pretrained parts by path) and save it as a checkpoint folder."""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="model config YAML (configs/model/*.yaml)")
    parser.add_argument("--out", required=True, help="checkpoint folder to write")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    parser.epilog = "every key, resolved and documented: ovmllm config model MODEL.yaml"


def run(args: argparse.Namespace) -> int:
    from encoder.files import atomic_dir
    from ovmllm.build import ModelConfig, build_model
    from ovmllm.config import ConfigError, load_config, write_config

    try:
        cfg = load_config(ModelConfig, args.config, list(args.overrides))
        model = build_model(cfg)
    except (ConfigError, ValueError, OSError) as exc:
        print(f"ovmllm init: {exc}", file=sys.stderr)
        return 1
    with atomic_dir(args.out) as folder:  # a checkpoint folder that exists is complete
        model.save_pretrained(folder)
        write_config(cfg, folder / "model_config.yaml")
    parts = {
        name: sum(p.numel() for p in getattr(model, name).parameters())
        for name in ("tower", "connector", "llm")
    }
    print(json.dumps({"checkpoint": args.out, "parameters": parts}))
    return 0
