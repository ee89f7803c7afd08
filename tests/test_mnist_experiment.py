"""The MNIST experiment in its smoke profile: every line of training, selection and measurement runs."""
from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import pytest
import torch

from odecore import paper, results
from odecore.experiments import mnist as exp
from odecore.figures import mnist as figures
from odecore.models import mnist as models

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
torch.set_num_threads(1)
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
needs_mnist = pytest.mark.skipif(not (SHARED / "train-labels-idx1-ubyte.gz").exists()
                                 and not os.environ.get("ODECORE_MNIST_DIR"), reason="no MNIST copy")


def test_full_profile_is_the_papers_settings():
    full = exp.PROFILES["full"]
    assert (full.num_epochs, full.batch_size, full.lr, full.momentum, full.optimizer) == (160, 128, 0.1, 0.9, "sgd")
    assert full.milestones == (60, 100, 140) and full.gamma == 0.1 and full.schedule == "step"
    assert full.augment and full.tol == paper.MNIST_TOL and full.images_per_epoch is None
    assert set(exp.PROFILES) == {"smoke", "reduced", "cpu", "full"}
    for cfg in exp.PROFILES.values():
        assert set(cfg.seeds) == set(models.MODELS)


@pytest.mark.slow   # `make test` trains the MNIST smoke profile once, in nbval (book/mnist.ipynb asserts on it)
@needs_mnist
def test_smoke_run_then_cached_then_resumed(monkeypatch):
    if not os.environ.get("ODECORE_MNIST_DIR"):
        monkeypatch.setenv("ODECORE_MNIST_DIR", str(SHARED))
    (rec,) = exp.run("smoke", progress=False)
    cfg = exp.PROFILES["smoke"]
    m = rec["metrics"]
    assert rec["experiment"] == "mnist" and rec["profile"] == "smoke"
    assert m["split"] == {"train": cfg.n_train, "val": cfg.n_val, "test": cfg.n_test}
    for name in models.MODELS:
        row = m["table1"][name]
        assert len(row["test_error"]) == len(cfg.seeds[name]) and 0 <= row["test_error_mean"] <= 100
        assert row["params"] == m["param_counts"][cfg.downsampling][name]
        assert row["memory"]["peak_mb"] >= 0 and len(row["history"][0]) == cfg.num_epochs
        assert exp.weights_path("smoke", name, cfg.seeds[name][0]).exists()
    ode = m["table1"]["odenet"]["history"][0]
    steps = cfg.n_train // cfg.batch_size
    assert all(len(h["nfe_forward_steps"]) == steps and min(h["nfe_backward_steps"]) > 0 for h in ode)
    assert all(max(h["nfe_backward_steps"]) == 0 for h in m["table1"]["rknet"]["history"][0])  # direct backprop
    assert {r["solver"] for r in m["figure3"]["backward"]} == set(exp.FIG3C_SOLVERS)
    assert [r["tol"] for r in m["figure3"]["tolerance"]] == list(cfg.fig3_tols)
    nfe = [r["nfe_forward"] for r in m["figure3"]["tolerance"]]
    assert nfe == sorted(nfe)  # tighter tolerance, no fewer evaluations
    assert len(m["figure1"]["resnet_states"][0]) == 7 and m["figure1"]["ode_eval_t"]

    rows = exp.scoreboard(rec)
    assert {r["item"] for r in rows} == {"Table 1", "Figure 1", "Figure 3"}
    assert [r["paper"] for r in rows if r["quantity"].endswith("test error")] == \
        [paper.TABLE1[n]["test_error"] for n in models.MODELS]
    table = figures.table1(rec)
    assert list(table["test error, paper (%)"]) == [paper.TABLE1[n]["test_error"] for n in models.MODELS]
    figures.plot_figure3(rec)
    figures.plot_figure1(rec)

    (again,) = exp.run("smoke", progress=False)  # a matching result is loaded, not retrained
    assert again["date"] == rec["date"]
    results.path_for("mnist", "smoke").unlink()  # finished parts are reused: no model is trained again
    monkeypatch.setattr(exp, "fit", lambda *a, **k: pytest.fail("retrained a finished model"))
    (resumed,) = exp.run("smoke", progress=False)
    assert resumed["metrics"]["table1"]["odenet"]["test_error"] == m["table1"]["odenet"]["test_error"]


def test_cpu_profile_converges_as_the_issue_asks():
    """Every epoch sees all 55k images; one-cycle per step, Nesterov, weight decay, crops; the ODE-Net uses the adjoint."""
    cpu = exp.PROFILES["cpu"]
    assert cpu.images_per_epoch is None and cpu.n_train is None and cpu.n_val == 5000
    assert cpu.schedule == "onecycle" and cpu.nesterov and cpu.weight_decay > 0 and cpu.augment
    assert {m: exp.num_epochs(cpu, m) for m in models.MODELS} == cpu.epochs
    assert len(cpu.seeds["mlp"]) >= 3 and len(cpu.seeds["resnet"]) >= 3
    assert models.make("odenet").ode.adjoint
    opt = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=cpu.lr)
    sched, interval = exp._scheduler(opt, cpu, 2, 10)
    lrs = []
    for _ in range(20):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert interval == "step" and max(lrs) == pytest.approx(cpu.lr, rel=0.05) and lrs[0] < cpu.lr / 10 > lrs[-1]


def test_step_memory_reports_a_peak():
    out = exp.step_memory("mlp", 4)
    assert out["peak_mb"] >= 0 and out["nfe_forward"] == 0 and out["method"]
    ode = exp.step_memory("odenet", 2)
    assert ode["nfe_forward"] > 0 and ode["nfe_backward"] > 0
    fresh = exp.measure_step_memory("resnet", 8)            # in a spawned process, which must see the peak
    assert fresh["peak_mb"] > 1 and fresh["method"].endswith("fresh process")


def test_committed_record_draws(monkeypatch):
    """The committed reduced record (if any) makes the tables, every figure and the scoreboard rows."""
    monkeypatch.setenv("ODECORE_RESULTS_DIR", str(results.ROOT / "data" / "results"))
    rec = results.load("mnist", "reduced")
    if rec is None:
        pytest.skip("no committed reduced result yet")
    assert rec["config_hash"] == results.config_hash(exp.PROFILES["reduced"])  # the book will not retrain
    assert len(figures.table1(rec)) == 4 and exp.scoreboard(rec)
    for draw in (figures.plot_figure3, figures.plot_figure1, figures.plot_table1, figures.plot_training,
                 figures.plot_validation):
        plt.close(draw(rec))
    assert len(figures.cost_table(rec)) == 4 and len(figures.figure3c_table(rec))
