"""What a checkpoint folder holds and how it is trusted, without an engine: RNG states in
safetensors (no pickle) restored exactly, the SHA-256 manifest refusing a changed folder with
the file named, saves by time, the stop-signal handlers and the rejection-rate guard."""

from __future__ import annotations

import os
import random
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from ovmllm.data.dataset import Rejections
from tests.train.test_stage_parts import ShardWriter
from train.checkpoint import BatchGeometry, Checkpointer, TrainState
from train.manifest import MANIFEST_FILE, CheckpointIntegrityError
from train.rng_state import load_rng_state, save_rng_state
from train.stopping import TooManyRejected, check_rejection_rate, stop_signals


def draws() -> tuple:
    return random.random(), random.gauss(0, 1), np.random.randn(3).tolist(), torch.rand(3).tolist()


def test_rng_states_round_trip_exactly_through_a_file_that_is_no_pickle(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    random.gauss(0, 1), np.random.randn()  # a cached gaussian in both Mersenne Twisters
    path = tmp_path / "rng_rank0.safetensors"
    save_rng_state(path)
    expected = draws()
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    load_rng_state(path)
    assert draws() == expected
    header_size = int.from_bytes(path.read_bytes()[:8], "little")  # safetensors: JSON header
    assert path.read_bytes()[8 : 8 + header_size].startswith(b"{")


@pytest.fixture
def saved(tmp_path) -> Checkpointer:
    checkpointer = Checkpointer(ShardWriter(), tmp_path / "checkpoints", rank=0, total_steps=9)
    checkpointer.save(TrainState(BatchGeometry(1, 1, 1), step=3))
    return checkpointer


def change(folder: Path, how: str) -> str:
    """Alter the checkpoint the way a bad copy or a stranger would; the file's name."""
    shard = folder / "deepspeed"
    if how == "byte":
        data = bytearray(shard.read_bytes())
        data[2] ^= 1
        shard.write_bytes(bytes(data))
    elif how == "truncate":
        shard.write_bytes(shard.read_bytes()[:-1])
    elif how == "delete":
        (folder / "rng_rank0.safetensors").unlink()
        return "rng_rank0.safetensors"
    else:
        (folder / "extra.pt").write_bytes(b"x")
        return "extra.pt"
    return "deepspeed"


@pytest.mark.parametrize("how", ["byte", "truncate", "delete", "add"])
def test_a_changed_checkpoint_is_refused_naming_the_file(saved, how):
    folder = saved.root / "step_0000003"
    assert (folder / MANIFEST_FILE).is_file() and not (folder / "rng_rank0.pt").exists()
    name = change(folder, how)
    with pytest.raises(CheckpointIntegrityError, match=f"step_0000003: {name} "):
        saved.resume("auto", TrainState(BatchGeometry(1, 1, 1)))


def test_saves_by_time_as_well_as_by_steps(tmp_path, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr("train.checkpoint.time.monotonic", lambda: clock[0])
    checkpointer = Checkpointer(
        ShardWriter(), tmp_path / "c", rank=0, total_steps=100, save_every=10,
        save_every_minutes=2.0, keep=10,
    )  # fmt: skip
    state, saved = TrainState(BatchGeometry(1, 1, 1)), []
    for step in range(1, 25):
        clock[0] += 50  # 50 s per step: 2 minutes pass during step 3, then 3 steps after a save
        state.step = step
        if checkpointer.maybe_save(state, checkpointer.time_to_save()):
            saved.append(step)
    assert saved == [3, 6, 9, 10, 13, 16, 19, 20, 23]  # whichever comes first
    other_rank = Checkpointer(ShardWriter(), tmp_path / "d", 1, total_steps=9, save_every_minutes=1)
    clock[0] += 3600
    assert not other_rank.time_to_save()  # rank 0's clock decides for every rank


def test_stop_signals_raise_a_flag_then_restore_the_handlers():
    before = signal.getsignal(signal.SIGTERM)
    with stop_signals() as stop:
        assert not stop.requested
        os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.signal == "SIGUSR1"  # the first one is the one reported
    assert signal.getsignal(signal.SIGTERM) is before
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_the_rejection_guard_waits_for_enough_samples_then_names_the_reasons():
    rejections = Rejections()
    for i in range(3):
        rejections.add("media_failed", f"row-{i}")
    rejections.add("no_supervised_tokens", "row-9")
    check_rejection_rate(rejections, read=39, max_fraction=0.05, after=40)  # too early
    check_rejection_rate(rejections, read=80, max_fraction=0.05, after=40)  # 4 of 80 is 5 %
    with pytest.raises(TooManyRejected, match=r"4 of the first 79 .*media_failed: 3, no_sup"):
        check_rejection_rate(rejections, read=79, max_fraction=0.05, after=40)
