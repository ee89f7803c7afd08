"""Checkpoint files: atomic_save is durable and shareable, load_checkpoint names a bad file."""
import errno
import os

import pytest
import torch

from odecore.train import atomic_save, load_checkpoint


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "run.pt"
    atomic_save({"model": {"w": torch.arange(1000.0)}, "epoch": 3}, path)
    return path


def test_atomic_save_fsyncs_the_file_then_the_folder_and_respects_the_umask(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: events.append(("fsync", os.path.realpath(f"/proc/self/fd/{fd}")))
                        or real_fsync(fd))
    monkeypatch.setattr(os, "replace", lambda a, b: events.append(("replace", str(b))) or real_replace(a, b))
    path = tmp_path / "run.pt"
    old = os.umask(0o022)
    try:
        atomic_save({"epoch": 1}, path)
    finally:
        os.umask(old)
    assert [e[0] for e in events] == ["fsync", "replace", "fsync"]
    assert ".tmp" in events[0][1] and events[2][1] == str(tmp_path.resolve())
    assert path.stat().st_mode & 0o777 == 0o644          # not mkstemp's 0600
    assert load_checkpoint(path) == {"epoch": 1}


def test_a_full_disk_names_the_checkpoint_and_keeps_the_old_one(saved, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match=f"could not write {saved}: No space left on device.*intact"):
        atomic_save({"epoch": 4}, saved)
    assert load_checkpoint(saved)["epoch"] == 3
    assert [p.name for p in saved.parent.iterdir()] == [saved.name]


@pytest.mark.parametrize("keep", [0.0, 0.1, 0.5])
def test_a_truncated_checkpoint_is_named_with_the_fix(saved, keep):
    blob = saved.read_bytes()
    saved.write_bytes(blob[:int(keep * len(blob))])
    with pytest.raises(RuntimeError, match=f"checkpoint {saved} is unreadable.*truncated or corrupt: delete it"):
        load_checkpoint(saved)


def test_a_missing_checkpoint_is_not_called_corrupt(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "none.pt")
