"""atomic_folder: a folder is either the old one or the new one, never half-written."""

from __future__ import annotations

import pytest

from smg_sdk.atomic import atomic_folder


def test_success_replaces_and_cleans_up(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with atomic_folder(target) as staging:
        (staging / "new.txt").write_text("new")
        assert not (target / "new.txt").exists()  # nothing visible before the swap
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_failure_keeps_the_old_folder(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_folder(target) as staging:
            (staging / "half.txt").write_text("half")
            raise RuntimeError("killed mid-write")
    assert sorted(p.name for p in target.iterdir()) == ["old.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_the_new_folder_has_a_new_folders_usual_mode(tmp_path):
    import stat

    (tmp_path / "plain").mkdir()
    with atomic_folder(tmp_path / "out") as staging:
        (staging / "a.txt").write_text("a")
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)
    assert mode(tmp_path / "out") == mode(tmp_path / "plain")  # not mkdtemp's private 0700
