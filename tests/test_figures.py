"""Figures are pure functions of stored results: drawn from the committed records and arrays with no
ODE solve, no model load and no data regeneration, and arrays follow the one record they were made from."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torchdiffeq  # noqa: E402

from odecore import results, solve, tables  # noqa: E402
from odecore.datasets import spirals, toy2d  # noqa: E402
from odecore.figures import cnf as cnf_figures  # noqa: E402
from odecore.figures import latent_ode as latent_figures  # noqa: E402
from odecore.figures import mnist as mnist_figures  # noqa: E402


def forbid(*_, **__):
    raise AssertionError("a figure computed instead of drawing stored results")


@pytest.fixture
def committed(monkeypatch):
    """The committed data/results/, with every way to compute closed off."""
    monkeypatch.delenv("ODECORE_RESULTS_DIR")
    for module, name in ((torch, "load"), (torchdiffeq, "odeint"), (torchdiffeq, "odeint_adjoint"),
                         (solve, "odesolve"), (solve, "odeint"), (solve, "odeint_adjoint"),
                         (spirals, "make_spirals"), (toy2d, "sample"), (toy2d, "energy")):
        monkeypatch.setattr(module, name, forbid)

    def load(experiment: str, profile: str | None = None) -> tuple[dict, dict | None]:
        """The record the chapter shows (the largest stored profile), or the profile named."""
        profile = profile or results.available_profiles(experiment)[-1]
        record = results.load(experiment, profile)
        return record, results.load_arrays(record)

    yield load
    plt.close("all")


def test_cnf_figures_draw_from_stored_results(committed):
    density, d_arrays = committed("cnf_density")
    mle, m_arrays = committed("cnf_mle")
    assert d_arrays is not None and m_arrays is not None, "run python -m odecore.experiments.cnf to store them"
    fig = cnf_figures.figure4(density, d_arrays)
    drawn = [ax for ax in fig.axes if ax.collections]
    cfg = density["config"]
    assert len(drawn) == len(cfg["targets"]) * (1 + len(cfg["nf_layers"]) + len(cfg["cnf_units"]))
    cnf_figures.figure4d(density)
    cnf_figures.figure_theorem1(density["metrics"]["theorem1"])
    assert set(cnf_figures.figure5(mle, m_arrays)) == set(mle["config"]["datasets"])


def test_latent_ode_figures_draw_from_stored_results(committed):
    record, arrays = committed("latent_ode")
    poisson, p_arrays = committed("latent_ode_poisson")
    assert arrays is not None and p_arrays is not None, "run python -m odecore.experiments.latent_ode to store them"
    for fig in (latent_figures.fig8(record, arrays), latent_figures.fig9(record, arrays),
                latent_figures.fig10(record, arrays), latent_figures.fig7(poisson, p_arrays),
                latent_figures.fig_training(record), latent_figures.fig_table2(record), latent_figures.fig6()):
        assert fig.axes
    assert len(latent_figures.table2_frame(record)) == len(record["config"]["obs_counts"])


def test_arrays_belong_to_one_record(tmp_path, monkeypatch):
    monkeypatch.setenv("ODECORE_RESULTS_DIR", str(tmp_path))
    record = results.save("toy", "smoke", {"a": 1}, {"x": 1.0}, seeds=[0], wall_time_s=0.0)
    results.save_arrays(record, {"grid": np.arange(6.0).reshape(2, 3)})
    assert results.load_arrays(record)["grid"].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert results.load_arrays({**record, "date": "another run"}) is None          # retrained: recompute
    assert results.load_arrays({**record, "config_hash": "another config"}) is None
    assert results.load_arrays({**record, "metrics": {"x": 2.0}}) is None                 # same second, other numbers
    calls = []
    again = results.cached_arrays(record, lambda: calls.append(1) or {"grid": np.zeros(1)})
    assert not calls and again["grid"].shape == (2, 3)                                  # served, not recomputed
    results.arrays_path("toy", "smoke").write_bytes(b"not an npz")
    with pytest.raises(results.ResultsError, match="cannot be read"):
        results.load_arrays(record)


def test_cnf_smoke_run_stores_what_its_figures_draw(tmp_path, monkeypatch):
    from odecore.experiments import cnf

    for name in ("RESULTS", "CHECKPOINT", "SCRATCH"):
        monkeypatch.setenv(f"ODECORE_{name}_DIR", str(tmp_path / name.lower()))
    monkeypatch.setenv("TQDM_DISABLE", "1")
    mle, density = cnf.run("smoke")
    d_arrays, m_arrays = results.load_arrays(density), results.load_arrays(mle)
    cfg = density["config"]
    for target in cfg["targets"]:
        assert d_arrays[f"{target}/target"].shape == (cnf.FIG4_GRID, cnf.FIG4_GRID)
        for m in cfg["cnf_units"]:   # a histogram of the flow's samples: a density on the panel's square
            h = d_arrays[f"{target}/cnf{m}"]
            assert h.shape == (cnf.FIG4_BINS, cnf.FIG4_BINS) and h.sum() * (2 * cnf.FIG4_LIM / cnf.FIG4_BINS) ** 2 <= 1.0001
    for data in mle["config"]["datasets"]:
        assert m_arrays[f"{data}/cnf_density"].shape[0] == m_arrays[f"{data}/nf_samples"].shape[0]
    assert cnf_figures.figure4(density, d_arrays).axes and cnf_figures.figure5(mle, m_arrays)
    assert cnf_figures.figure_nf_budget(density).axes and cnf_figures.figure4d(density).axes
    assert len(cnf_figures.nf_budgets_table(density)) == 2 * len(cfg["targets"])   # a row per target and NF budget
    assert all(r.get("stacked") for r in density["metrics"]["runs"] if r["kind"] == "nf")   # run_density stacks them
    # the shorter NF budget is labelled beside Figure 4, never in it: panel and claim show the profile's budget
    big = max(cfg["nf_layers"])
    kl = {r["iterations"]: r["kl"] for r in density["metrics"]["runs"]
          if (r["kind"], r["size"], r["seed"]) == ("nf", big, 0)}
    assert set(kl) == {cfg["nf_iterations"], cfg["short_nf_iterations"]}
    labels = [ax.get_xlabel() for ax in cnf_figures.figure4(density, d_arrays).axes]
    assert any(lab.startswith(tables.number(kl[cfg["nf_iterations"]])) for lab in labels)
    assert cnf_figures.cnf_against_nf(density)["nf_seeds"].tolist() == [len(cfg["seeds"])]
    rows = [r["quantity"] for r in cnf.scoreboard(density) if r["quantity"].startswith("final KL") and f"NF K={big}," in r["quantity"]]
    assert sum("a shorter budget" in q for q in rows) == 1 and any(f"{cfg['nf_iterations']:,} it." in q for q in rows)
    plt.close("all")


def test_mnist_words_follow_the_profile_shown(committed):

    reduced, _ = committed("mnist", "reduced")
    words = mnist_figures.error_summary(reduced)
    for row in reduced["metrics"]["table1"].values():
        assert f"{tables.mean_sd(row['test_error'])} %" in words              # as Table 1 prints it
    assert "fraction of one pass" in words and "targets" not in words
    cpu = {**reduced, "profile": "cpu"}                       # the same numbers, read as the cpu profile would be
    rows = mnist_figures.error_rows(cpu)
    assert rows["target"].notna().all() and not rows["met"].any()           # 2.5-5% errors miss every target
    assert "target" not in mnist_figures.error_summary(cpu)                 # the project's own targets stay off the page
    one = {**cpu, "metrics": {**cpu["metrics"], "table1": {**cpu["metrics"]["table1"], "odenet": {
        **cpu["metrics"]["table1"]["odenet"], "seeds": [0], "test_error_mean": 0.55}}}}
    assert mnist_figures.error_rows(one).loc["ODE-Net", "met"]
    assert any("for the ODE-Net:" in line and "its row shows one run" in line for line in mnist_figures.limits(one))


def test_nfe_trend_reads_both_passes_of_the_first_seed():

    def epoch(fwd: list[int], bwd: list[int]) -> dict:
        return {"nfe_forward_steps": fwd, "nfe_backward_steps": bwd}

    first = [epoch([26, 20], [26, 26]), epoch([20, 20], [26, 32]), epoch([20, 20], [32, 32])]
    other_seed = [epoch([50, 50], [0, 0])] * 3                      # only seed 0 is read
    record = {"metrics": {"table1": {"odenet": {"history": [first, other_seed]}}}}
    trend = mnist_figures.nfe_trend(record)
    assert trend["forward"] == pytest.approx({"first": 23.0, "last": 20.0, "slope_per_epoch": -1.5})
    assert trend["backward"] == pytest.approx({"first": 26.0, "last": 32.0, "slope_per_epoch": 3.0})


def test_error_by_profile_puts_each_record_beside_the_paper(committed):
    from odecore import paper

    stored = [committed("mnist", p)[0] for p in results.available_profiles("mnist")]
    table = mnist_figures.error_by_profile(stored)
    for record in stored:
        t1 = record["metrics"]["table1"]
        assert table[(record["profile"], "error (%)")]["ODE-Net"] == t1["odenet"]["test_error_mean"]
        assert 0 < table[(record["profile"], "passes")]["ODE-Net"] <= len(t1["odenet"]["history"][0])
    assert table[("paper", "error (%)")]["ResNet"] == paper.TABLE1["resnet"]["test_error"]


def test_error_overlap_counts_the_images_two_runs_both_get_wrong():
    wrong = {"mlp": [[1, 2, 3, 4], [5, 6, 7, 8]], "resnet": [[1, 2], [1, 2, 3]], "rknet": [[1, 2]], "odenet": [[1, 2], [1, 9]]}
    t1 = {m: {"misclassified": w} for m, w in wrong.items()}
    record = {"metrics": {"table1": t1, "split": {"test": 10}}}
    table = mnist_figures.error_overlap(record)
    assert table.loc["ODE-Net", "ODE-Net"] == pytest.approx(0.5)                       # {1, 2} and {1, 9}: 1 of 2
    assert table.loc["ODE-Net", "ResNet"] == pytest.approx(np.mean([1, 2 / 2.5, 0.5, 1 / 2.5]))
    assert table.loc["1-layer MLP", "1-layer MLP"] == 0 and np.isnan(table.loc["RK-Net", "RK-Net"])   # one seed: no pair
    assert np.allclose(table.values, table.values.T, equal_nan=True)
    words = mnist_figures.error_overlap_words(record)
    assert "against 50% with another seed of its own: image by image it is no further from the ResNet than from itself" \
        in words
    assert words.endswith("1 of the 10 test images is wrong in all 5 convolutional runs, 4 in at least one.")
    closer = {**record, "metrics": {**record["metrics"], "table1": {**t1, "odenet": {"misclassified": [[1, 9], [1, 9]]}}}}
    assert "closer to itself than to the ResNet" in mnist_figures.error_overlap_words(closer)
    before = {**record, "metrics": {**record["metrics"], "table1": {**t1, "odenet": {"misclassified": [None, None]}}}}
    assert mnist_figures.error_overlap(before) is None


def test_inside_failures_names_the_runs_that_fail_inside_the_coverage_edge():
    def run(seed, n, inside):   # four spirals inside the edge (theta0 <= 5), one outside
        return {"seed": seed, "n": n, "theta0": [3.0, 3.5, 4.0, 4.5, 9.0], "per_spiral_beyond": [*inside, 5.0],
                "coverage": {"edge": 5.0}, "test_loglik": 12.5 - 2.5 * seed}
    good = {"metrics": {"runs": [run(0, 30, [0.1, 0.1, 0.2, 0.1]), run(1, 30, [0.1, 0.2, 0.1, 0.1])]}}
    assert latent_figures.inside_failures(good).startswith("Inside the edge no run has more than a tenth")
    bad = {"metrics": {"runs": good["metrics"]["runs"] + [run(2, 30, [2.0, 3.0, 0.1, 0.1])]}}
    assert ("for seed 2: 2 of 4 at n = 30 (the band inside the edge in (a)), against 0 in all the other runs together. "
            "Seed 2's models also fit the test spirals worst at every n (test log-likelihood 7.50 at n = 30 against "
            "12.5 and 10)." in latent_figures.inside_failures(bad))


def test_recompute_gap_is_the_largest_difference_between_the_forward_and_the_recomputed_state():
    from odecore.figures import adjoint as adjoint_figures

    t = np.linspace(0, 1, 11)
    z = np.stack([np.sin(t), np.cos(t)], 1)
    same = {"metrics": {"figure2": {"t_forward": t, "z_forward": z, "t_backward": t[::-1], "z_backward": z[::-1]}}}
    assert adjoint_figures.recompute_gap(same) == pytest.approx(0.0, abs=1e-12)
    off = {"metrics": {"figure2": {**same["metrics"]["figure2"], "z_backward": z[::-1] + [0.0, 0.25]}}}
    assert adjoint_figures.recompute_gap(off) == pytest.approx(0.25)


def reads(fig) -> None:
    """The figure has nothing a reader of the printed page stumbles on (odecore.plots.layout_problems)."""
    from odecore import plots

    assert plots.layout_problems(fig) == []


def test_adjoint_figures_read_at_the_printed_size(committed):
    from odecore.figures import adjoint as adjoint_figures

    record, _ = committed("adjoint")
    memory = adjoint_figures.fig_memory(record)
    memory.canvas.draw()                        # the constrained layout, as the page's PNG gets it
    renderer = memory.canvas.get_renderer()
    inside = memory.bbox.transformed(memory.dpi_scale_trans.inverted())
    tight = memory.get_tightbbox(renderer)
    assert inside.x0 <= tight.x0 and tight.x1 <= inside.x1 and inside.y0 <= tight.y0 and tight.y1 <= inside.y1
    for ax in memory.axes:   # each y label within its own panel's height: none is cut or runs into another
        assert ax.yaxis.label.get_window_extent(renderer).height <= ax.get_window_extent(renderer).height
    for fig in (memory, adjoint_figures.fig_sweep(record), adjoint_figures.fig2(record)):
        reads(fig)
    assert len(adjoint_figures.fig_sweep(record).legends) == 1    # one legend below the three panels


def test_latent_ode_figures_read_at_the_printed_size(committed):
    record, arrays = committed("latent_ode")
    poisson, p_arrays = committed("latent_ode_poisson")
    cover, _ = committed("latent_ode_coverage")
    fig9 = latent_figures.fig9(record, arrays)
    bars = [ax for ax in fig9.axes if hasattr(ax, "_colorbar")]
    assert len(bars) == 2 and all(bar.get_xlabel() for bar in bars)   # the sweep's offset, the line's position
    fig8 = latent_figures.fig8(record, arrays)
    assert all(ax.lines or ax.collections for ax in fig8.axes)           # no panel without data
    training = latent_figures.fig_training(record)
    ends = {line.get_ydata()[-1] for ax in training.axes for line in ax.lines if len(line.get_ydata()) > 2}
    assert ends == {r["loss_history"][-1] for r in record["metrics"]["runs"]}   # the loss itself, not shifted
    for fig in (latent_figures.fig6(), fig8, fig9, latent_figures.fig10(record, arrays), training,
                latent_figures.fig7(poisson, p_arrays), latent_figures.fig_coverage(record, cover),
                latent_figures.fig_table2(record)):
        reads(fig)


def test_cnf_figures_read_at_the_printed_size(committed):
    from odecore import tables

    density, d_arrays = committed("cnf_density")
    mle, m_arrays = committed("cnf_mle")
    cfg = density["config"]
    fig = cnf_figures.figure4(density, d_arrays)
    tab = cnf_figures.density_table(density)
    cols = [("nf", k) for k in cfg["nf_layers"]] + [("cnf", m) for m in cfg["cnf_units"]]
    grid = np.array(fig.axes).reshape(len(cfg["targets"]), 1 + len(cols))
    for row, target in zip(grid, cfg["targets"]):
        assert row[0].get_xlabel().startswith("KL, seed 0")
        for ax, (kind, size) in zip(row[1:], cols):   # seed 0's KL, then the seed mean the KL table shows
            seed0 = next(r["kl"] for r in density["metrics"]["runs"] if "kl" in r and r["seed"] == 0
                         and (r["task"], r["kind"], r["size"]) == (target, kind, size)
                         and r["iterations"] == cfg[f"{kind}_iterations"])
            cell = tab[(tab.task == target) & (tab.kind == kind) & (tab["size"] == size)
                       & (tab.iterations == cfg[f"{kind}_iterations"])].iloc[0]
            assert ax.get_xlabel().split("\n") == [tables.number(seed0), tables.number(cell.kl_mean)]
    for fig in (fig, cnf_figures.figure4d(density), cnf_figures.figure_theorem1(density["metrics"]["theorem1"]),
                *cnf_figures.figure5(mle, m_arrays).values()):
        reads(fig)


def test_mnist_figures_read_at_the_printed_size(committed):
    import json


    record, _ = committed("mnist")
    ablation = json.loads((results.ROOT / "data" / "results" / "mnist_nfe_ablation-cpu.json").read_text())
    for fig in (mnist_figures.plot_training(record), mnist_figures.plot_validation(record),
                mnist_figures.plot_table1(record), mnist_figures.plot_figure3(record),
                mnist_figures.plot_figure1(record), mnist_figures.plot_nfe_ablation(ablation)):
        reads(fig)


def test_figure5_numbers_are_means_over_the_seeds_wherever_shown():
    from odecore import ledger
    from odecore.experiments import cnf

    runs = [{"kind": kind, "task": "two_moons", "size": 64, "seed": seed, "iterations": 10,
             "test_loglik": ll, "test_loglik_se": 0.01, "train_time_s": 60.0}
            for kind, lls in (("cnf", (-0.20, -0.22, -0.24)), ("nf", (-0.30, -0.10, -0.29)))
            for seed, ll in enumerate(lls)]
    record = {"experiment": "cnf_mle", "profile": "full", "metrics": {"runs": runs}}
    summary = cnf_figures.mle_summary(record).set_index("kind")
    assert summary.loc["cnf", "ll_mean"] == pytest.approx(-0.22) and summary.loc["nf", "seeds"] == 3
    assert summary.loc["cnf", "ll_std"] == pytest.approx(0.02)
    table = cnf_figures.mle_table(record)
    assert list(table["test log-likelihood"]) == [tables.mean_sd([-0.20, -0.22, -0.24]), tables.mean_sd([-0.30, -0.10, -0.29])]
    (*rows, gap) = cnf.scoreboard(record)
    assert [r["ours"] for r in rows] == pytest.approx([-0.22, -0.23]) and all("mean of 3 seeds" in r["quantity"] for r in rows)
    assert gap["ours"] == pytest.approx(0.01) and gap["verdict"] == "not reproduced"   # the ledger's verdict, below
    # the NF is below the CNF on the mean, by less than the seeds' spread: no difficulty the seeds can tell
    claim = ledger._flows(None, record)[0]
    assert claim["verdict"] == "not reproduced" and "mean of 3 seeds" in claim["detail"] and "less than" in claim["detail"]
    clear = {**record, "metrics": {"runs": [{**r, "test_loglik": r["test_loglik"] - 0.5 * (r["kind"] == "nf")}
                                            for r in runs]}}
    assert ledger._flows(None, clear)[0]["verdict"] == "reproduced"


def test_a_retrained_run_is_set_against_the_run_it_replaced_and_the_seeds_spread():
    run = lambda kind, seed, ll, method: {"kind": kind, "task": "two_moons", "size": 64, "seed": seed,  # noqa: E731
                                          "test_loglik": ll, "train_time_s": 1.0, "method": method}
    old = {"metrics": {"runs": [run("cnf", 0, -0.2901, "dopri5"), run("nf", 0, -0.25, None)]}}
    new = {"metrics": {"runs": [run("cnf", 0, -0.29, "lean_dopri5"), run("cnf", 1, -0.31, "lean_dopri5"),
                                run("cnf", 2, -0.33, "lean_dopri5"), run("nf", 0, -0.10, None),
                                run("nf", 1, -0.11, None), run("nf", 2, -0.12, None)]}}
    text = cnf_figures.solver_change(old, new)
    # the CNF reads the same to three digits; the NF moved 0.15 against an sd of 0.01
    assert text.startswith("The earlier training gave the same test log-likelihood to three digits for Two Moons CNF (seed 0)")
    assert "Two Moons NF (seed 0), whose layers now run as one batched computation, from −0.250 to −0.100, beyond the seeds' sd of 0.0100" in text
    assert "seed 1" not in text and cnf_figures.solver_change({"metrics": {"runs": []}}, new) == ""


def test_figure4_verdict_counts_a_difference_only_beyond_the_seeds_spread():
    from odecore import ledger
    from odecore.experiments import cnf

    cfg = {"targets": ["U1", "U2"], "nf_layers": [32], "cnf_units": [32], "nf_iterations": 500000,
           "short_nf_iterations": 20000, "cnf_iterations": 10000, "long_cnf": [], "long_iterations": 10000}
    kls = {("U1", "cnf", 10000): (0.020, 0.022, 0.024), ("U1", "nf", 20000): (0.010, 0.030, 0.017),  # NF lower, within
           ("U2", "cnf", 10000): (0.020, 0.021, 0.022), ("U2", "nf", 20000): (0.050, 0.051, 0.052),
           ("U1", "nf", 500000): (0.001, 0.002, 0.003), ("U2", "nf", 500000): (0.020, 0.023, 0.026)}
    runs = [{"task": t, "kind": k, "size": 32, "seed": s, "kl": kl, "iterations": n}
            for (t, k, n), values in kls.items() for s, kl in enumerate(values)]
    density = {"experiment": "cnf_density", "profile": "full", "config": cfg, "metrics": {"runs": runs}}
    vs = cnf_figures.cnf_against_nf(density, 20000).set_index("target")
    assert list(vs.lower) == [False, True] and list(vs.matches) == [True, True]
    assert vs.loc["U1", "spread"] == pytest.approx(np.hypot(np.std([0.020, 0.022, 0.024], ddof=1),
                                                            np.std([0.010, 0.030, 0.017], ddof=1)))
    assert ("ahead by more than the seeds' combined sd on U2; the two are within it on U1; on U1 the NF's mean is the "
            "lower, KL 0.0190 against the CNF's 0.0220, by less than the seeds' combined sd of 0.0103") \
        in cnf_figures.cnf_against_nf_sentence(vs.reset_index())
    # the claim rests on the profile's NF budget, the paper's here: behind on U1, within the spread on U2
    at_paper = cnf_figures.cnf_against_nf(density)
    assert list(at_paper.matches) == [False, True]
    assert cnf_figures.cnf_against_nf_sentence(at_paper).startswith("The CNF matches or beats the NF on 1 of 2 targets")
    rows = [r for r in cnf.scoreboard({**density, "metrics": {**density["metrics"], "theorem1": {"max_abs_err": 0.0}}})
            if "matches or beats" in r["quantity"]]
    assert [(r["ours"], r.get("verdict")) for r in rows] == [(1, ledger.matches_or_beats(1, 2)), (2, None)]
    assert "NF at 500,000 it." in rows[0]["quantity"] and "20,000 it. (a shorter budget" in rows[1]["quantity"]
    table = cnf_figures.nf_budgets_table(density)
    assert list(table["NF iterations"]) == ["500,000", "20,000"] * 2
    assert list(table["CNF against NF"]) == ["behind", "within the seeds' sd", "within the seeds' sd", "ahead"]
    assert table["NF"][0] == tables.mean_sd([0.001, 0.002, 0.003])


def test_the_ablation_words_answer_from_the_runs_and_say_what_is_left():
    def variant(nfe, done, planned, minutes=10.0):
        return {"nfe_forward": nfe, "nfe_backward": nfe, "epochs_done": done, "epochs_planned": planned,
                "time_s": [60 * minutes] * done}

    from odecore import results
    from odecore.experiments import mnist

    config = {"variants": {v: results.as_dict(c) for v, c in mnist.NFE_ABLATIONS.items()}}
    flat = {"config": config, "metrics": {"variants": {"authors": variant([22.0] + [20.0] * 14, 15, 160),
                                                       "cpu": variant([22.0] + [20.0] * 14, 15, 15)}}}
    words = mnist_figures.nfe_ablation_words(flat)
    assert "No one of these differences makes it grow" in words and "145 of its 160 epochs left" in words
    # every setting the authors' schedule changes is named, read from the configs
    assert ("its momentum type (plain against Nesterov), its weight decay (none against 5 × 10⁻⁴), its learning-rate "
            "schedule (step decay against one-cycle) and its random crops (padding 4 against padding 2)") in words
    assert "about 24.2 h" in words and "Not yet trained: one-cycle without weight decay." in words
    assert not mnist_figures.nfe_grows(flat["metrics"]["variants"]["authors"]["nfe_forward"])
    grows = {"config": config, "metrics": {"variants": {**flat["metrics"]["variants"],
                                      "authors": variant([22.0, 20.0] + [20.0 + 0.5 * i for i in range(13)], 15, 160)}}}
    assert "The forward NFE grows under the authors' schedule" in mnist_figures.nfe_ablation_words(grows)
    short = {"config": config, "metrics": {"variants": {**flat["metrics"]["variants"],
                                                        "authors": variant([22.0, 20.0, 20.0], 3, 160)}}}
    assert "No one of these differences" not in mnist_figures.nfe_ablation_words(short)   # too few epochs to answer for ours
    assert "weight decay is not what" not in words                    # not trained yet
    partway = {"config": config, "metrics": {"variants": {**flat["metrics"]["variants"], "onecycle_nowd": variant([25.0] + [20.0] * 7, 8, 15)}}}
    assert "weight decay is not what" not in mnist_figures.nfe_ablation_words(partway)
    done = {"config": config, "metrics": {"variants": {**flat["metrics"]["variants"], "onecycle_nowd": variant([25.0] + [20.0] * 14, 15, 15)}}}
    assert "the weight decay is not what keeps our ODE-Net's NFE flat" in mnist_figures.nfe_ablation_words(done)
    nowd_grows = {"config": config, "metrics": {"variants": {**flat["metrics"]["variants"],
                                           "onecycle_nowd": variant([22.0, 20.0] + [20.0 + i for i in range(13)], 15, 15)}}}
    words = mnist_figures.nfe_ablation_words(nowd_grows)
    assert "grows under one-cycle without weight decay" in words and "weight decay is not what" not in words
    ours_grows = {"config": config, "metrics": {"variants": {**done["metrics"]["variants"],
                                           "cpu": variant([22.0, 20.0] + [20.0 + i for i in range(13)], 15, 15)}}}
    words = mnist_figures.nfe_ablation_words(ours_grows)
    assert "grows under our cpu schedule" in words and "weight decay is not what" not in words


def test_the_stacked_sentence_sets_stacked_runs_time_beside_a_lone_runs():
    cfg = {"nf_iterations": 1000, "nf_layers": [2, 32]}
    run = lambda size, hours, stacked=None: {"kind": "nf", "size": size, "iterations": 1000,  # noqa: E731
                                             "train_time_s": 3600 * hours, **({"stacked": stacked} if stacked else {})}
    density = {"config": cfg, "metrics": {"runs": [run(32, 1.0), run(32, 0.2, 2), run(32, 0.2, 2), run(2, 0.1, 3)]}}
    text = cnf_figures.stacked_sentence(density)
    assert text.startswith("The 4 NF runs at 1,000 iterations took 1.50 h of training in all.")
    assert "A run with K = 32 took 1 h trained alone, and its share of a stacked training 0.200 h." in text
    assert "K = 2" not in text                                        # no lone K = 2 run to set beside
    assert cnf_figures.stacked_sentence({"config": cfg, "metrics": {"runs": []}}) == ""


def test_the_longer_cnf_is_set_against_the_cnf_seeds_at_its_budget_and_the_nf_and_enters_the_explanations():
    from odecore import ledger

    cfg = {"targets": ["U1", "U2", "U3"], "nf_layers": [32], "cnf_units": [32], "seeds": [0, 1, 2],
           "nf_iterations": 500000, "short_nf_iterations": None, "cnf_iterations": 10000,
           "long_cnf": [["U1", 32, [0]], ["U2", 32, [0]], ["U3", 32, [0]]], "long_iterations": 30000}
    nf = {"U1": (0.003, 0.004, 0.005), "U2": (0.010, 0.012, 0.014), "U3": (0.008, 0.010, 0.012)}
    cnf = {"U1": (0.019, 0.020, 0.021), "U2": (0.029, 0.030, 0.031), "U3": (0.010, 0.011, 0.012)}
    longer = {"U1": (0.0045,), "U2": (0.021,), "U3": (0.0118,)}   # U1 catches up, U2 half the gap, U3 was within
    runs = [{"task": t, "kind": kind, "size": 32, "seed": s, "kl": kl, "iterations": n}
            for kind, n, kls in (("nf", 500000, nf), ("cnf", 10000, cnf), ("cnf", 30000, longer))
            for t, values in kls.items() for s, kl in enumerate(values)]
    density = {"experiment": "cnf_density", "profile": "full", "config": cfg, "metrics": {"runs": runs}}
    vs = cnf_figures.long_cnf_against_nf(density).set_index("target")
    assert list(vs.behind) == [True, True, False] and list(vs.matches) == [True, False, True]
    assert vs.loc["U2", "share"] == pytest.approx((0.030 - 0.021) / (0.030 - 0.012))
    assert np.isnan(vs.loc["U3", "share"])                                 # not behind at 10,000: no gap to close
    assert vs.loc["U1", "spread"] == pytest.approx(np.hypot(0.001, 0.001))  # one bar before and after: the seeds' sd
    text = cnf_figures.long_cnf_sentence(density)
    assert text.startswith("Trained for 30,000 iterations instead of 10,000 (one run each, seed 0), the CNF reaches: "
                           "on U1 KL 0.00450 against 0.0200 at 10,000 and the NF's 0.00400; on U2")
    assert "On U1 the longer training brings it from behind the NF to within the seeds' combined sd or better; on U2 " \
           "it comes closer but stays behind by more than the seeds' combined sd (closing 50% of the gap on U2)." in text
    assert "So the CNF's budget explains part of the gap, not all of it: the NF's 500,000 iterations buy a lower KL " \
           "than the CNF reaches in 30,000. What holds the CNF back on U2 is not yet tested" in text
    table = cnf_figures.long_cnf_table(density)
    within = "within the seeds' sd or ahead"
    assert list(table["CNF against NF"]) == [within, "behind", within]
    assert table["gap closed"][1] == "50%" and table["CNF 10,000 it."][0] == tables.mean_sd([0.019, 0.020, 0.021])
    row = ledger._cnf_budget(density)[0]
    assert row["verdict"] == ledger.matches_or_beats(2, 3) and row["evidence"] == "cnf.html#sec-cnf-budget"
    assert "U2: KL 0.0300 → 0.0210, the NF's 0.0120, 50% of the gap closed" in row["detail"]
    # every target that was behind caught up: the budget is the reason; none came closer: it is not
    def with_long(kl):
        return {**density, "metrics": {"runs": [r if r["iterations"] != 30000 else {**r, "kl": kl} for r in runs]}}
    assert "the CNF was behind for lack of iterations" in cnf_figures.long_cnf_sentence(with_long(0.001))
    worse = cnf_figures.long_cnf_sentence(with_long(0.5))
    assert worse.endswith("its budget is not why it is behind.") and "on U3, within the seeds' sd at its budget, it falls behind" in worse
    assert "On U1, U2 it stays behind, its KL no lower than at its budget beyond the seeds' sd" in worse
    flat_u2 = {**density, "metrics": {"runs": [{**r, "kl": 0.0295} if (r["iterations"], r["task"]) == (30000, "U2") else r
                                               for r in runs]}}
    assert "So the CNF's budget explains part of the gap, not all of it: on U2 more iterations do not help beyond the seeds' sd, and the " \
           "NF's 500,000 iterations buy a lower KL than the CNF reaches in 30,000." in cnf_figures.long_cnf_sentence(flat_u2)
    level = {**density, "metrics": {"runs": [r for r in runs if r["task"] == "U3"]},
             "config": {**cfg, "targets": ["U3"], "long_cnf": [["U3", 32, [0]]]}}
    assert cnf_figures.long_cnf_sentence(level).endswith("It was not behind the NF on these targets at its budget, so "
                                                         "they cannot tell why it is elsewhere.")
    # a longer CNF on several seeds: its mean against the NF, with its own sd, and the words say so
    seeds3 = {**density, "config": {**cfg, "long_cnf": [["U2", 32, [0, 1, 2]]]}, "metrics": {"runs": [
        r for r in runs if r["iterations"] != 30000] + [{"task": "U2", "kind": "cnf", "size": 32, "seed": s, "kl": kl,
                                                         "iterations": 30000} for s, kl in enumerate((0.010, 0.011, 0.012))]}}
    vs3 = cnf_figures.long_cnf_against_nf(seeds3)
    assert list(vs3.target) == ["U2"] and vs3.n[0] == 3 and vs3.after[0] == pytest.approx(0.011)
    assert vs3.after_sd[0] == pytest.approx(0.001) and vs3.matches[0]
    assert cnf_figures.long_cnf_sentence(seeds3).startswith(
        "Trained for 30,000 iterations instead of 10,000 (3 seeds), the CNF reaches: on U2 KL "
        "0.0110 ± 0.0010 against 0.0300 at 10,000")
    assert cnf_figures.long_cnf_table(seeds3)["CNF 30,000 it."][0] == "0.0110 ± 0.0010"
    assert "at 30,000, 3 seeds; the CNF matches" in ledger._cnf_budget(seeds3)[0]["detail"]
    # a longer run that blew up in training is named, with where and how far, before the verdict
    calm = [0.5, 0.05] + [0.012] * 8 + [0.011] * 10
    blown = [0.5, 0.05] + [0.012] * 8 + [0.0104, 0.02, 0.3, 0.9, 0.2, 0.1, 0.06, 0.05, 0.045, 0.04]
    nfe = [30.0] * 12 + [100.0, 500.0] + [200.0] * 6
    spiky = {**seeds3, "metrics": {"runs": [{**r, "loss": blown if r["seed"] == 1 else calm, "nfe": nfe}
                                            if r["iterations"] == 30000 else r for r in seeds3["metrics"]["runs"]]}}
    (row,) = cnf_figures.spikes(spiky, 30000).itertuples()
    assert (row.seed, row.iteration, row.peak, row.lowest, row.nfe_before, row.peak_nfe) == (1, 21000, 0.9, 0.0104, 30, 500)
    text = cnf_figures.long_cnf_sentence(spiky)
    assert ("One longer run blew up in training under the held learning rate (seed 1 on U2, near iteration 21,000: its "
            "training loss rose to 0.90 from 0.010 at its lowest before, its solves from 30 to as many as 500 evaluations, "
            "and by iteration 30,000 it had come back only to 0.040 (final KL 0.011)). Its final KL counts in the mean on "
            "U2 as trained;") in text
    assert text.index("(3 seeds), the CNF reaches") < text.index("blew up") < text.index("So the CNF was behind")
    assert cnf_figures.spikes(seeds3, 30000).empty and "blew up" not in cnf_figures.long_cnf_sentence(seeds3)
    early = [0.5, 9.0] + calm[2:]                                    # the first tenth may swing: not a spike
    assert cnf_figures.spikes({**spiky, "metrics": {"runs": [{**r, "loss": early} if "loss" in r else r
                                                            for r in spiky["metrics"]["runs"]]}}, 30000).empty
    unfinished = {**spiky, "metrics": {"runs": [r for r in spiky["metrics"]["runs"] if (r["iterations"], r["seed"]) != (30000, 2)]}}
    assert cnf_figures.spike_sentence(unfinished) == ""                # its target's mean is not on the page yet
    def with_loss(loss, nfe=nfe):
        return {**spiky, "metrics": {"runs": [{**r, "loss": loss, "nfe": nfe} if r.get("seed") == 1 and "loss" in r else r
                                              for r in spiky["metrics"]["runs"]]}}
    wobble = [0.5, 0.05] + [0.01] * 8 + [0.004, 0.03, 0.045] + [0.01] * 7   # ten times its lowest, yet below where it
    assert cnf_figures.spikes(with_loss(wobble), 30000).empty                # stood after its first tenth
    negative = [0.5, 0.05] + [0.01] * 8 + [-0.01, 0.3, 0.9] + [0.2] * 7     # a lowest below zero still lets one show
    assert cnf_figures.spikes(with_loss(negative), 30000).peak.tolist() == [0.9]
    healed = blown[:-1] + [0.0104]                                            # back where it was: "recovered"
    assert "it had recovered, to 0.010 (final KL" in cnf_figures.spike_sentence(with_loss(healed))
    uncounted = cnf_figures.spike_sentence(with_loss(blown, nfe=None))        # no evaluations recorded: no clause
    assert "at its lowest before, and by iteration 30,000 it had come back only to 0.040" in uncounted
    # within the NF's sd only because the longer seeds spread wider, the mean no closer: not a catch-up
    wide = {**density, "config": {**cfg, "long_cnf": [["U1", 32, [0, 1, 2]], ["U2", 32, [0]]]}, "metrics": {"runs": [
        r for r in runs if r["iterations"] != 30000 or r["task"] == "U2"] + [
        {"task": "U1", "kind": "cnf", "size": 32, "seed": s, "kl": kl, "iterations": 30000}
        for s, kl in enumerate((0.004, 0.05, 0.012))]}}
    text = cnf_figures.long_cnf_sentence(wide)
    assert ("On U1 its mean KL is no closer to the NF than at its budget, yet its seeds spread so widely (sd 0.0246 on "
            "U1) that the NF lies within their combined sd") in text
    assert "brings it from behind" not in text and "So the CNF was behind for lack of iterations" not in text
    assert "on U1 more iterations do not help beyond the seeds' sd" in text
    assert ledger._cnf_budget(wide)[0]["detail"].endswith(
        "the CNF matches or beats the NF on 1 of 2, on U1 only because its longer seeds spread wider, its mean no closer)")
    partial = {**seeds3, "metrics": {"runs": [r for r in seeds3["metrics"]["runs"]
                                              if (r["iterations"], r["seed"]) != (30000, 2)]}}
    assert cnf_figures.long_cnf_against_nf(partial).empty           # a target waits for all the seeds it names
    assert cnf_figures.long_cnf_where([["U1", 32, [0]], ["U2", 32, [0, 1, 2]]]) == "U1 (seed 0) and U2 (3 seeds)"
    assert cnf_figures.long_cnf_where([["U1", 32, [0]], ["U2", 32, [0]]]) == "U1 and U2 (one run each, seed 0)"
    assert cnf_figures.long_cnf_seeds([["U1", 32, [0]], ["U2", 32, [1]]]) == "seed 0 on U1 and seed 1 on U2"
    assert cnf_figures.long_cnf_seeds([["U1", 32, [0, 1, 2]], ["U2", 32, [0, 1, 2]]]) == "3 seeds each"
    # a profile whose longer CNF is no longer than its budget, or has not finished, has nothing to say
    assert cnf_figures.long_cnf_against_nf({**density, "config": {**cfg, "long_iterations": 10000}}).empty
    assert cnf_figures.long_cnf_sentence({**density, "metrics": {"runs": runs[:-3]}}) == ""
    assert ledger._cnf_budget({**density, "metrics": {"runs": runs[:-3]}}) == []


def test_the_cnf_variants_are_measured_from_their_seeds_as_trained_and_enter_the_explanations():
    from odecore import ledger

    cfg = {"targets": ["U2", "U3"], "nf_layers": [32], "cnf_units": [32], "seeds": [0, 1, 2], "hidden": 32,
           "nf_iterations": 500000, "cnf_iterations": 10000, "long_cnf": [], "long_iterations": 10000}
    nf = {"U2": (0.010, 0.012, 0.014), "U3": (0.008, 0.010, 0.012)}
    cnf = {"U2": (0.029, 0.030, 0.031), "U3": (0.020, 0.019, 0.021)}      # seed 0 as trained: 0.029 and 0.020
    runs = [{"task": t, "kind": kind, "size": 32, "seed": s, "kl": kl, "iterations": n}
            for kind, n, kls in (("nf", 500000, nf), ("cnf", 10000, cnf)) for t, values in kls.items()
            for s, kl in enumerate(values)]
    base = {"kind": "cnf", "size": 32, "iterations": 10000, "hidden": 32, "lr": 1e-3}
    variant = lambda t, name, kl, seed=0, **change: {**base, "task": t, "variant": name, "kl": kl,  # noqa: E731
                                                     "seed": seed, **change}
    wide = [variant("U2", "hidden 64", 0.0285, hidden=64), variant("U3", "hidden 64", 0.040, hidden=64)]
    cosine = [variant("U2", "cosine lr", kl, s, lr_schedule="cosine") for s, kl in enumerate((0.011, 0.012, 0.013))]
    cosine += [variant("U3", "cosine lr", 0.015, lr_schedule="cosine")]
    density = {"experiment": "cnf_density", "profile": "full", "config": cfg,
               "metrics": {"runs": runs, "cnf_variants": wide + cosine}}
    vs = cnf_figures.cnf_variants_against_nf(density).set_index(["variant", "target"])
    # measured from the same seeds as trained: seed 0 alone, or the mean of all three
    assert list(vs.before) == pytest.approx([0.029, 0.020, 0.030, 0.020]) and list(vs.n) == [1, 1, 3, 1]
    assert vs.loc[("cosine lr", "U2"), "after_sd"] == pytest.approx(0.001) and np.isnan(vs.loc[("hidden 64", "U2"), "after_sd"])
    assert list(vs.lower) == [False, False, True, True] and list(vs.higher) == [False, True, False, False]
    assert list(vs.matches) == [False, False, True, False]
    assert vs.loc[("cosine lr", "U3"), "share"] == pytest.approx((0.020 - 0.015) / (0.020 - 0.010))
    assert vs.loc[("hidden 64", "U2"), "words"] == "a hypernetwork of 64 hidden units instead of 32"
    text = cnf_figures.cnf_variants_sentence(density)
    assert text.startswith("Each variant is measured from the same seeds' runs as trained and set against the NF at "
                           "500,000 iterations (the mean over its 3 seeds); a difference counts where it exceeds the "
                           "combined sd of the two sides (the CNF seeds' sd standing in for a variant of one run). With "
                           "a hypernetwork of 64 hidden units instead of 32 (hidden 64), on U2 KL 0.0285 (seed 0) "
                           "against 0.0290 for seed 0 as trained and the NF's 0.0120; on U3")
    assert ": it raises the KL on U3 and leaves it within the seeds' sd on U2. With the learning rate annealed from " \
           "0.001 to 0 (cosine) instead of held (cosine lr), on U2 KL 0.0120 ± 0.0010 over 3 seeds against 0.0300 for " \
           "the same seeds as trained and the NF's 0.0120" in text
    assert ": it brings the CNF within the seeds' sd of the NF or ahead of it on U2 and lowers the KL on U3 (closing " \
           "50% of the gap on U3) without reaching the NF." in text
    assert text.endswith("So cosine lr explains part of the gap; on U3 the CNF stays behind the NF for a reason not "
                         "among the settings tested here (untested: the integration time, the form of the "
                         "hypernetwork, the solver's tolerance).")
    table = cnf_figures.cnf_variants_table(density)
    assert list(table.columns) == ["KL of", "U2", "U3"]
    assert list(table["KL of"]) == ["CNF as trained", "seed 0 as trained", "hidden 64", "cosine lr", "NF 500,000 it."]
    rows = table.set_index("KL of")
    assert list(rows.loc["cosine lr"]) == ["0.012 ± 0.001", "0.015"]                 # two significant digits
    assert list(rows.loc["seed 0 as trained"]) == ["0.029", "0.020"]
    rows = ledger._cnf_variants(density)
    assert [r["verdict"] for r in rows] == ["not reproduced", ledger.matches_or_beats(1, 2)]
    assert rows[1]["evidence"] == "cnf.html#sec-cnf-variants"
    assert "U3: KL 0.0200 → 0.0150, the NF's 0.0100, 50% of the gap closed" in rows[1]["detail"]
    # both targets reached: our settings were the reason; no variant helps: neither is
    fixed = {**density, "metrics": {"runs": runs, "cnf_variants": wide + [{**c, "kl": 0.009} for c in cosine]}}
    assert cnf_figures.cnf_variants_sentence(fixed).endswith("So on U2 and U3 our settings, not the CNF, kept it behind "
                                                             "the NF: cosine lr closes the gap.")
    assert "So neither setting is what holds the CNF back on U2 and U3" in cnf_figures.cnf_variants_sentence(
        {**density, "metrics": {"runs": runs, "cnf_variants": wide + [{**c, "kl": 0.0295} for c in cosine]}})
    assert "So the setting tested is not what holds the CNF back on U2 and U3" in cnf_figures.cnf_variants_sentence(
        {**density, "metrics": {"runs": runs, "cnf_variants": wide}})
    # a CNF that already matched the NF: the variants cannot say what holds it back
    level = {**density, "metrics": {"runs": [{**r, "kl": 0.0105} if r["kind"] == "cnf" else r for r in runs],
                                    "cnf_variants": cosine}}
    assert cnf_figures.cnf_variants_sentence(level).endswith("The CNF as trained was not behind the NF on these "
                                                             "targets, so they cannot tell what holds it back.")
    assert cnf_figures.cnf_variants_sentence({**density, "metrics": {"runs": runs}}) == ""
    assert ledger._cnf_variants({**density, "metrics": {"runs": runs}}) == []
    # a target the longer CNF reached: the budget, not an untested setting, is what is left on it
    longer = {**density, "config": {**cfg, "long_cnf": [["U3", 32, [0]]], "long_iterations": 30000},
              "metrics": {"runs": runs + [{"task": "U3", "kind": "cnf", "size": 32, "seed": 0, "kl": 0.009,
                                           "iterations": 30000}], "cnf_variants": wide + cosine}}
    assert cnf_figures.cnf_variants_sentence(longer).endswith(
        "So cosine lr explains part of the gap; on U3 the CNF reaches the NF with more iterations instead (the CNF's "
        "budget, above).")
    # ... but not one its longer seeds reach only by spreading wider, their mean no closer: that is not the budget
    wide_seeds = {**longer, "config": {**cfg, "long_cnf": [["U3", 32, [0, 1, 2]]], "long_iterations": 30000},
                  "metrics": {**longer["metrics"], "runs": runs + [
                      {"task": "U3", "kind": "cnf", "size": 32, "seed": s, "kl": kl, "iterations": 30000}
                      for s, kl in enumerate((0.001, 0.050, 0.0105))]}}
    assert list(cnf_figures.spread_only(cnf_figures.long_cnf_against_nf(wide_seeds)).target) == ["U3"]
    assert cnf_figures.cnf_variants_sentence(wide_seeds).endswith(
        "So cosine lr explains part of the gap; on U3 the CNF stays behind the NF for a reason not among the settings "
        "tested here (untested: the integration time, the form of the hypernetwork, the solver's tolerance).")
    # a variant that leaves the CNF behind where as trained it matched says so
    matched_u3 = [{**r, "kl": r["kl"] - 0.009} if (r["kind"], r["task"]) == ("cnf", "U3") else r for r in runs]
    worse = {**density, "metrics": {"runs": matched_u3, "cnf_variants": [variant("U3", "cosine lr", 0.05)]}}
    assert "puts the CNF behind the NF on U3, where as trained it matched" in cnf_figures.cnf_variants_sentence(worse)
    # a KL that moved less than the sd and yet counts as behind: one phrase for both, not two that read as a contradiction
    wide_u3 = [{**r, "kl": (0.001, 0.011, 0.031)[r["seed"]]} if (r["kind"], r["task"]) == ("cnf", "U3") else r
               for r in runs]                                          # matches the NF's 0.010 within its wide sd
    drift = {**density, "metrics": {"runs": wide_u3, "cnf_variants": [variant("U3", "cosine lr", kl, s) for s, kl
                                                                      in enumerate((0.024, 0.025, 0.026))]}}
    text = cnf_figures.cnf_variants_sentence(drift)
    assert "leaves the KL within the seeds' sd of the runs as trained on U3 but behind the NF's beyond the combined sd" in text
    assert "leaves it within the seeds' sd on U3" not in text and "puts the CNF behind" not in text
    # the claim's verdict under a variant on every target, beside the verdict as trained (0 of 2 here)
    claim = cnf_figures.cnf_variants_claim(density)
    assert claim.startswith("With a hypernetwork of 64 hidden units instead of 32 (hidden 64) on all 2 targets, the "
                            "CNF with M = 32 matches or beats the NF with K = 32 on 0 of 2, against 0 of 2 as trained: "
                            "the claim does not hold under that setting (behind on U2 and U3). With the learning rate "
                            "annealed from 0.001 to 0 (cosine) instead of held (cosine lr) on all 2 targets, the CNF "
                            "with M = 32 matches or beats the NF with K = 32 on 1 of 2, against 0 of 2 as trained: the "
                            "claim does not hold under that setting (behind on U3). The settings were chosen after seeing the "
                            "runs as trained, so these verdicts stand beside")
    assert "the claim holds under that setting." in cnf_figures.cnf_variants_claim(fixed)
    assert cnf_figures.cnf_variants_claim({**density, "metrics": {"runs": runs, "cnf_variants": wide[:1]}}).startswith(
        "These runs look for the reason")


def test_figure4s_solver_change_names_the_settings_that_moved_beyond_the_seeds_sd():
    from odecore.figures import cnf as cnf_figures

    def run(kind, task, size, seed, kl, iterations=100, **extra):
        return {"kind": kind, "task": task, "size": size, "seed": seed, "iterations": iterations, "kl": kl, **extra}

    cfg = {"targets": ["U1", "U2"], "cnf_units": [4], "nf_layers": [4], "cnf_iterations": 100, "nf_iterations": 100}
    nfs = [run("nf", t, 4, s, 0.010 + 0.001 * s) for t in ("U1", "U2") for s in range(3)]
    old = {"config": {**cfg, "method": "dopri5"},
           "metrics": {"runs": nfs + [run("cnf", t, 4, s, 0.011 + 0.001 * s) for t in ("U1", "U2") for s in range(3)],
                       "cnf_variants": [run("cnf", "U1", 4, s, 0.02, variant="cosine lr") for s in range(3)]}}
    same = {**old, "config": {**cfg, "method": "lean_dopri5"}}
    assert cnf_figures.density_solver_change(old, same) == (
        "The earlier training on dopri5 had 3 of this record's CNF settings (target, M, iterations, variant); on each "
        "with several seeds on both sides the mean KL over seeds moved by no more than the two trainings' combined sd. "
        "The CNF matched or beat the NF on 2 of 2 targets then and on 2 of 2 now.")
    one_seed = {**same, "metrics": {**old["metrics"], "cnf_variants": [run("cnf", "U1", 4, 0, 0.03, variant="cosine lr")]}}
    assert ("; with one seed on a side, U1, M = 4, 100 it. (cosine lr), 0.0200 then and 0.0300 now."
            in cnf_figures.density_solver_change(old, one_seed))   # no sd of 0 to judge it by
    worse = {**same, "metrics": {**old["metrics"], "runs": nfs + [run("cnf", t, 4, s, (0.011 if t == "U1" else 0.05)
                                                                       + 0.001 * s) for t in ("U1", "U2") for s in range(3)]}}
    text = cnf_figures.density_solver_change(old, worse)
    assert ("moved by more than the two trainings' combined sd on 1 of the 3 with several seeds on both sides "
            "(U2, M = 4, 100 it., from 0.0120 to 0.0510, combined sd") in text
    assert text.endswith("on 2 of 2 targets then and on 1 of 2 now.")
    assert cnf_figures.density_solver_change(old, {**same, "metrics": {"runs": nfs}}) == ""
