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


def run(args: argparse.Namespace) -> int:
    from ovmllm.build import ModelConfig, build_model
    from ovmllm.config import ConfigError, load_config, write_config

    try:
        cfg = load_config(ModelConfig, args.config, list(args.overrides))
        model = build_model(cfg)
    except (ConfigError, ValueError, OSError) as exc:
        print(f"ovmllm init: {exc}", file=sys.stderr)
        return 1
    model.save_pretrained(args.out)
    write_config(cfg, f"{args.out}/model_config.yaml")
    parts = {
        name: sum(p.numel() for p in getattr(model, name).parameters())
        for name in ("tower", "connector", "llm")
    }
    print(json.dumps({"checkpoint": args.out, "parameters": parts}))
    return 0
