"""torchdiffeq's own test suite, run through odesolve: the peer check.

The checks of rtqichen/torchdiffeq's tests (problems.py, odeint_tests.py, gradient_tests.py,
api_tests.py, norm_tests.py, event_tests.py), rewritten in pytest for `odecore.odesolve`, with their
problems, tolerances and counts: analytic problems with exact solutions over every method, float32 and
float64, forwards and backwards in time; the adjoint against direct backprop and float64 gradcheck;
tuple states; callbacks; the options odesolve passes on (jump_t, perturb, grid_constructor,
min_step, max_step, norm); lean_dopri5 and scipy_lsoda join the methods they stand beside. So a change
of odesolve that breaks what torchdiffeq promises (a callback no longer called, an option dropped)
fails here.

Where odesolve deliberately does otherwise, the torchdiffeq behaviour is written as a test marked
xfail(strict=True) with the reason: it must keep failing, with the error odesolve raises, so a
deviation is never silently lost or gained. A few of torchdiffeq's settings are smaller here to keep
the file fast on one thread; each says so.
"""
from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn
from torchdiffeq import odeint, odeint_adjoint
from torchdiffeq._impl.odeint import SOLVERS
from torchdiffeq._impl.solvers import AdaptiveStepsizeODESolver, FixedGridODESolver

from odecore import odesolve

# torchdiffeq's methods, read from its own table (not from odecore, so a change there cannot hide one)
ADAPTIVE = frozenset(m for m, cls in SOLVERS.items() if issubclass(cls, AdaptiveStepsizeODESolver))
FIXED_GRID = frozenset(m for m, cls in SOLVERS.items() if issubclass(cls, FixedGridODESolver))

DTYPES = (torch.float32, torch.float64)
ADAPTIVE_METHODS = (*sorted(ADAPTIVE), "lean_dopri5")   # torchdiffeq's adaptive solvers, and ours beside dopri5
FIXED_METHODS = tuple(sorted(FIXED_GRID))
SCIPY_SOLVERS = ("RK45", "RK23", "DOP853", "Radau", "BDF", "LSODA")


# ------------------------------------------------------------------------------ problems
class ConstantODE(nn.Module):
    """y' = a + (y - (a t + b))^5: y = a t + b is exact for every consistent method."""

    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(0.2))
        self.b = nn.Parameter(torch.tensor(3.0))

    def forward(self, t, y):
        return self.a + (y - (self.a * t + self.b)) ** 5

    def exact(self, t):
        return self.a * t + self.b


class SineODE(nn.Module):
    """y' = 2y/t + t^4 sin 2t - t^2 + 4t^3, a polynomial-trigonometric solution."""

    def forward(self, t, y):
        return 2 * y / t + t ** 4 * torch.sin(2 * t) - t ** 2 + 4 * t ** 3

    def exact(self, t):
        return (-0.5 * t ** 4 * torch.cos(2 * t) + 0.5 * t ** 3 * torch.sin(2 * t) + 0.25 * t ** 2 * torch.cos(2 * t)
                - t ** 3 + 2 * t ** 4 + (math.pi - 0.25) * t ** 2)


class LinearODE(nn.Module):
    """y' = A y with A antisymmetric (10 x 10, seed 0), y(0) = 1: y = exp(A t) 1."""

    def __init__(self, dim: int = 10):
        super().__init__()
        u = torch.randn(dim, dim, generator=torch.Generator().manual_seed(0)) * 0.1
        self.A = nn.Parameter(u - u.T)
        self.nfe = 0

    def forward(self, t, y):
        self.nfe += 1
        return (self.A @ y.reshape(-1, 1)).reshape(-1)

    def exact(self, t):
        a = self.A.detach().double()
        return torch.stack([torch.linalg.matrix_exp(a * ti) @ torch.ones(len(a), dtype=torch.float64)
                            for ti in t.detach().double()]).to(t.dtype)


class ExpODE(nn.Module):
    """y' = -0.1 exp(-0.1 t), which does not depend on y."""

    def forward(self, t, y):
        return -0.1 * self.exact(t)

    def exact(self, t):
        return torch.exp(-0.1 * t)


PROBLEMS = {"constant": ConstantODE, "linear": LinearODE, "sine": SineODE, "exp": ExpODE}


def problem(ode: str = "constant", dtype: torch.dtype = torch.float64, reverse: bool = False, npts: int = 10):
    """(func, z0, t, exact): t ten float64 times in [1, 8] (flipped when `reverse`), exact the solution there
    in `dtype`, z0 = exact[0] requiring grad, as torchdiffeq's construct_problem makes them."""
    func = PROBLEMS[ode]().to(dtype)
    t = torch.linspace(1, 8, npts, dtype=torch.float64)
    exact = func.exact(t).to(dtype).detach()
    if reverse:
        t, exact = t.flip(0), exact.flip(0)
    return func, exact[0].clone().requires_grad_(True), t, exact


def rel_error(exact, estimate) -> float:
    return ((exact - estimate) / exact).abs().max().item()


def eps_for(method: str, ode: str) -> float:
    """torchdiffeq's tolerances on the relative error."""
    if method in ("adaptive_heun", "bosh3"):
        return 4e-3
    return {"linear": 2e-3, "exp": 5e-2}.get(ode, 3e-4)


LOW_ORDER = ("adaptive_heun", "fehlberg2", "bosh3")   # at torchdiffeq's tolerances, a second or more per solve


def solver_kwargs(method: str, dtype: torch.dtype) -> dict:
    """dopri8 needs tighter tolerances than the defaults to reach the others' error (torchdiffeq's values)."""
    if method == "dopri8":
        return {"rtol": 1e-12, "atol": 1e-14} if dtype == torch.float64 else {"rtol": 1e-7, "atol": 1e-7}
    return {}


def _cases():
    """(method, ode) as torchdiffeq pairs them: fixed-grid methods on the problem they solve exactly."""
    for method in ADAPTIVE_METHODS:
        for ode in PROBLEMS:
            slow = method in LOW_ORDER and ode != "constant"
            yield pytest.param(method, ode, marks=[pytest.mark.slow] if slow else [], id=f"{method}-{ode}")
    for method in FIXED_METHODS:
        yield pytest.param(method, "constant", id=f"{method}-constant")


# ------------------------------------------------------------------------------ odeint_tests.py
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "backward"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("method,ode", list(_cases()))
def test_exact_solution(method, ode, dtype, reverse):
    func, z0, t, exact = problem(ode, dtype, reverse)
    z = odesolve(func, z0, t, method=method, **solver_kwargs(method, dtype))
    assert z.shape == exact.shape and z.dtype == dtype
    assert rel_error(exact, z) < eps_for(method, ode)


@pytest.mark.parametrize("method", sorted({*ADAPTIVE, *FIXED_GRID}))
def test_the_same_numbers_as_torchdiffeq(method):
    """odesolve only checks and passes on: for torchdiffeq's methods its solution is torchdiffeq's, bit for bit."""
    func, z0, t, _ = problem("linear" if method in ADAPTIVE else "constant")
    tol = {"rtol": 1e-4, "atol": 1e-6}                    # any tolerance will do; a loose one is quick
    assert torch.equal(odesolve(func, z0, t, method=method, **tol), odeint(func, z0, t, method=method, **tol))


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "backward"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("ode", PROBLEMS)
def test_adjoint_exact_solution(ode, dtype, reverse):
    func, z0, t, exact = problem(ode, dtype, reverse)
    z = odesolve(func, z0, t, adjoint=True)
    assert rel_error(exact, z) < (2e-3 if ode == "linear" else 1e-4)


def _scipy_cases():
    # torchdiffeq runs every solver in both dtypes; here float32 only for the LSODA pair (scipy solves in float64)
    for solver in (*SCIPY_SOLVERS, "scipy_lsoda"):
        for dtype in DTYPES if solver in ("LSODA", "scipy_lsoda") else (torch.float64,):
            yield pytest.param(solver, dtype, id=f"{solver}-{dtype}")


@pytest.mark.filterwarnings("ignore:The following arguments have no effect")   # torchdiffeq passes min_step to all
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "backward"])
@pytest.mark.parametrize("ode", PROBLEMS)
@pytest.mark.parametrize("solver,dtype", list(_scipy_cases()))
def test_scipy_solvers(solver, dtype, ode, reverse):
    func, z0, t, exact = problem(ode, dtype, reverse)
    method, options = ("scipy_lsoda", None) if solver == "scipy_lsoda" else ("scipy_solver", {"solver": solver})
    with torch.no_grad():   # without the adjoint odesolve refuses to drop the gradient silently (see below)
        z = odesolve(func, z0, t, method=method, options=options)
    assert z.shape == exact.shape
    assert rel_error(exact, z) < 1e-3


class JumpF(nn.Module):
    """-x/2 before t = 0.5, x^2 after: a jump in the dynamics that jump_t tells the solver of."""

    def __init__(self):
        super().__init__()
        self.nfe = 0

    def forward(self, t, x):
        self.nfe += 1
        return -0.5 * x if t < 0.5 else x ** 2


@pytest.mark.parametrize("adjoint", [False, True], ids=["direct", "adjoint"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("method", [pytest.param(m, marks=[pytest.mark.slow] if m == "adaptive_heun" else [])
                                    for m in sorted(ADAPTIVE - {"dopri8"})])   # torchdiffeq skips dopri8 here too
def test_jump_t_saves_evaluations(method, dtype, adjoint):
    x0 = torch.tensor([1.0, 2.0], dtype=dtype, requires_grad=True)
    t = torch.tensor([0.0, 1.0], dtype=dtype)
    simple, better = JumpF(), JumpF()
    simple_x = odesolve(simple, x0, t, rtol=1e-7, atol=1e-6, method=method, adjoint=adjoint)
    with warnings.catch_warnings():
        better_x = odesolve(better, x0, t, rtol=1e-6, atol=1e-6, method=method, adjoint=adjoint,
                            options={"jump_t": torch.tensor([0.5], dtype=dtype)})
    assert better.nfe < simple.nfe
    if adjoint:
        simple.nfe = better.nfe = 0
        simple_x.sum().backward()
        better_x.sum().backward()
        assert better.nfe < simple.nfe


class RecordTimes(nn.Module):
    """x' = -x, recording every time it is evaluated at."""

    def __init__(self):
        super().__init__()
        self.times: list[float] = []

    def forward(self, t, x):
        self.times.append(t.item())
        return -x


@pytest.mark.parametrize("perturb", [True, False])
@pytest.mark.parametrize("adjoint", [False, True], ids=["direct", "adjoint"])
@pytest.mark.parametrize("method", FIXED_METHODS)
def test_perturb_moves_the_evaluations_off_the_grid(method, adjoint, perturb):
    func = RecordTimes()
    x0 = torch.tensor([1.0, 2.0], requires_grad=True)
    with warnings.catch_warnings():
        xs = odesolve(func, x0, torch.tensor([0.0, 1.0]), method=method, adjoint=adjoint,
                      options={"step_size": 0.5, "perturb": perturb})
    on_grid = [0.0 in func.times, 0.5 in func.times]
    assert on_grid == [not perturb] * 2
    if adjoint:
        func.times.clear()
        xs.sum().backward()
        assert [1.0 in func.times, 0.5 in func.times] == [not perturb] * 2


class Growth(nn.Module):
    def forward(self, t, x):
        return x


@pytest.mark.parametrize("adjoint", [False, True], ids=["direct", "adjoint"])
def test_grid_constructor(adjoint):
    calls = []

    def grid(f, y0, t):
        calls.append(t.tolist())
        return torch.linspace(float(t[0]), float(t[1]), 11)

    x0 = torch.tensor(1.0, requires_grad=True)
    xs = odesolve(Growth(), x0, torch.tensor([0.0, 1.0]), method="euler", adjoint=adjoint,
                  options={"grid_constructor": grid})
    assert abs(xs[1].item() - 1.1 ** 10) < 1e-6            # exact for Euler's scheme
    assert calls == [[0.0, 1.0]]
    if adjoint:
        xs[1].backward()
        assert calls == [[0.0, 1.0], [1.0, 0.0]]           # the backward pass on the reversed interval
        assert abs(x0.grad.item() - 1.1 ** 10) < 1e-6


@pytest.mark.parametrize("max_step", [math.inf, 5.0])
@pytest.mark.parametrize("min_step", [0.0, 2.0])
def test_min_step_saves_evaluations(min_step, max_step):
    func, z0, t, _ = problem("linear")
    odesolve(func, z0, t, options={"min_step": min_step, "max_step": max_step})
    assert func.nfe < 50 if min_step > 0 else func.nfe > 100


@pytest.mark.parametrize("max_step", [math.inf, 5.0])
@pytest.mark.parametrize("min_step", [0.0, 2.0])
def test_scipy_step_options_are_passed_on(min_step, max_step):
    """torchdiffeq's test also expects LSODA to take fewer evaluations with min_step = 2; with scipy 1.17 it
    ignores min_step (191 evaluations either way, under odeint too), so here odesolve has to match odeint."""
    nfe = []
    for solve in (odesolve, odeint):
        func, z0, t, _ = problem("linear")
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")                 # LSODA complains about convergence
            solve(func, z0, t, method="scipy_solver",
                  options={"solver": "LSODA", "min_step": min_step, "max_step": max_step})
        nfe.append(func.nfe)
    assert nfe[0] == nfe[1]


class NeuralF(nn.Module):
    """A small tanh network: torchdiffeq's dynamics for the callback and norm tests (weights of seed 0)."""

    def __init__(self, width: int = 10):
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(0)
            self.net = nn.Sequential(nn.Linear(2, width), nn.Tanh(), nn.Linear(width, 2), nn.Tanh())

    def forward(self, t, x):
        return self.net(x)


@pytest.mark.parametrize("method,callback", [
    *((m, c) for m in FIXED_METHODS for c in ("callback_accept_step", "callback_reject_step")),  # they call callback_step
    *((m, c) for m in ("scipy_solver", "scipy_lsoda") for c in ("callback_step", "callback_accept_step", "callback_reject_step"))])
def test_a_callback_the_method_does_not_call_is_warned_of(method, callback):
    func = NeuralF()
    setattr(func, callback, lambda t0, y0, dt: None)
    with pytest.warns(UserWarning, match="does not support callbacks"), torch.no_grad():
        odesolve(func, torch.tensor([1.0, 2.0]), torch.tensor([0.0, 1.0]), method=method)


@pytest.mark.parametrize("forward,adjoint", [(False, True), (True, False), (True, True)],
                         ids=["adjoint callbacks", "forward callbacks", "both"])
@pytest.mark.parametrize("method", [*FIXED_METHODS, *sorted(ADAPTIVE - {"dopri8"})])  # dopri8: torchdiffeq skips it
def test_callbacks_count_the_steps(method, forward, adjoint):
    func = NeuralF()
    counts = {name: 0 for name in ("step", "accept", "reject", "step_adjoint", "accept_adjoint", "reject_adjoint")}

    def counter(name):
        def callback(t0, y0, dt):
            counts[name] += 1
        return callback

    adaptive = method in ADAPTIVE
    for on, suffix in ((forward, ""), (adjoint, "_adjoint")):
        if on:
            setattr(func, f"callback_step{suffix}", counter(f"step{suffix}"))
            if adaptive:
                setattr(func, f"callback_accept_step{suffix}", counter(f"accept{suffix}"))
                setattr(func, f"callback_reject_step{suffix}", counter(f"reject{suffix}"))
    # torchdiffeq's adaptive runs use the default tolerances; the counts' checks hold at any, and 1e-4 is quicker
    kwargs = {"options": {"step_size": 0.1}} if method in FIXED_GRID else {"rtol": 1e-4, "atol": 1e-5}
    if method == "implicit_adams":
        kwargs = {"options": {"step_size": 0.1}, "rtol": 1e-3, "atol": 1e-4}
    xs = odesolve(func, torch.tensor([1.0, 2.0]), torch.tensor([0.0, 1.0]), method=method, adjoint=True, **kwargs)
    xs.sum().backward()
    for on, suffix in ((forward, ""), (adjoint, "_adjoint")):
        steps = counts[f"step{suffix}"]
        if not on:
            assert steps == 0
        elif adaptive:
            assert steps > 0 and counts[f"accept{suffix}"] + counts[f"reject{suffix}"] == steps
        else:
            assert steps == 10


# ------------------------------------------------------------------------------ gradient_tests.py
@pytest.mark.parametrize("method,adjoint", [
    *((m, a) for m in sorted({*ADAPTIVE, *FIXED_GRID}) for a in (False, True)),
    ("scipy_solver", True), ("scipy_lsoda", True),   # no autograd path, only the adjoint (torchdiffeq's choice too)
    ("lean_dopri5", False)])                         # no adjoint: it backpropagates through its steps
def test_gradcheck(method, adjoint):
    func, z0, t, _ = problem("constant", npts=4)          # smaller than torchdiffeq's 10 times: 3x fewer solves
    t = t.requires_grad_(True)
    if method == "lean_dopri5":           # it reads t as numbers: the gradient is for z0 only
        assert torch.autograd.gradcheck(lambda z: odesolve(func, z, t.detach(), method=method), (z0,))
    else:
        assert torch.autograd.gradcheck(lambda z, s: odesolve(func, z, s, method=method, adjoint=adjoint), (z0, t))


@pytest.mark.parametrize("t_grad", [True, pytest.param(False, marks=pytest.mark.slow)],   # with dL/dt checks more
                         ids=["with dL/dt", "without"])
@pytest.mark.parametrize("ode,eps", [("constant", 1e-12), ("linear", 1e-5), ("sine", 5e-3), ("exp", 1e-2)])
def test_adjoint_against_direct_backprop(ode, eps, t_grad):
    func, z0, t, _ = problem(ode)
    t.requires_grad_(t_grad)
    grads = []
    for adjoint in (False, True):
        leaves = [z0, *([t] if t_grad else []), *func.parameters()]
        for leaf in leaves:
            leaf.grad = None
        zs = odesolve(func, z0, t, rtol=1e-9, atol=1e-12, adjoint=adjoint)
        zs.backward(torch.rand(zs.shape, dtype=zs.dtype, generator=torch.Generator().manual_seed(0)))
        grads.append([leaf.grad.clone() for leaf in leaves])
    for direct, adjoint in zip(*grads):
        assert (direct - adjoint).abs().max().item() < eps


class Cubic(nn.Module):
    """y' = y^3 A, with a module that takes no part: its gradient must be zero, not missing."""

    def __init__(self):
        super().__init__()
        self.A = nn.Parameter(torch.tensor([[-0.1, 2.0], [-2.0, -0.1]]))
        self.unused = nn.Linear(2, 5)

    def forward(self, t, y):
        return y ** 3 @ self.A


@pytest.mark.parametrize("t_grad", [True, False], ids=["with dL/dt", "without"])
@pytest.mark.parametrize("method", ["dopri5", "scipy_solver", "scipy_lsoda"])
def test_adjoint_gradient_against_dopri5(method, t_grad):
    def run(adjoint: bool, gradys=None):
        func = Cubic()
        y0 = torch.tensor([[2.0, 0.0]], requires_grad=True)
        t = torch.linspace(0.0, 5.0, 10, requires_grad=t_grad)   # torchdiffeq's goes to 25: 5x the steps
        ys = odesolve(func, y0, t, method=method if adjoint else "dopri5", adjoint=adjoint)
        gradys = torch.rand(ys.shape, generator=torch.Generator().manual_seed(0)) * 0.1 if gradys is None else gradys
        ys.backward(gradys)
        return func, y0, t, gradys

    adj_func, adj_y0, adj_t, gradys = run(adjoint=True)
    assert adj_func.unused.weight.grad.abs().max() == 0 and adj_func.unused.bias.grad.abs().max() == 0
    func, y0, t, _ = run(adjoint=False, gradys=gradys)
    assert (y0.grad - adj_y0.grad).abs().max() < 3e-4
    if t_grad:
        assert (t.grad - adj_t.grad).abs().max() < 1e-4
    assert (func.A.grad - adj_func.A.grad).abs().max() < 2e-3


# ------------------------------------------------------------------------------ api_tests.py: tuple states
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("method", ADAPTIVE_METHODS)
def test_tuple_state(method, dtype):
    func, z0, t, exact = problem("constant", dtype)
    zs = odesolve(lambda s, z: (func(s, z[0]), func(s, z[1])), (z0, z0), t, method=method)
    eps = 1e-4 if dtype == torch.float32 else 1e-12
    assert (exact - zs[0]).abs().max() < eps and (exact - zs[1]).abs().max() < eps


@pytest.mark.parametrize("i", [0, 1])
@pytest.mark.parametrize("method", ADAPTIVE_METHODS)
def test_tuple_state_gradcheck(method, i):
    func, z0, t, _ = problem("constant", npts=4)          # 4 times, not 10, as in test_gradcheck
    pair = lambda s, z: (func(s, z[0]), func(s, z[1]))  # noqa: E731
    if method == "lean_dopri5":
        assert torch.autograd.gradcheck(lambda z: odesolve(pair, (z, z), t, method=method)[i], (z0,))
    else:
        assert torch.autograd.gradcheck(lambda z, s: odesolve(pair, (z, z), s, method=method)[i],
                                        (z0, t.requires_grad_(True)))


# ------------------------------------------------------------------------------ norm_tests.py
@pytest.mark.parametrize("z0", [torch.tensor(1.0), (torch.tensor(1.0),),
                                (torch.tensor(1.0), torch.tensor([[0.5, 0.5], [0.1, 0.1]]))],
                         ids=["tensor", "tuple of one", "tuple of two"])
def test_a_norm_option_sees_the_state_as_given(z0):
    seen = []

    def norm(state):
        seen.append(state)
        first = state[0] if isinstance(state, tuple) else state
        return first.pow(2).mean().sqrt()

    odesolve(lambda t, x: x, z0, torch.tensor([0.0, 1.0]), options={"norm": norm})
    assert seen
    for state in seen:
        assert isinstance(state, tuple) == isinstance(z0, tuple)
        shapes = [s.shape for s in (state if isinstance(state, tuple) else (state,))]
        assert shapes == [z.shape for z in (z0 if isinstance(z0, tuple) else (z0,))]


class TwoParams(nn.Module):
    """x' = x, with two parameters of shapes (7,) and () that the adjoint carries."""

    def __init__(self):
        super().__init__()
        self.p1 = nn.Parameter(torch.rand(7))
        self.p2 = nn.Parameter(torch.rand(()))

    def forward(self, t, x):
        return x


@pytest.mark.parametrize("adjoint_options,seminorm", [(None, False), ({}, False), ({"norm": "seminorm"}, True)],
                         ids=["no adjoint_options", "empty adjoint_options", "seminorm"])
@pytest.mark.parametrize("shape", [(), (1,), (2, 2)], ids=str)
def test_the_adjoint_norm(shape, adjoint_options, seminorm):
    """The backward solve's norm takes (t, y, adj_y, adj_p1, adj_p2); the seminorm leaves the parameters out."""
    xs = odesolve(TwoParams(), torch.full(shape, 1.0), torch.tensor([0.0, 1.0]), adjoint=True,
                  adjoint_options=adjoint_options)
    built = xs.grad_fn.adjoint_options["norm"]
    calls = []

    def spy(flat):
        got = built(flat)
        calls.append(got)
        return got

    xs.grad_fn.adjoint_options["norm"] = spy
    xs.sum().backward()
    assert calls
    # the norm by hand from torchdiffeq's definition, on an augmented state whose every part differs
    parts = (torch.tensor(0.5), torch.full(shape, 0.25), torch.full(shape, 2.0), torch.full((7,), 9.0), torch.tensor(3.0))
    rms = lambda x: x.pow(2).mean().sqrt()  # noqa: E731
    expected = max(parts[0].abs(), rms(parts[1]), rms(parts[2]))
    if not seminorm:
        expected = max(expected, rms(parts[3]), parts[4].abs())
    assert built(parts).item() == pytest.approx(expected.item())


# ------------------------------------------------------------------------------ deviations
@pytest.mark.xfail(strict=True, raises=ValueError,
                   reason="odesolve needs at least two times: a solve from t0 to t0 is more often a caller's "
                          "mistake than a request (torchdiffeq returns z0)")
def test_a_single_time_returns_z0():
    func, z0, t, exact = problem("constant")
    assert torch.equal(odesolve(func, z0, t[:1]), exact[:1])


@pytest.mark.xfail(strict=True, raises=TypeError,
                   reason="odesolve has no event_fn: no chapter stops a solve at an event, so odeint's event "
                          "handling is not passed on")
def test_event_handling():
    func, z0, t, exact = problem("constant")
    t_event, z = odesolve(func, z0, t[:2], event_fn=lambda s, z: (z - exact[2]).sum())
    assert rel_error(exact[2], z[-1]) < 1e-4 and rel_error(t[2], t_event) < 1e-4


@pytest.mark.xfail(strict=True, raises=ValueError,
                   reason="odesolve takes floating-point states only; torchdiffeq also solves complex ones")
def test_a_complex_state():
    z = odesolve(lambda t, y: 1j * y, torch.tensor([1.0 + 0j]), torch.tensor([0.0, 1.0]))
    assert abs(z[-1].item() - complex(math.cos(1), math.sin(1))) < 1e-5


@pytest.mark.xfail(strict=True, raises=ValueError,
                   reason="odesolve requires the dynamics to return the state's dtype; torchdiffeq's dopri5 "
                          "rounds a float64 slope into a float32 state and its rk4 promotes it")
def test_dynamics_of_another_dtype():
    z = odesolve(lambda t, y: -y.double(), torch.ones(2), torch.tensor([0.0, 1.0]))
    assert z.dtype == torch.float32


@pytest.mark.xfail(strict=True, raises=ValueError,
                   reason="odesolve refuses a scipy method when gradients are expected and adjoint is off: "
                          "torchdiffeq returns an output with no graph, so every gradient is silently missing")
def test_scipy_without_the_adjoint_where_gradients_are_expected():
    func, z0, t, exact = problem("constant")
    z = odesolve(func, z0, t, method="scipy_solver", options={"solver": "LSODA"})
    assert not z.requires_grad


@pytest.mark.xfail(strict=True, raises=ValueError,
                   reason="odesolve's adjoint takes its parameters from an nn.Module; torchdiffeq also takes a "
                          "plain function with adjoint_params=()")
def test_the_adjoint_of_a_plain_function():
    x0 = torch.tensor([1.0], requires_grad=True)
    odesolve(lambda t, x: -x, x0, torch.tensor([0.0, 1.0]), adjoint=True)[-1].sum().backward()
    assert x0.grad.item() == pytest.approx(math.exp(-1.0), rel=1e-5)


@pytest.mark.xfail(strict=True, raises=ValueError,
                   reason="a fixed-grid method honours max_steps: a grid of more steps is refused up front "
                          "(torchdiffeq's fixed-grid solvers ignore max_num_steps)")
def test_a_fixed_grid_longer_than_max_steps():
    z = odesolve(lambda t, x: -x, torch.ones(1), torch.tensor([0.0, 1.0]), method="rk4",
                 options={"step_size": 0.01}, max_steps=10)
    assert z.shape == (2, 1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a second device")
@pytest.mark.xfail(strict=True, raises=ValueError,
                   reason="odesolve refuses t on another device than z0; torchdiffeq warns and moves t")
def test_t_on_another_device():
    odesolve(lambda t, x: -x, torch.ones(1, device="cuda"), torch.tensor([0.0, 1.0]))
