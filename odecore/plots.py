"""One figure style for the whole book."""
from __future__ import annotations

import matplotlib.pyplot as plt

# Colour per method, fixed across chapters so a reader learns them once.
COLORS = {
    "direct": "#d62728", "adjoint": "#1f77b4", "alg1": "#2ca02c", "seminorm": "#9467bd",
    "dopri5": "#1f77b4", "adams": "#ff7f0e", "scipy": "#8c564b",
    "resnet": "#d62728", "odenet": "#1f77b4", "rknet": "#2ca02c", "mlp": "#7f7f7f",
    "nf": "#d62728", "cnf": "#1f77b4", "rnn": "#d62728", "latent_ode": "#1f77b4",
}

STYLE = {
    "figure.dpi": 110, "savefig.dpi": 110, "font.size": 10, "axes.titlesize": 10,
    "axes.labelsize": 10, "legend.fontsize": 9, "axes.spines.top": False,
    "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3, "lines.linewidth": 1.6,
    "figure.constrained_layout.use": True,
}


def use() -> None:
    """Apply the book's style; every chapter calls this once in its first cell."""
    plt.rcParams.update(STYLE)


def subplots(nrows: int = 1, ncols: int = 1, width: float = 3.4, height: float = 3.0, **kw):
    """plt.subplots with the book's panel size (inches per panel)."""
    use()
    return plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), **kw)


def caption_tag(record: dict) -> str:
    """The provenance line every reproduced figure carries: the experiment and results.label()."""
    from odecore.results import label

    return f"{record['experiment']}, {label(record)}"
