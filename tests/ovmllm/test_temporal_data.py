"""The generated temporal video QA (ovmllm/data/temporal.py): deterministic, cached, the
event spans always inside the 64 sampled frames and mostly between the 8 dense ones, videos
that decode to their recorded truth, and answers that follow from the truths."""

from __future__ import annotations

import itertools
import json
import re
from collections import Counter
from pathlib import Path

import av
import numpy as np
import pytest

from encoder.codec.plan import sample_indices
from ovmllm.cli import main
from ovmllm.data import temporal
from ovmllm.data.temporal import (
    FAMILIES,
    LETTERS,
    TemporalConfig,
    mc_prompt,
    plan_videos,
    write_temporal_dataset,
)
from ovmllm.data.temporal_scenes import NOTHING, draw_event_span

# one video per family and split, short and small: 10 videos, all three codecs in each split
TINY = {"train_per_family": 1, "test_per_family": 1, "min_frames": 64, "max_frames": 96,
        "width": 96, "height": 64}  # fmt: skip


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory) -> Path:
    return write_temporal_dataset(
        tmp_path_factory.mktemp("temporal") / "data", TemporalConfig(**TINY)
    )


def _docs(folder: Path, split: str) -> list[dict]:
    return [json.loads(line) for family in FAMILIES
            for line in (folder / split / f"{family}.jsonl").read_text().splitlines()]  # fmt: skip


def _hits(span: list[int], frames: int, count: int) -> bool:
    ids = sample_indices(frames, count)
    return bool(np.any((ids >= span[0]) & (ids < span[1])))


def _expected(doc: dict) -> str:
    """The correct option's text, from the truth alone."""
    truth = doc["truth"]
    return {
        "event": lambda: truth["colour"] if truth["event"] else NOTHING,
        "which_moved": lambda: truth["mover"],
        "direction": lambda: truth["path"],
        "entries": lambda: str(truth["entries"]),
        "static_control": lambda: truth["colour"] if truth["asked"] == "background"
        else truth["shape"],
    }[doc["family"]]()  # fmt: skip


def test_same_config_gives_identical_files_and_a_written_folder_is_reused(
    tiny_dataset, tmp_path, monkeypatch
):
    # An x265 encode here first: it changes what x264 writes later in the same process, and
    # the writer must not depend on what ran before it. Then two worker processes, and one
    # again, write what one wrote before, byte for byte.
    cfg = TemporalConfig(**TINY)
    hevc = next(video for video in temporal.plan_videos(cfg) if video.encoder == "libx265")
    temporal._write_video((tmp_path / "hevc.mp4", hevc, cfg))
    again = write_temporal_dataset(tmp_path / "again", cfg, workers=2)
    once = write_temporal_dataset(tmp_path / "once", cfg)
    texts = sorted(p.relative_to(tiny_dataset) for p in tiny_dataset.rglob("*.json*"))
    assert len(texts) == 2 * len(FAMILIES) + 2  # train/ and test/ docs, train.jsonl, config.json
    videos = sorted(p.relative_to(tiny_dataset) for p in tiny_dataset.rglob("*.mp4"))
    assert videos
    for name in texts + videos:
        expected = (tiny_dataset / name).read_bytes()
        assert (again / name).read_bytes() == expected == (once / name).read_bytes(), name

    def no_encoding(*args, **kwargs):
        raise AssertionError("a dataset with the same config was generated again")

    monkeypatch.setattr(temporal, "_encode", no_encoding)
    assert write_temporal_dataset(again, TemporalConfig(**TINY)) == again


def test_h264_writes_the_same_bytes_on_every_encode_of_the_same_video(tmp_path):
    """With x264's macroblock tree on, this video of the default dataset came out as one of
    three different files over 12 encodes in one process; it must be one."""
    cfg = TemporalConfig(train_per_family=150, test_per_family=40)
    video = next(v for v in plan_videos(cfg) if v.doc["id"] == "train-which_moved-67")
    assert video.encoder == "libx264"
    written = set()
    for k in range(6):
        temporal._write_video((tmp_path / f"{k}.mp4", video, cfg))
        written.add((tmp_path / f"{k}.mp4").read_bytes())
    assert len(written) == 1


def test_a_folder_with_other_settings_is_refused_by_name_unless_overwritten(tmp_path):
    small = {"train_per_family": 0, "test_per_family": 1, "families": ["static_control"],
             "min_frames": 64, "max_frames": 64, "width": 64, "height": 64}  # fmt: skip
    folder = write_temporal_dataset(tmp_path / "data", TemporalConfig(**small))
    with pytest.raises(FileExistsError, match=rf"{re.escape(str(folder))}.*seed: 0 -> 3"):
        write_temporal_dataset(folder, TemporalConfig(**small, seed=3))
    write_temporal_dataset(folder, TemporalConfig(**small, seed=3), overwrite=True)
    assert json.loads((folder / "config.json").read_text())["config"]["seed"] == 3
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"other is not empty.*no config\.json"):
        write_temporal_dataset(tmp_path / "other", TemporalConfig(**small))
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"


def test_event_spans_are_always_among_64_sampled_frames_and_mostly_between_8():
    rng = np.random.default_rng(0)
    missed = 0
    for _ in range(500):
        frames = int(rng.integers(64, 401))
        span = draw_event_span(rng, frames)
        assert _hits(list(span), frames, 64), (frames, span)
        missed += not _hits(list(span), frames, 8)
    assert missed / 500 > 0.6  # about 0.75 expected: the flash covers 1/6..1/3 of an 8-gap
    events = [v.doc["truth"] for v in plan_videos(TemporalConfig()) if v.doc["family"] == "event"]
    spans = [(t["span"], t["frames"]) for t in events if t["event"]]
    assert len(spans) == 45 and all(_hits(span, frames, 64) for span, frames in spans)
    assert sum(not _hits(span, frames, 8) for span, frames in spans) / len(spans) > 0.6


def test_default_plan_answers_follow_from_the_truths_with_balanced_letters():
    cfg = TemporalConfig()
    planned = plan_videos(cfg)
    assert len(planned) == (cfg.train_per_family + cfg.test_per_family) * len(FAMILIES)
    letters: dict[tuple[str, str], Counter] = {}
    for video in planned:
        doc, truth = video.doc, video.doc["truth"]
        split = doc["id"].split("-")[0]
        assert len(set(doc["options"])) == 4 and doc["answer"] in LETTERS
        assert doc["options"][LETTERS.index(doc["answer"])] == _expected(doc), doc["id"]
        assert cfg.min_frames <= truth["frames"] <= cfg.max_frames
        letters.setdefault((split, doc["family"]), Counter())[doc["answer"]] += 1
        if doc["family"] == "which_moved":
            assert set(truth["objects"]) <= set(doc["options"]) and len(truth["objects"]) in (3, 4)
        if doc["family"] == "entries":  # every visit and every absence is seen in 64 frames
            spans, frames = truth["spans"], truth["frames"]
            gaps = [[a[1], b[0]] for a, b in itertools.pairwise(spans)]
            assert len(spans) == truth["entries"]
            assert all(_hits(span, frames, 64) for span in spans + gaps), doc["id"]
    for key, counts in letters.items():
        assert max(counts.values()) - min(counts.values()) <= 1 and len(counts) == 4, key
    codecs = Counter(v.doc["truth"]["codec"] for v in planned)
    assert codecs == {"h264": 210, "mpeg4": 45, "hevc": 45}


def test_videos_decode_to_their_recorded_frame_count_and_codec(tiny_dataset):
    seen = set()
    for doc in _docs(tiny_dataset, "test") + _docs(tiny_dataset, "train"):
        with av.open(str(tiny_dataset / doc["video"])) as container:
            stream = container.streams.video[0]
            decoded = sum(1 for _ in container.decode(stream))
            assert (decoded, stream.codec_context.name) == (
                doc["truth"]["frames"], doc["truth"]["codec"]), doc["id"]  # fmt: skip
            assert (stream.width, stream.height) == (TINY["width"], TINY["height"])
        seen.add(doc["truth"]["codec"])
    assert seen == {"h264", "mpeg4", "hevc"}


def test_train_rows_ask_as_evaluation_does_on_videos_apart_from_test(tiny_dataset):
    docs = {doc["id"]: doc for doc in _docs(tiny_dataset, "train")}
    rows = [json.loads(line) for line in (tiny_dataset / "train.jsonl").read_text().splitlines()]
    assert sorted(row["id"] for row in rows) == sorted(
        f"{i}-{kind}" for i in docs for kind in ("caption", "qa"))  # fmt: skip
    for row in rows:
        doc = docs[row["id"].rsplit("-", 1)[0]]
        human, gpt = (turn["value"] for turn in row["conversations"])
        assert row["video"] == doc["video"] and human.startswith("<video>\n")
        if row["id"].endswith("-qa"):
            assert human == f"<video>\n{mc_prompt(doc)}"
            assert gpt == f"{doc['answer']}. {_expected(doc)}"
    test_videos = {doc["video"] for doc in _docs(tiny_dataset, "test")}
    assert not test_videos & {row["video"] for row in rows}
    assert all((tiny_dataset / video).is_file() for video in test_videos)


def test_the_prompt_lists_lettered_options_then_the_instruction():
    doc = {"question": "Which?", "options": ["red", "blue", "green", NOTHING]}
    assert mc_prompt(doc) == (
        "Which?\nA. red\nB. blue\nC. green\nD. nothing appeared\n"
        "Answer with the option's letter from the given choices directly."
    )


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="nope"):
        TemporalConfig(families=["event", "nope"])
    with pytest.raises(ValueError, match="frames range"):
        TemporalConfig(min_frames=30)
    with pytest.raises(ValueError, match="mpeg4 \\+ hevc"):
        TemporalConfig(mpeg4_share=0.7, hevc_share=0.5)


def test_ovmllm_data_temporal_writes_the_folder(tmp_path, capsys):
    out = tmp_path / "cli"
    settings = ["test_per_family=1", "train_per_family=0", "families=[event]",
                "min_frames=64", "max_frames=64", "width=64", "height=64"]  # fmt: skip
    assert main(["data", "temporal", "--out", str(out), *settings]) == 0
    assert f"{out / 'test' / 'event.jsonl'}: 1 rows" in capsys.readouterr().out
    assert main(["data", "temporal", "--out", str(out), *settings, "seed=5"]) == 1
    assert str(out) in capsys.readouterr().err
