"""The training loop every experiment uses.

One loop, so that every experiment gets the same guarantees: a tqdm bar, a checkpoint after
every epoch written atomically, resume after an interruption with no lost epoch and the same
weights an uninterrupted run would have (model, optimizer, scheduler and RNG states are all
saved), a clear stop when the loss is not finite, and seeding.
"""
from __future__ import annotations

import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

LossOut = Tensor | tuple[Tensor, dict[str, float]]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save via a temp file and rename: a crash mid-write leaves the old file intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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


def fit(model: nn.Module, optimizer: torch.optim.Optimizer,
        loss_fn: Callable[[Any], LossOut], batches: Callable[[int], Iterable[Any]], *,
        num_epochs: int, checkpoint: Path | None = None,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
        evaluate: Callable[[int], dict[str, float]] | None = None,
        desc: str = "train", progress: bool = True, grad_clip: float | None = None) -> list[dict]:
    """Train `model` for `num_epochs`, resuming from `checkpoint` when it holds a later epoch.

    Args:
        loss_fn: batch -> loss, or (loss, extras) where extras are floats averaged per epoch
            (e.g. {"nfe_forward": 26}).
        batches: epoch -> iterable of batches; derive any shuffling from the epoch number so a
            resumed run sees the same batches.
        checkpoint: where to save state after each epoch; None trains without saving.
        scheduler: stepped once per epoch.
        evaluate: epoch -> metrics, called after each epoch (e.g. validation error).

    Returns:
        One dict per epoch: epoch, loss (mean), time_s, averaged extras, evaluate's metrics.

    Raises:
        FloatingPointError: the loss became NaN or infinite; the last checkpoint is kept.
    """
    history: list[dict] = []
    start_epoch = 0
    if checkpoint is not None and Path(checkpoint).exists():
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state.get("scheduler") is not None:
            scheduler.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"])
        history = state["history"]
        start_epoch = state["epoch"] + 1
    for epoch in range(start_epoch, num_epochs):
        model.train()
        tick = time.perf_counter()
        sums: dict[str, float] = {}
        steps = 0
        items = batches(epoch)
        bar = tqdm(items, desc=f"{desc} epoch {epoch + 1}/{num_epochs}", disable=not progress,
                   leave=False, total=getattr(items, "__len__", lambda: None)())
        for batch in bar:
            out = loss_fn(batch)
            loss, extras = out if isinstance(out, tuple) else (out, {})
            if not torch.isfinite(loss):
                where = f"; last good state is in {checkpoint}" if checkpoint else ""
                raise FloatingPointError(f"{desc}: loss is {loss.item()} at epoch {epoch + 1}, "
                                         f"step {steps + 1}{where}. Lower the learning rate or check the data.")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            steps += 1
            for key, value in {"loss": loss.item(), **extras}.items():
                sums[key] = sums.get(key, 0.0) + float(value)
            bar.set_postfix(loss=f"{loss.item():.4g}")
        if scheduler is not None:
            scheduler.step()
        row = {"epoch": epoch + 1, **{k: v / max(steps, 1) for k, v in sums.items()},
               "time_s": time.perf_counter() - tick}
        if evaluate is not None:
            model.eval()
            row.update(evaluate(epoch))
        history.append(row)
        if checkpoint is not None:
            atomic_save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                         "scheduler": scheduler.state_dict() if scheduler is not None else None,
                         "rng": _rng_state(), "history": history, "epoch": epoch}, Path(checkpoint))
    return history
