"""The main job on a built-in default, top to bottom (`ovmllm quickstart`, `make quickstart`).

1. data: the generated temporal video QA (`ovmllm data temporal`, all five families), written
   once and reused; training rows are its captions plus its train-split questions, each asked
   with its options in several orders (so the answer letter cannot be memorised per video).
2. selections: codec selections of the training videos at the model's settings (T = 64), once.
3. training: the align stage then the instruct stage (real DeepSpeed engines, ZeRO-2 then
   ZeRO-3) for the codec model, and the same for its frames-mode twin (same LLM, data, steps).
4. evaluation: through the lmms-eval plugin on the test split — the codec model with codec
   (saliency) and codec (random policy) selection, the twin with dense frames — at equal
   visual-token budgets, replying by option likelihood and by free generation.
5. report: accuracy per family with chance and 95% intervals (a table per way of replying),
   plots (loss curves, accuracy against visual tokens, the codec selection of one test video),
   and where everything went.

Sizes and steps come from a config (`configs/quickstart.yaml`, `--fast`: quickstart_fast.yaml).
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from encoder.files import atomic_file, write_text_atomic
from eval.model_args import ANSWER_BY
from ovmllm.data.temporal import LETTERS, TemporalConfig, llava_row, mc_prompt, qa_row

TEMPORAL_TASKS = [
    "ovmllm_temporal_event", "ovmllm_temporal_which_moved", "ovmllm_temporal_direction",
    "ovmllm_temporal_entries", "ovmllm_temporal_static_control",
]  # fmt: skip
CONTROL_TASK = "ovmllm_temporal_static_control"
ANSWER_STYLES = ("option", "letter")


@dataclass
class QuickstartConfig:
    data: TemporalConfig = field(
        default_factory=lambda: TemporalConfig(train_per_family=150, test_per_family=40)
    )
    """The generated temporal QA (`ovmllm config temporal`); 40 test videos a family give 160
    temporal questions, a 95% interval of about +-7 points."""
    qa_permutations: int = 4
    """Each training question is asked with its options in this many orders."""
    answers: str = "option"
    """How training rows answer: `letter` ("B. red", the generator's own rows, as the prompt
    asks) or `option` (the option's text, "red", which the scorer also takes as that choice:
    no lookup of the letter in the prompt's option list: the default config's)."""
    captions: bool = False
    """Train on the caption rows too (with them, the tiny LLM's answers ran on into caption
    text)."""
    data_workers: int = 2
    """Processes drawing and encoding the videos."""
    model_file: str = "configs/model/quickstart.yaml"
    """The codec model; the twin is the same model in frames mode at equal tokens per frame."""
    llm_path: str = ""
    """An LLM folder or `package:smollm2` instead of the config's random-init LLM."""
    batch_size: int = 64
    """Samples per optimizer step in both stages of both models. The tiny model's step costs
    mostly per-step overhead on a CPU, so 64 samples (packed into sequences of the stages'
    max_length) give about 5x the samples a second of 8 (README, Quickstart)."""
    align: str = "configs/train/quickstart_align.yaml"
    align_steps: int = 20
    instruct: str = "configs/train/quickstart_instruct.yaml"
    instruct_steps: int = 200
    budgets: list[float] = field(default_factory=lambda: [2.0, 4.0])
    """Evaluation budgets in frame-equivalents (above 1: the first frame is kept whole)."""
    answer_by: list[str] = field(default_factory=lambda: ["likelihood", "generation"])
    """How the evaluated models reply, each its own table (model_args `answer_by`):
    `likelihood`, the likeliest of the four options; `generation`, the greedy reply, scored when
    it is one of them. The first is the headline. The tiny random LLM names the right object's
    colour but not always the option's exact wording (README, Quickstart)."""
    eval_batch_size: int = 16
    eval_limit: int | None = None
    """At most this many test questions per family (default: all)."""
    precompute_workers: int = 2

    def __post_init__(self) -> None:
        if self.answers not in ANSWER_STYLES:
            raise ValueError(f"answers={self.answers!r}: choose one of {ANSWER_STYLES}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size}: must be at least 1")
        if (
            not self.answer_by
            or len(set(self.answer_by)) != len(self.answer_by)
            or (set(self.answer_by) - set(ANSWER_BY))
        ):
            raise ValueError(f"answer_by={self.answer_by}: give distinct names of {ANSWER_BY}")


class Phases:
    """Wall time of each phase, printed as it ends."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str):
        print(f"\n== {name}")
        start = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - start, 1)
        print(f"== {name}: {self.seconds[name]} s")


def training_rows(
    dataset: Path, permutations: int, seed: int, answers: str = "letter", captions: bool = True
) -> list[dict]:
    """Caption rows of `train.jsonl` (unless not `captions`) and every train-split question
    asked with its options in `permutations` seeded orders, as LLaVA rows (prompts rendered as
    the eval tasks render them; `answers` as in QuickstartConfig)."""
    rng = random.Random(seed)
    rows = [
        row for row in map(json.loads, (dataset / "train.jsonl").read_text().splitlines())
        if captions and row["id"].endswith("-caption")
    ]  # fmt: skip
    for path in sorted((dataset / "train").glob("*.jsonl")):
        for doc in map(json.loads, path.read_text().splitlines()):
            truth = doc["options"][LETTERS.index(doc["answer"])]
            for k in range(permutations):
                options = doc["options"][:]
                if k:  # the first keeps the generated order
                    rng.shuffle(options)
                asked = dict(doc, options=options, answer=LETTERS[options.index(truth)])
                rows.append(question_row(asked, f"{doc['id']}-qa{k}", answers))
    rng.shuffle(rows)
    return rows


def question_row(doc: dict, row_id: str, answers: str) -> dict:
    """A doc's question as a LLaVA row, answered as `answers` says."""
    if answers == "letter":
        return qa_row(doc, row_id)
    if answers == "option":
        truth = doc["options"][LETTERS.index(doc["answer"])]
        return llava_row(row_id, doc["video"], mc_prompt(doc), truth)
    raise ValueError(f"answers={answers!r}: choose one of {ANSWER_STYLES}")


def heldout_rows(dataset: Path, answers: str, per_family: int = 4) -> list[dict]:
    """A few test questions as LLaVA rows: the held-out loss the stages log."""
    return [
        question_row(doc, doc["id"], answers)
        for path in sorted((dataset / "test").glob("*.jsonl"))
        for doc in list(map(json.loads, path.read_text().splitlines()))[:per_family]
    ]


def wilson(correct: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion (in [0, 1])."""
    if n == 0:
        return (0.0, 1.0)
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def _jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def _stage(path: str, overrides: list[str]) -> dict:
    """One training stage in this process; its summary, or exit 75 when a signal stopped it."""
    from train.config import load_stage
    from train.recipe import train
    from train.stopping import EX_TEMPFAIL

    cfg = load_stage(path, overrides)
    repo = Path(path).resolve().parents[2]  # <repo>/configs/train/<stage>.yaml
    if cfg.deepspeed and not Path(cfg.deepspeed).is_file() and (repo / cfg.deepspeed).is_file():
        cfg.deepspeed = str(repo / cfg.deepspeed)  # run from any folder
    shutil.rmtree(cfg.output_dir, ignore_errors=True)  # the quickstart trains afresh each run
    summary = train(cfg)
    if summary["stopped_by_signal"]:  # the next stage needs this one's export
        print(f"{cfg.output_dir} stopped by a signal; `ovmllm quickstart` starts it afresh")
        raise SystemExit(EX_TEMPFAIL)
    return summary


def train_model(
    cfg: QuickstartConfig, out: Path, name: str, sources: str, media: list[str]
) -> dict:
    """Align then instruct for one model; per stage: steps, first and last loss, seconds."""
    heldout = out / "data" / "heldout_rows.jsonl"
    report, init = {}, None
    for stage, path, steps in (("align", cfg.align, cfg.align_steps),
                               ("instruct", cfg.instruct, cfg.instruct_steps)):  # fmt: skip
        overrides = [f"output_dir={out / name / stage}", f"max_steps={steps}",
                     f"batch_size={cfg.batch_size}",
                     f"data.sources={sources}", f"eval_data={heldout}",
                     f"eval_root={cfg_root(out)}", f"eval_every={max(steps // 4, 1)}"]  # fmt: skip
        if init is None:
            overrides += [f"model_file={cfg.model_file}", *media]
            if cfg.llm_path:
                overrides.append(f"model.llm.path={cfg.llm_path}")
        else:
            overrides.append(f"init_from={init}")
        summary = _stage(path, overrides)
        metrics = [json.loads(line) for line in
                   (out / name / stage / "metrics.jsonl").read_text().splitlines()]  # fmt: skip
        losses = [row["loss"] for row in metrics if "loss" in row and "step" in row]
        report[stage] = {"steps": summary["steps"], "first_loss": round(losses[0], 4),
                         "last_loss": round(losses[-1], 4),
                         "seconds": summary["train_seconds"]}  # fmt: skip
        init = out / name / stage
    report["export"] = str(out / name / "instruct" / "export")
    return report


def frames_twin(model) -> list[str]:
    """Overrides making the codec model's frames-mode twin: the budget's frame-equivalents as
    dense frames, each with as many tokens as a canvas frame (canvas cells x tower patch)."""
    from encoder.towers import build_tower

    codec = model.media.codec
    frames = max(1, round(codec.num_patches / codec.patches_per_frame))
    side = codec.grid * build_tower(model.tower).spec.patch_size
    return ["model.media.video_mode=frames", f"model.media.frames={frames}",
            f"model.media.frame_size={side}"]  # fmt: skip


def cfg_root(out: Path) -> Path:
    return out / "data" / "temporal"


def evaluate(
    cfg: QuickstartConfig, out: Path, codec_model: str, frames_model: str
) -> dict[str, list[dict]]:
    """The codec model in codec and random mode, the twin in frames mode, at each budget, on
    every family's test split, replying each way of `cfg.answer_by`; per way, the rows of its
    `eval/<answer_by>/ablation.csv`."""
    from lmms_eval.tasks import TaskManager

    from eval.ablate import AblationConfig, run_ablation, write_outputs
    from eval.local_tasks import write_local_tasks

    tasks = write_local_tasks(out / "eval" / "tasks", None, cfg_root(out))
    task_manager = TaskManager(verbosity="ERROR", include_path=str(tasks.folder))
    by_answer = {}
    for answer_by in cfg.answer_by:
        rows = []
        for model, modes in ((codec_model, ["codec", "random"]), (frames_model, ["frames"])):
            ablation = AblationConfig(budgets=list(cfg.budgets), modes=modes, limit=cfg.eval_limit,
                                      batch_size=cfg.eval_batch_size,
                                      answer_by=answer_by)  # fmt: skip
            folder = out / "eval" / answer_by / modes[0]
            shutil.rmtree(folder / "cells", ignore_errors=True)  # a new model: every cell anew
            cache = str(out / "selections")
            rows += run_ablation(model, ablation, folder, TEMPORAL_TASKS, cache_dir=cache,
                                 task_manager=task_manager)  # fmt: skip
        write_outputs(rows, out / "eval" / answer_by)
        by_answer[answer_by] = rows
    return by_answer


def family_table(rows: list[dict]) -> tuple[list[str], list[list[str]], dict]:
    """Columns (mode at tokens), one line per family plus the four temporal families pooled
    (control excluded): accuracy % [95% interval], chance alongside."""
    columns = sorted({(row["visual_tokens"] or 0.0, row["mode"]) for row in rows},
                     key=lambda c: (c[0], ("codec", "random", "frames").index(c[1])))  # fmt: skip
    header = ["family", "chance"] + [f"{mode} @{tokens:.0f}" for tokens, mode in columns]
    cells: dict = {}
    lines = []
    pooled: dict = {}
    for task in TEMPORAL_TASKS:
        family = task.removeprefix("ovmllm_temporal_")
        line = [family, "25%"]  # four options in every family
        for tokens, mode in columns:
            row = next((r for r in rows if r["task"] == task and r["mode"] == mode
                        and (r["visual_tokens"] or 0.0) == tokens), None)  # fmt: skip
            if row is None or row["value"] == "" or not row["n"]:
                line.append("—")
                continue
            correct = round(row["value"] / 100 * row["n"])
            low, high = wilson(correct, row["n"])
            cells[(family, mode, tokens)] = {"accuracy": row["value"], "n": row["n"],
                                             "interval": [100 * low, 100 * high]}  # fmt: skip
            line.append(f"{row['value']:.0f}% [{100 * low:.0f}, {100 * high:.0f}]")
            if task != CONTROL_TASK:
                got = pooled.setdefault((mode, tokens), [0, 0])
                got[0], got[1] = got[0] + correct, got[1] + row["n"]
        lines.append(line)
    line = ["4 temporal families", "25%"]
    for tokens, mode in columns:
        correct, n = pooled.get((mode, tokens), (0, 0))
        if not n:
            line.append("—")
            continue
        low, high = wilson(correct, n)
        cells[("pooled", mode, tokens)] = {"accuracy": 100 * correct / n, "n": n,
                                           "interval": [100 * low, 100 * high]}  # fmt: skip
        line.append(f"{100 * correct / n:.0f}% [{100 * low:.0f}, {100 * high:.0f}]")
    lines.append(line)
    return header, lines, cells


def markdown_table(header: list[str], lines: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(line) + " |" for line in lines]
    return "\n".join(out)


def plot_losses(runs: dict[str, Path], path: Path) -> Path:
    """Training loss of every stage run against its step, one line each."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, ax = plt.subplots(figsize=(7, 4))
    for label, folder in runs.items():
        rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
        steps = [row for row in rows if "loss" in row and "step" in row]
        ax.plot([row["step"] for row in steps], [row["loss"] for row in steps], label=label)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    figure.tight_layout()
    with atomic_file(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110)
    plt.close(figure)
    return path


def selection_sheet(video: Path, model_file: str, path: Path) -> Path:
    """The codec selection of one test video at the model's settings: every sampled frame,
    unchosen patches dimmed."""
    from encoder.codec import select_with_frames
    from encoder.codec.show import save_sheet
    from encoder.codec.show import selection_sheet as sheet
    from ovmllm.build import ModelConfig
    from ovmllm.config import load_config

    codec = load_config(ModelConfig, model_file).media.codec
    selection, canvases = select_with_frames(video, codec)
    return save_sheet(sheet(selection, canvases, columns=16, thumb=96), path)


def run_quickstart(cfg: QuickstartConfig, out: str | Path) -> dict:
    """Every phase; returns the report also written to `out/report.json` and `report.md`."""
    from ovmllm.build import ModelConfig
    from ovmllm.config import load_config
    from ovmllm.data.precompute import PrecomputeConfig, precompute
    from ovmllm.data.temporal import write_temporal_dataset

    out = Path(out)
    phase = Phases()
    report: dict = {"phases": phase.seconds}
    with phase("data"):
        # reused when it matches; the quickstart's own folder, so written again when its config
        # or the generator changed (the selection caches key on each video's size and mtime)
        dataset = write_temporal_dataset(
            cfg_root(out), cfg.data, workers=cfg.data_workers, overwrite=True
        )
        rows = training_rows(dataset, cfg.qa_permutations, cfg.data.seed, cfg.answers, cfg.captions)
        write_text_atomic(out / "data" / "train_rows.jsonl", _jsonl(rows))
        heldout = heldout_rows(dataset, cfg.answers)
        write_text_atomic(out / "data" / "heldout_rows.jsonl", _jsonl(heldout))
        orders = cfg.qa_permutations
        what = "captions, questions" if cfg.captions else "questions"
        print(f"{dataset}: {len(rows)} training rows ({what} in {orders} orders)")

    model = load_config(ModelConfig, cfg.model_file)
    with phase("selections"):  # T = 64 codec selections of every training video, once
        summary = precompute(PrecomputeConfig(
            data=str(out / "data" / "train_rows.jsonl"), root=str(dataset),
            out=str(out / "selections" / "train"), workers=cfg.precompute_workers,
            codec=model.media.codec,
        ))  # fmt: skip
        print(f"{summary.computed} selected, {summary.skipped_done} cached, "
              f"{summary.failed} failed ({summary.seconds:.1f} s)")  # fmt: skip
    codec_sources = (f"[{{name: temporal, data: {summary.output}, root: {dataset}, "
                     f"assets_root: {summary.assets_root}}}]")  # fmt: skip
    frames_sources = (
        f"[{{name: temporal, data: {out / 'data' / 'train_rows.jsonl'}, root: {dataset}}}]"
    )
    with phase("train codec model"):
        report["codec_model"] = train_model(cfg, out, "codec", codec_sources, [])
    with phase("train frames twin"):
        # its frames decoded once per video (MediaConfig.cache_dir), as the codec model's
        # selections are: decoding every read cost more than the tiny model's step
        twin = [*frames_twin(model), f"model.media.cache_dir={out / 'selections' / 'frames'}"]
        report["frames_model"] = train_model(cfg, out, "frames", frames_sources, twin)
    with phase("evaluate"):
        by_answer = evaluate(
            cfg, out, report["codec_model"]["export"], report["frames_model"]["export"]
        )
    with phase("report"):
        tables, cells, markdown = {}, {}, []
        for answer_by, rows in by_answer.items():
            header, lines, found = family_table(rows)
            tables[answer_by] = {"header": header, "lines": lines}
            cells |= {" ".join(map(str, (answer_by, *key))): value for key, value in found.items()}
            markdown += [f"## Replies by {answer_by}", "", markdown_table(header, lines), ""]
        runs = {f"{name} {stage}": out / name / stage
                for name in ("codec", "frames") for stage in ("align", "instruct")}  # fmt: skip
        first_test = sorted((dataset / "videos").glob("test_event_*"))[0]
        plots = {"loss": str(plot_losses(runs, out / "plots" / "loss.png"))}
        plots |= {f"accuracy_vs_tokens_{answer_by}": str(out / "eval" / answer_by / "ablation.png")
                  for answer_by in by_answer}  # fmt: skip
        plots["selection"] = str(
            selection_sheet(first_test, cfg.model_file, out / "plots" / "selection.png")
        )
    report |= {"tables": tables, "cells": cells, "plots": plots}
    write_text_atomic(out / "report.json", json.dumps(report, indent=1, default=str))
    write_text_atomic(out / "report.md", "\n".join(markdown))
    return report
