"""Train the sub-runs of several chapters at once: a pool of one-thread worker processes (plus a few
CUDA workers where a GPU is present), stopped at a deadline.

The chapters' small models (2-D flows, 4-D latent ODEs) are bound by per-operation overhead, not
arithmetic, so a GPU does not speed one of them up; many cores running many sub-runs side by side do.
Every sub-run keeps its own resume state (see odecore.experiments.cnf and .latent_ode), so a pool
stopped at its deadline loses at most one chunk of each unfinished sub-run: run it again to go on.
It writes no result records: run each chapter's command afterwards, which finds every sub-run done
and assembles the record.

Command line:
    python -m odecore.experiments.parallel --profile full --workers 14 --gpu-workers 2 --deadline 540
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from odecore import profiles

# Rough seconds per iteration on one CPU thread (measured on the reduced profiles), used only to
# start the longest sub-runs first so that the pool finishes together.
NF_S_PER_ITER: dict[int, float] = {2: 1.0e-3, 8: 2.5e-3, 32: 8.0e-3, 64: 1.6e-2}
CNF_S_PER_ITER = {"cnf_density": 0.035, "cnf_mle": 0.3}   # Figure 5 integrates to t1 = 10
LATENT_S_PER_ITER = {"latent_ode": 0.1, "rnn": 0.05}


@dataclass(order=True)
class Task:
    """One sub-run: fn(*args, **kwargs). Sorted by priority, then longest first."""
    priority: int
    neg_cost: float
    label: str = field(compare=False)
    fn: Callable = field(compare=False)
    args: tuple = field(compare=False)
    kwargs: dict = field(compare=False, default_factory=dict)
    gpu: bool = field(compare=False, default=False)


def tasks(profile: str, only: tuple[str, ...]) -> list[Task]:
    """Every sub-run of the chosen experiments at `profile`, in the order the pool starts them."""
    from odecore.experiments import cnf, latent_ode

    out: list[Task] = []
    if "latent_ode" in only:
        cfg = latent_ode.PROFILES[profile]
        iters = cfg.num_epochs * -(-(cfg.n_spirals - cfg.n_test) // cfg.batch_size)
        for seed in cfg.seeds:
            for n in cfg.obs_counts:
                for model in latent_ode.MODELS:
                    out.append(Task(0 if seed == cfg.seeds[0] else 2, -iters * LATENT_S_PER_ITER[model],
                                    f"latent_ode {model} n={n} seed={seed}", latent_ode.train_one,
                                    (profile, cfg, model, n, seed), {"progress": False}))
        scfg = latent_ode.SAMPLING_PROFILES.get(profile)
        for seed in scfg.seeds if scfg else ():   # the evenly spaced runs of the sampling comparison
            for n in scfg.obs_counts:
                for model in latent_ode.MODELS:
                    out.append(Task(3, -iters * LATENT_S_PER_ITER[model], f"latent_ode {model} n={n} seed={seed} regular",
                                    latent_ode.train_one, (profile, scfg, model, n, seed),
                                    {"progress": False, "sampling": "regular"}))
    for experiment, specs in (("cnf_density", cnf.density_specs(cnf.DENSITY_PROFILES[profile])),
                              ("cnf_mle", cnf.mle_specs(cnf.MLE_PROFILES[profile]))):
        if experiment not in only:
            continue
        for spec in specs:
            per_iter = CNF_S_PER_ITER[experiment] if spec["kind"] == "cnf" else NF_S_PER_ITER.get(spec["size"], 1e-2)
            gpu = experiment == "cnf_mle" and spec["kind"] == "cnf"  # the largest batches and widths
            out.append(Task(1, -spec["iterations"] * per_iter, f"{experiment} {cnf._name(spec)}", cnf._train,
                            (spec, experiment, profile, False), gpu=gpu))
    return sorted(out)


def _init_worker(device: str) -> None:
    torch.set_num_threads(1)
    os.environ["ODECORE_DEVICE"] = device
    os.environ["TQDM_DISABLE"] = "1"


def _timed(task: Task) -> tuple[float, dict]:
    tick = time.perf_counter()
    out = task.fn(*task.args, **task.kwargs)
    return time.perf_counter() - tick, out


def _summary(out: dict) -> str:
    for key in ("failed", "kl", "rmse", "test_loglik"):
        if key in out:
            return f"{key} {out[key]}" if key == "failed" else f"{key} {out[key]:.4f}"
    return ""


def run_pool(todo: list[Task], workers: int, gpu_workers: int, deadline_s: float) -> dict[str, list[str]]:
    """Run `todo` until done or `deadline_s` seconds pass; returns labels done, failed, unfinished."""
    ctx = mp.get_context("spawn")
    has_gpu = torch.cuda.is_available() and gpu_workers > 0
    pools = {"cpu": ctx.Pool(workers, _init_worker, ("cpu",))}
    if has_gpu:
        pools["cuda"] = ctx.Pool(gpu_workers, _init_worker, ("cuda",))
    start = time.perf_counter()
    pending = {t.label: pools["cuda" if (t.gpu and has_gpu) else "cpu"].apply_async(_timed, (t,))
               for t in todo}
    done: dict[str, list[str]] = {"done": [], "failed": [], "unfinished": []}
    print(f"{len(todo)} sub-runs on {workers} CPU workers" + (f" and {gpu_workers} CUDA workers" if has_gpu else ""),
          flush=True)
    while pending and time.perf_counter() - start < deadline_s:
        for label in [k for k, r in pending.items() if r.ready()]:
            res = pending.pop(label)
            try:
                took, out = res.get()
                ok = "failed" not in out
                done["done" if ok else "failed"].append(label)
                print(f"[{time.perf_counter() - start:7.1f} s] {'done' if ok else 'FAILED'} {label} in {took:.0f} s: "
                      f"{_summary(out)}", flush=True)
            except Exception as err:  # a worker's exception: report it, keep the pool going
                done["failed"].append(label)
                print(f"[{time.perf_counter() - start:7.1f} s] ERROR {label}: {type(err).__name__}: {err}", flush=True)
        time.sleep(1.0)
    for pool in pools.values():
        pool.terminate()      # unfinished sub-runs keep their last saved chunk
        pool.join()
    done["unfinished"] = sorted(pending)
    print(f"{len(done['done'])} done, {len(done['failed'])} failed, {len(done['unfinished'])} unfinished "
          f"after {time.perf_counter() - start:.0f} s", flush=True)
    for label in done["unfinished"]:
        print(f"  unfinished: {label}")
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=profiles.PROFILES, default="smoke")
    parser.add_argument("--only", nargs="+", default=["latent_ode", "cnf_density", "cnf_mle"],
                        choices=["latent_ode", "cnf_density", "cnf_mle"])
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    parser.add_argument("--gpu-workers", type=int, default=2)
    parser.add_argument("--deadline", type=float, default=float("inf"), help="seconds before the pool is stopped")
    parser.add_argument("--list", action="store_true", help="print the sub-runs in start order and exit")
    args = parser.parse_args()
    todo = tasks(args.profile, tuple(args.only))
    if args.list:
        for t in todo:
            print(f"{t.priority} {-t.neg_cost:8.0f} s  {'gpu ' if t.gpu else ''}{t.label}")
        return
    run_pool(todo, args.workers, args.gpu_workers, args.deadline)


if __name__ == "__main__":
    main()
