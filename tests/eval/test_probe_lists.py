"""Video lists of `ovmllm probe` in the formats action benchmarks ship, their class ids, and the
errors that name the bad input."""

from __future__ import annotations

import json

import pytest

from eval.probe.lists import ListError, encode_labels, label_ids, read_label_ids, read_list


def test_path_label_lines_relative_to_the_list_folder(tmp_path):
    listed = tmp_path / "train.txt"
    listed.write_text("# Kinetics style\nabseiling/a b.mp4 abseiling\n\nyoga/c.mp4 yoga\n")
    samples = read_list(listed)
    assert [(s.video, s.label) for s in samples] == [("abseiling/a b.mp4", "abseiling"),
                                                      ("yoga/c.mp4", "yoga")]  # fmt: skip
    assert samples[0].path == (tmp_path / "abseiling" / "a b.mp4").resolve()


def test_csv_with_a_header_and_named_columns(tmp_path):
    listed = tmp_path / "val.csv"
    listed.write_text("clip,action,split\nv/1.mp4,run,val\nv/2.mp4,jump,val\n")
    samples = read_list(listed)
    assert [(s.video, s.label) for s in samples] == [("v/1.mp4", "run"), ("v/2.mp4", "jump")]
    listed.write_text("name,kind\nv/1.mp4,run\n")
    assert [s.label for s in read_list(listed, path_column="name", label_column="kind")] == ["run"]
    with pytest.raises(ListError, match="no path column"):
        read_list(listed)


def test_ssv2_json_templates_lose_their_brackets_and_take_ids_from_the_labels_file(tmp_path):
    entries = [{"id": "78687", "label": "putting potato on table",
                "template": "Putting [something] on [something]", "placeholders": ["potato"]},
               {"id": "42326", "label": "spinning a coin",
                "template": "Spinning [something] that quickly stops spinning"}]  # fmt: skip
    (tmp_path / "train.json").write_text(json.dumps(entries))
    (tmp_path / "labels.json").write_text(json.dumps(
        {"Spinning something that quickly stops spinning": "1",
         "Putting [something] on [something]": "0"}))  # fmt: skip
    samples = read_list(tmp_path / "train.json", root=tmp_path / "videos", video_ext=".webm")
    assert [s.video for s in samples] == ["78687.webm", "42326.webm"]
    assert samples[0].label == "Putting something on something"
    ids = label_ids(samples, tmp_path / "labels.json")
    assert encode_labels(samples, ids, "train.json").tolist() == [0, 1]
    (tmp_path / "test.json").write_text(json.dumps([{"id": "1"}]))
    with pytest.raises(ListError, match="entry 0 has no `id` and `template`"):
        read_list(tmp_path / "test.json")


def test_ids_without_a_labels_file_are_the_sorted_training_labels(tmp_path):
    listed = tmp_path / "train.txt"
    listed.write_text("a.mp4 walk\nb.mp4 run\nc.mp4 walk\nd.mp4 jump\n")
    samples = read_list(listed)
    ids = label_ids(samples)
    assert ids == {"jump": 0, "run": 1, "walk": 2}
    assert encode_labels(samples, ids, listed).tolist() == [2, 1, 2, 0]
    listed.write_text("a.mp4 10\nb.mp4 9\nc.mp4 2\n")  # numeric labels sort as numbers
    assert label_ids(read_list(listed)) == {"2": 0, "9": 1, "10": 2}


def test_bad_inputs_are_errors_naming_file_and_reason(tmp_path):
    listed = tmp_path / "lists" / "train.txt"
    listed.parent.mkdir()
    listed.write_text("ok.mp4 run\n../../etc/passwd run\n")
    with pytest.raises(ListError, match=r"train.txt:2: '../../etc/passwd' is outside the root"):
        read_list(listed)
    listed.write_text("lonely_path_without_label\n")
    with pytest.raises(ListError, match=r"train.txt:1: .* is not `path label`"):
        read_list(listed)
    listed.write_text("a.mp4 run\n")
    val = tmp_path / "lists" / "val.txt"
    val.write_text("b.mp4 swim\n")
    with pytest.raises(ListError, match=r"val.txt: unknown label.*'swim'"):
        encode_labels(read_list(val), label_ids(read_list(listed)), val)
    (tmp_path / "labels.json").write_text(json.dumps({"run": 0, "swim": 2}))
    with pytest.raises(ListError, match=r"ids must be 0\.\.1"):
        read_label_ids(tmp_path / "labels.json")
    with pytest.raises(ListError, match="video list not found"):
        read_list(tmp_path / "missing.txt")
