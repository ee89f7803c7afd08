"""odecore (PyTorch) against diffrax (JAX, jax.jit) on the same training steps, side by side.

    python benchmarks/diffrax.py [--rounds 5] [--steps 3] [--threads 1] [--only cnf|latent_ode] [--save]

Needs the optional extra `pip install -e ".[anchors]"` (JAX, diffrax, equinox, optax) for the diffrax
rows; without it the script says so and times the odecore rows alone.

Workloads, at the chapters' settings:
- "cnf": one CNF training step at the Figure 5 settings (planar CNF, M = 64 units, hypernetwork
  1-32-32-M(2d+2), closed-form trace, two circles batch 512, rtol = atol = 1e-5, t from t1 back to t0,
  loss -mean log p, Adam at the chapter's lr), at initialisation (seed 0) and at the trained Figure 5
  two-circles checkpoint (when committed).
- "latent_ode": one latent ODE iteration at the chapter's full profile, n = 30 observations, batch 50
  (GRU encoder read backwards with time gaps, dynamics 4-20-4 tanh, decoder 4-20-2, rtol = atol =
  1.5e-8, z returned at every grid time up to the last observation, Adam lr 0.01). The ELBO draws
  z0 = mean + std * eps; torch is seeded right before the call and the same eps (torch.randn of
  the same shape after the same seed) is handed to JAX, so both sides compute the same loss.

Both sides get the same weights (the torch model's, copied), the same batch and the same step:
forward, gradient and optimizer update (torch.optim.Adam; optax.adam, same defaults). diffrax runs
`diffeqsolve(Dopri5(), PIDController(rtol, atol))`, dt0 None (Hairer's initial step, as torchdiffeq),
`SaveAt(ts=...)` (dense interpolation, as torchdiffeq) or `SaveAt(t1=True)`, backpropagating through
the solver with its default RecursiveCheckpointAdjoint, the whole step under one `jax.jit`. For the
CNF's state (z, log p) the error norm is torchdiffeq's: the largest RMS norm of the two. The
controllers otherwise agree (safety 0.9, factors 0.2 .. 10, exponent 1/5, no shrinking after an
accepted step) but for the end: torchdiffeq steps past the last time and interpolates, diffrax clips
its last step; so the NFE may differ a little, and the losses agree to the tolerance (asserted:
relative 1e-4). The gradients are compared too (printed, not asserted).

Every side runs in its own worker process (one thread: torch.set_num_threads, and for XLA
--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1), the JAX worker without torch.
Each timed step starts from the same weights and a fresh optimizer state, so every step does the
same work. Rounds alternate between the sides (odecore's methods, then diffrax, then again);
the row is the median over every timed step. JAX's compile time (trace, lower, compile) is reported
apart and is not in the step time; each side's first step is a warm-up.

NFE. odecore: CountNFE `.nfe` around the forward (loss) and around backward (0 when backpropagating
through the solver: the backward pass calls no dynamics). diffrax: in an untimed, instrumented copy
of the same computation the vector field increments a counter (`jax.debug.callback`) each time it
runs. The forward NFE is 6 * num_steps + 1, num_steps = accepted + rejected steps from `sol.stats`
(Dopri5 is first-same-as-last: 6 new evaluations per attempted step, and one at t0; the counter
agrees, tests/test_benchmarks.py); the backward NFE is what the counter adds up over the whole
gradient beyond that: the evaluations RecursiveCheckpointAdjoint recomputes from its checkpoints.
ms per evaluation divides the step time by the forward NFE (each evaluation with its share of the
backward pass, whatever that pass recomputes), so that ratio compares one evaluation of the same
dynamics on each side.

Memory, per worker process (each side alone in its process, so nothing of the other framework is
counted), printed as setup/ready/peak: `rss_setup_mb`, the resident set after imports, data and
model (before any step and before JAX compiles); `rss_ready_mb`, after the warm-up step (and JAX's
compilation), just before the timed rounds; `rss_peak_steps_mb`, the peak resident set (Linux
VmHWM, reset through /proc/self/clear_refs at that point) while the timed steps ran. These are the
process's footprint: the allocator keeps memory that the warm-up step (and XLA's compiler) freed
for reuse, so peak - ready may be near 0 and peak - setup bounds a step's working set from above
(for JAX it includes the compiler's leftovers). What a step itself needs is better read from the
exact figures beside them: odecore's bytes saved for backward (`saved_tensors_hooks`, distinct
storages: the autograd tape at the end of the forward, which backward then frees), and XLA's temp
buffer size of the compiled step (`memory_analysis()`).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# This file is named diffrax.py: the script's folder must not shadow the diffrax package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(ROOT))

# odecore's methods timed against diffrax; "+compile" adds lean_dopri5's option compile=True (its compile
# time is in the warm-up step, reported apart as the worker's compile_s)
ODECORE_METHODS: tuple[str, ...] = ("dopri5", "lean_dopri5", "lean_dopri5+compile")


# torch.compile's backend for the "+compile" rows, passed to the workers in their environment. "inductor" is what the
# chapters use; "aot_eager" captures the same graphs and their backward without generating C++ (inductor's compile
# takes most of a minute on a CPU), for the tests, which check the plumbing and not the speed.
COMPILE_BACKEND_ENV = "ODECORE_BENCH_COMPILE_BACKEND"


def use_compile_backend(backend: str) -> None:
    """Compile lean_dopri5's steps with `backend` in this process (inductor is odecore's own choice)."""
    if backend != "inductor":
        import torch

        from odecore import solve

        solve._compiled["stages"] = torch.compile(solve._stages, backend=backend, dynamic=False)


def solver_options(method: str) -> tuple[str, dict | None]:
    """The odesolve method and options a name of ODECORE_METHODS stands for."""
    name, _, extra = method.partition("+")
    return name, ({"compile": True} if extra == "compile" else None)
WORKLOADS: tuple[str, ...] = ("cnf", "latent_ode")
LOSS_RTOL = 1e-4            # odecore's and diffrax's losses must agree to this
LATENT_N = 30               # observed times of the latent ODE workload
JAX_THREAD_FLAGS = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
REPLY = "@@ "               # a worker's reply lines start with this; anything else it prints is passed on


def dopri5_nfe(num_steps: int) -> int:
    """diffrax's Dopri5 evaluations in a solve of num_steps attempted steps (accepted + rejected), dt0 None."""
    return 6 * num_steps + 1


def has_jax() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("jax", "diffrax", "optax"))


# ----------------------------------------------------------------------------------- the jobs
def _roles(kind: str, names: list[str]) -> dict[str, str]:
    """JAX parameter name -> torch state_dict name, for the models the chapters train."""
    def one(*parts: str) -> str:
        hits = [n for n in names if all(p in n for p in parts)]
        if len(hits) != 1:
            raise KeyError(f"expected one parameter named like {parts} in the odecore model, found {hits}: "
                           "the model changed, update benchmarks/diffrax.py's _roles and JAX model")
        return hits[0]

    if kind == "cnf":
        return {f"hyper{i}.{w}": one("hyper.net", f".{2 * i}.", w) for i in range(3) for w in ("weight", "bias")}
    return {**{f"gru.{w}": one("encoder", w) for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")},
            "enc_out.weight": one("encoder.out", "weight"), "enc_out.bias": one("encoder.out", "bias"),
            **{f"f{i}.{w}": one("func", f"net.{2 * i}.", w) for i in range(2) for w in ("weight", "bias")},
            **{f"dec{i}.{w}": one("decoder", f"net.{2 * i}.", w) for i in range(2) for w in ("weight", "bias")}}


def cnf_jobs(profile: str) -> list[dict]:
    """The CNF rows: at initialisation (seed 0) and, when committed, at the trained Figure 5 checkpoint."""
    import torch

    from odecore import results
    from odecore.datasets import toy2d
    from odecore.experiments import cnf as cnf_exp

    cfg = cnf_exp.MLE_PROFILES[profile]
    spec = cnf_exp.mle_specs(cfg)[0]                           # CNF on two circles
    assert spec["kind"] == "cnf" and spec["task"] == "two_circles", spec
    x = toy2d.sample("two_circles", cfg.batch_size, 100)
    torch.manual_seed(0)
    jobs = [{"workload": "cnf", "row": "CNF step, Figure 5 settings, at initialisation",
             "weights": "initial weights (seed 0)", "state": cnf_exp.build(spec).state_dict()}]
    record = results.load("cnf_mle", profile)
    run = record and cnf_exp._run(record, "cnf", "two_circles", cfg.cnf_units)
    if run:
        state = torch.load(cnf_exp._ckpt_path("cnf_mle", profile, run["name"]), weights_only=False)
        jobs.append({"workload": "cnf", "row": "CNF step, Figure 5 settings, trained checkpoint",
                     "weights": f"trained Figure 5 checkpoint ({profile} profile, {run['iterations']} it., trained with {run.get('method', 'dopri5')})",
                     "state": state["model"]})
    for job in jobs:
        job.update(profile=profile, spec=spec, lr=spec["lr"], arrays={"x": x.numpy()})
    return jobs


def latent_ode_jobs(profile: str) -> list[dict]:
    """The latent ODE row: the chapter's model at initialisation (seed 0), its first training batch at n = 30."""
    import torch

    from odecore import train
    from odecore.datasets import spirals as spiral_data
    from odecore.experiments import latent_ode as lat

    cfg = lat.PROFILES[profile]
    d = lat.data(cfg)
    x, t_obs, idx = spiral_data.observe(d, LATENT_N, cfg.data_seed)
    b = d.train[:cfg.batch_size]
    last = int(idx[b].max()) + 1
    train.seed_everything(0)
    model = lat.build("latent_ode", cfg)
    eps_seed = 12345
    torch.manual_seed(eps_seed)
    eps = torch.randn(len(b), cfg.latent_dim)     # what randn_like(std) draws after the same seed
    return [{"workload": "latent_ode", "row": f"latent ODE iteration, {profile} profile, n = {LATENT_N}, "
             f"batch {cfg.batch_size}", "weights": "initial weights (seed 0)", "profile": profile,
             "lr": cfg.lr, "rtol": cfg.rtol, "atol": cfg.atol, "obs_std": cfg.noise_std, "eps_seed": eps_seed,
             "state": model.state_dict(),
             "arrays": {"x": x[b].numpy(), "t_obs": t_obs[b].numpy(), "idx": idx[b].numpy(),
                        "t_grid": d.t_window.numpy(), "ts": d.t_window[:last].numpy(), "eps": eps.numpy()}}]


def write_job(job: dict, folder: Path) -> Path:
    """job.json (settings) and job.npz (batch, and the weights under both sides' names)."""
    import numpy as np

    roles = _roles(job["workload"], list(job["state"]))
    arrays = {**{f"data/{k}": v for k, v in job["arrays"].items()},
              **{f"torch/{k}": v.detach().numpy() for k, v in job["state"].items()}}
    path = folder / f"job{len(list(folder.glob('job*.json')))}"
    np.savez(path.with_suffix(".npz"), **arrays)
    meta = {k: v for k, v in job.items() if k not in ("state", "arrays")}
    path.with_suffix(".json").write_text(json.dumps({**meta, "roles": roles}))
    return path


# ----------------------------------------------------------------------------------- memory
def rss_mb() -> tuple[float, float]:
    """(current, peak) resident set of this process in MB (Linux /proc/self/status)."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")   # resets VmHWM to the current RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


# ----------------------------------------------------------------------------------- odecore side
class TorchSide:
    """One odecore method on one job: the model built as the chapter builds it, the weights loaded."""

    def __init__(self, job: dict, arrays: dict, method: str, threads: int):
        import torch

        torch.set_num_threads(threads)
        self.torch = torch
        use_compile_backend(os.environ.get(COMPILE_BACKEND_ENV, "inductor"))
        state = {k[len("torch/"):]: torch.from_numpy(v) for k, v in arrays.items() if k.startswith("torch/")}
        data = {k[len("data/"):]: torch.from_numpy(v) for k, v in arrays.items() if k.startswith("data/")}
        if job["workload"] == "cnf":
            from odecore.experiments import cnf as cnf_exp

            self.model = cnf_exp.build(job["spec"])
            self.model.method, self.model.options = solver_options(method)
            self.loss = lambda: -self.model.log_prob(data["x"]).mean()
        else:
            from odecore.experiments import latent_ode as lat

            self.model = lat.build("latent_ode", lat.PROFILES[job["profile"]])
            self.model.solver["method"], options = solver_options(method)
            if options:
                self.model.solver["options"] = options
            seed = job["eps_seed"]

            def loss():
                torch.manual_seed(seed)        # the eps that JAX is given
                return -self.model.elbo(data["x"], data["t_obs"], data["idx"], data["t_grid"])[0].mean()

            self.loss = loss
        self.model.load_state_dict(state)
        self.start = {k: v.clone() for k, v in self.model.state_dict().items()}
        self.opt = torch.optim.Adam(self.model.parameters(), lr=job["lr"])
        self.opt_start = self.opt.state_dict()

    def step(self) -> dict:
        torch, model, func = self.torch, self.model, self.model.func
        model.load_state_dict(self.start)
        self.opt.load_state_dict(self.opt_start)
        tick = time.perf_counter()
        func.reset()
        loss = self.loss()
        nfe_f = func.reset()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        nfe_b = func.reset()
        self.opt.step()
        elapsed = time.perf_counter() - tick
        return {"s": elapsed, "nfe_forward": nfe_f, "nfe_backward": nfe_b, "loss": loss.item()}

    def grads(self) -> dict:
        self.model.load_state_dict(self.start)
        self.model.zero_grad(set_to_none=True)
        self.loss().backward()
        return {k: p.grad.numpy().copy() for k, p in self.model.named_parameters()}

    def memory(self) -> dict:
        """Bytes autograd keeps for backward at the end of the forward (distinct storages)."""
        torch = self.torch
        seen: dict[int, int] = {}

        def pack(t):
            s = t.untyped_storage()
            seen[s.data_ptr()] = s.nbytes()
            return t

        self.model.load_state_dict(self.start)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = self.loss()
        loss.backward()
        self.model.zero_grad(set_to_none=True)
        return {"saved_for_backward_mb": sum(seen.values()) / 2 ** 20}


# ----------------------------------------------------------------------------------- diffrax side
class JaxSide:
    """The same model and step in JAX: plain pytrees (a dict of arrays), diffrax, optax, one jax.jit."""

    def __init__(self, job: dict, arrays: dict, threads: int):
        import jax
        import jax.numpy as jnp
        import optax

        self.jax = jax
        roles = job["roles"]
        self.roles = roles
        self.params = {r: jnp.asarray(arrays[f"torch/{n}"]) for r, n in roles.items()}
        self.data = {k[len("data/"):]: jnp.asarray(v) for k, v in arrays.items() if k.startswith("data/")}
        self.static = {k[len("data/"):]: v for k, v in arrays.items() if k.startswith("data/")}
        self.job = job
        opt = optax.adam(job["lr"])
        self.opt_state = opt.init(self.params)
        self.counter = [0]

        def step(params, opt_state, data):
            (loss, stats), grads = jax.value_and_grad(self.loss_fn, has_aux=True)(params, data)
            updates, opt_state = opt.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, loss, stats, grads

        self.rss_setup_mb = rss_mb()[0]           # before compiling
        tick = time.perf_counter()
        lowered = jax.jit(step).lower(self.params, self.opt_state, self.data)
        self.compiled = lowered.compile()
        self.compile_s = time.perf_counter() - tick
        self.step_fn = step

    # the models -------------------------------------------------------------------------------
    def _vf(self, counted: bool):
        import jax
        import jax.numpy as jnp

        def bump():
            self.counter[0] += 1

        if self.job["workload"] == "cnf":
            spec = self.job["spec"]
            m, d = spec["size"], 2

            def vf(t, state, p):
                if counted:
                    jax.debug.callback(bump)
                z = state[0]
                h = jnp.tanh(p["hyper0.weight"][:, 0] * t + p["hyper0.bias"])
                h = jnp.tanh(p["hyper1.weight"] @ h + p["hyper1.bias"])
                out = (p["hyper2.weight"] @ h + p["hyper2.bias"]).reshape(m, 2 * d + 2)
                u, w, b, sigma = out[:, :d], out[:, d:2 * d], out[:, 2 * d], jax.nn.sigmoid(out[:, 2 * d + 1])
                if spec.get("scale", "sum") == "mean":
                    u = u / m
                a = jnp.tanh(z @ w.T + b)                       # (batch, M)
                f = a @ (sigma[:, None] * u)
                c = sigma * (u * w).sum(-1)
                tr = c.sum() - (a * a) @ c
                return f, -tr
        else:
            def vf(t, z, p):
                if counted:
                    jax.debug.callback(bump)
                return jnp.tanh(z @ p["f0.weight"].T + p["f0.bias"]) @ p["f1.weight"].T + p["f1.bias"]
        return vf

    def _solve(self, vf, params, y0, t0, t1, saveat):
        import diffrax
        import jax.numpy as jnp
        import optimistix as optx

        if isinstance(y0, tuple):    # torchdiffeq's norm for a tuple state: the largest RMS norm of its parts
            def norm(y):
                return jnp.max(jnp.stack([optx.rms_norm(v) for v in y]))
        else:
            norm = optx.rms_norm
        tol = (self.job["spec"]["rtol"], self.job["spec"]["atol"]) if self.job["workload"] == "cnf" \
            else (self.job["rtol"], self.job["atol"])
        return diffrax.diffeqsolve(diffrax.ODETerm(vf), diffrax.Dopri5(), t0, t1, None, y0, args=params,
                                   stepsize_controller=diffrax.PIDController(rtol=tol[0], atol=tol[1], norm=norm),
                                   saveat=saveat, adjoint=diffrax.RecursiveCheckpointAdjoint())

    def loss_fn(self, params, data, counted: bool = False):
        import diffrax
        import jax
        import jax.numpy as jnp

        vf = self._vf(counted)
        if self.job["workload"] == "cnf":
            spec = self.job["spec"]
            x = data["x"]
            sol = self._solve(vf, params, (x, jnp.zeros(x.shape[0], x.dtype)), spec["t1"], 0.0,
                              diffrax.SaveAt(t1=True))
            z, dl = sol.ys[0][-1], sol.ys[1][-1]
            s = spec["base_std"]
            base = -0.5 * jnp.sum((z / s) ** 2, -1) - z.shape[-1] * (jnp.log(s) + 0.5 * jnp.log(2 * jnp.pi))
            return -jnp.mean(base - dl), sol.stats
        p = params
        x, t_obs, idx, eps = data["x"], data["t_obs"], data["idx"], data["eps"]
        gaps = t_obs - jnp.concatenate([jnp.zeros_like(t_obs[:, :1]), t_obs[:, :-1]], 1)
        inputs = jnp.concatenate([x, gaps[..., None]], -1)
        hidden = p["gru.weight_hh"].shape[1]

        def gru(h, xi):      # torch.nn.GRUCell: gates (r, z, n)
            gi = xi @ p["gru.weight_ih"].T + p["gru.bias_ih"]
            gh = h @ p["gru.weight_hh"].T + p["gru.bias_hh"]
            r = jax.nn.sigmoid(gi[:, :hidden] + gh[:, :hidden])
            zg = jax.nn.sigmoid(gi[:, hidden:2 * hidden] + gh[:, hidden:2 * hidden])
            n = jnp.tanh(gi[:, 2 * hidden:] + r * gh[:, 2 * hidden:])
            return (1 - zg) * n + zg * h, None

        h, _ = jax.lax.scan(gru, jnp.zeros((x.shape[0], hidden), x.dtype), jnp.swapaxes(inputs, 0, 1)[::-1])
        mean, raw = jnp.split(h @ p["enc_out.weight"].T + p["enc_out.bias"], 2, -1)
        std = jax.nn.softplus(raw) + 1e-4
        z0 = mean + std * eps
        ts = jnp.asarray(self.static["ts"])                 # the grid up to the last observation (static)
        sol = self._solve(vf, params, z0, float(self.static["ts"][0]), float(self.static["ts"][-1]),
                          diffrax.SaveAt(ts=ts))
        z = jnp.swapaxes(sol.ys, 0, 1)                       # (batch, T, latent)
        z_obs = jnp.take_along_axis(z, idx[..., None], axis=1)
        pred = jnp.tanh(z_obs @ p["dec0.weight"].T + p["dec0.bias"]) @ p["dec1.weight"].T + p["dec1.bias"]
        sd = self.job["obs_std"]
        log_px = jnp.sum(-0.5 * (jnp.log(2 * jnp.pi) + 2 * jnp.log(sd) + ((x - pred) / sd) ** 2), (1, 2))
        kl = jnp.sum(0.5 * (std ** 2 + mean ** 2 - 1) - jnp.log(std), -1)
        return -jnp.mean(log_px - kl), sol.stats

    # the worker's commands --------------------------------------------------------------------
    def step(self) -> dict:
        jax = self.jax
        tick = time.perf_counter()
        out = jax.block_until_ready(self.compiled(self.params, self.opt_state, self.data))
        elapsed = time.perf_counter() - tick
        stats = out[3]
        return {"s": elapsed, "loss": float(out[2]), "num_steps": int(stats["num_steps"]),
                "num_accepted_steps": int(stats["num_accepted_steps"]),
                "num_rejected_steps": int(stats["num_rejected_steps"])}

    def count(self) -> dict:
        """NFE: forward from sol.stats, 6 per attempted step + 1 (Dopri5 is first-same-as-last; checked by
        counting, see tests/test_benchmarks.py); backward: the evaluations an instrumented copy of the
        gradient (untimed) runs beyond the forward's, i.e. those RecursiveCheckpointAdjoint recomputes."""
        jax = self.jax
        self.counter[0] = 0
        (_, stats), _ = jax.block_until_ready(jax.jit(jax.value_and_grad(
            lambda p, d: self.loss_fn(p, d, counted=True), has_aux=True))(self.params, self.data))
        forward = dopri5_nfe(int(stats["num_steps"]))
        return {"nfe_forward": forward, "nfe_backward": self.counter[0] - forward, "nfe_counted": self.counter[0]}

    def grads(self) -> dict:
        import numpy as np

        g = self.compiled(self.params, self.opt_state, self.data)[4]
        return {self.roles[r]: np.asarray(v) for r, v in g.items()}

    def memory(self) -> dict:
        m = self.compiled.memory_analysis()
        return {"xla_temp_mb": m.temp_size_in_bytes / 2 ** 20} if m is not None else {}


# ----------------------------------------------------------------------------------- workers
def worker(job_path: str, side: str, threads: int) -> None:
    """Serve one side of one job: read a command per line on stdin, answer one JSON line on stdout."""
    import numpy as np

    job = json.loads(Path(job_path).with_suffix(".json").read_text())
    arrays = dict(np.load(Path(job_path).with_suffix(".npz")))
    out = sys.stdout
    sys.stdout = sys.stderr            # library prints must not mix with the replies
    first = {}
    if side == "diffrax":
        impl = JaxSide(job, arrays, threads)
        first["compile_s"] = impl.compile_s
    else:
        impl = TorchSide(job, arrays, side.split("/", 1)[1], threads)
    first["rss_setup_mb"] = getattr(impl, "rss_setup_mb", None) or rss_mb()[0]
    out.write(REPLY + json.dumps(first) + "\n")
    out.flush()
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["cmd"] == "steps":
            reply = {"steps": [impl.step() for _ in range(cmd["n"])]}
        elif cmd["cmd"] == "reset_peak":
            reply = {"ok": reset_peak_rss(), "rss_ready_mb": rss_mb()[0]}
        elif cmd["cmd"] == "finish":
            reply = {"rss_peak_steps_mb": rss_mb()[1], **impl.memory()}
            if side == "diffrax":
                reply.update(impl.count())
            np.savez(cmd["grads"], **impl.grads())
        else:
            raise ValueError(f"unknown command {cmd}")
        out.write(REPLY + json.dumps(reply) + "\n")
        out.flush()
        if cmd["cmd"] == "finish":
            return


class Worker:
    """A side's process; `ask` sends a command and returns its reply."""

    def __init__(self, job: Path, side: str, threads: int, compile_backend: str = "inductor"):
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
               "OMP_WAIT_POLICY": "PASSIVE", "PYTHONPATH": str(ROOT), COMPILE_BACKEND_ENV: compile_backend}
        if threads == 1:
            env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + JAX_THREAD_FLAGS).strip()
        self.side = side
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--worker", side, "--job",
                                      str(job), "--threads", str(threads)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
        self.hello = self._read()

    def _read(self) -> dict:
        for line in self.proc.stdout:
            if line.startswith(REPLY):
                return json.loads(line[len(REPLY):])
            print(line, end="", file=sys.stderr)
        raise RuntimeError(f"the {self.side} worker stopped (exit code {self.proc.wait()}); see its error above")

    def ask(self, **cmd) -> dict:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return self._read()


# ----------------------------------------------------------------------------------- one row
def run_job(job: dict, folder: Path, sides: list[str], rounds: int, steps: int, threads: int,
            compile_backend: str = "inductor") -> list[dict]:
    """Time every side on one job in alternating rounds; one result row per side."""
    import numpy as np

    path = write_job(job, folder)
    workers: list[Worker] = []
    try:
        for side in sides:                     # one process per side, started in turn (a JAX compile is heavy)
            workers.append(Worker(path, side, threads, compile_backend))
        for w in workers:                      # warm-up: one untimed step each
            w.warmup = w.ask(cmd="steps", n=1)["steps"][0]
            w.ready = w.ask(cmd="reset_peak")
            w.steps = []
        for _ in range(rounds):
            for w in workers:
                w.steps += w.ask(cmd="steps", n=steps)["steps"]
        finals = [w.ask(cmd="finish", grads=str(path) + f"-{i}-grads.npz") for i, w in enumerate(workers)]
        grads = [dict(np.load(str(path) + f"-{i}-grads.npz")) for i in range(len(workers))]
    finally:
        for w in workers:        # each worker exits after "finish"; after an error, stop it
            if w.proc.poll() is None:
                w.proc.kill()
            w.proc.wait()
    rows = []
    for w, final, g in zip(workers, finals, grads):
        s = statistics.median(x["s"] for x in w.steps)
        if w.side == "diffrax":
            nfe_f, nfe_b = final["nfe_forward"], final["nfe_backward"]
            extra = {"compile_s": w.hello["compile_s"], "num_steps": w.steps[-1]["num_steps"],
                     "num_accepted_steps": w.steps[-1]["num_accepted_steps"],
                     "num_rejected_steps": w.steps[-1]["num_rejected_steps"], "nfe_counted": final["nfe_counted"]}
        else:
            nfe_f = statistics.mean(x["nfe_forward"] for x in w.steps)
            nfe_b = statistics.mean(x["nfe_backward"] for x in w.steps)
            extra = {"warmup_s": w.warmup["s"]} if "compile" in w.side else {}   # torch.compile's first step
        rows.append({"workload": job["workload"], "row": job["row"], "weights": job["weights"],
                     "side": "diffrax" if w.side == "diffrax" else "odecore",
                     "method": "diffrax Dopri5, jax.jit" if w.side == "diffrax" else w.side.split("/", 1)[1],
                     "s_per_step": s, "s_per_step_all": [x["s"] for x in w.steps], "loss": w.steps[-1]["loss"],
                     "nfe_forward": nfe_f, "nfe_backward": nfe_b, "ms_per_eval": 1e3 * s / nfe_f,
                     "rss_setup_mb": w.hello["rss_setup_mb"], "rss_ready_mb": w.ready["rss_ready_mb"],
                     "peak_rss_reset": w.ready["ok"], **{k: v for k, v in final.items() if k.endswith("_mb")},
                     **extra, "_grads": g})
    return rows


def compare(rows: list[dict]) -> None:
    """Assert each odecore row's loss equals diffrax's (LOSS_RTOL); add the ratios and gradient agreement."""
    import numpy as np

    ref = next((r for r in rows if r["side"] == "diffrax"), None)
    gref = ref["_grads"] if ref is not None else None
    for r in rows:
        g = r.pop("_grads")
        if ref is None or r is ref:
            continue
        rel = abs(r["loss"] - ref["loss"]) / abs(ref["loss"])
        assert rel <= LOSS_RTOL, (f"{r['row']}: odecore {r['method']} loss {r['loss']!r} and diffrax's "
                                  f"{ref['loss']!r} differ by {rel:.2e} relative (> {LOSS_RTOL})")
        num = max(float(np.abs(g[k] - gref[k]).max()) for k in gref)
        den = max(float(np.abs(gref[k]).max()) for k in gref)
        r.update({"loss_rel_diff": rel, "grad_rel_diff": num / den,
                  "ratio_per_step": r["s_per_step"] / ref["s_per_step"],
                  "ratio_per_eval": r["ms_per_eval"] / ref["ms_per_eval"]})


def report(r: dict) -> None:
    mem = f"RSS {r['rss_setup_mb']:.0f}/{r['rss_ready_mb']:.0f}/{r['rss_peak_steps_mb']:.0f} MB"
    exact = (f", tape {r['saved_for_backward_mb']:.1f} MB" if "saved_for_backward_mb" in r
             else f", XLA temp {r['xla_temp_mb']:.1f} MB" if "xla_temp_mb" in r else "")
    line = (f"  {r['method']:<24} {1e3 * r['s_per_step']:9.1f} ms/step  NFE fwd {r['nfe_forward']:6.1f} "
            f"bwd {r['nfe_backward']:6.1f}  {r['ms_per_eval']:7.3f} ms/eval  loss {r['loss']:.6g}  {mem}{exact}")
    if "warmup_s" in r:
        line += f"  (first step, compiling: {r['warmup_s']:.1f} s)"
    if "compile_s" in r:
        line += f"  (compile {r['compile_s']:.1f} s; {r['num_steps']} steps, {r['num_rejected_steps']} rejected)"
    if "ratio_per_step" in r:
        line += (f"  odecore/diffrax: {r['ratio_per_step']:.2f}x per step, {r['ratio_per_eval']:.2f}x per eval"
                 f" (loss rel diff {r['loss_rel_diff']:.1e}, grad {r['grad_rel_diff']:.1e})")
    print(line, flush=True)


def summary(rows: list[dict]) -> dict:
    """Per row and odecore method: odecore time / diffrax time, per step and per forward evaluation
    (> 1: diffrax is faster), with each side's forward NFE."""
    out: dict = {}
    for r in rows:
        if "ratio_per_step" in r:
            out.setdefault(r["row"], {})[r["method"]] = {
                "per_step": r["ratio_per_step"], "per_eval": r["ratio_per_eval"],
                "nfe_forward": r["nfe_forward"],
                "nfe_forward_diffrax": next(x["nfe_forward"] for x in rows
                                            if x["row"] == r["row"] and x["side"] == "diffrax")}
    return out


def latent_breakdown(profile: str, method: str, iters: int = 30) -> dict:
    """Where odecore's latent ODE iteration spends its time (ms per iteration, medians over `iters` iterations),
    each part timed inside the same iterations: the encoder (forward, and its backward from z0), the solve
    (forward, and its backward from z(t) to z0, marked by gradient hooks), and the rest (the decoder, likelihood,
    KL and Adam step, forward and backward). Same model, batch and eps as the latent ODE row; the loss is the
    chapter's ELBO (checked against `LatentODE.elbo`)."""
    import torch

    from odecore.experiments import latent_ode as lat
    from odecore.models.latent_ode import gaussian_log_prob, kl_standard_normal

    job = latent_ode_jobs(profile)[0]
    data = {k: torch.from_numpy(v) for k, v in job["arrays"].items()}
    model = lat.build("latent_ode", lat.PROFILES[profile])
    model.solver["method"], options = solver_options(method)
    if options:
        model.solver["options"] = options
    opt = torch.optim.Adam(model.parameters(), lr=job["lr"])
    opt_start = opt.state_dict()
    x, t_obs, idx, ts, eps = data["x"], data["t_obs"], data["idx"], data["ts"], data["eps"]

    def iteration() -> tuple[dict, float]:
        marks = {"start": time.perf_counter()}
        mean, std = model.encoder(x, t_obs)
        marks["encoded"] = time.perf_counter()
        z0 = mean + std * eps
        z0.register_hook(lambda g: marks.__setitem__("solve_back", time.perf_counter()))
        z = model.latent_path(z0, ts)
        marks["solved"] = time.perf_counter()
        z.register_hook(lambda g: marks.__setitem__("rest_back", time.perf_counter()))
        z_obs = torch.gather(z, 1, idx[..., None].expand(-1, -1, z.shape[-1]))
        log_px = gaussian_log_prob(x, model.decoder(z_obs), model.obs_std).sum((1, 2))
        loss = -(log_px - kl_standard_normal(mean, std)).mean()
        opt.zero_grad(set_to_none=True)
        marks["loss"] = time.perf_counter()
        loss.backward()
        marks["backward"] = time.perf_counter()
        opt.step()
        marks["end"] = time.perf_counter()
        ms = lambda a, b: 1e3 * (marks[b] - marks[a])  # noqa: E731
        return {"encoder, forward and backward": ms("start", "encoded") + ms("solve_back", "backward"),
                "solve, forward": ms("encoded", "solved"), "solve, backward": ms("rest_back", "solve_back"),
                "decoder, loss and Adam": ms("solved", "loss") + ms("loss", "rest_back") + ms("backward", "end"),
                "whole": ms("start", "end")}, float(loss.detach())

    rows = []
    for i in range(iters + 1):
        model.load_state_dict(job["state"])                  # every iteration from the same weights
        opt.load_state_dict(opt_start)
        parts, loss = iteration()
        if i:                                                # the first warms up (and compiles)
            rows.append(parts)
    torch.manual_seed(job["eps_seed"])
    model.load_state_dict(job["state"])
    chapter = -float(model.elbo(x, t_obs, idx, data["t_grid"])[0].mean().detach())
    assert abs(loss - chapter) <= LOSS_RTOL * abs(chapter), (loss, chapter)   # the same loss as the chapter's
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    model.func.reset()
    with torch.no_grad():
        model.latent_path((model.encoder(x, t_obs)[0] + model.encoder(x, t_obs)[1] * eps), ts)
    return {"method": method, "ms_per_iteration": med.pop("whole"), "parts_ms": med, "nfe_forward": model.func.reset()}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (default 5)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per side per round (default 3)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", choices=WORKLOADS)
    parser.add_argument("--profile", default="full", choices=("smoke", "full"),
                        help="the chapters' settings (full) or their smoke profile (tests)")
    parser.add_argument("--no-jax", action="store_true", help="odecore rows only, as without JAX installed")
    parser.add_argument("--compile-backend", default="inductor", choices=("inductor", "aot_eager"),
                        help="torch.compile backend of the +compile rows: inductor (the chapters'; default) or "
                             "aot_eager (the same graphs without generated C++: a quick check of the plumbing)")
    parser.add_argument("--save", action="store_true", help="write data/results/diffrax_benchmark.json")
    parser.add_argument("--breakdown", action="store_true",
                        help="also time the parts of odecore's latent ODE iteration (where its time goes)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--job", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.job, args.worker, args.threads)
        return {}
    jax_ok = has_jax() and not args.no_jax
    if not jax_ok:
        print("JAX, diffrax or optax is not installed (pip install -e \".[anchors]\"): timing the odecore rows only"
              if not args.no_jax else "--no-jax: timing the odecore rows only", flush=True)
    sides = [f"odecore/{m}" for m in ODECORE_METHODS] + (["diffrax"] if jax_ok else [])
    import torch

    from odecore import results

    out: dict = {"threads": args.threads, "rounds": args.rounds, "steps": args.steps, "profile": args.profile,
                 "methods": list(ODECORE_METHODS), "compile_backend": args.compile_backend, "jax": None, "rows": []}
    if jax_ok:
        import importlib.metadata as md

        out["jax"] = {p: md.version(p) for p in ("jax", "jaxlib", "diffrax", "equinox", "optax")}
    jobs = []
    for workload in WORKLOADS if args.only is None else (args.only,):
        jobs += cnf_jobs(args.profile) if workload == "cnf" else latent_ode_jobs(args.profile)
    with tempfile.TemporaryDirectory() as tmp:
        for job in jobs:
            print(f"{job['row']} ({job['weights']}), {args.threads} thread(s), {args.rounds} rounds x "
                  f"{args.steps} steps:", flush=True)
            rows = run_job(job, Path(tmp), sides, args.rounds, args.steps, args.threads, args.compile_backend)
            compare(rows)
            for r in rows:
                report(r)
            out["rows"] += rows
    out["summary"] = summary(out["rows"])
    if args.breakdown:
        torch.set_num_threads(args.threads)
        use_compile_backend(args.compile_backend)
        out["latent_ode_breakdown"] = [latent_breakdown(args.profile, m) for m in ODECORE_METHODS]
        for b in out["latent_ode_breakdown"]:
            print(f"latent ODE iteration, {b['method']}: {b['ms_per_iteration']:.1f} ms = "
                  + ", ".join(f"{k} {v:.1f}" for k, v in b["parts_ms"].items()), flush=True)
    out["load_average"] = list(os.getloadavg())   # the machine may be shared: say how busy it was
    print(f"load average {out['load_average'][0]:.2f} (1 min), {out['load_average'][1]:.2f} (5 min)")
    if args.save:
        path = results.save_benchmark("diffrax", {**results.provenance(torch.device("cpu")), **out})
        print(f"saved {path}")
    return out


if __name__ == "__main__":
    main()
