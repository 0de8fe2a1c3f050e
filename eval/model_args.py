"""The `--model_args` of the lmms-eval model `ovmllm`, strictly parsed.

lmms-eval splits `--model_args` at commas and hands every key to the model's constructor; keys a
model does not know would pass silently, so a typo (`polcy=random`) would evaluate the checkpoint's
own setting and label it otherwise. Here every key is known or an error names it. Each media
setting defaults to what the checkpoint's processor was trained with.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

# Keys lmms-eval's evaluator passes itself (from --batch_size / --max_batch_size / --device).
HARNESS_KEYS = ("batch_size", "max_batch_size", "device")
ANSWER_BY = ("generation", "likelihood")
# model_args that are one processor setting each (`controls` and `frames` need a rule)
PROCESSOR_KEYS = {
    "video_mode": "media.video_mode", "policy": "media.codec.policy",
    "budget": "media.codec.budget", "budget_frames": "media.codec.budget_frames",
    "canvas": "media.codec.canvas", "canvas_size": "media.codec.canvas_size",
    "frame_size": "media.frame_size", "layout": "media.layout",
}  # fmt: skip


@dataclass
class EvalModelArgs:
    pretrained: str = ""
    """The checkpoint folder (an ovmllm model folder with processor_config.json)."""
    video_mode: str | None = None
    """`codec` (selected patches) or `frames` (uniform dense frames)."""
    policy: str | None = None
    """Codec selection policy: `saliency` or `random`."""
    controls: str | None = None
    """Codec controls joined by `+` (lmms-eval splits model_args at commas): `shuffle`,
    `nonsalient:F`, e.g. `shuffle+nonsalient:0.5`; `none` for no control."""
    budget: int | None = None
    """Codec budget in patches (replaces any saved budget_frames)."""
    budget_frames: float | None = None
    """Codec budget in frame-equivalents (replaces any saved budget in patches)."""
    frames: int | None = None
    """Sampled frames: T of the codec selection in codec mode, the uniform frames in frames mode."""
    canvas: str | None = None
    """Codec canvas: `letterbox` or `crop`."""
    canvas_size: int | None = None
    """Codec canvas side in px."""
    frame_size: int | None = None
    """Frames-mode frame side in px."""
    layout: str | None = None
    """LLM-side placeholder layout: `reference` or `compact`."""
    cache_dir: str | None = None
    """Where codec selections are cached per (video, settings); default
    `~/.cache/ovmllm/selections`; `none` to select afresh every time."""
    dtype: str = "float32"
    """Weights' dtype: float32 | bfloat16 | float16."""
    answer_by: str = "generation"
    """`generation`: the greedy reply, scored by the task. `likelihood`: the reply is the doc's
    option (its `options` list) to which the model gives the highest probability as its whole
    reply, end of turn included: the usual multiple-choice protocol for a model that knows the
    answer but does not copy an option's wording (lmms-eval 0.7.3 runs `multiple_choice` tasks
    for simple models only, so it is done here, inside `generate_until`)."""

    def processor_overrides(self, saved_video_mode: str) -> list[str]:
        """`key=value` overrides of the processor config (`ovmllm config processor`)."""
        out = [f"{PROCESSOR_KEYS[name]}={getattr(self, name)}"
               for name in PROCESSOR_KEYS if getattr(self, name) is not None]  # fmt: skip
        if self.controls is not None:
            controls = [] if self.controls in ("", "none") else self.controls.split("+")
            out.append(f"media.codec.controls=[{','.join(controls)}]")
        if self.frames is not None:  # T of a codec selection, or the dense frames
            mode = self.video_mode or saved_video_mode
            out.append(f"media.{'codec.frames' if mode == 'codec' else 'frames'}={self.frames}")
        return out


def parse_model_args(kwargs: dict[str, Any]) -> tuple[EvalModelArgs, dict[str, Any]]:
    """(model args, the harness's own keys) from the constructor's keyword arguments; an unknown
    key is an error naming it and listing the known ones."""
    known = {f.name for f in fields(EvalModelArgs)}
    unknown = sorted(set(kwargs) - known - set(HARNESS_KEYS))
    if unknown:
        raise ValueError(
            f"ovmllm model_args: unknown key(s) {', '.join(unknown)}; known: "
            f"{', '.join(sorted(known))} (batch size comes from lmms-eval's --batch_size)"
        )
    values = {k: v for k, v in kwargs.items() if k in known and v is not None}
    for key in (
        "controls",
        "pretrained",
        "cache_dir",
        "video_mode",
        "policy",
        "canvas",
        "answer_by",
    ):
        if key in values:  # lmms-eval turns `none`/`True`/numbers into Python values
            values[key] = str(values[key])
    harness = {k: kwargs[k] for k in HARNESS_KEYS if kwargs.get(k) is not None}
    args = EvalModelArgs(**values)
    if not args.pretrained:
        raise ValueError("ovmllm model_args: pretrained=DIR (a checkpoint folder) is required")
    if args.budget is not None and args.budget_frames is not None:
        raise ValueError("ovmllm model_args: give budget or budget_frames, not both")
    if args.answer_by not in ANSWER_BY:
        raise ValueError(
            f"ovmllm model_args: answer_by={args.answer_by!r} is not {' or '.join(ANSWER_BY)}"
        )
    return args, harness
