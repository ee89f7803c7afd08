"""The sub-run pool on Ray: which sub-runs it starts, what it reports, its exit status, and that a
killed driver leaves no worker behind.

Every Ray test here runs a local cluster. Starting one costs seconds of CPU (GCS, raylet, two agents),
so the tests that need no cluster of their own share one (`local_ray`): the in-process pool, and the
command given its address. A driver that must start, own and take down its cluster (the killed
driver, SIGTERM and Ctrl-C) starts its own. None reads a duration: a deadline either leaves no task
a chance to finish (a sleeper of an hour) or is not set, and every wait for a process is bounded
by minutes, so a loaded machine (Ray takes 20 s or more to start on two busy cores) only slows them.
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from odecore.experiments import cnf, latent_ode, parallel

ray = pytest.importorskip("ray")
ROOT = Path(__file__).resolve().parent.parent
# Ray's own agents wait 60 s on a report to the dead cluster before they exit: not training
# processes, so the killed-driver test leaves them to the cleanup instead of waiting for them.
RAY_AGENTS = ("ray::DashboardAgent", "ray::RuntimeEnvAgent")


def test_tasks_cover_every_subrun_once_longest_first():
    todo = parallel.tasks("smoke", ("latent_ode", "cnf_density", "cnf_mle"))
    cfg = latent_ode.PROFILES["smoke"]
    scfg = latent_ode.SAMPLING_PROFILES["smoke"]                  # plus the evenly spaced runs of the sampling comparison
    expected = (len(cfg.seeds) * len(cfg.obs_counts) * len(latent_ode.MODELS)
                + len(scfg.seeds) * len(scfg.obs_counts) * len(latent_ode.MODELS)
                + len(cnf.mle_specs(cnf.MLE_PROFILES["smoke"])))
    density = cnf.density_specs(cnf.DENSITY_PROFILES["smoke"]) + cnf.variant_specs(cnf.DENSITY_PROFILES["smoke"])
    assert any("variant" in s for s in density)                   # Figure 4's CNF variants are sub-runs of the pool too
    stacks = cnf.stacks(density)                                  # Figure 4's NFs train as stacks, one task each
    assert stacks and sum(map(len, stacks)) == sum(s["kind"] == "nf" for s in density)
    expected += len(density) - sum(map(len, stacks)) + len(stacks)
    labels = [t.label for t in todo]
    assert len(labels) == expected == len(set(labels))
    keys = [(t.priority, t.neg_cost) for t in todo]
    assert keys == sorted(keys)                       # by priority, then the longest first
    assert {t.label.split()[0] for t in parallel.tasks("smoke", ("cnf_mle",))} == {"cnf_mle"}
    assert any(t.gpu for t in todo) and not any(t.gpu for t in todo if not t.label.startswith("cnf_mle cnf-"))


def test_mnist_subruns_are_tasks_with_the_convolutional_models_on_a_gpu():
    from odecore.experiments import mnist

    todo = parallel.tasks("cpu", ("mnist",))
    cfg = mnist.PROFILES["cpu"]
    assert sorted(t.label for t in todo) == sorted(f"mnist {m} seed={s}" for m, seeds in cfg.seeds.items() for s in seeds)
    assert {t.label.split()[1] for t in todo if t.gpu} == {"resnet", "rknet", "odenet"}
    assert all(t.fn is mnist.train_subrun and t.args[0] == "cpu" for t in todo)
    first = [t.label for t in todo if t.priority == 0]        # one seed of every model before the others
    assert sorted(label.split()[1] for label in first) == sorted(cfg.seeds)


def test_task_body_gets_its_device_as_an_argument_and_one_thread(monkeypatch):
    import torch

    from odecore import profiles

    monkeypatch.setenv("ODECORE_DEVICE", "cpu")
    threads = torch.get_num_threads()
    try:
        _, dev = parallel.run_task(profiles.device, (), {}, "meta")
        assert dev == torch.device("meta") and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    assert profiles.device() == torch.device("cpu") and os.environ["ODECORE_DEVICE"] == "cpu"   # nothing written


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory) -> str:
    """One local cluster of two CPUs (the commands' --workers 2) for this module, shut down after it; its address.

    The in-process pool tests use it directly, the command tests reach it with --address: each a job of
    its own, with its own workers and folders (forwarded as the command's settings)."""
    folders = tmp_path_factory.mktemp("ray")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("RAY_ADDRESS", raising=False)
        for name in ("RESULTS", "CHECKPOINT", "SCRATCH"):    # what the cluster's processes inherit: never data/
            mp.setenv(f"ODECORE_{name}_DIR", str(folders / name.lower()))
        assert parallel.start_ray(address=None, workers=2)   # a new local cluster, not one found on the machine
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def test_pool_reports_done_and_every_kind_of_failure(local_ray):
    todo = [parallel.Task(0, -1.0, "quick", dict, (), {"kl": 0.5}),
            parallel.Task(0, -1.0, "raises", int, ("not a number",)),
            parallel.Task(0, -1.0, "diverged", dict, (), {"failed": "FloatingPointError: loss is nan"}),
            parallel.Task(0, -1.0, "worker dies", os._exit, (3,))]
    report = parallel.run_pool(todo)                  # no deadline: waits for all four
    assert report.done == ["quick"] and report.unfinished == []
    assert set(report.failed) == {"raises", "diverged", "worker dies"}
    assert report.failed["raises"].startswith("ValueError")
    assert report.failed["diverged"] == "FloatingPointError: loss is nan"
    assert "worker died" in report.failed["worker dies"]
    assert not report.ok


def test_pool_cancels_what_outlasts_the_deadline(local_ray):
    # An hour's sleep cannot finish within any deadline the test sets, started or still queued.
    # One sleeper for each of the cluster's CPUs.
    cpus = int(ray.cluster_resources()["CPU"])
    todo = [parallel.Task(0, -9.0, f"sleeper {i}", time.sleep, (3600,)) for i in range(cpus)]
    report = parallel.run_pool(todo, deadline_s=5)
    assert report.unfinished == [t.label for t in todo] and not report.done and not report.failed
    assert not report.ok
    # The cancels freed the CPUs: a new task gets one and finishes (the deadline only bounds a failure).
    assert parallel.run_pool([parallel.Task(0, -1.0, "after", dict, (), {"kl": 0.1})], deadline_s=600).done == ["after"]


def _command_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "ODECORE_SCRATCH_DIR": str(tmp_path / "scratch"),
           "ODECORE_CHECKPOINT_DIR": str(tmp_path / "checkpoints"), "ODECORE_RESULTS_DIR": str(tmp_path / "results"),
           "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1", **extra}
    env.pop("RAY_ADDRESS", None)
    return env


@pytest.mark.parametrize("case", ["trained", "failed", "unfinished"])
def test_command_exit_status(tmp_path, case, local_ray):
    args = ["--profile", "smoke", "--only", "cnf_mle", "--address", local_ray]
    env = _command_env(tmp_path)
    if case == "failed":             # every sub-run fails to save its checkpoint: a folder inside a file
        (tmp_path / "a_file").write_text("")
        env["ODECORE_CHECKPOINT_DIR"] = str(tmp_path / "a_file" / "checkpoints")
    if case == "unfinished":         # no sub-run can finish before a deadline of zero
        args += ["--deadline", "0"]
    n = len(parallel.tasks("smoke", ("cnf_mle",)))
    out = subprocess.run([sys.executable, "-m", "odecore.experiments.parallel", *args], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=900)
    summary = {"trained": f"{n} done, 0 failed, 0 unfinished", "failed": f"0 done, {n} failed, 0 unfinished",
               "unfinished": f"0 done, 0 failed, {n} unfinished"}[case]
    assert summary in out.stdout, out.stdout + out.stderr
    assert out.returncode == (0 if case == "trained" else 1), out.stdout + out.stderr
    if case == "trained":
        assert len(list((tmp_path / "checkpoints").rglob("*.pt"))) == n


# ------------------------------------------------------------------- a killed driver, seen in /proc
def _descendants(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
        for child in children:
            out += [child, *_descendants(child)]
    return out


def _identity(pid: int) -> tuple[str, str] | None:
    """(start time, command line) of a live process, None when it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] in "ZX" else (fields[19], cmdline)


def _alive(session: dict[int, tuple[str, str]]) -> dict[int, str]:
    """The processes of `session` still running (same pid and start time), with their command lines."""
    now = {pid: _identity(pid) for pid in session}
    return {pid: cmd for pid, (start, cmd) in session.items() if now[pid] is not None and now[pid][0] == start}


def _is_task(cmdline: str) -> bool:
    """A Ray worker running a task: titled ray::<task name>, not ray::IDLE nor one of Ray's agents."""
    return cmdline.startswith("ray::") and not cmdline.startswith(("ray::IDLE", *RAY_AGENTS))


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads the process tree from Linux's /proc")
def test_killed_driver_leaves_no_training_process(tmp_path):
    log = (tmp_path / "pool.log").open("w")
    driver = subprocess.Popen([sys.executable, "-m", "odecore.experiments.parallel", "--profile", "smoke",
                               "--workers", "2"], env=_command_env(tmp_path), cwd=ROOT, stdout=log,
                              stderr=subprocess.STDOUT, start_new_session=True)
    session: dict[int, tuple[str, str]] = {}
    try:
        give_up = time.monotonic() + 600              # Ray's start and a worker's torch import, on a loaded machine
        while not any(_is_task(cmd) for _, cmd in session.values()):
            assert driver.poll() is None, "the pool ended before a sub-run was seen training:\n" + \
                (tmp_path / "pool.log").read_text()
            assert time.monotonic() < give_up, "no sub-run started training in 10 minutes"
            session = {pid: ident for pid in _descendants(driver.pid) if (ident := _identity(pid))}
            time.sleep(0.05)
        training = [pid for pid, (_, cmd) in session.items() if _is_task(cmd)]
        assert any("raylet" in cmd for _, cmd in session.values())   # the driver started the local cluster

        driver.kill()                                 # SIGKILL: no handler, no cleanup in the driver
        driver.wait()
        give_up = time.monotonic() + 180
        while (left := {pid: cmd for pid, cmd in _alive(session).items() if not cmd.startswith(RAY_AGENTS)}):
            assert time.monotonic() < give_up, f"still running 3 minutes after the driver was killed: {left}"
            time.sleep(0.5)
        assert not _alive({pid: session[pid] for pid in training})
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
        for pid in _alive(session):                   # Ray's lingering agents (or anything a failure left)
            os.kill(pid, signal.SIGKILL)
        log.close()


MNIST = ROOT.parent / "shared" / "data" / "mnist"


@pytest.mark.skipif(not (MNIST / "train-labels-idx1-ubyte.gz").exists() and not os.environ.get("ODECORE_MNIST_DIR"),
                    reason="no MNIST copy")
def test_mnist_pool_then_the_chapter_assembles_without_training_a_model(tmp_path, local_ray):
    env = _command_env(tmp_path, ODECORE_MNIST_DIR=os.environ.get("ODECORE_MNIST_DIR") or str(MNIST))
    pool = subprocess.run([sys.executable, "-m", "odecore.experiments.parallel", "--profile", "smoke", "--only", "mnist",
                           "--address", local_ray], env=env, cwd=ROOT, capture_output=True, text=True, timeout=900)
    n = len(parallel.tasks("smoke", ("mnist",)))
    assert pool.returncode == 0 and f"{n} done, 0 failed" in pool.stdout, pool.stdout + pool.stderr
    chapter = subprocess.run([sys.executable, "-m", "odecore.experiments", "mnist", "--profile", "smoke"], env=env,
                             cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert chapter.returncode == 0, chapter.stderr
    import json

    record = json.loads((tmp_path / "results" / "mnist-smoke.json").read_text())
    # every model came from the pool; the assembly measured only Figure 1, Figure 3 and the memory
    assert record["subruns"]["count"] == n + 3 and record["subruns"]["trained_now"] == 3


# ------------------------------------------------------------------- SIGTERM and Ctrl-C
STOP_SCRIPT = """
import sys, time
from odecore.experiments import parallel

todo = [parallel.Task(0, -1.0, f"sleeper {i}", time.sleep, (3600,)) for i in range(3)]   # one more than the CPUs
sys.exit(parallel.run_command(todo, address=None, workers=2))
"""


def _wait_for_line(proc: subprocess.Popen, text: str, timeout: float) -> str:
    """Read proc's stdout until a line holds `text` (what it printed so far), failing after `timeout` s."""
    import selectors

    seen = ""
    give_up = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while text not in seen:
            left = give_up - time.monotonic()
            assert left > 0 and sel.select(left), f"no {text!r} in {timeout:.0f} s:\n{seen}"
            line = proc.stdout.readline()
            assert line, f"the pool ended before printing {text!r}:\n{seen}{proc.stderr.read()}"
            seen += line
    return seen


@pytest.mark.parametrize("signum,to_group", [(signal.SIGTERM, False), (signal.SIGINT, True)], ids=["SIGTERM", "Ctrl-C"])
def test_a_signal_stops_the_pool_and_lists_the_unfinished_subruns(tmp_path, signum, to_group):
    # Ctrl-C in a terminal signals the whole process group (Ray's processes too); a plain kill the driver only
    script = tmp_path / "pool.py"
    script.write_text(STOP_SCRIPT)
    driver = subprocess.Popen([sys.executable, str(script)], env=_command_env(tmp_path), cwd=ROOT, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        printed = _wait_for_line(driver, "3 sub-runs on Ray", timeout=600)    # the tasks are submitted
        (os.killpg if to_group else os.kill)(driver.pid, signum)
        out, err = driver.communicate(timeout=300)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()
    out = printed + out
    assert driver.returncode == 128 + signum, out + err
    assert "0 done, 0 failed, 3 unfinished" in out, out + err
    assert all(f"  unfinished: sleeper {i}" in out for i in range(3)), out
    assert f"{signal.Signals(signum).name}: stopping" in err
    assert "Traceback" not in err and "Check failed" not in err, err


@pytest.mark.parametrize("args,message", [(["--workers", "0"], "--workers must be at least 1"),
                                          (["--deadline", "-5"], "--deadline must be a number of seconds >= 0"),
                                          (["--deadline", "nan"], "--deadline must be"),
                                          (["--gpus-per-task", "0"], "--gpus-per-task must be > 0")])
def test_pool_settings_that_could_never_finish_are_refused_before_ray_starts(args, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        parallel.main(["--profile", "smoke", "--only", "cnf_mle", *args])
    assert exit_.value.code == 2 and message in capsys.readouterr().err
