"""Real DeepSpeed engines on CPU (gloo) on the tiny model and the toy data: learning under
ZeRO-2 and ZeRO-3, frozen parts untouched, per-part learning rates, bad rows counted, export
round trip, exact resume, a kill during a save, LoRA merge."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from ovmllm.data.dataset import MixtureDataset, Sample
from ovmllm.data.mixture import MixtureConfig, SourceConfig, epoch_order
from ovmllm.model import OVMLLMForCausalLM
from tests.train.conftest import ROOT, child_env, learning_stage, toy_sources
from train.config import load_stage
from train.heldout import heldout_loss
from train.lora import apply_lora
from train.metrics import read_metrics
from train.recipe import train


@pytest.mark.parametrize("zero", [2, 3])
def test_stage_learns_keeps_frozen_parts_and_exports(zero, toy_data, init_folder, tmp_path):
    # the training file plus rows that must be skipped: a missing image, nothing to learn
    data = tmp_path / "train.jsonl"
    bad = [
        {"id": "no-such-image", "image": "images/missing.png",
         "conversations": [{"from": "human", "value": "<image>\nHi"},
                           {"from": "gpt", "value": "Hello."}]},
        {"id": "no-answer", "conversations": [{"from": "human", "value": "Hi"}]},
    ]  # fmt: skip
    rows = (toy_data / "train.jsonl").read_text()
    data.write_text(rows + "".join(json.dumps(r) + "\n" for r in bad))
    sources = toy_sources(data)
    sources["sources"][0]["root"] = str(toy_data)

    heldout = toy_data / "heldout.jsonl"
    stage = learning_stage(
        tmp_path, init_folder, data, zero, data=sources, eval_data=str(heldout), eval_every=12
    )
    summary = train(load_stage(stage))

    assert summary["steps"] == 24 and summary["world_size"] == 1
    assert set(summary["rejected_ids"]["media_failed"]) == {"no-such-image"}
    assert sum(summary["rejected"].values()) >= 2  # 96 samples cover the 46-row file twice
    assert {i for ids in summary["rejected_ids"].values() for i in ids} == {
        "no-such-image",
        "no-answer",
    }
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(1, 25))
    first, last = (sum(r["loss"] for r in part) / 6 for part in (rows[:6], rows[-6:]))
    assert last < first - 0.5, (first, last)
    # per-part learning rates are the configured ones (constant schedule after 1 warmup step)
    assert all(r["lr"]["connector"] == 2e-3 and r["lr"]["llm"] == 1e-3 for r in rows)
    assert (tmp_path / "run" / "loss.png").stat().st_size > 0

    before = OVMLLMForCausalLM.from_pretrained(init_folder).eval()
    after = OVMLLMForCausalLM.from_pretrained(tmp_path / "run" / "export").eval()
    assert heldout_loss(after, heldout) < heldout_loss(before, heldout) - 0.5
    # the in-training evaluation (steps 12 and 24) saw the same model on the same samples
    assert [r["step"] for r in rows if "heldout_loss" in r] == [12, 24]
    assert rows[-1]["heldout_loss"] == pytest.approx(heldout_loss(after, heldout), rel=1e-4)
    tower_before, tower_after = before.tower.state_dict(), after.tower.state_dict()
    assert all(torch.equal(tower_before[k], tower_after[k]) for k in tower_before)
    connector_before, connector_after = before.connector.state_dict(), after.connector.state_dict()
    assert not any(torch.equal(connector_before[k], connector_after[k]) for k in connector_before)
    assert after.processor.chat.cfg.system_prompt == "Answer briefly."  # recorded override
    assert (tmp_path / "run" / "export" / "stage_config.yaml").is_file()


@pytest.mark.parametrize("zero", [2, 3])
def test_stop_and_resume_gives_the_losses_of_a_straight_run(zero, toy_data, init_folder, tmp_path):
    """A schedule that changes every step and LoRA dropout: scheduler and RNG must resume too."""
    data = toy_data / "train.jsonl"
    common = dict(
        max_steps=8, save_every=4, grad_accum=2, batch_size=2,
        schedule={"name": "cosine", "warmup_steps": 3},
        lora={"parts": ["llm"], "r": 4, "dropout": 0.3},
    )  # fmt: skip
    straight = tmp_path / "straight"
    straight.mkdir()
    train(load_stage(learning_stage(straight, init_folder, data, zero, **common)))
    parted = tmp_path / "parted"
    parted.mkdir()
    path = learning_stage(parted, init_folder, data, zero, **common)
    first = train(load_stage(path, ["stop_after=3"]))  # stops between saves
    assert first["steps"] == 3 and first["export"] is None
    second = train(load_stage(path, ["resume=auto"]))
    assert second["steps"] == 8
    a = read_metrics(straight / "run" / "metrics.jsonl")
    b = read_metrics(parted / "run" / "metrics.jsonl")
    assert [r["step"] for r in b] == list(range(1, 9))
    assert len({r["lr"]["llm"] for r in a}) == 7  # warmup, then cosine (1.0 twice)
    assert [(r["loss"], r["lr"]) for r in a] == [(r["loss"], r["lr"]) for r in b]
    wa = OVMLLMForCausalLM.from_pretrained(straight / "run" / "export").state_dict()
    wb = OVMLLMForCausalLM.from_pretrained(parted / "run" / "export").state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    # a fresh run never lands on another run's checkpoints; a resume keeps the batch geometry
    with pytest.raises(FileExistsError, match="resume=auto"):
        train(load_stage(path))
    with pytest.raises(ValueError, match="would not line up"):
        train(load_stage(path, ["resume=auto", "grad_accum=1"]))


KILL_IN_SAVE = """
import os, signal, sys
import train.checkpoint as checkpoint
from train.config import load_stage
from train.recipe import train

write = checkpoint.write_trainer_state
def write_or_die(folder, state):
    if state["step"] == 6:  # the shards of step 6 are on disk, the checkpoint is not complete
        os.kill(os.getpid(), signal.SIGKILL)
    write(folder, state)
checkpoint.write_trainer_state = write_or_die
train(load_stage(sys.argv[1]))
"""


def test_a_kill_during_save_resumes_from_the_previous_checkpoint(toy_data, init_folder, tmp_path):
    path = learning_stage(
        tmp_path, init_folder, toy_data / "train.jsonl", 2, max_steps=8, save_every=3, batch_size=2
    )
    killed = subprocess.run(
        [sys.executable, "-c", KILL_IN_SAVE, str(path)],
        cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert killed.returncode == -9, killed.stderr[-2000:]
    checkpoints = tmp_path / "run" / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == [".tmp-step_0000006", "step_0000003"]
    resumed = train(load_stage(path, ["resume=auto"]))
    assert resumed["steps"] == 8
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step_0000006", "step_0000008"]
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(1, 9))  # steps 4-5 were redone, once


def test_lora_trains_merges_and_reloads_with_the_same_logits(toy_data, init_folder, tmp_path):
    changes = dict(
        trainability={
            "base_lr": 5e-3,
            "parts": {
                "connector": {"train": True},
                "llm": {"train": True},
                "tower": {"train": True},
            },
        },
        lora={"parts": ["llm", "tower"], "r": 4, "alpha": 8},
        max_steps=4,
        wandb={"project": "ovmllm-test"},  # no key here: offline, in the run folder
    )
    path = learning_stage(tmp_path, init_folder, toy_data / "train.jsonl", 2, **changes)
    summary = train(load_stage(path))
    trainable = summary["trainable_parameters"]
    assert trainable["llm"] < 20_000 and trainable["tower"] < 20_000  # adapters only
    assert list((tmp_path / "run" / "wandb").glob("offline-run-*"))

    # the unmerged model: a fresh copy with the same LoRA wrapping and the trained weights
    cfg = load_stage(path)
    merged = OVMLLMForCausalLM.from_pretrained(tmp_path / "run" / "export").eval()
    unmerged = OVMLLMForCausalLM(merged.config)
    apply_lora(unmerged, cfg.lora)
    shards = tmp_path / "run" / "checkpoints" / "step_0000004" / "deepspeed"
    unmerged.load_state_dict(torch.load(shards / "mp_rank_00_model_states.pt")["module"])
    unmerged.eval()
    lora_b = [p for n, p in unmerged.named_parameters() if "lora_B" in n]
    assert lora_b and any(float(p.detach().abs().max()) > 0 for p in lora_b)  # the adapters trained
    assert not any("lora" in k for k in merged.state_dict())

    dataset = MixtureDataset(MixtureConfig([SourceConfig(data=str(toy_data / "heldout.jsonl"))]),
                             merged.processor)  # fmt: skip
    sample = next(s for s in dataset.stream(0) if isinstance(s, Sample))
    ids = torch.tensor([sample.encoded.input_ids])
    with torch.no_grad():
        a = unmerged(ids, visual=sample.visual).logits
        b = merged(ids, visual=sample.visual).logits
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_two_ranks_with_and_without_media_under_zero3_do_not_hang(toy_data, init_folder, tmp_path):
    """Rank 0 gets an image-only and a video-only micro-batch per step (14 and 16 px patches),
    rank 1 only text; the tower trains and every parameter is partitioned (ZeRO-3)."""
    media = [json.loads(line) for line in (toy_data / "train.jsonl").read_text().splitlines()]
    images = [r for r in media if r.get("image")]
    videos = [r for r in media if r.get("video")]
    n = 16
    mixture = MixtureConfig([SourceConfig(data="x")], seed=0)
    order = epoch_order(mixture, [n], 0)[:, 1]
    rows: list[dict] = [{}] * n
    for position, row in enumerate(order):
        if position % 2:  # rank 1's share: text only
            rows[row] = {"id": f"text-{position}", "conversations": [
                {"from": "human", "value": f"Say the number {position}."},
                {"from": "gpt", "value": f"{position}."}]}  # fmt: skip
        else:  # rank 0's share: its first micro-batch an image, its second a video
            rows[row] = dict(images[position] if position % 4 == 0 else videos[position % 3])
    data = tmp_path / "mixed.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ds = json.loads((ROOT / "configs/deepspeed/zero3.json").read_text())
    ds["zero_optimization"]["stage3_param_persistence_threshold"] = 0
    (tmp_path / "zero3_all.json").write_text(json.dumps(ds))
    sources = {"seed": 0, "sources": [{"name": "mixed", "data": str(data), "root": str(toy_data)}]}
    path = learning_stage(
        tmp_path, init_folder, data, 3, data=sources, batch_size=1, grad_accum=2, max_steps=4,
        deepspeed=str(tmp_path / "zero3_all.json"),
        eval_data=str(toy_data / "heldout.jsonl"),  # 14 samples over 2 ranks, media mixed
        trainability={"base_lr": 1e-3, "parts": {
            "connector": {"train": True}, "llm": {"train": True}, "tower": {"train": True}}},
    )  # fmt: skip
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
         "-m", "ovmllm", "train", str(path)],
        cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    assert summary["world_size"] == 2 and summary["steps"] == 4 and not summary["rejected"]
    rows_logged = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert all(r["samples"] == 4 and r["loss"] == r["loss"] for r in rows_logged)  # not NaN
    assert 0 < rows_logged[-1]["heldout_loss"] < 20
    before = OVMLLMForCausalLM.from_pretrained(init_folder).tower.state_dict()
    after = OVMLLMForCausalLM.from_pretrained(tmp_path / "run" / "export").tower.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert any(".layers.0." in k for k in changed)  # the partitioned tower trained


def test_bf16_with_gradient_checkpointing_trains_and_exports_bf16(
    toy_data, init_folder, tmp_path, monkeypatch
):
    from train import recipe

    built = []  # the model the engine trains, to read its dtypes after the run
    initial_model = recipe.initial_model
    monkeypatch.setattr(
        recipe, "initial_model", lambda cfg: built.append(initial_model(cfg)) or built[-1]
    )
    changes = dict(
        precision="bf16",
        gradient_checkpointing=True,
        max_steps=3,
        save_every=2,
        trainability={"base_lr": 1e-3, "parts": {
            "connector": {"train": True}, "llm": {"train": True}, "tower": {"train": True}}},
    )  # fmt: skip
    path = learning_stage(tmp_path, init_folder, toy_data / "train.jsonl", 2, **changes)
    summary = train(load_stage(path))
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert summary["steps"] == 3 and all(0 < r["loss"] < 20 for r in rows)
    export = OVMLLMForCausalLM.from_pretrained(tmp_path / "run" / "export")
    assert export.llm.get_input_embeddings().weight.dtype == torch.bfloat16
    # weights trained in bf16, but the LLM's RoPE inverse frequencies stayed float32 (DeepSpeed
    # casts parameters only): in bf16, Qwen3-0.6B's angles at position 10,000 are off by 11.5 rad
    (model,) = built
    assert model.llm.get_input_embeddings().weight.dtype == torch.bfloat16
    rope = [m.inv_freq for m in model.llm.modules() if hasattr(m, "inv_freq")]
    assert rope and all(inv_freq.dtype == torch.float32 for inv_freq in rope)
    for step in ("step_0000002", "step_0000003"):  # each checkpoint carries the resolved config
        saved = tmp_path / "run" / "checkpoints" / step / "stage_config.yaml"
        assert load_stage(saved).precision == "bf16"


def test_dataloader_workers_give_the_same_steps(toy_data, init_folder, tmp_path):
    losses = {}
    for workers in (0, 2):
        run = tmp_path / f"w{workers}"
        run.mkdir()
        path = learning_stage(run, init_folder, toy_data / "train.jsonl", 2, max_steps=3)
        train(load_stage(path, [f"num_workers={workers}"]))
        losses[workers] = [r["loss"] for r in read_metrics(run / "run" / "metrics.jsonl")]
    assert losses[0] == losses[2]
