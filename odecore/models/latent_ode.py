"""The latent ODE of Section 5, its RNN baseline, and the Poisson process likelihood.

Latent ODE (Figure 6 of the paper): an RNN reads the observations backwards, with the time gap
between each observation and the one read next, and gives q(z_t0) = N(mu, sigma^2); one sample
z_t0 is pushed through dz/dt = f(z) by a single ODE solve that returns z at every time asked for,
and a decoder maps each z(t_i) to the mean of a Gaussian over x(t_i). Training maximises the ELBO

    E_q[ sum_i log N(x_i | dec(z(t_i)), sigma_x^2) ] - KL(q(z_t0) || N(0, I)).

The RNN baseline reads the observations forwards and predicts each next observation from the
hidden state and the time gap to it; it is trained on the Gaussian negative log-likelihood of
those predictions (the same fixed sigma_x, so the two models' likelihoods are comparable).

The Poisson variant decodes log lambda(z(t)) from the latent state and carries
Lambda(t) = int_0^t lambda(z(s)) ds in the same solve, so that
log p(t_1..t_N) = sum_i log lambda(z(t_i)) - Lambda(T) costs one solve.

Shapes: observations x (batch, n, obs_dim), their times t_obs (batch, n) measured from the window
start t = 0, which is also the time z_t0 refers to.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from odecore.solve import CountNFE, odesolve

MODELS = ("rnn", "latent_ode")                         # Table 2's two models, in the paper's order
NAMES = {"rnn": "RNN", "latent_ode": "latent ODE"}     # as tables and figures print them

LOG_2PI = math.log(2 * math.pi)


def gaussian_log_prob(x: Tensor, mean: Tensor, std: float | Tensor) -> Tensor:
    """Elementwise log N(x | mean, std^2)."""
    std = torch.as_tensor(std, dtype=x.dtype, device=x.device)
    return -0.5 * (LOG_2PI + 2 * torch.log(std) + ((x - mean) / std) ** 2)


def kl_standard_normal(mean: Tensor, std: Tensor) -> Tensor:
    """KL(N(mean, std^2) || N(0, I)) summed over the last dimension."""
    return (0.5 * (std ** 2 + mean ** 2 - 1) - torch.log(std)).sum(-1)


class ODEFunc(nn.Module):
    """Latent dynamics f(z): one hidden layer (the paper: 20 units). Autonomous: t is ignored.

    forward applies the layers' weights directly rather than calling the Sequential: a solve calls
    f about a hundred times per iteration on a (batch, 4) state, where each module call costs
    about as much as the arithmetic."""

    def __init__(self, latent_dim: int = 4, hidden: int = 20):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(latent_dim, hidden), nn.Tanh(), nn.Linear(hidden, latent_dim))

    def forward(self, t: Tensor, z: Tensor) -> Tensor:
        first, _, last = self.net
        return F.linear(torch.tanh(F.linear(z, first.weight, first.bias)), last.weight, last.bias)


def gaps_backward(t_obs: Tensor) -> Tensor:
    """(batch, n) gap from each observation back to the one before it; the first one's is to t = 0."""
    prev = torch.cat([torch.zeros_like(t_obs[:, :1]), t_obs[:, :-1]], dim=1)
    return t_obs - prev


def rnn_cell(kind: str, input_size: int, hidden: int) -> nn.Module:
    """"gru" (gated; the default) or "rnn" (a plain tanh cell, as in the authors' public example)."""
    if kind == "gru":
        return nn.GRUCell(input_size, hidden)
    if kind == "rnn":
        return nn.RNNCell(input_size, hidden, nonlinearity="tanh")
    raise ValueError(f"unknown cell {kind!r}; expected 'gru' or 'rnn'")


def run_cell(cell: nn.Module, inputs: Tensor, h0: Tensor) -> Tensor:
    """Every hidden state (batch, n, hidden) of `cell` (an nn.GRUCell or tanh nn.RNNCell) over inputs
    (batch, n, input_size) from h0 (batch, hidden).

    torch's fused recurrence with the cell's own weights: the same arithmetic as calling the cell
    n times (bit for bit), in one call instead of a Python loop of n."""
    recurrence = torch.gru if isinstance(cell, nn.GRUCell) else torch.rnn_tanh
    params = [cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh]
    states, _ = recurrence(inputs, h0[None], params, True, 1, 0.0, cell.training, False, True)
    return states


class Encoder(nn.Module):
    """Recognition RNN: reads (x_i, t_i - t_{i-1}) for i = n-1 .. 0 and returns (mu, sigma) of q(z_t0).

    The last step read is the first observation with its distance to t = 0, so the state knows
    how far back z_t0 lies. A GRU cell by default (gated, so 25 units carry information over 100
    steps); cell="rnn" gives the plain tanh cell, about three times cheaper per step.
    """

    def __init__(self, obs_dim: int = 2, hidden: int = 25, latent_dim: int = 4, cell: str = "gru"):
        super().__init__()
        self.hidden = hidden
        self.cell = rnn_cell(cell, obs_dim + 1, hidden)
        self.out = nn.Linear(hidden, 2 * latent_dim)

    def forward(self, x: Tensor, t_obs: Tensor) -> tuple[Tensor, Tensor]:
        inputs = torch.cat([x, gaps_backward(t_obs)[..., None]], dim=-1)
        h = run_cell(self.cell, inputs.flip(1), x.new_zeros(x.shape[0], self.hidden))[:, -1]
        mean, raw = self.out(h).chunk(2, dim=-1)
        return mean, nn.functional.softplus(raw) + 1e-4


class Decoder(nn.Module):
    """z(t) -> observation mean (or log intensity): one hidden layer (the paper: 20 units)."""

    def __init__(self, latent_dim: int = 4, hidden: int = 20, out_dim: int = 2):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(latent_dim, hidden), nn.Tanh(), nn.Linear(hidden, out_dim))

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


class LatentODE(nn.Module):
    """Encoder -> q(z_t0) -> one ODE solve -> decoder (Figure 6 of the paper)."""

    def __init__(self, obs_dim: int = 2, latent_dim: int = 4, rnn_hidden: int = 25,
                 dynamics_hidden: int = 20, decoder_hidden: int = 20, *, obs_std: float = 0.1,
                 rtol: float = 1e-5, atol: float = 1e-6, method: str = "dopri5", adjoint: bool = False,
                 adjoint_options: dict | None = None, cell: str = "gru"):
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = Encoder(obs_dim, rnn_hidden, latent_dim, cell)
        self.func = CountNFE(ODEFunc(latent_dim, dynamics_hidden))
        self.decoder = Decoder(latent_dim, decoder_hidden, obs_dim)
        self.obs_std = obs_std
        self.solver = {"rtol": rtol, "atol": atol, "method": method, "adjoint": adjoint,
                       "adjoint_options": adjoint_options}

    def latent_path(self, z0: Tensor, t: Tensor, **solver) -> Tensor:
        """(batch, len(t), latent_dim): z at every time of the 1-D grid t (t[0] = 0), one solve."""
        if float(t[0]) != 0.0:     # z0 is the state at the window start, t = 0
            raise ValueError(f"t must start at 0, the time z0 refers to, got t[0] = {float(t[0])}")
        opts = {**self.solver, **solver}
        if not opts["adjoint"]:
            opts.pop("adjoint_options")
        return odesolve(self.func, z0, t, **opts).transpose(0, 1)

    def elbo(self, x: Tensor, t_obs: Tensor, idx: Tensor, t_grid: Tensor, *,
             sample: bool = True) -> tuple[Tensor, dict[str, Tensor]]:
        """Per-sequence ELBO (batch,) and its parts.

        Args:
            x, t_obs: (batch, n, obs_dim) observations and (batch, n) their times.
            idx: (batch, n) index of each observation time in t_grid.
            t_grid: (T,) increasing grid starting at 0 that holds every observation time; the
                solve returns z there (dopri5 interpolates, so the grid costs no extra steps).
        """
        if not torch.allclose(t_grid[idx], t_obs):   # z would be read at other times than those observed
            raise ValueError("idx does not index t_obs in t_grid: t_grid[idx] must equal t_obs")
        mean, std = self.encoder(x, t_obs)
        z0 = mean + std * torch.randn_like(std) if sample else mean
        last = int(idx.max()) + 1
        z = self.latent_path(z0, t_grid[:last])
        z_obs = torch.gather(z, 1, idx[..., None].expand(-1, -1, z.shape[-1]))
        log_px = gaussian_log_prob(x, self.decoder(z_obs), self.obs_std).sum((1, 2))
        kl = kl_standard_normal(mean, std)
        return log_px - kl, {"log_px": log_px, "kl": kl}

    @torch.no_grad()
    def predict(self, x: Tensor, t_obs: Tensor, t: Tensor, *, z0: Tensor | None = None, **solver) -> Tensor:
        """(batch, len(t), obs_dim) decoded trajectory from the posterior mean of z_t0 (or z0 given)."""
        if z0 is None:
            z0, _ = self.encoder(x, t_obs)
        return self.decoder(self.latent_path(z0, t, **solver))


class RNNBaseline(nn.Module):
    """RNN that predicts the next observation from its state and the time gap to it.

    Step k reads (x_{k-1}, t_k - t_{k-1}) (x_{-1} = 0 and t_{-1} = 0: a start token) and outputs the
    mean of x_k. The same cell (GRU, 25 units) as the encoder, so the comparison is about the model.
    """

    def __init__(self, obs_dim: int = 2, hidden: int = 25, *, obs_std: float = 0.1, cell: str = "gru"):
        super().__init__()
        self.hidden = hidden
        self.cell = rnn_cell(cell, obs_dim + 1, hidden)
        self.out = nn.Linear(hidden, obs_dim)
        self.obs_std = obs_std

    def states(self, x: Tensor, t_obs: Tensor) -> tuple[Tensor, Tensor]:
        """Hidden states H (batch, n+1, hidden) before each step (H[:, 0] = 0) and predictions (batch, n, obs_dim)."""
        prev_x = torch.cat([torch.zeros_like(x[:, :1]), x[:, :-1]], dim=1)
        inputs = torch.cat([prev_x, gaps_backward(t_obs)[..., None]], dim=-1)
        h0 = x.new_zeros(x.shape[0], self.hidden)
        hs = run_cell(self.cell, inputs, h0)
        return torch.cat([h0[:, None], hs], 1), self.out(hs)

    def nll(self, x: Tensor, t_obs: Tensor) -> Tensor:
        """Per-sequence Gaussian negative log-likelihood (batch,) of one-step-ahead predictions."""
        _, pred = self.states(x, t_obs)
        return -gaussian_log_prob(x, pred, self.obs_std).sum((1, 2))

    @torch.no_grad()
    def predict(self, x: Tensor, t_obs: Tensor, t: Tensor, step: float | None = None) -> Tensor:
        """(batch, len(t), obs_dim) predictions at the increasing, equally spaced grid t.

        A grid time s up to the last observation is predicted from the last observation strictly
        before s, with gap s - t_prev (at an observed time this is exactly the training prediction).
        After the last observation the RNN runs on its own predictions, `step` apart (default: one
        grid step), and each grid time s is predicted from the latest of those points before it,
        with the gap to s as input. step = the mean gap it was trained on keeps every gap it sees
        inside its training range; one grid step is the naive free run (for n < 100 a gap it
        rarely saw).
        """
        batch, n, _ = x.shape
        H, _ = self.states(x, t_obs)
        j = torch.searchsorted(t_obs.contiguous(), t.expand(batch, -1).contiguous(), right=False)  # obs before s
        prev_x = torch.cat([torch.zeros_like(x[:, :1]), x], dim=1)          # index j -> x_{j-1}
        prev_t = torch.cat([torch.zeros_like(t_obs[:, :1]), t_obs], dim=1)
        gather = lambda a, i: torch.gather(a, 1, i[..., None].expand(-1, -1, a.shape[-1]))  # noqa: E731
        h = gather(H, j)
        inp = torch.cat([gather(prev_x, j), (t[None, :] - torch.gather(prev_t, 1, j))[..., None]], dim=-1)
        direct = self.out(self.cell(inp.reshape(-1, inp.shape[-1]), h.reshape(-1, self.hidden)))
        out = direct.reshape(batch, len(t), -1)
        # after the last observation: free run `step` apart, each grid time from the latest point before it
        step = float(t[1] - t[0]) if step is None else float(step)
        if step <= 0:
            raise ValueError(f"the free-run step must be positive, got {step}")
        h, xk, tk = H[:, -1], x[:, -1], t_obs[:, -1].clone()
        last = t_obs[:, -1]
        for g in range(int(torch.searchsorted(t, last.min().contiguous().reshape(1))), len(t)):
            after = t[g] > last
            while True:  # advance the free run of every spiral whose latest point is a full step behind
                move = after & (t[g] - tk > step * (1 + 1e-3))  # float32 times drift by ~1e-6
                if not move.any():
                    break
                h_new = self.cell(torch.cat([xk, torch.full_like(xk[:, :1], step)], -1), h)
                h = torch.where(move[:, None], h_new, h)
                xk = torch.where(move[:, None], self.out(h_new), xk)
                tk = torch.where(move, tk + step, tk)
            gap = (t[g] - tk)[:, None]
            pred = self.out(self.cell(torch.cat([xk, gap], -1), h))
            out[after, g] = pred[after]
        return out


class PoissonDynamics(nn.Module):
    """Augmented dynamics d/dt [z, Lambda] = [f(z), exp(log_lambda(z))]."""

    def __init__(self, func: nn.Module, log_intensity: nn.Module):
        super().__init__()
        self.func = func
        self.log_intensity = log_intensity

    def forward(self, t: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        z, _ = state
        return self.func(t, z), torch.exp(self.log_intensity(z))


class PoissonLatentODE(nn.Module):
    """Latent ODE whose likelihood is an inhomogeneous Poisson process with intensity lambda(z(t)).

    The encoder reads the event times backwards (input: the gap to the previous event, and a 1
    marking a real event versus padding); the integral of lambda is carried in the same solve.
    """

    def __init__(self, latent_dim: int = 4, rnn_hidden: int = 25, dynamics_hidden: int = 20,
                 decoder_hidden: int = 20, *, rtol: float = 1e-5, atol: float = 1e-6, method: str = "dopri5"):
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = Encoder(1, rnn_hidden, latent_dim)
        self.log_intensity = Decoder(latent_dim, decoder_hidden, 1)
        self.func = CountNFE(PoissonDynamics(ODEFunc(latent_dim, dynamics_hidden), self.log_intensity))
        self.solver = {"rtol": rtol, "atol": atol, "method": method}

    def path(self, z0: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """z (batch, len(t), latent) and Lambda (batch, len(t), 1) on the grid t (t[0] = 0), one solve."""
        zero = z0.new_zeros(z0.shape[0], 1)
        z, cum = odesolve(self.func, (z0, zero), t, **self.solver)
        return z.transpose(0, 1), cum.transpose(0, 1)

    def encode(self, times: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """q(z_t0) from padded event times (batch, m) with mask (batch, m) (1 = event)."""
        # padding sits after the last event; the backward RNN reads it first, with zero input
        x = mask[..., None]
        t_obs = torch.where(mask.bool(), times, times.new_zeros(()))
        t_filled = torch.maximum(t_obs, torch.cummax(t_obs, dim=1).values)
        return self.encoder(x, t_filled)

    def elbo(self, times: Tensor, mask: Tensor, t_end: float, *,
             sample: bool = True) -> tuple[Tensor, dict[str, Tensor]]:
        """Per-sequence ELBO (batch,) for padded event times (batch, m) on [0, t_end].

        One solve over the sorted union of all event times of the batch (plus 0 and t_end).
        """
        events = times[mask.bool()]
        if len(events) and not (float(events.min()) >= 0 and float(events.max()) <= t_end):
            raise ValueError(f"event times must lie in [0, t_end = {t_end}], got {float(events.min())} .. "
                             f"{float(events.max())}")
        mean, std = self.encode(times, mask)
        z0 = mean + std * torch.randn_like(std) if sample else mean
        grid = torch.unique(torch.cat([times.new_tensor([0.0, t_end]), events]))
        z, cum = self.path(z0, grid)
        pos = torch.searchsorted(grid, times.clamp(0, t_end).contiguous())
        z_ev = torch.gather(z, 1, pos[..., None].expand(-1, -1, z.shape[-1]))
        log_lam = self.log_intensity(z_ev).squeeze(-1)
        log_p = (log_lam * mask).sum(1) - cum[:, -1, 0]
        kl = kl_standard_normal(mean, std)
        return log_p - kl, {"log_p": log_p, "kl": kl}

    @torch.no_grad()
    def intensity(self, times: Tensor, mask: Tensor, t: Tensor) -> Tensor:
        """(batch, len(t)) learned lambda(z(t)) from the posterior mean of z_t0."""
        mean, _ = self.encode(times, mask)
        z, _ = self.path(mean, t)
        return torch.exp(self.log_intensity(z)).squeeze(-1)
