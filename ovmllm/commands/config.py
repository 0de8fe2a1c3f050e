"""`ovmllm config KIND [FILE] [key=value ...]`: a config resolved as its command would resolve
it, printed as YAML with each field's documentation above it (the docstrings under the
dataclass fields). The output is itself a valid config file of that kind.

    ovmllm config stage configs/train/tiny_align.yaml     # every key of a stage, resolved
    ovmllm config model configs/model/tiny.yaml tower.size=base
    ovmllm config processor                                # what `processor:` / chat overrides take
"""

from __future__ import annotations

import argparse
import importlib
import sys
import textwrap
from dataclasses import is_dataclass

import yaml

# kind -> (module, loader, what it configures). A loader is the config class (read with
# `load_config`) or the function its command reads the config with (`load_stage`: model_file
# and name defaults).
KINDS = {
    "model": ("ovmllm.build", "ModelConfig", "ovmllm init --config (configs/model/*.yaml)"),
    "stage": ("train.config", "load_stage", "ovmllm train (configs/train/*.yaml)"),
    "pretrain": (
        "train.pretrain.config",
        "load_pretrain",
        "ovmllm pretrain-encoder (configs/pretrain/*.yaml)",
    ),
    "processor": (
        "ovmllm.multimodal_processor",
        "ProcessorOverrides",
        "a stage's `processor:` and ovmllm chat's key=value settings",
    ),
    "codec": ("encoder.codec", "CodecConfig", "ovmllm codec select (configs/codec/*.yaml)"),
    "toydata": ("ovmllm.data.toy", "ToyDataConfig", "ovmllm toydata key=value"),
    "temporal": ("ovmllm.data.temporal", "TemporalConfig", "ovmllm data temporal key=value"),
    "probe": ("eval.probe.config", "ProbeConfig", "ovmllm probe (configs/eval/probe_*.yaml)"),
    "concepts-extract": ("encoder.concepts.extract", "ExtractConfig", "ovmllm concepts extract"),
    "concepts-cluster": ("encoder.concepts.cluster", "ClusterConfig", "ovmllm concepts cluster"),
    "concepts-ocr": ("encoder.concepts.ocr_labels", "OcrConfig", "ovmllm concepts ocr"),
    "eval-args": (
        "eval.model_args",
        "EvalModelArgs",
        "ovmllm eval key=value (lmms-eval model_args)",
    ),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    kinds = "\n".join(f"  {kind:10s} {used}" for kind, (_, _, used) in KINDS.items())
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = __doc__
    parser.epilog = f"kinds:\n{kinds}"
    parser.add_argument("kind", choices=list(KINDS))
    parser.add_argument("file", nargs="?", help="a YAML file of that kind (default: the defaults)")
    parser.add_argument("overrides", nargs="*", metavar="key=value")


def run(args: argparse.Namespace) -> int:
    from ovmllm.config import ConfigError, load_config

    module, name, _ = KINDS[args.kind]
    loader = getattr(importlib.import_module(module), name)
    file, overrides = args.file, list(args.overrides)
    if file is not None and "=" in file:  # no file: the first positional is an override
        file, overrides = None, [file, *overrides]
    try:
        if is_dataclass(loader):
            cfg = load_config(loader, file, overrides)
        elif file is None:
            raise ConfigError(f"a {args.kind} config is read from its YAML file: give one")
        else:
            cfg = loader(file, overrides)
    except (ConfigError, ValueError) as exc:
        print(f"ovmllm config: {exc}", file=sys.stderr)
        return 1
    print(render(cfg))
    return 0


def render(cfg) -> str:
    """The config as YAML, each field's docstring as a comment above it."""
    from ovmllm.config import describe

    lines = []
    for row in describe(cfg):
        depth = row.key.count(".")
        indent = "  " * depth
        for doc_line in textwrap.wrap(row.doc, 96 - len(indent)) if row.doc else []:
            lines.append(f"{indent}# {doc_line}")
        leaf = row.key.rsplit(".", 1)[-1]
        if row.section:
            lines.append(f"{indent}{leaf}:")
        else:
            value = yaml.safe_dump(row.value, default_flow_style=True, width=1_000_000)
            lines.append(f"{indent}{leaf}: {value.strip().removesuffix(chr(10) + '...')}")
    return "\n".join(lines)
