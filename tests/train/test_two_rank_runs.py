"""Two ranks started as a scheduler starts them (one process per rank, RANK / WORLD_SIZE in the
environment): a SIGTERM to every rank mid-run saves a checkpoint and exits with 75, and
`resume=auto` then gives the losses of an uninterrupted run; the loss of one step weighs every
supervised token alike whether the global batch is split over ranks or accumulation steps."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ovmllm.data.dataset import MixtureDataset
from tests.train.conftest import ROOT, child_env, learning_stage, toy_sources
from tests.train.test_skips_and_guards import CONNECTOR_ONLY, image_rows, rows_at_positions
from train.config import load_stage
from train.data import StepBatches
from train.metrics import read_metrics
from train.recipe import load_model, train
from train.stopping import EX_TEMPFAIL

STEPS = 5


def text_row(i: int, words: int) -> dict:
    answer = " ".join(["yes"] * words) + "."
    turns = [
        {"from": "human", "value": f"Say yes {words} times."},
        {"from": "gpt", "value": answer},
    ]
    return {"id": f"text-{i}", "conversations": turns}


@pytest.fixture(scope="module")
def stage(toy_data, init_folder, tmp_path_factory) -> Path:
    """Each group of 4 positions: image, long text, image, short text; so 2 ranks and 2
    accumulation steps split a step into micro-batches with unequal supervised tokens."""
    tmp = tmp_path_factory.mktemp("ranks")
    images = image_rows(toy_data)
    make = {p: text_row(p, 20 if p % 4 == 1 else 1) if p % 2 else images[p] for p in range(24)}
    data = rows_at_positions(make, 24, tmp / "rows.jsonl")
    sources = toy_sources(data)
    sources["sources"][0]["root"] = str(toy_data)
    return learning_stage(
        tmp, init_folder, data, 2, data=sources, batch_size=2, max_steps=STEPS,
        trainability=CONNECTOR_ONLY, save_every_minutes=0,
    )  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(path: Path, overrides: list[str], logs: Path) -> list[subprocess.Popen]:
    """Both ranks of a run, each its own process (what torchrun or a scheduler starts)."""
    env = {**child_env(), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()),
           "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2"}  # fmt: skip
    logs.mkdir(parents=True, exist_ok=True)
    return [
        subprocess.Popen(
            [sys.executable, "-m", "ovmllm", "train", str(path), *overrides],
            cwd=ROOT,
            env={**env, "RANK": str(rank), "LOCAL_RANK": str(rank)},
            stdout=(logs / f"rank{rank}.out").open("w"),
            stderr=(logs / f"rank{rank}.err").open("w"),
        )
        for rank in (0, 1)
    ]


def wait(ranks: list[subprocess.Popen], logs: Path) -> list[int]:
    codes = [rank.wait(timeout=600) for rank in ranks]
    assert set(codes) <= {0, EX_TEMPFAIL}, (logs / "rank0.err").read_text()[-3000:]
    return codes


@pytest.fixture(scope="module")
def straight(stage) -> Path:
    """The uninterrupted 2-rank run (every step saved: the optimizer state after step 1)."""
    out = stage.parent / "straight"
    overrides = [f"output_dir={out}", "save_every=1", f"keep_checkpoints={STEPS}"]
    assert wait(launch(stage, overrides, out / "logs"), out / "logs") == [0, 0]
    return out


def test_sigterm_to_every_rank_saves_exits_75_and_resumes_exactly(stage, straight):
    out = stage.parent / "preempted"
    overrides = [f"output_dir={out}", "save_every=0"]
    ranks = launch(stage, overrides, out / "logs")
    after_step = random.Random(11).randint(1, STEPS - 3)  # a step chosen once, reproducibly
    while len(read_metrics(out / "metrics.jsonl")) < after_step:
        assert all(rank.poll() is None for rank in ranks), "the run ended before the signal"
        time.sleep(0.02)
    for rank in ranks:  # as a scheduler does: every rank, mid-step
        os.kill(rank.pid, signal.SIGTERM)
    assert wait(ranks, out / "logs") == [EX_TEMPFAIL, EX_TEMPFAIL]
    said = (out / "logs" / "rank0.err").read_text()
    assert f"ovmllm train {stage} output_dir={out} save_every=0 resume=auto" in said
    (saved,) = (out / "checkpoints").iterdir()  # the one the stop wrote (save_every=0)
    assert after_step <= int(saved.name.removeprefix("step_")) < STEPS
    assert not (out / "export").exists()

    resumed = launch(stage, [*overrides, "resume=auto"], out / "logs2")
    assert wait(resumed, out / "logs2") == [0, 0]
    expected = read_metrics(straight / "metrics.jsonl")
    got = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in got] == list(range(1, STEPS + 1))
    assert [(r["loss"], r["lr"]) for r in got] == [(r["loss"], r["lr"]) for r in expected]


def adam_first_moments(checkpoint: Path, world_size: int) -> list[torch.Tensor]:
    """AdamW's exp_avg per group after the first step, (1 - beta1) x the gradient: the ranks'
    ZeRO-2 partitions of each flat group joined, padding dropped by the caller."""
    ranks = []
    for rank in range(world_size):
        shard = checkpoint / "deepspeed" / f"zero_pp_rank_{rank}_mp_rank_00_optim_states.pt"
        state = torch.load(shard, weights_only=False)["optimizer_state_dict"]
        per_group = state["base_optimizer_state"]["state"]
        ranks.append([per_group[i]["exp_avg"] for i in sorted(per_group)])
    groups = zip(*ranks, strict=True)
    return [torch.cat(parts) for parts in groups]


def test_the_loss_weighs_tokens_alike_over_ranks_and_accumulation(stage, straight, tmp_path):
    one_rank = train(load_stage(stage, [f"output_dir={tmp_path}", "grad_accum=2", "max_steps=1"]))
    assert one_rank["world_size"] == 1
    # the same 4 samples, split differently: unequal supervised tokens per micro-batch
    cfg = load_stage(stage)
    dataset = MixtureDataset(cfg.data, load_model(cfg).processor)
    for world_size, accum in ((1, 2), (2, 1)):
        split = [
            StepBatches(dataset, 0, 2, accum, cfg.max_length, 1, r, world_size) for r in (0, 1)
        ]
        counts = [mb.num_supervised for rank in split[:world_size] for mb in rank[0].micro_batches]
        assert len(set(counts)) == 2, counts
    a = adam_first_moments(tmp_path / "checkpoints" / "step_0000001", 1)
    b = adam_first_moments(straight / "checkpoints" / "step_0000001", 2)
    for x, y in zip(a, b, strict=True):
        n = min(len(x), len(y))  # each layout pads its flat group to its own multiple
        assert float(x[n:].abs().sum()) == float(y[n:].abs().sum()) == 0
        assert float(x[:n].abs().max()) > 0
        assert float((x[:n] - y[:n]).norm()) <= 1e-5 * float(x[:n].norm())
