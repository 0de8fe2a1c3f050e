"""Shared fixtures: synthetic videos encoded once per session, and the real data in ../shared."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from encoder.codec.synthetic import SyntheticVideo, write_synthetic_video

REAL_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "real_data"
QWEN3 = REAL_DATA / "tokenizers" / "qwen3"


@pytest.fixture(scope="module")
def qwen3_tokenizer():
    """The real Qwen3 tokenizer with its chat template; one per test module (tests may add
    tokens to it)."""
    if not QWEN3.is_dir():
        pytest.skip("../shared/real_data is absent")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(QWEN3)


@pytest.fixture(scope="session")
def real_videos() -> list[Path]:
    folder = REAL_DATA / "video" / "onevision_demo" / "videos"
    videos = sorted(folder.glob("*.mp4")) if folder.is_dir() else []
    if not videos:
        pytest.skip("../shared/real_data is absent")
    return videos


@pytest.fixture(scope="session")
def real_video_samples() -> list[dict]:
    path = REAL_DATA / "video" / "onevision_demo" / "raw_video_samples.json"
    if not path.is_file():
        pytest.skip("../shared/real_data is absent")
    return json.loads(path.read_text())


@pytest.fixture(scope="session")
def make_video(tmp_path_factory):
    """make_video(name, **kwargs) -> SyntheticVideo, encoded once per session per (name, kwargs)."""
    folder = tmp_path_factory.mktemp("videos")
    cache: dict[str, SyntheticVideo] = {}

    def make(name: str, **kwargs) -> SyntheticVideo:
        key = f"{name}|{sorted(kwargs.items())}"
        if key not in cache:
            (folder / str(len(cache))).mkdir()
            cache[key] = write_synthetic_video(folder / str(len(cache)) / name, **kwargs)
        return cache[key]

    return make
