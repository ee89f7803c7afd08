"""Algorithm 1 (odecore.adjoint) against direct backprop, torchdiffeq's adjoint, finite differences,
the closed form of a linear ODE, and torch.autograd.gradcheck, all in float64."""
import pytest
import torch
from torchdiffeq import odeint, odeint_adjoint

from odecore.adjoint import adjoint_odeint
from odecore.experiments.adjoint import PROFILES, check_problem, memory_against_steps, peak_memory
from odecore.models.adjoint import LinearDynamics, MLPDynamics
from odecore.solve import SolverError

TOL = dict(rtol=1e-10, atol=1e-10)


def grads(solve, func, z0, t, w):
    for x in (z0, t, *func.parameters()):
        x.grad = None
    (solve(func, z0, t) * w).sum().backward()
    return [x.grad.clone() for x in (z0, t, *func.parameters())]


@pytest.fixture
def problem():
    torch.manual_seed(0)
    func = MLPDynamics(2, 8).double()
    z0 = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0.0, 0.5, 0.9, 1.4], dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, 2, dtype=torch.float64)
    return func, z0, t, w


@pytest.mark.parametrize("reference,rel", [
    (lambda f, z, t: odeint(f, z, t, **TOL), 1e-6),            # direct backprop through dopri5
    (lambda f, z, t: odeint_adjoint(f, z, t, **TOL), 1e-12),  # the same algorithm in torchdiffeq
])
def test_algorithm1_matches(problem, reference, rel):
    func, z0, t, w = problem
    ours = grads(lambda f, z, s: adjoint_odeint(f, z, s, **TOL), func, z0, t, w)
    theirs = grads(reference, func, z0, t, w)
    for a, b in zip(ours, theirs):
        assert torch.allclose(a, b, rtol=rel, atol=rel * b.abs().max().item())


def test_time_gradients_are_algorithm2(problem):
    """dL/dt_i for i >= 1 is dL/dz(t_i) . f(z(t_i), t_i); dL/dt_0 is -a(t_0) . f(z0, t0)."""
    func, z0, t, w = problem
    g_t = grads(lambda f, z, s: adjoint_odeint(f, z, s, **TOL), func, z0, t, w)[1]
    with torch.no_grad():
        z = odeint(func, z0, t, **TOL)
        direct = [(w[i] * func(t[i], z[i])).sum().item() for i in range(1, 4)]
    assert g_t[1:].tolist() == pytest.approx(direct, rel=1e-8)
    assert g_t[0].item() != 0.0


def test_gradcheck():
    torch.manual_seed(1)
    func = MLPDynamics(2, 4).double()
    t = torch.tensor([0.0, 0.4, 1.0], dtype=torch.float64, requires_grad=True)
    z0 = torch.randn(2, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda z, s: adjoint_odeint(func, z, s, **TOL), (z0, t), atol=1e-6)


@pytest.mark.parametrize("name", ["linear", "neural"])
def test_check_problem_meets_stated_tolerances(name):
    res = check_problem(PROFILES["smoke"], name)
    assert res["torchdiffeq_adjoint"]["max_rel"] < 1e-12
    assert res["direct"]["max_rel"] < 1e-6
    assert res["finite_differences"]["max_rel"] < 1e-6
    if name == "linear":
        assert res["closed_form"]["max_rel"] < 1e-8


def test_linear_closed_form_gradient_of_A():
    """d/dA sum(z(1)) for dz/dt = A z with A = diag(a): z_i(1) = z0_i exp(a_i), so d/da_i = z0_i exp(a_i)."""
    a = torch.tensor([0.3, -0.5], dtype=torch.float64)
    func = LinearDynamics(torch.diag(a))
    z0 = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
    adjoint_odeint(func, z0, torch.tensor([0.0, 1.0], dtype=torch.float64), **TOL)[-1].sum().backward()
    assert torch.diagonal(func.A.grad).tolist() == pytest.approx((z0[0] * a.exp()).tolist(), rel=1e-8)


def test_bad_input():
    with pytest.raises(ValueError, match="nn.Module"):
        adjoint_odeint(lambda t, z: z, torch.ones(1, 1), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="strictly"):
        adjoint_odeint(MLPDynamics(1, 2), torch.ones(1, 1), torch.tensor([0.0, 0.0]))


def test_peak_memory_sees_allocations():
    """A 4 MB tensor held during the call shows up as at least 4 MB of peak."""
    keep = []
    peak = peak_memory(lambda: keep.append(torch.ones(1_000_000)), torch.device("cpu"))
    assert peak >= 4_000_000


def test_memory_grows_for_direct_and_not_for_adjoint():
    cfg = PROFILES["smoke"]
    rows = memory_against_steps(cfg, torch.device("cpu"))
    by = {(r["method"], r["steps"]): r["peak_mib"] for r in rows}
    small, large = cfg.memory_steps[0], cfg.memory_steps[-1]
    assert by[("direct", large)] > 2 * by[("direct", small)]
    for method in ("adjoint", "alg1"):
        assert by[(method, large)] == pytest.approx(by[(method, small)], rel=0.1)


class LinearZ(torch.nn.Module):
    """nn.Linear as dynamics (a dtype-strict matmul); records the dtype of every state it sees."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(2, 2)
        self.seen = set()

    def forward(self, t, z):
        self.seen.add(z.dtype)
        return self.lin(z)


def test_float32_state_with_float64_times():
    """torchdiffeq's own test problems: a float32 z0 and float64 t; the backward pass stays in float32."""
    torch.manual_seed(0)
    func = LinearZ()
    z0 = torch.randn(3, 2, requires_grad=True)
    t = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64, requires_grad=True)
    ours = grads(lambda f, z, s: adjoint_odeint(f, z, s, rtol=1e-6, atol=1e-6), func, z0, t, torch.ones(3, 3, 2))
    assert func.seen == {torch.float32}
    theirs = grads(lambda f, z, s: odeint_adjoint(f, z, s, rtol=1e-6, atol=1e-6), func, z0, t, torch.ones(3, 3, 2))
    for a, b in zip(ours, theirs):
        assert a.dtype == b.dtype
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)


def test_unclear_failures_are_named():
    z0, t = torch.ones(1, 2), torch.tensor([0.0, 1.0])
    with pytest.raises(ValueError, match="torchdiffeq, which has no 'lean_dopri5'"):
        adjoint_odeint(MLPDynamics(2, 4), z0, t, method="lean_dopri5")

    class NaNBackward(torch.nn.Module):    # finite forwards; NaN once the backward solve asks for gradients
        def __init__(self):
            super().__init__()
            self.k = torch.nn.Parameter(torch.tensor(1.0))

        def forward(self, t, z):
            return -self.k * z * (float("nan") if torch.is_grad_enabled() else 1.0)

    z = adjoint_odeint(NaNBackward(), z0, t)
    with pytest.raises(SolverError, match="underflow in dt.*NaN or inf"):
        z.sum().backward()


def test_committed_record_draws(monkeypatch):
    """The committed record makes the chapter's tables, figures and scoreboard rows (odecore.figures.adjoint)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from odecore import results
    from odecore.experiments import adjoint as experiment
    from odecore.figures import adjoint as figures

    monkeypatch.delenv("ODECORE_RESULTS_DIR")
    profile = results.available_profiles("adjoint")[-1]
    record = results.load("adjoint", profile)
    assert set(figures.table_checks(record)["problem"]) == {"linear", "neural"}
    assert list(figures.table_memory(record).index) == list(record["config"]["memory_steps"])
    sweep = figures.table_sweep(record)
    assert (sweep[sweep["solver"] != "dopri5 (direct backprop)"]["backward/forward"] > 0).all()
    assert abs(figures.memory_slope(record, "adjoint")) < figures.memory_slope(record, "direct")
    for draw in (figures.fig_memory, figures.fig_sweep, figures.fig2):
        plt.close(draw(record))
    assert len(experiment.scoreboard(record)) >= 4
