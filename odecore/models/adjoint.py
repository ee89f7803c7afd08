"""Section 2's dynamics: the small neural and linear ODEs the adjoint chapter checks gradients,
memory and cost on (the linear one has closed-form gradients)."""
from __future__ import annotations

import torch
from torch import Tensor, nn


class MLPDynamics(nn.Module):
    """f(z, t) = W2 tanh(W1 [z, t] + b1) + b2: time-dependent, so dL/dt is non-trivial."""

    def __init__(self, dim: int, hidden: int, gain: float = 1.0):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim + 1, hidden), nn.Tanh(), nn.Linear(hidden, dim))
        with torch.no_grad():
            self.net[2].weight.mul_(gain)

    def forward(self, t: Tensor, z: Tensor) -> Tensor:
        return self.net(torch.cat([z, t.expand(z.shape[0], 1)], dim=1))


class LinearDynamics(nn.Module):
    """dz/dt = z A^T: solution z(t) = z0 expm(A (t - t0))^T, so gradients have a closed form."""

    def __init__(self, A: Tensor):
        super().__init__()
        self.A = nn.Parameter(A.clone())

    def forward(self, t: Tensor, z: Tensor) -> Tensor:
        return z @ self.A.T
