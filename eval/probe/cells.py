"""What the encoder sees in each probe cell (mode, budget, control).

Budgets are patches of the probe canvas (PAPER.md section 2: 224 px centre crop, 14-px patches,
64 frames x 16 x 16). Cells are planned by the ablation's rules (`eval.ablate.plan_cells`), so
budgets mean the same in both: frame-equivalents = patches / patches per canvas frame.
- `codec`: the saliency top-K of the 64 sampled frames, K = budget (controls apply here);
- `random`: K patches drawn uniformly (the random policy);
- `frames`: budget / 256 dense frames on the same crop, cut at the tower's own patch, so a grid
  tower gets equal frame-equivalents at its own patch count (SigLIP2 at 224/16: 196 a frame).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from encoder.codec import CodecConfig
from encoder.packed import PackedVisualTokens
from encoder.towers import TowerSpec
from eval.ablate import MODES, AblationConfig, Cell, Geometry, plan_cells
from ovmllm.config import ConfigError


def frame_side(codec: CodecConfig, spec: TowerSpec) -> int:
    """Frames-mode side: the codec canvas, down to a whole number of the tower's patch and
    merge windows (224 stays 224 for patch 14 and for patch 16 with a 2 x 2 merge)."""
    unit = spec.patch_size * spec.spatial_merge
    if codec.canvas_size < unit:
        raise ConfigError(f"codec.canvas_size={codec.canvas_size} is smaller than one "
                          f"{unit} px window of tower {spec.name}")  # fmt: skip
    return codec.canvas_size // unit * unit


def plan_probe_cells(
    budgets: list[int],
    modes: list[str],
    controls: list[str],
    codec: CodecConfig,
    spec: TowerSpec,
    encoder: str | Path,
) -> list[Cell]:
    """The cells in run order; a grid tower asked for codec patches is refused by name."""
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        raise ConfigError(f"modes: {', '.join(unknown)} not in {', '.join(MODES)}")
    takes_codec = "codec" in spec.kinds
    refused = sorted(set(modes) - {"frames"})
    if not takes_codec and (refused or controls):
        asked = ", ".join([*refused, *(f"control {c}" for c in controls)])
        raise ConfigError(
            f"encoder {encoder} is a {spec.name} tower, which takes whole frames only: "
            f"{asked} not available (use --modes frames without --controls)"
        )
    geometry = Geometry(
        patches_per_frame=codec.patches_per_frame,
        frame_side=frame_side(codec, spec),
        full_first=codec.full_frame == "first",
        codec=takes_codec,
    )
    plan = AblationConfig(budget_patches=list(budgets), modes=list(modes), controls=list(controls))
    return plan_cells(plan, geometry)


@dataclass(frozen=True)
class Producer:
    """One cell's video → packed item; plain data, so DataLoader workers can run it."""

    kind: str
    """`codec` (selection, by policy and controls) or `frames` (uniform dense frames)."""
    codec: CodecConfig
    """Selection settings, or for frames the canvas they are cut from."""
    frames: int = 0
    """Dense frames (frames mode)."""

    def __call__(self, path: str | Path) -> PackedVisualTokens:
        from encoder.codec.pipeline import select_patches, uniform_frames  # decodes: PyAV

        if self.kind == "frames":
            return uniform_frames(path, self.frames, self.codec).to_packed()
        return select_patches(path, self.codec).to_packed()

    def settings(self) -> dict:
        """Everything that decides the item (a feature store's key)."""
        return {"kind": self.kind, "frames": self.frames, **self.codec.selection_settings()}


def cell_producer(cell: Cell, codec: CodecConfig, spec: TowerSpec) -> Producer:
    if cell.mode == "frames":
        frames, side = int(cell.budget), frame_side(codec, spec)
        per_frame = (side // spec.patch_size) ** 2
        canvas = replace(codec, canvas_size=side, patch=spec.patch_size,
                         budget=frames * per_frame, policy="saliency", controls=[])  # fmt: skip
        return Producer("frames", canvas, frames)
    policy = "random" if cell.mode == "random" else "saliency"
    controls = [cell.control] if cell.control else []
    return Producer("codec", replace(codec, budget=cell.patches, policy=policy, controls=controls))
