"""`ovmllm chat --model DIR [--image X ...] [--video Y] "question"`: one answer, greedy."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="checkpoint folder")
    parser.add_argument("--image", action="append", default=[], help="an image (repeatable)")
    parser.add_argument("--video", help="a video")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("question")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="media.* / chat.* settings replacing the checkpoint's (`ovmllm config processor`)",
    )


def run(args: argparse.Namespace) -> int:
    import torch

    from encoder.codec import VideoDecodeError
    from ovmllm.config import ConfigError, load_config
    from ovmllm.model import OVMLLMForCausalLM
    from ovmllm.multimodal_processor import ProcessorOverrides

    try:
        overrides = load_config(ProcessorOverrides, None, list(args.overrides))
    except (ConfigError, ValueError) as exc:
        print(f"ovmllm chat: {exc}", file=sys.stderr)
        return 1
    if not (Path(args.model) / "config.json").is_file():  # not a hub id: no download attempt
        print(f"ovmllm chat: --model {args.model}: no checkpoint folder there", file=sys.stderr)
        return 1
    model = OVMLLMForCausalLM.from_pretrained(args.model, processor_overrides=overrides).eval()
    processor = model.processor
    if processor is None:
        print(f"ovmllm chat: {args.model} has no processor_config.json", file=sys.stderr)
        return 1
    try:
        items = processor.load(args.image, args.video)
    except (ValueError, VideoDecodeError) as exc:
        print(f"ovmllm chat: {exc}", file=sys.stderr)
        return 1
    placeholders = "".join("<image>\n" for _ in args.image) + ("<video>\n" if args.video else "")
    turn = [{"from": "human", "value": placeholders + args.question}]
    prompt = torch.tensor([processor.prompt(turn, items)])
    new = model.generate(prompt, visual=items, max_new_tokens=args.max_new_tokens, do_sample=False)
    print(processor.tokenizer.decode(new[0], skip_special_tokens=True).strip())
    return 0
