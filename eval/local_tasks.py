"""A ready lmms-eval task folder (`--include_path`) for the local tasks of `eval/tasks/`.

The task YAMLs name their data file relative to the folder (`data_files: {test: NAME.jsonl}`);
lmms-eval reads data files relative to the working directory, so this writes a folder with the
YAMLs pointing at absolute paths, `utils.py`, and one JSONL of docs per task built from local
sources: the real inputs of `../shared/real_data` (demo-video questions, OCR pages, ChartQA rows)
and a generated temporal QA dataset (`ovmllm data temporal`). A task whose source is absent is
listed as unavailable with the reason; the rest are written. Media paths in the docs are absolute.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from encoder.files import atomic_dir

TEMPLATES = Path(__file__).parent / "tasks"
DATA_FILES = re.compile(r"data_files: \{test: ([\w.-]+)\}")
OPTION = re.compile(r"^([A-Z])\. (.+)$", re.MULTILINE)
TEMPORAL_FAMILIES = ("event", "which_moved", "direction", "entries", "static_control")
OCR_PROMPT = "Read all the text in the image."
CHARTQA_SUFFIX = "\nAnswer the question with a single word."  # lmms-eval chartqa's post_prompt


@dataclass
class LocalTasks:
    folder: Path
    available: dict[str, int] = field(default_factory=dict)
    """Task name → number of docs written."""
    unavailable: dict[str, str] = field(default_factory=dict)
    """Task name → why it was not written (its source is missing)."""


def demo_video_docs(real_data: Path) -> list[dict]:
    """One doc per question turn of the two demo videos (the options are in the question)."""
    folder = real_data / "video" / "onevision_demo"
    docs = []
    for sample in json.loads((folder / "raw_video_samples.json").read_text()):
        video = folder / sample["video"]
        if not video.is_file():
            raise FileNotFoundError(f"{video}: the video of demo sample {sample['id']} is missing")
        turns = sample["conversations"]
        for number, (human, gpt) in enumerate(zip(turns[0::2], turns[1::2], strict=True)):
            prompt = human["value"].replace("<video>", "").strip()
            options = [text.strip() for _, text in OPTION.findall(prompt)]
            docs.append({
                "id": f"{sample['id']}-{number}", "video": str(video.resolve()), "prompt": prompt,
                "options": options, "answer": gpt["value"].strip()[0],
            })  # fmt: skip
    return docs


def ocr_docs(real_data: Path) -> list[dict]:
    folder = real_data / "ocr" / "tesseract"
    return [
        {"id": truth.stem, "image": str(_find(folder, truth.stem, exclude=".txt")),
         "prompt": OCR_PROMPT, "answer": truth.read_text(encoding="utf-8")}
        for truth in sorted(folder.glob("*.txt"))
    ]  # fmt: skip


def chartqa_docs(real_data: Path) -> list[dict]:
    folder = real_data / "docqa" / "llmdoc"
    rows = json.loads((folder / "chartqa_test_human_matches.json").read_text())
    return [
        {"id": f"chartqa-{i}", "image": str(folder / row["image"]),
         "prompt": row["query"] + CHARTQA_SUFFIX, "answer": row["label"]}
        for i, row in enumerate(rows)
    ]  # fmt: skip


def temporal_docs(dataset: Path, family: str) -> list[dict]:
    """The test split of one question family, prompts rendered as training renders them."""
    from ovmllm.data.temporal import mc_prompt

    lines = (dataset / "test" / f"{family}.jsonl").read_text().splitlines()
    docs = []
    for line in lines:
        doc = json.loads(line)
        doc["video"] = str((dataset / doc["video"]).resolve())
        doc["prompt"] = mc_prompt(doc)
        docs.append(doc)
    return docs


def _find(folder: Path, stem: str, exclude: str = "") -> Path:
    found = [p for p in sorted(folder.glob(f"{stem}.*")) if p.suffix != exclude]
    if not found:
        raise FileNotFoundError(f"{folder}: no file named {stem}.*")
    return found[0].resolve()


def _sources(real_data: Path | None, temporal: Path | None) -> dict[str, Callable[[], list]]:
    sources: dict[str, Callable[[], list]] = {}
    if real_data is not None:
        sources["ovmllm_demo_video_mc"] = lambda: demo_video_docs(real_data)
        sources["ovmllm_ocr_pages"] = lambda: ocr_docs(real_data)
        sources["ovmllm_chartqa_local"] = lambda: chartqa_docs(real_data)
    if temporal is not None:
        for family in TEMPORAL_FAMILIES:
            sources[f"ovmllm_temporal_{family}"] = lambda family=family: temporal_docs(
                temporal, family
            )
    return sources


def task_names() -> list[str]:
    return sorted(path.stem for path in TEMPLATES.glob("*.yaml"))


def write_local_tasks(
    out: str | Path, real_data: str | Path | None = None, temporal: str | Path | None = None
) -> LocalTasks:
    """Write the task folder `out` (replaced whole) from the sources given: `real_data` is the
    `real_data` folder, `temporal` a dataset written by `ovmllm data temporal`."""
    real_data = Path(real_data).resolve() if real_data else None
    temporal = Path(temporal).resolve() if temporal else None
    out = Path(out).resolve()
    sources = _sources(real_data, temporal)
    result = LocalTasks(out)
    with atomic_dir(out) as tmp:
        shutil.copy(TEMPLATES / "utils.py", tmp / "utils.py")
        for name in task_names():
            if name not in sources:
                result.unavailable[name] = "its source folder was not given"
                continue
            try:
                docs = sources[name]()
            except (OSError, KeyError, ValueError, IndexError) as exc:
                result.unavailable[name] = f"{type(exc).__name__}: {exc}"
                continue
            if not docs:
                result.unavailable[name] = "its source holds no docs"
                continue
            template = (TEMPLATES / f"{name}.yaml").read_text()
            data_name = DATA_FILES.search(template).group(1)
            lines = "".join(json.dumps(doc) + "\n" for doc in docs)
            (tmp / data_name).write_text(lines, encoding="utf-8")
            yaml = DATA_FILES.sub(f"data_files: {{test: {out / data_name}}}", template)
            (tmp / f"{name}.yaml").write_text(yaml)
            result.available[name] = len(docs)
    return result


def prepare_local_suite(
    out: str | Path, real_data: str | Path | None, temporal: str | Path, progress=print
) -> LocalTasks:
    """The local suite's task folder at `out`: `real_data` when that folder exists, and the
    temporal QA dataset at `temporal`, written there first (default settings) when absent."""
    from ovmllm.data.temporal import write_temporal_dataset

    real_data = Path(real_data) if real_data and Path(real_data).is_dir() else None
    temporal = Path(temporal)
    if not (temporal / "config.json").is_file():  # a written dataset is used as it is
        progress(f"writing the temporal QA dataset to {temporal} (once; about 2 minutes)")
        write_temporal_dataset(temporal)
    return write_local_tasks(out, real_data, temporal)
