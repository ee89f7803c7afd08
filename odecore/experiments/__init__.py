"""Experiments, one module per chapter. Each module defines:

- `EXPERIMENTS`: the result names it writes (e.g. ("mnist",)),
- a `Config` dataclass and `PROFILES: dict[str, Config]` (a subset of odecore.settings.PROFILES),
- `run(profile=None, ...) -> list[Record]`: the chapter's results (odecore.results.Record), each the
  stored one if its config hash matches, else computed and stored with the arrays its figures draw
  (odecore.results.save_arrays); `run_<result>` functions where a chapter has several,
- `scoreboard(record) -> list[dict]`: rows for the reproduction page (see odecore.scoreboard).

A chapter's tables and figures are not here: they live in `odecore.figures.<chapter>`, as pure
functions of the stored record and arrays, so they can be redrawn from a results file without running anything.

One command line for every chapter (exit status 2 with the usage for an unknown chapter or profile name, 1 with the reason
for any other error):

    python -m odecore.experiments CHAPTER [--profile P] [--rerun]

CHAPTER is one of adjoint, mnist, cnf, latent_ode; `python -m odecore.experiments.<chapter>` is the
same command. The profile defaults to $ODECORE_PROFILE, else smoke. `--rerun` (or ODECORE_RERUN=1)
trains every sub-run of the chapter again from its start: it deletes their finished summaries and
resume state first, so leave it off to resume an interrupted run.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from odecore import results, settings

# result name -> module that writes it
MODULES: dict[str, str] = {
    "adjoint": "odecore.experiments.adjoint",
    "mnist": "odecore.experiments.mnist",
    "mnist_nfe_ablation": "odecore.experiments.mnist",
    "cnf_density": "odecore.experiments.cnf",
    "cnf_mle": "odecore.experiments.cnf",
    "latent_ode": "odecore.experiments.latent_ode",
    "latent_ode_poisson": "odecore.experiments.latent_ode",
    "latent_ode_sampling": "odecore.experiments.latent_ode",
    "latent_ode_coverage": "odecore.experiments.latent_ode",
    "latent_ode_density": "odecore.experiments.latent_ode",
}


# chapter -> its module, for the command line
CHAPTERS: dict[str, str] = {"adjoint": "odecore.experiments.adjoint", "mnist": "odecore.experiments.mnist",
                            "cnf": "odecore.experiments.cnf", "latent_ode": "odecore.experiments.latent_ode"}


def main(argv: list[str] | None = None, chapter: str | None = None) -> int:
    """Run one chapter's experiments (stored results are reused unless --rerun) and print where each
    result went. Returns the exit status: 1, with the reason on stderr, when the settings are bad or a
    stored file is unusable; any other failure raises (exit status 1 with its traceback)."""
    parser = argparse.ArgumentParser(prog=f"python -m odecore.experiments{'.' + chapter if chapter else ''}",
                                     description="Run a chapter's experiments and store their results.")
    if chapter is None:
        parser.add_argument("chapter", choices=sorted(CHAPTERS))
    parser.add_argument("--profile", choices=settings.PROFILES, default=None,
                        help="the size to run (default: $ODECORE_PROFILE, else smoke)")
    parser.add_argument("--rerun", action="store_true", help="train even if a matching result is stored")
    args = parser.parse_args(argv)
    chapter = chapter or args.chapter
    try:   # the settings: a bad one is a one-line error, before any work
        chosen = settings.Settings.from_env()
        if args.profile and chosen.profile and args.profile != chosen.profile:
            raise ValueError(f"--profile {args.profile} but ODECORE_PROFILE={chosen.profile}: say one")
        profile = args.profile or chosen.profile or "smoke"
        module = importlib.import_module(CHAPTERS[chapter])
        if profile not in module.PROFILES:
            raise ValueError(f"the {chapter} chapter has no profile {profile!r}; it has {', '.join(module.PROFILES)}")
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    try:   # the run: an unusable stored file is a one-line error; anything else keeps its traceback
        with settings.use(chosen, profile=profile, rerun=chosen.rerun or args.rerun):
            out = module.run(profile)
    except results.ResultsError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for rec in out:
        failed = [r["name"] for r in rec["metrics"].get("runs", []) if isinstance(r, dict) and "failed" in r]
        print(f"{rec['experiment']} [{rec['profile']}] -> {results.path_for(rec['experiment'], rec['profile'])} "
              f"({rec['wall_time_s']:.1f} s on {rec['device_name']})"
              + (f"; recorded as diverged: {', '.join(failed)}" if failed else ""))
    return 0
