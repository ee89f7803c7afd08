"""Settings: the one place that reads the environment.

A run's settings (profile, rerun, device, folders, progress bars) are built once at the edge, by the
command line (`python -m odecore.experiments`) or by a notebook's first cell, and the code below
reads them through `current()`. An edge that wants other settings than the environment's (the
command line's `--rerun`, a pool worker's device) enters `use(settings)`: nothing writes
`os.environ`. Every value is checked where it is read, and a bad one is an error naming its variable:

    ODECORE_PROFILE         smoke | reduced | cpu | full; unset: the largest with committed results
    ODECORE_RERUN           1/true/yes to train even when a matching result is stored; 0/false/no/unset
    ODECORE_DEVICE          cpu | cuda | cuda:N; unset: CUDA when present. cuda without a GPU is an error
    ODECORE_RESULTS_DIR     results (JSON and arrays); default data/results/
    ODECORE_CHECKPOINT_DIR  small trained models the chapters keep; default data/checkpoints/
    ODECORE_SCRATCH_DIR     resume state of runs in progress; default data/scratch/
    ODECORE_MNIST_DIR       the four MNIST IDX files; default data/mnist/
    TQDM_DISABLE            1 to hide progress bars (tqdm reads it too)
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
PROFILES: tuple[str, ...] = ("smoke", "reduced", "cpu", "full")  # smallest to largest; "cpu" is MNIST only
YES, NO = frozenset({"1", "true", "yes"}), frozenset({"", "0", "false", "no"})


@dataclasses.dataclass(frozen=True)
class Settings:
    """What a run needs from outside the code. Defaults: the repository's folders, no rerun."""

    profile: str | None = None            # None: the largest profile with a stored result
    rerun: bool = False
    device: torch.device | None = None    # None: CUDA when present, else the CPU
    results_dir: Path = ROOT / "data" / "results"
    checkpoint_dir: Path = ROOT / "data" / "checkpoints"
    scratch_dir: Path = ROOT / "data" / "scratch"
    mnist_dir: Path | None = None         # None: data/mnist/ only
    progress: bool = True

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """The settings the environment asks for; ValueError naming the variable of a bad value."""
        env = os.environ if environ is None else environ
        get = lambda name: env.get(name, "").strip()  # noqa: E731
        default = cls()
        folder = lambda name, fallback: Path(get(name)) if get(name) else fallback  # noqa: E731
        return cls(profile=parse_profile(get("ODECORE_PROFILE"), "ODECORE_PROFILE") if get("ODECORE_PROFILE") else None,
                   rerun=parse_flag(get("ODECORE_RERUN"), "ODECORE_RERUN"),
                   device=parse_device(get("ODECORE_DEVICE"), "ODECORE_DEVICE") if get("ODECORE_DEVICE") else None,
                   results_dir=folder("ODECORE_RESULTS_DIR", default.results_dir),
                   checkpoint_dir=folder("ODECORE_CHECKPOINT_DIR", default.checkpoint_dir),
                   scratch_dir=folder("ODECORE_SCRATCH_DIR", default.scratch_dir),
                   mnist_dir=folder("ODECORE_MNIST_DIR", None),
                   progress=not parse_flag(get("TQDM_DISABLE"), "TQDM_DISABLE"))

    def resolved_device(self) -> torch.device:
        """The device to compute on: the chosen one, else CUDA when present, else the CPU."""
        if self.device is not None:
            return self.device
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def parse_profile(value: str, source: str = "profile") -> str:
    """`value` if it names a profile, else ValueError naming `source` and the valid profiles."""
    if value not in PROFILES:
        raise ValueError(f"{source}={value!r}: unknown profile {value!r}; expected one of {', '.join(PROFILES)}")
    return value


def parse_flag(value: str, source: str) -> bool:
    """A yes or a no; anything else is an error (a typo must not silently serve cached results)."""
    if value.lower() in YES:
        return True
    if value.lower() in NO:
        return False
    raise ValueError(f"{source}={value!r}: expected 1, true or yes, or 0, false, no or nothing")


def parse_device(value: str, source: str = "device") -> torch.device:
    """A torch device that exists here; asking for CUDA on a machine without it fails at once."""
    try:
        dev = torch.device(value)
    except (RuntimeError, ValueError) as err:
        raise ValueError(f"{source}={value!r} is not a device ({err}); expected cpu, cuda or cuda:N") from err
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{source}={value!r}, but torch sees no CUDA GPU here (torch {torch.__version__}); "
                             "unset it to run on the CPU")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"{source}={value!r}, but this machine has {torch.cuda.device_count()} GPU(s)")
    elif dev.type != "cpu":
        raise ValueError(f"{source}={value!r}: odecore runs on cpu or cuda, not {dev.type}")
    return dev


_ACTIVE: contextvars.ContextVar[Settings | None] = contextvars.ContextVar("odecore_settings", default=None)


def current() -> Settings:
    """The settings of the enclosing `use()`, else the environment's (read now, so a test's or a
    notebook's change to the environment is seen)."""
    return _ACTIVE.get() or Settings.from_env()


@contextlib.contextmanager
def use(settings: Settings | None = None, **changes) -> Iterator[Settings]:
    """Run the enclosed code with `settings` (default: the current ones) with `changes` applied."""
    chosen = dataclasses.replace(settings or current(), **changes)
    token = _ACTIVE.set(chosen)
    try:
        yield chosen
    finally:
        _ACTIVE.reset(token)


def device_name(dev: torch.device) -> str:
    """Human-readable device name for provenance ("NVIDIA H200", "cpu (2 threads)")."""
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return f"cpu ({torch.get_num_threads()} threads)"
