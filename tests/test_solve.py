"""odesolve: exact solutions across methods and dtypes, NFE counting, and clear errors on bad input."""
import math

import pytest
import torch
from torch import nn

from torchdiffeq import odeint

from odecore import CountNFE, odesolve
from odecore.solve import SolverError, lean_dopri5

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
@pytest.mark.parametrize("method", ["dopri5", "lean_dopri5", "dopri8", "bosh3", "rk4"])
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


@pytest.mark.parametrize("method", ["dopri5", "lean_dopri5"])
def test_decreasing_times_and_tuple_state(method):
    func = lambda t, s: (-s[0], 2 * s[1])  # noqa: E731
    z = odesolve(func, (torch.ones(1), torch.ones(1)), torch.tensor([1.0, 0.0]), rtol=1e-9, atol=1e-9,
                 method=method)
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


class VanDerPol(nn.Module):
    """A nonlinear oscillator with a parameter, so step sizes vary along the solve."""

    def __init__(self, mu: float = 2.0):
        super().__init__()
        self.mu = nn.Parameter(torch.tensor(mu, dtype=torch.float64))

    def forward(self, t, z):
        x, v = z[..., :1], z[..., 1:]
        return torch.cat([v, self.mu * (1 - x * x) * v - x], -1)


def test_lean_dopri5_follows_torchdiffeq():
    # Same tableau, controller and initial step: the solutions agree to the tolerance and the step
    # counts nearly match (the lean solver lands on output times instead of interpolating).
    func = CountNFE(VanDerPol())
    z0 = torch.tensor([[2.0, 0.0], [0.5, 1.0]], dtype=torch.float64)
    t = torch.linspace(0, 6, 7, dtype=torch.float64)
    reference = odesolve(func, z0, t, rtol=1e-10, atol=1e-10)
    sols, nfes = {}, {}
    for method in ("dopri5", "lean_dopri5"):
        func.reset()
        sols[method] = odesolve(func, z0, t, rtol=1e-6, atol=1e-6, method=method)
        nfes[method] = func.reset()
    for method, z in sols.items():
        assert (z - reference).abs().max().item() < 1e-4, method
    assert abs(nfes["lean_dopri5"] - nfes["dopri5"]) <= 0.2 * nfes["dopri5"], nfes


def test_lean_dopri5_gradient():
    # Backpropagating through the accepted steps gives the gradient of the solution with respect
    # to a parameter: d/dk of z0 exp(-k t) at t = 1, and against torchdiffeq on Van der Pol.
    func = Decay().double()
    z = odesolve(func, torch.ones(2, 1, dtype=torch.float64), torch.tensor([0.0, 1.0], dtype=torch.float64),
                 rtol=1e-10, atol=1e-10, method="lean_dopri5")
    z[-1].sum().backward()
    assert func.k.grad.item() == pytest.approx(-2 * math.exp(-1.5), rel=1e-7)
    grads = []
    for method in ("dopri5", "lean_dopri5"):
        vdp = VanDerPol()
        odesolve(vdp, torch.tensor([[2.0, 0.0]], dtype=torch.float64), torch.tensor([0.0, 3.0], dtype=torch.float64),
                 rtol=1e-9, atol=1e-9, method=method)[-1].pow(2).sum().backward()
        grads.append(vdp.mu.grad.item())
    assert grads[1] == pytest.approx(grads[0], rel=1e-5)


def test_lean_dopri5_dense_output_follows_torchdiffeq():
    # Many output times cost no extra steps: lean_dopri5 interpolates with torchdiffeq's quartic, so
    # on 200 output times its NFE is torchdiffeq's (up to the last step, which it lands on t[-1]
    # instead of overshooting), and the solution and the gradient agree with torchdiffeq's
    t = torch.linspace(0, 6, 200, dtype=torch.float64)
    z0 = torch.tensor([[2.0, 0.0], [0.5, 1.0]], dtype=torch.float64)
    sols, nfes, grads = {}, {}, {}
    for method in ("dopri5", "lean_dopri5"):
        vdp = VanDerPol()
        func = CountNFE(vdp)
        sols[method] = odesolve(func, z0, t, rtol=1e-7, atol=1e-7, method=method)
        nfes[method] = func.reset()
        grads[method] = torch.autograd.grad(sols[method].pow(2).sum(), vdp.mu)[0].item()
    assert nfes["dopri5"] - 7 <= nfes["lean_dopri5"] <= nfes["dopri5"], nfes
    assert (sols["lean_dopri5"] - sols["dopri5"]).abs().max().item() < 1e-6
    assert grads["lean_dopri5"] == pytest.approx(grads["dopri5"], rel=1e-5)


def test_lean_dopri5_dense_weights_interpolate_the_step():
    # the weights reproduce the step's ends: y at x = 0 and the 5th-order y_new at x = 1
    from odecore.solve import _A, dense_weights

    assert dense_weights(0.0) == pytest.approx((0.0,) * 7, abs=1e-15)
    assert dense_weights(1.0) == pytest.approx((*_A[6], 0.0), abs=1e-12)


@pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf")   # dynamo inspecting inputs
@pytest.mark.parametrize("backend", ["aot_eager", pytest.param("inductor", marks=pytest.mark.slow)])
def test_lean_dopri5_compiled_steps_give_the_same_solve(backend, monkeypatch):
    # compile=True runs the same stages as one compiled graph: same solution, gradient and NFE.
    # aot_eager captures the graph and its backward as inductor does, without generating C++
    # (which takes most of a minute here): that one runs with --runslow
    from odecore import solve

    torch._dynamo.reset()
    monkeypatch.setitem(solve._compiled, "stages", torch.compile(solve._stages, backend=backend, dynamic=False))
    t = torch.linspace(0, 3, 5, dtype=torch.float64)
    z0 = torch.tensor([[2.0, 0.0]], dtype=torch.float64)
    out = {}
    for compile in (False, True):
        vdp = VanDerPol()
        func = CountNFE(vdp)
        z = odesolve(func, z0, t, rtol=1e-7, atol=1e-7, method="lean_dopri5", options={"compile": compile})
        out[compile] = (z, func.reset(), torch.autograd.grad(z.pow(2).sum(), vdp.mu)[0])
    assert torch.allclose(out[True][0], out[False][0], atol=1e-12)
    assert out[True][1] == out[False][1]
    assert torch.allclose(out[True][2], out[False][2], rtol=1e-10)


def test_lean_dopri5_refuses_what_it_cannot_do():
    z0, t = torch.ones(1, 1), torch.tensor([0.0, 1.0])
    with pytest.raises(ValueError, match="for the adjoint use method='dopri5'"):
        odesolve(Decay(), z0, t, method="lean_dopri5", adjoint=True)
    with pytest.raises(ValueError, match=r"not \['step_size'\]"):
        odesolve(Decay(), z0, t, method="lean_dopri5", options={"step_size": 0.1})
    # z' = z^2 from z(0) = 1 blows up at t = 1: a clear error, not an endless loop
    with pytest.raises(RuntimeError, match="lean_dopri5"):
        odesolve(lambda t, z: z * z, z0, torch.tensor([0.0, 2.0]), method="lean_dopri5",
                 options={"max_steps": 2000})


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
    ({"rtol": True}, "rtol must be a finite number"),                     # a boolean is not a tolerance
    ({"rtol": 1.0}, "rtol must be below 1"),
    ({"t": torch.tensor([0, 1])}, "t must be floating point"),
    ({"z0": torch.ones(1, 1, dtype=torch.bfloat16)}, "needs at least float32"),   # else a wrong answer, silently
    ({"z0": torch.ones(1, 1, dtype=torch.float16)}, "needs at least float32"),
    ({"method": "rk4", "options": {"step_size": 0.0}}, "step_size must be a finite number > 0"),
    ({"method": "euler", "options": {"step_size": -0.1}}, "step_size must be a finite number > 0"),
    ({"method": "rk4", "options": {"step_size": "0.1"}}, "step_size must be a finite number > 0"),
    ({"method": "rk4", "options": {"step_size": 0.0}, "max_steps": 10}, "step_size must be"),   # before max_steps divides
    ({"adjoint_options": {"norm": "seminorm"}}, "apply only with adjoint=True"),   # else silently unused
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


@pytest.mark.parametrize("method", ["dopri5", "lean_dopri5", "rk4"])
@pytest.mark.parametrize("func,message", [
    (lambda t, z: -z.reshape(2, 3), r"shape \(2, 3\) for state 0 of shape \(3, 2\)"),   # lean_dopri5 flattened it
    (lambda t, z: -z[:, :1], r"shape \(3, 1\) for state 0 of shape \(3, 2\)"),          # rk4 broadcast it
    (lambda t, z: None, "dynamics returned NoneType"),
])
def test_first_evaluation_is_checked(method, func, message):
    options = {"step_size": 0.1} if method == "rk4" else None
    with pytest.raises(ValueError, match=message):
        odesolve(func, torch.ones(3, 2), torch.tensor([0.0, 1.0]), method=method, options=options)


def test_first_evaluation_check_costs_no_evaluation():
    func = CountNFE(Decay())
    odesolve(func, torch.ones(3, 1), torch.tensor([0.0, 1.0]))
    ours = func.reset()
    odeint(func, torch.ones(3, 1), torch.tensor([0.0, 1.0]), rtol=1e-7, atol=1e-9)
    assert ours == func.reset()


# at t = 1e13 a float64 time is resolved to 0.002, which limits any solver (dopri5 is off by 3e-4)
@pytest.mark.parametrize("t,tol", [([0.0, 1e-13, 1.0], 1e-8), ([1.7e9, 1.7e9 + 1e-3], 1e-8),
                                   ([1e13, 1e13 + 1.0], 1e-3)])
def test_lean_dopri5_solves_close_and_large_times(t, tol):
    """The underflow test looks at the step size, not at a step cut short to land on an output time."""
    t = torch.tensor(t, dtype=torch.float64)
    z = odesolve(Decay(1.0).double(), torch.ones(2, 1, dtype=torch.float64), t, rtol=1e-9, atol=1e-9,
                 method="lean_dopri5")
    exact = torch.exp(-(t - t[0]))
    assert (z[:, 0, 0] - exact).abs().max().item() < tol


@pytest.mark.parametrize("kwargs,error,message", [
    ({"rtol": 0.0, "atol": 0.0}, ValueError, "rtol and atol cannot both be 0"),
    ({"z0": torch.ones(0, 2)}, ValueError, "z0 is empty"),
    ({"options": {"first_step": float("nan")}}, ValueError, "first_step must be a finite number > 0"),
    ({"func": lambda t, z: z * float("nan")}, SolverError, r"non-finite values \(NaN or inf\) at t0 = 0.0"),
])
def test_nan_or_zero_step_stops_at_once(kwargs, error, message):
    args = {"func": CountNFE(Decay()), "z0": torch.ones(1, 2), "t": torch.tensor([0.0, 1.0]), "rtol": 1e-6,
            "atol": 1e-6, "method": "lean_dopri5", "options": {"max_steps": 100_000}}
    args.update(kwargs)
    func = CountNFE(args.pop("func"))
    with pytest.raises(error, match=message):
        odesolve(func, args.pop("z0"), args.pop("t"), **args)
    assert func.nfe <= 1


@pytest.mark.parametrize("kwargs", [{"rtol": 0.0, "atol": 0.0}, {"first_step": float("nan")}, {"first_step": 0.0}])
def test_lean_dopri5_itself_refuses_a_nan_or_zero_step(kwargs):
    func = CountNFE(Decay())
    with pytest.raises(SolverError, match="initial step size is (nan|0.0)"):
        lean_dopri5(func, torch.ones(1, 2), torch.tensor([0.0, 1.0]), **{"rtol": 1e-6, "atol": 1e-6, **kwargs})
    assert func.nfe <= 2


@pytest.mark.parametrize("method,message", [
    ("lean_dopri5", r"step size underflowed at t = 0\.(49|5).*NaN or inf"),
    ("dopri5", "underflow in dt.*NaN or inf"),
])
def test_nan_during_the_solve_is_named(method, message):
    func = lambda t, z: -z if t < 0.5 else z * float("nan")  # noqa: E731
    with pytest.raises(SolverError, match=message):
        odesolve(func, torch.ones(1, 1), torch.tensor([0.0, 1.0]), method=method)


@pytest.mark.parametrize("method,message", [("dopri5", "max_num_steps exceeded.*diverging"),
                                            ("lean_dopri5", "more than 50 steps.*diverging")])
def test_step_limit_stops_a_blow_up(method, message):
    # z' = z^2 from z(0) = 1 blows up at t = 1
    func = CountNFE(lambda t, z: z * z)
    with pytest.raises(SolverError, match=message):
        odesolve(func, torch.ones(1, 1), torch.tensor([0.0, 2.0]), method=method, max_steps=50)
    assert func.nfe < 7 * 50 + 10


def test_unclear_inputs_are_named():
    class Buffered(Decay):
        def __init__(self):
            super().__init__()
            self.register_buffer("scale", torch.tensor(float("nan")))

    z0, t = torch.ones(1, 1), torch.tensor([0.0, 1.0])
    with pytest.raises(ValueError, match="buffer 'scale' of the dynamics contains non-finite"):
        odesolve(Buffered(), z0, t)
    with pytest.raises(ValueError, match="adjoint_options norm must be 'seminorm' or a function"):
        odesolve(Decay(), z0, t, adjoint=True, adjoint_options={"norm": "semi"})
    with pytest.warns(UserWarning, match="lean_dopri5 gives no gradient for t"):
        odesolve(Decay(), z0, t.clone().requires_grad_(True), method="lean_dopri5")
    assert "at least two" in odesolve.__doc__


def test_adjoint_needs_module():
    with pytest.raises(ValueError, match="nn.Module"):
        odesolve(lambda t, z: -z, torch.ones(1, 1), torch.tensor([0.0, 1.0]), adjoint=True)


# --------------------------------------------------------------- issue 22: callbacks, later evaluations, settings
class Counted(Decay):
    """Decay with torchdiffeq's callbacks, each counting its calls."""

    def __init__(self):
        super().__init__()
        self.calls = {name: 0 for name in ("callback_step", "callback_accept_step", "callback_reject_step",
                                          "callback_step_adjoint")}

    def _count(self, name):
        self.calls[name] += 1

    def callback_step(self, t0, y0, dt):
        self._count("callback_step")

    def callback_accept_step(self, t0, y0, dt):
        self._count("callback_accept_step")

    def callback_reject_step(self, t0, y0, dt):
        self._count("callback_reject_step")

    def callback_step_adjoint(self, t0, y0, dt):
        self._count("callback_step_adjoint")


@pytest.mark.filterwarnings("ignore:Solver 'rk4' does not support callbacks")   # the accept and reject ones
@pytest.mark.parametrize("method,adjoint", [("dopri5", False), ("dopri5", True), ("bosh3", False), ("rk4", False)])
def test_callbacks_are_called_as_torchdiffeq_calls_them(method, adjoint):
    from torchdiffeq import odeint_adjoint

    z0, t = torch.tensor([[1.0], [2.0]]), torch.tensor([0.0, 3.0])
    options = {"step_size": 0.25} if method == "rk4" else None
    counts = []
    for solve in ("odesolve", "torchdiffeq"):
        func = Counted()
        if solve == "odesolve":
            z = odesolve(func, z0, t, rtol=1e-3, atol=1e-6, method=method, options=options, adjoint=adjoint)
        else:
            plain = odeint_adjoint if adjoint else odeint
            z = plain(func, z0, t, rtol=1e-3, atol=1e-6, method=method, options=options)
        z[-1].sum().backward()
        counts.append(func.calls)
    assert counts[0] == counts[1]
    assert counts[0]["callback_step"] > 0
    assert (counts[0]["callback_step_adjoint"] > 0) == adjoint


def test_lean_dopri5_says_it_calls_no_callbacks():
    with pytest.warns(UserWarning, match="lean_dopri5 calls no callbacks"):
        odesolve(Counted(), torch.ones(1, 1), torch.tensor([0.0, 1.0]), method="lean_dopri5")


class Changing(nn.Module):
    """Dynamics right on the first evaluations and wrong (shape or dtype) from the `after`-th on."""

    def __init__(self, wrong, after: int = 3):
        super().__init__()
        self.wrong, self.after, self.calls = wrong, after, 0

    def forward(self, t, z):
        self.calls += 1
        if self.calls >= self.after:
            return self.wrong(z)
        return tuple(-x for x in z) if isinstance(z, tuple) else -z


SOLVE_METHODS = [("dopri5", False), ("dopri5", True), ("rk4", False), ("euler", False), ("bosh3", False),
                 ("lean_dopri5", False)]


@pytest.mark.parametrize("method,adjoint", SOLVE_METHODS)
def test_a_shape_that_changes_after_the_first_evaluation_is_named(method, adjoint):
    func = Changing(lambda z: -z[:, :1])            # (3, 1) for a (3, 2) state: dopri5 and rk4 broadcast it
    options = {"step_size": 0.1} if method in ("rk4", "euler") else None
    with pytest.raises(ValueError, match=r"shape \(3, 1\) for state 0 of shape \(3, 2\) at t = "):
        odesolve(func, torch.ones(3, 2), torch.tensor([0.0, 1.0]), method=method, options=options, adjoint=adjoint)


@pytest.mark.parametrize("method,adjoint", SOLVE_METHODS)
@pytest.mark.parametrize("after", [1, 3])
def test_dynamics_must_return_the_states_dtype(method, adjoint, after):
    # float64 slopes for a float32 state: dopri5 and rk4 accepted them, lean_dopri5 failed in addmv
    func = Changing(lambda z: -z.double(), after)
    options = {"step_size": 0.1} if method in ("rk4", "euler") else None
    with pytest.raises(ValueError, match="returned torch.float64 for state 0 of dtype torch.float32 .*state's dtype"):
        odesolve(func, torch.ones(3, 2), torch.tensor([0.0, 1.0]), method=method, options=options, adjoint=adjoint)


@pytest.mark.parametrize("method", ["dopri5", "lean_dopri5"])
def test_tuple_state_outputs_are_checked_on_every_evaluation(method):
    func = Changing(lambda z: (-z[0], -z[1].double()))
    with pytest.raises(ValueError, match="returned torch.float64 for state 1 of dtype torch.float32"):
        odesolve(func, (torch.ones(2), torch.ones(3)), torch.tensor([0.0, 1.0]), method=method)
    func = Changing(lambda z: -z[0])
    with pytest.raises(ValueError, match=r"dynamics returned Tensor for a state of 2 tensor\(s\) at t = "):
        odesolve(func, (torch.ones(2), torch.ones(3)), torch.tensor([0.0, 1.0]), method=method)


@pytest.mark.parametrize("max_steps", [-1, 0, 2.5, True, "100"])
@pytest.mark.parametrize("method", ["dopri5", "lean_dopri5", "rk4"])
def test_max_steps_must_be_a_positive_int(method, max_steps):
    func = CountNFE(Decay())
    with pytest.raises(ValueError, match=f"max_steps must be a positive int .*got {max_steps!r}"):
        odesolve(func, torch.ones(1, 1), torch.tensor([0.0, 1.0]), method=method, max_steps=max_steps,
                 options={"step_size": 0.1} if method == "rk4" else None)
    assert func.nfe == 0


def test_fixed_grid_methods_honour_max_steps_up_front():
    func = CountNFE(Decay())
    z0, t = torch.ones(1, 1), torch.tensor([0.0, 1.0])
    with pytest.raises(ValueError, match="rk4 would take 100 steps, more than max_steps=50"):
        odesolve(func, z0, t, method="rk4", options={"step_size": 0.01}, max_steps=50)
    with pytest.raises(ValueError, match="euler would take 4 steps, more than max_steps=3"):
        odesolve(func, z0, torch.linspace(0, 1, 5), method="euler", max_steps=3)
    assert func.nfe == 0
    odesolve(func, z0, t, method="rk4", options={"step_size": 0.01}, max_steps=100)
    assert func.nfe == 400
    with pytest.raises(ValueError, match="scipy_lsoda takes no max_steps"):
        odesolve(func, z0, t, method="scipy_lsoda", max_steps=100)


@pytest.mark.parametrize("where", ["t", "z0"])
def test_a_meta_device_is_named(where):
    z0, t = torch.ones(1, 1), torch.tensor([0.0, 1.0])
    if where == "t":
        t = t.to("meta")
    else:
        z0 = z0.to("meta")
    with pytest.raises(ValueError, match=f"{where} is on the meta device"):
        odesolve(Decay(), z0, t)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a second device")
def test_t_on_another_device_than_z0_is_named():
    with pytest.raises(ValueError, match="t is on cpu but z0 is on cuda"):
        odesolve(Decay().cuda(), torch.ones(1, 1, device="cuda"), torch.tensor([0.0, 1.0]))


@pytest.mark.parametrize("needs", ["parameters", "z0"])
def test_scipy_lsoda_refuses_to_drop_the_gradient_silently(needs):
    func, z0 = Decay(), torch.ones(2, 1)
    if needs == "z0":
        func.requires_grad_(False)
        z0.requires_grad_(True)
    with pytest.raises(ValueError, match="scipy_lsoda gives no gradient .*adjoint=True.*torch.no_grad"):
        odesolve(func, z0, torch.tensor([0.0, 1.0]), method="scipy_lsoda")
    with torch.no_grad():                                    # evaluation only: fine
        z = odesolve(func, z0, torch.tensor([0.0, 1.0]), rtol=1e-8, atol=1e-8, method="scipy_lsoda")
    assert z[-1, 0, 0].item() == pytest.approx(math.exp(-1.5), rel=1e-5)
    if needs == "parameters":                                # the adjoint gives the gradient
        odesolve(func, z0, torch.tensor([0.0, 1.0]), rtol=1e-8, atol=1e-8, method="scipy_lsoda",
                 adjoint=True)[-1].sum().backward()
        assert func.k.grad.item() == pytest.approx(-2 * math.exp(-1.5), rel=1e-4)
