"""One figure style for the whole book: a seaborn theme, and retina PNGs in a notebook."""
from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes

# Colour per method, fixed across chapters so a reader learns them once.
COLORS = {
    "direct": "#d62728", "adjoint": "#1f77b4", "alg1": "#2ca02c", "seminorm": "#9467bd",
    "dopri5": "#1f77b4", "adams": "#ff7f0e", "scipy": "#8c564b",
    "resnet": "#d62728", "odenet": "#1f77b4", "rknet": "#2ca02c", "mlp": "#7f7f7f",
    "nf": "#d62728", "cnf": "#1f77b4", "rnn": "#d62728", "latent_ode": "#1f77b4",
}

# Overrides on top of the seaborn theme below. figure.dpi sets the size a figure is shown at in
# the book (its inches at this dpi, in CSS pixels); the inline backend then stores it at twice
# that resolution (retina), and a saved figure gets savefig.dpi.
STYLE = {
    "figure.dpi": 110, "savefig.dpi": 220, "font.size": 10, "axes.titlesize": 10,
    "axes.labelsize": 10, "xtick.labelsize": 9, "ytick.labelsize": 9, "legend.fontsize": 9,
    "axes.spines.top": False, "axes.spines.right": False, "lines.linewidth": 1.6,
    "figure.constrained_layout.use": True,
}


def use() -> None:
    """Apply the book's style; every chapter calls this once in its first cell.

    One theme through seaborn (white grid, the tab10 colours COLORS is drawn from) with the book's
    sizes on top; inside IPython it also makes inline figures retina PNGs (as
    `%config InlineBackend.figure_formats = ['retina']` would), so they stay sharp on high-density
    screens without growing on the page.
    """
    sns.set_theme(context="notebook", style="whitegrid", palette="tab10", rc=STYLE)
    _inline_retina()


def _inline_retina() -> None:
    """Make a running IPython kernel store figures as retina PNGs; outside one, do nothing."""
    try:
        from IPython import get_ipython
    except ImportError:  # odecore without the book's extras
        return
    shell = get_ipython()
    if shell is None:
        return
    from matplotlib.figure import Figure
    from matplotlib_inline.backend_inline import set_matplotlib_formats

    set_matplotlib_formats("retina")
    shell.display_formatter.formatters["image/png"].for_type(Figure, retina_png)


def retina_png(fig) -> tuple[bytes, dict] | None:
    """`fig` as PNG at twice its dpi, with the width to show it at (half its pixels).

    IPython's own retina output also fixes the height, and a book page narrower than the figure then
    squeezes it out of shape; with the width alone the page scales it and keeps its proportions.
    """
    from IPython.core.pylabtools import print_figure

    png = print_figure(fig, fmt="retina", bbox_inches="tight")
    if png is None:  # a figure with nothing drawn
        return None
    return png, {"width": int.from_bytes(png[16:20], "big") // 2}


def subplots(nrows: int = 1, ncols: int = 1, width: float = 3.4, height: float = 3.0, **kw):
    """plt.subplots with the book's panel size (inches per panel)."""
    use()
    return plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), **kw)


def seed_spread(ax: Axes, runs: pd.DataFrame, *, x: str, y: str, palette: Mapping[str, object],
                hue: str | None = None, paper_points: pd.DataFrame | None = None, dodge: float = 0.0) -> Axes:
    """Draw each seed's result as a dot, their mean and sd as a bar (a '_' marker), and the paper's
    number as a black 'x' labelled 'paper'.

    Why: with two or three seeds a mean alone hides how far apart the seeds landed, which is part of
    the finding, and the paper reports one number, which belongs on the same axis. `runs` has one row
    per seed, with columns `x`, `y` and `hue`; `paper_points` has the paper's numbers in the same
    columns (a row with no `y`, or with an `x` that `runs` lacks, is skipped). `hue=None` colours by
    `x`: one group per x, as in Table 1. Another column gives several groups per x, each listed in
    the legend; `dodge` then separates their bars (seaborn pointplot's `dodge`), and the dots and
    crosses of each group stand in its own column (seaborn stripplot's, 0.8 / groups wide), as in
    Table 2. Groups are drawn in `palette`'s order.
    """
    hue = hue or x
    order = sorted(runs[x].unique()) if pd.api.types.is_numeric_dtype(runs[x]) else list(runs[x].unique())
    present = set(runs[hue])
    hue_order = [h for h in palette if h in present]
    common = dict(data=runs, x=x, y=y, hue=hue, palette=palette, order=order, hue_order=hue_order, ax=ax)
    # legend "auto": seaborn lists the groups unless hue repeats x
    sns.pointplot(**common, errorbar="sd", dodge=dodge, linestyles="none", markers="_", markersize=14)
    sns.stripplot(**common, dodge=bool(dodge), size=5, alpha=0.7, legend=False)
    if paper_points is not None:
        points = paper_points[paper_points[y].notna() & paper_points[x].isin(order)]
        width = 0.8 / len(hue_order) if dodge else 0.0
        offset = {h: (k - (len(hue_order) - 1) / 2) * width for k, h in enumerate(hue_order)}
        where = [order.index(px) + offset.get(ph, 0.0) for px, ph in zip(points[x], points[hue])]
        ax.scatter(where, points[y].astype(float), marker="x", color="k", s=40, zorder=5, label="paper")
    ax.legend(fontsize=8)
    return ax


def caption_tag(record: dict) -> str:
    """The provenance line every reproduced figure carries: the experiment and results.label()."""
    from odecore.results import label

    return f"{record['experiment']}, {label(record)}"


def figure(name: str, fig) -> None:
    """Glue `fig` under `name` for a numbered, captioned `{glue:figure}` in the page, and close it so
    the cell shows nothing else."""
    from myst_nb import glue

    glue(name, fig, display=False)
    plt.close(fig)
