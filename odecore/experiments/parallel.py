"""Train the sub-runs of several chapters at once, as Ray tasks, until they finish or a deadline.

The chapters' small models (2-D flows, 4-D latent ODEs) are bound by per-operation overhead, not
arithmetic, so a GPU does not speed one of them up; many cores running many sub-runs side by side do.
MNIST's convolutional models are the exception: their sub-runs are GPU tasks where the cluster has GPUs.
`tasks(profile, only)` lists every sub-run of the mnist, latent_ode, cnf_density and cnf_mle results;
`run_pool` trains them as Ray tasks of one CPU (plus a GPU, or a share of one, for the tasks marked
`gpu` when the cluster has GPUs), one torch thread each, with the device handed to each task as an
argument.

Where Ray runs: with no address, `ray.init` starts a local cluster that lives and dies with this
command (no dashboard, a small object store); `--address` or $RAY_ADDRESS reaches a running cluster,
whose nodes need this package installed and the scratch and checkpoint folders
($ODECORE_SCRATCH_DIR, $ODECORE_CHECKPOINT_DIR, forwarded to every task) on a shared filesystem.

What survives a stop: every sub-run keeps its own resume state under odecore.results.scratch_dir()
(see odecore.experiments.cnf and .latent_ode), so a pool stopped at its deadline loses at most one
chunk of each unfinished sub-run: run it again to go on. At the deadline, unfinished tasks are
cancelled (their workers killed) and listed. A task whose worker dies is reported as failed, never
retried behind the reader's back. A killed driver takes its local cluster, and with it every
training worker, down within seconds (Ray's fate sharing; only Ray's two idle agent processes
linger, about a minute); on a remote cluster Ray ends a dead driver's tasks.
The pool writes no result records: run each chapter's command afterwards, which finds every
sub-run done and assembles the record.

SIGTERM (a plain `kill`) and Ctrl-C stop the pool the same way: the running tasks are cancelled, the
unfinished sub-runs listed, Ray shut down, and the command exits with 143 or 130 (a second signal
exits at once).

Command line (exit status 1 when any sub-run failed or was left unfinished, 128 + N after signal N):
    python -m odecore.experiments.parallel --profile full --only latent_ode cnf_density cnf_mle --workers 14 --deadline 540
    python -m odecore.experiments.parallel --profile full --address auto   # on a node of a running cluster
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from odecore import profiles, settings

# Rough seconds per iteration on one CPU thread (measured on the reduced profiles), used only to
# start the longest sub-runs first so that the pool finishes together.
NF_S_PER_ITER: dict[int, float] = {2: 1.0e-3, 8: 2.5e-3, 32: 8.0e-3, 64: 1.6e-2}
CNF_S_PER_ITER = {"cnf_density": 0.035, "cnf_mle": 0.3}   # Figure 5 integrates to t1 = 10
LATENT_S_PER_ITER = {"latent_ode": 0.1, "rnn": 0.05}
MNIST_S_PER_STEP = {"mlp": 0.015, "resnet": 0.4, "rknet": 0.7, "odenet": 1.8}   # batch 128, one thread

EXPERIMENTS = ("mnist", "latent_ode", "cnf_density", "cnf_mle")
# Settings every task must see alike (variable -> Settings field): on a cluster, folders on a shared filesystem.
FORWARDED_SETTINGS = {"ODECORE_SCRATCH_DIR": "scratch_dir", "ODECORE_CHECKPOINT_DIR": "checkpoint_dir",
                      "ODECORE_RESULTS_DIR": "results_dir", "ODECORE_MNIST_DIR": "mnist_dir"}
LOCAL_OBJECT_STORE_BYTES = 128 * 1024**2   # tasks return small summaries; Ray's floor is 75 MiB
CANCEL_WAIT_S = 30.0                       # how long cancelled tasks get to report back
POLL_S = 1.0                               # how often the pool looks at its stop event between results


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


@dataclass
class Report:
    """Labels of the sub-runs that finished, failed (with the reason) and were left unfinished."""
    done: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    unfinished: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every sub-run finished and none failed."""
        return not self.failed and not self.unfinished


def tasks(profile: str, only: tuple[str, ...]) -> list[Task]:
    """Every sub-run of the chosen experiments at `profile`, in the order the pool starts them."""
    from odecore.experiments import cnf, latent_ode, mnist

    have = {"mnist": mnist.PROFILES, "latent_ode": latent_ode.PROFILES, "cnf_density": cnf.DENSITY_PROFILES,
            "cnf_mle": cnf.MLE_PROFILES}
    missing = [e for e in only if profile not in have[e]]
    if missing:
        raise ValueError(f"no profile {profile!r} for {', '.join(missing)}; choose it with --only, or another profile")
    out: list[Task] = []
    if "mnist" in only:   # the convolutional models on a GPU where the cluster has one
        cfg = mnist.PROFILES[profile]
        steps = -(-(cfg.images_per_epoch or cfg.n_train or 60_000 - cfg.n_val) // cfg.batch_size)
        for name, seeds in cfg.seeds.items():
            for seed in seeds:
                cost = mnist.num_epochs(cfg, name) * steps * MNIST_S_PER_STEP[name]
                out.append(Task(0 if seed == seeds[0] else 2, -cost, f"mnist {name} seed={seed}", mnist.train_subrun,
                                (profile, name, seed), gpu=name != "mlp"))
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
    density = lambda cfg: cnf.density_specs(cfg) + cnf.variant_specs(cfg)   # noqa: E731  (the variants are its sub-runs too)
    for experiment, specs in (("cnf_density", lambda: density(cnf.DENSITY_PROFILES[profile])),
                              ("cnf_mle", lambda: cnf.mle_specs(cnf.MLE_PROFILES[profile]))):
        if experiment not in only:
            continue
        stacked = cnf.stacks(specs()) if experiment == "cnf_density" else []
        for stack in stacked:   # one task per stack: a step of ten NFs costs about twice one's
            out.append(Task(1, -2 * stack[0]["iterations"] * NF_S_PER_ITER.get(stack[0]["size"], 1e-2),
                            f"{experiment} {len(stack)} NFs stacked, {cnf.subrun_name(stack[0])}", cnf.train_stacked,
                            (stack, profile, False)))
        for spec in [s for s in specs() if not any(s in stack for stack in stacked)]:
            per_iter = CNF_S_PER_ITER[experiment] if spec["kind"] == "cnf" else NF_S_PER_ITER.get(spec["size"], 1e-2)
            gpu = experiment == "cnf_mle" and spec["kind"] == "cnf"  # the largest batches and widths
            out.append(Task(1, -spec["iterations"] * per_iter, f"{experiment} {cnf.subrun_name(spec)}", cnf.train_subrun,
                            (spec, experiment, profile, False), gpu=gpu))
    return sorted(out)


def run_task(fn: Callable, args: tuple, kwargs: dict, device: str) -> tuple[float, Any]:
    """Body of one Ray task: fn(*args, **kwargs) on one torch thread and on `device`.

    Returns (seconds, fn's result). Ray gives a task of one CPU OMP_NUM_THREADS=1; torch is told too.
    """
    import torch

    torch.set_num_threads(1)
    tick = time.perf_counter()
    with profiles.using_device(device):
        out = fn(*args, **kwargs)
    return time.perf_counter() - tick, out


def _summary(out: Any) -> str:
    if not isinstance(out, dict):
        return ""
    for key in ("failed", "kl", "rmse", "test_loglik", "test_error"):
        if key in out:
            return f"{key} {out[key]}" if key == "failed" else f"{key} {out[key]:.4f}"
    return ""


def _reason(err: BaseException) -> str:
    """One line for a task's error: Ray wraps the task's own exception (its `cause`) or names a dead worker."""
    import ray.exceptions

    if isinstance(err, ray.exceptions.RayTaskError) and err.cause is not None:
        err = err.cause
    elif isinstance(err, (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError)):
        return f"worker died: {type(err).__name__}"
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[-1] if text else ''}"


def start_ray(address: str | None = None, workers: int | None = None) -> bool:
    """Connect to the cluster at `address` (or $RAY_ADDRESS), else start a local one with `workers` CPUs.

    Returns True when it started a local cluster, which ray.shutdown() (or this process's death) ends.
    """
    import ray

    # every task sees the folders the driver chose (on a cluster: on a shared filesystem); a folder left
    # at its default stays the default of the node's own installation
    chosen, default = settings.current(), settings.Settings()
    env = {"TQDM_DISABLE": "1", **{name: str(getattr(chosen, field)) for name, field in FORWARDED_SETTINGS.items()
                                   if getattr(chosen, field) != getattr(default, field)}}
    options: dict[str, Any] = {"runtime_env": {"env_vars": env}, "logging_level": logging.WARNING,
                               "log_to_driver": True}
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        ray.init(address=address, **options)
        return False
    # "local": a new cluster even if another one runs on this machine (ray.init() would join it).
    ray.init(address="local", num_cpus=workers, include_dashboard=False,
             object_store_memory=LOCAL_OBJECT_STORE_BYTES, **options)
    return True


def run_pool(todo: list[Task], deadline_s: float = float("inf"), *, gpus_per_task: float = 1.0,
             stop: threading.Event | None = None) -> Report:
    """Train `todo` as Ray tasks on the cluster ray.init() reached, until done, `deadline_s` seconds
    pass, or `stop` is set (the command's signal handlers set it).

    Each task takes one CPU; a `gpu` task also takes `gpus_per_task` GPUs and runs on CUDA when the
    cluster has GPUs. Tasks still running at the deadline or the stop are cancelled and listed as
    unfinished; a task that raised, whose worker died, or whose result carries "failed" is listed as
    failed (after a stop, one that ended with an error is listed as unfinished: the stop may have ended it).
    """
    import ray

    has_gpu = ray.cluster_resources().get("GPU", 0) > 0
    remote = ray.remote(run_task)
    pending: dict[ray.ObjectRef, str] = {}
    for t in todo:
        on_gpu = t.gpu and has_gpu
        opts = {"num_cpus": 1, "num_gpus": gpus_per_task if on_gpu else 0, "max_retries": 0, "name": t.label}
        pending[remote.options(**opts).remote(t.fn, t.args, t.kwargs, "cuda" if on_gpu else "cpu")] = t.label
    n_gpu = sum(t.gpu for t in todo) if has_gpu else 0
    print(f"{len(todo)} sub-runs on Ray, {ray.cluster_resources().get('CPU', 0):g} CPUs"
          + (f"; {n_gpu} of the sub-runs on GPUs" if n_gpu else ""), flush=True)
    report = Report()
    start = time.perf_counter()
    stop = stop or threading.Event()

    def collect(ref: ray.ObjectRef) -> None:
        label = pending.pop(ref)
        stamp = f"[{time.perf_counter() - start:7.1f} s]"
        try:
            took, out = ray.get(ref)
        except ray.exceptions.TaskCancelledError:
            report.unfinished.append(label)
            return
        except Exception as err:  # the task raised, or its worker died: report it, go on
            if stop.is_set():     # a Ctrl-C reaches the workers too: not a failure of the sub-run
                report.unfinished.append(label)
                return
            report.failed[label] = _reason(err)
            print(f"{stamp} FAILED {label}: {report.failed[label]}", flush=True)
            return
        if isinstance(out, dict) and "failed" in out:   # a run the chapter records as failed (diverged)
            report.failed[label] = str(out["failed"])
            print(f"{stamp} FAILED {label} in {took:.0f} s: {_summary(out)}", flush=True)
        else:
            report.done.append(label)
            print(f"{stamp} done {label} in {took:.0f} s: {_summary(out)}", flush=True)

    try:
        while pending and not stop.is_set():
            left = deadline_s - (time.perf_counter() - start)
            if left <= 0:
                break
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=min(left, POLL_S))
            for ref in ready:
                collect(ref)
    finally:   # the deadline, a stop, or an error in the driver: stop what still runs
        for ref in pending:
            ray.cancel(ref, force=True)          # kills the worker; the sub-run keeps its last saved chunk
        if pending:
            ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=CANCEL_WAIT_S)
            for ref in ready:                    # a few may have finished before the cancel reached them
                collect(ref)
            report.unfinished += list(pending.values())
            pending.clear()
            order = {t.label: i for i, t in enumerate(todo)}
            report.unfinished.sort(key=order.__getitem__)   # in start order, however the cancels came back
    print(f"{len(report.done)} done, {len(report.failed)} failed, {len(report.unfinished)} unfinished "
          f"after {time.perf_counter() - start:.0f} s", flush=True)
    for label, why in report.failed.items():
        print(f"  failed: {label}: {why}")
    for label in report.unfinished:
        print(f"  unfinished: {label}")
    if report.unfinished:
        print("Run the same command again to resume the unfinished sub-runs from their last saved chunk.")
    sys.stdout.flush()
    return report


class StopOnSignal:
    """SIGTERM and SIGINT (Ctrl-C) set `event` instead of raising in the middle of a Ray call, so the
    pool cancels its tasks, lists the unfinished ones and returns; a second signal exits at once
    (a local cluster dies with its driver). Installed after ray.init, whose own SIGTERM handler
    would otherwise exit from inside a Ray call and crash it."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.event, self.signum = threading.Event(), None

    def install(self) -> None:
        for signum in self.SIGNALS:
            signal.signal(signum, self.handle)

    def handle(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if self.event.is_set():
            os.write(2, f"{name} again: exiting now\n".encode())   # os.write: no buffer a handler could re-enter
            os._exit(128 + signum)
        self.signum = signum
        self.event.set()
        os.write(2, f"{name}: stopping; cancelling the running sub-runs (their saved chunks are kept)\n".encode())

    @property
    def exit_status(self) -> int | None:
        """128 + the signal's number once stopped (130 for Ctrl-C, 143 for SIGTERM), else None."""
        return None if self.signum is None else 128 + self.signum


def run_command(todo: list[Task], *, address: str | None = None, workers: int | None = None,
                deadline_s: float = float("inf"), gpus_per_task: float = 1.0) -> int:
    """Start or reach Ray, train `todo`, shut Ray down; the exit status: 0 when every sub-run
    finished, 128 + the signal's number when SIGTERM or Ctrl-C stopped it, else 1."""
    import ray

    stopper = StopOnSignal()
    stopper.install()                 # a signal during the start is kept, and stops the pool at once
    start_ray(address, workers)
    stopper.install()                 # ray.init installed its own SIGTERM handler
    try:
        report = run_pool(todo, deadline_s, gpus_per_task=gpus_per_task, stop=stopper.event)
    finally:
        ray.shutdown()   # ends a local cluster; leaves a remote one running
    return stopper.exit_status or (0 if report.ok else 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=profiles.PROFILES, default="smoke")
    parser.add_argument("--only", nargs="+", default=list(EXPERIMENTS), choices=EXPERIMENTS)
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1),
                        help="CPUs of the local cluster (one sub-run each); a remote cluster has its own")
    parser.add_argument("--deadline", type=float, default=float("inf"), help="seconds before the pool is stopped")
    parser.add_argument("--address", default=None,
                        help="a running Ray cluster (default $RAY_ADDRESS; unset: start a local one)")
    parser.add_argument("--gpus-per-task", type=float, default=1.0,
                        help="GPUs each GPU sub-run takes (0.25: four share a GPU)")
    parser.add_argument("--list", action="store_true", help="print the sub-runs in start order and exit")
    args = parser.parse_args(argv)
    if args.workers < 1:            # a cluster of no CPUs would never start a task, and wait for ever
        parser.error(f"--workers must be at least 1, got {args.workers}")
    if not args.deadline >= 0:
        parser.error(f"--deadline must be a number of seconds >= 0, got {args.deadline}")
    if not args.gpus_per_task > 0:
        parser.error(f"--gpus-per-task must be > 0, got {args.gpus_per_task}")
    try:
        todo = tasks(args.profile, tuple(args.only))
    except ValueError as err:
        parser.error(str(err))
    if args.list:
        for t in todo:
            print(f"{t.priority} {-t.neg_cost:8.0f} s  {'gpu ' if t.gpu else ''}{t.label}")
        return 0
    return run_command(todo, address=args.address, workers=args.workers, deadline_s=args.deadline,
                       gpus_per_task=args.gpus_per_task)


if __name__ == "__main__":
    # Ray ships run_task by reference to this module, not as a copy of __main__'s.
    from odecore.experiments.parallel import main as _main

    sys.exit(_main())
