"""One entry to the ODE solvers: input validation and function-evaluation counting.

Every solve in the book goes through `odesolve`, so bad input fails here with a ValueError
that names the problem instead of deep inside a solver, and every dynamics function can be
wrapped in `CountNFE` to report how many evaluations a solve (or its backward pass) took.

The solvers are torchdiffeq's, plus `lean_dopri5`: the same Dormand-Prince 5(4) pair and step
controller written as one flat loop. Step sizes are plain floats chosen without building a graph,
and each stage is one fused multiply-add, so backpropagating through the solve costs little more
than backpropagating through the evaluations. That matters for small models, where a step's time
is per-operation overhead and not arithmetic; benchmarks/cnf.py measures it on a CNF training step.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from torch import Tensor, nn
from torchdiffeq import odeint, odeint_adjoint
from torchdiffeq._impl.odeint import SOLVERS

LEAN_DOPRI5 = "lean_dopri5"
METHODS: tuple[str, ...] = tuple(sorted((*SOLVERS, LEAN_DOPRI5)))
State = Tensor | tuple[Tensor, ...]


class CountNFE(nn.Module):
    """Wraps dynamics `func(t, z)` and counts its evaluations in `.nfe`.

    Read `.nfe` after a forward solve for the forward NFE; reset it, call backward, and read it
    again for the backward NFE (the adjoint's backward solve calls the same module).
    """

    def __init__(self, func: Callable[[Tensor, State], State]):
        super().__init__()
        self.func = func
        self.nfe = 0

    def forward(self, t: Tensor, z: State) -> State:
        self.nfe += 1
        return self.func(t, z)

    def reset(self) -> int:
        """Set the count to zero and return what it was."""
        n, self.nfe = self.nfe, 0
        return n


def _leaves(z: State) -> Sequence[Tensor]:
    return z if isinstance(z, tuple) else (z,)


def validate(func: Callable, z0: State, t: Tensor, *, rtol: float, atol: float, method: str) -> None:
    """Raise ValueError naming the first problem with a solve's inputs."""
    if method not in METHODS and method not in SOLVERS:
        raise ValueError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
    for name, tol in (("rtol", rtol), ("atol", atol)):
        if not (isinstance(tol, (int, float)) and math.isfinite(tol) and tol >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {tol!r}")
    if not isinstance(t, Tensor) or t.dim() != 1 or t.numel() < 2:
        shape = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
        raise ValueError(f"t must be a 1-D tensor of at least 2 times, got {shape}")
    if not torch.isfinite(t).all():
        raise ValueError("t contains non-finite values")
    dt = t[1:] - t[:-1]
    if not ((dt > 0).all() or (dt < 0).all()):
        raise ValueError(f"t must be strictly increasing or strictly decreasing, got {t.tolist()}")
    for i, leaf in enumerate(_leaves(z0)):
        if not isinstance(leaf, Tensor):
            raise ValueError(f"z0 must be a tensor or a tuple of tensors, got {type(leaf).__name__}")
        if not torch.isfinite(leaf).all():
            raise ValueError(f"z0{'' if isinstance(z0, Tensor) else f'[{i}]'} contains non-finite values")
        if not leaf.is_floating_point():
            raise ValueError(f"z0 must be floating point, got {leaf.dtype}")
    if isinstance(func, nn.Module):
        for name, p in func.named_parameters():
            if not torch.isfinite(p).all():
                raise ValueError(f"parameter {name!r} of the dynamics contains non-finite values")


def _check_shapes(func: Callable, z0: State, t: Tensor) -> None:
    """Evaluate f once at (t0, z0) and compare shapes, so a mismatch is named, not a broadcast bug."""
    with torch.no_grad():
        f0 = func(t[0], z0)
    if len(_leaves(z0)) != len(_leaves(f0)):
        raise ValueError(f"dynamics returned {len(_leaves(f0))} tensors for a state of {len(_leaves(z0))}")
    for i, (z, f) in enumerate(zip(_leaves(z0), _leaves(f0))):
        if z.shape != f.shape:
            raise ValueError(f"dynamics returned shape {tuple(f.shape)} for state {i} of shape {tuple(z.shape)}")


def odesolve(func: Callable[[Tensor, State], State], z0: State, t: Tensor, *, rtol: float = 1e-7,
             atol: float = 1e-9, method: str = "dopri5", options: dict | None = None,
             adjoint: bool = False, adjoint_options: dict | None = None,
             check_shapes: bool = False) -> State:
    """Solve dz/dt = func(t, z) from z(t[0]) = z0 and return z at every time in t.

    Args:
        func: dynamics; an nn.Module when `adjoint=True` (its parameters get gradients).
        z0: (batch, *dims) initial state, or a tuple of such tensors.
        t: (T,) strictly monotone times; t[0] is the initial time.
        adjoint: take gradients with torchdiffeq's adjoint (O(1) memory in the number of steps)
            instead of backpropagating through the solver's operations.
        adjoint_options: e.g. {"norm": "seminorm"} (Kidger et al. 2021) for the backward solve.
        check_shapes: spend one extra evaluation to check f's output shape against z0.

    Returns:
        (T, batch, *dims) solution, or a tuple of those for a tuple state.

    Raises:
        ValueError: times not strictly monotone, non-finite z0 or parameters, an unknown method,
            a negative tolerance, or (with check_shapes) dynamics of the wrong shape.
    """
    validate(func, z0, t, rtol=rtol, atol=atol, method=method)
    if check_shapes:
        _check_shapes(func, z0, t)
    if method == LEAN_DOPRI5:
        if adjoint:
            raise ValueError("lean_dopri5 backpropagates through its steps; for the adjoint use method='dopri5'")
        unknown = set(options or {}) - {"first_step", "max_steps"}
        if unknown:
            raise ValueError(f"lean_dopri5 takes the options first_step and max_steps, not {sorted(unknown)}")
        return lean_dopri5(func, z0, t, rtol=rtol, atol=atol, **(options or {}))
    if adjoint:
        if not isinstance(func, nn.Module):
            raise ValueError("adjoint=True needs func to be an nn.Module, so its parameters are known")
        return odeint_adjoint(func, z0, t, rtol=rtol, atol=atol, method=method, options=options,
                              adjoint_options=adjoint_options)
    return odeint(func, z0, t, rtol=rtol, atol=atol, method=method, options=options)


# ----------------------------------------------------------------------------------- lean dopri5
# Dormand-Prince 5(4): nodes C, stage weights A (row i builds stage i+1), 5th-order weights A[6]
# (first same as last: the 7th stage is f at the new point), and 5th minus 4th order weights E.
_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
_A = ((), (1 / 5,), (3 / 40, 9 / 40), (44 / 45, -56 / 15, 32 / 9),
      (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
      (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
      (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84))
_E = (35 / 384 - 1951 / 21600, 0.0, 500 / 1113 - 22642 / 50085, 125 / 192 - 451 / 720,
      -2187 / 6784 + 12231 / 42400, 11 / 84 - 649 / 6300, -1 / 60)


def lean_dopri5(func: Callable[[Tensor, State], State], z0: State, t: Tensor, *, rtol: float, atol: float,
                first_step: float | None = None, max_steps: int = 100_000) -> State:
    """Adaptive Dormand-Prince 5(4) with torchdiffeq's controller, stepping exactly onto every time in t.

    Same error norm (RMS per state tensor, the largest of them), initial step (Hairer et al.'s
    rule) and step factors (safety 0.9, between 0.2 and 10, no shrinking after an accepted step)
    as torchdiffeq's dopri5, so NFEs are comparable. Three differences, all for speed: step sizes
    are floats chosen outside the autograd graph (the gradient is that of the solve with its
    steps held fixed, not also through the controller), a step never overshoots an output time
    (no dense-output interpolation), and a stage is one `addmv` over the stacked slopes. The
    times t are read as numbers, so unlike torchdiffeq's solvers it gives no gradient for t.

    Returns what `odesolve` does: (T, *z0.shape), or a tuple of those for a tuple state.
    Raises RuntimeError when the step size underflows or max_steps is exceeded (a stiff or
    diverging problem), instead of looping for ever.
    """
    leaves = _leaves(z0)
    shapes, sizes = [x.shape for x in leaves], [x.numel() for x in leaves]
    tuple_state = isinstance(z0, tuple)

    def unflat(y: Tensor) -> State:
        parts = tuple(p.view(s) for p, s in zip(y.split(sizes), shapes))
        return parts if tuple_state else parts[0]

    def f(ti: float, y: Tensor) -> Tensor:
        out = func(torch.tensor(ti, dtype=y.dtype, device=y.device), unflat(y))
        return torch.cat([o.reshape(-1) for o in out]) if tuple_state else out.reshape(-1)

    def norm(x: Tensor) -> float:
        return max(p.pow(2).mean().sqrt().item() for p in x.split(sizes))

    times = t.tolist()
    y = torch.cat([x.reshape(-1) for x in leaves]) if tuple_state else z0.reshape(-1)
    a_rows = [torch.tensor(a, dtype=y.dtype, device=y.device) for a in _A]
    e_row = torch.tensor(_E, dtype=y.dtype, device=y.device)
    direction = 1.0 if times[-1] > times[0] else -1.0
    k1 = f(times[0], y)
    if first_step is None:                       # Hairer, Norsett and Wanner, II.4
        with torch.no_grad():
            scale = atol + rtol * y.abs()
            d0, d1 = norm(y / scale), norm(k1 / scale)
            h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
            probe = f(times[0] + direction * h0, y + direction * h0 * k1)
            d2 = norm((probe - k1) / scale) / h0
            h1 = max(1e-6, h0 * 1e-3) if max(d1, d2) <= 1e-15 else (0.01 / max(d1, d2)) ** 0.2
            h = min(100 * h0, h1)
    else:
        h = abs(float(first_step))
    out, now, steps = [y], times[0], 0
    for target in times[1:]:
        while (target - now) * direction > 0:
            steps += 1
            if steps > max_steps:
                raise RuntimeError(f"lean_dopri5 took more than {max_steps} steps before t = {target}")
            dt = direction * min(h, abs(target - now))
            if abs(dt) <= 1e-12 * max(1.0, abs(now)):
                raise RuntimeError(f"lean_dopri5 step size underflowed at t = {now}")
            ks = [k1]
            for i in range(1, 7):
                stage = torch.addmv(y, torch.stack(ks, -1), a_rows[i], alpha=dt)
                ks.append(f(now + _C[i] * dt, stage))
            with torch.no_grad():
                error = torch.stack(ks, -1) @ e_row * dt
                ratio = norm(error / (atol + rtol * torch.maximum(y.abs(), stage.abs())))
            if ratio == 0:
                factor = 10.0
            elif math.isfinite(ratio):
                factor = min(10.0, max(0.9 * ratio ** -0.2, 1.0 if ratio < 1 else 0.2))
            else:
                factor = 0.2
            clipped = abs(dt) < h
            if ratio <= 1:                       # accept; the 7th stage is the next step's first
                now = target if abs(dt) == abs(target - now) else now + dt
                y, k1 = stage, ks[6]
            # a step cut short to land on an output time does not shrink the next one
            h = max(h, abs(dt) * factor) if clipped and ratio <= 1 else abs(dt) * factor
        out.append(y)
    sol = torch.stack(out)
    parts = tuple(p.reshape(len(times), *s) for p, s in zip(sol.split(sizes, dim=1), shapes))
    return parts if tuple_state else parts[0]
