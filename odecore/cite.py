"""How to cite this book and one of its numbers: generated, never typed.

`bibtex()` is the entry for the book; the repository's CITATION.bib is `bibtex()` without a commit (a test
keeps them equal), and the reproduction page prints it with the commit and date of the build's checkout.
`example()` is the "how to cite a number" sentence, built from a stored record. Both are written into the page
when Sphinx builds it (book/_ext/build_info.py), never by an executed notebook, whose output the execution cache
could keep from an older commit.
"""
from __future__ import annotations

import subprocess
import tomllib

from odecore import results

TITLE = "Neural Ordinary Differential Equations, reproduced: a runnable Jupyter Book and the odecore package"
AUTHOR = "{the odecore contributors}"


def version() -> str:
    """The package version, from pyproject.toml (the one place it is written)."""
    return tomllib.loads((results.ROOT / "pyproject.toml").read_text())["project"]["version"]


def checkout() -> tuple[str, str] | None:
    """(commit, commit date YYYY-MM-DD) of the checkout the book is built from, or None outside git."""
    try:
        out = subprocess.run(["git", "log", "-1", "--format=%H %cs"], cwd=results.ROOT, capture_output=True,
                             text=True, check=True, timeout=30).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return None
    return (out[0], out[1]) if len(out) == 2 else None


def bibtex(commit: str | None = None, date: str | None = None) -> str:
    """The book's BibTeX entry; with a commit and date, the exact version a number was read from."""
    fields = [("title", "{" + TITLE + "}"), ("author", AUTHOR), ("version", "{" + version() + "}"),
              ("howpublished", "{Jupyter Book and Python package}"),
              ("note", "{Reproduces Chen, Rubanova, Bettencourt and Duvenaud, Neural Ordinary Differential Equations, "
                       "NeurIPS 2018 (arXiv:1806.07366)}")]
    if commit:
        fields.append(("commit", "{" + commit + "}"))
    if date:
        fields += [("year", date[:4]), ("date", "{" + date + "}")]
    body = ",\n".join(f"  {k} = {v}" for k, v in fields)
    return f"@software{{odecore_reproduction,\n{body}\n}}\n"


def example(profile: str | None = None, commit: str | None = None) -> str:
    """A citation of one number, from a stored record: the ODE-Net's test error of Table 1 at `profile` (default:
    the one the MNIST chapter shows), at `commit` (the build's: book/_ext/build_info.py passes it)."""
    from odecore import profiles, scoreboard
    from odecore.tables import mean_sd

    profile = profile or profiles.current("mnist")   # the largest stored (smoke where nothing else is)
    if profile not in results.available_profiles("mnist"):
        stored = ", ".join(results.available_profiles("mnist")) or "none"
        return (f"no mnist result is stored at profile {profile!r} (stored: {stored}): run python -m odecore.experiments "
                f"mnist --profile {profile}")
    record = results.load("mnist", profile)
    row = record["metrics"]["table1"]["odenet"]
    at = f", the book at commit {commit[:12]}" if commit else ""
    return (f"ODE-Net test error {mean_sd(row['test_error'])} % over {len(row['seeds'])} seeds, "
            f"{profile} profile (odecore {version()}{at}, data/results/{results.path_for('mnist', profile).name}, "
            f"reproduction page row #{scoreboard.anchor('Table 1', 'ODE-Net test error')})")
