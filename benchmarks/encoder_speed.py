"""OneVision-Encoder forward cost: dense frames vs codec budgets, packed vs padded batches.

One random-weight model (base size unless --size, fp32, CPU), timed in the same run:
(a) 64 dense frames at 224 px (16,384 tokens), (b) codec budgets of 512/1024/2048/4096 patches,
(c) 8 dense frames (2,048 tokens); the ratio of (a) to each. Then one batch of 8 clips of
512, 1024, 2048, 4096, 1024, 512, 256 and 2048 tokens, packed (block-diagonal attention, no
padding) vs padded to the longest clip (the compute a padded implementation pays; its padded
rows are not masked here because only the time is measured). Each case runs in a fresh process
so its peak resident memory can be reported.

    python benchmarks/encoder_speed.py [--size base] [--layers N] [--repeats 1]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import time

import torch

CLIPS = [512, 1024, 2048, 4096, 1024, 512, 256, 2048]


def _inputs(lengths: list[int], patch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    n = sum(lengths)
    patches = torch.randn(n, 3, patch, patch, generator=gen)
    positions = torch.stack(
        [torch.randint(0, 64, (n,), generator=gen), torch.randint(0, 16, (n,), generator=gen),
         torch.randint(0, 16, (n,), generator=gen)], 1
    )  # fmt: skip
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)
    return patches, positions, cu


def _case(args: tuple[str, int | None, list[int], int]) -> tuple[float, float]:
    """Run in a fresh process: build the model, time forward on `lengths`; (seconds, peak MiB)."""
    size, layers, lengths, repeats = args
    from encoder import OneVisionEncoderConfig, OneVisionEncoderModel

    torch.manual_seed(0)
    extra = {"num_hidden_layers": layers} if layers else {}
    model = OneVisionEncoderModel(OneVisionEncoderConfig.from_size(size, **extra)).eval()
    patches, positions, cu = _inputs(lengths, model.config.patch_size)
    with torch.inference_mode():
        model.features(*_inputs([64], model.config.patch_size))  # warm-up
        start = time.perf_counter()
        for _ in range(repeats):
            model.forward_packed(patches, positions, cu)
        seconds = (time.perf_counter() - start) / repeats
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return seconds, peak_mib


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="base")
    parser.add_argument("--layers", type=int, default=None, help="fewer blocks for a quick run")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    cases = {
        "(a) 64 dense frames @224": [16384],
        "(b) codec 512": [512],
        "(b) codec 1024": [1024],
        "(b) codec 2048 (12.5%)": [2048],
        "(b) codec 4096": [4096],
        "(c) 8 dense frames @224": [2048],
        "packed 8 clips": CLIPS,
        "padded 8 clips": [max(CLIPS)] * len(CLIPS),
    }
    ctx = mp.get_context("spawn")
    results = {}
    for name, lengths in cases.items():
        with ctx.Pool(1) as pool:
            results[name] = pool.apply(_case, ((args.size, args.layers, lengths, args.repeats),))
        print(f"  measured {name}: {results[name][0]:.2f} s", flush=True)
    dense = results["(a) 64 dense frames @224"][0]
    print(f"\nOneVision-Encoder {args.size}, fp32, CPU ({torch.get_num_threads()} threads)")
    header = ["tokens", "seconds", "(a)/this", "tok/s", "peak MiB"]
    print(f"{'case':28s} " + " ".join(f"{h:>9s}" for h in header))
    for name, lengths in cases.items():
        seconds, peak = results[name]
        real = sum(CLIPS) if name.startswith("padded") else sum(lengths)
        row = [f"{sum(lengths):9d}", f"{seconds:9.2f}", f"{dense / seconds:9.2f}"]
        row += [f"{real / seconds:9.0f}", f"{peak:9.0f}"]
        print(f"{name:28s} " + " ".join(row))
    packed, padded = results["packed 8 clips"][0], results["padded 8 clips"][0]
    pad_tokens = max(CLIPS) * len(CLIPS) - sum(CLIPS)
    print(f"\npacked vs padded: {padded / packed:.2f}x tokens/s")
    print(f"padding tokens: packed 0, padded {pad_tokens}")
    codec = results["(b) codec 2048 (12.5%)"][0]
    print(f"12.5% codec budget (2048 of 16,384) vs 64 dense frames: {dense / codec:.2f}x faster")


if __name__ == "__main__":
    main()
