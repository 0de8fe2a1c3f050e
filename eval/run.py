"""One evaluation run: a checkpoint on a suite's tasks through lmms-eval's Python API.

Each task runs in its own `simple_evaluate` call on one live model, so a task that fails to load
or score is recorded and the others go on. The output folder holds lmms-eval's own results JSON
(`results.json`, the dict `simple_evaluate` returns, without the samples), the logged samples
(`samples_<task>.jsonl`) and `run.json`, the record of everything that decides the numbers:
checkpoint, tower, media settings, generation settings, versions, per-task status, media
failures. The folder is written whole at the end (encoder/files.py).
"""

from __future__ import annotations

import json
import time
import traceback
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

from encoder.files import atomic_dir


@dataclass
class EvalRequest:
    model: str
    """The checkpoint folder."""
    tasks: list[str]
    """lmms-eval task names, in order."""
    suite: str = "tasks"
    """The suite's name (or `tasks` for an ad-hoc list), recorded and used in the default out."""
    out: str = ""
    """The output folder."""
    include_paths: list[str] = field(default_factory=list)
    """Task folders beyond lmms-eval's own (`--include_path`)."""
    unavailable: dict[str, str] = field(default_factory=dict)
    """Tasks known not to run here (a missing package, a missing source) → why."""
    model_args: dict[str, str] = field(default_factory=dict)
    """The `ovmllm` model's model_args beyond `pretrained` (`eval/model_args.py`)."""
    limit: int | None = None
    """At most this many docs per task (lmms-eval's --limit)."""
    batch_size: int = 1
    name: str = ""
    """The run's column name in a leaderboard; default: model folder name + settings."""


def _versions() -> dict[str, str]:
    out = {}
    for package in ("ovmllm", "lmms_eval", "transformers", "torch"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = "not installed"
    return out


def _media_record(lm) -> dict:
    media = lm.processor.media
    codec = media.codec
    record = {"video_mode": media.video_mode, "layout": media.layout}
    if media.video_mode == "codec":
        record |= {
            "policy": codec.policy, "controls": list(codec.controls), "budget": codec.budget,
            "budget_frames": codec.budget_frames, "frames": codec.frames, "canvas": codec.canvas,
            "canvas_size": codec.canvas_size, "patch": codec.patch, "full_frame": codec.full_frame,
        }  # fmt: skip
    else:
        size = media.frame_size or lm.processor.spec.frame_size
        record |= {"policy": None, "controls": [], "budget": None, "budget_frames": None,
                   "frames": media.frames, "frame_size": size}  # fmt: skip
    record["image"] = asdict(media.image)
    return record


def _spread(values: list[int]) -> dict:
    if not values:
        return {"videos": 0}
    return {"videos": len(values), "mean": sum(values) / len(values), "min": min(values),
            "max": max(values)}  # fmt: skip


def _merge(into: dict, results: dict) -> None:
    for key, value in results.items():
        if key == "samples":
            continue
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            into[key].update(value)
        elif key not in into:
            into[key] = value


def run_eval(request: EvalRequest, task_manager=None, progress=print, lm=None) -> Path:
    """Evaluate and write `request.out`; returns it. `task_manager` (lmms-eval's, with the
    request's include paths) and `lm` (an `OVMLLMEval` of `request.model`, reconfigured with the
    request's model_args) may be shared across runs: building them costs seconds."""
    from lmms_eval.evaluator import simple_evaluate
    from lmms_eval.tasks import TaskManager
    from lmms_eval.utils import handle_non_serializable

    from eval.lmms_model import OVMLLMEval, check_checkpoint
    from eval.model_args import parse_model_args

    check_checkpoint(request.model)
    if task_manager is None:
        task_manager = TaskManager(include_path=request.include_paths or None)
    if lm is None:
        lm = OVMLLMEval(
            pretrained=request.model, batch_size=request.batch_size, **request.model_args
        )
    else:
        args, _ = parse_model_args(
            {"dtype": lm.dtype, **request.model_args, "pretrained": str(lm.folder)}
        )
        lm.configure(args)
        lm.batch_size = request.batch_size
    status = {task: {"status": "unavailable", "reason": why}
              for task, why in request.unavailable.items()}  # fmt: skip
    merged: dict = {}
    samples: dict[str, list] = {}
    started = time.time()
    for number, task in enumerate(request.tasks, start=1):
        if task in status:
            continue
        if task not in task_manager.all_tasks:
            status[task] = {"status": "failed", "reason": "not in lmms-eval's task registry"}
            continue
        progress(f"[{number}/{len(request.tasks)}] {task}")
        failures_before = len(lm.media_failures)
        try:
            results = simple_evaluate(
                model=lm, tasks=[task], task_manager=task_manager, limit=request.limit,
                batch_size=request.batch_size, log_samples=True,
            )  # fmt: skip
        except Exception as exc:  # a task that fails to load or score must not stop the run
            traceback.print_exc()
            status[task] = {"status": "failed", "reason": f"{type(exc).__name__}: {exc}"}
            continue
        if results is None:  # lmms-eval returns None on ranks other than 0
            continue
        _merge(merged, results)
        samples.update(results.get("samples") or {})
        status[task] = {"status": "ok", "media_failures": len(lm.media_failures) - failures_before}
    if lm.rank != 0:
        return Path(request.out)

    media = _media_record(lm)
    configs = merged.get("configs", {})
    generation = {task: cfg.get("generation_kwargs", {}) for task, cfg in configs.items()}
    tower = lm.model.config.tower["name"]
    record = {
        "name": request.name or _default_name(request.model, media),
        "model": str(Path(request.model).resolve()),
        "suite": request.suite,
        "tower": tower,
        **media,
        "model_args": request.model_args,
        "generation": {"decoding": "greedy", "per_task": generation},
        "limit": request.limit,
        "batch_size": request.batch_size,
        "tasks": status,
        "video_tokens": _spread(lm.video_tokens),
        "media_failures": len(lm.media_failures),
        "media_failure_list": lm.media_failures,
        "timing": {**lm.timing, "wall_s": round(time.time() - started, 2)},
        "versions": _versions(),
    }
    with atomic_dir(request.out) as tmp:
        (tmp / "results.json").write_text(
            json.dumps(merged, indent=1, default=handle_non_serializable)
        )
        for task, rows in samples.items():
            lines = "".join(json.dumps(row, default=str) + "\n" for row in rows)
            (tmp / f"samples_{task}.jsonl").write_text(lines)
        (tmp / "run.json").write_text(json.dumps(record, indent=1, default=str))
    return Path(request.out)


def model_tag(model: str | Path) -> str:
    """A checkpoint's short name: its folder's, or its run's for a stage's `export/` folder."""
    folder = Path(model).resolve()
    return folder.parent.name if folder.name == "export" else folder.name


def _default_name(model: str, media: dict) -> str:
    parts = [model_tag(model), media["video_mode"]]
    if media["video_mode"] == "codec" and media["policy"] != "saliency":
        parts.append(media["policy"])
    parts.extend(media["controls"])
    return " ".join(parts)


def summary(out: str | Path) -> str:
    """One line per task: its status and the metrics lmms-eval wrote for it."""
    out = Path(out)
    record = json.loads((out / "run.json").read_text())
    results = json.loads((out / "results.json").read_text()).get("results", {})
    lines = [f"{out}: {record['name']} ({record['media_failures']} media failures)"]
    for task, state in record["tasks"].items():
        if state["status"] != "ok":
            lines.append(f"  {task}: {state['status']} ({state['reason']})")
            continue
        metrics = {
            key.split(",")[0]: value
            for key, value in results.get(task, {}).items()
            if "," in key and "_stderr" not in key and isinstance(value, (int, float))
        }
        shown = ", ".join(f"{key} {value:.4g}" for key, value in metrics.items()) or "no metric"
        lines.append(f"  {task}: {shown}")
    return "\n".join(lines)
