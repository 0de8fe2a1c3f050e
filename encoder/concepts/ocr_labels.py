"""OCR word classes: each image's labels are the vocabulary ids of the words written in it
(PAPER.md section 4: 365,187 word classes, up to 100 tags per image).

The words come from a text that goes with the image: the ground truth of a rendered or scanned
page, or an OCR engine's reading, one text file per image (lists of `image_path text_path`
lines). The vocabulary is a file of one word per line; a word's id is its line number from 0.

Words of a text: a word broken across lines by a hyphen is joined again ("ex-\\nplain" →
"explain"; knowingly wrong for compounds broken at their own hyphen), the text is split at
whitespace, punctuation around a word is stripped (inside it stays: "don't", "e-mail", "3.14"),
and words are lower-cased unless `lowercase` is off. An image's labels are the ids of its
known words, each once, in reading order, the first `max_tags`; unknown words are dropped and
counted (every occurrence). The image is checked to be readable (its labels are useless for
training otherwise); an unreadable image or text is recorded with the reason and skipped.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
from PIL import Image
from tqdm import tqdm

from encoder.concepts.lists import ListedFile, read_media_list
from encoder.concepts.store import (
    ids_digest,
    num_shards,
    open_manifest,
    shard_path,
    write_arrow,
)

OCR_MANIFEST = "ocr.json"
PUNCTUATION = string.punctuation + "“”‘’«»„‚–—…·•"
LINE_BREAK_HYPHEN = re.compile(r"(\w)-[ \t]*\r?\n\s*(\w)")
OCR_SCHEMA = pa.schema(
    [("sample_id", pa.string()), ("labels", pa.list_(pa.int32())),
     ("unknown_words", pa.int32()), ("error", pa.string())]
)  # fmt: skip


class VocabularyError(ValueError):
    """A vocabulary file that cannot be used; the message names the file, the line and why."""


@dataclass
class OcrConfig:
    list: str = ""
    """`image_path text_path` lines, both relative to `root`."""
    root: str = ""
    """Folder the list's paths are relative to and may not leave (default: the list's)."""
    vocab: str = ""
    """Vocabulary file: one word per line, id = line number from 0."""
    max_tags: int = 100
    """Labels per image at most (the first known words in reading order)."""
    lowercase: bool = True
    """Lower-case the text's words (the vocabulary is taken as it is written)."""
    shard_size: int = 4096
    """List entries per labels file."""

    def __post_init__(self) -> None:
        for name in ("max_tags", "shard_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")


def read_vocabulary(path: str | Path) -> dict[str, int]:
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise VocabularyError(f"{path}: not a readable vocabulary ({exc})") from exc
    vocab: dict[str, int] = {}
    for number, line in enumerate(lines):
        word = line.strip()
        if not word or any(c.isspace() for c in word):
            raise VocabularyError(f"{path}:{number + 1}: {line!r} is not one word")
        if word in vocab:
            raise VocabularyError(f"{path}:{number + 1}: {word!r} is already line "
                                  f"{vocab[word] + 1}")  # fmt: skip
        vocab[word] = number
    if not vocab:
        raise VocabularyError(f"{path}: empty vocabulary")
    return vocab


def words_of(text: str, lowercase: bool = True) -> list[str]:
    """The words of a text, in reading order (see the module docstring)."""
    text = LINE_BREAK_HYPHEN.sub(r"\1\2", text)
    words = (token.strip(PUNCTUATION) for token in text.split())
    return [word.lower() if lowercase else word for word in words if word]


def word_labels(words: list[str], vocab: dict[str, int], max_tags: int) -> tuple[list[int], int]:
    """(ids of the known words, each once, first `max_tags` in order; unknown occurrences)."""
    ids: dict[int, None] = {}  # an ordered set
    unknown = 0
    for word in words:
        if word not in vocab:
            unknown += 1
        elif len(ids) < max_tags:
            ids.setdefault(vocab[word])
    return list(ids), unknown


def _labels_of(
    item: ListedFile, vocab: dict[str, int], cfg: OcrConfig
) -> tuple[list[int], int, str | None]:
    try:
        with Image.open(item.path) as image:
            image.verify()  # checks the file without decoding every pixel
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        return [], 0, f"{item.path}: not a readable image ({exc})"
    try:
        text = item.text.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return [], 0, f"{item.text}: not a readable text ({exc})"
    ids, unknown = word_labels(words_of(text, cfg.lowercase), vocab, cfg.max_tags)
    return ids, unknown, None


def ocr_labels(cfg: OcrConfig, out: str | Path, progress: bool = True) -> dict[str, int]:
    """Write the OCR labels folder `out`; counts of images labelled, failed, unknown words."""
    if not cfg.list or not cfg.vocab:
        raise ValueError("list= and vocab= are required: the image/text list and the vocabulary")
    files = read_media_list(cfg.list, cfg.root or None, with_text=True)
    vocab = read_vocabulary(cfg.vocab)
    listed = ids_digest([f.sample_id for f in files])
    settings = {"vocab": str(Path(cfg.vocab).resolve()), "vocab_size": len(vocab),
                "vocab_digest": ids_digest(list(vocab)), "max_tags": cfg.max_tags,
                "lowercase": cfg.lowercase, "shard_size": cfg.shard_size,
                "samples": len(files), "list_digest": listed}  # fmt: skip
    open_manifest(out, settings, OCR_MANIFEST)
    counts = {"labelled": 0, "failed": 0, "unknown_words": 0, "shards_written": 0,
              "shards_skipped": 0}  # fmt: skip
    with tqdm(total=len(files), desc="ocr labels", unit="image", disable=not progress) as bar:
        for shard in range(num_shards(len(files), cfg.shard_size)):
            chunk = files[shard * cfg.shard_size : (shard + 1) * cfg.shard_size]
            path = shard_path(out, "labels", shard, ".arrow")
            if path.is_file():
                counts["shards_skipped"] += 1
                bar.update(len(chunk))
                continue
            rows = {"sample_id": [], "labels": [], "unknown_words": [], "error": []}
            for item in chunk:
                ids, unknown, error = _labels_of(item, vocab, cfg)
                for key, value in zip(rows, (item.sample_id, ids, unknown, error), strict=True):
                    rows[key].append(value)
                counts["failed" if error else "labelled"] += 1
                counts["unknown_words"] += unknown
                bar.update(1)
            write_arrow(pa.table(rows, schema=OCR_SCHEMA), path)
            counts["shards_written"] += 1
    return counts
