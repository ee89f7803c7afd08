"""benchmarks/cnf.py: the committed figures agree with the rows they were computed from, and the sweep runs."""
import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _benchmark(name: str):
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_cnf_benchmark_summary_is_its_rows():
    cnf = _benchmark("cnf")
    bench = json.loads((ROOT / "data" / "results" / "cnf_benchmark.json").read_text())
    for solver in cnf.SOLVERS:
        kinds = {(r["model"], r["trace"]) for r in bench["figure5"] if r["solver"] == solver and not r["adjoint"]}
        assert {("planar CNF (ours)", t) for t in ("closed", "autograd", "hutchinson")} <= kinds
        assert ("public example's CNF", "autograd") in kinds
    for key, value in cnf.summary(bench).items():
        assert bench[key] == pytest.approx(value), key


def test_dimension_sweep_times_every_variant_at_the_same_evaluations():
    rows = _benchmark("cnf").dimension_sweep([2, 3], iters=1, width=4, batch=8, example_max_dim=2)
    assert [(r["dim"], r["trace"]) for r in rows] == [
        (2, "closed"), (2, "autograd"), (2, "hutchinson"), (2, "example"), (3, "closed"), (3, "autograd"),
        (3, "hutchinson")]
    assert {r["nfe_forward"] for r in rows} == {40}
    assert all(r["s_per_step"] > 0 for r in rows)


def test_the_device_script_parses():
    """benchmarks/device.sh is meant for a short GPU lease: a syntax error must not cost one."""
    import subprocess

    out = subprocess.run(["bash", "-n", str(ROOT / "benchmarks" / "device.sh")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
