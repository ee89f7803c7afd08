"""The results registry: caching by config hash, provenance, atomic writes, clear errors."""
import dataclasses
import errno
import json
import re
import tempfile

import pytest

from odecore import profiles, results


@dataclasses.dataclass(frozen=True)
class Cfg:
    lr: float = 0.1
    sizes: tuple = (1, 2)


def test_config_hash_is_stable_and_sensitive():
    assert results.config_hash(Cfg()) == results.config_hash(Cfg())
    assert results.config_hash(Cfg()) == results.config_hash({"sizes": [1, 2], "lr": 0.1})
    assert results.config_hash(Cfg()) != results.config_hash(Cfg(lr=0.01))


def test_cached_computes_once_then_loads(monkeypatch):
    calls = []
    compute = lambda: calls.append(1) or {"error": 0.5}  # noqa: E731
    first = results.cached("toy", "smoke", Cfg(), compute, seeds=[0])
    second = results.cached("toy", "smoke", Cfg(), compute, seeds=[0])
    assert calls == [1]
    assert first["metrics"] == second["metrics"] == {"error": 0.5}
    for key in ("experiment", "profile", "config", "config_hash", "seeds", "device", "device_name", "torch",
                "torchdiffeq", "git_commit", "wall_time_s", "date"):
        assert key in second, key
    results.cached("toy", "smoke", Cfg(lr=0.2), compute, seeds=[0])  # config changed: recompute
    assert calls == [1, 1]
    monkeypatch.setenv("ODECORE_RERUN", "1")
    results.cached("toy", "smoke", Cfg(lr=0.2), compute, seeds=[0])  # forced
    assert calls == [1, 1, 1]


@pytest.mark.parametrize("content,message", [
    ('{"experiment": "toy", "metr', "not valid JSON"),
    ('{"experiment": "toy"}', "lacks"),
])
def test_corrupt_file_is_an_error_not_a_retrain(content, message):
    path = results.path_for("toy", "smoke")
    path.parent.mkdir(parents=True)
    path.write_text(content)
    with pytest.raises(results.ResultsError, match=message):
        results.cached("toy", "smoke", Cfg(), lambda: pytest.fail("must not retrain"), seeds=[0])
    assert path.read_text() == content  # left as it was


def test_atomic_write_leaves_no_partial_file(monkeypatch, tmp_path):
    results.save("toy", "full", Cfg(), {"a": 1}, seeds=[0], wall_time_s=1.0)
    path = results.path_for("toy", "full")
    before = path.read_text()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(results.os, "replace", boom)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))      # where the unsaved record is kept
    with pytest.raises(results.ResultsError, match="disk full"):
        results.save("toy", "full", Cfg(lr=9), {"a": 2}, seeds=[0], wall_time_s=1.0)
    assert path.read_text() == before
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # temp file cleaned up


def test_profile_selection(monkeypatch):
    assert profiles.current("toy") == "smoke"
    results.save("toy", "reduced", Cfg(), {}, seeds=[0], wall_time_s=0)
    assert profiles.current("toy") == "reduced"
    assert results.available_profiles("toy") == ["reduced"]
    monkeypatch.setenv("ODECORE_PROFILE", "full")
    assert profiles.current("toy") == "full"
    monkeypatch.setenv("ODECORE_PROFILE", "huge")
    with pytest.raises(ValueError, match="unknown profile 'huge'"):
        profiles.current("toy")


def test_record_is_plain_json():
    results.save("toy", "smoke", Cfg(), {"curve": [1.0, 2.0]}, seeds=[1, 2], wall_time_s=3.0)
    data = json.loads(results.path_for("toy", "smoke").read_text())
    assert data["seeds"] == [1, 2] and data["metrics"]["curve"] == [1.0, 2.0]
    assert data["config"] == {"lr": 0.1, "sizes": [1, 2]}


def test_benchmark_figures_are_stored_with_provenance():
    path = results.save_benchmark("toy", {"s_per_step": 0.5, "device_name": "as measured"})
    data = json.loads(path.read_text())
    assert path.name == "toy_benchmark.json"
    assert data["s_per_step"] == 0.5 and data["device_name"] == "as measured"  # the benchmark's own keys win
    assert {"torch", "torchdiffeq", "git_commit", "date"} <= set(data)


@pytest.mark.parametrize("content", ["5", "null", "[1, 2]"])
def test_a_file_that_is_not_a_record_is_named(content):
    path = results.path_for("toy", "smoke")
    path.parent.mkdir(parents=True)
    path.write_text(content)
    with pytest.raises(results.ResultsError, match=f"holds {re.escape(content)}, not a result"):
        results.cached("toy", "smoke", Cfg(), lambda: pytest.fail("must not retrain"), seeds=[0])


def test_a_record_whose_config_no_longer_matches_its_hash_is_not_served():
    results.save("toy", "smoke", Cfg(), {"error": 0.5}, seeds=[0], wall_time_s=1.0)
    path = results.path_for("toy", "smoke")
    record = json.loads(path.read_text())
    record["config"]["lr"] = 0.2           # edited by hand; the hash still says lr = 0.1
    path.write_text(json.dumps(record))
    with pytest.raises(results.ResultsError, match="no longer matches its config_hash"):
        results.cached("toy", "smoke", Cfg(), lambda: pytest.fail("must not be served or retrained"), seeds=[0])


def test_an_unwritable_results_folder_is_found_before_the_compute(monkeypatch, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("ODECORE_RESULTS_DIR", str(blocker / "results"))   # a folder inside a file
    with pytest.raises(results.ResultsError, match="cannot write results to .*a-file/results"):
        results.cached("toy", "smoke", Cfg(), lambda: pytest.fail("computed before the check"), seeds=[0])


def test_metrics_that_are_not_json_are_kept():
    import torch

    with pytest.raises(results.ResultsError, match="cannot be written as JSON.*kept in .*toy-smoke.unsaved.pt"):
        results.cached("toy", "smoke", Cfg(), lambda: {"error": {1, 2}}, seeds=[0])
    kept = torch.load(results.path_for("toy", "smoke").with_suffix(".unsaved.pt"), weights_only=False)
    assert kept["metrics"] == {"error": {1, 2}}
    assert not results.path_for("toy", "smoke").exists()


@pytest.mark.parametrize("value,expected", [("1", True), ("yes", True), ("0", False), ("", False), ("no", False)])
def test_rerun_reads_yes_and_no(monkeypatch, value, expected):
    monkeypatch.setenv("ODECORE_RERUN", value)
    assert profiles.rerun() is expected


def test_rerun_garbage_is_an_error_naming_the_variable(monkeypatch):
    monkeypatch.setenv("ODECORE_RERUN", "garbage")
    with pytest.raises(ValueError, match="ODECORE_RERUN='garbage'"):
        results.cached("toy", "smoke", Cfg(), lambda: pytest.fail("must not compute"), seeds=[0])


def test_results_respect_the_umask_and_are_fsynced(monkeypatch):
    import os

    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(os.path.realpath(f"/proc/self/fd/{fd}"))
                        or real_fsync(fd))
    old = os.umask(0o022)
    try:
        results.save("toy", "smoke", Cfg(), {}, seeds=[0], wall_time_s=0)
    finally:
        os.umask(old)
    path = results.path_for("toy", "smoke")
    assert path.stat().st_mode & 0o777 == 0o644
    assert synced[-1] == str(path.parent.resolve())    # the folder, after the rename
    assert ".tmp" in synced[0]                          # the file, before it


def test_a_failed_write_names_the_file_and_keeps_the_old_one(monkeypatch, tmp_path):
    import errno
    import os

    results.save("toy", "smoke", Cfg(), {"a": 1}, seeds=[0], wall_time_s=0)
    path = results.path_for("toy", "smoke")
    before = path.read_text()

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "elsewhere"))
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(results.ResultsError, match=f"could not write {path}: No space left on device"):
        results.save("toy", "smoke", Cfg(), {"a": 2}, seeds=[0], wall_time_s=0)
    assert path.read_text() == before
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_run_or_load_serves_a_finished_subrun_and_reruns_it_once(tmp_path):
    from odecore import settings

    summary, weights, resume = tmp_path / "a.json", tmp_path / "a-weights.pt", tmp_path / "a.pt"
    calls = []

    def compute() -> dict:
        calls.append(1)
        weights.write_text("w")
        return {"loss": 1.5}

    first = results.run_or_load(summary, compute, outputs=(weights,), resume=(resume,))
    assert first["loss"] == 1.5 and first["provenance"]["git_commit"] and len(calls) == 1
    assert results.run_or_load(summary, compute, outputs=(weights,)) == first and len(calls) == 1
    weights.unlink()                                              # its weights are gone: train it again
    results.run_or_load(summary, compute, outputs=(weights,))
    assert len(calls) == 2
    resume.write_text("state of an earlier run")
    with settings.use(rerun=True):
        results.run_or_load(summary, compute, outputs=(weights,), resume=(resume,))
        assert len(calls) == 3 and not resume.exists()            # from its start
        results.run_or_load(summary, compute, outputs=(weights,), resume=(resume,))
        assert len(calls) == 3                                    # once per process
    summary.write_text("{truncated")
    with pytest.raises(results.ResultsError, match="delete it to train that sub-run again"):
        results.run_or_load(summary, compute, outputs=(weights,))


def test_an_assembled_record_carries_its_subruns_cost(tmp_path):
    def compute() -> dict:
        parts = [results.run_or_load(tmp_path / f"{k}.json", lambda: {"k": k}) for k in range(3)]
        return {"runs": parts}

    first = results.cached("toy", "smoke", Cfg(), compute, seeds=[0])
    assert first["subruns"]["count"] == first["subruns"]["trained_now"] == 3
    walls = sum(r["provenance"]["wall_time_s"] for r in first["metrics"]["runs"])
    assert first["subruns"]["wall_time_s"] == pytest.approx(walls, abs=1e-3)
    results.path_for("toy", "smoke").unlink()
    again = results.cached("toy", "smoke", Cfg(), compute, seeds=[0])    # assembled from stored sub-runs
    assert again["subruns"] == {**first["subruns"], "trained_now": 0}


def test_subrun_key_depends_on_the_chosen_settings_only():
    base = results.subrun_key(Cfg(), fields=("lr",), seed=0)
    assert base == results.subrun_key(Cfg(sizes=[9]), fields=("lr",), seed=0)     # outside the key
    assert base != results.subrun_key(Cfg(lr=0.2), fields=("lr",), seed=0)
    assert base != results.subrun_key(Cfg(), fields=("lr",), seed=1)
    assert results.subrun_key(Cfg(), leave_out=("sizes",)) == results.subrun_key(Cfg(sizes=[7]), leave_out=("sizes",))
    assert results.subrun_key(Cfg(), fields=("lr",), lr=5.0) == results.subrun_key(Cfg(), fields=("lr",))  # the config wins


def test_subrun_key_names_a_misspelt_or_string_field():
    with pytest.raises(ValueError, match="fields names lrr, which Cfg does not have"):
        results.subrun_key(Cfg(), fields=("lrr",))
    assert results.subrun_key(Cfg(), leave_out=("size",)) == results.subrun_key(Cfg())  # names nothing: leaves nothing out
    with pytest.raises(TypeError, match="not the string 'lr'"):
        results.subrun_key(Cfg(), fields="lr")


def _disk_full(monkeypatch):
    """Every atomic write fails as on a full disk (the folder check, an empty file, still passes)."""
    def full(path, data):
        raise OSError(errno.ENOSPC, f"could not write {path}: No space left on device")

    monkeypatch.setattr(results, "atomic_write_bytes", full)


def test_a_record_that_cannot_be_saved_is_kept_and_the_error_says_where(monkeypatch, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(elsewhere))
    _disk_full(monkeypatch)
    with pytest.raises(results.ResultsError, match="No space left on device.*kept in (.*toy-smoke-unsaved-.*json)") as err:
        results.cached("toy", "smoke", Cfg(), lambda: {"error": 0.25}, seeds=[0])
    kept = re.search(r"kept in (\S+\.json)", str(err.value)).group(1)
    record = json.loads(open(kept).read())
    assert record["metrics"] == {"error": 0.25} and record["config_hash"] == results.config_hash(Cfg())
    assert f"copy it to {results.path_for('toy', 'smoke')}" in str(err.value)


def test_a_record_is_written_to_stderr_when_no_folder_takes_it(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no such folder"))
    _disk_full(monkeypatch)
    with pytest.raises(results.ResultsError, match="kept on stderr only"):
        results.cached("toy", "smoke", Cfg(), lambda: {"error": 0.25}, seeds=[0])
    printed = capsys.readouterr().err
    body = printed.split("--- unsaved toy-smoke ---\n")[1].split("--- end of unsaved toy-smoke ---")[0]
    assert json.loads(body)["metrics"] == {"error": 0.25}


def test_a_subrun_summary_that_cannot_be_saved_is_kept(monkeypatch, tmp_path):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    _disk_full(monkeypatch)
    with pytest.raises(results.ResultsError, match="sub-run a was computed but could not be saved.*kept in"):
        results.run_or_load(tmp_path / "scratch" / "a.json", lambda: {"loss": 1.5})
    kept = [json.loads(p.read_text()) for p in tmp_path.glob("a-unsaved-*.json")]
    assert [k["loss"] for k in kept] == [1.5]


def _broken_arrays(kind: str) -> tuple[dict, "Path"]:
    """A good record with an arrays file beside it that is damaged as `kind` says."""
    record = results.save("toy", "smoke", Cfg(), {"a": 1}, seeds=[0], wall_time_s=0)
    path = results.save_arrays(record, {"x": list(range(2000))})
    blob = path.read_bytes()
    path.write_bytes({"truncated": blob[:len(blob) // 2], "garbage": b"garbage " * 20, "empty": b"",
                      "flipped": blob[:200] + bytes([blob[200] ^ 0xFF]) + blob[201:]}[kind])
    return record, path


@pytest.mark.parametrize("kind", ["truncated", "garbage", "empty", "flipped"])
def test_an_unreadable_arrays_file_is_named_with_the_remedy(kind):
    record, path = _broken_arrays(kind)
    with pytest.raises(results.ResultsError, match=f"{path} cannot be read .*truncated or corrupt. Restore it "
                                                   "from git .* or delete it and run its chapter again") as err:
        results.cached_arrays(record, lambda: pytest.fail("must not recompute over it"))
    assert "allow_pickle" not in str(err.value)      # numpy's advice for a pickle is not the remedy here


def test_an_unreadable_arrays_file_is_a_one_line_error_on_the_command_line(tmp_path):
    import os
    import subprocess
    import sys

    from odecore import settings
    from odecore.experiments import cnf

    record = results.save("cnf_mle", "smoke", cnf.MLE_PROFILES["smoke"], {"runs": []}, seeds=[0], wall_time_s=0)
    path = results.save_arrays(record, {"x": [1.0, 2.0]})
    path.write_bytes(path.read_bytes()[:40])
    env = {k: v for k, v in os.environ.items() if k not in ("ODECORE_PROFILE", "ODECORE_RERUN")}
    out = subprocess.run([sys.executable, "-m", "odecore.experiments", "cnf", "--profile", "smoke"],
                         capture_output=True, text=True, cwd=settings.ROOT, timeout=600,
                         env={**env, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"error: {path} cannot be read" in out.stderr and "Traceback" not in out.stderr, out.stderr


@pytest.mark.parametrize("where,what", [("scratch", "resume state"), ("checkpoints", "checkpoints")])
def test_an_unwritable_subrun_folder_is_found_before_training(monkeypatch, tmp_path, where, what):
    # as root a chmod does not stop a write, so the unwritable folder is one inside a file
    (tmp_path / "a-file").write_text("")
    variable = {"scratch": "ODECORE_SCRATCH_DIR", "checkpoints": "ODECORE_CHECKPOINT_DIR"}[where]
    monkeypatch.setenv(variable, str(tmp_path / "a-file" / where))
    scratch, checkpoints = results.scratch_dir(), results.checkpoint_dir()
    with pytest.raises(results.ResultsError, match=f"cannot write {what} to .*a-file/{where}.* set {variable}"):
        results.run_or_load(scratch / "a.json", lambda: pytest.fail("trained before the check"),
                            outputs=(checkpoints / "a.pt",), resume=(scratch / "a.pt",))


LOCK_SCRIPT = """
import sys, time
from pathlib import Path
from odecore import results

folder, name = Path(sys.argv[1]), sys.argv[2]

def compute():
    print(f"{name} trains", flush=True)
    while not (folder / "go").exists():   # the test says when to finish
        time.sleep(0.05)
    return {"trained_by": name}

print(results.run_or_load(folder / "sub.json", compute)["trained_by"], flush=True)
"""


def _first_line(proc, timeout: float) -> tuple[str, str]:
    """("stdout" or "stderr", line): the first line `proc` prints on either, or ("", "") after `timeout` s."""
    import selectors

    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ, "stdout")
        sel.register(proc.stderr, selectors.EVENT_READ, "stderr")
        for key, _ in sel.select(timeout):
            return key.data, key.fileobj.readline()
    return "", ""


def test_a_second_run_waits_for_the_first_and_loads_its_subrun(tmp_path):
    import os
    import subprocess
    import sys

    from odecore import settings

    script = tmp_path / "subrun.py"
    script.write_text(LOCK_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def start(name: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, str(script), str(tmp_path), name], cwd=settings.ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    first = start("first")
    second = None
    try:
        assert first.stdout.readline() == "first trains\n", first.stderr.read()
        second = start("second")
        said = _first_line(second, timeout=120)                  # said before it blocks on the lock
        assert said[0] == "stderr" and "waiting for sub-run sub: another process is training it" in said[1], said
        (tmp_path / "go").write_text("")
        out_first, _ = first.communicate(timeout=120)
        out_second, err_second = second.communicate(timeout=120)
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
    assert out_first.splitlines()[-1] == "first"
    assert out_second.splitlines() == ["first"], out_second + err_second     # loaded, never trained


def test_a_commit_with_uncommitted_changes_says_so():
    assert results.commit_words("77334faf1234abcd") == "77334faf"
    assert results.commit_words("77334faf1234abcd+dirty") == "77334faf (odecore had uncommitted changes)"
    assert results.commit_words("unknown") == "unknown"
