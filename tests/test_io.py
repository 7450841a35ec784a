"""Atomic writes of folders: the target is absent or complete, never half-written."""
import pytest

from core.io import atomic_folder


def test_a_folder_appears_whole_with_open_permissions(tmp_path):
    target = tmp_path / "cache" / "model"
    with atomic_folder(target) as tmp:
        (tmp / "weights").write_text("w")
        assert not target.exists()  # nothing at the target while it is being filled
    assert (target / "weights").read_text() == "w" and oct(target.stat().st_mode)[-3:] == "755"
    assert [p.name for p in target.parent.iterdir()] == ["model"]  # no temporary folder left


def test_an_error_leaves_nothing_and_a_finished_target_is_kept(tmp_path):
    target = tmp_path / "model"
    with pytest.raises(ValueError), atomic_folder(target) as tmp:
        (tmp / "half").write_text("h")
        raise ValueError("interrupted")
    assert list(tmp_path.iterdir()) == []
    target.mkdir()
    (target / "first").write_text("1")
    with atomic_folder(target) as tmp:  # a concurrent writer finished first: its folder stays
        (tmp / "second").write_text("2")
    assert [p.name for p in target.iterdir()] == ["first"] and [p.name for p in tmp_path.iterdir()] == ["model"]
