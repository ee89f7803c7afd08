"""The latent ODE experiment in its smoke profile: every line of training and evaluation runs."""
from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from odecore import paper, results, settings, tables
from odecore.experiments import latent_ode as exp
from odecore.figures import latent_ode as figures



@pytest.fixture
def dirs(tmp_path, monkeypatch):
    for name in ("RESULTS", "CHECKPOINT", "SCRATCH"):
        monkeypatch.setenv(f"ODECORE_{name}_DIR", str(tmp_path / name.lower()))
    monkeypatch.setenv("ODECORE_RERUN", "0")
    return tmp_path


def test_smoke_run_writes_records_checkpoints_and_scoreboard(dirs):
    rec, pois, samp, cover, dens = exp.run("smoke", progress=False)
    cfg = exp.PROFILES["smoke"]
    assert {r["sampling"] for r in samp["metrics"]["runs"]} == {"irregular", "regular"}
    irregular = {(r["model"], r["n"]): r["rmse"] for r in samp["metrics"]["runs"] if r["sampling"] == "irregular"}
    shared = {(r["model"], r["n"]): r["rmse"] for r in rec["metrics"]["runs"] if (r["model"], r["n"]) in irregular}
    assert irregular == shared                                   # the Table 2 sub-runs, not trained again
    assert exp.scoreboard(samp) == [] and exp.scoreboard(cover) == [] and exp.scoreboard(dens) == []
    table2 = {(r["n"], r["seed"]): r["rmse"] for r in rec["metrics"]["runs"] if r["model"] == "latent_ode"}
    headline = {(r["n"], r["seed"]): r["rmse_own_test"] for r in dens["metrics"]["runs"] if r["variant"] == "headline"}
    shared = set(headline) & set(table2)                                   # Table 2's sub-runs, read from its record
    assert shared and all(headline[k] == table2[k] for k in shared)
    (first,) = cover["metrics"]["runs"]                          # the first design's committed n = 30 model
    assert len(first["per_spiral_beyond"]) == len(first["theta0"]) == exp.COVERAGE_PROFILES["smoke"].n_eval
    assert first["coverage"]["covered"] < 0.9                    # that design left extrapolations uncovered
    assert rec["metrics"]["coverage"]["30"]["covered"] == 1.0    # this one covers every one
    assert rec["experiment"] == "latent_ode" and rec["profile"] == "smoke"
    runs = rec["metrics"]["runs"]
    assert len(runs) == len(cfg.seeds) * len(cfg.obs_counts) * 2
    for r in runs:
        assert len(r["per_spiral_beyond"]) == cfg.n_test
        assert r["independent"]["data_seed"] != cfg.data_seed and r["independent"]["rmse"] > 0
        assert (r["model"] == "rnn") == ("rmse_naive" in r)
        assert r["rmse"] > 0 and r["iterations"] == cfg.num_epochs * -(-(cfg.n_spirals - cfg.n_test) // cfg.batch_size)
        assert exp.checkpoint_path("smoke", r["model"], r["n"], r["seed"]).exists()
    t2 = rec["metrics"]["table2"]
    assert t2["latent_ode"]["30"]["paper"] == paper.TABLE2["latent_ode"][30]
    rows = exp.scoreboard(rec)
    assert sum(r["item"] == "Table 2" for r in rows) == 6
    assert {r["item"] for r in rows} >= {"Figure 6", "Figure 8", "Figure 9", "Figure 10"}
    assert exp.scoreboard(pois)[0]["item"] == "Figure 7"
    assert pois["metrics"]["events_per_sequence"] > 0
    # a matching result is loaded, not retrained
    again = exp.run_spirals("smoke", progress=False)
    assert again["date"] == rec["date"] and again["config_hash"] == rec["config_hash"]
    # the run stored what Figures 7-10 draw, for this record; the figures draw it
    arrays, p_arrays = results.load_arrays(rec), results.load_arrays(pois)
    assert arrays["fig9/paths"].shape == (cfg.latent_dim + 1, exp.FIG9_STEPS, cfg.n_times + cfg.n_extrap, 2)
    assert [int(n) for n in arrays["counts"]] == sorted(cfg.obs_counts) and np.isfinite(arrays["fig8/latent"]).all()
    assert p_arrays["lam"].shape == (exp.FIG7_SEQUENCES, exp.FIG7_TIMES) and (p_arrays["lam"] > 0).all()
    for fig in (figures.fig8(rec, arrays), figures.fig9(rec, arrays), figures.fig10(rec, arrays),
                figures.fig7(pois, p_arrays)):
        assert fig.axes


def test_finished_subrun_is_kept(dirs):
    cfg = exp.PROFILES["smoke"]
    first = exp.train_one("smoke", cfg, "rnn", 30, 0, progress=False)
    done = exp._scratch("latent_ode", "smoke", cfg) / "rnn-n30-seed0.json"
    assert json.loads(done.read_text())["rmse"] == first["rmse"]
    second = exp.train_one("smoke", cfg, "rnn", 30, 0, progress=False)
    assert second == first
    assert first["provenance"]["device"] == "cpu" and first["provenance"]["wall_time_s"] > 0   # its own provenance


def test_rerun_retrains_a_finished_subrun_once(dirs, monkeypatch):
    """--rerun trains a finished sub-run again from its start; a second ask in the same run is served
    what that retraining stored (Table 2 and the sampling comparison share sub-runs)."""
    cfg = exp.PROFILES["smoke"]
    fits = []
    real_fit = exp.train.fit
    monkeypatch.setattr(exp.train, "fit", lambda *a, **k: fits.append(k["checkpoint"]) or real_fit(*a, **k))
    first = exp.train_one("smoke", cfg, "rnn", 30, 0, progress=False)
    exp.train_one("smoke", cfg, "rnn", 30, 0, progress=False)
    assert len(fits) == 1                                          # stored: not trained again
    with settings.use(rerun=True):
        again = exp.train_one("smoke", cfg, "rnn", 30, 0, progress=False)
        assert len(fits) == 2 and again["provenance"]["date"] >= first["provenance"]["date"]
        assert again["rmse"] == first["rmse"]                      # from its start, seeded: the same numbers
        exp.train_one("smoke", cfg, "rnn", 30, 0, progress=False)
        assert len(fits) == 2


def test_resume_from_checkpoint_matches_uninterrupted(dirs):
    """Train 1 epoch, then resume to 2: the same weights as training 2 epochs at once."""
    import dataclasses

    cfg2 = exp.PROFILES["smoke"]
    cfg1 = dataclasses.replace(cfg2, num_epochs=1)
    exp.train_one("smoke", cfg2, "latent_ode", 30, 0, progress=False)
    straight = torch.load(exp.checkpoint_path("smoke", "latent_ode", 30, 0), weights_only=False)["model"]
    # an interrupted run: the checkpoint after epoch 1, under the 2-epoch config's name
    exp.train_one("smoke", cfg1, "latent_ode", 30, 0, progress=False)
    src = exp._scratch("latent_ode", "smoke", cfg1) / "latent_ode-n30-seed0.pt"
    dst = exp._scratch("latent_ode", "smoke", cfg2) / "latent_ode-n30-seed0.pt"
    (exp._scratch("latent_ode", "smoke", cfg2) / "latent_ode-n30-seed0.json").unlink()
    dst.write_bytes(src.read_bytes())
    exp.train_one("smoke", cfg2, "latent_ode", 30, 0, progress=False)
    resumed = torch.load(exp.checkpoint_path("smoke", "latent_ode", 30, 0), weights_only=False)["model"]
    for k in straight:
        assert torch.allclose(straight[k], resumed[k], atol=1e-6), k


def test_events_are_seeded_and_inside_the_window():
    cfg = exp.POISSON_PROFILES["smoke"]
    a, b = exp.make_events(cfg), exp.make_events(cfg)
    assert torch.equal(a.times, b.times)
    real = a.times[a.mask.bool()]
    assert real.min() >= 0 and real.max() <= cfg.t_end
    assert set(a.train.tolist()).isdisjoint(a.test.tolist())


def test_rmse_protocol():
    truth = torch.zeros(3, 200, 2)
    pred = truth.clone()
    pred[:, 100:] = 1.0          # wrong only beyond the window
    pred[0, 100:] = 3.0          # and one spiral worse
    out = exp.rmse_split(pred, truth, 100)
    assert out["rmse_window"] == 0
    assert out["rmse"] == pytest.approx(((9 + 1 + 1) / 3) ** 0.5)            # pooled over spirals, times, coordinates
    assert out["rmse_beyond_median"] == 1 and out["per_spiral_beyond"] == [3, 1, 1]
    assert out["rmse_straddle"] == pytest.approx(((9 + 1 + 1) / 3 / 2) ** 0.5)  # half of t_50..t_149 is beyond


def test_full_profile_covers_the_horizon_at_the_papers_settings():
    """Every test extrapolation lies inside the angles the training observations cover, at every n."""
    from odecore.datasets import spirals

    cfg = exp.PROFILES["full"]
    assert cfg.n_extrap == 100 and len(cfg.seeds) >= 3 and cfg.design == "covered"
    d = exp.data(cfg)
    for n in cfg.obs_counts:
        c = spirals.coverage(d, spirals.observe(d, n, cfg.data_seed)[2])
        assert c["covered"] == 1.0 and c["test_max"] <= c["train_max"] and c["edge"] >= float(d.theta0[d.test].max())
    first = exp.data(dataclasses.replace(cfg, design="uniform"))
    c = spirals.coverage(first, spirals.observe(first, 30, cfg.data_seed)[2])
    assert c["covered"] < 0.8                                    # the first design did not
    assert torch.equal(first.theta0[first.test], d.theta0[d.test])  # same test spirals, only training widened


def test_results_label_names_profile(dirs):
    rec = exp.run_poisson("smoke", progress=False)
    assert "profile smoke" in results.label(rec)


def test_poisson_trains_one_model_per_seed_and_gives_their_mean_and_sd(dirs, monkeypatch):
    import dataclasses

    cfg = dataclasses.replace(exp.POISSON_PROFILES["smoke"], seeds=(0, 1))
    monkeypatch.setitem(exp.POISSON_PROFILES, "smoke", cfg)
    m = exp.run_poisson("smoke", progress=False)["metrics"]
    assert [r["seed"] for r in m["runs"]] == [0, 1] and all(exp.poisson_weights("smoke", s).exists() for s in (0, 1))
    lls = [r["test_loglik"] for r in m["runs"]]
    assert lls[0] != lls[1]                                           # two trainings, not one loaded twice
    assert m["test_loglik"] == pytest.approx(np.mean(lls)) and m["test_loglik_sd"] == pytest.approx(np.std(lls, ddof=1))
    assert m["true_loglik"] == m["runs"][1]["true_loglik"]            # the data's own numbers, the same for every seed
    assert "mean of 2 seeds" in exp.scoreboard(results.load("latent_ode_poisson", "smoke"))[0]["quantity"]
    # adding a seed keeps the finished ones: only the new seed trains
    monkeypatch.setitem(exp.POISSON_PROFILES, "smoke", dataclasses.replace(cfg, seeds=(0, 1, 2)))
    rec = exp.run_poisson("smoke", progress=False)
    assert rec["subruns"]["count"] == 3 and rec["subruns"]["trained_now"] == 1
    assert [r["test_loglik"] for r in rec["metrics"]["runs"][:2]] == lls


def test_subrun_key_ignores_the_seed_list(dirs):
    """Adding seeds to a profile keeps the finished sub-runs; changing training settings does not."""
    import dataclasses

    cfg = exp.PROFILES["smoke"]
    more = dataclasses.replace(cfg, seeds=(0, 1, 2), obs_counts=(30,))
    other = dataclasses.replace(cfg, lr=0.02)
    assert exp._scratch("latent_ode", "smoke", cfg) == exp._scratch("latent_ode", "smoke", more)
    assert exp._scratch("latent_ode", "smoke", cfg) != exp._scratch("latent_ode", "smoke", other)


# --------------------------------------------------------------------------- Table 2's gap: data density

def _lr_per_iteration(cfg) -> list[float]:
    """The learning rate of every iteration as _fit schedules it (ExponentialLR stepped once per epoch)."""
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, cfg.lr_decay)
    out = []
    for _ in range(cfg.num_epochs):
        out += [opt.param_groups[0]["lr"]] * exp.iterations_per_epoch(cfg)
        opt.step()
        sched.step()
    return out


def test_density_variants_restore_the_first_designs_density_or_only_its_iterations():
    cfg = exp.DENSITY_PROFILES["full"]
    v = exp.density_variants(cfg)
    head, dense, longer = v["headline"], v["dense"], v["longer"]
    assert head == cfg and cfg.obs_counts == (30, 50) and cfg.seeds == (0, 1, 2)
    n_train = cfg.n_spirals - cfg.n_test
    first_per_radian = n_train / (cfg.theta0_range[1] - cfg.theta0_range[0])      # 800 over 2 pi
    dense_train = dense.n_spirals - dense.n_test
    assert abs(dense_train - first_per_radian * exp.start_width(dense)) <= 1 and dense_train % 2 == 0
    assert dense_train > n_train and dense.n_test == cfg.n_test
    # fast changes only the solver; from it, dense changes only the data, longer only the iterations (and
    # the decay that keeps the lr curve)
    fast = v["fast"]
    assert fast.method == exp.FAST_METHOD != cfg.method and dataclasses.replace(fast, method=cfg.method) == cfg
    assert dataclasses.replace(dense, n_spirals=cfg.n_spirals) == fast
    assert dataclasses.replace(longer, num_epochs=cfg.num_epochs, lr_decay=cfg.lr_decay) == fast
    assert dense.num_epochs == cfg.num_epochs
    iters = {k: c.num_epochs * exp.iterations_per_epoch(c) for k, c in v.items()}
    assert iters["dense"] > iters["headline"]
    assert 0 <= iters["longer"] - iters["dense"] < exp.iterations_per_epoch(cfg)   # whole epochs, rounded up
    lr_dense, lr_longer = _lr_per_iteration(dense), _lr_per_iteration(longer)
    both = math.lcm(exp.iterations_per_epoch(dense), exp.iterations_per_epoch(longer))
    for k in range(0, iters["dense"], both):     # where both start an epoch: the same learning rate
        assert lr_longer[k] == pytest.approx(lr_dense[k], rel=1e-9), k
    for k in range(iters["dense"]):              # in between, within one of dense's epochs of decay
        assert dense.lr_decay <= lr_longer[k] / lr_dense[k] <= 1 / dense.lr_decay, k
    design = exp.density_design(cfg)
    assert design["dense"]["per_radian"] == pytest.approx(first_per_radian, abs=1 / exp.start_width(cfg))
    assert {k: d["iterations"] for k, d in design.items()} == iters


def test_density_smoke_record_scores_every_training_on_table2s_test_spirals(dirs, monkeypatch):
    cfg = exp.DENSITY_PROFILES["smoke"]
    rec = exp.run_density("smoke", progress=False)
    runs = rec["metrics"]["runs"]
    assert rec["experiment"] == "latent_ode_density"
    assert sorted((r["variant"], r["n"], r["seed"]) for r in runs) == sorted(
        (v, n, s) for v in exp.DENSITY_VARIANTS for n in cfg.obs_counts for s in cfg.seeds)
    design = rec["metrics"]["design"]
    for r in runs:
        assert r["iterations"] == design[r["variant"]]["iterations"] and r.get("train_time_s", r.get("table2_train_time_s")) > 0
        # Table 2's own runs are that record's compute, not this one's
        assert ("train_time_s" in r) == (r["variant"] != "headline")
        assert r["rmse"] > 0 and r["rmse_independent"] > 0 and r["rmse_independent"] != r["rmse"]
        if r["variant"] == "dense":       # its own split is another set of spirals
            assert r["rmse_own_test"] != r["rmse"]
        else:                             # Table 2's data: its own test split is Table 2's
            assert r["rmse_own_test"] == pytest.approx(r["rmse"], rel=1e-5)
    summary = rec["metrics"]["summary"]
    assert set(summary) == set(exp.DENSITY_VARIANTS)
    for cells in summary.values():
        for n, c in cells.items():
            assert len(c["values"]) == len(cfg.seeds) and c["paper"] == paper.TABLE2["latent_ode"][int(n)]
    # the headline is Table 2's sub-run, loaded from train_one's cache, and the record is loaded, not recomputed
    monkeypatch.setattr(exp.train, "fit", lambda *a, **k: pytest.fail("trained again"))
    for r in runs:
        if r["variant"] == "headline":
            assert exp.train_one("smoke", exp.PROFILES["smoke"], "latent_ode", r["n"], r["seed"])["rmse"] == r["rmse_own_test"]
    assert exp.run_density("smoke", progress=False)["date"] == rec["date"]
    assert "not yet run" not in figures.density_frame(design, cfg.obs_counts, summary).to_string()
    assert figures.density_sentence(summary).startswith("At n = 30")


def test_full_density_headline_is_read_from_table2s_first_dopri5_record(monkeypatch):
    monkeypatch.delenv("ODECORE_RESULTS_DIR")      # the committed data/results/ and data/checkpoints/
    monkeypatch.delenv("ODECORE_CHECKPOINT_DIR")
    first = results.superseded("latent_ode", "full")
    if not first:
        pytest.skip("no committed first Table 2 record")
    monkeypatch.setattr(exp, "train_one", lambda *a, **k: pytest.fail("would train a Table 2 sub-run"))
    cfg = exp.DENSITY_PROFILES["full"]
    # the headline is the training on dopri5, Table 2's first; Table 2 itself now runs on the fast path
    assert first[0]["config"]["method"] == cfg.method == "dopri5" != exp.PROFILES["full"].method
    stored = {(r["n"], r["seed"]): r["rmse"] for r in first[0]["metrics"]["runs"] if r["model"] == "latent_ode"}
    for n in cfg.obs_counts:
        for seed in cfg.seeds:
            sub, name = exp.table2_subrun("full", cfg, n, seed)
            assert sub["rmse"] == stored[(n, seed)] and name == "latent_ode_density_headline"
            assert exp.checkpoint_path("full", "latent_ode", n, seed, name).exists()


def _cell(values, paper_value):
    values = [float(v) for v in values]
    return {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1)), "values": values,
            "independent": 0.2, "independent_std": 0.01, "independent_values": [0.19, 0.2, 0.21],
            "paper": paper_value, "above_paper_pct": 100 * (np.mean(values) - paper_value) / paper_value}


def test_density_sentence_says_which_training_closes_the_gap():
    p30, p50 = paper.TABLE2["latent_ode"][30], paper.TABLE2["latent_ode"][50]
    summary = {"headline": {"30": _cell([0.19, 0.20, 0.196], p30), "50": _cell([0.18, 0.195, 0.195], p50)},
               "dense": {"30": _cell([0.17, 0.172, 0.171], p30), "50": _cell([0.188, 0.19, 0.17], p50)},
               "longer": {"30": _cell([0.193, 0.2, 0.19], p30), "50": _cell([0.2, 0.22, 0.21], p50)}}
    v = figures.density_verdicts(summary)
    assert v["30"]["variants"]["dense"]["closes"] and not v["30"]["variants"]["longer"]["closes"]
    assert v["30"]["variants"]["dense"]["share"] == pytest.approx((0.586 - 0.513) / 3 / (0.586 / 3 - p30))
    assert not v["50"]["variants"]["dense"]["closes"]           # a drop of 0.007 inside its sd of 0.011
    assert v["50"]["variants"]["longer"]["widens"]
    # at equal iterations dense is below longer by more than the larger sd at both n: the data helps there
    assert v["30"]["equal_iterations"]["says"] == v["50"]["equal_iterations"]["says"] == "lower"
    text = figures.density_sentence(summary)
    at30, at50 = text.split("At n = 50")
    assert "dense (as many spirals per radian as the first design had" in at30 and ") closes" in at30
    assert "longer (Table 2's spirals for as many iterations as dense) does not close it" in at30
    assert "does not close it: its RMSE is higher" in at50
    assert "at equal iterations, more spirals per radian lower the RMSE further at every n" in text
    for bad in ("nan", "None", "[", "{", "headline", "fast"):
        assert bad not in text
    assert "closes all of it" in figures.density_sentence(
        {**summary, "dense": {**summary["dense"], "30": _cell([0.15, 0.151, 0.152], p30)}})
    frame = figures.density_frame({"headline": {"n_train": 800, "iterations": 2400}}, (30,))
    assert list(frame["RMSE"]) == ["not yet run"] and len(frame.columns) <= 6
    assert list(frame["training"]) == ["Table 2 (dopri5): 800 spirals"]     # the record's key is not a reader's word
    # with Table 2's training on lean_dopri5 stored, dense and longer are measured against it
    fast = {**summary, "fast": {"30": _cell([0.192, 0.196, 0.199], p30), "50": _cell([0.25, 0.26, 0.255], p50)}}
    v = figures.density_verdicts(fast)
    assert v["30"]["baseline"] == "fast" and v["30"]["solver_agrees"] and not v["50"]["solver_agrees"]
    assert v["30"]["variants"]["dense"]["drop"] == pytest.approx((0.587 - 0.513) / 3)
    assert figures.density_solver_clause(fast) == ("the two differ only in the solver and agree to within their "
                                                   "seeds' spread at n = 30, not at n = 50.")
    assert figures.density_solver_clause(summary) == ""
    text = figures.density_sentence(fast)
    assert text.startswith(f"At n = 30 Table 2's latent ODE reads {tables.mean_sd([0.192, 0.196, 0.199])}")


def _tie_summary(dense50):
    """Longer closes the gap at both n; dense trains for as many iterations and reads as longer does (or higher)."""
    p30, p50 = paper.TABLE2["latent_ode"][30], paper.TABLE2["latent_ode"][50]
    with_its = lambda c, it: {**c, "iterations": it}  # noqa: E731
    return {"headline": {"30": with_its(_cell([0.190, 0.200, 0.196], p30), 2400),
                         "50": with_its(_cell([0.185, 0.195, 0.192], p50), 2400)},
            "fast": {"30": with_its(_cell([0.190, 0.200, 0.196], p30), 2400),
                     "50": with_its(_cell([0.185, 0.195, 0.192], p50), 2400)},
            "dense": {"30": with_its(_cell([0.162, 0.171, 0.166], p30), 4200), "50": with_its(_cell(dense50, p50), 4200)},
            "longer": {"30": with_its(_cell([0.160, 0.168, 0.163], p30), 4208),
                       "50": with_its(_cell([0.140, 0.148, 0.144], p50), 4208)}}


def test_density_conclusion_credits_dense_only_beyond_longer_at_equal_iterations():
    """Dense closes most of the gap at n = 30, but so does longer at as many iterations: that is the length, and
    the conclusion must not say the data's density closes it, nor that dense does not close it."""
    summary = _tie_summary([0.150, 0.146, 0.152])
    v = figures.density_verdicts(summary)
    assert v["30"]["variants"]["dense"]["closes"] and v["30"]["equal_iterations"]["says"] == "same"
    conclusion = figures.density_conclusion(summary)
    assert conclusion.startswith("The gap is the training's length, not the data's density.")
    assert "dense reads no lower than longer at any n" in conclusion
    assert "What dense gains over Table 2's training at every n comes with its extra iterations (4,200 against 2,400)" \
        in conclusion
    for wrong in ("density closes", "do not close", "does not close"):
        assert wrong not in conclusion
    text = figures.density_sentence(summary)
    assert text.endswith("So the gap is the training's length, not the data's density. " + conclusion.split(". ", 1)[1])
    assert "At equal iterations dense reads above longer by less than their seeds' sd." in text
    assert "for 4,200 iterations against Table 2's 2,400" in text and "Table 2's spirals for 4,208 iterations" in text
    assert "far from its others" not in text                      # every seed within the rule
    # dense lower than longer at equal iterations at every n: the data helps, and longer closing it too is both
    helps = {**summary, "dense": {n: {**c, **_cell([x - 0.03 for x in summary["longer"][n]["values"]], c["paper"])}
                                  for n, c in summary["dense"].items()}}
    assert figures.density_conclusion(helps).startswith("Both the data's density and the training's length matter.")


def test_a_seed_far_from_its_others_is_named():
    summary = _tie_summary([0.233, 0.153, 0.154])                  # one stray seed of dense at n = 50
    typical = figures.typical_spread(summary)
    assert typical == pytest.approx(np.median([c["std"] for cells in summary.values() for c in cells.values()]))
    v = figures.density_verdicts(summary)
    assert set(v["50"]["outliers"]) == {"dense"} and not v["30"]["outliers"]
    odd = v["50"]["outliers"]["dense"]
    assert odd["seed"] == 0 and odd["value"] == 0.233 and odd["others"] == [0.153, 0.154]
    text = figures.density_sentence(summary)
    assert ("One seed of dense is far from its others: seed 0 reads 0.233 against 0.153 and 0.154 (without it, "
            "dense reads 0.153, against longer's 0.144).") in text
    # the seed named is the record's, and the rule: more than OUTLIER_K typical sds from the others' mean
    assert figures.seed_outlier([0.2, 0.2 + 2.9 * typical, 0.2], [4, 5, 6], typical) is None
    assert figures.seed_outlier([0.2, 0.2 + 3.1 * typical, 0.2], [4, 5, 6], typical)["seed"] == 5
    # a seed one ordinary sd away from two that agree closely is not an outlier (the others' own sd would say so)
    assert figures.seed_outlier([0.187, 0.1993, 0.1986], [0, 1, 2], 0.0075) is None
    assert figures.seed_outlier([0.1, 0.3], [0, 1], 0.001) is None  # with two seeds neither is the odd one


def test_committed_density_record_reads_as_its_seeds_show():
    committed = results.ROOT / "data" / "results" / "latent_ode_density-full.json"
    if not committed.exists():
        pytest.skip("no committed full density record")
    rec = json.loads(committed.read_text())
    summary = rec["metrics"]["summary"]
    text = figures.density_sentence(summary)
    for n, v in figures.density_verdicts(summary).items():
        for variant, odd in v["outliers"].items():   # every seed the rule finds is named, with its value
            assert f"seed {odd['seed']} reads {tables.number(odd['value'])}" in text
    assert "headline" not in text and "fast solver" not in text
    frame = figures.density_frame(rec["metrics"]["design"], rec["config"]["obs_counts"], summary)
    assert not frame["training"].str.contains("headline|fast").any()


def test_the_ledger_gives_the_density_test_a_computed_verdict_apart_from_the_claims(monkeypatch, tmp_path):
    """Measured only without a full density record; with one, the dense training's RMSE against the paper's."""
    import shutil

    from odecore import ledger

    monkeypatch.setenv("ODECORE_RESULTS_DIR", str(tmp_path))
    committed = results.ROOT / "data" / "results" / "latent_ode-full.json"
    if not committed.exists():
        pytest.skip("no committed full Table 2 record")
    shutil.copy(committed, tmp_path / committed.name)
    claim = lambda: next(r for r in ledger.explanations() if "per radian as the chapter's first" in r["claim"])  # noqa: E731
    assert claim()["verdict"] == "measured only" and claim()["record"] == committed.name
    cfg = exp.DENSITY_PROFILES["full"]
    p30, p50 = paper.TABLE2["latent_ode"][30], paper.TABLE2["latent_ode"][50]
    summary = {"headline": {"30": _cell([0.19, 0.20, 0.196], p30), "50": _cell([0.18, 0.195, 0.195], p50)},
               "dense": {"30": _cell([0.17, 0.172, 0.171], p30), "50": _cell([0.15, 0.151, 0.152], p50)},
               "longer": {"30": _cell([0.193, 0.2, 0.19], p30), "50": _cell([0.2, 0.22, 0.21], p50)}}
    results.save("latent_ode_density", "full", cfg, {"runs": [], "summary": summary,
                                                     "design": exp.density_design(cfg)}, seeds=[0, 1, 2], wall_time_s=1.0)
    row = claim()
    assert row["verdict"] == "reproduced" and row["record"] == "latent_ode_density-full.json"
    assert "n = 30: ours 0.171 against 0.1642, closes 78% of the gap" in row["detail"]
    longer = next(r for r in ledger.explanations() if "trained on its" in r["claim"])
    assert not [r for r in ledger.claims() if "trained on its" in r["claim"]]   # the book's test, not the paper's claim
    assert longer["verdict"] == "deviates" and "does not close the gap" in longer["detail"]
    summary["dense"]["30"] = _cell([0.2, 0.21, 0.205], p30)
    results.save("latent_ode_density", "full", cfg, {"runs": [], "summary": summary,
                                                     "design": exp.density_design(cfg)}, seeds=[0, 1, 2], wall_time_s=1.0)
    assert claim()["verdict"] == "deviates"


def test_another_first_design_seed_trains_by_that_designs_recipe_beside_the_sessions_checkpoints(dirs, tmp_path,
                                                                                                  monkeypatch):
    """A first-design seed whose weights are missing is an error naming the command, unless run_coverage may train
    it (the command line): then by the recipe seed 0 recorded, its weights beside the session's checkpoints (never
    into the committed folder), loaded on the next call; weights that exist are never trained again."""
    committed = tmp_path / "repo" / "latent_ode-uniform"                 # the committed folder, as named in the repo
    committed.mkdir(parents=True)
    recipe = dataclasses.replace(exp.PROFILES["smoke"], design="covered", n_extrap=5, num_epochs=1)
    seed0 = exp.build("latent_ode", recipe)
    torch.save({"model": seed0.state_dict(), "config": dataclasses.asdict(recipe), "metrics": {"iterations": 7}},
               committed / "latent_ode-n30-seed0.pt")
    monkeypatch.setattr(exp, "UNIFORM_CHECKPOINTS", committed)
    monkeypatch.setitem(exp.COVERAGE_PROFILES, "smoke", dataclasses.replace(exp.COVERAGE_PROFILES["smoke"], seeds=(0, 1)))
    cfg = exp.first_design_config()
    assert cfg.design == "uniform" and cfg.n_extrap == 5 and cfg.num_epochs == 1   # the recipe seed 0 recorded
    with pytest.raises(FileNotFoundError, match="python -m odecore.experiments latent_ode --profile smoke"):
        exp.run_coverage("smoke")                                       # a book build never trains
    first = exp.run_coverage("smoke", train_missing=True, progress=False)
    trained = tmp_path / "checkpoint" / "latent_ode-uniform" / "latent_ode-n30-seed1.pt"
    assert exp.first_design_weights(30, 1) == trained and sorted(p.name for p in committed.iterdir()) == [
        "latent_ode-n30-seed0.pt"]
    seed1 = torch.load(trained, weights_only=False)
    assert seed1["config"]["design"] == "uniform" and seed1["metrics"]["iterations"] == 1 * -(-(40 - 10) // 10)
    assert not any(torch.equal(seed1["model"][k], v) for k, v in seed0.state_dict().items() if v.numel() > 1)
    assert [(r["seed"], r["iterations_trained"]) for r in first["metrics"]["runs"]] == [(0, 7), (1, 3)]
    mtime = trained.stat().st_mtime_ns
    monkeypatch.setenv("ODECORE_RERUN", "1")
    exp.run_coverage("smoke", train_missing=True)                       # the record again: seed 1 is loaded
    assert exp.train_first_design(30, 0) == {"iterations": 7}           # the committed seed: as stored
    assert trained.stat().st_mtime_ns == mtime
