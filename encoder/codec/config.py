"""Settings of codec patch selection (PAPER.md section 2); defaults are the LLM-data path."""

from __future__ import annotations

from dataclasses import dataclass, field

from encoder.codec.policies import check_policy

CANVAS_MODES = ("letterbox", "crop")
FULL_FRAME_POLICIES = ("first", "iframes", "none")
COMPENSATIONS = ("none", "median", "similarity", "affine")
RESIDUAL_MODES = ("diff", "mc")
FUSIONS = ("mean", "max", "sum", "geomean")
# Canvas size and patch per canvas mode when not given: the LLM path (576 px, 16-px cells,
# 36x36 grid) and the probe path (224 px, 14-px patches, 16x16 grid).
CANVAS_DEFAULTS = {"letterbox": (576, 16), "crop": (224, 14)}


def _check_choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"codec.{key}={value!r} is not one of {', '.join(choices)}")


@dataclass
class CodecConfig:
    """How one video becomes K selected patches.

    `budget` (patches) wins over `budget_frames` (frame-equivalents: K = budget_frames x
    patches per canvas frame) when both are set.
    """

    frames: int = 64
    """T: frames sampled at floor(linspace(0, N-1, T)) of the N decoded ones."""
    canvas: str = "letterbox"
    """`letterbox` (fit, zero padding) or `crop` (shorter side resized, centre crop)."""
    canvas_size: int | None = None
    """Canvas side in px; unset: 576 for letterbox, 224 for crop."""
    patch: int | None = None
    """Patch (cell) side in px on the canvas; unset: 16 for letterbox, 14 for crop."""
    budget_frames: float | None = 8.0
    """Budget in frame-equivalents: K = budget_frames x patches per canvas frame."""
    budget: int | None = None
    """Budget K in patches; wins over budget_frames when set."""
    full_frame: str = "first"
    """Frames kept whole before the top-K: the `first` sampled frame, every sampled I-frame
    (`iframes`), or `none`."""
    policy: str = "saliency"
    """Which candidates fill the budget left after whole frames: `saliency` (the top-K) or
    `random` (as many drawn uniformly, seeded by the video path, padding excluded: the chance
    baseline of codec selection). See `policies.py`."""
    controls: list[str] = field(default_factory=list)
    """Applied after the policy, for the probe's controls: `shuffle` (the chosen patches'
    positions permuted among themselves, pixels kept, seeded by the video path) and
    `nonsalient:f` (a fraction f of the budget left after whole frames taken from the
    lowest-scoring candidates instead of the highest; saliency only)."""
    compensate: str = "median"
    """Camera-motion compensation: `none`, `median`, `similarity` or `affine`."""
    residual: str = "diff"
    """Residual: `diff` (|Y_t - Y_t-1|) or `mc` (|Y_t - motion-compensated prediction|)."""
    fusion: str = "mean"
    """Fusion of the two normalised maps: `mean` (weighted by `residual_weight`), `max`, `sum`
    or `geomean` (these three ignore `residual_weight`)."""
    residual_weight: float = 0.25
    """Weight w of the residual in the `mean` fusion: (motion + w * residual) / (1 + w), each
    map already normalised and clipped; 1.0 is the paper's 1:1 mean. 0.25 (with the residual
    zero on I-frames) agrees best with the reference's own selections (PAPER.md section 2,
    item 12). `max`, `sum` and `geomean` ignore it."""
    motion_floor: float = 1e-6
    """Floor of the 95th-percentile normaliser of the motion map."""
    residual_floor: float = 1.0
    """Floor of the 95th-percentile normaliser of the residual map."""
    threads: int = 1
    """Decoder threads; slice threading only (frame threading makes exported motion vectors
    non-deterministic)."""
    overlap: bool = True
    """Score sampled frames on a helper thread while decoding goes on."""
    max_decode_seconds: float = 300.0
    """A video that takes longer is a VideoDecodeError."""
    reencode_preset: str = "ultrafast"
    """x264 preset of the fallback re-encode for streams without exported vectors (its
    vectors are truncated to whole pixels anyway)."""

    def __post_init__(self) -> None:
        _check_choice("canvas", self.canvas, CANVAS_MODES)
        _check_choice("full_frame", self.full_frame, FULL_FRAME_POLICIES)
        _check_choice("compensate", self.compensate, COMPENSATIONS)
        _check_choice("residual", self.residual, RESIDUAL_MODES)
        _check_choice("fusion", self.fusion, FUSIONS)
        self.controls = list(self.controls)  # a YAML list or a tuple; compared as a list
        check_policy(self.policy, self.controls)
        default_size, default_patch = CANVAS_DEFAULTS[self.canvas]
        if self.canvas_size is None:
            self.canvas_size = default_size
        if self.patch is None:
            self.patch = default_patch
        if self.frames < 1:
            raise ValueError(f"codec.frames={self.frames} must be >= 1")
        if self.patch < 1 or self.canvas_size % self.patch:
            raise ValueError(
                f"codec.canvas_size={self.canvas_size} must be a multiple of "
                f"codec.patch={self.patch}"
            )
        if self.budget is None and self.budget_frames is None:
            raise ValueError(
                "set codec.budget (patches) or codec.budget_frames (frame-equivalents)"
            )
        if not self.residual_weight >= 0:
            raise ValueError(f"codec.residual_weight={self.residual_weight} must be >= 0")
        if self.threads < 1:
            raise ValueError(f"codec.threads={self.threads} must be >= 1")
        if self.num_patches < 1:
            raise ValueError(f"codec budget resolves to K={self.num_patches}; it must be >= 1")
        if self.full_frame == "first" and self.num_patches < self.patches_per_frame:
            raise ValueError(
                f"codec budget K={self.num_patches} is smaller than one whole frame "
                f"({self.patches_per_frame} patches) but full_frame='first' keeps frame 0 whole"
            )

    def selection_settings(self) -> dict:
        """Every setting that decides which patches are chosen and how they look, with the
        budget resolved to K; recorded in each selection's meta and compared with the model's
        settings when precomputed assets are loaded. `residual_weight` is None unless the
        fusion is `mean` (no other fusion reads it)."""
        return {
            "frames": self.frames,
            "canvas": self.canvas,
            "canvas_size": self.canvas_size,
            "patch": self.patch,
            "K": self.num_patches,
            "full_frame": self.full_frame,
            "compensate": self.compensate,
            "residual": self.residual,
            "fusion": self.fusion,
            "residual_weight": self.residual_weight if self.fusion == "mean" else None,
            "motion_floor": self.motion_floor,
            "residual_floor": self.residual_floor,
            "policy": self.policy,
            "controls": list(self.controls),
        }

    @property
    def grid(self) -> int:
        """Patches per canvas side (36 on the 576/16 canvas, 16 on 224/14)."""
        return self.canvas_size // self.patch

    @property
    def patches_per_frame(self) -> int:
        return self.grid * self.grid

    @property
    def num_patches(self) -> int:
        """K, the exact number of patch rows every selection returns."""
        if self.budget is not None:
            return int(self.budget)
        return round(self.budget_frames * self.patches_per_frame)
