"""The pieces of a stage without an engine: config validation, run names, DeepSpeed autos, the
schedule, step-addressed batches (resume by index), the trainer state and the save policy."""

import itertools
import json
import math
from pathlib import Path

import pytest
import torch

from ovmllm.chat_processor import IGNORE_INDEX
from ovmllm.data.dataset import MixtureDataset
from ovmllm.data.mixture import MixtureConfig, SourceConfig
from ovmllm.multimodal_processor import MultimodalProcessor
from tests.train.conftest import ROOT, write_stage
from train.checkpoint import BatchGeometry, Checkpointer, TrainState
from train.config import load_stage
from train.data import StepBatches, micro_batch
from train.engine import deepspeed_config, lr_multiplier
from train.recipe import load_model


def test_stage_needs_exactly_one_model_source(tmp_path):
    path = write_stage(tmp_path / "s.yaml")
    cfg = load_stage(path)
    assert cfg.name == "s" and cfg.output_dir == "runs/s" and cfg.model is not None
    assert cfg.run_name == "s+tiny+x42"  # stage, model YAML, seed
    named = load_stage(path, ["output_dir=elsewhere", "seed=3", "init_from=runs/a", "model=null"])
    assert named.output_dir == "elsewhere" and named.run_name == "s+a+x3"
    with pytest.raises(ValueError, match="exactly one of model"):
        load_stage(path, ["init_from=somewhere"])
    with pytest.raises(ValueError, match="lora on llm"):
        load_stage(path, ["lora.parts=[llm]"])  # the llm is frozen in align
    with pytest.raises(ValueError, match="'llm' not in 'ProcessorOverrides'"):
        load_stage(path, ["processor.llm.size=big"])  # only media.* and chat.* settings


def test_deepspeed_autos_come_from_the_stage(tmp_path):
    cfg = load_stage(write_stage(tmp_path / "s.yaml"), ["batch_size=3", "grad_accum=5"])
    ds = deepspeed_config(cfg, world_size=4)
    assert ds["train_batch_size"] == 60 and ds["train_micro_batch_size_per_gpu"] == 3
    assert ds["gradient_accumulation_steps"] == 5 and ds["bf16"]["enabled"] is False
    assert ds["zero_optimization"]["stage"] == 2
    fixed = json.loads((ROOT / "configs/deepspeed/zero2.json").read_text())
    fixed["gradient_accumulation_steps"] = 2
    (tmp_path / "ds.json").write_text(json.dumps(fixed))
    cfg.deepspeed = str(tmp_path / "ds.json")
    with pytest.raises(ValueError, match="conflicts"):
        deepspeed_config(cfg, world_size=1)


@pytest.mark.parametrize(
    "name,end", [("cosine", 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 15 / 16))),
                 ("linear", 0.1 + 0.9 / 16), ("constant", 1.0)]
)  # fmt: skip
def test_schedule_warms_up_then_decays_to_min_lr(tmp_path, name, end):
    overrides = [f"schedule.name={name}", "schedule.warmup_steps=4", "schedule.min_lr_ratio=0.1"]
    cfg = load_stage(write_stage(tmp_path / "s.yaml"), overrides)
    f = lr_multiplier(cfg, total_steps=20)
    assert [f(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    tail = [f(s) for s in range(4, 20)]
    assert all(a >= b for a, b in itertools.pairwise(tail))
    assert tail[-1] == pytest.approx(end, abs=1e-12)
    ratio_overrides = ["schedule.warmup_steps=0", "schedule.warmup_ratio=0.25"]
    ratio = load_stage(write_stage(tmp_path / "r.yaml"), ratio_overrides)
    assert lr_multiplier(ratio, total_steps=20)(4) == 1.0  # ceil(0.25 x 20) = 5 warmup steps


@pytest.fixture(scope="module")
def toy_batches(toy_data, tmp_path_factory):
    cfg = load_stage(write_stage(tmp_path_factory.mktemp("s") / "s.yaml"))
    processor: MultimodalProcessor = load_model(cfg).processor
    mixture = MixtureConfig([SourceConfig(data=str(toy_data / "train.jsonl"))], seed=3)
    return MixtureDataset(mixture, processor)


def test_a_step_is_addressed_by_position_so_resume_reads_nothing_twice(toy_batches):
    whole = StepBatches(toy_batches, 0, batch_size=2, grad_accum=2, max_length=1024, num_steps=30)
    later = StepBatches(toy_batches, whole.position_after(17), 2, 2, 1024, num_steps=13)
    a, b = whole[17], later[0]
    for x, y in zip(a.micro_batches, b.micro_batches, strict=True):
        assert x.sample_ids == y.sample_ids
        assert all(torch.equal(x.tensors[k], y.tensors[k]) for k in x.tensors)
    # 30 steps x 4 samples run over the 44-row epoch into the next ones
    assert whole.position_after(30) == 120 > whole.epoch_size == 44


def test_ranks_split_a_step_and_together_cover_it(toy_batches):
    ranks = [StepBatches(toy_batches, 0, 2, 2, 1024, 5, rank=r, world_size=2) for r in (0, 1)]
    one = StepBatches(toy_batches, 0, 4, 2, 1024, 5)
    for step in range(5):
        split = {i for r in ranks for mb in r[step].micro_batches for i in mb.sample_ids}
        assert split == {i for mb in one[step].micro_batches for i in mb.sample_ids}


def test_empty_micro_batch_is_one_padding_token():
    micro = micro_batch([], max_length=1024, pad_id=0)
    assert micro.tensors["input_ids"].shape == (1, 1) and micro.num_supervised == 0
    assert int(micro.tensors["labels"][0, 0]) == IGNORE_INDEX and micro.num_tokens == 0


def test_train_state_round_trips_through_trainer_state_json():
    state = TrainState(BatchGeometry(2, 4, 1), step=5, position=40, tokens=900, loss=1.5)
    state.rejections.add("media_failed", "row-7")
    saved = json.loads(json.dumps(state.state_dict()))
    keys = "world_size batch_size grad_accum step position tokens loss rejected rejected_ids"
    assert set(saved) == set(keys.split())  # those of the first format: older checkpoints resume
    again = TrainState(BatchGeometry(2, 4, 1))
    again.load_state_dict(saved)
    assert again == state


class ShardWriter:
    """Stands in for a DeepSpeed engine: one file per save."""

    def save_checkpoint(self, folder: str, tag: str, save_latest: bool) -> None:
        (Path(folder) / tag).write_text("shards")


def test_checkpointer_saves_every_n_keeps_the_last_and_stops_after(tmp_path):
    root = tmp_path / "checkpoints"
    checkpointer = Checkpointer(
        ShardWriter(), root, rank=0, total_steps=10, save_every=3, stop_after=8, keep=2,
        files={"stage_config.yaml": "x: 1\n"},
    )  # fmt: skip
    assert checkpointer.resume("auto", TrainState(BatchGeometry(1, 1, 1))) is None
    (root / ".tmp-step_0000002").mkdir(parents=True)  # left by a run killed while saving
    state, stopped = TrainState(BatchGeometry(1, 1, 1)), None
    for step in range(1, 11):
        state.step = step
        if checkpointer.should_stop(state):
            stopped = step
            break
        checkpointer.maybe_save(state)
    assert stopped == 8
    checkpointer.save_final(state)
    assert sorted(p.name for p in root.iterdir()) == ["step_0000006", "step_0000008"]
    assert (root / "step_0000008" / "stage_config.yaml").read_text() == "x: 1\n"
    with pytest.raises(FileExistsError, match="resume=auto"):  # a fresh run never lands here
        checkpointer.resume("", TrainState(BatchGeometry(1, 1, 1)))
