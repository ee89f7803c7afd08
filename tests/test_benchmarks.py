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


def test_diffrax_benchmark_times_the_odecore_rows_without_jax(tmp_path, monkeypatch, capsys):
    """benchmarks/diffrax.py at the smoke settings, as without JAX: a row per odecore method, saved. The compiled
    row compiles with aot_eager (the same graphs, no generated C++), which saves CI most of a minute of inductor."""
    monkeypatch.setenv("ODECORE_RESULTS_DIR", str(tmp_path))
    bench = _benchmark("diffrax")
    out = bench.main(["--profile", "smoke", "--only", "latent_ode", "--rounds", "1", "--steps", "1", "--no-jax",
                      "--compile-backend", "aot_eager", "--save"])
    assert "odecore rows only" in capsys.readouterr().out
    saved = json.loads((tmp_path / "diffrax_benchmark.json").read_text())
    assert [r["method"] for r in saved["rows"]] == list(bench.ODECORE_METHODS) == [r["method"] for r in out["rows"]]
    for r in saved["rows"]:
        assert r["s_per_step"] > 0 and r["nfe_forward"] > 0 and r["rss_peak_steps_mb"] > 0
    assert saved["summary"] == {} and "load_average" in saved and "git_commit" in saved
    assert saved["compile_backend"] == "aot_eager"


def test_diffrax_dopri5_evaluations_are_six_per_step_plus_one():
    """The benchmark reads diffrax's forward NFE from sol.stats; a counter in the vector field agrees."""
    pytest.importorskip("diffrax", reason="JAX and diffrax are the optional extra `anchors` (benchmarks/diffrax.py)")
    import diffrax
    import jax
    import jax.numpy as jnp

    calls = [0]

    def vf(t, y, a):
        jax.debug.callback(lambda: calls.__setitem__(0, calls[0] + 1))
        return -a * y + jnp.sin(3 * t)

    for t0, t1, saveat in ((0.0, 5.0, diffrax.SaveAt(ts=jnp.linspace(0.0, 5.0, 7))), (5.0, 0.0, diffrax.SaveAt(t1=True))):
        calls[0] = 0
        sol = diffrax.diffeqsolve(diffrax.ODETerm(vf), diffrax.Dopri5(), t0, t1, None, jnp.ones(3), args=1.3,
                                  stepsize_controller=diffrax.PIDController(rtol=1e-6, atol=1e-6), saveat=saveat)
        jax.block_until_ready(sol.ys)
        assert calls[0] == _benchmark("diffrax").dopri5_nfe(int(sol.stats["num_steps"]))


@pytest.mark.slow
def test_diffrax_benchmark_losses_agree_side_by_side(capsys):
    """The same latent ODE step in odecore and diffrax (smoke settings): the benchmark asserts the losses agree."""
    pytest.importorskip("diffrax", reason="JAX and diffrax are the optional extra `anchors` (benchmarks/diffrax.py)")
    out = _benchmark("diffrax").main(["--profile", "smoke", "--only", "latent_ode", "--rounds", "1", "--steps", "1"])
    rows = {r["method"]: r for r in out["rows"]}
    assert rows["diffrax Dopri5, jax.jit"]["compile_s"] > 0
    for method in _benchmark("diffrax").ODECORE_METHODS:
        assert rows[method]["loss_rel_diff"] <= 1e-4 and rows[method]["grad_rel_diff"] < 1e-3
    assert set(out["summary"][out["rows"][0]["row"]]) == set(_benchmark("diffrax").ODECORE_METHODS)
