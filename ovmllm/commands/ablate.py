"""`ovmllm ablate --model DIR --tasks T1,T2 | --suite local --budgets 2,4,8,16 --modes
codec,frames,random [--controls shuffle,nonsalient:0.5]`: accuracy against visual tokens, one
evaluation per (mode, budget, control) cell, resumable; `ablation.csv`, `.md` and `.png`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ovmllm.commands.eval import DEFAULT_REAL_DATA, DEFAULT_TEMPORAL


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="checkpoint folder")
    parser.add_argument("--config", help="an ablation YAML (configs/eval/ablate_*.yaml)")
    parser.add_argument("--tasks", help="lmms-eval task names, comma-separated")
    parser.add_argument("--suite", help="a suite whose tasks to run (local, paper16, FILE.yaml)")
    parser.add_argument("--include-path", action="append", default=[], help="your task YAMLs")
    parser.add_argument("--budgets", help="frame-equivalents, comma-separated (e.g. 2,4,8,16)")
    parser.add_argument("--budget-patches", help="patches instead, comma-separated")
    parser.add_argument("--modes", help="of codec,frames,random (default all three)")
    parser.add_argument("--controls", help="codec controls, comma-separated (shuffle,nonsalient:F)")
    parser.add_argument("--limit", type=int, help="at most N docs per task")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument(
        "--answer-by",
        choices=["generation", "likelihood"],
        help="the greedy reply (default) or the likeliest of the doc's options",
    )
    parser.add_argument("--out", help="output folder (default runs/ablate/<model>/<suite>)")
    parser.add_argument("--cache-dir", default="", help="codec selection cache (model_args)")
    parser.add_argument("--real-data", default=DEFAULT_REAL_DATA, help="for --suite local")
    parser.add_argument("--temporal", default=DEFAULT_TEMPORAL, help="for --suite local")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="AblationConfig keys")


def _overrides(args: argparse.Namespace) -> list[str]:
    out = list(args.overrides)
    lists = {"tasks": args.tasks, "budgets": args.budgets, "budget_patches": args.budget_patches,
             "modes": args.modes, "controls": args.controls}  # fmt: skip
    for key, value in lists.items():
        if value is not None:
            items = [item.strip() for item in value.split(",") if item.strip()]
            out.append(f"{key}=[{','.join(items)}]")
    scalars = {"suite": args.suite, "limit": args.limit, "batch_size": args.batch_size,
               "answer_by": args.answer_by}  # fmt: skip
    out += [f"{key}={value}" for key, value in scalars.items() if value is not None]
    return out


def run(args: argparse.Namespace) -> int:
    from eval.ablate import AblationConfig, run_ablation
    from eval.lmms_model import NotACheckpoint, check_checkpoint
    from eval.run import model_tag
    from ovmllm.commands.eval import quiet_harness
    from ovmllm.config import ConfigError, load_config

    quiet_harness("WARNING")
    try:
        check_checkpoint(args.model)
        cfg = load_config(AblationConfig, args.config, _overrides(args))
        if not cfg.tasks and not cfg.suite:
            raise ConfigError("give tasks or a suite (--tasks / --suite or the config's keys)")
        tasks, include = list(cfg.tasks), list(args.include_path)
        name = "tasks"
        if cfg.suite:
            from eval.suite import load_suite

            suite_tasks = [entry.task for entry in load_suite(cfg.suite).tasks]
            unknown = sorted(set(tasks) - set(suite_tasks))
            if unknown:
                raise ConfigError(f"tasks {', '.join(unknown)} are not in suite {cfg.suite}")
            tasks = tasks or suite_tasks
            name = Path(cfg.suite).stem
    except (NotACheckpoint, ConfigError, ValueError, OSError) as exc:
        print(f"ovmllm ablate: {exc}", file=sys.stderr)
        return 1
    out = Path(args.out or Path("runs/ablate") / model_tag(args.model) / name)
    if name == "local":
        from eval.local_tasks import prepare_local_suite

        local = prepare_local_suite(out / "tasks", args.real_data, args.temporal)
        include.append(str(local.folder))
        tasks = [task for task in tasks if task in local.available]
        if local.unavailable:
            print(f"unavailable here: {', '.join(sorted(local.unavailable))}")
    try:
        run_ablation(args.model, cfg, out, tasks, include, cache_dir=args.cache_dir)
    except ConfigError as exc:
        print(f"ovmllm ablate: {exc}", file=sys.stderr)
        return 1
    print((out / "ablation.md").read_text())
    for kind in ("csv", "md", "png"):
        print(f"{kind}: {out / f'ablation.{kind}'}")
    return 0
