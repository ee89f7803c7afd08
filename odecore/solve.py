"""One entry to torchdiffeq: input validation and function-evaluation counting.

Every solve in the book goes through `odesolve`, so bad input fails here with a ValueError
that names the problem instead of deep inside a solver, and every dynamics function can be
wrapped in `CountNFE` to report how many evaluations a solve (or its backward pass) took.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from torch import Tensor, nn
from torchdiffeq import odeint, odeint_adjoint
from torchdiffeq._impl.odeint import SOLVERS

METHODS: tuple[str, ...] = tuple(sorted(SOLVERS))
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
    if method not in SOLVERS:
        raise ValueError(f"unknown method {method!r}; torchdiffeq offers {', '.join(METHODS)}")
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
    if adjoint:
        if not isinstance(func, nn.Module):
            raise ValueError("adjoint=True needs func to be an nn.Module, so its parameters are known")
        return odeint_adjoint(func, z0, t, rtol=rtol, atol=atol, method=method, options=options,
                              adjoint_options=adjoint_options)
    return odeint(func, z0, t, rtol=rtol, atol=atol, method=method, options=options)
