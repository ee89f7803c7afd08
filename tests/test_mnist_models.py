"""The Table 1 models: parameter counts, shapes, NFE counting, adjoint against direct gradients."""
from __future__ import annotations

import pytest
import torch

from odecore import paper
from odecore.models import mnist as models
from odecore.solve import odesolve

torch.set_num_threads(1)


def test_parameter_counts_beside_the_paper():
    counts = models.param_counts()
    assert counts["res"] == {"mlp": 238_510, "resnet": 601_482, "rknet": 232_970, "odenet": 232_970}
    assert counts["conv"] == {"mlp": 238_510, "resnet": 576_778, "rknet": 208_266, "odenet": 208_266}

    def miss(kind):
        return sum(abs(counts[kind][m] / 1e6 - paper.TABLE1[m]["params_m"]) for m in models.MODELS)

    assert miss("res") < miss("conv")  # why "res" is the default downsampling


@pytest.mark.parametrize("name", models.MODELS)
def test_logits_shape_and_gradients(name):
    torch.manual_seed(0)
    model = models.make(name)
    x = torch.rand(3, 1, 28, 28)
    out = model(x)
    assert out.shape == (3, 10)
    out.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_stem_downsamples_twice():
    for kind in models.DOWNSAMPLING:
        assert models.stem(kind)(torch.rand(2, 1, 28, 28)).shape[1] == models.WIDTH
    assert models.stem("conv")(torch.rand(2, 1, 28, 28)).shape[-1] == 6
    assert models.stem("res")(torch.rand(2, 1, 28, 28)).shape[-1] == 7
    with pytest.raises(ValueError, match="unknown downsampling"):
        models.stem("pool")
    with pytest.raises(ValueError, match="unknown model"):
        models.make("vgg")


def test_ode_block_counts_forward_and_backward_nfe():
    torch.manual_seed(0)
    model = models.make("odenet")
    loss = model(torch.rand(2, 1, 28, 28)).sum()
    fwd = model.ode.func.nfe
    assert fwd == model.ode.nfe_forward and fwd >= 8 and (fwd - 2) % 6 == 0  # dopri5: 2 to start, 6 per step
    loss.backward()
    assert model.ode.func.nfe > fwd  # the adjoint's backward solve evaluates f again


def test_rknet_uses_fixed_rk4_steps():
    assert models.make("rknet", rk_method="dopri5", rk_step=None).ode.options is None
    model = models.make("rknet")
    model(torch.rand(2, 1, 28, 28)).sum().backward()
    assert model.ode.nfe_forward == 16 and model.ode.func.nfe == 16  # 4 steps x 4 stages; no backward solve


def test_adjoint_gradients_match_direct_backprop():
    """ODEBlock(adjoint=True) against backprop through the same rk4 grid (step 0.05), float64.

    The two differ by the rk4 error of the backward solve, not by rounding: at random init the
    GroupNorm dynamics are stiff enough that this is 0.65% of the largest gradient (measured), so
    the bound is 2%; a broken adjoint misses by 100%.
    """
    torch.manual_seed(0)
    kw = dict(method="rk4", options={"step_size": 0.05})
    block = models.ODEBlock(8, adjoint=True, **kw).double()
    direct = models.ODEBlock(8, adjoint=False, **kw).double()
    direct.load_state_dict(block.state_dict())
    x = torch.randn(2, 8, 4, 4, dtype=torch.double)
    grads = []
    for b in (block, direct):
        b(x).pow(2).sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in b.parameters()]))
    assert (grads[0] - grads[1]).abs().max() < 0.02 * grads[1].abs().max()


def test_scipy_lsoda_solves_decay_exactly():
    z0 = torch.tensor([[1.0, 2.0]], dtype=torch.double)
    t = torch.tensor([0.0, 1.0], dtype=torch.double)
    z = odesolve(lambda t, z: -z, z0, t, rtol=1e-8, atol=1e-10, method="scipy_lsoda")
    torch.testing.assert_close(z[-1], z0 * torch.exp(torch.tensor(-1.0, dtype=torch.double)), rtol=1e-6, atol=1e-8)


def test_scipy_lsoda_adjoint_gives_exact_gradients():
    """LSODA runs the adjoint's backward solve too (the Figure 3(c) setting): on dz/dt = A z the
    gradients of sum z(1) are known: d/dz0 = expm(A)^T 1, and d/dA by autograd through matrix_exp."""

    class Linear(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.A = torch.nn.Parameter(torch.tensor([[-0.5, 1.0], [-1.0, -0.2]], dtype=torch.double))

        def forward(self, t, z):
            return z @ self.A.T

    func = Linear()
    z0 = torch.tensor([[1.0, -1.0]], dtype=torch.double, requires_grad=True)
    t = torch.tensor([0.0, 1.0], dtype=torch.double)
    z = odesolve(func, z0, t, rtol=1e-9, atol=1e-11, method="scipy_lsoda", adjoint=True,
                 adjoint_options={"norm": "seminorm"})
    z[-1].sum().backward()
    expm = torch.linalg.matrix_exp(func.A.detach())
    torch.testing.assert_close(z[-1].detach(), z0.detach() @ expm.T, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(z0.grad, torch.ones(1, 2, dtype=torch.double) @ expm, rtol=1e-6, atol=1e-8)
    A = func.A.detach().clone().requires_grad_(True)
    (z0.detach() @ torch.linalg.matrix_exp(A).T).sum().backward()
    torch.testing.assert_close(func.A.grad, A.grad, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("step", [0, 0.0, -0.25, "0.25"])
def test_an_rk_step_that_is_not_a_step_size_is_refused(step):
    with pytest.raises(ValueError, match="rk_step must be a step size > 0"):
        models.make("rknet", rk_step=step)
