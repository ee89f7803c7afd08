"""Toy 2-D densities and data sets (odecore.datasets.toy2d) and the CNF experiment's plumbing."""
import math

import pytest
import torch

from odecore.datasets import toy2d


@pytest.mark.parametrize("name", toy2d.POTENTIALS)
def test_potentials_shape_and_normalizer(name):
    z = torch.randn(10, 2)
    assert toy2d.potential(name, z).shape == (10,)
    assert torch.isfinite(toy2d.energy(name, z)).all()
    coarse, fine = toy2d.log_normalizer(name, 6.0, 601), toy2d.log_normalizer(name, 8.0, 1601)
    assert abs(coarse - fine) < 1e-3


def test_u1_matches_rezende_mohamed_formula():
    z = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    expected = [0.5 * 0 - math.log(1 + math.exp(-0.5 * (4 / 0.6) ** 2)),
                0.5 * (1 / 0.4) ** 2 - math.log(2 * math.exp(-0.5 * (2 / 0.6) ** 2))]
    torch.testing.assert_close(toy2d.potential("U1", z), torch.tensor(expected))


def test_bad_names_and_shapes_raise():
    with pytest.raises(ValueError, match="unknown potential"):
        toy2d.potential("U9", torch.zeros(1, 2))
    with pytest.raises(ValueError, match="shape"):
        toy2d.potential("U1", torch.zeros(3))
    with pytest.raises(ValueError, match="unknown data set"):
        toy2d.sample("spiral", 4)


@pytest.mark.parametrize("name", toy2d.DATASETS)
def test_data_sets_are_seeded_and_in_the_window(name):
    a, b, c = toy2d.sample(name, 1001, 3), toy2d.sample(name, 1001, 3), toy2d.sample(name, 1001, 4)
    assert a.shape == (1001, 2)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.abs().max() < 1.5


def test_two_circles_radii():
    x = toy2d.two_circles(4000, 0, noise=0.0)
    r = x.norm(dim=1).sort().values
    torch.testing.assert_close(r[:2000], torch.full((2000,), 0.5))
    torch.testing.assert_close(r[2000:], torch.ones(2000))


def test_density_sub_run_resumes_and_is_cached(tmp_path):
    """A sub-run interrupted after its first chunk resumes to the same model as an uninterrupted one."""
    from odecore.experiments import cnf

    spec = cnf.density_specs(cnf.DENSITY_PROFILES["smoke"])[0]
    spec = {**spec, "iterations": 6, "chunk": 3}
    first = cnf.train_subrun(spec, "cnf_density", "smoke", progress=False)
    again = cnf.train_subrun(spec, "cnf_density", "smoke", progress=False)   # from the scratch summary
    assert first == again and "kl" in first and len(first["loss"]) == 2
    assert all(n > 0 for n in first["nfe"])


def _tiny_spec(**changes) -> dict:
    from odecore.experiments import cnf

    return {**cnf.density_specs(cnf.DENSITY_PROFILES["smoke"])[0], "iterations": 4, "chunk": 2, **changes}


def test_a_diverging_cnf_stops_its_sub_run(monkeypatch):
    """Adam at lr 1e4 on the chapter's own spec: without a step limit the second step's solve
    passed 99,000 evaluations and kept going. The limit is patched down here only to be quick."""
    from odecore.experiments import cnf

    monkeypatch.setattr(cnf, "MAX_STEPS", 100)
    run = cnf.train_subrun(_tiny_spec(lr=1e4), "cnf_density", "smoke", progress=False)
    assert run["failed"].startswith("SolverError: dopri5: max_num_steps exceeded")
    assert run["name"] == cnf.subrun_name(_tiny_spec(lr=1e4))


@pytest.mark.parametrize("keep", [0.0, 0.1, 0.5])
def test_a_corrupt_resume_checkpoint_is_an_error_never_a_result(keep):
    from odecore import results
    from odecore.experiments import cnf

    spec = _tiny_spec()
    cnf.train_subrun(spec, "cnf_density", "smoke", progress=False)
    stem = cnf.scratch() / f"{cnf.subrun_name(spec)}-{results.config_hash(spec)}"
    stem.with_suffix(".json").unlink()                    # the run is unfinished again ...
    ckpt = stem.with_suffix(".pt")
    ckpt.write_bytes(ckpt.read_bytes()[:int(keep * ckpt.stat().st_size)])   # ... and its resume state cut
    with pytest.raises(RuntimeError, match=f"checkpoint {ckpt} is unreadable.*delete it"):
        cnf.train_subrun(spec, "cnf_density", "smoke", progress=False)


def test_train_stacked_resumes_a_run_begun_alone_and_trains_one_stack_per_budget(monkeypatch, tmp_path):
    from odecore import paper, train
    from odecore.experiments import cnf

    full = cnf.DENSITY_PROFILES["full"]
    assert (full.nf_iterations, full.cnf_iterations) == (paper.FIGURE4["nf_iterations"], paper.FIGURE4["cnf_iterations"])
    _dirs(monkeypatch, tmp_path)
    cfg = cnf.DENSITY_PROFILES["smoke"]
    specs = cnf.density_specs(cfg)
    nfs = [s for s in specs if s["kind"] == "nf"]
    assert {s["iterations"] for s in nfs} == {cfg.nf_iterations, cfg.short_nf_iterations}   # both budgets, labelled
    fit = train.fit

    def one_chunk_then_stop(*args, **kwargs):                           # a session that ends after one chunk
        fit(*args, **{**kwargs, "num_epochs": 1})
        raise KeyboardInterrupt

    monkeypatch.setattr(cnf.train, "fit", one_chunk_then_stop)
    first = nfs[0]
    with pytest.raises(KeyboardInterrupt):                              # a run begun alone, in train.fit
        cnf.train_subrun(first, "cnf_density", "smoke", progress=False)
    monkeypatch.setattr(cnf.train, "fit", fit)
    cnf.train_stacked(specs, "smoke", progress=False)                   # resumes it stacked with the others
    for spec in nfs:
        summary, _ = train.run_progress(cnf.subrun_stem(spec))
        assert summary["stacked"] == len(cfg.seeds) and math.isfinite(summary["kl"])   # one stack per size and budget
        assert len(summary["loss"]) == spec["iterations"] // spec["chunk"]
    assert not any(cnf.subrun_stem(s).with_suffix(".json").exists() for s in specs if s["kind"] == "cnf")
    loaded = cnf.train_subrun(first, "cnf_density", "smoke", progress=False)   # what run_density then reads
    assert loaded["stacked"] == len(cfg.seeds)


def _dirs(monkeypatch, folder):
    for name in ("SCRATCH", "CHECKPOINT", "RESULTS"):
        monkeypatch.setenv(f"ODECORE_{name}_DIR", str(folder / name.lower()))


def test_stacked_nfs_train_as_each_would_alone_and_resume_at_different_points(monkeypatch, tmp_path):
    """Four NFs on two targets stacked: each run's losses, KL and weights are its lone run's, also when the
    stacked training is cut off after one run's state was saved and resumes with the runs at different chunks."""
    from odecore import train
    from odecore.experiments import cnf

    base = {**next(s for s in cnf.density_specs(cnf.DENSITY_PROFILES["smoke"]) if s["kind"] == "nf"), "iterations": 24}
    specs = [{**base, "task": t, "seed": seed} for t, seed in (("U2", 0), ("U1", 1), ("U2", 1), ("U1", 0))]
    _dirs(monkeypatch, tmp_path / "alone")
    alone = [cnf.train_subrun(s, "cnf_density", "smoke", False) for s in specs]
    weights = lambda s: torch.load(cnf._ckpt_path("cnf_density", "smoke", cnf.subrun_name(s)))["model"]  # noqa: E731
    alone_weights = [weights(s) for s in specs]

    _dirs(monkeypatch, tmp_path / "stacked")
    save, saves = cnf._save_run, []

    def save_once_then_stop(run):
        save(run)
        saves.append(run.spec["seed"])
        raise KeyboardInterrupt

    monkeypatch.setattr(cnf, "_save_run", save_once_then_stop)
    with pytest.raises(KeyboardInterrupt):
        cnf._train_stacked(specs, "smoke", False, save_every=1)
    assert len(saves) == 1 and sum(cnf.subrun_stem(s).with_suffix(".pt").exists() for s in specs) == 1
    monkeypatch.setattr(cnf, "_save_run", save)
    cnf._train_stacked(specs, "smoke", False, save_every=1)   # one run a chunk ahead of the other three
    for spec, lone, lone_weights in zip(specs, alone, alone_weights):
        summary = train.run_progress(cnf.subrun_stem(spec))[0]
        assert summary["loss"] == pytest.approx(lone["loss"], rel=1e-5) and len(summary["loss"]) == 3
        assert summary["kl"] == pytest.approx(lone["kl"], rel=1e-5, abs=1e-6)
        for name, value in weights(spec).items():
            torch.testing.assert_close(value, lone_weights[name], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="planar NFs of one size"):
        cnf._train_stacked([specs[0], {**specs[1], "size": 4}], "smoke", False, save_every=1)


def test_run_density_stacks_its_nfs_in_fresh_folders_under_rerun_and_counts_each_run_once(monkeypatch, tmp_path):
    """What the notebooks' CI run does: the density record from nothing, rerun on. Its NFs train as stacks, and
    the record counts each sub-run once although the stack stores it and the chapter's loop loads it."""
    from odecore.experiments import cnf

    _dirs(monkeypatch, tmp_path)                                   # no folder exists yet
    monkeypatch.setenv("ODECORE_RERUN", "1")
    monkeypatch.setenv("TQDM_DISABLE", "1")
    cfg = cnf.DENSITY_PROFILES["smoke"]
    record = cnf.run_density("smoke")
    nfs = [r for r in record["metrics"]["runs"] if r["kind"] == "nf"]
    assert nfs and all(r["stacked"] == len(cfg.seeds) for r in nfs)
    n = len(cnf.density_specs(cfg)) + len(cnf.variant_specs(cfg))
    assert record["subruns"]["count"] == record["subruns"]["trained_now"] == n
    assert [r["variant"] for r in record["metrics"]["cnf_variants"]] == [v for _, v, seeds in cfg.cnf_variants for _ in seeds]


def test_a_fresh_clone_reassembles_a_changed_profile_from_the_record_without_training(monkeypatch, tmp_path):
    """The scratch summaries are not committed: with the record and the weights alone, a profile that lists
    fewer runs is assembled from what the record holds, and nothing trains again."""
    import shutil
    from dataclasses import replace

    from odecore.experiments import cnf

    _dirs(monkeypatch, tmp_path)
    monkeypatch.setenv("TQDM_DISABLE", "1")
    smoke = cnf.DENSITY_PROFILES["smoke"]   # cut to one seed and size, so that the test trains little
    cfg = replace(smoke, seeds=(0,), nf_layers=(2,), cnf_units=(2,), long_cnf=(),
                  cnf_variants=(("U1", "hidden 64", (0,)), ("U1", "cosine lr", (0,))))
    monkeypatch.setitem(cnf.DENSITY_PROFILES, "smoke", cfg)
    monkeypatch.setattr(cnf, "theorem1", lambda: {"max_abs_err": 0.0})   # not what this test is about
    first = cnf.run_density("smoke")
    shutil.rmtree(tmp_path / "scratch")                            # what a fresh clone has
    fewer = replace(cfg, cnf_variants=cfg.cnf_variants[:1])
    monkeypatch.setitem(cnf.DENSITY_PROFILES, "smoke", fewer)
    again = cnf.run_density("smoke")
    assert again["config_hash"] != first["config_hash"]
    assert again["subruns"]["trained_now"] == 0
    assert again["metrics"]["runs"] == first["metrics"]["runs"]
    kept = len(cnf.variant_specs(fewer))
    assert again["metrics"]["cnf_variants"] == first["metrics"]["cnf_variants"][:kept]
    shutil.rmtree(tmp_path / "scratch")
    first_spec = cnf.density_specs(cfg)[0]
    assert cnf.restore_summaries("cnf_density", "smoke", [{**first_spec, "lr": 0.5}]) == 0   # same name, other settings
    monkeypatch.setenv("ODECORE_RERUN", "1")
    assert cnf.restore_summaries("cnf_density", "smoke", [first_spec]) == 0                  # rerun trains afresh
    monkeypatch.delenv("ODECORE_RERUN")
    cnf.subrun_stem(first_spec).with_suffix(".pt").parent.mkdir(parents=True, exist_ok=True)
    cnf.subrun_stem(first_spec).with_suffix(".pt").write_bytes(b"")                           # a training cut off
    assert cnf.restore_summaries("cnf_density", "smoke", [first_spec]) == 0
    cnf.subrun_stem(first_spec).with_suffix(".pt").unlink()
    cnf._ckpt_path("cnf_density", "smoke", cnf.subrun_name(first_spec)).unlink()               # weights gone
    assert cnf.restore_summaries("cnf_density", "smoke", [first_spec]) == 0


def test_a_cnf_on_another_solver_is_named_by_it_and_restored_from_a_record_that_named_it_without(monkeypatch, tmp_path):
    """Retraining on the fast path must not overwrite the weights of a record trained on dopri5: a CNF on another
    solver says it in its name. A record stored before names did is still found by restore_summaries, which writes
    the summary under the new name."""
    import json

    from odecore import results, train
    from odecore.experiments import cnf

    _dirs(monkeypatch, tmp_path)
    spec = {**cnf.mle_specs(cnf.MLE_PROFILES["smoke"])[0], "method": cnf.FAST_METHOD}
    name, legacy = cnf.subrun_name(spec), cnf.subrun_name({**spec, "method": "dopri5"})
    assert name == f"{legacy}-{cnf.FAST_METHOD}" and "-dopri5" not in legacy
    results.save("cnf_mle", "smoke", cnf.MLE_PROFILES["smoke"], {"runs": [{**spec, "name": legacy, "test_loglik": -1.0}]},
                 seeds=[0], wall_time_s=0.0)
    train.atomic_save({"spec": spec, "model": {}}, cnf._ckpt_path("cnf_mle", "smoke", name))
    assert cnf.restore_summaries("cnf_mle", "smoke", [{**spec, "lr": 0.5}]) == 0       # the old name, other settings
    assert cnf.restore_summaries("cnf_mle", "smoke", [spec]) == 1
    restored = json.loads(cnf.subrun_stem(spec).with_suffix(".json").read_text())
    assert restored["name"] == name and restored["test_loglik"] == -1.0
