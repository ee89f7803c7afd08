"""Seconds per training iteration and NFE of the latent ODE and the RNN baseline.

    python benchmarks/latent_ode.py [--iters 5] [--threads 1] [--save]

Two settings:

1. "full": the chapter's training step (batch 50, n = 100 irregular observations, dopri5 at the
   paper's tolerance 1.5e-8), latent ODE and RNN baseline.
2. "public example": the settings of the authors' later public example (1000 spirals in one batch,
   100 evenly spaced observations, dopri5 at torchdiffeq's default rtol 1e-7 / atol 1e-9). It is
   timed twice: with a model built like the example's (two hidden ELU layers in the dynamics, a
   plain tanh RNN, a ReLU decoder; written here, not copied) and with ours; each without the
   adjoint, with the adjoint and its default error norm, and with the adjoint and the seminorm.

Why the example's adjoint backward takes about 2000 evaluations: torchdiffeq's default norm for
the backward solve is the maximum of the norms of the state, the adjoint and the parameter
gradient a_theta(t) = -int a^T df/dtheta. The last starts at 0, so its tolerance is atol = 1e-9
plus rtol times a value that is still tiny, while its derivative is a sum over the whole batch of
1000 spirals: the step-size controller shrinks steps to integrate an accumulator no later
computation depends on. On top of that the backward solve restarts at each of the 99 observation
intervals (each restart costs an initial-step selection and at least one full step). Measured here
(1 thread): 1956 backward evaluations with the default norm = 99 restarts x about 20; with the
seminorm (Kidger et al. 2021), which drops a_theta from the error estimate, 1386 = 99 x 14 (an
initial-step selection, 2 evaluations, and two steps); with the seminorm and first_step set to the
observation spacing, 693 = 99 x 7 (one step per interval), a third of the default. The rest is the
restart floor: torchdiffeq's adjoint solves each interval between observation times afresh. The
script prints the numbers; with --save the chapter reads them from data/results/.

Timings are the median wall-clock time per iteration (forward, backward, Adam step) after one
warm-up iteration, at initialisation; NFE are means over the same iterations; NFE grows as a model trains, so these are the cost of an early iteration.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from odecore import results  # noqa: E402
from odecore.datasets import spirals as spiral_data  # noqa: E402
from odecore.models.latent_ode import (LatentODE, RNNBaseline, gaussian_log_prob,  # noqa: E402
                                       kl_standard_normal)
from odecore.solve import CountNFE, odesolve  # noqa: E402


class ExampleDynamics(nn.Module):
    """Dynamics as in the public example: 4 -> 20 -> 20 -> 4 with ELU."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 20), nn.ELU(), nn.Linear(20, 20), nn.ELU(), nn.Linear(20, 4))

    def forward(self, t, z):
        return self.net(z)


class ExampleModel(nn.Module):
    """Latent ODE built like the public example: tanh RNN (25) over observations read backwards,
    without time gaps; ReLU decoder (20); fixed noise std 0.3."""

    def __init__(self, rtol=1e-7, atol=1e-9, adjoint=False, adjoint_options=None):
        super().__init__()
        self.i2h = nn.Linear(2 + 25, 25)
        self.h2o = nn.Linear(25, 8)
        self.func = CountNFE(ExampleDynamics())
        self.dec = nn.Sequential(nn.Linear(4, 20), nn.ReLU(), nn.Linear(20, 2))
        self.solver = dict(rtol=rtol, atol=atol, adjoint=adjoint)
        if adjoint:
            self.solver["adjoint_options"] = adjoint_options

    def loss(self, x, t):
        h = x.new_zeros(x.shape[0], 25)
        for i in range(x.shape[1] - 1, -1, -1):
            h = torch.tanh(self.i2h(torch.cat([x[:, i], h], -1)))
        mean, logvar = self.h2o(h).chunk(2, -1)
        std = torch.exp(0.5 * logvar)
        z0 = mean + std * torch.randn_like(std)
        pred = self.dec(odesolve(self.func, z0, t, **self.solver).transpose(0, 1))
        log_px = gaussian_log_prob(x, pred, 0.3).sum((1, 2))
        return (-log_px + kl_standard_normal(mean, std)).mean()


def time_steps(model: nn.Module, loss_fn, iters: int) -> dict:
    """Mean seconds per iteration and forward/backward NFE (when the model counts them)."""
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    func = getattr(model, "func", None)
    rows = []
    for i in range(iters + 1):
        tick = time.perf_counter()
        if func is not None:
            func.reset()
        loss = loss_fn()
        nfe_f = func.reset() if func is not None else 0
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nfe_b = func.reset() if func is not None else 0
        opt.step()
        if i:  # the first iteration is a warm-up
            rows.append((time.perf_counter() - tick, nfe_f, nfe_b))
    n = len(rows)
    # median time: on a shared machine a load spike in one iteration should not move the row
    return {"s_per_iter": statistics.median(r[0] for r in rows), "nfe_forward": sum(r[1] for r in rows) / n,
            "nfe_backward": sum(r[2] for r in rows) / n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=5, help="timed iterations per row")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--save", action="store_true", help="write data/results/latent_ode_benchmark.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    out: dict = {"threads": args.threads, "iters": args.iters, **results.provenance(torch.device("cpu")), "rows": []}

    def report(setting: str, model: str, variant: str, r: dict) -> None:
        out["rows"].append({"setting": setting, "model": model, "variant": variant, **r})
        print(f"{setting:15s} {model:20s} {variant:31s} {r['s_per_iter']:8.3f} s/iter   "
              f"NFE fwd {r['nfe_forward']:7.1f}  bwd {r['nfe_backward']:7.1f}", flush=True)

    # 1. the chapter's full settings
    d = spiral_data.make_spirals(seed=0)
    x, t_obs, idx = spiral_data.observe(d, 100, 0)
    b = d.train[:50]
    lo = LatentODE(rtol=1.5e-8, atol=1.5e-8)
    report("full", "latent ODE", "direct, tol 1.5e-8",
           time_steps(lo, lambda: -lo.elbo(x[b], t_obs[b], idx[b], d.t_window)[0].mean(), args.iters))
    lo5 = LatentODE(rtol=1e-5, atol=1e-6)
    report("full", "latent ODE", "direct, tol 1e-5/1e-6",
           time_steps(lo5, lambda: -lo5.elbo(x[b], t_obs[b], idx[b], d.t_window)[0].mean(), args.iters))
    rnn = RNNBaseline()
    report("full", "RNN", "-", time_steps(rnn, lambda: rnn.nll(x[b], t_obs[b]).mean(), args.iters))

    # 2. the public example's settings: 1000 spirals, full batch, 100 evenly spaced points
    x_all, t_all = d.noisy, d.t_window
    idx_all = torch.arange(100).expand(len(x_all), -1)
    tt_all = t_all.expand(len(x_all), -1)
    gap = float(t_all[1] - t_all[0])
    variants = [("direct", {}), ("adjoint, default norm", {"adjoint": True}),
                ("adjoint, seminorm", {"adjoint": True, "adjoint_options": {"norm": "seminorm"}}),
                ("adjoint, seminorm + first_step", {"adjoint": True,
                                                    "adjoint_options": {"norm": "seminorm", "first_step": gap}})]
    for name, kw in variants:
        ex = ExampleModel(**kw)
        report("public example", "example model", name, time_steps(ex, lambda: ex.loss(x_all, t_all), args.iters))
    for cell, label in (("rnn", "ours, tanh RNN cell"), ("gru", "ours, GRU cell")):
        for name, kw in variants:
            ours = LatentODE(rtol=1e-7, atol=1e-9, adjoint=kw.get("adjoint", False),
                             adjoint_options=kw.get("adjoint_options"), obs_std=0.3, cell=cell)
            report("public example", label, name,
                   time_steps(ours, lambda: -ours.elbo(x_all, tt_all, idx_all, t_all)[0].mean(), args.iters))
    rnn = RNNBaseline(obs_std=0.3)
    report("public example", "RNN", "-", time_steps(rnn, lambda: rnn.nll(x_all, tt_all).mean(), args.iters))
    out["load_average"] = list(os.getloadavg())  # the machine is shared: say how busy it was
    if args.save:
        path = results.save_benchmark("latent_ode", out)
        print(f"-> {path}")


if __name__ == "__main__":
    main()
