"""`ovmllm eval --model DIR --suite paper16|local|FILE.yaml | --tasks T1,T2 [key=value ...]`:
a checkpoint on an lmms-eval suite, written as lmms-eval's results JSON plus a run record.

`key=value` are the `ovmllm` model's model_args (video_mode, policy, controls, budget,
budget_frames, frames, canvas, canvas_size, frame_size, layout, cache_dir, dtype), each
defaulting to the checkpoint's own setting. The `local` suite runs offline: its task folder is
written from `--real-data` and a generated temporal QA dataset (`--temporal`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_REAL_DATA = "../shared/real_data"
DEFAULT_TEMPORAL = "runs/data/temporal"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="checkpoint folder")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--suite", help="paper16, local, or a suite YAML (configs/eval/*.yaml)")
    which.add_argument("--tasks", help="lmms-eval task names, comma-separated")
    parser.add_argument(
        "--include-path", action="append", default=[], help="a folder of your own task YAMLs"
    )
    parser.add_argument("--limit", type=int, help="at most N docs per task")
    parser.add_argument(
        "--out", help="output folder (default runs/eval/<model>/<suite>[-<model_args>])"
    )
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--name", default="", help="the run's name in leaderboards")
    parser.add_argument(
        "--real-data", default=DEFAULT_REAL_DATA, help="real inputs of the local suite"
    )
    parser.add_argument(
        "--temporal",
        default=DEFAULT_TEMPORAL,
        help="temporal QA dataset of the local suite (generated there when absent)",
    )
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="model_args")


def quiet_harness(level: str = "INFO") -> None:
    """lmms-eval logs through loguru at DEBUG by default (a line per task YAML it skips while
    indexing ~2,000 tasks); the commands that run it keep `level` and above."""
    from loguru import logger

    logger.remove()
    logger.add(sys.stderr, level=level)


def _model_args(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{item!r} is not key=value")
        out[key] = value
    return out


def run(args: argparse.Namespace) -> int:
    from eval.lmms_model import NotACheckpoint, check_checkpoint
    from eval.model_args import parse_model_args

    quiet_harness()
    try:
        check_checkpoint(args.model)
        model_args = _model_args(list(args.overrides))
        parse_model_args({**model_args, "pretrained": args.model})  # bad keys fail before loading
    except (NotACheckpoint, ValueError) as exc:
        print(f"ovmllm eval: {exc}", file=sys.stderr)
        return 1

    from eval.run import EvalRequest, model_tag, run_eval, summary
    from eval.suite import load_suite, missing_env, missing_packages

    tasks: list[str] = []
    unavailable: dict[str, str] = {}
    include = list(args.include_path)
    if args.suite:
        try:
            suite = load_suite(args.suite)
        except (OSError, ValueError) as exc:
            print(f"ovmllm eval: {exc}", file=sys.stderr)
            return 1
        suite_name = suite.name
        for entry in suite.tasks:
            tasks.append(entry.task)
            if missing := missing_packages(entry):
                unavailable[entry.task] = f"needs {', '.join(missing)} (make install-eval-full)"
            elif missing := missing_env(entry):
                unavailable[entry.task] = f"needs the environment variable {', '.join(missing)}"
    else:
        tasks = [task.strip() for task in args.tasks.split(",") if task.strip()]
        suite_name = "+".join(tasks) if len(tasks) <= 3 else f"{len(tasks)}-tasks"
    tag = "_".join(args.overrides)
    out = Path(args.out or Path("runs/eval") / model_tag(args.model) / suite_name)
    if tag and not args.out:
        out = out.with_name(f"{out.name}-{tag}")
    if suite_name == "local":
        from eval.local_tasks import prepare_local_suite

        local = prepare_local_suite(out.parent / f"{out.name}-tasks", args.real_data, args.temporal)
        include.append(str(local.folder))
        for task, why in local.unavailable.items():
            unavailable.setdefault(task, why)
    request = EvalRequest(
        model=args.model, tasks=tasks, suite=suite_name, out=str(out), include_paths=include,
        unavailable=unavailable, model_args=model_args, limit=args.limit,
        batch_size=args.batch_size, name=args.name,
    )  # fmt: skip
    print(summary(run_eval(request)))
    return 0
