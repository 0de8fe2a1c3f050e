"""Selection policies and the probe's controls, in one place for every user (training, the
eval plugin, the ablation command, the probe).

A policy decides which candidate patches fill the budget left after whole frames:
`saliency` (the global top-K of PAPER.md section 2) or `random` (the same number drawn
uniformly: the chance baseline of codec selection). Controls change a policy's selection:
`shuffle` permutes the chosen patches' (t, h, w) positions among themselves (pixels kept, so
the model sees the right patches at the wrong places), and `nonsalient:f` takes a fraction f of
the free budget from the lowest-scoring candidates. Everything random is seeded by the video
path, so a selection is the same on every run, worker and machine.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

POLICIES = ("saliency", "random")
SHUFFLE = "shuffle"
NONSALIENT = "nonsalient"


@dataclass(frozen=True)
class Controls:
    """The parsed `codec.controls`."""

    shuffle: bool = False
    nonsalient: float = 0.0  # fraction of the free budget taken from the lowest scores


def parse_controls(controls: list[str]) -> Controls:
    """`codec.controls` as `Controls`; a ValueError naming `codec.controls` and the bad item."""
    shuffle, nonsalient = False, None
    for item in controls:
        name, _, value = str(item).partition(":")
        if name == SHUFFLE and not value and not shuffle:
            shuffle = True
            continue
        if name == NONSALIENT and nonsalient is None:
            try:
                nonsalient = float(value)
            except ValueError:
                nonsalient = float("nan")
            if 0.0 <= nonsalient <= 1.0:
                continue
        raise ValueError(
            f"codec.controls item {item!r} is not `shuffle` or `nonsalient:f` with 0 <= f <= 1 "
            "(each at most once)"
        )
    return Controls(shuffle, nonsalient or 0.0)


def check_policy(policy: str, controls: list[str]) -> Controls:
    """Validate `codec.policy` and `codec.controls` together; the parsed controls."""
    if policy not in POLICIES:
        raise ValueError(f"codec.policy={policy!r} is not one of {', '.join(POLICIES)}")
    parsed = parse_controls(controls)
    if parsed.nonsalient and policy != "saliency":
        # random has no scores to take the lowest of: the control would be a second draw
        raise ValueError(
            f"codec.controls {NONSALIENT}:{parsed.nonsalient} needs codec.policy='saliency', "
            f"not {policy!r}"
        )
    return parsed


def video_rng(path: str, purpose: str) -> np.random.Generator:
    """A generator seeded by the video path string and what it is for: stable across runs and
    processes (Python's hash() is salted per process), and independent between purposes so a
    control does not repeat the random policy's draw."""
    digest = hashlib.sha256(f"{purpose}\0{path}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def random_scores(path: str, shape: tuple[int, ...]) -> np.ndarray:
    """Seeded i.i.d. uniform scores: the top-K of these is a uniform draw of K candidates, so
    the `random` policy goes through the same whole-frame and padding rules as `saliency`."""
    return video_rng(path, "random").random(shape)


def lowest_first(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices of `values` from the lowest up, equal values in the seeded order of `rng`."""
    tie_order = rng.permutation(len(values))
    return np.lexsort((tie_order, values))


def shuffle_positions(path: str, positions: np.ndarray) -> np.ndarray:
    """The rows of `positions` in a seeded order: each patch row gets another patch's position."""
    return positions[video_rng(path, SHUFFLE).permutation(len(positions))]
