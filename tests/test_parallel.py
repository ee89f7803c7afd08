"""The sub-run pool: which sub-runs it starts, in what order, and what a deadline leaves unfinished."""
import time

from odecore.experiments import cnf, latent_ode, parallel


def test_tasks_cover_every_subrun_once_longest_first():
    todo = parallel.tasks("smoke", ("latent_ode", "cnf_density", "cnf_mle"))
    cfg = latent_ode.PROFILES["smoke"]
    scfg = latent_ode.SAMPLING_PROFILES["smoke"]                  # plus the evenly spaced runs of the sampling comparison
    expected = (len(cfg.seeds) * len(cfg.obs_counts) * len(latent_ode.MODELS)
                + len(scfg.seeds) * len(scfg.obs_counts) * len(latent_ode.MODELS)
                + len(cnf.density_specs(cnf.DENSITY_PROFILES["smoke"])) + len(cnf.mle_specs(cnf.MLE_PROFILES["smoke"])))
    labels = [t.label for t in todo]
    assert len(labels) == expected == len(set(labels))
    keys = [(t.priority, t.neg_cost) for t in todo]
    assert keys == sorted(keys)                       # by priority, then the longest first
    assert {t.label.split()[0] for t in parallel.tasks("smoke", ("cnf_mle",))} == {"cnf_mle"}
    assert any(t.gpu for t in todo) and not any(t.gpu for t in todo if not t.label.startswith("cnf_mle cnf-"))


def test_pool_reports_done_failed_and_unfinished_at_the_deadline():
    # The deadline leaves room for spawned workers that import torch on a loaded machine (14 s seen);
    # the sleeper outlasts it by far, so the test reads no timing but "stopped, not waited for".
    todo = [parallel.Task(0, -1.0, "quick", dict, (), {"kl": 0.5}),
            parallel.Task(0, -1.0, "broken", int, ("not a number",)),
            parallel.Task(0, -9.0, "slow", time.sleep, (3600,))]
    tick = time.perf_counter()
    out = parallel.run_pool(todo, workers=3, gpu_workers=0, deadline_s=45)
    assert out == {"done": ["quick"], "failed": ["broken"], "unfinished": ["slow"]}
    assert time.perf_counter() - tick < 3600          # the sleeping worker was stopped, not waited for
