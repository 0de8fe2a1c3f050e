"""Write files and folders whole or not at all: write under a temporary name, then rename.

One naming scheme for every temporary: `.tmp-<final name>` beside the final path, plus a
`-<pid>-<random>` suffix when several processes may write the same path at once (the default).
A reader that lists a folder skips names starting with `.tmp-`; a crash leaves only such names.
This lives in `encoder/`, the lowest folder that writes files atomically (asset folders), so
every folder above can use it.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

TMP_PREFIX = ".tmp-"


def temp_path(final: str | Path, *, unique: bool = True) -> Path:
    """The temporary name for `final`. `unique=False` gives a name every process computes alike
    (ranks writing shards into one folder)."""
    final = Path(final)
    suffix = f"-{os.getpid()}-{uuid.uuid4().hex[:8]}" if unique else ""
    return final.with_name(f"{TMP_PREFIX}{final.name}{suffix}")


def commit(tmp: Path, final: str | Path, *, keep_existing: bool = False) -> Path:
    """Move a complete `tmp` (file or folder) to `final`. An existing folder is swapped out
    first and deleted after, so one complete copy exists at every moment.

    `keep_existing` (folders): an existing `final` wins and `tmp` is deleted, also when another
    process commits `final` at the same moment (a cache that several workers fill: whoever
    commits first wins, nobody fails, and readers never see the folder swapped)."""
    final = Path(final)
    if keep_existing and tmp.is_dir():
        try:
            # refused while `final` holds anything (a committed folder is never empty), so
            # the check and the move are one step
            tmp.rename(final)
        except OSError:
            if not final.is_dir():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
        return final
    if tmp.is_dir() and final.exists():
        old = temp_path(final.with_name(f"old-{final.name}"))
        final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.replace(final)
    return final


@contextmanager
def _committed(tmp: Path, final: Path, keep_existing: bool = False) -> Iterator[Path]:
    """Yield `tmp`; commit it to `final` if the block succeeds, else delete it."""
    try:
        yield tmp
        commit(tmp, final, keep_existing=keep_existing)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def atomic_file(final: str | Path) -> AbstractContextManager[Path]:
    """`with atomic_file(path) as tmp: write tmp` → `path` appears complete, or not at all."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    return _committed(temp_path(final), final)


def atomic_dir(final: str | Path, *, keep_existing: bool = False) -> AbstractContextManager[Path]:
    """`with atomic_dir(folder) as tmp: fill tmp` → `folder` replaced by the complete new one,
    or left as it was. `keep_existing`: a `folder` that exists when the block ends is kept and
    the new one dropped (see `commit`)."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(final)
    tmp.mkdir()
    return _committed(tmp, final, keep_existing)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """The common case: a whole text file."""
    with atomic_file(path) as tmp:
        tmp.write_text(text)
    return Path(path)
