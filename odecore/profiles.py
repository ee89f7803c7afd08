"""Profiles: one code path, three sizes.

`smoke` is what CI runs (every line, tiny sizes); `reduced` is a named CPU-sized profile where
`full` (the paper's settings) cannot run on a CPU in reasonable time; `full` is the paper.
The profile comes from ODECORE_PROFILE; left unset, a chapter shows the largest profile that has
committed results, so the book build never trains.
"""
from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator

import torch

PROFILES: tuple[str, ...] = ("smoke", "reduced", "cpu", "full")  # smallest to largest; "cpu" is MNIST only


def check(profile: str) -> str:
    """Return `profile` unchanged, or raise ValueError naming the valid ones."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; expected one of {', '.join(PROFILES)}")
    return profile


def current(experiment: str | None = None) -> str:
    """The profile to show: $ODECORE_PROFILE, else the largest with committed results, else smoke."""
    chosen = os.environ.get("ODECORE_PROFILE", "").strip()
    if chosen:
        return check(chosen)
    if experiment is not None:
        from odecore import results  # late import: results imports this module

        have = results.available_profiles(experiment)
        if have:
            return have[-1]
    return "smoke"


def rerun() -> bool:
    """True when ODECORE_RERUN asks to train even if a matching result is cached.

    Anything but a yes or a no is an error: a typo must not silently serve cached results.
    """
    value = os.environ.get("ODECORE_RERUN", "").strip().lower()
    if value in {"1", "true", "yes"}:
        return True
    if value in {"", "0", "false", "no"}:
        return False
    raise ValueError(f"ODECORE_RERUN={os.environ['ODECORE_RERUN']!r}: expected 1, true or yes to retrain, "
                     "or 0, false, no or nothing to use cached results")


# The device chosen by a caller for the code it runs (see using_device); None: not chosen.
_DEVICE: contextvars.ContextVar[torch.device | None] = contextvars.ContextVar("odecore_device", default=None)


@contextlib.contextmanager
def using_device(dev: str | torch.device) -> Iterator[torch.device]:
    """Run the enclosed code on `dev`: device() returns it inside, whatever $ODECORE_DEVICE says.

    How a pool worker hands a sub-run the device it was given, without writing the environment.
    """
    dev = torch.device(dev)
    token = _DEVICE.set(dev)
    try:
        yield dev
    finally:
        _DEVICE.reset(token)


def device() -> torch.device:
    """The device of using_device() when inside one; else $ODECORE_DEVICE; else CUDA when present, else CPU."""
    chosen = _DEVICE.get()
    if chosen is not None:
        return chosen
    name = os.environ.get("ODECORE_DEVICE", "").strip()
    if name:
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def device_name(dev: torch.device) -> str:
    """Human-readable device name for provenance ("NVIDIA H200", "cpu (2 threads)")."""
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return f"cpu ({torch.get_num_threads()} threads)"
