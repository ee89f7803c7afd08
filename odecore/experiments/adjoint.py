"""The adjoint chapter (Section 2, Algorithm 1, Appendix B): checks and measurements.

Three questions, answered by running code:
1. Are Algorithm 1's gradients right? Compared, in float64, with direct backprop through the
   solver, torchdiffeq's adjoint, central finite differences, and (linear ODE) the closed form.
2. Is the adjoint's memory constant in the number of solver steps? Peak memory of one gradient
   computation against fixed-step counts, for direct backprop, torchdiffeq's adjoint and Algorithm 1.
3. What does the adjoint cost and how accurate is it? Gradient error against a tight reference,
   and backward against forward NFE, across tolerances, for dopri5 (with and without the
   seminorm of Kidger et al. 2021) and scipy's LSODA (an Adams/BDF solver, as the authors used).

`run(profile)` stores every number in the record; the chapter's tables and figures are drawn from it
by `odecore.figures.adjoint`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn
from torch.profiler import ProfilerActivity, profile

from odecore import profiles, results
from odecore.adjoint import adjoint_odeint, augmented_dynamics
from odecore.models.adjoint import LinearDynamics, MLPDynamics
from odecore.solve import CountNFE, odesolve
from odecore.train import seed_everything

EXPERIMENT = "adjoint"
EXPERIMENTS = (EXPERIMENT,)

# solver name in the book -> (torchdiffeq method, options, adjoint_options)
SOLVERS: dict[str, tuple[str, dict, dict]] = {
    "dopri5": ("dopri5", {}, {}),
    "dopri5 + seminorm": ("dopri5", {}, {"norm": "seminorm"}),
    "scipy LSODA": ("scipy_solver", {"solver": "LSODA"}, {}),
}


@dataclass(frozen=True)
class Config:
    seed: int = 0
    # 1. gradient checks (float64)
    check_rtol: float = 1e-10
    check_batch: int = 3
    check_dim: int = 2
    check_hidden: int = 16
    check_times: tuple[float, ...] = (0.0, 0.3, 0.7, 1.2)
    fd_eps: float = 1e-6
    # 2. memory against steps
    memory_steps: tuple[int, ...] = (10, 20, 50, 100, 200, 500, 1000)
    memory_batch: int = 256
    memory_dim: int = 64
    memory_hidden: int = 256
    memory_method: str = "rk4"
    # 3. tolerance sweep (float64)
    sweep_rtols: tuple[float, ...] = (1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8)
    sweep_reference_rtol: float = 1e-12
    sweep_solvers: tuple[str, ...] = tuple(SOLVERS)
    sweep_batch: int = 16
    sweep_dim: int = 8
    sweep_hidden: int = 32
    sweep_t1: float = 2.0
    # does the seminorm matter for wider nets or larger states? (dim, hidden) pairs, at two tolerances
    seminorm_sizes: tuple[tuple[int, int], ...] = ((8, 32), (8, 256), (32, 256), (64, 64))
    seminorm_rtols: tuple[float, ...] = (1e-4, 1e-6)


PROFILES: dict[str, Config] = {
    "smoke": Config(check_hidden=8, memory_steps=(5, 20), memory_batch=32, memory_dim=16,
                    memory_hidden=32, sweep_rtols=(1e-3, 1e-5), sweep_reference_rtol=1e-9,
                    sweep_batch=4, sweep_dim=4, sweep_hidden=8, sweep_t1=1.0,
                    seminorm_sizes=((4, 8),), seminorm_rtols=(1e-4,)),
    "full": Config(),
}


# ---------------------------------------------------------------------------------------------
# 1. gradient checks

def _inputs(func: nn.Module, z0: Tensor, t: Tensor) -> list[Tensor]:
    return [z0, t, *func.parameters()]


def gradients(solve: Callable[[nn.Module, Tensor, Tensor], Tensor], func: nn.Module, z0: Tensor,
              t: Tensor, weights: Tensor) -> list[Tensor]:
    """dL/d(z0, t, params) for L = sum(weights * z(t)), the gradient of a 'solve' method."""
    inputs = _inputs(func, z0, t)
    for x in inputs:
        x.grad = None
    (solve(func, z0, t) * weights).sum().backward()
    return [x.grad.detach().clone() for x in inputs]


def finite_differences(loss: Callable[[], Tensor], inputs: list[Tensor], eps: float) -> list[Tensor]:
    """Central differences of `loss()` with respect to every entry of every input."""
    out = []
    with torch.no_grad():
        for x in inputs:
            g = torch.zeros_like(x)
            flat, gflat = x.view(-1), g.view(-1)
            for i in range(flat.numel()):
                keep = flat[i].item()
                flat[i] = keep + eps
                up = loss().item()
                flat[i] = keep - eps
                down = loss().item()
                flat[i] = keep
                gflat[i] = (up - down) / (2 * eps)
            out.append(g)
    return out


def max_error(a: list[Tensor], b: list[Tensor]) -> tuple[float, float]:
    """(max absolute, max relative to the largest entry of b) difference over all inputs."""
    diff = max((x - y).abs().max().item() for x, y in zip(a, b))
    scale = max(y.abs().max().item() for y in b)
    return diff, diff / scale


def check_problem(cfg: Config, name: str) -> dict:
    """Gradients of one problem by every method, and Algorithm 1's error against each."""
    torch.manual_seed(cfg.seed)
    t = torch.tensor(cfg.check_times, dtype=torch.float64, requires_grad=True)
    z0 = torch.randn(cfg.check_batch, cfg.check_dim, dtype=torch.float64, requires_grad=True)
    if name == "linear":
        A = torch.randn(cfg.check_dim, cfg.check_dim, dtype=torch.float64) * 0.7
        func = LinearDynamics(A)
    else:
        func = MLPDynamics(cfg.check_dim, cfg.check_hidden).double()
    weights = torch.randn(len(cfg.check_times), cfg.check_batch, cfg.check_dim, dtype=torch.float64)
    tol = dict(rtol=cfg.check_rtol, atol=cfg.check_rtol)
    methods = {
        "alg1": lambda f, z, s: adjoint_odeint(f, z, s, **tol),
        "direct": lambda f, z, s: odesolve(f, z, s, **tol),
        "torchdiffeq_adjoint": lambda f, z, s: odesolve(f, z, s, adjoint=True, **tol),
    }
    grads = {k: gradients(m, func, z0, t, weights) for k, m in methods.items()}
    if name == "linear":
        def closed_form(f: nn.Module, z: Tensor, s: Tensor) -> Tensor:
            expm = torch.linalg.matrix_exp(f.A * (s - s[0]).reshape(-1, 1, 1))  # (T, d, d)
            return torch.einsum("tij,bj->tbi", expm, z)
        grads["closed_form"] = gradients(closed_form, func, z0, t, weights)
    loss = lambda: (odesolve(func, z0, t, **tol) * weights).sum()  # noqa: E731
    grads["finite_differences"] = finite_differences(loss, _inputs(func, z0, t), cfg.fd_eps)
    out = {}
    for k in grads:
        if k == "alg1":
            continue
        abs_err, rel_err = max_error(grads["alg1"], grads[k])
        out[k] = {"max_abs": abs_err, "max_rel": rel_err}
    out["n_inputs"] = sum(x.numel() for x in _inputs(func, z0, t))
    out["dL_dt"] = grads["alg1"][1].tolist()
    return out


# ---------------------------------------------------------------------------------------------
# 2. memory against solver steps

def peak_memory(fn: Callable[[], None], device: torch.device) -> int:
    """Peak bytes allocated by torch while `fn` runs, above what was allocated before it.

    CUDA: the caching allocator's peak counter. CPU: torch.profiler's memory events, which
    record every allocation and free of torch's CPU allocator with its size; the running sum
    in time order is the memory in use, and its maximum is the peak.
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - base
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]")
    in_use = peak = 0
    for _, nbytes in events:
        in_use += nbytes
        peak = max(peak, in_use)
    return peak


def memory_against_steps(cfg: Config, device: torch.device) -> list[dict]:
    torch.manual_seed(cfg.seed)
    func = MLPDynamics(cfg.memory_dim, cfg.memory_hidden).to(device)
    z0 = torch.randn(cfg.memory_batch, cfg.memory_dim, device=device)
    t = torch.tensor([0.0, 1.0], device=device)
    solves = {
        "direct": lambda n: odesolve(func, z0, t, method=cfg.memory_method, options={"step_size": 1.0 / n}),
        "adjoint": lambda n: odesolve(func, z0, t, method=cfg.memory_method, adjoint=True,
                                      options={"step_size": 1.0 / n}),
        "alg1": lambda n: adjoint_odeint(func, z0, t, method=cfg.memory_method,
                                         options={"step_size": 1.0 / n}),
    }
    for solve in solves.values():  # warm-up: first calls pay one-off allocation and dispatch costs
        solve(cfg.memory_steps[0])[-1].pow(2).mean().backward()
    rows = []
    for steps in cfg.memory_steps:
        for name, solve in solves.items():
            def step(n: int = steps, solve=solve) -> None:
                func.zero_grad(set_to_none=True)
                solve(n)[-1].pow(2).mean().backward()
            tick = time.perf_counter()
            peak = peak_memory(step, device)
            rows.append({"method": name, "steps": steps, "peak_mib": peak / 2**20,
                         "time_s": time.perf_counter() - tick})
    return rows


# ---------------------------------------------------------------------------------------------
# 3. tolerance sweep: gradient error and NFE

def tolerance_sweep(cfg: Config) -> list[dict]:
    torch.manual_seed(cfg.seed + 1)
    func = CountNFE(MLPDynamics(cfg.sweep_dim, cfg.sweep_hidden, gain=2.0).double())
    z0 = torch.randn(cfg.sweep_batch, cfg.sweep_dim, dtype=torch.float64)
    t = torch.tensor([0.0, cfg.sweep_t1], dtype=torch.float64)
    target = torch.randn(cfg.sweep_batch, cfg.sweep_dim, dtype=torch.float64)

    def grad(rtol: float, solver: str, adjoint: bool) -> tuple[Tensor, int, int]:
        method, options, adjoint_options = SOLVERS[solver]
        func.zero_grad(set_to_none=True)
        func.reset()
        z = odesolve(func, z0, t, rtol=rtol, atol=rtol, method=method, options=options,
                     adjoint=adjoint, adjoint_options=adjoint_options)
        forward = func.reset()
        (z[-1] - target).pow(2).mean().backward()
        backward = func.reset()
        return torch.cat([p.grad.reshape(-1) for p in func.parameters()]), forward, backward

    reference, _, _ = grad(cfg.sweep_reference_rtol, "dopri5", adjoint=False)
    rows = []
    for solver in cfg.sweep_solvers:
        for rtol in cfg.sweep_rtols:
            for adjoint in (True, False):
                if not adjoint and solver != "dopri5":
                    continue  # direct backprop: one row, for comparison; scipy has no autograd path
                g, forward, backward = grad(rtol, solver, adjoint)
                rows.append({"solver": solver if adjoint else "dopri5 (direct backprop)", "rtol": rtol,
                             "nfe_forward": forward, "nfe_backward": backward,
                             "grad_rel_error": ((g - reference).norm() / reference.norm()).item()})
    return rows


def seminorm_against_size(cfg: Config) -> list[dict]:
    """Backward NFE with the default norm and with the seminorm, for several network sizes."""
    rows = []
    for dim, hidden in cfg.seminorm_sizes:
        torch.manual_seed(cfg.seed + 1)
        func = CountNFE(MLPDynamics(dim, hidden, gain=2.0).double())
        z0 = torch.randn(cfg.sweep_batch, dim, dtype=torch.float64)
        t = torch.tensor([0.0, cfg.sweep_t1], dtype=torch.float64)
        for rtol in cfg.seminorm_rtols:
            row = {"dim": dim, "hidden": hidden, "rtol": rtol}
            for name in ("dopri5", "dopri5 + seminorm"):
                func.reset()
                z = odesolve(func, z0, t, rtol=rtol, atol=rtol, adjoint=True, adjoint_options=SOLVERS[name][2])
                row["nfe_forward"] = func.reset()
                z[-1].pow(2).mean().backward()
                row[f"nfe_backward {name}"] = func.reset()
            rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------
# Figure 2: the forward solve and the backward augmented solve, from an actual run

def figure2_run(cfg: Config) -> dict:
    """A 2-D neural ODE observed at several times; a(t) solved backwards with its jumps."""
    torch.manual_seed(cfg.seed + 2)
    func = MLPDynamics(2, 16, gain=1.5).double()
    params = tuple(func.parameters())
    z0 = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    t_obs = torch.tensor([0.0, 0.6, 1.1, 1.5, 2.0], dtype=torch.float64)
    target = torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    with torch.no_grad():
        z_obs = odesolve(func, z0, t_obs)
    grad_obs = 2 * (z_obs - target)  # L = sum_i ||z(t_i) - target||^2
    grad_obs[0] = 0
    augmented = augmented_dynamics(func, params)
    a = grad_obs[-1]
    state = (z_obs[-1], a, *[torch.zeros_like(p) for p in params], torch.zeros(1, dtype=torch.float64))
    t_dense, z_dense, a_dense = [], [], []
    for i in range(len(t_obs) - 1, 0, -1):
        grid = torch.linspace(float(t_obs[i]), float(t_obs[i - 1]), 40, dtype=torch.float64)
        with torch.no_grad():
            sol = odesolve(augmented, state, grid)
        t_dense.append(grid)
        z_dense.append(sol[0][:, 0])
        a_dense.append(sol[1][:, 0])
        state = tuple(s[-1] for s in sol)
        state = (state[0], state[1] + grad_obs[i - 1], *state[2:])
    with torch.no_grad():
        t_fwd = torch.linspace(0.0, 2.0, 200, dtype=torch.float64)
        z_fwd = odesolve(func, z0, t_fwd)[:, 0]
    return {"t_obs": t_obs.tolist(), "z_obs": z_obs[:, 0].tolist(), "grad_obs": grad_obs[:, 0].tolist(),
            "t_forward": t_fwd.tolist(), "z_forward": z_fwd.tolist(),
            "t_backward": torch.cat(t_dense).tolist(), "z_backward": torch.cat(z_dense).tolist(),
            "a_backward": torch.cat(a_dense).tolist()}


# ---------------------------------------------------------------------------------------------

def compute(cfg: Config) -> dict:
    seed_everything(cfg.seed)
    device = profiles.device()
    return {
        "checks": {name: check_problem(cfg, name) for name in ("linear", "neural")},
        "memory": memory_against_steps(cfg, device),
        "memory_device": device.type,
        "memory_method": ("torch.cuda.max_memory_allocated" if device.type == "cuda"
                          else "torch.profiler memory events (peak of the running sum of CPU allocations)"),
        "sweep": tolerance_sweep(cfg),
        "seminorm_sizes": seminorm_against_size(cfg),
        "figure2": figure2_run(cfg),
    }


def run(profile: str | None = None) -> list[results.Record]:
    """The chapter's one record for `profile` (cached when the config matches)."""
    profile = profiles.check(profile or profiles.current(EXPERIMENT))
    cfg = PROFILES[profile]
    return [results.cached(EXPERIMENT, profile, cfg, lambda: compute(cfg), seeds=[cfg.seed])]


def scoreboard(record: dict) -> list[dict]:
    from odecore.figures.adjoint import memory_slope, table_sweep   # here: the experiment needs no plotting

    m = record["metrics"]
    neural = m["checks"]["neural"]
    rows = [
        {"item": "Algorithm 1", "quantity": "max rel. gradient error vs direct backprop (neural ODE, float64)",
         "paper": None, "ours": neural["direct"]["max_rel"], "unit": "", "tolerance": None},
        {"item": "Algorithm 1", "quantity": "max rel. gradient error vs finite differences",
         "paper": None, "ours": neural["finite_differences"]["max_rel"], "unit": "", "tolerance": None},
        {"item": "Figure 2", "quantity": "adjoint peak memory growth (MiB per solver step)",
         "paper": 0.0, "ours": memory_slope(record, "adjoint"), "unit": "MiB/step", "tolerance": 0.01,
         "note": "paper claims O(1) memory"},
        {"item": "Figure 2", "quantity": "direct backprop peak memory growth (MiB per solver step)",
         "paper": None, "ours": memory_slope(record, "direct"), "unit": "MiB/step", "tolerance": None},
    ]
    sweep = table_sweep(record)
    for solver in ("dopri5", "scipy LSODA"):
        ratio = sweep[sweep["solver"] == solver]["backward/forward"].median()
        rows.append({"item": "Figure 3",
                     "quantity": f"backward / forward NFE, {solver}, untrained toy MLP (median over rtol; the paper's "
                                 "'about half' is the trained ODE-Net's, judged in the MNIST rows)",
                     "paper": None, "ours": float(ratio), "unit": ""})
    return rows


if __name__ == "__main__":
    import sys

    from odecore.experiments import main

    sys.exit(main(chapter="adjoint"))
