"""`ovmllm probe` on the generated action set with tiny random towers: the CLI end to end,
features (final normalised states, grid towers per frame, an ovmllm folder's tower), the
memory-mapped cache (identical to no cache, resumed after an interruption), unreadable videos
skipped, and a grid tower refused codec input."""

from __future__ import annotations

import csv
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from eval.probe.cells import cell_producer, plan_probe_cells
from eval.probe.config import ProbeConfig, probe_codec
from eval.probe.encoder import load_encoder
from eval.probe.features import FeatureStore, extract
from eval.probe.lists import read_list
from eval.probe.train import HeadTrainConfig, train_head
from ovmllm.config import ConfigError

# 112 px canvas: 8 x 8 patches of 14 a frame, so budgets of 128 / 256 patches are 2 / 4 frames
CANVAS = 112
SMALL_CODEC = replace(probe_codec(), canvas_size=CANVAS, budget=128)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: on a busy 2-core machine a second OpenMP thread costs more than it gives."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def actions(tmp_path_factory):
    """12 videos of the labelled temporal set (6 motion, 6 event; 8 train, 4 val), 64 px."""
    from ovmllm.data.temporal_actions import ActionConfig, write_action_dataset

    cfg = ActionConfig(train_per_family=4, val_per_family=2, min_frames=64, max_frames=66,
                       width=64, height=64)  # fmt: skip
    return write_action_dataset(tmp_path_factory.mktemp("actions") / "data", cfg)


def _save(model, folder):
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def towers(tmp_path_factory):
    """Tower folders with random weights: tiny OneVision-Encoder, SigLIP2 and Qwen3-ViT."""
    from encoder.onevision import OneVisionEncoderConfig, OneVisionEncoderModel
    from encoder.towers import TowerConfig, build_tower

    root = tmp_path_factory.mktemp("towers")
    torch.manual_seed(0)
    ov = OneVisionEncoderModel(OneVisionEncoderConfig.from_size("tiny"))
    folders = {"onevision": _save(ov, root / "ov_tiny")}
    for name in ("siglip2", "qwen3_vit"):
        folders[name] = _save(build_tower(TowerConfig(name=name)).model, root / name)
    return folders


def _probe(tmp_path, towers, actions, *extra):
    from ovmllm.cli import main

    return main(["probe", "--encoder", str(towers["onevision"]), "--train",
                 str(actions / "train.txt"), "--val", str(actions / "val.txt"), "--labels",
                 str(actions / "labels.json"), "--out", str(tmp_path / "out"),
                 f"codec.canvas_size={CANVAS}", *extra])  # fmt: skip


def test_cli_runs_every_mode_and_control_at_two_budgets(tmp_path, towers, actions, capsys):
    code = _probe(tmp_path, towers, actions, "--budgets", "128,256", "--modes",
                  "codec,frames,random", "--controls", "shuffle,nonsalient:0.5", "--epochs", "2",
                  "--reference", "paper", "extract.workers=1", "extract.batch_size=6")  # fmt: skip
    assert code == 0, capsys.readouterr().err
    out = tmp_path / "out"
    rows = list(csv.DictReader((out / "probe.csv").open()))
    cells = {(r["mode"], r["control"], int(r["budget"])) for r in rows}
    series = [("codec", "none"), ("codec", "shuffle"), ("codec", "nonsalient:0.5"),
              ("frames", "none"), ("random", "none")]  # fmt: skip
    assert cells == {(*s, b) for s in series for b in (128, 256)}
    for row in rows:
        assert row["status"] == "ok" and 0.0 <= float(row["top1"]) <= 100.0
        assert row["dataset"] == "data" and row["encoder"] == "ov_tiny" and row["epochs"] == "2"
        assert int(row["tokens"]) == int(row["budget"])  # equal patches in every mode
        assert float(row["frame_equivalents"]) == int(row["budget"]) / 64
        assert (row["train_clips"], row["val_clips"], row["skipped"]) == ("8", "4", "0")
    table = (out / "probe.md").read_text()
    header = next(line for line in table.splitlines() if line.startswith("| budget"))
    for name in ("codec", "codec + shuffle", "codec + nonsalient:0.5", "frames", "random",
                 "paper: SigLIP2 frames", "paper: OV-Encoder codec"):  # fmt: skip
        assert f"| {name} |" in header
    body = [line for line in table.splitlines() if line.startswith(("| 128 |", "| 256 |"))]
    assert len(body) == 2 and not any("—" in line for line in body)
    assert (out / "probe.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(list((out / "cells").glob("*.json"))) == 10
    assert "head:" in (out / "config.yaml").read_text()


def test_a_grid_tower_is_refused_codec_random_and_controls(tmp_path, towers, actions, capsys):
    from ovmllm.cli import main

    code = main(["probe", "--encoder", str(towers["siglip2"]), "--train",
                 str(actions / "train.txt"), "--val", str(actions / "val.txt"), "--labels",
                 str(actions / "labels.json"), "--out", str(tmp_path / "out"), "--modes",
                 "codec,frames"])  # fmt: skip
    assert code == 1
    err = capsys.readouterr().err
    assert "siglip2 tower, which takes whole frames only: codec not available" in err
    spec = load_encoder(towers["siglip2"]).spec
    with pytest.raises(ConfigError, match="random, control shuffle not available"):
        plan_probe_cells([512], ["frames", "random"], ["shuffle"], probe_codec(), spec, "x")
    cells = plan_probe_cells([512, 1024], ["frames"], [], probe_codec(), spec, "x")
    assert [(c.mode, c.budget) for c in cells] == [("frames", 2), ("frames", 4)]


@pytest.mark.parametrize("tower, rows", [("onevision", 128), ("siglip2", 2 * 196),
                                         ("qwen3_vit", 196)])  # fmt: skip
def test_features_are_final_normalised_states_per_patch(towers, actions, tower, rows):
    """Two frame-equivalents: 128 OV codec patches; SigLIP2 2 frames of 14 x 14 at 224/16;
    Qwen3-ViT one temporal pair of 14 x 14 before its merger."""
    encoder = load_encoder(towers[tower])
    codec = SMALL_CODEC if tower == "onevision" else probe_codec()
    budget = 128 if tower == "onevision" else 512
    cell = plan_probe_cells([budget], ["codec" if tower == "onevision" else "frames"], [], codec,
                            encoder.spec, tower)[0]  # fmt: skip
    item = cell_producer(cell, codec, encoder.spec)(actions / "videos" / "train_event_0.mp4")
    (features,) = encoder.features(item)
    assert features.shape[0] == rows
    # random-init norms are weight 1, bias 0: each row has mean 0 and unit variance
    torch.testing.assert_close(features.mean(-1), torch.zeros(rows), atol=1e-4, rtol=0)
    torch.testing.assert_close(features.var(-1, unbiased=False), torch.ones(rows), atol=2e-3,
                               rtol=0)  # fmt: skip


def test_an_ovmllm_folder_gives_its_own_tower(tiny_checkpoint):
    from ovmllm.model import OVMLLMForCausalLM

    encoder = load_encoder(tiny_checkpoint)
    model = OVMLLMForCausalLM.from_pretrained(tiny_checkpoint)
    expected = model.tower.state_dict()
    got = encoder.tower.state_dict()
    assert expected.keys() == got.keys()
    for key, value in expected.items():
        assert torch.equal(got[key], value), key
    assert encoder.tower.layer_index == model.tower.model.config.num_hidden_layers  # last block


def _paths(actions) -> list:
    samples = read_list(actions / "train.txt") + read_list(actions / "val.txt")
    return [s.path for s in sorted(samples, key=lambda s: s.video)]


def test_cached_and_uncached_features_give_identical_results(tmp_path, towers, actions):
    encoder = load_encoder(towers["onevision"])
    cell = plan_probe_cells([128], ["codec"], [], SMALL_CODEC, encoder.spec, "ov")[0]
    producer = cell_producer(cell, SMALL_CODEC, encoder.spec)
    paths = _paths(actions)
    memory = FeatureStore()
    in_memory = extract(encoder, producer, paths, memory, batch_size=5, progress=False)
    # the cache sees 8 videos first, then all 12: it keeps the 8 rows and adds 4
    disk = FeatureStore.open(tmp_path / "store", "float16")
    first = extract(encoder, producer, paths[:8], disk, batch_size=5, progress=False)
    assert (first.extracted, first.kept, first.failed) == (8, 0, {})
    before = np.array(disk.features)
    more = extract(encoder, producer, paths, disk, batch_size=5, progress=False)
    assert (more.extracted, more.kept) == (4, 8)
    np.testing.assert_array_equal(np.asarray(disk.features[:8]), before)
    reopened = FeatureStore.open(tmp_path / "store", "float16")
    again = extract(encoder, producer, paths, reopened, batch_size=5, progress=False)
    assert (again.extracted, again.kept) == (0, 12)  # nothing recomputed
    assert isinstance(reopened.features, np.memmap)
    cached_rows, memory_rows = again.rows, in_memory.rows
    np.testing.assert_array_equal(np.asarray(reopened.features[cached_rows]),
                                  memory.features[memory_rows])  # fmt: skip
    labels = np.arange(12) % 3
    cfg = HeadTrainConfig(epochs=3, batch_size=4)

    def head(store, rows):
        return train_head(store.features, (rows[:8], labels[:8]), (rows[8:], labels[8:]), 3, cfg)

    assert head(reopened, cached_rows).history == head(memory, memory_rows).history


def test_an_interrupted_extraction_resumes_where_it_stopped(tmp_path, towers, actions):
    encoder = load_encoder(towers["onevision"])
    cell = plan_probe_cells([128], ["random"], [], SMALL_CODEC, encoder.spec, "ov")[0]
    producer = cell_producer(cell, SMALL_CODEC, encoder.spec)
    paths = _paths(actions)
    whole = FeatureStore("float32")
    extract(encoder, producer, paths, whole, batch_size=4, progress=False)

    calls, features = [], encoder.features

    def stop_at_the_second_batch(tokens):
        calls.append(len(tokens))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return features(tokens)

    encoder.features = stop_at_the_second_batch
    with pytest.raises(KeyboardInterrupt):
        extract(encoder, producer, paths, FeatureStore.open(tmp_path / "s", "float32"),
                batch_size=4, progress=False)  # fmt: skip
    encoder.features = features
    store = FeatureStore.open(tmp_path / "s", "float32")
    assert store.filled.tolist() == [True] * 4 + [False] * 8
    resumed = extract(encoder, producer, paths, store, batch_size=4, progress=False)
    assert (resumed.extracted, resumed.kept) == (8, 4)
    np.testing.assert_allclose(np.asarray(store.features), whole.features, atol=1e-5)


def test_unreadable_videos_are_counted_and_skipped_with_their_ids(tmp_path, towers, actions):
    from eval.probe.run import run_probe

    (actions / "videos" / "broken.mp4").write_bytes(b"not a video at all")
    train = tmp_path / "train.txt"
    listed = (actions / "train.txt").read_text()
    train.write_text(listed + "videos/broken.mp4 flash\nvideos/gone.mp4 up\n")
    cfg = ProbeConfig(encoder=str(towers["onevision"]), train=str(train),
                      val=str(actions / "val.txt"), root=str(actions),
                      labels=str(actions / "labels.json"), budgets=[128], modes=["codec"],
                      codec=SMALL_CODEC, head=HeadTrainConfig(epochs=1))  # fmt: skip
    cfg.extract.workers = 0
    (row,) = run_probe(cfg, tmp_path / "out", progress=lambda _: None, bars=False)
    assert (row["skipped"], row["train_clips"], row["val_clips"]) == (2, 8, 4)
    skipped = json.loads((tmp_path / "out" / "skipped.json").read_text())["codec-128p-none"]
    assert set(skipped) == {"videos/broken.mp4", "videos/gone.mp4"}
    assert "file not found" in skipped["videos/gone.mp4"]
    assert "broken.mp4" in skipped["videos/broken.mp4"]


def test_the_action_set_labels_clips_by_their_scene_truth(actions):
    ids = json.loads((actions / "labels.json").read_text())
    assert sorted(ids.values()) == list(range(10)) and {"flash", "no_flash"} <= set(ids)
    docs = {}
    for family in ("direction", "event"):
        for line in (actions / "train" / f"{family}.jsonl").read_text().splitlines():
            doc = json.loads(line)
            docs[doc["video"]] = doc
    labels = dict(line.split() for line in (actions / "train.txt").read_text().splitlines())
    assert labels.keys() == docs.keys() and set(labels.values()) <= set(ids)
    for video, label in labels.items():
        truth = docs[video]["truth"]
        if docs[video]["family"] == "event":
            assert label == ("flash" if truth["event"] else "no_flash")
        else:
            assert label == truth["path"].replace(", then back ", "_then_back_")
    events = [label for video, label in labels.items() if docs[video]["family"] == "event"]
    assert sorted(events) == ["flash", "flash", "no_flash", "no_flash"]  # half with a flash
