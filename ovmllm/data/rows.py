"""LLaVA JSON / JSONL rows as a memory-mapped Arrow table (`datasets`).

Rows are normalised to one schema before Arrow sees them (LLaVA's `image` is a string or a
list): `id` str, `conversations` [{from, value}], `images` [str], `video` str, `codec_assets`
str ("" when absent). The Arrow cache goes to `cache_dir`, by default
`$XDG_CACHE_HOME/ovmllm/arrow` (~/.cache/...), never beside the data (which may be read-only),
so dataloader workers share pages instead of each holding Python lists.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import datasets

FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "conversations": datasets.List(
            {"from": datasets.Value("string"), "value": datasets.Value("string")}
        ),
        "images": datasets.List(datasets.Value("string")),
        "video": datasets.Value("string"),
        "codec_assets": datasets.Value("string"),
    }
)


def _normalise(row: dict, n: int) -> dict:
    image = row.get("image") or []
    return {
        "id": str(row.get("id", n)),
        "conversations": [
            {"from": str(t.get("from", "")), "value": str(t.get("value", ""))}
            for t in row.get("conversations", [])
        ],
        "images": [image] if isinstance(image, str) else [str(i) for i in image],
        "video": str(row.get("video") or ""),
        "codec_assets": str(row.get("codec_assets") or ""),
    }


def read_rows(path: str | Path) -> Iterator[tuple[int, dict]]:
    """(n, row) for each row of a LLaVA JSON list (n: its index) or JSONL file (n: its line
    from 0; blank lines skipped), as written in the file."""
    path = Path(path)
    text = path.read_text()
    if path.suffix == ".jsonl":
        for n, line in enumerate(text.splitlines()):
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{n + 1}: not valid JSON ({exc.msg})") from exc
                yield n, row
        return
    rows = json.loads(text)
    if not isinstance(rows, list):
        raise ValueError(f"{path}: expected a JSON list of samples")
    yield from enumerate(rows)


def _rows(path: str):
    for n, row in read_rows(path):
        yield _normalise(row, n)


def default_cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "ovmllm" / "arrow"


def load_rows(path: str | Path, cache_dir: str | Path | None = None) -> datasets.Dataset:
    """The rows of a LLaVA JSON/JSONL file as an Arrow-backed `datasets.Dataset`."""
    path = Path(path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    stat = path.stat()
    key = hashlib.sha256(f"{path}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    return datasets.Dataset.from_generator(
        _rows,
        gen_kwargs={"path": str(path)},
        features=FEATURES,
        cache_dir=str(cache / key),
    )
