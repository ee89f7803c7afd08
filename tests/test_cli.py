"""One command line for every chapter: python -m odecore.experiments CHAPTER [--profile P] [--rerun]."""
import json
import os
import subprocess
import sys

import pytest
import torch

from odecore import settings


CLEARED = ("ODECORE_PROFILE", "ODECORE_RERUN", "ODECORE_DEVICE")   # settings a run takes from its own arguments


def folders(tmp_path) -> dict[str, str]:
    """The run's results, checkpoints and scratch, under the test's folder."""
    return {f"ODECORE_{k}_DIR": str(tmp_path / k.lower()) for k in ("RESULTS", "CHECKPOINT", "SCRATCH")}


def in_process(*args: str, tmp_path, monkeypatch, capsys, **env: str) -> tuple[int, str]:
    """The command's main in this process (no interpreter to start): its exit status and stderr."""
    from odecore.experiments import main

    for key in CLEARED:
        monkeypatch.delenv(key, raising=False)
    for key, value in {**folders(tmp_path), **env}.items():
        monkeypatch.setenv(key, value)
    try:
        status = main(list(args))
    except SystemExit as stop:           # argparse's refusal
        status = stop.code
    return status, capsys.readouterr().err


def cli(*args: str, tmp_path, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in CLEARED}
    return subprocess.run([sys.executable, "-m", "odecore.experiments", *args], capture_output=True, text=True,
                          env={**clean, **folders(tmp_path), "OMP_NUM_THREADS": "1", **env}, cwd=settings.ROOT, timeout=600)


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
def test_bad_settings_exit_non_zero_naming_the_cause(tmp_path, monkeypatch, capsys, args, env, message):
    status, err = in_process(*args, tmp_path=tmp_path, monkeypatch=monkeypatch, capsys=capsys, **env)
    assert status == 1 and message in err and err.startswith("error: ")
    assert not (tmp_path / "results").exists()                               # nothing ran


def test_a_bad_setting_is_one_line_and_exit_status_1_from_the_command_line(tmp_path):
    out = cli("adjoint", tmp_path=tmp_path, ODECORE_PROFILE="huge")
    assert out.returncode == 1 and "ODECORE_PROFILE='huge'" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_fails_before_any_work(tmp_path, monkeypatch, capsys):
    status, err = in_process("mnist", "--profile", "smoke", tmp_path=tmp_path, monkeypatch=monkeypatch, capsys=capsys,
                             ODECORE_DEVICE="cuda")
    assert status == 1 and "no CUDA GPU" in err and not (tmp_path / "results").exists()


def test_an_unknown_chapter_is_refused(tmp_path, monkeypatch, capsys):
    status, err = in_process("resnet", tmp_path=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    assert status == 2 and "invalid choice: 'resnet'" in err
