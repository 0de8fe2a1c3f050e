"""`ovmllm concepts extract | cluster | assign | ocr` from the command line."""

from __future__ import annotations

import json

import numpy as np
import yaml
from PIL import Image

from encoder.concepts.store import read_arrow, shard_path
from ovmllm.cli import main


def test_the_bank_end_to_end_from_the_command_line(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(
            tmp_path / f"{i}.png"
        )
    (tmp_path / "broken.png").write_bytes(b"?")
    (tmp_path / "list.txt").write_text("0.png\n1.png\nbroken.png\n2.png\n3.png\n")
    bank = tmp_path / "bank"
    code = main(["concepts", "extract", "--list", str(tmp_path / "list.txt"), "--tower",
                 "onevision", "--tower-size", "tiny", "--image-size", "28", "--shard-size", "3",
                 "--out", str(bank), "batch_size=2"])  # fmt: skip
    summary = json.loads(capsys.readouterr().out)
    assert code == 3  # done, with a recorded failure
    assert (summary["embedded"], summary["failed"], summary["shards_written"]) == (4, 1, 2)
    saved = yaml.safe_load((bank / "extract.yaml").read_text())
    assert saved["batch_size"] == 2 and saved["teacher"]["image_size"] == 28
    assert main(["concepts", "cluster", "--bank", str(bank), "--k", "2"]) == 0
    assert json.loads(capsys.readouterr().out)["k"] == "2"
    assert main(["concepts", "assign", "--bank", str(bank), "--top-k", "2"]) == 0
    assert json.loads(capsys.readouterr().out)["labelled"] == 4
    labels = read_arrow(shard_path(bank / "labels", "labels", 0, ".arrow")).to_pylist()
    assert [row["sample_id"] for row in labels] == ["0.png", "1.png"]
    assert all(sorted(row["labels"]) == [0, 1] for row in labels)


def test_ocr_from_the_command_line(tmp_path, capsys):
    Image.new("RGB", (16, 16), "white").save(tmp_path / "page.png")
    (tmp_path / "page.txt").write_text("Hello world")
    (tmp_path / "list.txt").write_text("page.png page.txt\n")
    (tmp_path / "vocab.txt").write_text("world\nhello\n")
    code = main(["concepts", "ocr", "--list", str(tmp_path / "list.txt"), "--vocab",
                 str(tmp_path / "vocab.txt"), "--out", str(tmp_path / "ocr")])  # fmt: skip
    assert code == 0 and json.loads(capsys.readouterr().out)["labelled"] == 1
    rows = read_arrow(shard_path(tmp_path / "ocr", "labels", 0, ".arrow")).to_pylist()
    assert rows[0]["labels"] == [1, 0]


def test_bad_input_prints_one_line_and_exits_1(tmp_path, capsys):
    assert main(["concepts", "cluster", "--bank", str(tmp_path / "nowhere")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("ovmllm concepts cluster:") and "not a concept bank" in err
    assert len(err.splitlines()) == 1
    (tmp_path / "list.txt").write_text("../outside.png\n")
    assert main(["concepts", "extract", "--list", str(tmp_path / "list.txt"), "--out",
                 str(tmp_path / "bank")]) == 1  # fmt: skip
    assert "outside the root" in capsys.readouterr().err
    assert main(["concepts", "extract", "--out", str(tmp_path / "b"), "kind=audio"]) == 1
    assert "kind" in capsys.readouterr().err
