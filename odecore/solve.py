"""One entry to the ODE solvers: input validation and function-evaluation counting.

Every solve in the book goes through `odesolve`, so bad input fails here with a ValueError
that names the problem instead of deep inside a solver, and every dynamics function can be
wrapped in `CountNFE` to report how many evaluations a solve (or its backward pass) took.

The solvers are torchdiffeq's, plus "scipy_lsoda" (scipy's LSODA with a diagonal Jacobian, Figure 3(c)),
plus `lean_dopri5`: the same Dormand-Prince 5(4) pair and step
controller written as one flat loop. Step sizes are plain floats chosen without building a graph,
and each stage is one fused multiply-add, so backpropagating through the solve costs little more
than backpropagating through the evaluations. That matters for small models, where a step's time
is per-operation overhead and not arithmetic; benchmarks/cnf.py measures it on a CNF training step.
"""
from __future__ import annotations

import math
import warnings
from typing import Callable, Sequence

import torch
from torch import Tensor, nn
from torchdiffeq import odeint, odeint_adjoint
from torchdiffeq._impl.odeint import SOLVERS
from torchdiffeq._impl.solvers import AdaptiveStepsizeODESolver, FixedGridODESolver

LEAN_DOPRI5 = "lean_dopri5"


class ScipyLSODA:
    """scipy's LSODA (Adams while non-stiff, BDF when stiff) as a torchdiffeq method, "scipy_lsoda".

    torchdiffeq's own `scipy_solver` gives LSODA no Jacobian structure, so LSODA reserves a dense
    n x n Jacobian up front: 10^10 floats for a batch of 32 feature maps. Declaring the Jacobian
    diagonal (lband = uband = 0) keeps LSODA's memory O(n); it only matters if LSODA switches to
    BDF, where Newton then uses the diagonal of the finite-difference Jacobian. This is the solver
    family the authors name for Figure 3(c) (scipy's LSODE/LSODA Adams). Registered with torchdiffeq
    here, the one place that touches its solver table, so "scipy_lsoda" works with its adjoint too.
    """

    def __init__(self, func, y0: Tensor, rtol: float, atol: float, **options):
        options.pop("norm", None)
        self.y0, self.rtol, self.atol, self.options = y0, rtol, atol, options
        self.shape, self.device, self.dtype = y0.shape, y0.device, y0.dtype

        def f(t, y):
            with torch.no_grad():
                tt = torch.tensor(t, dtype=self.dtype, device=self.device)
                yy = torch.from_numpy(y).to(self.device, self.dtype).reshape(self.shape)
                return func(tt, yy).detach().cpu().double().numpy().reshape(-1)

        self.func = f

    def integrate(self, t: Tensor) -> Tensor:
        from scipy.integrate import solve_ivp

        ts = t.detach().cpu().double().numpy()
        sol = solve_ivp(self.func, (ts[0], ts[-1]), self.y0.detach().cpu().double().numpy().reshape(-1),
                        method="LSODA", t_eval=ts, rtol=self.rtol, atol=self.atol, lband=0, uband=0,
                        **self.options)
        if not sol.success:
            raise RuntimeError(f"LSODA failed: {sol.message}")
        return torch.from_numpy(sol.y.T.copy()).to(self.device, self.dtype).reshape(-1, *self.shape)

    @classmethod
    def valid_callbacks(cls) -> set:
        return set()


SOLVERS.setdefault("scipy_lsoda", ScipyLSODA)
METHODS: tuple[str, ...] = tuple(sorted((*SOLVERS, LEAN_DOPRI5)))
ADAPTIVE: frozenset[str] = frozenset(m for m, cls in SOLVERS.items() if issubclass(cls, AdaptiveStepsizeODESolver))
FIXED_GRID: frozenset[str] = frozenset(m for m, cls in SOLVERS.items() if issubclass(cls, FixedGridODESolver))
# scipy's solvers work on numpy copies: no autograd graph, gradients only through the adjoint
NO_AUTOGRAD: frozenset[str] = frozenset({"scipy_solver", "scipy_lsoda"})
# torchdiffeq looks these up on the dynamics (the _adjoint ones for the adjoint's backward solve)
CALLBACKS: tuple[str, ...] = ("callback_step", "callback_accept_step", "callback_reject_step")
ALL_CALLBACKS: tuple[str, ...] = CALLBACKS + tuple(f"{name}_adjoint" for name in CALLBACKS)
State = Tensor | tuple[Tensor, ...]


class SolverError(RuntimeError):
    """A solve that cannot finish: its step limit, a step size that underflows or is NaN, or dynamics
    that are not finite. Training code catches this (a diverging run) and nothing broader."""


class CountNFE(nn.Module):
    """Wraps dynamics `func(t, z)` and counts its evaluations in `.nfe`.

    Read `.nfe` after a forward solve for the forward NFE; reset it, call backward, and read it
    again for the backward NFE (the adjoint's backward solve calls the same module).
    """

    def __init__(self, func: Callable[[Tensor, State], State]):
        super().__init__()
        self.func = func
        self.nfe = 0

    def forward(self, t: Tensor, z: State) -> State:
        self.nfe += 1
        return self.func(t, z)

    def reset(self) -> int:
        """Set the count to zero and return what it was."""
        n, self.nfe = self.nfe, 0
        return n


def _leaves(z: State) -> Sequence[Tensor]:
    return z if isinstance(z, tuple) else (z,)


def validate(func: Callable, z0: State, t: Tensor, *, rtol: float, atol: float, method: str) -> None:
    """Raise ValueError naming the first problem with a solve's inputs."""
    if method not in METHODS and method not in SOLVERS:
        raise ValueError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
    for name, tol in (("rtol", rtol), ("atol", atol)):
        if isinstance(tol, bool) or not (isinstance(tol, (int, float)) and math.isfinite(tol) and tol >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {tol!r}")
    if rtol == 0 and atol == 0:   # the error test could never pass: every step would be rejected
        raise ValueError("rtol and atol cannot both be 0")
    if rtol >= 1:                 # a relative error of 100% passes any step: the answer would be noise
        raise ValueError(f"rtol must be below 1, got {rtol!r} (it is a relative error: 1e-3 is 0.1%)")
    if not isinstance(t, Tensor) or t.dim() != 1 or t.numel() < 2:
        shape = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
        raise ValueError(f"t must be a 1-D tensor of at least 2 times, got {shape}")
    check_devices(z0, t)
    if not t.is_floating_point():
        raise ValueError(f"t must be floating point, got {t.dtype} (torch.tensor([0.0, 1.0]), not [0, 1])")
    if not torch.isfinite(t).all():
        raise ValueError("t contains non-finite values")
    dt = t[1:] - t[:-1]
    if not ((dt > 0).all() or (dt < 0).all()):
        raise ValueError(f"t must be strictly increasing or strictly decreasing, got {t.tolist()}")
    for i, leaf in enumerate(_leaves(z0)):
        if not isinstance(leaf, Tensor):
            raise ValueError(f"z0 must be a tensor or a tuple of tensors, got {type(leaf).__name__}")
        if not torch.isfinite(leaf).all():
            raise ValueError(f"z0{'' if isinstance(z0, Tensor) else f'[{i}]'} contains non-finite values")
        if not leaf.is_floating_point():
            raise ValueError(f"z0 must be floating point, got {leaf.dtype}")
        if leaf.dtype in (torch.float16, torch.bfloat16):   # the error control rounds away: silently wrong answers
            raise ValueError(f"z0 is {leaf.dtype}: the solvers' step-size control needs at least float32 (its "
                             "tolerances round to nothing in half precision); solve in float32 with z0.float()")
        if leaf.numel() == 0:    # the error norm of an empty state is NaN
            raise ValueError(f"z0 is empty (shape {tuple(leaf.shape)}): there is nothing to solve")
    if isinstance(func, nn.Module):
        tensors = (*func.named_parameters(), *func.named_buffers())
        for name, p in tensors:
            if p.is_floating_point() and not torch.isfinite(p).all():
                kind = "parameter" if isinstance(p, nn.Parameter) else "buffer"
                raise ValueError(f"{kind} {name!r} of the dynamics contains non-finite values")


def check_devices(z0: State, t: Tensor) -> None:
    """Raise ValueError unless t and every tensor of z0 are on one device that holds values: a t on
    the meta device, or on another device than z0, otherwise fails deep inside torch."""
    for name, x in (("t", t), *((f"z0[{i}]" if isinstance(z0, tuple) else "z0", leaf)
                                for i, leaf in enumerate(_leaves(z0)) if isinstance(leaf, Tensor))):
        if x.is_meta:
            raise ValueError(f"{name} is on the meta device, which holds no values; create it on a real "
                             "device (cpu or cuda)")
        if x.device != t.device:
            raise ValueError(f"t is on {t.device} but {name} is on {x.device}; put both on one device "
                             f"(t.to({name}.device))")


def _where(t: Tensor | float) -> str:
    """' at t = 0.25' for an error message (reads the value: only on the error path)."""
    return f" at t = {float(t.detach()) if isinstance(t, Tensor) else float(t):g}"


def check_output(out: State, z: State, t: Tensor | float) -> None:
    """Raise ValueError unless one evaluation out = func(t, z) has z's structure, shapes and dtypes.

    Called on every evaluation, so that dynamics whose output changes shape part-way through a
    solve are named instead of broadcast into a wrong answer. The rule for dtypes: the dynamics
    return the state's dtype (a float64 slope for a float32 state would be rounded by one solver,
    promoted by another and refused by a third). Attribute comparisons only: no synchronisation.
    """
    if isinstance(z, Tensor):
        if isinstance(out, Tensor) and out.shape == z.shape and out.dtype == z.dtype:
            return
    elif (isinstance(out, (tuple, list)) and len(out) == len(z)
          and all(isinstance(o, Tensor) and o.shape == s.shape and o.dtype == s.dtype for o, s in zip(out, z))):
        return
    z_leaves = _leaves(z)
    f_leaves = tuple(out) if isinstance(out, (tuple, list)) else (out,)
    if len(f_leaves) != len(z_leaves) or not all(isinstance(f, Tensor) for f in f_leaves):
        names = ", ".join(type(f).__name__ for f in f_leaves)
        got = f"({names})" if isinstance(out, (tuple, list)) else names
        raise ValueError(f"dynamics returned {got} for a state of {len(z_leaves)} tensor(s){_where(t)}")
    for i, (s, f) in enumerate(zip(z_leaves, f_leaves)):
        if s.shape != f.shape:
            raise ValueError(f"dynamics returned shape {tuple(f.shape)} for state {i} of shape {tuple(s.shape)}"
                             f"{_where(t)}: return a tensor of the state's shape")
        if s.dtype != f.dtype:
            raise ValueError(f"dynamics returned {f.dtype} for state {i} of dtype {s.dtype}{_where(t)}: "
                             f"the dynamics must return the state's dtype (convert the model or z0 with "
                             f".to({s.dtype}) or .to({f.dtype}))")


def check_first_output(f0: State, z0: State, t0: float) -> None:
    """`check_output` of the first evaluation f(t0, z0), and its values finite, so that NaN dynamics
    are named instead of reported as a step size underflow. One isfinite per solve, on an
    evaluation the solver makes anyway."""
    check_output(f0, z0, t0)
    if not all(torch.isfinite(f).all() for f in _leaves(tuple(f0) if isinstance(f0, list) else f0)):
        raise SolverError(f"dynamics returned non-finite values (NaN or inf) at t0 = {t0}")


class CheckedDynamics:
    """func(t, z) whose first output goes through `check_first_output` and every later one through
    `check_output`. It passes torchdiffeq's callbacks (callback_step, ..._adjoint) of func on, since
    torchdiffeq looks them up on the function it is given."""

    def __init__(self, func: Callable[[Tensor, State], State], z0: State):
        self.func, self.z0 = func, z0

    def __call__(self, t: Tensor, z: State) -> State:
        out = self.func(t, z)
        if self.z0 is None:
            check_output(out, z, t)
        else:
            z0, self.z0 = self.z0, None
            check_first_output(out, z0, float(t.detach()))
        return out

    def __getattr__(self, name: str):
        if name in ALL_CALLBACKS:
            return getattr(self.__dict__["func"], name)
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")


def callbacks_of(func: Callable) -> list[str]:
    """The torchdiffeq callbacks (callback_step, ...) that `func` defines."""
    return [name for name in ALL_CALLBACKS if hasattr(func, name)]


def check_max_steps(max_steps: int | None, method: str, t: Tensor, options: dict | None) -> None:
    """Raise ValueError unless `max_steps` is None or a positive int the method can honour.

    Adaptive methods stop with a SolverError after max_steps steps. A fixed-grid method's step count
    is known before it starts (len(t) - 1, or |t[-1] - t[0]| / step_size), so a grid of more steps
    is refused here instead of run; scipy's solvers count their steps themselves and take no limit.
    """
    if max_steps is None:
        return
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(f"max_steps must be a positive int (or None for no limit), got {max_steps!r}")
    if method in NO_AUTOGRAD:
        raise ValueError(f"{method} takes no max_steps (scipy limits its own steps); leave max_steps unset")
    if method in FIXED_GRID:
        options = options or {}
        if options.get("grid_constructor") is not None:
            raise ValueError(f"{method}: max_steps cannot be checked against a grid_constructor; "
                             "leave max_steps unset or give step_size instead")
        step = options.get("step_size")
        steps = len(t) - 1 if step is None else math.ceil(abs(float(t[-1] - t[0])) / step)
        if steps > max_steps:
            raise ValueError(f"{method} would take {steps} steps, more than max_steps={max_steps}; "
                             "raise step_size or max_steps")


def check_step_size(method: str, options: dict | None) -> None:
    """Raise ValueError unless a fixed-grid method's step_size, when given, is a finite number > 0 (torch and
    torchdiffeq fail on 0, a negative or a string deep inside, with messages that do not name it)."""
    step = (options or {}).get("step_size")
    if method in FIXED_GRID and step is not None and (
            isinstance(step, bool) or not isinstance(step, (int, float)) or not math.isfinite(step) or step <= 0):
        raise ValueError(f"{method}: step_size must be a finite number > 0, got {step!r}")


def check_gradient_path(func: Callable, z0: State, method: str, adjoint: bool) -> None:
    """Raise ValueError when gradients are expected (grad mode on and z0 or func's parameters
    require grad) from a method without an autograd path, which would return an output with
    no graph and make every gradient silently zero or missing."""
    if method not in NO_AUTOGRAD or adjoint or not torch.is_grad_enabled():
        return
    params = func.parameters() if isinstance(func, nn.Module) else ()
    if any(x.requires_grad for x in (*_leaves(z0), *params)):
        raise ValueError(f"{method} gives no gradient through its steps (it solves on numpy copies): use "
                         "adjoint=True for gradients, or run it under torch.no_grad() to evaluate only")


# torchdiffeq's failures are assertions; these say what each usually means.
_HINTS = {"max_num_steps": "the dynamics are diverging or stiff; lower the learning rate or loosen rtol/atol",
          "underflow": "the step size shrank to nothing: the dynamics returned NaN or inf during the solve, "
                       "or they are too stiff for an explicit method"}


def run_torchdiffeq(solve: Callable[..., State], method: str, *args, **kwargs) -> State:
    """Call one of torchdiffeq's solvers; its assertion failures become SolverErrors that say why."""
    try:
        return solve(*args, method=method, **kwargs)
    except AssertionError as err:
        hint = next((h for key, h in _HINTS.items() if key in str(err)), "")
        raise SolverError(f"{method}: {err}" + (f" ({hint})" if hint else "")) from err


def odesolve(func: Callable[[Tensor, State], State], z0: State, t: Tensor, *, rtol: float = 1e-7,
             atol: float = 1e-9, method: str = "dopri5", options: dict | None = None,
             adjoint: bool = False, adjoint_options: dict | None = None,
             max_steps: int | None = None) -> State:
    """Solve dz/dt = func(t, z) from z(t[0]) = z0 and return z at every time in t.

    Every evaluation is checked against the state it was given: the same structure, shapes and
    dtype (the dynamics must return the state's dtype: a float64 slope for a float32 state is a
    ValueError in every method), and the first one also for finite values. torchdiffeq's callbacks
    defined on func (callback_step, callback_accept_step, callback_reject_step and their _adjoint
    versions) are called as torchdiffeq calls them; lean_dopri5 calls none and warns.

    Args:
        func: dynamics; an nn.Module when `adjoint=True` (its parameters get gradients).
        z0: (batch, *dims) initial state, or a tuple of such tensors.
        t: (T,) strictly monotone times, at least two, on z0's device; t[0] is the initial time.
        adjoint: take gradients with torchdiffeq's adjoint (O(1) memory in the number of steps)
            instead of backpropagating through the solver's operations. The scipy methods have no
            other gradient: without it they refuse inputs that require grad (under torch.no_grad()
            they evaluate).
        adjoint_options: e.g. {"norm": "seminorm"} (Kidger et al. 2021) for the backward solve.
        max_steps: a positive int: stop an adaptive solve after this many steps with a SolverError
            instead of letting a diverging model run for ever (training sets it). A fixed-grid method
            (rk4, euler, ...) knows its step count up front and refuses a grid of more steps with a
            ValueError; the scipy methods take no max_steps. None: no limit for torchdiffeq's methods,
            lean_dopri5's own 100,000 steps.

    Returns:
        (T, batch, *dims) solution, or a tuple of those for a tuple state.

    Raises:
        ValueError: times not strictly monotone, fewer than two or not floating point, t on the meta device
            or on another device than z0, non-finite, empty or half-precision z0, non-finite parameters
            or buffers, an unknown method (or an unknown lean_dopri5 option: torchdiffeq only warns about
            its own), tolerances that are not numbers, negative, both 0 or an rtol of 1 or more, a fixed-grid
            step_size that is not a finite number > 0, adjoint_options without adjoint=True, a max_steps that is not a positive int or that a
            fixed grid exceeds, a scipy method where gradients are expected without the adjoint, or
            dynamics that return another shape or dtype than the state's.
        SolverError: the step limit was reached, the step size underflowed, or the dynamics
            returned NaN or inf at t0.
    """
    validate(func, z0, t, rtol=rtol, atol=atol, method=method)
    if adjoint_options and not adjoint:      # they set the adjoint's backward solve: without it, silently unused
        raise ValueError(f"adjoint_options {adjoint_options} apply only with adjoint=True; pass adjoint=True or drop them")
    check_step_size(method, options)
    check_max_steps(max_steps, method, t, options)
    check_gradient_path(func, z0, method, adjoint)
    if method == LEAN_DOPRI5:
        if adjoint:
            raise ValueError("lean_dopri5 backpropagates through its steps; for the adjoint use method='dopri5'")
        options = {**(options or {}), **({"max_steps": max_steps} if max_steps is not None else {})}
        unknown = set(options) - {"first_step", "max_steps", "compile"}
        if unknown:
            raise ValueError(f"lean_dopri5 takes the options first_step, max_steps and compile, not {sorted(unknown)}")
        check_max_steps(options.get("max_steps"), method, t, None)
        first = options.get("first_step")
        if first is not None and not (math.isfinite(first) and first > 0):
            raise ValueError(f"first_step must be a finite number > 0, got {first!r}")
        if t.requires_grad:
            warnings.warn("lean_dopri5 gives no gradient for t (it reads the times as numbers); "
                          "use method='dopri5' for dL/dt", stacklevel=2)
        if callbacks_of(func):
            warnings.warn(f"lean_dopri5 calls no callbacks ({', '.join(callbacks_of(func))} not called); "
                          "use method='dopri5' for them", stacklevel=2)
        return lean_dopri5(CheckedDynamics(func, z0), z0, t, rtol=rtol, atol=atol, **options)
    if max_steps is not None and method in ADAPTIVE:
        options = {**(options or {}), "max_num_steps": max_steps}
    checked = CheckedDynamics(func, z0)
    if adjoint:
        if not isinstance(func, nn.Module):
            raise ValueError("adjoint=True needs func to be an nn.Module, so its parameters are known")
        norm = (adjoint_options or {}).get("norm")
        if norm is not None and norm != "seminorm" and not callable(norm):
            raise ValueError(f"adjoint_options norm must be 'seminorm' or a function, got {norm!r}")
        return run_torchdiffeq(odeint_adjoint, method, checked, z0, t, rtol=rtol, atol=atol, options=options,
                            adjoint_options=adjoint_options, adjoint_params=tuple(func.parameters()))
    return run_torchdiffeq(odeint, method, checked, z0, t, rtol=rtol, atol=atol, options=options)


# ----------------------------------------------------------------------------------- lean dopri5
# Dormand-Prince 5(4): nodes C, stage weights A (row i builds stage i+1), 5th-order weights A[6]
# (first same as last: the 7th stage is f at the new point), and 5th minus 4th order weights E.
_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
_A = ((), (1 / 5,), (3 / 40, 9 / 40), (44 / 45, -56 / 15, 32 / 9),
      (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
      (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
      (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84))
_E = (35 / 384 - 1951 / 21600, 0.0, 500 / 1113 - 22642 / 50085, 125 / 192 - 451 / 720,
      -2187 / 6784 + 12231 / 42400, 11 / 84 - 649 / 6300, -1 / 60)
# Shampine's midpoint weights: y(now + dt/2) = y + dt * sum_i MID_i k_i (fifth order).
_MID = (6025192743 / 30085553152 / 2, 0.0, 51252292925 / 65400821598 / 2, -2691868925 / 45128329728 / 2,
        187940372067 / 1594534317056 / 2, -1776094331 / 19743644256 / 2, 11237099 / 235043384 / 2)


def _dense_coefficients() -> tuple[tuple[float, float, float, float], ...]:
    """Per slope i, (c1, c2, c3, c4) with w_i(x) = c1 x + c2 x^2 + c3 x^3 + c4 x^4 (see dense_weights)."""
    p, q = (*_A[6], 0.0), _MID
    e0, e6 = (1.0, 0, 0, 0, 0, 0, 0), (0, 0, 0, 0, 0, 0, 1.0)
    return tuple((e0[i], e6[i] - 4 * e0[i] - 5 * p[i] + 16 * q[i], 5 * e0[i] - 3 * e6[i] + 14 * p[i] - 32 * q[i],
                  2 * e6[i] - 2 * e0[i] - 8 * p[i] + 16 * q[i]) for i in range(7))


_DENSE = _dense_coefficients()


def dense_weights(x: float) -> tuple[float, ...]:
    """Weights w over the 7 slopes with y(now + x dt) ~ y + dt * sum_i w_i k_i, for x in [0, 1].

    The quartic torchdiffeq's dopri5 interpolates with (through y, y_mid and y_new, with slopes
    k_1 and k_7 at the ends), written as one linear combination of the slopes, so that every
    output time inside a step costs one multiply-add and no evaluation."""
    return tuple(x * (c1 + x * (c2 + x * (c3 + x * c4))) for c1, c2, c3, c4 in _DENSE)


def _stages(func: Callable[[Tensor, State], State], y: Tensor, k1: Tensor, now: Tensor, dt: Tensor,
            a_rows: Sequence[Tensor], c: Tensor, flat: Callable[[State], Tensor],
            unflat: Callable[[Tensor], State]) -> tuple[Tensor, Tensor]:
    """One Dormand-Prince step of size dt from (now, y) with k1 = f(now, y): the 5th-order y_new
    and the 7 slopes (n, 7), the last of them f(now + dt, y_new).

    Written once for both paths: called as it is, or compiled (`compiled_stages`) into one graph
    whose forward and backward each cost one call instead of dozens of small operations."""
    stage_t = now + c * dt
    ks = [k1]
    for i in range(1, 7):
        stage = torch.addmv(y, torch.stack(ks, -1), a_rows[i] * dt)
        ks.append(flat(func(stage_t[i], unflat(stage))))
    return stage, torch.stack(ks, -1)


_compiled: dict[str, Callable] = {}


def compiled_stages() -> Callable:
    """`_stages` under torch.compile, built on first use (compiling takes tens of seconds on a CPU)."""
    if "stages" not in _compiled:
        _compiled["stages"] = torch.compile(_stages, dynamic=False)
    return _compiled["stages"]


def method_words(method: str, options: dict | None = None) -> str:
    """How a solver reads in a page's generated text (plain, since glued text is not parsed as markdown):
    odecore's own lean_dopri5 (compiled or not) or the torchdiffeq method."""
    if method == LEAN_DOPRI5:
        compiled = " with each step's six evaluations compiled into one graph" if (options or {}).get("compile") else ""
        return f"odecore's lean_dopri5{compiled}"
    return f"torchdiffeq's {method}"


def lean_dopri5(func: Callable[[Tensor, State], State], z0: State, t: Tensor, *, rtol: float, atol: float,
                first_step: float | None = None, max_steps: int = 100_000, compile: bool = False) -> State:
    """Adaptive Dormand-Prince 5(4) with torchdiffeq's controller and dense output at the times in t.

    Same error norm (RMS per state tensor, the largest of them), initial step (Hairer et al.'s
    rule), step factors (safety 0.9, between 0.2 and 10, no shrinking after an accepted step) and
    interpolant (torchdiffeq's quartic) as torchdiffeq's dopri5, so NFEs and solutions are
    comparable. Three differences, all for speed: step sizes are floats chosen outside the
    autograd graph (the gradient is that of the solve with its steps held fixed, not also through
    the controller); a stage is one `addmv` over the stacked slopes and all output times inside a
    step are one `addmm`; and the last step lands on t[-1] instead of overshooting it. The times
    t are read as numbers, so unlike torchdiffeq's solvers it gives no gradient for t.

    compile=True runs each step's six evaluations as one graph compiled by torch.compile (the same
    arithmetic; tens of seconds to compile on first use, then a step forward and backward are
    one call each). Only solves that build a graph are compiled; others run as written. A
    `CountNFE` func is counted from outside the compiled graph, six per step.

    Returns what `odesolve` does: (T, *z0.shape), or a tuple of those for a tuple state.
    Raises SolverError when the dynamics are not finite at t0, the step size is NaN or underflows,
    or max_steps is exceeded (a stiff or diverging problem), instead of looping for ever.
    """
    leaves = _leaves(z0)
    shapes, sizes = [x.shape for x in leaves], [x.numel() for x in leaves]
    tuple_state = isinstance(z0, tuple)

    def unflat(y: Tensor) -> State:
        if not tuple_state:                      # a view: no split, and no concatenation in backward
            return y.view(shapes[0])
        return tuple(p.view(s) for p, s in zip(y.split(sizes), shapes))

    def flat(out: State) -> Tensor:
        return torch.cat([o.reshape(-1) for o in out]) if tuple_state else out.reshape(-1)

    def f(ti: float, y: Tensor) -> Tensor:
        return flat(func(torch.tensor(ti, dtype=y.dtype, device=y.device), unflat(y)))

    def norm(x: Tensor) -> float:
        return max(p.pow(2).mean().sqrt().item() for p in x.split(sizes))

    times = t.tolist()
    y = torch.cat([x.reshape(-1) for x in leaves]) if tuple_state else z0.reshape(-1)
    a_rows = [torch.tensor(a, dtype=y.dtype, device=y.device) for a in _A]
    e_row = torch.tensor(_E, dtype=y.dtype, device=y.device)
    c = torch.tensor(_C, dtype=y.dtype, device=y.device)
    step, step_func, counter = _stages, func, None
    if compile and torch.is_grad_enabled():
        step = compiled_stages()
        inner = func.func if isinstance(func, CheckedDynamics) else func
        if isinstance(inner, CountNFE):              # count outside the graph: an attribute change would recompile
            counter, step_func = inner, CheckedDynamics(inner.func, None)   # still checks every evaluation
    direction = 1.0 if times[-1] > times[0] else -1.0
    end, span = times[-1], abs(times[-1] - times[0])
    f0 = func(torch.tensor(times[0], dtype=y.dtype, device=y.device), unflat(y))
    check_first_output(f0, z0, times[0])
    k1 = flat(f0)
    if first_step is None:                       # Hairer, Norsett and Wanner, II.4
        with torch.no_grad():
            scale = atol + rtol * y.abs()
            d0, d1 = norm(y / scale), norm(k1 / scale)
            h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
            probe = f(times[0] + direction * h0, y + direction * h0 * k1)
            d2 = norm((probe - k1) / scale) / h0
            h1 = max(1e-6, h0 * 1e-3) if max(d1, d2) <= 1e-15 else (0.01 / max(d1, d2)) ** 0.2
            h = min(100 * h0, h1)
    else:
        h = abs(float(first_step))
    if not h > 0:                                # NaN or 0: no step could ever be accepted
        raise SolverError(f"lean_dopri5: initial step size is {h} (check rtol, atol, first_step, and that the dynamics are finite near t0)")
    out, now, steps, ratio, j = [y[None]], times[0], 0, 0.0, 1
    while j < len(times):
        steps += 1
        if steps > max_steps:
            raise SolverError(f"lean_dopri5 took more than {max_steps} steps before t = {times[j]} "
                              "(the dynamics are diverging or stiff)")
        if h <= 1e-12 * span or now + direction * h == now:
            cause = ("the dynamics returned NaN or inf at every step size tried" if not math.isfinite(ratio)
                     else "the problem is too stiff for an explicit method")
            raise SolverError(f"lean_dopri5 step size underflowed at t = {now}: {cause}")
        last = h >= abs(end - now)               # this step reaches t[-1]: land on it
        dt = end - now if last else direction * h
        now_dt = torch.tensor((now, dt), dtype=y.dtype, device=y.device)
        # the first step from a data z0 that needs no gradient runs as written: compiling it too would
        # compile a second graph for one step
        stage, slopes = (step if y.requires_grad else _stages)(step_func, y, k1, now_dt[0], now_dt[1], a_rows, c, flat, unflat)   # y_new, slopes (n, 7)
        if counter is not None:
            counter.nfe += 6
        with torch.no_grad():
            error = slopes @ e_row * dt
            ratio = norm(error / (atol + rtol * torch.maximum(y.abs(), stage.abs())))
        if ratio == 0:
            factor = 10.0
        elif math.isfinite(ratio):
            factor = min(10.0, max(0.9 * ratio ** -0.2, 1.0 if ratio < 1 else 0.2))
        else:
            factor = 0.2
        h = abs(dt) * factor
        if not ratio <= 1:                       # rejected (NaN included): try again, smaller
            continue
        new = end if last else now + dt          # accept; the 7th stage is the next step's first
        inside = []                              # output times in (now, new]
        while j < len(times) and (times[j] - new) * direction <= 0:
            inside.append(times[j])
            j += 1
        if inside == [new]:
            out.append(stage[None])
        elif inside:
            w = torch.tensor([dense_weights((s - now) / dt) for s in inside], dtype=y.dtype, device=y.device)
            out.append(torch.addmm(y[None], w, slopes.T, alpha=dt))
        now, y, k1 = new, stage, slopes[:, 6]
    sol = torch.cat(out)
    parts = tuple(p.reshape(len(times), *s) for p, s in zip(sol.split(sizes, dim=1), shapes))
    return parts if tuple_state else parts[0]
