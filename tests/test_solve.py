"""odesolve: exact solutions across methods and dtypes, NFE counting, and clear errors on bad input."""
import math

import pytest
import torch
from torch import nn

from odecore import CountNFE, odesolve

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


class Decay(nn.Module):
    """dz/dt = -k z, z(t) = z0 exp(-k t)."""

    def __init__(self, k: float = 1.5):
        super().__init__()
        self.k = nn.Parameter(torch.tensor(k))

    def forward(self, t, z):
        return -self.k * z


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("method", ["dopri5", "dopri8", "bosh3", "rk4"])
def test_exact_solution(method, dtype, device):
    # measured global error at rtol = atol = 1e-9 over [0, 2], with a margin: float32 is limited by
    # rounding; in float64 bosh3 (3rd order) accumulates 3e-7, dopri8 (large steps) 2.3e-7, dopri5 and rk4 5e-10
    tol = 5e-5 if dtype == torch.float32 else {"bosh3": 1e-6, "dopri8": 1e-6}.get(method, 1e-8)
    func = Decay().to(device, dtype)
    z0 = torch.tensor([[1.0], [2.0]], dtype=dtype, device=device)
    t = torch.linspace(0, 2, 5, dtype=dtype, device=device)
    options = {"step_size": 0.01} if method == "rk4" else None
    z = odesolve(func, z0, t, rtol=1e-9, atol=1e-9, method=method, options=options)
    exact = z0 * torch.exp(-1.5 * t).reshape(-1, 1, 1)
    assert (z - exact).abs().max().item() < tol


def test_decreasing_times_and_tuple_state():
    func = lambda t, s: (-s[0], 2 * s[1])  # noqa: E731
    z = odesolve(func, (torch.ones(1), torch.ones(1)), torch.tensor([1.0, 0.0]), rtol=1e-9, atol=1e-9)
    assert math.isclose(z[0][-1].item(), math.e, rel_tol=1e-6)
    assert math.isclose(z[1][-1].item(), math.exp(-2), rel_tol=1e-6)


def test_count_nfe_forward_and_backward():
    func = CountNFE(Decay())
    z = odesolve(func, torch.ones(3, 1), torch.tensor([0.0, 1.0]), adjoint=True)
    forward = func.reset()
    z[-1].sum().backward()
    backward = func.reset()
    assert forward > 6 and backward > 6, (forward, backward)
    assert func.nfe == 0


def test_adjoint_matches_direct_gradient():
    func = Decay().double()
    z0 = torch.ones(2, 1, dtype=torch.float64)
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    grads = []
    for adjoint in (False, True):
        func.zero_grad()
        odesolve(func, z0, t, rtol=1e-10, atol=1e-10, adjoint=adjoint)[-1].sum().backward()
        grads.append(func.k.grad.item())
    exact = -2 * math.exp(-1.5)  # d/dk sum z0 exp(-k) over two rows
    assert grads[0] == pytest.approx(exact, rel=1e-7)
    assert grads[1] == pytest.approx(exact, rel=1e-7)


@pytest.mark.parametrize("kwargs,message", [
    ({"t": torch.tensor([0.0, 1.0, 0.5])}, "strictly increasing or strictly decreasing"),
    ({"t": torch.tensor([0.0, 0.0, 1.0])}, "strictly increasing"),
    ({"t": torch.tensor([0.0])}, "at least 2 times"),
    ({"t": torch.tensor([[0.0, 1.0]])}, "1-D tensor"),
    ({"t": torch.tensor([0.0, float("nan")])}, "non-finite"),
    ({"z0": torch.tensor([[float("inf")]])}, "z0 contains non-finite"),
    ({"z0": torch.tensor([[1]])}, "floating point"),
    ({"method": "rk45"}, "unknown method 'rk45'"),
    ({"rtol": -1e-3}, "rtol must be a finite number >= 0"),
    ({"atol": float("nan")}, "atol must be"),
])
def test_bad_input_is_named(kwargs, message):
    args = {"z0": torch.ones(1, 1), "t": torch.tensor([0.0, 1.0]), "method": "dopri5", "rtol": 1e-3, "atol": 1e-3}
    args.update(kwargs)
    func = Decay()
    with pytest.raises(ValueError, match=message):
        odesolve(func, args.pop("z0"), args.pop("t"), **args)


def test_non_finite_parameter_is_named():
    func = Decay()
    with torch.no_grad():
        func.k.fill_(float("nan"))
    with pytest.raises(ValueError, match="parameter 'k'"):
        odesolve(func, torch.ones(1, 1), torch.tensor([0.0, 1.0]))


def test_shape_mismatch_is_named():
    with pytest.raises(ValueError, match=r"dynamics returned shape \(1, 2\)"):
        odesolve(lambda t, z: torch.cat([z, z], 1), torch.ones(1, 1), torch.tensor([0.0, 1.0]), check_shapes=True)


def test_adjoint_needs_module():
    with pytest.raises(ValueError, match="nn.Module"):
        odesolve(lambda t, z: -z, torch.ones(1, 1), torch.tensor([0.0, 1.0]), adjoint=True)
