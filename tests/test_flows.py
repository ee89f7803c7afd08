"""Planar NF and planar CNF (odecore.models.flows): log-determinants, inverses, traces, Theorem 1."""
import math

import pytest
import torch

from odecore.models import flows

torch.set_default_dtype(torch.float32)


def _jac_logdet(fn, z):
    jac = torch.stack([torch.autograd.functional.jacobian(fn, zi[None])[0, :, 0, :] for zi in z])
    return torch.linalg.slogdet(jac)[1]


# ----------------------------------------------------------------------------------- planar NF
def test_u_hat_makes_every_layer_invertible():
    torch.manual_seed(0)
    layer = flows.PlanarFlow(3).double()
    with torch.no_grad():
        layer.w.copy_(torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64))
        layer.u.copy_(-5 * layer.w)                         # w^T u = -26.25: not invertible unfixed
    with torch.no_grad():
        assert float(layer.w @ layer.u) < -1
        # m(x) = -1 + softplus(x) > -1 exactly; in floating point softplus(-26) rounds to 1e-12
        assert float(layer.w @ layer.u_hat()) >= -1 - 1e-12
        for _ in range(20):
            layer.u.normal_(0, 1)
            layer.w.normal_(0, 1)
            assert float(layer.w @ layer.u_hat()) > -1


@pytest.mark.parametrize("dim", [1, 2, 5])
def test_planar_logdet_matches_autograd_jacobian(dim):
    torch.manual_seed(dim)
    layer = flows.PlanarFlow(dim, init_std=1.0).double()
    z = torch.randn(6, dim, dtype=torch.float64)
    _, logdet = layer(z)
    ref = _jac_logdet(lambda v: layer(v)[0], z)
    torch.testing.assert_close(logdet, ref, rtol=1e-9, atol=1e-9)


def test_planar_nf_inverse_round_trip_and_partial_flows():
    torch.manual_seed(1)
    nf = flows.PlanarNF(2, 6, init_std=1.0).double()
    z = torch.randn(50, 2, dtype=torch.float64)
    x, logdet = nf(z)
    torch.testing.assert_close(nf.inverse(x), z, rtol=0, atol=1e-8)
    # the stack's log-determinant is that of the composed map
    torch.testing.assert_close(logdet[:5], _jac_logdet(lambda v: nf(v)[0], z[:5]), rtol=1e-9, atol=1e-9)
    # inverse(., k) undoes the last k layers: forward through the first 6-k layers, then 4 more
    mid, _ = nf(z, num_layers=2)
    torch.testing.assert_close(nf.inverse(x, 4), mid, rtol=0, atol=1e-8)
    assert torch.equal(nf.inverse(x, 0), x)


@pytest.mark.parametrize("num_layers", [None, 5, 0])
def test_planar_nf_batched_layers_are_the_layers_in_turn(num_layers):
    # PlanarNF.forward batches the fix, w^T u^ and the log-determinants over layers: the same values
    # and gradients as calling each PlanarFlow in turn
    torch.manual_seed(0)
    nf = flows.PlanarNF(2, 8).double()
    z0 = torch.randn(64, 2, dtype=torch.float64)
    z, logdet = nf(z0, num_layers)
    ref_z, ref_ld = z0, torch.zeros(64, dtype=torch.float64)
    for layer in nf.layers[:num_layers]:
        ref_z, ld = layer(ref_z)
        ref_ld = ref_ld + ld
    assert torch.allclose(z, ref_z, atol=1e-12) and torch.allclose(logdet, ref_ld, atol=1e-12)
    if num_layers != 0:
        g = torch.autograd.grad((z.sum() + logdet.sum()), nf.layers[0].u)[0]
        g_ref = torch.autograd.grad((ref_z.sum() + ref_ld.sum()), nf.layers[0].u)[0]
        assert torch.allclose(g, g_ref, atol=1e-10)


def test_planar_nf_density_integrates_to_one():
    """p(x) = N(g(x)) |det dg/dx| for the normalizing direction g: it must integrate to 1."""
    torch.manual_seed(2)
    nf = flows.PlanarNF(2, 4, init_std=0.8).double()
    h = 0.04
    x = torch.arange(-6, 6, h, dtype=torch.float64) + h / 2
    pts = torch.stack(torch.meshgrid(x, x, indexing="xy"), -1).reshape(-1, 2)
    with torch.no_grad():
        z, logdet = nf(pts)
        mass = (flows.normal_logpdf(z) + logdet).exp().sum() * h * h
    assert abs(float(mass) - 1) < 2e-3


# ----------------------------------------------------------------------------------- CNF traces
@pytest.mark.parametrize("dim,width", [(2, 8), (5, 3), (16, 32)])
def test_closed_form_trace_matches_autograd_trace(dim, width):
    torch.manual_seed(dim + width)
    dyn = flows.PlanarCNFDynamics(dim, width, hidden=8).double()
    z = torch.randn(7, dim, dtype=torch.float64, requires_grad=True)
    for t in (0.0, 0.37, 2.0):
        f, tr = dyn.velocity_and_trace(torch.tensor(t), z)
        torch.testing.assert_close(f, dyn(torch.tensor(t), z))
        torch.testing.assert_close(tr, flows.trace_autograd(f, z), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("noise", ["rademacher", "gaussian"])
def test_hutchinson_is_unbiased_for_the_closed_form_trace(noise):
    torch.manual_seed(3)
    dim, probes = 4, 20_000
    dyn = flows.PlanarCNFDynamics(dim, 6, hidden=8).double()
    with torch.no_grad():
        dyn.hyper.net[-1].weight.mul_(5)                 # make the Jacobian far from zero
    z0 = torch.randn(3, dim, dtype=torch.float64)
    exact = dyn.velocity_and_trace(torch.tensor(0.5), z0)[1]
    z = z0.repeat_interleave(probes, 0).requires_grad_(True)
    func = flows.CNFFunc(dyn, "hutchinson", noise)
    func.sample_noise(z, torch.Generator().manual_seed(0))
    f = dyn(torch.tensor(0.5), z)
    est = flows.trace_hutchinson(f, z, func.eps).reshape(3, probes)
    se = est.std(1) / math.sqrt(probes)
    assert ((est.mean(1) - exact).abs() < 5 * se + 1e-12).all()
    assert (se > 0).all()                                  # it is an estimate, not the exact value


def test_cnf_func_rejects_unknown_trace_and_missing_noise():
    dyn = flows.PlanarCNFDynamics(2, 2)
    with pytest.raises(ValueError, match="unknown trace"):
        flows.CNFFunc(dyn, "nope")
    with pytest.raises(ValueError, match="closed-form"):
        flows.CNFFunc(torch.nn.Linear(2, 2), "closed")
    func = flows.CNFFunc(dyn, "hutchinson")
    with pytest.raises(ValueError, match="sample_noise"):
        func(torch.tensor(0.0), (torch.zeros(3, 2), torch.zeros(3)))


@pytest.mark.parametrize("grad", [True, False])
def test_cnf_log_prob_same_with_closed_and_autograd_trace(grad):
    torch.manual_seed(4)
    dyn = flows.PlanarCNFDynamics(2, 8, hidden=8).double()
    x = torch.randn(20, 2, dtype=torch.float64)
    out = {}
    for trace in ("closed", "autograd"):
        cnf = flows.CNF(dyn, t1=1.0, trace=trace, rtol=1e-9, atol=1e-9)
        with torch.set_grad_enabled(grad):
            out[trace] = cnf.log_prob(x)
        assert out[trace].requires_grad == grad
    torch.testing.assert_close(out["closed"], out["autograd"], rtol=1e-8, atol=1e-8)


def test_cnf_density_integrates_to_one_and_push_agrees_with_log_prob():
    torch.manual_seed(5)
    dyn = flows.PlanarCNFDynamics(2, 4, hidden=8).double()
    with torch.no_grad():
        dyn.hyper.net[-1].weight.mul_(4)
        dyn.hyper.net[-1].bias.mul_(4)
    cnf = flows.CNF(dyn, t1=1.0, base_std=0.7, rtol=1e-8, atol=1e-8)
    h = 0.06
    g = torch.arange(-5, 5, h, dtype=torch.float64) + h / 2
    pts = torch.stack(torch.meshgrid(g, g, indexing="xy"), -1).reshape(-1, 2)
    with torch.no_grad():
        mass = cnf.log_prob(pts).exp().sum() * h * h
        z0 = cnf.sample_base(30, dtype=torch.float64)
        x, logq = cnf.push(z0)
        back = cnf.log_prob(x)
    assert abs(float(mass) - 1) < 2e-3
    torch.testing.assert_close(logq, back, rtol=1e-6, atol=1e-6)


def test_cnf_adjoint_gradients_match_direct_backprop():
    torch.manual_seed(6)
    x = torch.randn(16, 2, dtype=torch.float64)
    grads = []
    for adjoint in (False, True):
        torch.manual_seed(7)
        dyn = flows.PlanarCNFDynamics(2, 4, hidden=8).double()
        cnf = flows.CNF(dyn, t1=1.0, rtol=1e-10, atol=1e-10, adjoint=adjoint)
        (-cnf.log_prob(x).mean()).backward()
        grads.append(torch.cat([p.grad.reshape(-1) for p in dyn.parameters()]))
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-6, atol=1e-8)


def test_cnf_lean_solver_gives_the_same_log_prob_and_gradient():
    # lean_dopri5 (benchmarks/cnf.py) is a faster route to the same density and the same training signal
    torch.manual_seed(6)
    x = torch.randn(16, 2, dtype=torch.float64)
    out = {}
    for method in ("dopri5", "lean_dopri5"):
        torch.manual_seed(7)
        dyn = flows.PlanarCNFDynamics(2, 4, hidden=8).double()
        cnf = flows.CNF(dyn, t1=1.0, rtol=1e-10, atol=1e-10, method=method)
        logp = cnf.log_prob(x)
        (-logp.mean()).backward()
        out[method] = (logp.detach(), torch.cat([p.grad.reshape(-1) for p in dyn.parameters()]))
    for a, b in zip(out["dopri5"], out["lean_dopri5"]):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-8)


def test_nfe_counter_counts_the_solve():
    dyn = flows.PlanarCNFDynamics(2, 2)
    cnf = flows.CNF(dyn, method="rk4", t1=1.0)
    with torch.no_grad():
        cnf.push(torch.zeros(3, 2))
    assert cnf.nfe > 0


def test_theorem1_numerically():
    from odecore.experiments.cnf import theorem1

    th = theorem1(n=8, num_times=6)
    assert th["max_abs_change"] > 0.1                      # the flow is far from volume preserving
    assert th["max_abs_err"] < 1e-6


def test_stacked_planar_nfs_compute_what_each_computes_alone():
    torch.manual_seed(0)
    nfs = [flows.PlanarNF(2, 5) for _ in range(3)]
    stacked = flows.StackedPlanarNF(nfs)
    z = torch.randn(3, 64, 2)
    x, logdet = stacked(z)
    for r, nf in enumerate(nfs):
        x_r, logdet_r = nf(z[r])
        torch.testing.assert_close(x[r], x_r, rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(logdet[r], logdet_r, rtol=1e-6, atol=1e-7)
        back = flows.PlanarNF(2, 5)
        back.load_state_dict(stacked.unstack(r))
        assert all(torch.equal(a, b) for a, b in zip(back.state_dict().values(), nf.state_dict().values()))


def test_layer_counts_noise_and_start_times_outside_their_range_are_refused():
    nf = flows.PlanarNF(2, 4)
    z = torch.randn(3, 2)
    for bad in (-1, 5, 2.0, True):
        with pytest.raises(ValueError, match="num_layers must be an int from 0 to 4"):
            nf(z, num_layers=bad)
        with pytest.raises(ValueError, match="num_layers must be an int from 0 to 4"):
            nf.inverse(z, num_layers=bad)
    assert torch.equal(nf(z, num_layers=0)[0], z)
    dyn = flows.PlanarCNFDynamics(2, 4, 8)
    with pytest.raises(ValueError, match="unknown noise 'uniform'"):
        flows.CNF(dyn, trace="hutchinson", noise="uniform")
    cnf = flows.CNF(dyn)
    with pytest.raises(ValueError, match="times must start at t0 = 0.0"):
        cnf.push(z, torch.tensor([0.5, 1.0]))
    assert cnf.push(z, torch.tensor([0.0, 1.0]))[0].shape == (2, 3, 2)
