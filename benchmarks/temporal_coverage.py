"""What the visual tokens of the generated temporal QA hold: per family, the share of test videos
whose selection has at least one coloured patch after the first frame (the shapes are the only
saturated pixels on the grey backgrounds of event, which_moved, direction and entries), for codec
saliency against the random policy (its chance baseline), measured in the same run. In
which_moved the objects that stay still are coloured too, so there the count is not the mover's.

This is the information an LLM could answer from. The event family's flash is still while shown:
per-frame saliency (motion vectors plus |Y_t - Y_t-1| at each sampled frame) marks it only when a
sampled frame is its first or first-after frame, so its patches are mostly not chosen.

    python benchmarks/temporal_coverage.py [--data runs/quickstart/data/temporal] [--limit 20]

Settings: configs/model/quickstart.yaml (T = 64, 160 px canvas, 100 patches a frame) at each
--budgets frame-equivalents. Without --data, a small dataset is written to a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

FAMILIES = ("event", "which_moved", "direction", "entries")
SATURATED = 0.2  # mean over a patch of (max - min over RGB), pixels in [0, 1]; grey texture: ~0


def coloured_later_patches(item) -> int:
    """Patches after the first sampled frame whose mean saturation is above SATURATED."""
    pixels = item.patches.float().div(255).flatten(2)  # [n, 3, p*p]
    saturation = (pixels.max(1).values - pixels.min(1).values).mean(-1)
    later = item.positions[:, 0] > 0
    return int((saturation[later] > SATURATED).sum())


def processor_for(model_file: str, overrides: list[str]):
    from ovmllm.build import ModelConfig, build_model
    from ovmllm.config import load_config

    return build_model(load_config(ModelConfig, model_file, overrides)).processor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="", help="a temporal QA folder (default: write one)")
    parser.add_argument("--model", default="configs/model/quickstart.yaml")
    parser.add_argument("--budgets", default="2,4", help="frame-equivalents")
    parser.add_argument("--limit", type=int, default=20, help="test videos per family")
    args = parser.parse_args()
    torch.set_num_threads(1)

    from ovmllm.data.temporal import TemporalConfig, write_temporal_dataset

    if args.data:
        data = Path(args.data)
    else:
        cfg = TemporalConfig(
            train_per_family=0, test_per_family=args.limit, families=list(FAMILIES)
        )
        data = write_temporal_dataset(Path(tempfile.mkdtemp()) / "temporal", cfg, workers=2)
    docs = {
        family: [json.loads(line) for line in (data / "test" / f"{family}.jsonl").open()][
            : args.limit
        ]
        for family in FAMILIES
    }
    print(f"{data}: {', '.join(f'{f} {len(d)}' for f, d in docs.items())} test videos")
    print("| family | budget | saliency: videos with a coloured later patch | random | "
          "saliency / random | coloured patches a video, saliency / random |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for budget in args.budgets.split(","):
        counts = {}
        for policy in ("saliency", "random"):
            processor = processor_for(
                args.model,
                [f"media.codec.budget_frames={budget}", f"media.codec.policy={policy}"],
            )
            for family, family_docs in docs.items():
                counts[policy, family] = [
                    coloured_later_patches(processor.load([], data / doc["video"], None)[0])
                    for doc in family_docs
                ]
        for family in FAMILIES:
            shares = {
                policy: sum(n > 0 for n in counts[policy, family]) / len(counts[policy, family])
                for policy in ("saliency", "random")
            }
            means = {p: sum(counts[p, family]) / len(counts[p, family]) for p in shares}
            ratio = shares["saliency"] / shares["random"] if shares["random"] else float("inf")
            print(f"| {family} | {budget} | {shares['saliency']:.0%} | {shares['random']:.0%} | "
                  f"{ratio:.2f} | {means['saliency']:.1f} / {means['random']:.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()
