"""Lists of media files for the concept bank: one path per line, or `path text_path` for OCR.

Paths are relative to a root (default: the list's folder) and may not leave it; blank lines and
`#` comments are skipped. A sample's id is its path relative to the root (posix), as in the
probe's lists (`eval/probe/lists.py`), whose readers need a label on every line and live above
`encoder/`, so they are not used here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class ListError(ValueError):
    """A list that cannot be used; the message names the file, the line and why."""


@dataclass(frozen=True)
class ListedFile:
    sample_id: str
    """The path relative to the root (posix): the sample's key in every concept-bank file."""
    path: Path
    """The resolved file path."""
    text: Path | None = None
    """The resolved text file of an OCR sample (two-column lists)."""


def _confined(root: Path, given: str, where: str) -> Path:
    resolved = (root / given).resolve()
    if not resolved.is_relative_to(root):
        raise ListError(f"{where}: {given!r} is outside the root {root}")
    return resolved


def read_media_list(
    path: str | Path, root: str | Path | None = None, with_text: bool = False
) -> list[ListedFile]:
    """The files of a list, in list order. `with_text`: each line is `media_path text_path`
    (split at the last run of whitespace, so the media path may hold spaces)."""
    path = Path(path)
    if not path.is_file():
        raise ListError(f"{path}: list not found")
    root = Path(root or path.parent).resolve()
    files, seen = [], set()
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{path}:{number}"
        text = None
        if with_text:
            parts = line.rsplit(maxsplit=1)
            if len(parts) != 2:
                raise ListError(f"{where}: {line!r} is not `media_path text_path`")
            line, text = parts
            text = _confined(root, text, where)
        media = _confined(root, line, where)
        sample_id = media.relative_to(root).as_posix()
        if sample_id in seen:  # ids key every label file: each sample once
            raise ListError(f"{where}: {sample_id!r} is listed twice")
        seen.add(sample_id)
        files.append(ListedFile(sample_id, media, text))
    if not files:
        raise ListError(f"{path}: no files listed")
    return files
