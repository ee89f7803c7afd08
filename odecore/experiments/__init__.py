"""Experiments, one module per chapter. Each module defines:

- `EXPERIMENTS`: the result names it writes (e.g. ("mnist",)),
- a `Config` dataclass and `PROFILES: dict[str, Config]` (a subset of odecore.profiles.PROFILES),
- `run(profile=None, ...) -> record`: cached result if its config hash matches, else computed,
- `scoreboard(record) -> list[dict]`: rows for the reproduction page (see odecore.scoreboard),
- a command line: `python -m odecore.experiments.<module> --profile full [--rerun]`.

A chapter's tables and figures are not here: they live in `odecore.figures.<chapter>`, as pure
functions of the stored record, so they can be redrawn from a results file without running anything.
"""
from __future__ import annotations

import argparse
import os
from typing import Callable

from odecore.results import path_for

# result name -> module that writes it
MODULES: dict[str, str] = {
    "adjoint": "odecore.experiments.adjoint",
    "mnist": "odecore.experiments.mnist",
    "cnf_density": "odecore.experiments.cnf",
    "cnf_mle": "odecore.experiments.cnf",
    "latent_ode": "odecore.experiments.latent_ode",
    "latent_ode_poisson": "odecore.experiments.latent_ode",
    "latent_ode_sampling": "odecore.experiments.latent_ode",
    "latent_ode_coverage": "odecore.experiments.latent_ode",
}


def cli(run: Callable[[str], dict], profiles: dict, description: str) -> None:
    """The shared command line: --profile NAME [--rerun]; prints where the result went."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--profile", choices=sorted(profiles), default="smoke")
    parser.add_argument("--rerun", action="store_true", help="train even if a matching result exists")
    args = parser.parse_args()
    if args.rerun:
        os.environ["ODECORE_RERUN"] = "1"
    record = run(args.profile)
    records = record if isinstance(record, list) else [record]
    for rec in records:
        print(f"{rec['experiment']} [{rec['profile']}] -> {path_for(rec['experiment'], rec['profile'])} "
              f"({rec['wall_time_s']:.1f} s on {rec['device_name']})")
