"""Settings are read from the environment in one place, strictly, and never written back to it."""
import os
import re
from pathlib import Path

import pytest
import torch

from odecore import profiles, results, settings
from odecore.settings import Settings


def test_defaults_are_the_repository_folders():
    s = Settings.from_env({})
    assert s == Settings() and s.profile is None and not s.rerun and s.progress
    assert s.results_dir == settings.ROOT / "data" / "results" and s.mnist_dir is None


def test_every_variable_is_read():
    s = Settings.from_env({"ODECORE_PROFILE": "reduced", "ODECORE_RERUN": "yes", "ODECORE_DEVICE": "cpu",
                           "ODECORE_RESULTS_DIR": "/r", "ODECORE_CHECKPOINT_DIR": "/c", "ODECORE_SCRATCH_DIR": "/s",
                           "ODECORE_MNIST_DIR": "/m", "TQDM_DISABLE": "1"})
    assert (s.profile, s.rerun, s.device, s.progress) == ("reduced", True, torch.device("cpu"), False)
    assert (s.results_dir, s.checkpoint_dir, s.scratch_dir, s.mnist_dir) == tuple(map(Path, ("/r", "/c", "/s", "/m")))


@pytest.mark.parametrize("name,value", [("ODECORE_PROFILE", "huge"), ("ODECORE_RERUN", "maybe"),
                                        ("ODECORE_DEVICE", "gpu"), ("ODECORE_DEVICE", "mps"), ("TQDM_DISABLE", "2")])
def test_a_bad_value_is_an_error_naming_its_variable(name, value):
    with pytest.raises(ValueError, match=f"{name}='{value}'"):
        Settings.from_env({name: value})


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_fails_at_once():
    with pytest.raises(ValueError, match="ODECORE_DEVICE='cuda', but torch sees no CUDA GPU"):
        Settings.from_env({"ODECORE_DEVICE": "cuda"})


def test_use_overrides_without_writing_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("ODECORE_RESULTS_DIR", str(tmp_path / "env"))
    before = dict(os.environ)
    with settings.use(rerun=True, results_dir=tmp_path / "chosen"):
        assert profiles.rerun() and results.results_dir() == tmp_path / "chosen"
        with profiles.using_device("cpu") as dev:   # nested: keeps the outer choices
            assert dev == torch.device("cpu") and profiles.rerun()
    assert not profiles.rerun() and results.results_dir() == tmp_path / "env"
    assert dict(os.environ) == before


def test_no_module_writes_the_environment():
    root = settings.ROOT / "odecore"
    write = re.compile(r"os\.environ\[[^]]+\]\s*=[^=]|os\.environ\.(update|setdefault|pop)\(|os\.putenv|del os\.environ")
    assert [p.relative_to(root) for p in root.rglob("*.py") if write.search(p.read_text())] == []
