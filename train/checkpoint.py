"""Resumable checkpoints: `<output_dir>/checkpoints/step_NNNNNNN/`, complete or absent.

`TrainState` is what a run has done besides the weights (step, next data position, counters);
`Checkpointer` decides when to save (every `save_every` steps or `save_every_minutes`,
whichever comes first, and when a stop signal arrived; the last `keep` kept; a run ends early
after `stop_after` steps) and writes a checkpoint atomically: every rank writes its DeepSpeed
shards (model, optimiser, scheduler) and its RNG states (`rng_state.py`, no pickle) into
`.tmp-step_NNNNNNN/`; rank 0 adds `trainer_state.json`, the ranks hash every file into
`manifest.sha256` (`manifest.py`, checked before a resume loads anything), and rank 0 renames
the folder. A folder named `step_*` is therefore always complete, the previous one is deleted
only after the new one exists, and a run killed while saving leaves a `.tmp-*` folder that
`resume=auto` ignores (and the next save clears). The output folder must be on a filesystem all
ranks share (rank 0 renames what every rank wrote).

State that lives outside the DeepSpeed engine and differs per rank (the class-centre shards of
encoder pretraining, `train/pretrain/`) rides along through `RankFiles`: each rank writes its
own files into the same temporary folder before the manifest is made, and reads them back at
resume after the manifest was checked, so they are saved and restored as one unit with the rest.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch

from encoder.files import TMP_PREFIX, commit, temp_path, write_text_atomic
from ovmllm.data.dataset import Rejections
from train.manifest import verify_manifest, write_manifest
from train.rng_state import load_rng_state, save_rng_state

PREFIX = "step_"
STATE_FILE = "trainer_state.json"
DS_TAG = "deepspeed"


@dataclass
class BatchGeometry:
    """What a checkpoint's steps, schedule and ZeRO shards are laid out for."""

    world_size: int
    batch_size: int
    grad_accum: int


@dataclass
class TrainState:
    """The counters of a run; `state_dict()` is `trainer_state.json` (the keys of the first
    format; a checkpoint written before manifests and safetensors RNG files is refused at
    resume all the same)."""

    geometry: BatchGeometry
    step: int = 0
    position: int = 0  # the next global sample position (the whole data state)
    tokens: int = 0  # tokens seen
    loss: float = math.nan  # of the last step
    rejections: Rejections = field(default_factory=Rejections)

    def state_dict(self) -> dict:
        return {
            **vars(self.geometry),
            "step": self.step,
            "position": self.position,
            "tokens": self.tokens,
            "loss": self.loss,
            "rejected": dict(self.rejections.counts),
            "rejected_ids": self.rejections.ids,
        }

    def load_state_dict(self, state: dict) -> None:
        self.step, self.position, self.tokens = state["step"], state["position"], state["tokens"]
        self.loss = state.get("loss", math.nan)
        self.rejections = Rejections()
        self.rejections.counts.update(state["rejected"])
        self.rejections.ids.update(state["rejected_ids"])


class RankFiles(Protocol):
    """Per-rank state outside the engine, saved into and loaded from a checkpoint folder."""

    def save(self, folder: Path) -> None:
        """Write this rank's files into `folder` (names distinct from every other rank's)."""

    def load(self, folder: Path) -> None:
        """Restore this rank's state from the files `save` wrote into `folder`."""


def _barrier() -> None:
    if torch.distributed.is_initialized():
        torch.distributed.barrier()


def rng_file(rank: int) -> str:
    return f"rng_rank{rank}.safetensors"


def write_trainer_state(folder: Path, state: dict) -> None:
    write_text_atomic(folder / STATE_FILE, json.dumps(state, indent=1))


def complete_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoint folders, oldest first."""
    found = [p for p in Path(root).glob(f"{PREFIX}*") if (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: int(p.name.removeprefix(PREFIX)))


def find_checkpoint(resume: str, root: Path) -> Path | None:
    """`resume`: "" (start fresh), "auto" (the newest complete checkpoint, if any) or a folder.
    A fresh start is refused where `root` holds checkpoints of an earlier run (the recipe asks
    first, before it writes anything into the run's folder)."""
    if not resume:
        if complete_checkpoints(root):
            raise FileExistsError(
                f"{root} holds checkpoints of an earlier run: resume=auto continues it; "
                "otherwise choose another output_dir or delete them"
            )
        return None
    if resume == "auto":
        found = complete_checkpoints(root)
        return found[-1] if found else None
    path = Path(resume)
    if not (path / STATE_FILE).is_file():
        raise FileNotFoundError(f"resume={resume}: not a complete checkpoint (no {STATE_FILE})")
    return path


class Checkpointer:
    """When and how a run saves. Every rank makes the same calls (saving is collective)."""

    def __init__(
        self,
        engine,
        root: Path,
        rank: int,
        *,
        total_steps: int,
        save_every: int = 0,
        save_every_minutes: float = 0.0,
        stop_after: int = 0,
        keep: int = 2,
        files: dict[str, str] | None = None,
        rank_files: RankFiles | None = None,
    ) -> None:
        """`save_every`: steps between saves, `save_every_minutes`: minutes between saves by
        rank 0's clock (0 = neither: at the end only); `stop_after`: steps this run makes
        before it saves and stops (0 = until total_steps; the schedule is unchanged); `files`
        (name → text) go beside the shards (the resolved stage config); `rank_files`: this
        rank's state outside the engine, saved and loaded with each checkpoint."""
        self.engine = engine
        self.root = Path(root)
        self.rank = rank
        self.total_steps = total_steps
        self.save_every = save_every
        self.save_every_minutes = save_every_minutes
        self.stop_after = stop_after
        self.keep = keep
        self.files = files or {}
        self.rank_files = rank_files
        self.start_step = 0
        self.resumed_from: Path | None = None
        self.last_save_time = time.monotonic()

    def resume(self, resume: str, state: TrainState) -> Path | None:
        """Load the checkpoint `resume` names (model, optimiser, scheduler, this rank's RNG and
        `state`) after checking that it can continue this run; None for a fresh start."""
        checkpoint = find_checkpoint(resume, self.root)
        if checkpoint is not None:
            verify_manifest(checkpoint)  # before anything of it is unpickled
            saved = json.loads((checkpoint / STATE_FILE).read_text())
            saved_geometry = {k: saved.get(k) for k in vars(state.geometry)}
            if saved_geometry != vars(state.geometry):
                raise ValueError(
                    f"{checkpoint} was saved with {saved_geometry}, this run has "
                    f"{vars(state.geometry)}: steps, schedule and ZeRO shards would not line up"
                )
            load_path, _ = self.engine.load_checkpoint(str(checkpoint), tag=DS_TAG)
            if load_path is None:
                raise RuntimeError(f"DeepSpeed could not load the checkpoint in {checkpoint}")
            load_rng_state(checkpoint / rng_file(self.rank))
            if self.rank_files is not None:
                self.rank_files.load(checkpoint)
            state.load_state_dict(saved)
        self.start_step, self.resumed_from = state.step, checkpoint
        self.last_save_time = time.monotonic()
        return checkpoint

    def time_to_save(self) -> bool:
        """Rank 0's vote for a save by time (`save_every_minutes` since the last save or the
        start). Other ranks vote no: the trainer sums the votes in the step's all-reduce, so
        every rank saves after the same step whatever its own clock says."""
        if self.rank != 0 or not self.save_every_minutes:
            return False
        return time.monotonic() - self.last_save_time >= 60 * self.save_every_minutes

    def should_stop(self, state: TrainState) -> bool:
        """This run's share is done (`stop_after`) before the schedule's end."""
        done = state.step - self.start_step
        return bool(self.stop_after) and done >= self.stop_after and state.step < self.total_steps

    def maybe_save(self, state: TrainState, time_due: bool = False) -> Path | None:
        """The periodic save, every `save_every` steps or when the ranks agreed that
        `time_to_save` (the last step is saved by `save_final`)."""
        if state.step >= self.total_steps:
            return None
        if time_due or (self.save_every and state.step % self.save_every == 0):
            return self.save(state)
        return None

    def save_final(self, state: TrainState) -> Path:
        """The run's last checkpoint; nothing to write when nothing trained since the one it
        resumed from."""
        if self.resumed_from is not None and state.step == self.start_step:
            return self.resumed_from
        return self.save(state)

    def save(self, state: TrainState) -> Path:
        """Collective. Returns the complete checkpoint folder."""
        final = self.root / f"{PREFIX}{state.step:07d}"
        tmp = temp_path(final, unique=False)  # every rank writes its shards into the same one
        if self.rank == 0:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        _barrier()
        self.engine.save_checkpoint(str(tmp), tag=DS_TAG, save_latest=False)
        save_rng_state(tmp / rng_file(self.rank))
        if self.rank_files is not None:
            self.rank_files.save(tmp)
        if self.rank == 0:
            for name, text in self.files.items():
                (tmp / name).write_text(text)
            write_trainer_state(tmp, state.state_dict())
        _barrier()
        write_manifest(tmp, self.rank == 0)
        if self.rank == 0:
            commit(tmp, final)
            for old in complete_checkpoints(self.root)[: -self.keep]:
                shutil.rmtree(old)
            for stale in self.root.glob(f"{TMP_PREFIX}*"):
                shutil.rmtree(stale, ignore_errors=True)
        _barrier()
        self.last_save_time = time.monotonic()
        return final
