"""A process's random streams (python, numpy, torch CPU and CUDA) as one safetensors file.

The torch generators' states are uint8 tensors; python's and numpy's Mersenne-Twister states
are JSON in the file's metadata (every number exact). Nothing is pickled, so loading runs no
code from the file.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, safe_open, save_file


def save_rng_state(path: str | Path) -> None:
    version, mt_state, gauss_next = random.getstate()
    name, keys, pos, has_gauss, cached_gaussian = np.random.get_state(legacy=True)
    python = {"version": version, "state": mt_state, "gauss_next": gauss_next}
    numpy = {"bit_generator": name, "keys": keys.tolist(), "pos": pos,
             "has_gauss": has_gauss, "cached_gaussian": cached_gaussian}  # fmt: skip
    metadata = {"python": json.dumps(python), "numpy": json.dumps(numpy)}
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors["cuda"] = torch.cuda.get_rng_state()
    save_file(tensors, str(path), metadata=metadata)


def load_rng_state(path: str | Path) -> None:
    """Restore the streams `save_rng_state` wrote (CUDA's only where both runs have CUDA)."""
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
    tensors = load_file(str(path))
    python = json.loads(metadata["python"])
    random.setstate((python["version"], tuple(python["state"]), python["gauss_next"]))
    numpy = json.loads(metadata["numpy"])
    np.random.set_state(
        (numpy["bit_generator"], np.array(numpy["keys"], dtype=np.uint32), numpy["pos"],
         numpy["has_gauss"], numpy["cached_gaussian"])
    )  # fmt: skip
    torch.set_rng_state(tensors["torch"])
    if "cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["cuda"])
