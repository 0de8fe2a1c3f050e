"""Two CPU ranks (gloo) with sharded centres against one process holding all centres: the same
loss, the same encoder gradients after DDP's averaging, each rank's centre gradient and
optimizer step equal to its slice of the one-process ones (never averaged), centres outside the
DDP module. One spawn of two processes runs every scenario; the tests read its results."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from train.centres import build_centre_banks, build_centre_optimizer
from train.cluster_loss import ClusterDiscriminationLoss, ClusterLossConfig

HEADS = {"image": 10, "video": 7}  # classes per head
LABELS = {"image": 5, "video": 4}  # labels per sample
ROWS = {"image": 7, "video": 4}  # global batch per head
# rows of each rank: uneven, and rank 1 has no video sample at all
SPLIT = {"image": [(0, 3), (3, 7)], "video": [(0, 4), (4, 4)]}
CONFIGS = {  # sample rate 1 (no negatives to draw), filter on, 3 of 5 / 2 of 4 labels drawn
    "image": ClusterLossConfig(num_draw=3, sample_rate=1.0),
    "video": ClusterLossConfig(num_draw=2, sample_rate=1.0, weight=0.5),
}
SAMPLED = {"image": ClusterLossConfig(num_draw=3, sample_rate=0.4)}
IN, D, STEP, SEED = 6, 4, 11, 5


def assert_close_to_scale(actual: torch.Tensor, expected: torch.Tensor, rel: float = 1e-5):
    """Equal up to rounding relative to the largest entry (a softmax denominator summed in one
    piece or in two shards rounds differently; gradients' cancellations magnify it)."""
    scale = expected.abs().max().item() if expected.numel() else 0.0
    torch.testing.assert_close(actual, expected, rtol=rel, atol=rel * scale)


def global_batch() -> tuple[dict, dict]:
    g = torch.Generator().manual_seed(0)
    inputs = {h: torch.randn(ROWS[h], IN, generator=g) for h in HEADS}
    labels = {h: torch.stack([torch.randperm(HEADS[h], generator=g)[: LABELS[h]]
                              for _ in range(ROWS[h])]) for h in HEADS}  # fmt: skip
    return inputs, labels


def run_step(encoder: nn.Module, banks, inputs: dict, labels: dict, rank: int, world: int) -> dict:
    """One step as a trainer runs it: one encoder call for all heads, the loss, backward, the
    centres' optimizer step. Returns what the tests compare."""
    rows = {h: inputs[h] if world == 1 else inputs[h][slice(*SPLIT[h][rank])] for h in HEADS}
    lab = {h: labels[h] if world == 1 else labels[h][slice(*SPLIT[h][rank])] for h in HEADS}
    out = encoder(torch.cat([rows[h] for h in HEADS]))
    emb = dict(zip(HEADS, out.split([rows[h].shape[0] for h in HEADS]), strict=True))
    for e in emb.values():
        e.retain_grad()
    loss = ClusterDiscriminationLoss(CONFIGS, seed=SEED)(emb, lab, banks, step=STEP)
    loss.total.backward()
    opt = build_centre_optimizer(banks, lr=0.1, weight_decay=0.05)
    result = {
        "loss": loss.total.detach(),
        "encoder_grads": [p.grad.clone() for p in encoder.parameters()],
        "embedding_grads": {h: emb[h].grad.clone() for h in HEADS},
        "centre_grads": {h: banks[h].weight.grad.clone() for h in HEADS},
    }
    opt.step()
    result["centres_after_step"] = {h: banks[h].weight.detach().clone() for h in HEADS}
    return result


def make_encoder() -> nn.Module:
    torch.manual_seed(0)
    return nn.Linear(IN, D)


def worker(rank: int, world: int, port: int, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)  # fmt: skip
    inputs, labels = global_batch()
    banks = build_centre_banks(HEADS, D, rank=rank, world_size=world, seed=SEED)
    ddp = nn.parallel.DistributedDataParallel(make_encoder())
    result = run_step(ddp, banks, inputs, labels, rank, world)
    ddp_params = {id(p) for p in ddp.parameters()}
    result["centres_in_ddp"] = any(id(p) in ddp_params for p in banks.parameters())
    # Partial FC proper: sampled negatives differ per rank, but the loss is one number everywhere
    sampled = ClusterDiscriminationLoss(SAMPLED, seed=SEED)
    rows = slice(*SPLIT["image"][rank])
    emb = torch.randn(ROWS["image"], D, generator=torch.Generator().manual_seed(1))[rows]
    args = ({"image": emb}, {"image": labels["image"][rows]}, {"image": banks["image"]})
    result["sampled"] = [sampled(*args, step=s).total for s in (STEP, STEP, STEP + 1)]
    torch.save(result, Path(out) / f"rank{rank}.pt")
    del ddp  # before the group goes: a DDP reducer freed after it can hang the process's exit
    dist.barrier()
    dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[dict, list[dict]]:
    out = tmp_path_factory.mktemp("two_ranks")
    ranks = mp.start_processes(worker, args=(2, free_port(), str(out)), nprocs=2, join=False,
                               start_method="spawn")  # fmt: skip
    deadline = time.monotonic() + 120
    while not ranks.join(timeout=1):
        if time.monotonic() > deadline:
            for process in ranks.processes:
                process.kill()
            pytest.fail("the two ranks did not finish within 120 s")
    inputs, labels = global_batch()
    banks = build_centre_banks(HEADS, D, seed=SEED)
    single = run_step(make_encoder(), banks, inputs, labels, rank=0, world=1)
    return single, [torch.load(out / f"rank{r}.pt") for r in (0, 1)]


def test_two_ranks_give_the_loss_of_one_process(runs):
    single, ranks = runs
    for result in ranks:
        torch.testing.assert_close(result["loss"], single["loss"])


def test_ddp_averaged_encoder_gradients_equal_the_one_process_gradients(runs):
    single, ranks = runs
    for result in ranks:
        for ours, ref in zip(result["encoder_grads"], single["encoder_grads"], strict=True):
            assert_close_to_scale(ours, ref)


def test_a_rank_hands_world_size_times_its_rows_gradient_to_its_encoder(runs):
    """(DDP then divides the summed encoder gradient by the world size.)"""
    single, ranks = runs
    for rank, result in enumerate(ranks):
        for head in HEADS:
            ref = single["embedding_grads"][head][slice(*SPLIT[head][rank])]
            assert_close_to_scale(result["embedding_grads"][head], 2 * ref)


def test_centre_shards_keep_their_own_gradients_and_steps(runs):
    single, ranks = runs
    assert not any(result["centres_in_ddp"] for result in ranks)
    for head, classes in HEADS.items():
        half = (classes + 1) // 2  # rank 0 holds the extra class
        for key in ("centre_grads", "centres_after_step"):
            full = single[key][head]
            assert_close_to_scale(ranks[0][key][head], full[:half])
            assert_close_to_scale(ranks[1][key][head], full[half:])
    # an average of the two image shards' gradients would have been detected
    g0, g1 = ranks[0]["centre_grads"]["image"], ranks[1]["centre_grads"]["image"]
    assert not torch.allclose(g0, (g0 + g1) / 2)


def test_sampled_negatives_give_one_loss_on_all_ranks_keyed_by_step(runs):
    _, ranks = runs
    first, replay, later = ranks[0]["sampled"]
    assert all(torch.equal(a, b) for a, b in zip(*(r["sampled"] for r in ranks), strict=True))
    assert torch.equal(first, replay) and not torch.equal(first, later)
