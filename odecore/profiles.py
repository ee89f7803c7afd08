"""Profiles: one code path, four sizes.

`smoke` is what CI runs (every line, tiny sizes); `reduced` is a named CPU-sized profile where
`full` (the paper's settings) cannot run on a CPU in reasonable time; `cpu` (MNIST only) converges
on a CPU; `full` is the paper. The profile comes from the settings (ODECORE_PROFILE); left unset, a
chapter shows the largest profile that has committed results, so the book build never trains.
The settings themselves are read in one place, odecore.settings; this module answers the questions
an experiment asks of them.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from odecore import results, settings
from odecore.settings import PROFILES, device_name  # noqa: F401  (re-exported: the names chapters use)


def check(profile: str) -> str:
    """Return `profile` unchanged, or raise ValueError naming the valid ones."""
    return settings.parse_profile(profile, "profile")


def current(experiment: str | None = None) -> str:
    """The profile to show: the settings' (ODECORE_PROFILE), else the largest with stored results, else smoke."""
    chosen = settings.current().profile
    if chosen:
        return chosen
    have = results.available_profiles(experiment) if experiment is not None else []
    return have[-1] if have else "smoke"


def rerun() -> bool:
    """True when the settings ask to train even if a matching result is stored (ODECORE_RERUN, --rerun)."""
    return settings.current().rerun


def device() -> torch.device:
    """The device to compute on: the settings' (ODECORE_DEVICE, using_device), else CUDA when present, else CPU."""
    return settings.current().resolved_device()


@contextlib.contextmanager
def using_device(dev: str | torch.device) -> Iterator[torch.device]:
    """Run the enclosed code on `dev`, whatever ODECORE_DEVICE says: how a pool worker hands a sub-run
    the device it was given, without writing the environment."""
    with settings.use(device=torch.device(dev)) as chosen:
        yield chosen.device
