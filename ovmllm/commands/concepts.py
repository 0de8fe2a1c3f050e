"""`ovmllm concepts extract | cluster | assign | ocr`: the concept bank of encoder pretraining
(PAPER.md section 4), step by step; formats in `encoder/concepts/store.py`.

    ovmllm concepts extract --list images.txt --tower onevision --tower-path ckpt/tower \\
        --out bank/images
    ovmllm concepts extract --list videos.txt --kind video --teacher-path metaclip-h14 \\
        --out bank/videos teacher.device=cuda
    ovmllm concepts cluster --bank bank/images --k 100000
    ovmllm concepts assign --bank bank/images --top-k 10
    ovmllm concepts ocr --list pages.txt --vocab words.txt --out bank/ocr

Flags are shorthands for config keys; any key can also be given as a trailing key=value
override, after an optional `--config` YAML. Every step resumes: finished shards are skipped.
Exit status: 0 done, 1 bad input (one line on stderr), 3 done but some samples failed (each is
recorded with its reason in the output).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ovmllm.config import ConfigError, load_config, write_config

# action -> flag -> config key
FLAGS = {
    "extract": {"list": "list", "root": "root", "kind": "kind", "shard_size": "shard_size",
                "batch_size": "batch_size", "workers": "workers", "tower": "teacher.tower.name",
                "tower_size": "teacher.tower.size", "tower_path": "teacher.tower.path",
                "teacher_path": "teacher.path", "image_size": "teacher.image_size",
                "device": "teacher.device"},
    "cluster": {"k": "k", "iterations": "iterations", "init": "init", "seed": "seed",
                "restarts": "restarts"},
    "assign": {"top_k": "top_k"},
    "ocr": {"list": "list", "root": "root", "vocab": "vocab", "max_tags": "max_tags",
            "shard_size": "shard_size"},
}  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = __doc__
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    ex = sub.add_parser("extract", help="teacher embeddings of listed images or videos")
    ex.add_argument("--list", help="media list: one path per line")
    ex.add_argument("--root", help="folder the list paths are relative to (and stay in)")
    ex.add_argument("--kind", choices=["image", "video"], help="image, or video (8 frames)")
    ex.add_argument("--tower", help="a registered tower as teacher: onevision|siglip2|qwen3_vit")
    ex.add_argument("--tower-size", help="random-init tower size (tiny, ...)")
    ex.add_argument("--tower-path", help="the tower's from_pretrained folder")
    ex.add_argument("--teacher-path", help="a transformers vision model folder as teacher")
    ex.add_argument("--image-size", type=int, help="square side for a tower teacher (224)")
    ex.add_argument("--shard-size", type=int, help="samples per shard (4096)")
    ex.add_argument("--batch-size", type=int, help="pictures per forward (32)")
    ex.add_argument("--workers", type=int, help="decoding processes (0)")
    ex.add_argument("--device", help="auto | cpu | cuda:0 ...")
    ex.add_argument("--out", required=True, help="bank folder to write or complete")
    cl = sub.add_parser("cluster", help="spherical k-means centres of a bank (faiss)")
    cl.add_argument("--bank", required=True, help="bank folder written by extract")
    cl.add_argument("--k", type=int, help="number of centres (1024)")
    cl.add_argument("--iterations", type=int, help="Lloyd iterations at most (20)")
    cl.add_argument("--init", choices=["k-means++", "afk-mc2", "random"])
    cl.add_argument("--restarts", type=int, help="k-means runs, the best kept (1)")
    cl.add_argument("--seed", type=int)
    cl.add_argument("--out", help="centres file (default <bank>/centres.safetensors)")
    asg = sub.add_parser("assign", help="top-k nearest centres of every embedded sample")
    asg.add_argument("--bank", required=True, help="bank folder written by extract")
    asg.add_argument("--centres", help="centres file (default <bank>/centres.safetensors)")
    asg.add_argument("--top-k", type=int, help="centres per sample (10)")
    asg.add_argument("--out", help="labels folder (default <bank>/labels)")
    ocr = sub.add_parser("ocr", help="word-class labels of images from their texts")
    ocr.add_argument("--list", help="`image_path text_path` lines")
    ocr.add_argument("--root", help="folder the list paths are relative to (and stay in)")
    ocr.add_argument("--vocab", help="vocabulary: one word per line, id = line number")
    ocr.add_argument("--max-tags", type=int, help="labels per image at most (100)")
    ocr.add_argument("--shard-size", type=int, help="images per labels file (4096)")
    ocr.add_argument("--out", required=True, help="labels folder to write or complete")
    for action in (ex, cl, asg, ocr):
        action.add_argument("--config", help="YAML of the action's config")
        action.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")


def _config(schema: type, args: argparse.Namespace):
    flags = [f"{key}={getattr(args, flag)}" for flag, key in FLAGS[args.action].items()
             if getattr(args, flag, None) is not None]  # fmt: skip
    if args.action == "extract" and args.teacher_path is not None:
        flags.append("teacher.source=transformers")
    return load_config(schema, args.config, flags + list(args.overrides))


def _extract(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from encoder.concepts.extract import ExtractConfig, extract

    cfg = _config(ExtractConfig, args)
    summary = extract(cfg, args.out)
    write_config(cfg, Path(args.out) / "extract.yaml")
    print(json.dumps({"bank": args.out, **asdict(summary)}))
    return 3 if summary.failed else 0


def _cluster(args: argparse.Namespace) -> int:
    from encoder.concepts.cluster import ClusterConfig, cluster

    cfg = _config(ClusterConfig, args)
    out = Path(args.out or Path(args.bank) / "centres.safetensors")
    meta = cluster(args.bank, cfg, out)
    write_config(cfg, out.with_suffix(".yaml"))
    print(json.dumps({"centres": str(out), **meta}))
    return 0


def _assign(args: argparse.Namespace) -> int:
    from encoder.concepts.assign import AssignConfig, assign

    cfg = _config(AssignConfig, args)
    centres = args.centres or Path(args.bank) / "centres.safetensors"
    out = Path(args.out or Path(args.bank) / "labels")
    counts = assign(args.bank, centres, cfg, out)
    write_config(cfg, out / "assign.yaml")
    print(json.dumps({"labels": str(out), **counts}))
    return 0


def _ocr(args: argparse.Namespace) -> int:
    from encoder.concepts.ocr_labels import OcrConfig, ocr_labels

    cfg = _config(OcrConfig, args)
    counts = ocr_labels(cfg, args.out)
    write_config(cfg, Path(args.out) / "ocr.yaml")
    print(json.dumps({"labels": args.out, **counts}))
    return 3 if counts["failed"] else 0


ACTIONS = {"extract": _extract, "cluster": _cluster, "assign": _assign, "ocr": _ocr}


def run(args: argparse.Namespace) -> int:
    try:
        return ACTIONS[args.action](args)
    # every step's input errors (ListError, StoreError, TeacherError, VocabularyError, ...) are
    # ValueErrors that name their file or setting; ImportError: faiss is missing
    except (ConfigError, ValueError, OSError, ImportError) as exc:
        print(f"ovmllm concepts {args.action}: {exc}", file=sys.stderr)
        return 1
