"""Algorithm 1 of the paper, written out: gradients of an ODE solution by the adjoint method.

This module exists to be read beside the adjoint chapter; models use torchdiffeq's own adjoint
(`odesolve(..., adjoint=True)`). Forward, z(t_i) is computed by torchdiffeq's plain `odeint`
under no_grad, so nothing is stored but the outputs. Backward, one augmented state

    [z(t), a(t), a_theta(t), a_t(t)],  a(t) = dL/dz(t),

is solved from t_N back to t_0 with dynamics

    dz/dt = f(z, t, theta)
    da/dt = -a^T df/dz
    da_theta/dt = -a^T df/dtheta
    da_t/dt = -a^T df/dt

starting from [z(t_N), dL/dz(t_N), 0, -dL/dt_N]. Every part of the augmented state stays in z's
dtype (a float32 state with float64 times is solved in float32, as torchdiffeq's adjoint does). With several output times the solve is broken
at each t_i, where dL/dz(t_i) is added to a (Algorithm 1) and the direct time gradient
dL/dt_i = dL/dz(t_i)^T f(z(t_i), t_i) is recorded and subtracted from a_t (Algorithm 2,
Appendix B). At t_0: dL/dz0 = a(t_0), dL/dtheta = a_theta(t_0), dL/dt_0 = a_t(t_0).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torchdiffeq import odeint
from torchdiffeq._impl.odeint import SOLVERS

from odecore.solve import CheckedDynamics, run_torchdiffeq, validate


def _vjp(func: nn.Module, t: Tensor, z: Tensor, a: Tensor, params: tuple[Tensor, ...]):
    """f(z, t) and the vector-Jacobian products -a^T df/dz, -a^T df/dtheta, -a^T df/dt."""
    with torch.enable_grad():
        z = z.detach().requires_grad_(True)
        t = t.detach().requires_grad_(True)
        f = func(t, z)
        grads = torch.autograd.grad(f, (z, t, *params), -a, allow_unused=True)
    grads = [torch.zeros_like(x) if g is None else g for g, x in zip(grads, (z, t, *params))]
    return f.detach(), grads[0], grads[1], grads[2:]


def augmented_dynamics(func: nn.Module, params: tuple[Tensor, ...]):
    """The backward system of Algorithm 1 on the state (z, a, *a_theta, a_t)."""

    def augmented(s: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        f, da, dt, dtheta = _vjp(func, s, state[0], state[1], params)
        return (f, da, *dtheta, dt.reshape(1).to(state[-1].dtype))   # dt is in t's dtype

    return augmented


class _Algorithm1(torch.autograd.Function):
    @staticmethod
    def forward(ctx, func: nn.Module, rtol: float, atol: float, method: str, options: dict | None,
                z0: Tensor, t: Tensor, *params: Tensor) -> Tensor:
        with torch.no_grad():
            z = run_torchdiffeq(odeint, method, CheckedDynamics(func, z0), z0, t, rtol=rtol, atol=atol,
                                options=options)
        ctx.func, ctx.rtol, ctx.atol, ctx.method, ctx.options = func, rtol, atol, method, options
        ctx.save_for_backward(t, z, *params)
        return z

    @staticmethod
    def backward(ctx, grad_z: Tensor):
        t, z, *params = ctx.saved_tensors
        func, params = ctx.func, tuple(params)
        n = len(t)
        augmented = augmented_dynamics(func, params)
        a = grad_z[-1]
        a_theta = [torch.zeros_like(p) for p in params]
        grad_t = torch.zeros_like(t)
        with torch.no_grad():
            grad_t[-1] = (a * func(t[-1], z[-1])).sum()
        a_t = -grad_t[-1].reshape(1).to(z.dtype)        # in z's dtype, not t's: see the module docstring
        for i in range(n - 1, 0, -1):
            state = (z[i], a, *a_theta, a_t)
            with torch.no_grad():
                sol = run_torchdiffeq(odeint, ctx.method, augmented, state, torch.stack([t[i], t[i - 1]]),
                                      rtol=ctx.rtol, atol=ctx.atol, options=ctx.options)
            a = sol[1][-1] + grad_z[i - 1]               # Algorithm 1: add dL/dz(t_{i-1})
            a_theta = [s[-1] for s in sol[2:2 + len(params)]]
            a_t = sol[-1][-1]
            if i - 1 > 0:                                # Algorithm 2: direct time gradient of t_{i-1}
                with torch.no_grad():
                    grad_t[i - 1] = (grad_z[i - 1] * func(t[i - 1], z[i - 1])).sum()
                a_t = a_t - grad_t[i - 1]
        grad_t[0] = a_t.squeeze(0)
        return (None, None, None, None, None, a, grad_t, *a_theta)


def adjoint_odeint(func: nn.Module, z0: Tensor, t: Tensor, *, rtol: float = 1e-7, atol: float = 1e-9,
                   method: str = "dopri5", options: dict | None = None) -> Tensor:
    """Solve dz/dt = func(t, z) with gradients for z0, t and func's parameters by Algorithm 1.

    Args:
        func: nn.Module dynamics, func(t, z) -> dz/dt of z's shape.
        z0: (batch, dim) initial state (a single tensor).
        t: (T,) strictly monotone output times.
        options: solver options, e.g. {"step_size": 0.01} for a fixed-step method; used forwards
            and for the backward augmented solve.

    Returns:
        (T, batch, dim) solution; memory held for backward is the T outputs only.

    Raises:
        ValueError: bad input (see odecore.solve.validate), or a method torchdiffeq does not have.
        SolverError: a forward or backward solve failed (step size underflow, NaN dynamics).
    """
    if not isinstance(func, nn.Module):
        raise ValueError("adjoint_odeint needs func to be an nn.Module, so its parameters are known")
    if not isinstance(z0, Tensor):
        raise ValueError("adjoint_odeint takes a single tensor z0; use odesolve(adjoint=True) for tuples")
    validate(func, z0, t, rtol=rtol, atol=atol, method=method)
    if method not in SOLVERS:
        raise ValueError(f"adjoint_odeint solves with torchdiffeq, which has no {method!r}; use method='dopri5'")
    params = tuple(p for p in func.parameters() if p.requires_grad)
    return _Algorithm1.apply(func, rtol, atol, method, options, z0, t, *params)
