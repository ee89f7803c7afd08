"""One command line for every chapter: python -m odecore.experiments CHAPTER [--profile P] [--rerun]."""
import json
import os
import subprocess
import sys

import pytest
import torch

from odecore import settings


def cli(*args: str, tmp_path, **env: str) -> subprocess.CompletedProcess:
    folders = {f"ODECORE_{k}_DIR": str(tmp_path / k.lower()) for k in ("RESULTS", "CHECKPOINT", "SCRATCH")}
    clean = {k: v for k, v in os.environ.items() if k not in ("ODECORE_PROFILE", "ODECORE_RERUN", "ODECORE_DEVICE")}
    return subprocess.run([sys.executable, "-m", "odecore.experiments", *args], capture_output=True, text=True,
                          env={**clean, **folders, "OMP_NUM_THREADS": "1", **env}, cwd=settings.ROOT, timeout=600)


def test_runs_a_chapter_then_serves_it_and_reruns_it(tmp_path):
    first = cli("adjoint", "--profile", "smoke", tmp_path=tmp_path)
    assert first.returncode == 0, first.stderr
    path = tmp_path / "results" / "adjoint-smoke.json"
    assert f"adjoint [smoke] -> {path}" in first.stdout
    made = path.stat().st_ino                # every write is a new file renamed over the old one
    served = cli("adjoint", tmp_path=tmp_path, ODECORE_PROFILE="smoke")     # the profile from the environment
    assert served.returncode == 0 and path.stat().st_ino == made
    rerun = cli("adjoint", "--profile", "smoke", "--rerun", tmp_path=tmp_path)
    assert rerun.returncode == 0 and path.stat().st_ino != made and json.loads(path.read_text())["profile"] == "smoke"


@pytest.mark.parametrize("args,env,message", [
    (("latent_ode", "--profile", "cpu"), {}, "the latent_ode chapter has no profile 'cpu'"),
    (("adjoint", "--profile", "smoke"), {"ODECORE_PROFILE": "reduced"}, "--profile smoke but ODECORE_PROFILE=reduced"),
    (("adjoint",), {"ODECORE_RERUN": "sometimes"}, "ODECORE_RERUN='sometimes'"),
    (("adjoint",), {"ODECORE_PROFILE": "huge"}, "ODECORE_PROFILE='huge'"),
])
def test_bad_settings_exit_non_zero_naming_the_cause(tmp_path, args, env, message):
    out = cli(*args, tmp_path=tmp_path, **env)
    assert out.returncode == 1 and message in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "results").exists()                               # nothing ran


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_fails_before_any_work(tmp_path):
    out = cli("mnist", "--profile", "smoke", tmp_path=tmp_path, ODECORE_DEVICE="cuda")
    assert out.returncode == 1 and "no CUDA GPU" in out.stderr


def test_an_unknown_chapter_is_refused(tmp_path):
    out = cli("resnet", tmp_path=tmp_path)
    assert out.returncode == 2 and "invalid choice: 'resnet'" in out.stderr
