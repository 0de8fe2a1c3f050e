"""A checkpoint folder's SHA-256 manifest: written when it is saved, checked before it is loaded.

DeepSpeed's shards are pickles that its loader opens with `torch.load(weights_only=False)`, as
does any torch checkpoint: a checkpoint folder is trusted input. The manifest does not make it
safe to load a folder from a stranger; it makes a folder that changed after it was written (a
truncated copy, a flipped byte, a file deleted or added) fail before anything is loaded, with the
file named. The format is that of `sha256sum` (`sha256sum -c manifest.sha256` checks it too).
The ranks share the hashing: file i is hashed by rank i mod world_size.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from train.engine import gather_objects

MANIFEST_FILE = "manifest.sha256"
CHUNK = 1 << 24


class CheckpointIntegrityError(ValueError):
    """A checkpoint folder differs from what its manifest says was written."""


def _gather(items: list) -> list:
    """The items of every rank, concatenated in rank order."""
    return [item for rank_items in gather_objects(items) for item in rank_items]


def _share(names: list[str]) -> list[str]:
    if not torch.distributed.is_initialized():
        return names
    return names[torch.distributed.get_rank() :: torch.distributed.get_world_size()]


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def folder_files(folder: Path) -> list[str]:
    """Every file under `folder` but the manifest, as sorted POSIX paths relative to it."""
    files = (p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    return sorted(name for name in files if name != MANIFEST_FILE)


def write_manifest(folder: Path, is_main: bool) -> None:
    """Collective: every rank hashes its share of the folder's files; rank 0 writes the
    manifest. Call it once every file is written."""
    digests = _gather([(name, sha256(folder / name)) for name in _share(folder_files(folder))])
    if is_main:
        lines = [f"{digest}  {name}\n" for name, digest in sorted(digests)]
        (folder / MANIFEST_FILE).write_text("".join(lines))


def verify_manifest(folder: Path) -> None:
    """Collective: raise `CheckpointIntegrityError` on every rank, naming the first file that
    is missing, not listed, or whose content changed."""
    manifest = folder / MANIFEST_FILE
    if not manifest.is_file():
        raise CheckpointIntegrityError(
            f"{folder}: no {MANIFEST_FILE} (a checkpoint written before checkpoints carried "
            "one, or not by ovmllm): refusing to load it"
        )
    expected = {}
    for line in manifest.read_text().splitlines():
        digest, name = line.split("  ", 1)
        expected[name] = digest
    present = folder_files(folder)
    problems = [f"{name} is missing" for name in sorted(set(expected) - set(present))]
    problems += [f"{name} is not in {MANIFEST_FILE}" for name in present if name not in expected]
    problems += _gather(
        [f"{name} does not match its SHA-256 (modified or truncated)"
         for name in _share(sorted(set(expected) & set(present)))
         if sha256(folder / name) != expected[name]]
    )  # fmt: skip
    if problems:
        raise CheckpointIntegrityError(f"{folder}: " + "; ".join(problems))
