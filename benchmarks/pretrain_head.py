"""Step time and memory of the cluster-discrimination head (train/cluster_loss.py with the
sharded centres of train/centres.py) at 100k and 1M classes, D = 256 and 512, on 1 and 2 CPU
ranks (gloo), and how they grow with the class count.

One head with the reference's settings (8 of 10 labels drawn, sample rate 0.1, filter 0.75,
margin 0.3, scale 64) and its own AdamW. The encoder is replaced by a leaf tensor of random
embeddings, so the figures are the head's alone: forward (gather, label draw, negative
sampling, logits, distributed softmax), backward (down to the embeddings and the centres) and
the centres' optimizer step. The batch is per rank (`--batch`, the global batch grows with the
ranks, as in training). Each configuration runs in fresh processes, one per rank, each with
`--threads` threads (1 by default: two ranks then use the two cores of the project machine
and the 1-rank figures are per core too); a step's time is the slowest rank's, the median over
`--steps` after `--warmup` steps. Memory per rank: peak resident set (VmHWM, which includes
the centres' initialisation) and the resident set after the last step (VmRSS), both above the
process's footprint before the centres were built, next to the analytic size of weight,
gradient and AdamW state. Ratios are against the first configuration of the same run.

    python benchmarks/pretrain_head.py [--classes 100000 1000000] [--dims 256 512]
        [--ranks 1 2] [--batch 64] [--steps 2] [--warmup 1] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from train.centres import build_centre_banks, build_centre_optimizer
from train.cluster_loss import ClusterDiscriminationLoss, ClusterLossConfig

LABELS_PER_SAMPLE = 10  # the reference's image and video label rows (PAPER.md section 4)


def memory_kib() -> dict[str, int]:
    """VmRSS and VmHWM of this process, in KiB (Linux)."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields


def rank_main(rank: int, world: int, port: int, cfg: dict, out: str) -> None:
    torch.set_num_threads(cfg["threads"])
    if world > 1:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                                world_size=world)  # fmt: skip
    gen = torch.Generator().manual_seed(rank)
    classes, dim, batch = cfg["classes"], cfg["dim"], cfg["batch"]
    embeddings = torch.randn(batch, dim, generator=gen, requires_grad=True)
    labels = torch.randint(0, classes, (batch, LABELS_PER_SAMPLE), generator=gen)
    before = memory_kib()["VmRSS"]
    start = time.perf_counter()
    banks = build_centre_banks({"image": classes}, dim, rank=rank, world_size=world)
    optimizer = build_centre_optimizer(banks, lr=1e-3, weight_decay=0.05)
    init_s = time.perf_counter() - start
    loss_fn = ClusterDiscriminationLoss({"image": ClusterLossConfig()}, seed=0)
    phases = []
    for step in range(cfg["warmup"] + cfg["steps"]):
        if world > 1:
            dist.barrier()
        t0 = time.perf_counter()
        loss = loss_fn({"image": embeddings}, {"image": labels}, banks, step=step).total
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        optimizer.step()
        optimizer.zero_grad()
        embeddings.grad = None
        t3 = time.perf_counter()
        if step >= cfg["warmup"]:
            phases.append([t1 - t0, t2 - t1, t3 - t2])
    mem = memory_kib()
    result = {"init_s": init_s, "phases": phases, "num_local": banks["image"].num_local,
              "rss_kib": mem["VmRSS"] - before, "peak_kib": mem["VmHWM"] - before,
              "loss": loss.item()}  # fmt: skip
    Path(out, f"rank{rank}.json").write_text(json.dumps(result))
    if world > 1:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_config(cfg: dict, world: int) -> dict:
    """One configuration in `world` fresh processes; the slowest rank's phases per step."""
    with tempfile.TemporaryDirectory() as out:
        mp.start_processes(rank_main, args=(world, free_port(), cfg, out), nprocs=world,
                           start_method="spawn")  # fmt: skip
        ranks = [json.loads(Path(out, f"rank{r}.json").read_text()) for r in range(world)]
    steps = [[max(r["phases"][i][p] for r in ranks) for p in range(3)]
             for i in range(cfg["steps"])]  # fmt: skip
    phase = [statistics.median(s[p] for s in steps) for p in range(3)]
    return {
        "phase_s": phase,
        "step_s": statistics.median(sum(s) for s in steps),
        "init_s": max(r["init_s"] for r in ranks),
        "num_local": max(r["num_local"] for r in ranks),
        "peak_gib": max(r["peak_kib"] for r in ranks) / 2**20,
        "rss_gib": max(r["rss_kib"] for r in ranks) / 2**20,
        "loss": ranks[0]["loss"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--classes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--dims", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch", type=int, default=64, help="samples per rank")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per rank")
    args = parser.parse_args()

    print(f"one head, batch {args.batch}/rank, 8 of {LABELS_PER_SAMPLE} labels drawn, sample "
          f"rate 0.1, AdamW; {args.threads} thread(s)/rank; median of {args.steps} steps after "
          f"{args.warmup} warm-up; memory per rank above the pre-centre footprint")  # fmt: skip
    header = (f"{'classes':>9} {'D':>4} {'ranks':>5} {'local':>8} {'fwd s':>7} {'bwd s':>7} "
              f"{'opt s':>7} {'step s':>7} {'x base':>7} {'state GiB':>9} {'peak GiB':>8} "
              f"{'rss GiB':>7} {'init s':>6}")  # fmt: skip
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print(header)
    results, base = {}, None
    for dim in args.dims:
        for world in args.ranks:
            for classes in args.classes:
                cfg = {"classes": classes, "dim": dim, "batch": args.batch, "steps": args.steps,
                       "warmup": args.warmup, "threads": args.threads}  # fmt: skip
                r = run_config(cfg, world)
                results[classes, dim, world] = r
                base = base or r["step_s"]
                state_gib = 4 * r["num_local"] * dim * 4 / 2**30  # weight, grad, exp_avg(_sq)
                fwd, bwd, opt = r["phase_s"]
                print(f"{classes:>9} {dim:>4} {world:>5} {r['num_local']:>8} {fwd:>7.3f} "
                      f"{bwd:>7.3f} {opt:>7.3f} {r['step_s']:>7.3f} {r['step_s'] / base:>7.2f} "
                      f"{state_gib:>9.2f} {r['peak_gib']:>8.2f} {r['rss_gib']:>7.2f} "
                      f"{r['init_s']:>6.2f}", flush=True)  # fmt: skip

    print(f"load average after: {os.getloadavg()[0]:.2f} (other jobs slow the figures down)")
    small, large = min(args.classes), max(args.classes)
    if small != large:
        print(f"\ngrowth from {small:,} to {large:,} classes ({large / small:.0f}x):")
        for dim in args.dims:
            for world in args.ranks:
                a, b = results[small, dim, world], results[large, dim, world]
                step, peak = b["step_s"] / a["step_s"], b["peak_gib"] / a["peak_gib"]
                print(f"  D {dim:>3}, {world} rank(s): step {step:5.2f}x, peak/rank {peak:5.2f}x")
    if 1 in args.ranks and 2 in args.ranks:
        print("\n2 ranks vs 1 (per rank, batch per rank fixed):")
        for dim in args.dims:
            for classes in args.classes:
                a, b = results[classes, dim, 1], results[classes, dim, 2]
                step, peak = b["step_s"] / a["step_s"], b["peak_gib"] / a["peak_gib"]
                print(
                    f"  {classes:>9,} classes, D {dim:>3}: step {step:5.2f}x, peak/rank {peak:.2f}x"
                )


if __name__ == "__main__":
    main()
