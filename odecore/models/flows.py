"""Normalizing flows of Section 4: planar flows (Rezende and Mohamed 2015) and continuous ones.

Planar NF, one layer:  z' = z + u^ h(w^T z + b),  log|det dz'/dz| = log|1 + u^^T h'(w^T z + b) w|,
with h = tanh and the invertibility fix u^ = u + (m(w^T u) - w^T u) w / ||w||^2,
m(x) = -1 + softplus(x), which keeps w^T u^ > -1 so every layer is invertible.

Planar CNF (the paper's, Section 4):  dz/dt = sum_n sigma_n(t) u_n(t) h(w_n(t)^T z + b_n(t)), with
u, w, b and the gate logits produced from t by a small hypernetwork and sigma_n = sigmoid(.) in (0, 1).
Theorem 1 gives d log p(z(t))/dt = -tr(df/dz), and for this f the trace has a closed form,

    tr(df/dz) = sum_n sigma_n u_n^T w_n h'(w_n^T z + b_n),

O(M d) per evaluation, no autograd. `CNFFunc` carries [z, log p] through one solve and can also
use the general exact trace by autograd (one backward pass per dimension, what the authors'
public CNF example does, works for any dynamics) or Hutchinson's unbiased estimator
(one vector-Jacobian product, eps^T (df/dz) eps with eps fixed for the whole solve).
"""
from __future__ import annotations

import math
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from odecore.solve import CountNFE, odesolve

TRACES: tuple[str, ...] = ("closed", "autograd", "hutchinson")


def _dtanh(a: Tensor) -> Tensor:
    return 1 - torch.tanh(a) ** 2


def normal_logpdf(z: Tensor, std: float = 1.0) -> Tensor:
    """log N(z; 0, std^2 I) summed over the last dimension: (batch, d) -> (batch,)."""
    d = z.shape[-1]
    return -0.5 * (z / std).pow(2).sum(-1) - d * (math.log(std) + 0.5 * math.log(2 * math.pi))


# ----------------------------------------------------------------------------------- planar NF
class PlanarFlow(nn.Module):
    """One planar layer z' = z + u^ tanh(w^T z + b) on (batch, dim)."""

    def __init__(self, dim: int, init_std: float = 0.1):
        super().__init__()
        w = torch.randn(dim) / math.sqrt(dim)
        u0 = init_std * torch.randn(dim)
        # Start volume-preserving: pick u with m(w^T u) = 0, i.e. w^T u = log(e - 1), so that
        # u^ = u0 - (w^T u0) w/||w||^2 is orthogonal to w and det = 1. (With u ~ w ~ N(0, s^2) the
        # fix would give w^T u^ = m(0) = -0.31 and every layer would start contracting, which
        # compounds over 64 layers.) ||w|| ~ 1 keeps u itself O(1): with a small w, u would need
        # a large component along w, and u^ would become ill-conditioned in w (RMSprop diverged).
        u = u0 + (math.log(math.e - 1) - w @ u0) * w / (w @ w)
        self.u = nn.Parameter(u)
        self.w = nn.Parameter(w)
        self.b = nn.Parameter(torch.zeros(()))

    def u_hat(self) -> Tensor:
        """The invertibility fix: u^ = u + (m(w^T u) - w^T u) w/||w||^2, so that w^T u^ = m(w^T u) > -1."""
        wu = self.w @ self.u
        m = -1 + F.softplus(wu)
        return self.u + (m - wu) * self.w / (self.w @ self.w).clamp_min(1e-12)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """z: (batch, dim) -> (z', log|det dz'/dz| of shape (batch,))."""
        u = self.u_hat()
        a = z @ self.w + self.b
        z_new = z + u * torch.tanh(a)[:, None]
        logdet = torch.log((1 + _dtanh(a) * (self.w @ u)).abs() + 1e-12)
        return z_new, logdet

    @torch.no_grad()
    def inverse(self, y: Tensor, iters: int = 60) -> Tensor:
        """Solve y = z + u^ tanh(w^T z + b) for z by bisection on the scalar alpha = w^T z.

        w^T y = alpha + (w^T u^) tanh(alpha + b) is increasing in alpha because w^T u^ > -1,
        and tanh is bounded, so alpha lies in [w^T y - |w^T u^|, w^T y + |w^T u^|]."""
        u = self.u_hat()
        wu = self.w @ u
        target = y @ self.w
        lo, hi = target - wu.abs() - 1e-6, target + wu.abs() + 1e-6
        for _ in range(iters):
            mid = (lo + hi) / 2
            too_big = mid + wu * torch.tanh(mid + self.b) > target
            hi = torch.where(too_big, mid, hi)
            lo = torch.where(too_big, lo, mid)
        alpha = (lo + hi) / 2
        return y - u * torch.tanh(alpha + self.b)[:, None]


class PlanarNF(nn.Module):
    """A stack of K planar layers. forward(z) runs them in order and sums the log-determinants."""

    def __init__(self, dim: int, num_layers: int, init_std: float = 0.1):
        super().__init__()
        self.dim = dim
        self.layers = nn.ModuleList(PlanarFlow(dim, init_std) for _ in range(num_layers))

    def forward(self, z: Tensor, num_layers: int | None = None) -> tuple[Tensor, Tensor]:
        """Apply the first `num_layers` layers (all by default). Returns (z_K, sum_k log|det_k|).

        The same arithmetic as calling each PlanarFlow in turn, arranged so that a layer costs three
        operations (addmv, tanh, addr): the invertibility fix, w^T u^ and the log-determinants of
        all K layers are each one batched operation before or after the loop."""
        layers = self.layers[:self._count(num_layers)]
        if len(layers) == 0:
            return z, torch.zeros(z.shape[0], dtype=z.dtype, device=z.device)
        u = torch.stack([layer.u for layer in layers])               # (K, d)
        w = torch.stack([layer.w for layer in layers])
        b = torch.stack([layer.b for layer in layers])               # (K,)
        wu = (w * u).sum(-1)
        u_hat = u + ((-1 + F.softplus(wu) - wu) / (w * w).sum(-1).clamp_min(1e-12))[:, None] * w
        pre = []                                                     # w_k^T z_k + b_k, (batch,) each
        for k in range(len(layers)):
            pre.append(torch.addmv(b[k], z, w[k]))
            z = torch.addr(z, torch.tanh(pre[-1]), u_hat[k])
        a = torch.stack(pre, -1)                                     # (batch, K)
        logdet = torch.log((1 + _dtanh(a) * (w * u_hat).sum(-1)).abs() + 1e-12).sum(-1)
        return z, logdet

    @torch.no_grad()
    def inverse(self, x: Tensor, num_layers: int | None = None) -> Tensor:
        """Undo the last `num_layers` layers (all by default), last layer first.

        When forward() is the normalizing direction (data -> base, as in maximum likelihood),
        inverse(z, k) is the generative flow after its first k steps."""
        k = self._count(num_layers)
        for layer in list(self.layers)[len(self.layers) - k:][::-1]:
            x = layer.inverse(x)
        return x

    def _count(self, num_layers: int | None) -> int:
        """How many layers a call uses: all for None, else 0 .. K (a slice would quietly take a negative or too
        large count to mean something else)."""
        if num_layers is None:
            return len(self.layers)
        if isinstance(num_layers, bool) or not isinstance(num_layers, int) or not 0 <= num_layers <= len(self.layers):
            raise ValueError(f"num_layers must be an int from 0 to {len(self.layers)} (this flow's layers), "
                             f"got {num_layers!r}")
        return num_layers


class StackedPlanarNF(nn.Module):
    """R planar NFs of K layers each, held stacked so that they train at once: u, w of shape (R, K, d), b of
    shape (R, K), and forward on (R, batch, d). Each NF's arithmetic is PlanarNF.forward's, arranged so that a
    layer of all R costs about what a layer of one does: a step of a 2-D flow is per-operation overhead, not
    arithmetic. Built from PlanarNFs; `unstack(r)` gives the r-th as a PlanarNF's state dict."""

    def __init__(self, flows: list[PlanarNF]):
        super().__init__()
        def stacked(name: str) -> nn.Parameter:
            return nn.Parameter(torch.stack([torch.stack([getattr(layer, name).detach() for layer in f.layers])
                                             for f in flows]).clone())

        self.u, self.w, self.b = stacked("u"), stacked("w"), stacked("b")

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """z: (R, batch, d) -> (z_K, sum_k log|det_k| of shape (R, batch))."""
        wu = (self.w * self.u).sum(-1)                                               # (R, K)
        u_hat = self.u + ((-1 + F.softplus(wu) - wu) / (self.w * self.w).sum(-1).clamp_min(1e-12))[..., None] * self.w
        pre = []                                                                     # (R, batch) each
        for k in range(self.u.shape[1]):
            pre.append(torch.baddbmm(self.b[:, k, None, None], z, self.w[:, k, :, None]).squeeze(-1))
            z = torch.baddbmm(z, torch.tanh(pre[-1])[..., None], u_hat[:, k, None, :])
        a = torch.stack(pre, -1)                                                     # (R, batch, K)
        logdet = torch.log((1 + _dtanh(a) * (self.w * u_hat).sum(-1)[:, None, :]).abs() + 1e-12).sum(-1)
        return z, logdet

    def unstack(self, r: int) -> dict[str, Tensor]:
        """The r-th NF's parameters as PlanarNF.state_dict() names them."""
        return {f"layers.{k}.{name}": getattr(self, name)[r, k].detach().clone()
                for k in range(self.u.shape[1]) for name in ("u", "w", "b")}


# ----------------------------------------------------------------------------------- planar CNF
class PlanarHyperNet(nn.Module):
    """t -> (u, w, b, sigma) for M planar units: Linear(1,H)-tanh-Linear(H,H)-tanh-Linear(H, M(2d+2)).

    One output layer for all units (vectorised); sigma_n(t) = sigmoid(gate logit) in (0, 1)."""

    def __init__(self, dim: int, width: int, hidden: int = 32):
        super().__init__()
        self.dim, self.width = dim, width
        self.net = nn.Sequential(nn.Linear(1, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
                                 nn.Linear(hidden, width * (2 * dim + 2)))

    def forward(self, t: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Returns u, w: (M, d); b, sigma: (M,)."""
        t = torch.as_tensor(t, dtype=self.net[0].weight.dtype, device=self.net[0].weight.device)
        p = self.net(t.reshape(1, 1)).reshape(self.width, 2 * self.dim + 2)
        d = self.dim
        return p[:, :d], p[:, d:2 * d], p[:, 2 * d], torch.sigmoid(p[:, 2 * d + 1])


class PlanarCNFDynamics(nn.Module):
    """f(t, z) = sum_n sigma_n(t) u_n(t) tanh(w_n(t)^T z + b_n(t)), the paper's planar CNF, M = width.

    scale="mean" divides the hypernetwork's u by M (the authors' public example averages over
    units): the same family of fields, but the size of f at initialisation and the effect of one
    optimiser step on f no longer grow with M."""

    def __init__(self, dim: int, width: int, hidden: int = 32, scale: str = "sum"):
        super().__init__()
        if scale not in ("sum", "mean"):
            raise ValueError(f"scale must be 'sum' or 'mean', got {scale!r}")
        self.dim, self.width, self.scale = dim, width, scale
        self.hyper = PlanarHyperNet(dim, width, hidden)

    def forward(self, t: Tensor, z: Tensor) -> Tensor:
        """z: (batch, d) -> dz/dt: (batch, d)."""
        return self.velocity_and_trace(t, z, trace=False)[0]

    def velocity_and_trace(self, t: Tensor, z: Tensor, trace: bool = True) -> tuple[Tensor, Tensor | None]:
        """dz/dt and, in closed form, tr(df/dz) = sum_n sigma_n u_n^T w_n tanh'(w_n^T z + b_n): (batch,).

        Written so that only five operations touch a (batch, M) array (addmm, tanh, mm, square, mv):
        the gate is folded into u, and sum_n c_n (1 - h_n^2) = sum_n c_n - h^2 c."""
        u, w, b, sigma = self.hyper(t)
        if self.scale == "mean":
            u = u / self.width
        h = torch.tanh(torch.addmm(b, z, w.T))           # (batch, M)
        f = h @ (sigma[:, None] * u)                     # (batch, d)
        if not trace:
            return f, None
        c = sigma * (u * w).sum(-1)                      # (M,): sigma_n u_n^T w_n
        tr = c.sum() - (h * h) @ c                       # (batch,)
        return f, tr


def trace_autograd(f: Tensor, z: Tensor, create_graph: bool = True) -> Tensor:
    """Exact tr(df/dz) for any f(z) by one backward pass per dimension. f, z: (batch, d) -> (batch,).

    Assumes sample i of f depends only on sample i of z (true of every dynamics here)."""
    tr = torch.zeros(z.shape[0], dtype=z.dtype, device=z.device)
    for i in range(z.shape[1]):
        tr = tr + torch.autograd.grad(f[:, i].sum(), z, create_graph=create_graph, retain_graph=True)[0][:, i]
    return tr


def trace_hutchinson(f: Tensor, z: Tensor, eps: Tensor, create_graph: bool = True) -> Tensor:
    """Hutchinson's estimator eps^T (df/dz) eps, unbiased for E[eps eps^T] = I; (batch,)."""
    vjp = torch.autograd.grad(f, z, eps, create_graph=create_graph)[0]
    return (vjp * eps).sum(-1)


class CNFFunc(nn.Module):
    """Augmented dynamics of Theorem 1 for the state (z, logp): d/dt (z, logp) = (f, -tr(df/dz)).

    Args:
        dynamics: f(t, z); for trace="closed" it must offer velocity_and_trace(t, z).
        trace: "closed" (exact, closed form), "autograd" (exact, d backward passes per
            evaluation) or "hutchinson" (unbiased, one backward pass; call `sample_noise` first).
        noise: "rademacher" or "gaussian" probe vectors for Hutchinson.
    """

    def __init__(self, dynamics: nn.Module, trace: str = "closed", noise: str = "rademacher"):
        super().__init__()
        if trace not in TRACES:
            raise ValueError(f"unknown trace {trace!r}; expected one of {', '.join(TRACES)}")
        if trace == "closed" and not hasattr(dynamics, "velocity_and_trace"):
            raise ValueError(f"{type(dynamics).__name__} has no closed-form trace; use trace='autograd'")
        if noise not in ("rademacher", "gaussian"):
            raise ValueError(f"unknown noise {noise!r}; expected 'rademacher' or 'gaussian'")
        self.dynamics, self.trace, self.noise = dynamics, trace, noise
        self.eps: Tensor | None = None

    def sample_noise(self, z: Tensor, generator: torch.Generator | None = None) -> None:
        """Fix Hutchinson's probe eps (batch, d) for the next solve."""
        eps = torch.randn(z.shape, generator=generator, dtype=z.dtype, device=z.device)
        self.eps = eps.sign() if self.noise == "rademacher" else eps

    def forward(self, t: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        z = state[0]
        if self.trace == "closed":
            f, tr = self.dynamics.velocity_and_trace(t, z)
            return f, -tr
        outer = torch.is_grad_enabled()
        with torch.enable_grad():
            zz = z if z.requires_grad else z.detach().requires_grad_(True)
            f = self.dynamics(t, zz)
            if self.trace == "autograd":
                tr = trace_autograd(f, zz, create_graph=outer)
            else:
                if self.eps is None or self.eps.shape != z.shape:
                    raise ValueError("Hutchinson trace needs sample_noise(z) before the solve")
                tr = trace_hutchinson(f, zz, self.eps, create_graph=outer)
        if not outer:
            f, tr = f.detach(), tr.detach()
        return f, -tr


class CNF(nn.Module):
    """A continuous normalizing flow from a base N(0, base_std^2 I) at t0 to the model at t1.

    Args:
        dynamics: f(t, z), e.g. PlanarCNFDynamics.
        t0, t1: integration interval (the flow maps base samples at t0 to data at t1).
        base_std: standard deviation of the isotropic Gaussian base distribution.
        trace, noise: see CNFFunc.
        rtol, atol, method, adjoint, max_steps: passed to odecore.odesolve; training sets
            max_steps so that a diverging flow raises a SolverError instead of solving for ever.
        options: the solver's options, e.g. {"compile": True} for lean_dopri5.
    """

    def __init__(self, dynamics: nn.Module, *, t0: float = 0.0, t1: float = 1.0, base_std: float = 1.0,
                 trace: str = "closed", noise: str = "rademacher", rtol: float = 1e-5, atol: float = 1e-5,
                 method: str = "dopri5", adjoint: bool = False, max_steps: int | None = None,
                 options: dict | None = None):
        super().__init__()
        self.func = CountNFE(CNFFunc(dynamics, trace, noise))
        self.options = options
        self.t0, self.t1, self.base_std = float(t0), float(t1), float(base_std)
        self.rtol, self.atol, self.method, self.adjoint = rtol, atol, method, adjoint
        self.max_steps = max_steps

    @property
    def odefunc(self) -> CNFFunc:
        return self.func.func

    @property
    def nfe(self) -> int:
        return self.func.nfe

    def _solve(self, z: Tensor, logp: Tensor, times: Tensor) -> tuple[Tensor, Tensor]:
        if self.odefunc.trace == "hutchinson":
            self.odefunc.sample_noise(z)
        times = times.to(dtype=z.dtype, device=z.device)
        return odesolve(self.func, (z, logp), times, rtol=self.rtol, atol=self.atol, method=self.method,
                        options=self.options, adjoint=self.adjoint, max_steps=self.max_steps)

    def base_logpdf(self, z: Tensor) -> Tensor:
        return normal_logpdf(z, self.base_std)

    def sample_base(self, n: int, generator: torch.Generator | None = None, dtype=torch.float32) -> Tensor:
        p = next(self.parameters())
        return self.base_std * torch.randn(n, self.odefunc.dynamics.dim, generator=generator,
                                           dtype=dtype).to(p.device)

    def push(self, z0: Tensor, times: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Base samples z0: (batch, d) forward from t0. Returns z(t) and log q(z(t)) at `times`
        ((T, batch, d), (T, batch)); with times None, only t1 ((batch, d), (batch,))."""
        ts = torch.tensor([self.t0, self.t1]) if times is None else times
        if times is not None and not math.isclose(float(times[0]), self.t0, rel_tol=1e-6, abs_tol=1e-7):   # base at t0
            raise ValueError(f"push: times must start at t0 = {self.t0}, where z0 is drawn, got {float(times[0])}")
        z, logq = self._solve(z0, self.base_logpdf(z0), ts)
        return (z[-1], logq[-1]) if times is None else (z, logq)

    def log_prob(self, x: Tensor, t: float | None = None) -> Tensor:
        """log p_t(x) of the model at time t (default t1), by solving back to t0: (batch,)."""
        t = self.t1 if t is None else float(t)
        if t == self.t0:
            return self.base_logpdf(x)
        z, dl = self._solve(x, torch.zeros(x.shape[0], dtype=x.dtype, device=x.device), torch.tensor([t, self.t0]))
        # dl(t0) = -int_t^t0 tr dt = int_t0^t tr dt, so log p_t(x) = log p_0(z(t0)) - int_t0^t tr dt.
        return self.base_logpdf(z[-1]) - dl[-1]

