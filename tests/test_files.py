"""Atomic writes: a path appears complete or not at all; a failed write leaves the old one."""

from __future__ import annotations

import pytest

from encoder.files import atomic_dir, atomic_file, temp_path, write_text_atomic


def test_file_appears_whole_and_failure_leaves_the_old_one(tmp_path):
    path = tmp_path / "sub" / "a.txt"
    write_text_atomic(path, "one")
    assert path.read_text() == "one"
    with pytest.raises(RuntimeError), atomic_file(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash while writing")
    assert path.read_text() == "one"
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.txt"]  # no temporary left


def test_folder_is_swapped_in_whole(tmp_path):
    folder = tmp_path / "assets"
    with atomic_dir(folder) as tmp:
        (tmp / "x").write_text("1")
    with pytest.raises(RuntimeError), atomic_dir(folder) as tmp:
        (tmp / "y").write_text("2")
        raise RuntimeError("crash while filling")
    assert [p.name for p in folder.iterdir()] == ["x"]
    with atomic_dir(folder) as tmp:
        (tmp / "z").write_text("3")
    assert [p.name for p in folder.iterdir()] == ["z"]
    assert [p.name for p in tmp_path.iterdir()] == ["assets"]  # old copy and temporaries gone


def test_temporary_names(tmp_path):
    final = tmp_path / "step_0000003"
    assert temp_path(final, unique=False).name == ".tmp-step_0000003"
    assert temp_path(final) != temp_path(final)  # concurrent writers never share one
    assert temp_path(final).name.startswith(".tmp-step_0000003-")
