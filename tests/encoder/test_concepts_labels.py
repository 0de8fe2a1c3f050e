"""`cluster` and `assign` on a bank of generated blob embeddings: centres recover the blobs,
labels are the top-k nearest centres in order, every step resumes."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch

from encoder.concepts.assign import AssignConfig, assign
from encoder.concepts.cluster import ClusterConfig, cluster
from encoder.concepts.kmeans import unit_rows
from encoder.concepts.store import (
    INDEX_SCHEMA,
    Bank,
    StoreError,
    open_manifest,
    read_arrow,
    read_tensor,
    shard_path,
    write_arrow,
    write_tensor,
)

BLOBS, DIM, SHARD = 6, 16, 250


def write_bank(folder, embeddings: np.ndarray, failed: set[int], teacher_key: str = "t" * 16):
    """A bank as `extract` writes it: entries in `failed` have no row."""
    entries = len(embeddings) + len(failed)
    settings = {"kind": "image", "frames": 1, "teacher": {}, "teacher_key": teacher_key,
                "shard_size": SHARD, "samples": entries, "list_digest": "l" * 16}  # fmt: skip
    open_manifest(folder, settings)
    it = iter(embeddings)
    for shard in range(-(-entries // SHARD)):
        positions = range(shard * SHARD, min(entries, (shard + 1) * SHARD))
        rows, errors, kept = [], [], []
        for p in positions:
            rows.append(-1 if p in failed else len(kept))
            errors.append("broken" if p in failed else None)
            if p not in failed:
                kept.append(next(it))
        write_tensor(shard_path(folder, "embeddings", shard, ".safetensors"), "embeddings",
                     torch.tensor(np.array(kept), dtype=torch.float32), {"dim": DIM})  # fmt: skip
        index = pa.table({"sample_id": [f"s{p}" for p in positions], "position": list(positions),
                          "row": rows, "error": errors}, schema=INDEX_SCHEMA)  # fmt: skip
        write_arrow(index, shard_path(folder, "index", shard, ".arrow"))


@pytest.fixture
def bank(tmp_path):
    rng = np.random.default_rng(0)
    directions = unit_rows(rng.standard_normal((BLOBS, DIM)))
    truth = rng.permutation(np.arange(600) % BLOBS)
    points = unit_rows(directions[truth] + 0.02 * rng.standard_normal((600, DIM)))
    write_bank(tmp_path / "bank", points, failed={3, 260, 601})
    return tmp_path / "bank", points, truth


def test_cluster_then_assign_recovers_the_blobs(bank, tmp_path):
    folder, points, truth = bank
    meta = cluster(folder, ClusterConfig(k=BLOBS, restarts=3), tmp_path / "centres.safetensors")
    assert (meta["k"], meta["dim"], meta["trained_on"], meta["init"]) == ("6", "16", "600",
                                                                        "k-means++")  # fmt: skip
    centres, _ = read_tensor(tmp_path / "centres.safetensors", "centres")
    assert centres.shape == (BLOBS, DIM)
    counts = assign(folder, tmp_path / "centres.safetensors", AssignConfig(top_k=3),
                    tmp_path / "labels", progress=False)  # fmt: skip
    assert counts == {"labelled": 600, "shards_written": 3, "shards_skipped": 0}
    tables = [read_arrow(shard_path(tmp_path / "labels", "labels", s, ".arrow")) for s in range(3)]
    ids = [sid for t in tables for sid in t.column("sample_id").to_pylist()]
    assert len(ids) == 600 and "s3" not in ids and "s260" not in ids and "s601" not in ids
    labels = np.array([row for t in tables for row in t.column("labels").to_pylist()])
    sims = np.array([row for t in tables for row in t.column("similarities").to_pylist()])
    assert labels.shape == sims.shape == (600, 3)
    pairs = set(zip(truth.tolist(), labels[:, 0].tolist(), strict=True))
    assert len(pairs) == BLOBS  # up to relabelling, each blob is one centre
    cosines = points @ centres.numpy().T
    np.testing.assert_array_equal(labels, np.argsort(-cosines, axis=1)[:, :3])
    np.testing.assert_allclose(sims, -np.sort(-cosines, axis=1)[:, :3], atol=1e-5)
    assert tables[0].schema.field("labels").type == pa.list_(pa.int32())


def test_labels_load_with_datasets(bank, tmp_path):
    from datasets import Dataset

    folder, _, _ = bank
    cluster(folder, ClusterConfig(k=4), folder / "centres.safetensors")
    assign(folder, folder / "centres.safetensors", AssignConfig(top_k=2), tmp_path / "labels",
           progress=False)  # fmt: skip
    data = Dataset.from_file(str(shard_path(tmp_path / "labels", "labels", 0, ".arrow")))
    assert data.column_names == ["sample_id", "labels", "similarities"]
    assert len(data) == SHARD - 1 and len(data[0]["labels"]) == 2


def test_steps_resume_and_refuse_other_settings(bank, tmp_path):
    folder, _, _ = bank
    centres = tmp_path / "centres.safetensors"
    cluster(folder, ClusterConfig(k=BLOBS), centres)
    stamp = centres.stat().st_mtime_ns
    cluster(folder, ClusterConfig(k=BLOBS), centres)  # same settings: kept
    assert centres.stat().st_mtime_ns == stamp
    out = tmp_path / "labels"
    assign(folder, centres, AssignConfig(top_k=2), out, progress=False)
    first = read_arrow(shard_path(out, "labels", 1, ".arrow"))
    shard_path(out, "labels", 1, ".arrow").unlink()
    counts = assign(folder, centres, AssignConfig(top_k=2), out, progress=False)
    assert counts == {"labelled": SHARD - 1, "shards_written": 1, "shards_skipped": 2}
    assert read_arrow(shard_path(out, "labels", 1, ".arrow")).equals(first)
    with pytest.raises(StoreError, match="top_k"):
        assign(folder, centres, AssignConfig(top_k=3), out, progress=False)
    cluster(folder, ClusterConfig(k=5), centres)  # other settings: clustered again
    with pytest.raises(StoreError, match="centres"):
        assign(folder, centres, AssignConfig(top_k=2), out, progress=False)


def test_centres_of_another_teacher_are_refused(bank, tmp_path):
    folder, points, _ = bank
    cluster(folder, ClusterConfig(k=3), tmp_path / "centres.safetensors")
    write_bank(tmp_path / "other", points, failed=set(), teacher_key="u" * 16)
    with pytest.raises(StoreError, match="another teacher"):
        assign(tmp_path / "other", tmp_path / "centres.safetensors", AssignConfig(top_k=2),
               tmp_path / "labels", progress=False)  # fmt: skip


def test_an_incomplete_bank_is_not_clustered(bank, tmp_path):
    folder, _, _ = bank
    shard_path(folder, "index", 2, ".arrow").unlink()
    with pytest.raises(StoreError, match="1 of 3 shards"):
        cluster(folder, ClusterConfig(k=3), tmp_path / "centres.safetensors")


def test_rows_are_drawn_from_the_whole_bank(bank):
    folder, points, _ = bank
    drawn = Bank(folder).sample_rows(100, seed=1).numpy()
    assert drawn.shape == (100, DIM)
    exact = (np.abs(drawn[:, None] - points[None]).max(-1) < 1e-7).argmax(1)
    assert len(set(exact.tolist())) == 100 and exact.max() > 2 * SHARD  # all shards reached
    np.testing.assert_array_equal(Bank(folder).sample_rows(100, seed=1).numpy(), drawn)
    assert Bank(folder).sample_rows(10_000, seed=0).shape == (600, DIM)
