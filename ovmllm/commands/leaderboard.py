"""`ovmllm leaderboard RESULTS_DIR... [--suite paper16] [--out DIR]`: the runs that `ovmllm eval`
wrote (each folder: lmms-eval's results.json + run.json) side by side with the paper's columns,
as Markdown, CSV and a PNG bar chart.

    ovmllm leaderboard runs/eval/ov_codec runs/eval/siglip2_frames
    ovmllm leaderboard runs/eval/ov_lang --column ov_lang=ov_enc_lang_codec
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = __doc__
    parser.add_argument("results_dirs", nargs="+", metavar="RESULTS_DIR")
    parser.add_argument(
        "--suite", default="paper16", help="suite name (configs/eval/NAME.yaml) or a suite file"
    )
    parser.add_argument("--out", help="output folder (default: runs/leaderboard/<suite>/)")
    parser.add_argument(
        "--column",
        action="append",
        default=[],
        metavar="RUN=COLUMN_ID",
        help="compare run RUN with paper column COLUMN_ID instead of the one its tower and "
        "video_mode match (repeatable)",
    )


def run(args: argparse.Namespace) -> int:
    from eval.leaderboard import (
        LeaderboardInputError,
        build_table,
        read_runs,
        to_markdown,
        write_leaderboard,
    )
    from eval.suite import load_suite
    from ovmllm.config import ConfigError

    if getattr(args, "overrides", None):
        print(f"ovmllm leaderboard: unexpected arguments {args.overrides}", file=sys.stderr)
        return 1
    try:
        match = dict(_pair(item) for item in args.column)
        suite = load_suite(args.suite)
        runs = read_runs(args.results_dirs, suite, match)
        table = build_table(suite, runs)
        paths = write_leaderboard(table, args.out or f"runs/leaderboard/{suite.name}")
    except (ConfigError, LeaderboardInputError, ValueError) as exc:
        print(f"ovmllm leaderboard: {exc}", file=sys.stderr)
        return 1
    print(to_markdown(table))
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0


def _pair(item: str) -> tuple[str, str]:
    run, sep, column = item.partition("=")
    if not sep or not run or not column:
        raise ValueError(f"--column {item!r}: expected RUN=COLUMN_ID")
    return run, column
