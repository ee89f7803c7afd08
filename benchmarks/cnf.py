"""Seconds per CNF training step and NFE: closed-form trace against autograd and Hutchinson.

    python benchmarks/cnf.py [--iters 5] [--threads 1] [--save]

1. Figure 5 settings: planar CNF with M = 64 units (hypernetwork 1-32-32-64(2d+2)), batch 512 of
   Two Circles, rtol = atol = 1e-5 over t in [0, 10], base N(0, 0.1 I) (the chapter's settings,
   which are those of the authors' public CNF example, u averaged over the units as there). One
   model, one set of weights, one set of batches; only the trace changes:
   - closed: tr(df/dz) = sum_n sigma_n u_n^T w_n h'(.) (the paper's planar CNF), no autograd;
   - autograd: exact trace by one backward pass per dimension with create_graph, what the
     authors' public example does (`trace_df_dz`);
   - hutchinson: eps^T (df/dz) eps with one Rademacher eps per solve;
   each with torchdiffeq's dopri5 and with odecore's lean_dopri5 (same pair and controller, less
   overhead per step), and the closed form with torchdiffeq's adjoint. As a reference, a module
   built like the public example's CNF (written here, not copied: it repeats z over the width,
   averages the units, gates each output coordinate, and takes the autograd-loop trace) is timed
   with both solvers. The weights are those of the trained Figure 5 checkpoint (two circles) when
   one is committed, so the NFE is that of a trained model; otherwise the initial weights. Each
   timed step restores the same weights first (forward, backward and Adam step are all timed),
   after one warm-up step. The example's module can only run at its initial weights, where a solve
   takes fewer evaluations, so it is compared per evaluation.
2. Cost against dimension d = 2 ... 64 (Gaussian data, same width and batch), with a fixed-step
   RK4 (10 steps over [0, 1], 40 evaluations forward) so that every method, the example's module
   included, does the same number of evaluations: identical settings, and the time per step
   isolates the cost of the trace and the module.
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from odecore import results  # noqa: E402
from odecore.datasets import toy2d  # noqa: E402
from odecore.experiments import cnf as cnf_exp  # noqa: E402
from odecore.models import flows  # noqa: E402


class ExampleCNFDynamics(nn.Module):
    """Built like the public example's CNF: f = mean_n (u_n * sigmoid(g_n)) tanh(w_n^T z + b_n),
    with the gate per unit and output coordinate, z repeated over the width, batched matmuls."""

    def __init__(self, dim: int, width: int, hidden: int = 32):
        super().__init__()
        self.dim, self.width = dim, width
        self.net = nn.Sequential(nn.Linear(1, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
                                 nn.Linear(hidden, 3 * width * dim + width))

    def forward(self, t, z):
        p = self.net(torch.as_tensor(t, dtype=z.dtype).reshape(1, 1)).reshape(-1)
        n = self.width * self.dim
        w = p[:n].reshape(self.width, self.dim, 1)
        u = p[n:2 * n].reshape(self.width, 1, self.dim) * torch.sigmoid(p[2 * n:3 * n].reshape(self.width, 1, self.dim))
        b = p[3 * n:].reshape(self.width, 1, 1)
        zz = z.unsqueeze(0).repeat(self.width, 1, 1)
        return torch.matmul(torch.tanh(torch.matmul(zz, w) + b), u).mean(0)


def _time_steps(model: flows.CNF, batches: list[torch.Tensor], loss_of) -> dict:
    """Mean seconds per training step (forward, backward, Adam) over `batches`, same start each time."""
    start = copy.deepcopy(model.state_dict())
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    opt_start = copy.deepcopy(opt.state_dict())
    times, nfe_f, nfe_b = [], [], []
    for i, x in enumerate(batches):
        model.load_state_dict(start)
        opt.load_state_dict(opt_start)
        tick = time.perf_counter()
        model.func.reset()
        loss = loss_of(model, x)
        nf = model.func.reset()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        elapsed = time.perf_counter() - tick
        if i > 0:                                    # the first step is a warm-up
            times.append(elapsed)
            nfe_f.append(nf)
            nfe_b.append(model.func.nfe)
    s_per_step, fwd, bwd = sum(times) / len(times), sum(nfe_f) / len(nfe_f), sum(nfe_b) / len(nfe_b)
    return {"s_per_step": s_per_step, "nfe_forward": fwd, "nfe_backward": bwd,
            "ms_per_eval": 1e3 * s_per_step / (fwd + bwd)}


SOLVERS: tuple[str, ...] = ("dopri5", "lean_dopri5")   # torchdiffeq's, and odecore.solve's


def _report(row: dict) -> None:
    print(f"  {row['model']:<22} {row['solver']:<12} trace={row['trace']:<10} adjoint={row['adjoint']!s:<5} "
          f"{row['s_per_step']:.3f} s/step  NFE fwd {row['nfe_forward']:.0f} bwd {row['nfe_backward']:.0f}  "
          f"{row['ms_per_eval']:.2f} ms/evaluation", flush=True)


def figure5_settings(iters: int) -> list[dict]:
    """Every (model, trace, solver) at the Figure 5 settings; ms_per_eval is per forward and backward evaluation."""
    cfg = cnf_exp.MLE_PROFILES["full"]
    spec = cnf_exp.mle_specs(cfg)[0]                    # CNF on two circles
    weights, source = None, "initial weights (seed 0)"
    for profile in ("full", "reduced"):
        record = results.load("cnf_mle", profile)
        run = record and cnf_exp._run(record, "cnf", "two_circles", cfg.cnf_units)
        if run:
            state = torch.load(cnf_exp._ckpt_path("cnf_mle", profile, run["name"]), weights_only=False)
            weights, source = state["model"], f"trained Figure 5 checkpoint ({profile} profile, {run['iterations']} it., trained with {run.get('method', 'dopri5')})"
            break
    batches = [toy2d.sample("two_circles", cfg.batch_size, 100 + i) for i in range(iters + 1)]

    def loss_of(model, x):
        return -model.log_prob(x).mean()

    settings = [(s, trace, False) for s in SOLVERS for trace in ("closed", "autograd", "hutchinson")]
    settings.append(("dopri5", "closed", True))          # lean_dopri5 has no adjoint
    rows = []
    for solver, trace, adjoint in settings:
        torch.manual_seed(0)
        model = cnf_exp.build(spec)
        if weights is not None:
            model.load_state_dict(weights)
        model.odefunc.trace, model.adjoint, model.method = trace, adjoint, solver
        rows.append({"model": "planar CNF (ours)", "trace": trace, "solver": solver, "adjoint": adjoint,
                     "weights": source, **_time_steps(model, batches, loss_of)})
        _report(rows[-1])
    for solver in SOLVERS:
        torch.manual_seed(0)
        example = flows.CNF(ExampleCNFDynamics(2, cfg.cnf_units, cfg.hidden), t1=cfg.t1, base_std=cfg.base_std,
                            trace="autograd", rtol=cfg.rtol, atol=cfg.atol, method=solver)
        rows.append({"model": "public example's CNF", "trace": "autograd", "solver": solver, "adjoint": False,
                     "weights": "initial weights (seed 0)", **_time_steps(example, batches, loss_of)})
        _report(rows[-1])
    return rows


def dimension_sweep(dims: list[int], iters: int, width: int = 64, batch: int = 512,
                    example_max_dim: int = 16) -> list[dict]:
    """Our module with each trace, and the example's module (autograd loop), at the same 40 RK4 evaluations.

    The example's module repeats z over the width and keeps d graphs of that size per evaluation
    (create_graph), about 20 GB at d = 64; it is timed up to example_max_dim."""
    rows = []
    for d in dims:
        batches = [torch.randn(batch, d, generator=torch.Generator().manual_seed(i)) for i in range(iters + 1)]
        for trace in ("closed", "autograd", "hutchinson") + (("example",) if d <= example_max_dim else ()):
            torch.manual_seed(0)
            dynamics = ExampleCNFDynamics(d, width) if trace == "example" else flows.PlanarCNFDynamics(d, width)
            model = flows.CNF(dynamics, t1=1.0, trace="autograd" if trace == "example" else trace)
            row = _time_steps_fixed(model, batches)
            rows.append({"dim": d, "trace": trace, **row})
            print(f"  d={d:<3} trace={trace:<10} {row['s_per_step']:.4f} s/step  NFE fwd {row['nfe_forward']:.0f}",
                  flush=True)
    return rows


def _time_steps_fixed(model: flows.CNF, batches: list[torch.Tensor]) -> dict:
    from odecore.solve import odesolve

    def loss_of(m, x):
        if m.odefunc.trace == "hutchinson":
            m.odefunc.sample_noise(x)
        z, dl = odesolve(m.func, (x, torch.zeros(len(x))), torch.tensor([1.0, 0.0]), method="rk4",
                         options={"step_size": 0.1})
        return -(m.base_logpdf(z[-1]) - dl[-1]).mean()

    return _time_steps(model, batches, loss_of)


def summary(out: dict) -> dict:
    """The ratios the chapter quotes: trace against trace on one model, solver against solver, ours against the example."""
    by = {(r["model"], r["trace"], r["solver"], r["adjoint"]): r for r in out["figure5"]}
    ours = {(t, s): by[("planar CNF (ours)", t, s, False)] for s in SOLVERS for t in ("closed", "autograd")}
    example = {s: by[("public example's CNF", "autograd", s, False)] for s in SOLVERS}
    dims = {(r["dim"], r["trace"]): r["s_per_step"] for r in out["dims"]}
    d_lo = min(r["dim"] for r in out["dims"])
    return {
        # same model, weights, batches and solver: only the trace differs
        "trace_speedup": {s: ours[("autograd", s)]["s_per_step"] / ours[("closed", s)]["s_per_step"] for s in SOLVERS},
        # same model and trace, the solver differs
        "lean_solver_speedup": ours[("closed", "dopri5")]["s_per_step"] / ours[("closed", "lean_dopri5")]["s_per_step"],
        # our closed-form CNF against the example's autograd-loop CNF, per evaluation, each solver
        "example_speedup_per_eval": {s: example[s]["ms_per_eval"] / ours[("closed", s)]["ms_per_eval"] for s in SOLVERS},
        # the same at identical settings: same fixed-step solver, 40 evaluations, batch and width, at the lowest dimension
        "example_speedup_fixed": dims[(d_lo, "example")] / dims[(d_lo, "closed")],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=5, help="timed steps per setting (after 1 warm-up)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dims", default="2,4,8,16,32,64")
    parser.add_argument("--save", action="store_true", help="write data/results/cnf_benchmark.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out: dict = {"threads": args.threads, "iters": args.iters, **results.provenance(torch.device("cpu"))}
    print(f"Figure 5 settings ({args.threads} thread(s), {args.iters} timed steps each):")
    out["figure5"] = figure5_settings(args.iters)
    print("cost against dimension (fixed-step RK4, 40 evaluations forward):")
    out["dims"] = dimension_sweep([int(d) for d in args.dims.split(",")], max(2, args.iters // 2))
    out.update(summary(out))
    for solver in SOLVERS:
        print(f"{solver}: the closed-form trace makes a step {out['trace_speedup'][solver]:.2f}x faster than the "
              f"autograd loop on the same model; per evaluation ours is {out['example_speedup_per_eval'][solver]:.2f}x "
              f"faster than the example's CNF")
    print(f"lean_dopri5 makes the closed-form step {out['lean_solver_speedup']:.2f}x faster than torchdiffeq's dopri5; "
          f"at identical settings (40 RK4 evaluations) ours is {out['example_speedup_fixed']:.2f}x faster than the example's")
    if args.save:
        path = results.save_benchmark("cnf", out)
        print(f"saved {path}")


if __name__ == "__main__":
    main()
