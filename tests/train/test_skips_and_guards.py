"""One-rank runs on a real DeepSpeed engine for what a run does with rows it cannot learn from:
a step with no supervised token leaves the optimizer untouched, held-out rejections are
counted, too many rejections stop the run, only unreadable media count as `media_failed`, and
a fresh run refuses an occupied output_dir before writing into it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from encoder.codec import VideoDecodeError
from encoder.producers import ImageDecodeError
from ovmllm.data.dataset import MixtureDataset, Rejected
from ovmllm.data.mixture import MixtureConfig, SourceConfig, epoch_order
from ovmllm.model import OVMLLMForCausalLM
from tests.train.conftest import learning_stage, toy_sources
from train.config import load_stage
from train.engine import lr_multiplier
from train.metrics import read_metrics
from train.recipe import train
from train.stopping import TooManyRejected

CONNECTOR_ONLY = {"base_lr": 2e-3, "parts": {"connector": {"train": True}}}  # a cheap step


def image_rows(toy_data: Path) -> list[dict]:
    """The toy set's image rows (the connector learns from those; media under toy_data)."""
    rows = [json.loads(line) for line in (toy_data / "train.jsonl").read_text().splitlines()]
    return [r for r in rows if r.get("image")]


def no_answer_row(i: int) -> dict:
    return {"id": f"no-answer-{i}", "conversations": [{"from": "human", "value": "Hi"}]}


def rows_at_positions(make: dict[int, dict], n: int, path: Path) -> Path:
    """A data file whose epoch-0 position p (mixture seed 0) holds make[p]."""
    order = epoch_order(MixtureConfig([SourceConfig(data="x")], seed=0), [n], 0)[:, 1]
    rows: list[dict] = [{}] * n
    for position, row in enumerate(order):
        rows[row] = make[position]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def optimizer_state(checkpoint: Path) -> list[dict]:
    """AdamW's state per group (ZeRO-2, one rank: the whole flat partition) and the fp32
    master weights."""
    shard = checkpoint / "deepspeed" / "zero_pp_rank_0_mp_rank_00_optim_states.pt"
    optim = torch.load(shard, weights_only=False)["optimizer_state_dict"]
    state = optim["base_optimizer_state"]["state"]
    groups = [dict(state[i]) for i in sorted(state)]
    for group, weights in zip(groups, optim["single_partition_of_fp32_groups"], strict=True):
        group["weights"] = weights
    return groups


def test_a_step_without_supervised_tokens_leaves_the_optimizer_as_it_was(
    toy_data, init_folder, tmp_path
):
    # step 2 (positions 2 and 3) holds only rows without an answer: both rejected
    images = image_rows(toy_data)
    make = {p: no_answer_row(p) if p in (2, 3) else images[p] for p in range(6)}
    data = rows_at_positions(make, 6, tmp_path / "rows.jsonl")
    sources = toy_sources(data)
    sources["sources"][0]["root"] = str(toy_data)
    path = learning_stage(
        tmp_path, init_folder, data, 2, data=sources, batch_size=2, max_steps=3, save_every=1,
        keep_checkpoints=3, schedule={"name": "cosine", "warmup_steps": 1},
        trainability=CONNECTOR_ONLY,
        eval_data=str(data), eval_root=str(toy_data),  # held out: the 6 rows, 2 rejected
    )  # fmt: skip
    summary = train(load_stage(path))
    assert summary["rejected"] == {"no_supervised_tokens": 2}
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [r["supervised"] > 0 for r in rows] == [True, False, True]
    checkpoints = tmp_path / "run" / "checkpoints"
    one, two, three = (optimizer_state(checkpoints / f"step_000000{s}") for s in (1, 2, 3))
    for before, after, later in zip(one, two, three, strict=True):
        assert int(before["step"]) == int(after["step"]) == 1 and int(later["step"]) == 2
        for key in ("exp_avg", "exp_avg_sq", "weights"):
            assert torch.equal(before[key], after[key]), key
            assert not torch.equal(after[key], later[key]), key
    # the schedule went on: step 3 has the rate of the schedule's third step
    factor = lr_multiplier(load_stage(path), 3)(2)
    assert rows[2]["lr"]["connector"] == pytest.approx(2e-3 * factor, rel=1e-12)
    assert rows[-1]["heldout_rejected"] == 2


def test_too_many_rejected_rows_stop_the_run_with_the_counts(toy_data, init_folder, tmp_path):
    missing = {"id": "", "image": "images/missing.png", "conversations": [
        {"from": "human", "value": "<image>\nHi"}, {"from": "gpt", "value": "Hello."}]}  # fmt: skip
    images = image_rows(toy_data)
    make = {p: {**missing, "id": f"missing-{p}"} if p < 3 else images[p] for p in range(12)}
    data = rows_at_positions(make, 12, tmp_path / "rows.jsonl")
    sources = toy_sources(data)
    sources["sources"][0]["root"] = str(toy_data)
    path = learning_stage(
        tmp_path, init_folder, data, 2, data=sources, batch_size=2, max_steps=6, save_every=1,
        max_rejected_fraction=0.4, rejection_guard_after=4, trainability=CONNECTOR_ONLY,
    )  # fmt: skip
    # step 1: 2 of 2 rejected (too early to tell), step 2: 3 of 4 (> 40 %)
    with pytest.raises(TooManyRejected, match=r"3 of the first 4 samples .*\(media_failed: 3\)"):
        train(load_stage(path))
    saved = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert saved == ["step_0000001"]  # the step that tripped it is not saved


def test_only_media_that_fail_to_load_are_counted_as_media_failed(toy_data, init_folder, tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not a png")
    row = {"id": "broken", "image": "broken.png", "conversations": [
        {"from": "human", "value": "<image>\nHi"}, {"from": "gpt", "value": "Hello."}]}  # fmt: skip
    data = tmp_path / "rows.jsonl"
    data.write_text(json.dumps(row) + "\n")
    processor = OVMLLMForCausalLM.from_pretrained(init_folder).processor
    dataset = MixtureDataset(MixtureConfig([SourceConfig(data=str(data))]), processor)
    order = dataset.order(0)
    assert dataset.build_at(order, 0, 0) == Rejected(0, "broken", "media_failed")

    def load_failing_with(error):
        def load(*args):
            raise error

        return load

    processor.load = load_failing_with(VideoDecodeError("clip.mp4", "no video stream"))
    assert dataset.build_at(order, 0, 0).reason == "media_failed"
    assert issubclass(ImageDecodeError, ValueError)  # callers catching ValueError still do
    processor.load = load_failing_with(ValueError("tower siglip2 cannot take codec video"))
    with pytest.raises(ValueError, match="cannot take codec video") as raised:
        dataset.build_at(order, 0, 0)  # a setting, not a bad file: no silent rejection
    assert "row 'broken'" in raised.value.__notes__[0]


def test_a_fresh_run_refuses_an_occupied_output_dir_before_writing_into_it(
    toy_data, init_folder, tmp_path
):
    path = learning_stage(tmp_path, init_folder, toy_data / "train.jsonl", 2, max_steps=1)
    earlier = tmp_path / "run" / "checkpoints" / "step_0000004"
    earlier.mkdir(parents=True)
    (earlier / "trainer_state.json").write_text("{}")
    with pytest.raises(FileExistsError, match="resume=auto"):
        train(load_stage(path))
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["checkpoints"]
