"""Attentive-probe speed: feature extraction in clips/s (codec vs frames vs random at one equal
patch budget; selection alone and selection + frozen encoder), and head training epochs/s from
the memory-mapped cache.

A generated action set (ovmllm/data/temporal_actions.py) and a random-weight OneVision-Encoder
(--size, optionally fewer --layers) in a temporary folder; the device is the probe's own (GPU in
bf16 when there is one, else CPU fp32). Every figure comes from the same run.

    python benchmarks/probe_speed.py [--size base] [--layers N] [--videos 16] [--budget 2048]
        [--workers 2] [--batch-size 8] [--epochs 5]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from encoder.onevision import OneVisionEncoderConfig, OneVisionEncoderModel
from eval.probe.cells import cell_producer, plan_probe_cells
from eval.probe.config import probe_codec
from eval.probe.encoder import load_encoder
from eval.probe.features import FeatureStore, extract
from eval.probe.lists import read_list
from eval.probe.train import HeadTrainConfig, train_head
from ovmllm.data.temporal_actions import ActionConfig, write_action_dataset


def _data(root: Path, videos: int) -> list[Path]:
    per_family = max(1, videos // 2)
    cfg = ActionConfig(train_per_family=per_family, val_per_family=0, min_frames=100,
                       max_frames=150, width=160, height=120)  # fmt: skip
    folder = write_action_dataset(root / "data", cfg)
    return [sample.path for sample in read_list(folder / "train.txt")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="base", help="OneVision-Encoder size (random weights)")
    parser.add_argument("--layers", type=int, default=None, help="fewer blocks for a quick run")
    parser.add_argument("--videos", type=int, default=16)
    parser.add_argument("--budget", type=int, default=2048, help="patches per clip")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers (selection)")
    parser.add_argument("--batch-size", type=int, default=8, help="clips per encoder call")
    parser.add_argument("--epochs", type=int, default=5, help="head epochs to time")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        paths = _data(root, args.videos)
        extra = {"num_hidden_layers": args.layers} if args.layers else {}
        torch.manual_seed(0)
        model = OneVisionEncoderModel(OneVisionEncoderConfig.from_size(args.size, **extra))
        model.save_pretrained(root / "encoder")
        encoder = load_encoder(root / "encoder")
        codec = probe_codec()
        cells = plan_probe_cells([args.budget], ["codec", "frames", "random"], [], codec,
                                 encoder.spec, "benchmark")  # fmt: skip
        layers = model.config.num_hidden_layers
        print(f"OneVision-Encoder {args.size} ({layers} layers), {encoder.device} "
              f"{encoder.tower.dtype}, {torch.get_num_threads()} threads; {len(paths)} clips "
              f"of 160x120, 100-150 frames; budget {args.budget} patches; "
              f"{args.workers} workers, batch {args.batch_size}")  # fmt: skip
        codec_rows = None
        for cell in cells:
            producer = cell_producer(cell, codec, encoder.spec)
            start = time.perf_counter()
            for path in paths:
                producer(path)
            selection = len(paths) / (time.perf_counter() - start)
            store = FeatureStore.open(root / "stores" / cell.name, "float16")
            start = time.perf_counter()
            done = extract(encoder, producer, paths, store, args.batch_size, args.workers,
                           progress=False)  # fmt: skip
            total = len(paths) / (time.perf_counter() - start)
            print(f"  {cell.name:18s} selection alone {selection:6.2f} clips/s | "
                  f"selection + encoder {total:6.2f} clips/s")  # fmt: skip
            if cell.mode == "codec":
                codec_rows = done.rows
        features = FeatureStore.open(root / "stores" / cells[0].name, "float16").features
        rows = codec_rows
        labels = np.arange(len(rows)) % 10
        cfg = HeadTrainConfig(epochs=args.epochs)
        start = time.perf_counter()
        train_head(features, (rows, labels), (rows, labels), 10, cfg, encoder.device)
        cached = args.epochs / (time.perf_counter() - start)
        in_memory = np.array(features)
        start = time.perf_counter()
        train_head(in_memory, (rows, labels), (rows, labels), 10, cfg, encoder.device)
        held = args.epochs / (time.perf_counter() - start)
        print(f"  head ({len(paths)} clips x {features.shape[1]} x {features.shape[2]}, "
              f"batch {cfg.batch_size}): {cached:.2f} epochs/s from the memory-mapped cache, "
              f"{held:.2f} from memory (each epoch includes its val pass)")  # fmt: skip


if __name__ == "__main__":
    main()
