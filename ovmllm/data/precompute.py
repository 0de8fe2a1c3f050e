"""Offline codec selection over a dataset: one asset folder per distinct video and settings.

Input: LLaVA-style JSON (a list) or JSONL rows (`rows.read_rows`); rows with a `video` field (a
path relative to the dataset root, which it may not leave) are processed. Each distinct (video
file, settings) gets the folder `<out>/<asset_key>`, the key covering the video's path relative
to the root, its size and mtime and the codec settings, so a changed video or setting gets new
assets.

Resumable: a folder that exists is complete (written atomically) and is skipped. `shard=(i, n)`
takes every n-th distinct video from the i-th, for multi-node runs. Failures are recorded one
line each (video, reason) and the run goes on. The output JSONL is the input rows with
`codec_assets` set for every row whose assets exist, as a path relative to the dataset root when
the assets lie inside it, else relative to the asset root `out` (the data source then names it
as its `assets_root`; the summary's `assets_root` says which); rows whose video failed keep no
`codec_assets` so that training falls back to online selection. Run the shards, then once more
without a shard to write the complete JSONL (it skips everything already done).
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import ExitStack
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

from tqdm import tqdm

from encoder.codec import CodecConfig, VideoDecodeError, write_assets
from encoder.codec.assets import asset_key
from encoder.codec.pipeline import select_patches
from encoder.files import atomic_file
from ovmllm.data.rows import read_rows


@dataclass
class PrecomputeConfig:
    data: str = ""  # JSON or JSONL file of samples
    root: str = ""  # dataset root the `video` paths are relative to (default: data's folder)
    out: str = ""  # asset root (default: <root>/codec_assets)
    output: str = ""  # output JSONL (default: <out>/<data stem>.codec[.shard-i-of-n].jsonl)
    workers: int = 1
    shard: str = "0/1"  # i/n
    codec: CodecConfig = field(default_factory=CodecConfig)

    def shard_index(self) -> tuple[int, int]:
        try:
            i, n = (int(x) for x in self.shard.split("/"))
        except ValueError as exc:
            raise ValueError(f"shard={self.shard!r} is not of the form i/n") from exc
        if not 0 <= i < n:
            raise ValueError(f"shard={self.shard!r}: need 0 <= i < n")
        return i, n


@dataclass
class PrecomputeSummary:
    rows: int = 0
    video_rows: int = 0
    videos: int = 0  # distinct videos in the data
    in_shard: int = 0
    skipped_done: int = 0
    computed: int = 0
    failed: int = 0
    seconds: float = 0.0
    output: str = ""
    failures: str = ""
    assets_root: str = ""  # the folder the output's `codec_assets` paths are relative to


def _select_and_write(video: str, folder: str, cfg: CodecConfig) -> tuple[str, str | None]:
    """(folder, None) on success, (folder, reason) on failure."""
    try:
        write_assets(select_patches(video, cfg), folder)
    except VideoDecodeError as exc:
        return folder, str(exc)
    except Exception as exc:  # a batch job records every failure and goes on
        return folder, f"{video}: {type(exc).__name__}: {exc}"
    return folder, None


def _write_jsonl(rows: list[dict], path: Path) -> None:
    with atomic_file(path) as tmp, tmp.open("w") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def precompute(job: PrecomputeConfig, progress: bool = True) -> PrecomputeSummary:
    start = time.perf_counter()
    data = Path(job.data)
    if not data.is_file():
        raise FileNotFoundError(f"data file not found: {data}")
    root = Path(job.root or data.parent).resolve()
    out = Path(job.out or root / "codec_assets").resolve()
    out.mkdir(parents=True, exist_ok=True)
    shard_i, shard_n = job.shard_index()
    rows = [row for _, row in read_rows(data)]
    summary = PrecomputeSummary(rows=len(rows))
    failures: dict[str, str] = {}  # video (as written in the data) -> reason
    folder_of: dict[str, Path] = {}  # video -> asset folder
    for row in rows:
        video = row.get("video")
        if not isinstance(video, str) or video in folder_of or video in failures:
            summary.video_rows += isinstance(video, str)
            continue
        summary.video_rows += 1
        path = (root / video).resolve()
        if not path.is_relative_to(root):
            failures[video] = f"{video}: outside the dataset root {root}"
        elif not path.is_file():
            failures[video] = f"{path}: file not found"
        else:
            folder_of[video] = out / asset_key(video, path, job.codec)
    summary.videos = len(folder_of) + len(failures)
    ordered = sorted(folder_of)
    mine = [v for i, v in enumerate(ordered) if i % shard_n == shard_i]
    summary.in_shard = len(mine)
    todo = [v for v in mine if not folder_of[v].is_dir()]
    summary.skipped_done = len(mine) - len(todo)
    bar = tqdm(total=len(todo), disable=not progress, desc="codec assets", unit="video")
    jobs = [(str(root / v), str(folder_of[v]), job.codec) for v in todo]
    by_folder = {str(folder_of[v]): v for v in todo}
    with ExitStack() as stack:
        if job.workers <= 1:
            results = (_select_and_write(*args) for args in jobs)
        else:
            pool = stack.enter_context(
                ProcessPoolExecutor(job.workers, mp_context=get_context("spawn"))
            )
            futures = [pool.submit(_select_and_write, *args) for args in jobs]
            results = (future.result() for future in as_completed(futures))
        for folder, error in results:
            summary.computed += error is None
            if error is not None:
                failures[by_folder[folder]] = error
            bar.update()
    bar.close()
    mine_set = set(mine) | {v for v in failures if v not in folder_of}
    summary.failed = sum(1 for v in failures if v in mine_set)
    suffix = "" if shard_n == 1 else f".shard-{shard_i}-of-{shard_n}"
    failures_path = out / f"failures{suffix}.jsonl"
    _write_jsonl(
        [{"video": v, "reason": r} for v, r in sorted(failures.items()) if v in mine_set],
        failures_path,
    )
    output = Path(job.output) if job.output else out / f"{data.stem}.codec{suffix}.jsonl"
    # Relative paths either way, so the dataset can confine them to their root.
    assets_root = root if out.is_relative_to(root) else out
    out_rows = []
    for row in rows:
        video = row.get("video")
        folder = folder_of.get(video) if isinstance(video, str) else None
        if folder is not None and folder.is_dir():
            row = {**row, "codec_assets": str(folder.relative_to(assets_root))}
        out_rows.append(row)
    _write_jsonl(out_rows, output)
    summary.seconds = time.perf_counter() - start
    summary.output, summary.failures = str(output), str(failures_path)
    summary.assets_root = str(assets_root)
    return summary
