"""Shared fixtures: every test writes results and checkpoints to its own temp folders."""
import pytest


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path, monkeypatch):
    """Keep tests away from the committed data/results and data/checkpoints."""
    monkeypatch.setenv("ODECORE_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setenv("ODECORE_CHECKPOINT_DIR", str(tmp_path / "checkpoints"))
    monkeypatch.setenv("ODECORE_SCRATCH_DIR", str(tmp_path / "scratch"))
    monkeypatch.delenv("ODECORE_PROFILE", raising=False)
    monkeypatch.delenv("ODECORE_RERUN", raising=False)
    return tmp_path


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", help="run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: pass --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
