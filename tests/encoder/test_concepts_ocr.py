"""OCR word-class labels: words of a page's text mapped to vocabulary ids, on generated pages
with known rendered words and on the real scanned pages of ../shared (skipped when absent)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from encoder.concepts.ocr_labels import (
    OcrConfig,
    VocabularyError,
    ocr_labels,
    read_vocabulary,
    word_labels,
    words_of,
)
from encoder.concepts.store import read_arrow, shard_path
from tests.conftest import REAL_DATA

VOCAB = ["the", "cat", "sat", "on", "mat", "dog", "ran", "explain", "don't", "3.14"]


def render_page(path: Path, lines: list[str]) -> None:
    """A white page with the lines drawn in black: the words an OCR label must name."""
    page = Image.new("RGB", (320, 24 * len(lines) + 16), "white")
    draw = ImageDraw.Draw(page)
    for i, line in enumerate(lines):
        draw.text((8, 8 + 24 * i), line, fill="black")
    page.save(path)


def test_words_are_split_stripped_lowercased_and_rejoined():
    text = 'The "cat" sat,\non the mat. Don\'t ex-\n  plain (3.14) — ok!'
    assert words_of(text) == ["the", "cat", "sat", "on", "the", "mat", "don't", "explain",
                              "3.14", "ok"]  # fmt: skip
    assert words_of("The Cat", lowercase=False) == ["The", "Cat"]


def test_labels_are_known_words_once_in_order_capped_and_unknowns_counted():
    vocab = {word: i for i, word in enumerate(VOCAB)}
    words = ["dog", "zebra", "the", "dog", "cat", "yak", "zebra", "mat"]
    assert word_labels(words, vocab, max_tags=100) == ([5, 0, 1, 4], 3)
    assert word_labels(words, vocab, max_tags=2) == ([5, 0], 3)


def test_vocabulary_ids_are_line_numbers_and_bad_files_are_named(tmp_path):
    (tmp_path / "v.txt").write_text("alpha\nbeta\ngamma\n")
    assert read_vocabulary(tmp_path / "v.txt") == {"alpha": 0, "beta": 1, "gamma": 2}
    (tmp_path / "dup.txt").write_text("alpha\nbeta\nalpha\n")
    with pytest.raises(VocabularyError, match=r"dup\.txt:3: 'alpha' is already line 1"):
        read_vocabulary(tmp_path / "dup.txt")
    (tmp_path / "blank.txt").write_text("alpha\n\nbeta\n")
    with pytest.raises(VocabularyError, match=r"blank\.txt:2"):
        read_vocabulary(tmp_path / "blank.txt")


def test_generated_pages_get_the_ids_of_their_rendered_words(tmp_path):
    pages = {
        "p0": ["The cat sat on the mat."],
        "p1": ["The dog ran, the cat sat", "on a zebra mat"],  # 'a', 'zebra' unknown
        "p2": ["cat dog the mat on sat ran"],  # seven known words, capped at five
    }
    lines = []
    for name, text in pages.items():
        render_page(tmp_path / f"{name}.png", text)
        (tmp_path / f"{name}.txt").write_text("\n".join(text))
        lines.append(f"{name}.png {name}.txt")
    (tmp_path / "broken.png").write_bytes(b"no picture here")
    render_page(tmp_path / "p3.png", ["its text file is missing"])
    lines += ["broken.png p0.txt", "p3.png missing.txt"]
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    cfg = OcrConfig(list=str(tmp_path / "list.txt"), vocab=str(tmp_path / "vocab.txt"),
                    max_tags=5, shard_size=3)  # fmt: skip
    counts = ocr_labels(cfg, tmp_path / "ocr", progress=False)
    assert counts == {"labelled": 3, "failed": 2, "unknown_words": 2, "shards_written": 2,
                      "shards_skipped": 0}  # fmt: skip
    files = [shard_path(tmp_path / "ocr", "labels", s, ".arrow") for s in range(2)]
    rows = [row for path in files for row in read_arrow(path).to_pylist()]
    assert [row["labels"] for row in rows[:3]] == [
        [0, 1, 2, 3, 4],
        [0, 5, 6, 1, 2],
        [1, 5, 0, 4, 3],
    ]
    assert [row["unknown_words"] for row in rows] == [0, 2, 0, 0, 0]
    assert "not a readable image" in rows[3]["error"] and rows[3]["labels"] == []
    assert "missing.txt: not a readable text" in rows[4]["error"]
    again = ocr_labels(cfg, tmp_path / "ocr", progress=False)
    assert (again["shards_written"], again["shards_skipped"]) == (0, 2)


def test_real_scanned_pages_are_labelled_from_their_ground_truth(tmp_path):
    folder = REAL_DATA / "ocr" / "tesseract"
    if not folder.is_dir():
        pytest.skip("../shared/real_data is absent")
    pairs = [f"{stem}.tif {stem}.txt" for stem in ("8071_093.3B", "8087_054.3B", "eurotext")]
    (tmp_path / "list.txt").write_text("\n".join(pairs) + "\n")
    (tmp_path / "vocab.txt").write_text("she\nmoped\nsighed\nexplain\nlove\nfox\n")
    cfg = OcrConfig(list=str(tmp_path / "list.txt"), root=str(folder),
                    vocab=str(tmp_path / "vocab.txt"))  # fmt: skip
    counts = ocr_labels(cfg, tmp_path / "ocr", progress=False)
    assert (counts["labelled"], counts["failed"]) == (3, 0)
    rows = read_arrow(shard_path(tmp_path / "ocr", "labels", 0, ".arrow")).to_pylist()
    # "SHE MOPED. She sighed. ... how could she ex-\nplain she was desperately in love"
    assert rows[0]["labels"] == [0, 1, 2, 3, 4]
    words = words_of((folder / "8071_093.3B.txt").read_text())
    known = sum(word in {"she", "moped", "sighed", "explain", "love", "fox"} for word in words)
    assert rows[0]["unknown_words"] == len(words) - known > 100
    assert 5 in rows[2]["labels"]  # eurotext: "The (quick) [brown] {fox} jumps!"
