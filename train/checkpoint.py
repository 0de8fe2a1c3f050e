"""Resumable checkpoints: `<output_dir>/checkpoints/step_NNNNNNN/`, complete or absent.

Every rank writes its DeepSpeed shards (model, optimiser, scheduler) and its RNG states into
`.tmp-step_NNNNNNN/`; rank 0 then adds `trainer_state.json` (step, the next data position,
counters) and renames the folder. A folder named `step_*` is therefore always complete, the
previous one is deleted only after the new one exists, and a run killed while saving leaves a
`.tmp-*` folder that `resume=auto` ignores (and the next save clears). The output folder must
be on a filesystem all ranks share (rank 0 renames what every rank wrote).
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import torch

PREFIX = "step_"
STATE_FILE = "trainer_state.json"
DS_TAG = "deepspeed"


def _barrier() -> None:
    if torch.distributed.is_initialized():
        torch.distributed.barrier()


def rng_state() -> dict:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def write_trainer_state(folder: Path, state: dict) -> None:
    tmp = folder / f".{STATE_FILE}.tmp"
    tmp.write_text(json.dumps(state, indent=1))
    tmp.replace(folder / STATE_FILE)


def save_checkpoint(
    engine, root: Path, step: int, state: dict, rank: int, keep: int, files: dict | None = None
) -> Path:
    """Collective: every rank calls it. `files` (name → text) are written by rank 0 beside the
    shards (the resolved stage config). Returns the complete checkpoint folder."""
    final = root / f"{PREFIX}{step:07d}"
    tmp = root / f".tmp-{final.name}"
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    _barrier()
    engine.save_checkpoint(str(tmp), tag=DS_TAG, save_latest=False)
    torch.save(rng_state(), tmp / f"rng_rank{rank}.pt")
    _barrier()
    if rank == 0:
        for name, text in (files or {}).items():
            (tmp / name).write_text(text)
        write_trainer_state(tmp, state)
        old = root / f".old-{final.name}"
        if final.exists():  # the same step saved again: swap, so one copy is always complete
            final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
        for old in complete_checkpoints(root)[:-keep]:
            shutil.rmtree(old)
        for stale in [*root.glob(".tmp-*"), *root.glob(".old-*")]:
            shutil.rmtree(stale, ignore_errors=True)
    _barrier()
    return final


def complete_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoint folders, oldest first."""
    found = [p for p in Path(root).glob(f"{PREFIX}*") if (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: int(p.name.removeprefix(PREFIX)))


def find_checkpoint(resume: str, root: Path) -> Path | None:
    """`resume`: "" (start fresh), "auto" (the newest complete checkpoint, if any) or a folder."""
    if not resume:
        return None
    if resume == "auto":
        found = complete_checkpoints(root)
        return found[-1] if found else None
    path = Path(resume)
    if not (path / STATE_FILE).is_file():
        raise FileNotFoundError(f"resume={resume}: not a complete checkpoint (no {STATE_FILE})")
    return path


def load_checkpoint(engine, folder: Path, rank: int) -> dict:
    """Restore model, optimiser, scheduler and this rank's RNG; returns the trainer state."""
    load_path, _ = engine.load_checkpoint(str(folder), tag=DS_TAG)
    if load_path is None:
        raise RuntimeError(f"DeepSpeed could not load the checkpoint in {folder}")
    set_rng_state(torch.load(folder / f"rng_rank{rank}.pt", weights_only=False))
    return json.loads((folder / STATE_FILE).read_text())
