"""Tests for the spirals data set and the latent ODE / RNN / Poisson models (Section 5)."""
from __future__ import annotations

import math

import pytest
import torch

from odecore.datasets import spirals
from odecore.models.latent_ode import (Encoder, LatentODE, PoissonLatentODE, RNNBaseline,
                                       gaps_backward, gaussian_log_prob, kl_standard_normal)



@pytest.fixture(scope="module")
def data():
    return spirals.make_spirals(n_spirals=40, n_test=10, seed=3)


# ----------------------------------------------------------------------------- spirals

def test_shapes_and_grid(data):
    assert data.t.shape == (150,) and data.truth.shape == (40, 150, 2) and data.noisy.shape == (40, 100, 2)
    step = data.t[1] - data.t[0]
    assert torch.allclose(data.t[1:] - data.t[:-1], step.expand(149), atol=1e-6)
    assert data.t[99].item() == pytest.approx(4.0, abs=1e-5)


def test_seeded(data):
    again = spirals.make_spirals(n_spirals=40, n_test=10, seed=3)
    other = spirals.make_spirals(n_spirals=40, n_test=10, seed=4)
    assert torch.equal(data.noisy, again.noisy) and torch.equal(data.test, again.test)
    assert not torch.equal(data.noisy, other.noisy)


def test_half_each_direction_and_balanced_split(data):
    assert (data.direction == 1).sum() == 20 and (data.direction == -1).sum() == 20
    assert set(data.train.tolist()).isdisjoint(data.test.tolist())
    assert len(data.train) + len(data.test) == 40
    assert (data.direction[data.test] == 1).sum() == 5


def test_archimedean_and_direction(data):
    r = data.truth.norm(dim=-1)
    theta = data.theta0[:, None] + data.t[None, :]
    assert torch.allclose(r, 0.3 * theta, rtol=1e-5)
    # the sign of the cross product of successive positions gives the turning direction
    a, b = data.truth[:, :-1], data.truth[:, 1:]
    cross = a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]
    assert torch.all(torch.sign(cross) == data.direction[:, None])


def test_noise_level():
    big = spirals.make_spirals(n_spirals=400, n_test=100, noise_std=0.1, seed=0)
    resid = big.noisy - big.truth[:, :100]
    assert resid.std().item() == pytest.approx(0.1, rel=0.03)
    assert resid.mean().abs().item() < 0.005


def test_observations_without_replacement(data):
    for n in (30, 50, 100):
        x, t_obs, idx = spirals.observe(data, n, seed=0)
        assert x.shape == (40, n, 2) and t_obs.shape == (40, n)
        assert torch.all(idx[:, 1:] > idx[:, :-1])           # sorted and distinct
        assert torch.equal(x, data.noisy[torch.arange(40)[:, None], idx])
    idx30 = spirals.observation_indices(40, 100, 30, seed=0)
    assert not torch.equal(idx30[0], idx30[1])               # each spiral its own draw
    assert torch.equal(idx30, spirals.observation_indices(40, 100, 30, seed=0))


@pytest.mark.parametrize("kwargs", [{"n_spirals": 41}, {"n_spirals": 40, "n_test": 40},
                                    {"n_spirals": 40, "n_test": 10, "noise_std": -1.0},
                                    {"n_spirals": 40, "n_test": 10, "noise_std": float("nan")},   # NaN data otherwise
                                    {"n_spirals": 40, "n_test": 10, "t_max": float("inf")}])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        spirals.make_spirals(**kwargs)


def test_bad_n():
    with pytest.raises(ValueError, match="n must be"):
        spirals.observation_indices(4, 100, 101)


# ----------------------------------------------------------------------------- likelihood pieces

def test_gaussian_log_prob_matches_torch():
    x, m = torch.randn(5, 3), torch.randn(5, 3)
    ref = torch.distributions.Normal(m, 0.3).log_prob(x)
    assert torch.allclose(gaussian_log_prob(x, m, 0.3), ref, atol=1e-6)


def test_kl_matches_torch():
    mean, std = torch.randn(6, 4), torch.rand(6, 4) + 0.1
    q, p = torch.distributions.Normal(mean, std), torch.distributions.Normal(0.0, 1.0)
    assert torch.allclose(kl_standard_normal(mean, std), torch.distributions.kl_divergence(q, p).sum(-1), atol=1e-5)


def test_gaps():
    t = torch.tensor([[0.5, 1.0, 2.5]])
    assert torch.allclose(gaps_backward(t), torch.tensor([[0.5, 0.5, 1.5]]))


# ----------------------------------------------------------------------------- models

def test_encoder_reads_backwards():
    """The first observation is read last, so it moves the posterior more than the last one does."""
    torch.manual_seed(0)
    enc = Encoder(2, 25, 4)
    x, t = torch.randn(1, 10, 2), torch.linspace(0.1, 1, 10)[None]
    mean, std = enc(x, t)
    assert mean.shape == (1, 4) and torch.all(std > 0)
    h = x.new_zeros(1, 25)
    inputs = torch.cat([x, gaps_backward(t)[..., None]], -1)
    for i in range(9, -1, -1):
        h = enc.cell(inputs[:, i], h)
    assert torch.allclose(enc.out(h).chunk(2, -1)[0], mean)


@pytest.mark.parametrize("cell", ["gru", "rnn"])
def test_latent_ode_elbo_and_one_solve_prediction(data, cell):
    torch.manual_seed(0)
    model = LatentODE(rtol=1e-7, atol=1e-9, cell=cell)
    x, t_obs, idx = spirals.observe(data, 30, 0)
    elbo, parts = model.elbo(x[:8], t_obs[:8], idx[:8], data.t_window)
    assert elbo.shape == (8,) and torch.isfinite(elbo).all()
    assert torch.allclose(elbo, parts["log_px"] - parts["kl"])
    (-elbo.mean()).backward()
    assert all(p.grad is not None for p in model.parameters())
    # predictions at arbitrary times come from one solve: a subset of times gives the same values
    full = model.predict(x[:4], t_obs[:4], data.t)
    sub_t = data.t[::7]
    sub = model.predict(x[:4], t_obs[:4], sub_t)
    assert torch.allclose(full[:, ::7], sub, atol=1e-5)
    # the ELBO's reconstruction uses the decoded latent path at the observed times
    mean, _ = model.encoder(x[:1], t_obs[:1])
    elbo0, parts0 = model.elbo(x[:1], t_obs[:1], idx[:1], data.t_window, sample=False)
    pred = model.predict(x[:1], t_obs[:1], data.t_window)[0, idx[0]]
    ref = gaussian_log_prob(x[0], pred, 0.1).sum()
    assert parts0["log_px"].item() == pytest.approx(ref.item(), rel=1e-5)


def test_latent_ode_adjoint_gradients_match_direct(data):
    torch.manual_seed(0)
    direct = LatentODE(rtol=1e-8, atol=1e-8)
    adj = LatentODE(rtol=1e-8, atol=1e-8, adjoint=True, adjoint_options={"norm": "seminorm"})
    adj.load_state_dict(direct.state_dict())
    x, t_obs, idx = spirals.observe(data, 30, 0)
    grads = []
    for m in (direct, adj):
        elbo, _ = m.elbo(x[:4], t_obs[:4], idx[:4], data.t_window, sample=False)
        m.zero_grad()
        (-elbo.sum()).backward()
        grads.append(torch.cat([p.grad.flatten() for p in m.parameters()]))
    assert ((grads[0] - grads[1]).norm() / grads[0].norm()).item() < 1e-5


def test_rnn_prediction_at_observed_times_is_the_training_prediction(data):
    torch.manual_seed(0)
    rnn = RNNBaseline()
    x, t_obs, idx = spirals.observe(data, 30, 0)
    _, pred = rnn.states(x[:5], t_obs[:5])
    grid = rnn.predict(x[:5], t_obs[:5], data.t)
    assert grid.shape == (5, 150, 2)
    got = torch.gather(grid, 1, idx[:5, :, None].expand(-1, -1, 2))
    assert torch.allclose(got, pred, atol=1e-6)
    nll = rnn.nll(x[:5], t_obs[:5])
    assert torch.allclose(nll, -gaussian_log_prob(x[:5], pred, 0.1).sum((1, 2)), atol=1e-4)


def test_rnn_free_run_after_last_observation():
    """After the last observation the RNN steps on its own predictions at the grid spacing."""
    torch.manual_seed(0)
    rnn = RNNBaseline()
    t = torch.linspace(0, 1, 11)
    x, t_obs = torch.randn(1, 3, 2), t[[0, 2, 5]][None]
    out = rnn.predict(x, t_obs, t)
    H, _ = rnn.states(x, t_obs)
    h = rnn.cell(torch.cat([x[:, -1], torch.full((1, 1), 0.1)], -1), H[:, -1])
    assert torch.allclose(out[:, 6], rnn.out(h), atol=1e-6)
    h = rnn.cell(torch.cat([rnn.out(h), torch.full((1, 1), 0.1)], -1), h)
    assert torch.allclose(out[:, 7], rnn.out(h), atol=1e-6)


# ----------------------------------------------------------------------------- Poisson process

def test_poisson_constant_intensity_is_exact():
    """Zero dynamics and a constant log intensity c: log p = N c - e^c T, integral in the same solve."""
    model = PoissonLatentODE(rtol=1e-8, atol=1e-8)
    with torch.no_grad():
        for p in model.func.func.func.parameters():
            p.zero_()
        for p in model.log_intensity.parameters():
            p.zero_()
        model.log_intensity.net[-1].bias.fill_(0.3)
    times = torch.tensor([[1.0, 2.0, 7.5, 10.0], [0.5, 10.0, 10.0, 10.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    _, parts = model.elbo(times, mask, 10.0, sample=False)
    expected = torch.tensor([3 * 0.3, 0.3]) - math.exp(0.3) * 10
    assert torch.allclose(parts["log_p"], expected, atol=1e-5)


def test_poisson_integral_matches_quadrature():
    torch.manual_seed(1)
    model = PoissonLatentODE(rtol=1e-9, atol=1e-9)
    z0 = torch.randn(3, 4)
    t = torch.linspace(0, 5, 2001)
    z, cum = model.path(z0, t)
    lam = torch.exp(model.log_intensity(z)).squeeze(-1)
    quad = torch.trapezoid(lam, t, dim=1)
    assert torch.allclose(cum[:, -1, 0], quad, rtol=1e-4)


def test_regular_sampling_is_evenly_spaced_and_shared():
    idx = spirals.observation_indices(5, 100, 30, seed=3, sampling="regular")
    assert idx.shape == (5, 30) and (idx == idx[0]).all()
    assert idx[0, 0] == 0 and idx[0, -1] == 99 and (idx[0].diff() > 0).all()
    assert set(idx[0].diff().tolist()) <= {3, 4}            # 99 / 29 = 3.4: gaps of 3 and 4
    irregular = spirals.observation_indices(5, 100, 30, seed=3)
    assert not (irregular == irregular[0]).all()              # the paper's times differ per spiral
    with pytest.raises(ValueError, match="sampling"):
        spirals.observation_indices(5, 100, 30, sampling="random")


def test_rnn_free_run_at_its_training_gap():
    """step=None is the naive free run one grid step at a time; a larger step keeps the window identical
    and changes only predictions after the last observation."""
    from odecore.models.latent_ode import RNNBaseline

    torch.manual_seed(0)
    net = RNNBaseline(2, 25)
    t = torch.linspace(0, 8.04, 200)
    idx = torch.sort(torch.stack([torch.randperm(100)[:30] for _ in range(4)]), 1).values
    x, t_obs = torch.randn(4, 30, 2), t[idx]
    naive, fair = net.predict(x, t_obs, t), net.predict(x, t_obs, t, step=4 / 30)
    last = int(idx[:, -1].min())
    assert torch.equal(naive[:, :last + 1], fair[:, :last + 1])
    assert not torch.allclose(naive[:, 100:], fair[:, 100:])
    # with the step equal to the grid step, each grid time is one cell step after the previous prediction
    h = net.states(x, t_obs)[0][:, -1]
    first = net.out(net.cell(torch.cat([x[:, -1], (t[idx[:, -1] + 1] - t_obs[:, -1])[:, None]], -1), h))
    assert torch.allclose(naive[torch.arange(4), idx[:, -1] + 1], first, atol=1e-6)
    with pytest.raises(ValueError, match="positive"):
        net.predict(x, t_obs, t, step=0.0)


def test_covered_design_widens_only_the_training_starts():
    import math

    one = spirals.make_spirals(n_spirals=40, n_test=10, seed=3)
    wide = spirals.make_spirals(n_spirals=40, n_test=10, seed=3, train_theta0_range=(math.pi, 5 * math.pi))
    assert torch.equal(one.theta0[one.test], wide.theta0[wide.test]) and torch.equal(one.test, wide.test)
    assert wide.theta0[wide.train].max() > 3 * math.pi and one.theta0.max() <= 3 * math.pi
    with pytest.raises(ValueError, match="start-angle range"):
        spirals.make_spirals(n_spirals=40, n_test=10, train_theta0_range=(3.0, 1.0))


@pytest.mark.parametrize("kind", ["gru", "rnn"])
def test_fused_recurrence_is_the_cell_loop(kind):
    # run_cell is torch's fused recurrence with the cell's weights: the loop over the cell, bit for bit,
    # gradients included
    from odecore.models.latent_ode import rnn_cell, run_cell

    torch.manual_seed(0)
    cell = rnn_cell(kind, 3, 25)
    x, h0 = torch.randn(5, 7, 3), torch.randn(5, 25)
    h, loop = h0, []
    for i in range(x.shape[1]):
        h = cell(x[:, i], h)
        loop.append(h)
    loop = torch.stack(loop, 1)
    fused = run_cell(cell, x, h0)
    assert torch.equal(fused, loop)
    g_loop = torch.autograd.grad(loop.square().sum(), cell.weight_hh)[0]
    g_fused = torch.autograd.grad(run_cell(cell, x, h0).square().sum(), cell.weight_hh)[0]
    assert torch.allclose(g_fused, g_loop, rtol=1e-5, atol=1e-6)


def test_broken_preconditions_are_refused_not_answered():
    torch.manual_seed(0)
    model = LatentODE(rtol=1e-5, atol=1e-6)
    z0 = torch.zeros(2, 4)
    with pytest.raises(ValueError, match="t must start at 0"):          # z0 is the state at t = 0
        model.latent_path(z0, torch.tensor([0.5, 1.0]))
    t_grid = torch.linspace(0, 1, 5)
    idx = torch.tensor([[1, 3], [2, 4]])
    x = torch.zeros(2, 2, 2)
    assert model.elbo(x, t_grid[idx], idx, t_grid)[0].shape == (2,)
    with pytest.raises(ValueError, match="idx does not index t_obs"):
        model.elbo(x, t_grid[idx] + 0.1, idx, t_grid)
    poisson = PoissonLatentODE(rtol=1e-5, atol=1e-6)
    times, mask = torch.tensor([[1.0, 5.0]]), torch.ones(1, 2)
    with pytest.raises(ValueError, match=r"event times must lie in \[0, t_end = 3"):
        poisson.elbo(times, mask, 3.0)
    assert poisson.elbo(times, torch.tensor([[1.0, 0.0]]), 3.0)[0].shape == (1,)   # padding beyond t_end is no event
