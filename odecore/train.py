"""The training loop every experiment uses.

One loop, so that every experiment gets the same guarantees: a tqdm bar, a checkpoint after
every epoch written atomically, resume after an interruption with no lost epoch and the same
weights an uninterrupted run would have (model, optimizer, scheduler and RNG states are all
saved), a clear stop when the loss is not finite, and seeding.
"""
from __future__ import annotations

import io
import json
import random
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm  # the text bar: tqdm.auto warns on every page of the book without ipywidgets

from odecore import results, settings
from odecore.solve import SolverError

LossOut = Tensor | tuple[Tensor, dict[str, float]]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save through results.atomic_write_bytes: a crash mid-write leaves the old file intact,
    the new one is on disk (fsync) before it replaces it, it gets the umask's mode (not 0600), and a
    failed write (a full disk) is an OSError that names the file."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    results.atomic_write_bytes(Path(path), buffer.getvalue())


def load_checkpoint(path: Path) -> dict:
    """torch.load of a resume checkpoint; an unreadable file is an error that names it and the fix."""
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise                 # names the file already, and nothing is corrupt
    except Exception as err:  # truncated zip, empty file, unpickling error
        raise RuntimeError(f"checkpoint {path} is unreadable ({type(err).__name__}: {err}); it is truncated "
                           "or corrupt: delete it to restart that run from its last good state or from scratch") from err


def run_progress(stem: Path) -> tuple[dict | None, list[dict] | None]:
    """How far a sub-run has got: its finished summary (stem.json) if it has one, else None and the epochs
    its resume state (stem.pt) holds, else (None, None) when it has not started."""
    if stem.with_suffix(".json").exists():
        return json.loads(stem.with_suffix(".json").read_text()), None
    if stem.with_suffix(".pt").exists():
        return None, load_checkpoint(stem.with_suffix(".pt"))["history"]
    return None, None


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _finite(model: nn.Module) -> bool:
    """True when every parameter is finite; one reduction, so it costs one sync per step."""
    params = [p for p in model.parameters()]
    return not params or bool(torch.isfinite(torch.stack([p.detach().sum() for p in params])).all())


def _stop(desc: str, what: str, epoch: int, step: int, checkpoint: Path | None) -> FloatingPointError:
    if checkpoint is not None and Path(checkpoint).exists():
        where = f"; the last good state is {checkpoint} (it is kept)"
    else:
        where = "; no checkpoint was written before it, so nothing is kept"
    return FloatingPointError(f"{desc}: {what} at epoch {epoch + 1}, step {step}{where}. "
                              "Lower the learning rate or check the data.")


def fit(model: nn.Module, optimizer: torch.optim.Optimizer,
        loss_fn: Callable[[Any], LossOut], batches: Callable[[int], Iterable[Any]], *,
        num_epochs: int, checkpoint: Path | None = None,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None = None, scheduler_interval: str = "epoch",
        evaluate: Callable[[int], dict[str, float]] | None = None,
        after_step: Callable[[], dict[str, float]] | None = None, keep_steps: tuple[str, ...] = (),
        checkpoint_every: int | None = None,
        desc: str = "train", progress: bool = True, grad_clip: float | None = None) -> list[dict]:
    """Train `model` for `num_epochs`, resuming from `checkpoint` where it stopped.

    Args:
        loss_fn: batch -> loss, or (loss, extras) where extras are floats averaged per epoch
            (e.g. {"nfe_forward": 26}).
        batches: epoch -> iterable of batches; derive any shuffling from the epoch number (never
            from the global RNG) so a resumed run sees the same batches.
        checkpoint: where to save state after each epoch; None trains without saving.
        scheduler: stepped once per epoch, or once per step with scheduler_interval="step"
            (one-cycle schedules).
        evaluate: epoch -> metrics, called after each epoch (e.g. validation error).
        after_step: () -> extras read after the optimizer step (e.g. the backward NFE).
        keep_steps: extras whose per-step values are kept in the epoch's row as "<name>_steps".
        checkpoint_every: also save every this many steps inside an epoch, so a long epoch that
            is cut off resumes at the step it reached (the skipped batches are regenerated).

    Returns:
        One dict per epoch: epoch, loss (mean), time_s, averaged extras, evaluate's metrics, and where it
        trained: device_name, or, for an epoch that an interruption split across processes with different
        devices or thread counts, segments ([seconds, device_name] each), so that compute counts its
        CPU core-hours at the threads each part used.

    Raises:
        FloatingPointError: the loss or, after a step, a parameter became NaN or infinite. That
            state is never saved, so the checkpoint stays the last good one.
    """
    if scheduler_interval not in ("epoch", "step"):
        raise ValueError(f"scheduler_interval must be 'epoch' or 'step', not {scheduler_interval!r}")
    history: list[dict] = []
    start_epoch, partial = 0, None
    if checkpoint is not None and Path(checkpoint).exists():
        state = load_checkpoint(checkpoint)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state.get("scheduler") is not None:
            scheduler.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"])
        history = state["history"]
        start_epoch = state["epoch"] + 1
        partial = state.get("partial")  # progress inside epoch `start_epoch`, if it was cut off

    def save(epoch: int, part: dict | None) -> None:
        atomic_save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                     "scheduler": scheduler.state_dict() if scheduler is not None else None,
                     "rng": _rng_state(), "history": history, "epoch": epoch, "partial": part}, Path(checkpoint))

    here = settings.device_name(next(model.parameters()).device)

    def segments(part: dict, start: float, now: float) -> list[list]:
        """The epoch's [seconds, device] parts until `now`: those of earlier processes, then this one's since `start`
        (a state saved before parts were recorded gives its time with device None: the record's)."""
        before = part.get("segments", [[part["time_s"], None]] if part["time_s"] else [])
        return [*before, [now - start, here]]

    for epoch in range(start_epoch, num_epochs):
        model.train()
        part = partial or {"steps": 0, "sums": {}, "kept": {k: [] for k in keep_steps}, "time_s": 0.0}
        partial = None
        done, sums, kept = part["steps"], part["sums"], part["kept"]
        start = time.perf_counter()
        tick = start - part["time_s"]
        items = batches(epoch)
        total = getattr(items, "__len__", lambda: None)()
        bar = tqdm(items, desc=f"{desc} epoch {epoch + 1}/{num_epochs}", disable=not progress,
                   leave=False, total=total, initial=0)
        steps = 0
        for batch in bar:
            steps += 1
            if steps <= done:
                continue  # already trained before the interruption
            out = loss_fn(batch)
            loss, extras = out if isinstance(out, tuple) else (out, {})
            if not torch.isfinite(loss):
                raise _stop(desc, f"loss is {loss.item()}", epoch, steps, checkpoint)
            optimizer.zero_grad(set_to_none=True)
            try:
                loss.backward()
            except AssertionError as err:  # torchdiffeq's adjoint asserts inside its backward solve
                raise SolverError(f"{desc}: the backward pass failed at epoch {epoch + 1}, step {steps} ({err}): "
                                  "torchdiffeq's adjoint solve met NaN or inf, or a step size that underflowed. "
                                  "Lower the learning rate or check the dynamics.") from err
            if grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            if not _finite(model):
                raise _stop(desc, "a parameter is not finite after the optimizer step", epoch, steps, checkpoint)
            if scheduler is not None and scheduler_interval == "step":
                scheduler.step()
            extras = {"loss": loss.item(), **extras, **(after_step() if after_step else {})}
            for key, value in extras.items():
                sums[key] = sums.get(key, 0.0) + float(value)
                if key in kept:
                    kept[key].append(float(value))
            bar.set_postfix(loss=f"{extras['loss']:.4g}")
            if checkpoint is not None and checkpoint_every and steps % checkpoint_every == 0 and steps != total:
                now = time.perf_counter()
                save(epoch - 1, {"steps": steps, "sums": sums, "kept": kept,
                                 "time_s": now - tick, "segments": segments(part, start, now)})
        if scheduler is not None and scheduler_interval == "epoch":
            scheduler.step()
        now = time.perf_counter()
        row = {"epoch": epoch + 1, **{k: v / max(steps, 1) for k, v in sums.items()},
               **{f"{k}_steps": v for k, v in kept.items()}, "time_s": now - tick}
        parts = segments(part, start, now)
        if {device for _, device in parts} == {here}:
            row["device_name"] = here
        else:
            row["segments"] = parts
        if evaluate is not None:
            model.eval()
            row.update(evaluate(epoch))
        history.append(row)
        if checkpoint is not None:
            save(epoch, None)
    return history
