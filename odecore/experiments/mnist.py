"""Section 3: ODE-Net against ResNet, RK-Net and a 1-layer MLP on MNIST (Table 1, Figures 1 and 3).

`run(profile)` trains every model of the profile (each seed resumable epoch by epoch; a finished
model is kept as a part file, so a run that is cut off and started again only does what is left),
selects each model's weights by validation error, touches the test set once per reported number,
measures peak training memory and time, then measures Figure 3 on the trained ODE-Net and trains
the small 1-D toy of Figure 1. The record holds everything the chapter draws; the tables and
figures are drawn from it by `odecore.figures.mnist`.

    python -m odecore.experiments mnist --profile reduced
"""
from __future__ import annotations

import json
import math
import multiprocessing
import resource
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from odecore import paper, profiles, results, settings
from odecore.datasets import mnist as data
from odecore.models import mnist as models
from odecore.train import atomic_save, fit, run_progress, seed_everything

EXPERIMENTS = ("mnist", "mnist_nfe_ablation")

# Solvers of Figure 3(c): name -> (method, adjoint_options)
FIG3C_SOLVERS = {"dopri5": ("dopri5", None), "dopri5_seminorm": ("dopri5", {"norm": "seminorm"}),
                 "lsoda": ("scipy_lsoda", None)}


@dataclass(frozen=True)
class Config:
    """Every setting of a run; the defaults are the paper's (the `full` profile)."""

    seeds: dict = field(default_factory=lambda: {"mlp": (0, 1, 2), "resnet": (0, 1, 2), "rknet": (0, 1, 2),
                                                 "odenet": (0, 1, 2)})
    downsampling: str = "res"
    tol: float = paper.MNIST_TOL
    rk_method: str = "rk4"                    # RK-Net: backprop through this solver's operations,
    rk_step: float | None = 0.25              # with this fixed step (4 steps of rk4: 16 evaluations)
    n_val: int = 5000                         # held out of the 60k training images
    n_train: int | None = None                # None: the other 55k
    n_test: int | None = None                 # None: all 10k
    images_per_epoch: int | None = None       # None: the whole training split each epoch
    num_epochs: int = paper.MNIST_EPOCHS
    batch_size: int = 128
    epochs: dict | None = None                # per-model num_epochs, e.g. {"mlp": 40}; others num_epochs
    optimizer: str = "sgd"                    # "sgd" (momentum) or "adam"
    lr: float = 0.1                           # the peak lr under "onecycle"
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    schedule: str = "step"                    # "step": x gamma at milestones (per epoch); "cosine": to 0
                                              # over the run (per epoch); "onecycle": warm-up then anneal, per step
    milestones: tuple = (60, 100, 140)
    gamma: float = 0.1
    augment: bool = True                      # random crop of the zero-padded image
    crop_padding: int = 4
    checkpoint_every: int = 100               # steps between resume checkpoints inside an epoch
    eval_batch: int = 500
    memory_batch: int = 128
    # Figure 3 (a, b): tolerances at test time on the trained ODE-Net, error against a tight solve
    fig3_tols: tuple = (1e-1, 3e-2, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5)
    fig3_ref_tol: float = 1e-7
    fig3_images: int = 256
    fig3_repeats: int = 3
    # Figure 3 (c): forward vs backward NFE under three solvers
    fig3c_tols: tuple = (1e-2, 3e-3, 1e-3, 3e-4, 1e-4)
    fig3c_batches: int = 2
    fig3c_batch_size: int = 64
    # Figure 1: the 1-D toy
    fig1_iters: int = 400


PROFILES: dict[str, Config] = {
    "smoke": Config(seeds={"mlp": (0, 1), "resnet": (0,), "rknet": (0,), "odenet": (0,)},
                    n_val=64, n_train=128, n_test=64, num_epochs=2, batch_size=32, optimizer="adam", lr=1e-3,
                    schedule="cosine", eval_batch=64, memory_batch=8, fig3_tols=(1e-1, 1e-2, 1e-3),
                    fig3_ref_tol=1e-5, fig3_images=8, fig3_repeats=1, fig3c_tols=(1e-2, 1e-3), fig3c_batches=1,
                    fig3c_batch_size=4, fig1_iters=30),
    # About an hour of one CPU thread shared with other jobs (an ODE-Net step took 10 s there) for
    # all four models: 4 epochs of 5,120 images (20,480 images: 0.37 of a pass over the 55k training
    # split), no augmentation (in under one pass the nets underfit; cropping would only slow them),
    # SGD with momentum 0.9 and cosine decay. The GroupNorm nets sit on a plateau (loss 2.3) for about
    # 80 steps whatever the batch size, optimizer or lr (measured: SGD 0.1 / 0.05, Adam 1e-3 / 3e-3),
    # so batches of 32 (640 steps) beat batches of 128 (160 steps) for the same images; lr 0.05 left
    # the plateau first. 1,000 validation images (an ODE-Net validation costs minutes here). Seeds:
    # three for the cheap models, two for the ODE-Net and RK-Net (about 15 and 8 minutes each).
    "reduced": Config(seeds={"mlp": (0, 1, 2), "resnet": (0, 1, 2), "rknet": (0, 1), "odenet": (0, 1)},
                      n_val=1000, images_per_epoch=5120, num_epochs=4, batch_size=32, lr=0.05,
                      schedule="cosine", augment=False, fig3_tols=(1e-1, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 1e-5),
                      fig3_ref_tol=1e-6, fig3_images=128, fig3_repeats=2, fig3c_tols=(1e-2, 1e-3, 1e-4)),
    # Converges on a 2-core CPU in hours (named `cpu` wherever its numbers appear): every epoch sees
    # all 55k training images, SGD with Nesterov momentum and weight decay 5e-4, a one-cycle lr
    # stepped per batch (peak 0.1), random crops of padding 2, validation on 5k held-out images
    # every epoch, selection by validation error. Measured before choosing (batch 128, 2 threads):
    # under one-cycle, ResNet reaches 1.17% after one epoch and 0.73% after two, the ODE-Net 1.55%
    # after one, the MLP 1.38% after 40. Epochs per model are what the CPU affords (an ODE-Net epoch
    # with the adjoint is about 10 minutes here); the ODE-Net trains with the adjoint, as in the paper.
    "cpu": Config(seeds={"mlp": (0, 1, 2), "resnet": (0, 1, 2), "rknet": (0, 1, 2), "odenet": (0, 1, 2)},
                  epochs={"mlp": 40, "resnet": 20, "rknet": 15, "odenet": 15}, nesterov=True,
                  weight_decay=5e-4, schedule="onecycle", crop_padding=2,
                  fig3_tols=(1e-1, 1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 1e-5), fig3_ref_tol=1e-6, fig3_images=128,
                  fig3_repeats=2, fig3c_tols=(1e-2, 1e-3, 1e-4)),
    "full": Config(),
}

# Figure 3 (d)'s ablation: which setting makes the ODE-Net's forward NFE grow during training? Each
# variant changes the `cpu` profile in one factor group. "authors": the authors' public example
# (SGD momentum 0.9 without Nesterov, lr 0.1 divided by 10 at epochs 60/100/140 of 160, no weight
# decay, crops of padding 4); "onecycle_nowd": the cpu profile without weight decay; "cpu": as stored.
# A variant trains as long as the machine allows: its trend is read from the resume state.
NFE_ABLATIONS: dict[str, Config] = {
    "authors": replace(PROFILES["cpu"], epochs={"odenet": paper.MNIST_EPOCHS}, nesterov=False, weight_decay=0.0,
                       schedule="step", milestones=(60, 100, 140), gamma=0.1, crop_padding=4),
    "onecycle_nowd": replace(PROFILES["cpu"], weight_decay=0.0),
    "cpu": PROFILES["cpu"],
}

FIG3_FIELDS = ("fig3_tols", "fig3_ref_tol", "fig3_images", "fig3_repeats", "fig3c_tols", "fig3c_batches",
               "fig3c_batch_size")
MEMORY_FIELDS = ("memory_batch", "downsampling", "tol", "rk_method", "rk_step")
TRAIN_FIELDS = ("downsampling", "tol", "rk_method", "rk_step", "optimizer", "n_val", "n_train", "n_test", "images_per_epoch",
                "batch_size", "lr", "momentum", "nesterov", "weight_decay", "schedule", "milestones", "gamma",
                "augment", "crop_padding", "eval_batch")


# ----------------------------------------------------------------------------- training

def _make(name: str, cfg: Config) -> nn.Module:
    return models.make(name, downsampling=cfg.downsampling, tol=cfg.tol, rk_method=cfg.rk_method,
                       rk_step=cfg.rk_step)


def num_epochs(cfg: Config, name: str) -> int:
    """Epochs of model `name`: its entry in cfg.epochs, else cfg.num_epochs."""
    return (cfg.epochs or {}).get(name, cfg.num_epochs)


def _optimizer(model: nn.Module, cfg: Config) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                               weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}; expected 'sgd' or 'adam'")


def _scheduler(opt: torch.optim.Optimizer, cfg: Config, epochs: int, steps_per_epoch: int):
    """(scheduler, interval): per-epoch for "step" and "cosine", per-step for "onecycle"."""
    if cfg.schedule == "step":
        return torch.optim.lr_scheduler.MultiStepLR(opt, list(cfg.milestones), cfg.gamma), "epoch"
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 0.5 * (1 + math.cos(math.pi * e / epochs))), "epoch"
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, epochs=epochs,
                                                   steps_per_epoch=steps_per_epoch), "step"
    raise ValueError(f"unknown schedule {cfg.schedule!r}; expected 'step', 'cosine' or 'onecycle'")


@torch.no_grad()
def misclassified(model: nn.Module, x: Tensor, y: Tensor, batch: int) -> list[int]:
    """Indices of the images `model` gets wrong, evaluated in batches of `batch` from the first image (an adaptive
    solver's steps depend on the whole batch, so the same batches give the same answers). Stored with a test error,
    they let a check re-derive it image by image on a few batches (tests/test_mnist_weights.py)."""
    model.eval()
    wrong = torch.cat([model(x[i:i + batch]).argmax(1) != y[i:i + batch] for i in range(0, len(x), batch)])
    return wrong.nonzero().flatten().tolist()


def error_rate(model: nn.Module, x: Tensor, y: Tensor, batch: int) -> float:
    """Classification error in percent."""
    return 100.0 * len(misclassified(model, x, y, batch)) / len(x)


def _parts_dir(profile: str) -> Path:
    return results.scratch_dir() / f"mnist-{profile}"


def weights_path(profile: str, name: str, seed: int) -> Path:
    """Selected weights of a trained model. The ODE-Net's go to the committed checkpoints (Figure 3
    is measured on them); the others stay in the git-ignored scratch folder."""
    folder = results.checkpoint_dir() if name == "odenet" else _parts_dir(profile)
    return folder / f"mnist-{profile}-{name}-seed{seed}.pt"


def train_one(name: str, seed: int, cfg: Config, mnist: data.MNIST, profile: str, *,
              progress: bool = True) -> dict:
    """Train one model from one seed; select the epoch with the lowest validation error; test once.

    Resumable inside an epoch: the state is saved every cfg.checkpoint_every steps. The ODE-Net's
    forward and backward NFE of every step are kept in its history (Figure 3 (d)).
    """
    epochs = num_epochs(cfg, name)
    key = results.subrun_key(cfg, fields=TRAIN_FIELDS, model=name, seed=seed, num_epochs=epochs)
    parts = _parts_dir(profile)
    seed_everything(seed)
    model = _make(name, cfg).to(mnist.train_x.device)
    opt = _optimizer(model, cfg)

    def batches(epoch: int):
        return data.Batches(mnist.train_x, mnist.train_y, cfg.batch_size, epoch=epoch, seed=seed,
                            images_per_epoch=cfg.images_per_epoch, augment=cfg.augment, padding=cfg.crop_padding)

    sched, interval = _scheduler(opt, cfg, epochs, len(batches(0)))
    ode = model.ode if isinstance(model, models.Classifier) else None
    best_path = parts / f"{name}-seed{seed}-{key}-best.pt"

    def loss_fn(batch):
        x, y = batch
        return F.cross_entropy(model(x), y)

    def after_step() -> dict:  # the block's counter holds forward + backward evaluations after backward()
        return {"nfe_forward": ode.nfe_forward, "nfe_backward": ode.func.nfe - ode.nfe_forward} if ode else {}

    def evaluate(epoch: int) -> dict:
        out = {"val_error": error_rate(model, mnist.val_x, mnist.val_y, cfg.eval_batch)}
        best = torch.load(best_path, weights_only=False)["val_error"] if best_path.exists() else math.inf
        if out["val_error"] <= best:
            atomic_save({"model": model.state_dict(), "val_error": out["val_error"], "epoch": epoch + 1}, best_path)
        out["lr_next"] = opt.param_groups[0]["lr"]  # fit() steps the scheduler before evaluate()
        return out

    tick = time.perf_counter()
    history = fit(model, opt, loss_fn, batches, num_epochs=epochs, scheduler=sched, scheduler_interval=interval,
                  evaluate=evaluate, after_step=after_step,
                  keep_steps=("nfe_forward", "nfe_backward") if ode else (),
                  checkpoint=parts / f"{name}-seed{seed}-{key}.pt", checkpoint_every=cfg.checkpoint_every,
                  desc=f"{name} seed {seed}", progress=progress)
    best = torch.load(best_path, weights_only=False)
    model.load_state_dict(best["model"])
    atomic_save({"model": best["model"], "name": name, "seed": seed, "config": results.as_dict(cfg),
                 "epoch": best["epoch"], "val_error": best["val_error"]}, weights_path(profile, name, seed))
    wrong = misclassified(model, mnist.test_x, mnist.test_y, cfg.eval_batch)  # the one look at the test set
    steps_per_epoch = len(batches(0))
    return {"model": name, "seed": seed, "test_error": 100.0 * len(wrong) / len(mnist.test_x), "misclassified": wrong,
            "best_epoch": best["epoch"],
            "val_error": best["val_error"], "history": history, "params": models.count_params(model),
            "time_per_epoch_s": float(np.mean([h["time_s"] for h in history])),
            "train_time_s": float(sum(h["time_s"] for h in history)),
            "images_per_epoch": steps_per_epoch * cfg.batch_size,
            "wall_time_s": time.perf_counter() - tick}


# ----------------------------------------------------------------------------- memory

def _rss(field_: str) -> int:
    """VmRSS / VmHWM of this process in bytes, from /proc/self/status."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_ + ":"):
            return int(line.split()[1]) * 1024
    raise OSError(f"{field_} not in /proc/self/status")


def _reset_peak_rss() -> str:
    """Reset the peak resident set (Linux >= 4.0); returns the method name used."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        _rss("VmHWM")
        return "VmHWM increase over one step (peak reset via /proc/self/clear_refs), fresh process"
    except OSError:
        return "ru_maxrss increase over one step, fresh process"


def step_memory(name: str, batch_size: int, downsampling: str = "res", tol: float = 1e-3,
                rk_method: str = "rk4", rk_step: float | None = 0.25, device: str | None = None,
                threads: int | None = None) -> dict:
    """Peak memory of one training step, measured in a fresh process (call `measure_step_memory`).

    CPU method: the process's peak resident set (VmHWM) is reset through /proc/self/clear_refs
    after the model and batch are built, and read after one forward + backward + SGD step; the
    step's peak is VmHWM minus the resident set before the step. Where /proc cannot be reset,
    ru_maxrss is used the same way (it cannot be reset, so an earlier larger peak can hide the
    step's). CUDA: torch.cuda.max_memory_allocated over the step. Also returns time and NFE.
    """
    dev = torch.device(device) if device else profiles.device()
    if threads:
        torch.set_num_threads(threads)
    model = models.make(name, downsampling=downsampling, tol=tol, rk_method=rk_method, rk_step=rk_step).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = torch.rand(batch_size, 1, 28, 28, device=dev)
    y = torch.randint(0, 10, (batch_size,), device=dev)
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        method = _reset_peak_rss()
        before = _rss("VmRSS") if method.startswith("VmHWM") else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    tick = time.perf_counter()
    loss = F.cross_entropy(model(x), y)
    ode = model.ode if isinstance(model, models.Classifier) else None
    fwd = ode.func.nfe if ode is not None else 0
    opt.zero_grad()
    loss.backward()
    opt.step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - before
        method = "torch.cuda.max_memory_allocated"
    else:
        after = _rss("VmHWM") if method.startswith("VmHWM") else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        peak = after - before
    return {"peak_mb": peak / 2**20, "method": method, "step_s": time.perf_counter() - tick,
            "nfe_forward": fwd, "nfe_backward": (ode.func.nfe - fwd) if ode is not None and ode.adjoint else 0}


def measure_step_memory(name: str, batch_size: int, **kw) -> dict:
    """`step_memory` in a fresh Python process (spawned, not forked), so no earlier allocation hides
    the peak; on this process's device and with its number of threads."""
    kw = {"device": str(profiles.device()), "threads": torch.get_num_threads(), **kw}
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(step_memory, (name, batch_size), kw)


# ----------------------------------------------------------------------------- Figure 3

def _ode_features(model: models.Classifier, x: Tensor) -> Tensor:
    with torch.no_grad():
        return model[0](x)


def figure3_tolerance(model: models.Classifier, x: Tensor, cfg: Config) -> list[dict]:
    """(a, b): forward NFE, numerical error and wall time of the ODE block at each test tolerance.

    Error: mean over images of ||z(1) - z_ref(1)|| / ||z_ref(1)||, z_ref solved at fig3_ref_tol.
    """
    block = model.ode
    z0 = _ode_features(model, x)
    old = block.tol
    rows = []
    with torch.no_grad():
        block.tol = cfg.fig3_ref_tol
        ref = block(z0)
        ref_nfe = block.nfe_forward
        for tol in cfg.fig3_tols:
            block.tol = tol
            times = []
            for _ in range(cfg.fig3_repeats):
                tick = time.perf_counter()
                z = block(z0)
                times.append(time.perf_counter() - tick)
            err = ((z - ref).flatten(1).norm(dim=1) / ref.flatten(1).norm(dim=1)).mean().item()
            acc_logits = model[2](z)
            rows.append({"tol": tol, "nfe_forward": block.nfe_forward, "error": err,
                         "time_s": float(np.median(times)), "ref_nfe": ref_nfe,
                         "logit_change": (acc_logits - model[2](ref)).abs().max().item()})
    block.tol = old
    return rows


def figure3_backward(model: models.Classifier, xs: list[Tensor], ys: list[Tensor], cfg: Config) -> list[dict]:
    """(c): forward and backward NFE of the adjoint under each solver of FIG3C_SOLVERS and tolerance."""
    block = model.ode
    saved = (block.method, block.adjoint_options, block.tol)
    model.train()
    rows = []
    for solver, (method, adjoint_options) in FIG3C_SOLVERS.items():
        block.method, block.adjoint_options = method, adjoint_options
        for tol in cfg.fig3c_tols:
            block.tol = tol
            for i, (x, y) in enumerate(zip(xs, ys)):
                tick = time.perf_counter()
                loss = F.cross_entropy(model(x), y)
                fwd = block.func.nfe
                model.zero_grad()
                loss.backward()
                rows.append({"solver": solver, "tol": tol, "batch": i, "nfe_forward": fwd,
                             "nfe_backward": block.func.nfe - fwd, "time_s": time.perf_counter() - tick})
    block.method, block.adjoint_options, block.tol = saved
    model.zero_grad()
    model.eval()
    return rows


# ----------------------------------------------------------------------------- Figure 1

class _ToyField(nn.Module):
    """1-D dynamics f(t, z): a 2-32-1 tanh network of (t, z); records where it is evaluated."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 32), nn.Tanh(), nn.Linear(32, 1))
        self.points: list | None = None

    def forward(self, t: Tensor, z: Tensor) -> Tensor:
        if self.points is not None:
            self.points.append((float(t), z.detach().flatten().tolist()))
        return self.net(torch.cat([t.expand_as(z), z], 1))


def _toy_target(z: Tensor) -> Tensor:
    return 1.5 * torch.tanh(2.0 * z)  # pulls inputs towards two clusters: the map both nets learn


def figure1(cfg: Config, seed: int = 0) -> dict:
    """Train a 6-block residual network and an ODE network on the same 1-D map, then record the
    ResNet's hidden states after each block and the ODE network's vector field, trajectories and
    the points where dopri5 evaluated it (tol 1e-3)."""
    from odecore.solve import odesolve

    seed_everything(seed)
    z = torch.linspace(-2, 2, 256)[:, None]
    target = _toy_target(z)
    blocks = nn.ModuleList(nn.Sequential(nn.Linear(1, 16), nn.Tanh(), nn.Linear(16, 1)) for _ in range(6))

    def resnet(z0: Tensor) -> list[Tensor]:
        states = [z0]
        for block in blocks:
            states.append(states[-1] + block(states[-1]))
        return states

    func = _ToyField()
    t = torch.tensor([0.0, 1.0])
    losses = {}
    for name, params, forward in (
            ("resnet", blocks.parameters(), lambda: resnet(z)[-1]),
            ("odenet", func.parameters(), lambda: odesolve(func, z, t, rtol=1e-3, atol=1e-3)[-1])):
        opt = torch.optim.Adam(params, lr=0.02)
        for _ in range(cfg.fig1_iters):
            loss = F.mse_loss(forward(), target)
            opt.zero_grad()
            loss.backward()
            opt.step()
        losses[name] = loss.item()
    starts = torch.linspace(-1.9, 1.9, 11)[:, None]
    with torch.no_grad():
        res_states = torch.cat(resnet(starts), 1)                                 # (11, 7)
        fine = torch.linspace(0, 1, 101)
        traj = odesolve(func, starts, fine, rtol=1e-6, atol=1e-6)[..., 0].T       # (11, 101)
        func.points = []
        odesolve(func, starts, t, rtol=1e-3, atol=1e-3)
        points, func.points = func.points, None
        tg, zg = torch.meshgrid(torch.linspace(0, 1, 11), torch.linspace(-2.2, 2.2, 13), indexing="ij")
        field_ = func.net(torch.stack([tg.flatten(), zg.flatten()], 1)).reshape(tg.shape)
    return {"mse": losses, "starts": starts.flatten().tolist(), "resnet_states": res_states.tolist(),
            "ode_t": fine.tolist(), "ode_traj": traj.tolist(),
            "ode_eval_t": [p[0] for p in points], "ode_eval_z": [p[1] for p in points],
            "field_t": tg.tolist(), "field_z": zg.tolist(), "field_f": field_.tolist()}


# ----------------------------------------------------------------------------- run

def _summarise(runs: list[dict], memory: dict) -> dict:
    errs = [r["test_error"] for r in runs]
    first = runs[0]
    out = {"model": paper.TABLE1[first["model"]]["model"], "params": first["params"], "seeds": [r["seed"] for r in runs],
           "test_error": errs, "test_error_mean": float(np.mean(errs)),
           "test_error_std": float(np.std(errs, ddof=1)) if len(errs) > 1 else None,
           "val_error": [r["val_error"] for r in runs], "best_epoch": [r["best_epoch"] for r in runs],
           "misclassified": [r.get("misclassified") for r in runs],
           "time_per_epoch_s": float(np.mean([r["time_per_epoch_s"] for r in runs])),
           "images_per_epoch": first["images_per_epoch"], "memory": memory,
           "history": [r["history"] for r in runs]}
    out["time_per_55k_s"] = out["time_per_epoch_s"] * 55_000 / out["images_per_epoch"]
    steps = [h for h in first["history"] if "nfe_forward_steps" in h]
    if steps:
        fwd = [n for h in steps for n in h["nfe_forward_steps"]]
        bwd = [n for h in steps for n in h["nfe_backward_steps"]]
        out["nfe_forward_mean"] = float(np.mean(fwd))
        out["nfe_backward_mean"] = float(np.mean(bwd))
    return out


def _subrun_stem(profile: str, cfg: Config, name: str, seed: int) -> Path:
    """Where one (model, seed) keeps its summary (.json); train_one's resume state and best weights lie beside it."""
    key = results.subrun_key(cfg, fields=TRAIN_FIELDS, model=name, seed=seed, num_epochs=num_epochs(cfg, name))
    return _parts_dir(profile) / f"{name}-seed{seed}-{key}"


def subrun(profile: str, cfg: Config, mnist: data.MNIST, name: str, seed: int, *, progress: bool) -> dict:
    """One (model, seed) of a profile: its stored summary, else trained (resuming); see results.run_or_load."""
    stem = _subrun_stem(profile, cfg, name, seed)
    return results.run_or_load(stem.with_suffix(".json"), lambda: train_one(name, seed, cfg, mnist, profile, progress=progress),
                               resume=(stem.with_suffix(".pt"), stem.with_name(stem.name + "-best.pt")),
                               writes=(weights_path(profile, name, seed),))


def train_subrun(profile: str, name: str, seed: int, progress: bool = False) -> dict:
    """`subrun` as a pool task (odecore.experiments.parallel): reads the data splits on the task's device first.
    The chapter's `run` then finds the sub-run done and assembles the record."""
    cfg = PROFILES[profile]
    mnist = data.splits(cfg.n_val, n_train=cfg.n_train, n_test=cfg.n_test, device=profiles.device())
    return subrun(profile, cfg, mnist, name, seed, progress=progress)


def add_misclassified(profile: str) -> int:
    """Give each finished summary of `profile` trained before summaries kept their misclassified test images those
    images, from its selected weights, once they give its recorded test error exactly. Returns how many it wrote; the
    record then reassembles from the summaries (`run` with the record moved away). Nothing trains."""
    cfg = PROFILES[profile]
    mnist = data.splits(cfg.n_val, n_train=cfg.n_train, n_test=cfg.n_test)
    written = 0
    for name, seeds in cfg.seeds.items():
        for seed in seeds:
            summary = _subrun_stem(profile, cfg, name, seed).with_suffix(".json")
            run = results.stored(summary, (weights_path(profile, name, seed),))
            if run is None or "misclassified" in run:
                continue
            model = _make(name, cfg)
            model.load_state_dict(torch.load(weights_path(profile, name, seed), map_location="cpu",
                                             weights_only=False)["model"])
            wrong = misclassified(model, mnist.test_x, mnist.test_y, cfg.eval_batch)
            if 100.0 * len(wrong) / len(mnist.test_x) != run["test_error"]:
                raise results.ResultsError(f"{name} seed {seed}: its weights give {len(wrong)} errors, its summary "
                                           f"{run['test_error']}%; {summary} is left as it is")
            with results.subrun_lock(summary):
                results.atomic_write_text(summary, json.dumps({**run, "misclassified": wrong}) + "\n")
            written += 1
    return written


def nfe_ablation_config(seed: int = 0) -> dict:
    """The ablation record's config: every variant's settings and the seed."""
    return {"variants": {v: results.as_dict(c) for v, c in NFE_ABLATIONS.items()}, "seed": seed}


NFE_ABLATION_PROFILES = {"cpu": nfe_ablation_config()}   # the profile its record is stored under


def ablation_profile(variant: str) -> str:
    """The folder name a variant of NFE_ABLATIONS trains under (the stored cpu run keeps its own)."""
    if variant not in NFE_ABLATIONS:
        raise ValueError(f"unknown NFE ablation {variant!r}; expected one of {', '.join(NFE_ABLATIONS)}")
    return "cpu" if variant == "cpu" else f"nfe-{variant}"


def train_ablation(variant: str, seed: int = 0, progress: bool = True) -> dict:
    """Train the ODE-Net of one Figure 3 (d) ablation variant, resuming where it stopped."""
    cfg, profile = NFE_ABLATIONS[variant], ablation_profile(variant)
    mnist = data.splits(cfg.n_val, n_train=cfg.n_train, n_test=cfg.n_test, device=profiles.device())
    return subrun(profile, cfg, mnist, "odenet", seed, progress=progress)


def ablation_history(variant: str, seed: int = 0) -> list[dict] | None:
    """The epochs a variant has trained so far (its finished summary's, else its resume state's), or None."""
    cfg, profile = NFE_ABLATIONS[variant], ablation_profile(variant)
    summary, history = run_progress(_subrun_stem(profile, cfg, "odenet", seed))
    return summary["history"] if summary is not None else history


def run_nfe_ablation(seed: int = 0) -> results.Record:
    """Figure 3 (d)'s ablation as far as it has trained: per variant, the ODE-Net's mean forward and backward NFE
    per step and its validation error, epoch by epoch (train with `train_ablation`, which resumes). Stored again
    whenever a variant has trained further; the record says how many epochs each variant has of how many."""
    tick = time.perf_counter()
    variants, epochs = {}, []
    for variant, cfg in NFE_ABLATIONS.items():
        history = ablation_history(variant, seed)
        if not history:
            continue
        if variant != "cpu":   # for odecore.compute; the stored cpu run's epochs are the mnist record's, counted there
            epochs += [{k: h[k] for k in ("time_s", "device_name", "segments") if k in h} for h in history]
        variants[variant] = {
            "epochs_done": len(history), "epochs_planned": num_epochs(cfg, "odenet"),
            "nfe_forward": [float(np.mean(h["nfe_forward_steps"])) for h in history],
            "nfe_backward": [float(np.mean(h["nfe_backward_steps"])) for h in history],
            "val_error": [h["val_error"] for h in history], "loss": [h["loss"] for h in history],
            "time_s": [h["time_s"] for h in history],
            "settings": {k: getattr(cfg, k) for k in ("nesterov", "weight_decay", "schedule", "milestones", "crop_padding")}}
    return results.save("mnist_nfe_ablation", "cpu", nfe_ablation_config(seed), {"variants": variants, "history": epochs},
                        seeds=[seed], wall_time_s=time.perf_counter() - tick)


def run(profile: str | None = None, *, progress: bool | None = None) -> list[results.Record]:
    """The chapter's one record: the stored one of `profile` if its config matches, else train and
    measure everything."""
    profile = profiles.check(profile or profiles.current("mnist"))
    cfg = PROFILES[profile]
    progress = settings.current().progress if progress is None else progress
    all_seeds = sorted({s for seeds in cfg.seeds.values() for s in seeds})

    def compute() -> dict:
        dev = profiles.device()
        parts = _parts_dir(profile)
        mnist = data.splits(cfg.n_val, n_train=cfg.n_train, n_test=cfg.n_test, device=dev)
        runs: dict[str, list[dict]] = {}
        # Order: cheap models first, then the ODE-Net (Figure 3 needs it), then the rest.
        order = [("mlp", s) for s in cfg.seeds["mlp"]] + [("resnet", cfg.seeds["resnet"][0]),
                                                            ("odenet", cfg.seeds["odenet"][0])]
        order += [(m, s) for m in models.MODELS for s in cfg.seeds[m] if (m, s) not in order]
        figure1_data = results.run_or_load(parts / f"figure1-{results.subrun_key(cfg, fields=('fig1_iters',))}.json", lambda: figure1(cfg))
        fig3 = None
        for name, seed in order:
            runs.setdefault(name, []).append(subrun(profile, cfg, mnist, name, seed, progress=progress))
            if name == "odenet" and fig3 is None:
                fig3 = results.run_or_load(parts / f"figure3-{results.subrun_key(cfg, fields=TRAIN_FIELDS + FIG3_FIELDS, seed=seed, num_epochs=num_epochs(cfg, 'odenet'))}.json",
                             lambda: figure3(cfg, mnist, profile, seed))
        memory = results.run_or_load(parts / f"memory-{results.subrun_key(cfg, fields=MEMORY_FIELDS)}.json", lambda: {
            name: measure_step_memory(name, cfg.memory_batch, **{f: getattr(cfg, f) for f in MEMORY_FIELDS[1:]})
            for name in models.MODELS})
        table = {name: _summarise(runs[name], memory[name]) for name in models.MODELS}
        return {"table1": table, "figure3": fig3, "figure1": figure1_data,
                "param_counts": models.param_counts(), "split": {
                    "train": len(mnist.train_x), "val": len(mnist.val_x), "test": len(mnist.test_x)}}

    return [results.cached("mnist", profile, cfg, compute, seeds=all_seeds)]


def figure3(cfg: Config, mnist: data.MNIST, profile: str, seed: int) -> dict:
    """All of Figure 3's measurements on the trained ODE-Net (validation images, never test)."""
    dev = mnist.val_x.device
    model = _make("odenet", cfg).to(dev)
    model.load_state_dict(torch.load(weights_path(profile, "odenet", seed), map_location=dev,
                                     weights_only=False)["model"])
    model.eval()
    tol_rows = figure3_tolerance(model, mnist.val_x[:cfg.fig3_images], cfg)
    b = cfg.fig3c_batch_size
    xs = [mnist.val_x[i * b:(i + 1) * b] for i in range(cfg.fig3c_batches)]
    ys = [mnist.val_y[i * b:(i + 1) * b] for i in range(cfg.fig3c_batches)]
    return {"tolerance": tol_rows, "backward": figure3_backward(model, xs, ys, cfg), "seed": seed}


# ----------------------------------------------------------------------------- scoreboard

def scoreboard(record: dict) -> list[dict]:
    """Reproduction-page rows: Table 1 (error and params per model), Figure 1, Figure 3; and the Figure 3 (d)
    ablation's forward NFE in the last epoch each variant has trained."""
    from odecore import ledger

    m = record["metrics"]
    if record["experiment"] == "mnist_nfe_ablation":
        from odecore.figures.mnist import ABLATION_NAMES

        return [{"item": "Figure 3", "quantity": f"(d) ablation, {ABLATION_NAMES.get(variant, variant)}: mean forward NFE in "
                 f"epoch {v['epochs_done']} "
                 f"of {v['epochs_planned']}", "paper": None, "ours": v["nfe_forward"][-1],
                 "note": f"first epoch {v['nfe_forward'][0]:.1f}"} for variant, v in m["variants"].items()]
    rows = []
    for name in models.MODELS:
        ours, ref = m["table1"][name], paper.TABLE1[name]
        rows.append({"item": "Table 1", "quantity": f"{ref['model']} test error", "paper": ref["test_error"],
                     "ours": ours["test_error_mean"], "unit": "%", "tolerance": 0.1})
        rows.append({"item": "Table 1", "quantity": f"{ref['model']} parameters", "paper": ref["params_m"],
                     "ours": ours["params"] / 1e6, "unit": "M", "tolerance": 0.015})
        rows.append({"item": "Table 1", "quantity": f"{ref['model']} peak step memory (MiB, batch "
                     f"{record['config']['memory_batch']})", "paper": ref["memory"],
                     "ours": ours["memory"]["peak_mb"], "unit": "MiB"})
    bwd = {}
    for r in m["figure3"]["backward"]:
        if r["tol"] == record["config"]["tol"]:
            bwd.setdefault(r["solver"], []).append(r["nfe_backward"] / r["nfe_forward"])
    for solver, ratios in bwd.items():
        rows.append({"item": "Figure 3", "quantity": f"(c) backward / forward NFE, {solver}, tol 1e-3",
                     "paper": paper.BACKWARD_OVER_FORWARD_NFE, "ours": float(np.mean(ratios)),
                     "tolerance": 0.1, "verdict": ledger.backward_half(float(np.mean(ratios)))})   # the ledger's rule
    hist, first = m["table1"]["odenet"]["history"][0], m["table1"]["odenet"]["seeds"][0]
    rows.append({"item": "Figure 3",
                 "quantity": f"(d) mean forward NFE in the last training epoch, seed {first}, epoch {len(hist)} of the "
                             f"authors' {paper.MNIST_EPOCHS} (paper: it grows)",
                 "paper": None, "ours": float(np.mean(hist[-1]["nfe_forward_steps"])),
                 "verdict": ledger.nfe_grows_verdict(hist),   # the ledger's rule
                 "note": f"first epoch {np.mean(hist[0]['nfe_forward_steps']):.1f}"})
    rows.append({"item": "Figure 3",
                 "quantity": f"(d) mean adjoint backward NFE in the last training epoch, seed {first} (not in the paper)",
                 "paper": None, "ours": float(np.mean(hist[-1]["nfe_backward_steps"])),
                 "note": f"first epoch {np.mean(hist[0]['nfe_backward_steps']):.1f}"})
    rows.append({"item": "Figure 1", "quantity": "toy ODE network final MSE (drawn from a trained model)",
                 "paper": None, "ours": m["figure1"]["mse"]["odenet"]})
    return rows


if __name__ == "__main__":
    from odecore.experiments import main

    sys.exit(main(chapter="mnist"))
