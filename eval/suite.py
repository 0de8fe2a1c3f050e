"""Benchmark suites: which lmms-eval tasks make a leaderboard, where each score lives in
lmms-eval's results JSON, and what the paper reports for them.

A suite is one versioned YAML file in `configs/eval/` (`paper16`, `local`); see
`configs/eval/paper16.yaml` for the schema, with the source of every fact in its comments.
A task's score is the results-JSON value at `results[task]["<metric>,<filter>"]` times
`scale` (the paper's unit); a task that is an lmms-eval group without a group score lists its
`subtasks`, and its score is their mean.
"""

from __future__ import annotations

import importlib.util
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ovmllm.config import ConfigError

SUITES_DIR = Path(__file__).resolve().parents[1] / "configs" / "eval"
"""Where suite names resolve (`paper16` -> configs/eval/paper16.yaml)."""
SUITE_VERSION = 1
GROUPS = ("video", "image")
TOP_LEVEL_KEYS = {"version", "name", "description", "columns", "tasks"}


@dataclass(frozen=True)
class PaperColumn:
    """One column of the paper's table: which encoder and video input produced it."""

    id: str
    label: str
    tower: str
    """A key of encoder.towers.TOWERS: onevision | siglip2 | qwen3_vit."""
    video_mode: str
    """media.video_mode of the model: codec | frames."""
    auto_match: bool = True
    """Whether a run with this tower and video mode is compared with this column by default."""


@dataclass(frozen=True)
class Generation:
    """The task's generation settings as its lmms-eval YAML resolves them (for the record)."""

    max_new_tokens: int | None = None
    """None: the YAML sets none and the model's default applies."""
    until: tuple[str, ...] = ()


@dataclass(frozen=True)
class VideoSettings:
    """Frames or fps a task itself asks for; absent when the model's media settings decide."""

    frames: int | None = None
    fps: float | None = None


@dataclass(frozen=True)
class Judge:
    """An API judge a metric needs, as the task's utils read it from the environment."""

    selector_env: str
    """Variable choosing the API type (e.g. API_TYPE)."""
    default: str
    """API type when the selector is unset."""
    key_env: dict[str, str]
    """API type -> the variable holding its key; the judge is configured when it is set."""
    other_env: tuple[str, ...] = ()
    """Further variables the task reads (endpoint, judge model)."""
    static_alternative: str | None = None
    """A task with the same prompts scored without the judge (not the paper's protocol)."""

    def configured(self, environ: Mapping[str, str] | None = None) -> bool:
        environ = os.environ if environ is None else environ
        api_type = environ.get(self.selector_env) or self.default
        key_var = self.key_env.get(api_type)
        return bool(key_var and environ.get(key_var))


@dataclass(frozen=True)
class SuiteTask:
    """One benchmark row of a suite."""

    task: str
    """The exact lmms-eval task (or group) name."""
    label: str
    """Row name in tables."""
    group: str
    """video | image (which mean the row counts in)."""
    metric: str
    """Metric name as lmms-eval writes it, without the filter suffix."""
    filter: str = "none"
    """The filter part of the results key ("<metric>,<filter>")."""
    scale: float = 1.0
    """Multiplier from lmms-eval's value to the paper's unit (0-1 accuracy -> 100)."""
    full_scale: float = 100.0
    """Top of the paper's unit (1000 for OCRBench); means average value / full_scale * 100."""
    split: str | None = None
    subtasks: tuple[str, ...] = ()
    """For an lmms-eval group without a group score: the tasks whose mean is the score."""
    packages: tuple[str, ...] = ()
    """Import names the task needs beyond the base install."""
    requires_env: tuple[str, ...] = ()
    """Environment variables the task's code reads without a default."""
    video: VideoSettings | None = None
    generation: Generation | None = None
    judge: Judge | None = None
    paper: dict[str, float] = field(default_factory=dict)
    """Paper column id -> the paper's number, in the paper's unit."""

    @property
    def metric_key(self) -> str:
        """The key of the score in lmms-eval's per-task results."""
        return f"{self.metric},{self.filter}"


@dataclass(frozen=True)
class Suite:
    name: str
    version: int
    path: Path
    tasks: tuple[SuiteTask, ...]
    columns: tuple[PaperColumn, ...] = ()
    description: str = ""

    def task(self, name: str) -> SuiteTask:
        for item in self.tasks:
            if item.task == name:
                return item
        raise KeyError(f"suite {self.name} has no task {name!r}")

    def column(self, column_id: str) -> PaperColumn:
        for item in self.columns:
            if item.id == column_id:
                return item
        known = ", ".join(c.id for c in self.columns) or "none"
        raise KeyError(f"suite {self.name} has no paper column {column_id!r} (known: {known})")


def suite_path(name_or_path: str | Path) -> Path:
    """A suite name (`paper16`) -> configs/eval/<name>.yaml; anything else is a file path."""
    text = str(name_or_path)
    if not text.endswith((".yaml", ".yml")) and "/" not in text and os.sep not in text:
        path = SUITES_DIR / f"{text}.yaml"
        if not path.is_file():
            known = ", ".join(sorted(p.stem for p in SUITES_DIR.glob("*.yaml"))) or "none"
            raise ConfigError(f"unknown suite {text!r}: no {path} (known suites: {known})")
        return path
    path = Path(name_or_path)
    if not path.is_file():
        raise ConfigError(f"suite file not found: {path}")
    return path


def load_suite(name_or_path: str | Path) -> Suite:
    """Read and check a suite file; a bad file raises ConfigError naming the file and field."""
    path = suite_path(name_or_path)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a suite file is a mapping with {sorted(TOP_LEVEL_KEYS)}")
    unknown = sorted(set(raw) - TOP_LEVEL_KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown top-level key(s) {unknown}")
    if raw.get("version") != SUITE_VERSION:
        raise ConfigError(f"{path}: version: expected {SUITE_VERSION}, got {raw.get('version')!r}")
    if not isinstance(raw.get("name"), str) or not raw["name"]:
        raise ConfigError(f"{path}: name: a non-empty string is required")
    columns = tuple(
        _typed(PaperColumn, item, path, f"columns[{i}]")
        for i, item in enumerate(_list(raw, "columns", path, required=False))
    )
    tasks = tuple(
        _typed(SuiteTask, item, path, f"tasks[{i}]")
        for i, item in enumerate(_list(raw, "tasks", path, required=True))
    )
    suite = Suite(
        name=raw["name"],
        version=raw["version"],
        path=path,
        tasks=tasks,
        columns=columns,
        description=str(raw.get("description") or ""),
    )
    _check(suite)
    return suite


def missing_packages(task: SuiteTask) -> list[str]:
    """The task's extra packages that cannot be imported here (looked up, not imported)."""
    missing = []
    for name in task.packages:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a dotted name whose parent is absent
            found = False
        if not found:
            missing.append(name)
    return missing


def missing_env(task: SuiteTask, environ: Mapping[str, str] | None = None) -> list[str]:
    """The environment variables the task's code needs that are unset."""
    environ = os.environ if environ is None else environ
    return [name for name in task.requires_env if not environ.get(name)]


def metric_value(results: Mapping[str, Any], task: SuiteTask) -> float | None:
    """The task's score in the paper's unit from lmms-eval's results JSON (the dict
    `simple_evaluate` returns, with its top-level "results"); None when absent. A group task
    without a group score is the mean of its subtasks, and None unless all of them are there."""
    per_task = results.get("results")
    if not isinstance(per_task, Mapping):
        return None
    sections = [per_task, results.get("groups") or {}]
    for section in sections:
        value = _number(section.get(task.task), task.metric_key)
        if value is not None:
            return value * task.scale
    if task.subtasks:
        values = [_number(per_task.get(name), task.metric_key) for name in task.subtasks]
        if all(value is not None for value in values):
            return sum(values) / len(values) * task.scale
    return None


def column_for(run_info: Mapping[str, Any], suite: Suite | None = None) -> PaperColumn | None:
    """The paper column a run compares with: the one auto-matched column of `suite` (default
    paper16) with the run's `tower` and `video_mode` (run.json fields), or None."""
    suite = load_suite("paper16") if suite is None else suite
    matches = [
        column
        for column in suite.columns
        if column.auto_match
        and column.tower == run_info.get("tower")
        and column.video_mode == run_info.get("video_mode")
    ]
    return matches[0] if len(matches) == 1 else None


# -- helpers ---------------------------------------------------------------------------------


def _number(entry: Any, key: str) -> float | None:
    """A numeric value at entry[key] (lmms-eval writes "N/A" or " " where there is none)."""
    if not isinstance(entry, Mapping):
        return None
    value = entry.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None  # json.loads reads NaN too


def _list(raw: dict, key: str, path: Path, *, required: bool) -> list:
    value = raw.get(key)
    if value is None and not required:
        return []
    if not isinstance(value, list) or (required and not value):
        raise ConfigError(f"{path}: {key}: a non-empty list is required")
    return value


def _typed(schema: type, item: Any, path: Path, where: str) -> Any:
    """One mapping of the file as its dataclass; type errors name the file and the item."""
    name = item.get("task") or item.get("id") if isinstance(item, dict) else None
    at = f"{path}: {where}" + (f" ({name})" if name else "")
    if not isinstance(item, dict):
        raise ConfigError(f"{at}: a mapping is required, got {item!r}")
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), item))
    except OmegaConfBaseException as exc:
        detail = str(exc).splitlines()[0]
        raise ConfigError(f"{at}: {detail}") from exc


def _check(suite: Suite) -> None:
    """What types cannot say: known groups, unique names, paper numbers of known columns."""
    path = suite.path
    column_ids = [c.id for c in suite.columns]
    if len(set(column_ids)) != len(column_ids):
        raise ConfigError(f"{path}: columns: duplicate id in {column_ids}")
    for i, column in enumerate(suite.columns):
        if not column.id or not column.tower or not column.video_mode:
            raise ConfigError(f"{path}: columns[{i}]: id, tower and video_mode must be set")
    seen = set()
    for i, task in enumerate(suite.tasks):
        at = f"{path}: tasks[{i}] ({task.task})"
        if task.task in seen:
            raise ConfigError(f"{at}: task: listed twice")
        seen.add(task.task)
        if task.group not in GROUPS:
            raise ConfigError(f"{at}: group: must be one of {GROUPS}, got {task.group!r}")
        if not task.metric or "," in task.metric:
            raise ConfigError(f"{at}: metric: the name without the ',<filter>' suffix")
        if task.scale <= 0 or task.full_scale <= 0:
            raise ConfigError(f"{at}: scale and full_scale must be positive")
        unknown = sorted(set(task.paper) - set(column_ids))
        if unknown:
            raise ConfigError(f"{at}: paper: unknown column id(s) {unknown} (known: {column_ids})")
