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


# The printed page. The book's PDF (A4, 0.5 in margins) gives a figure a column 6.45 in wide; the page
# shows a figure at figure.dpi CSS pixels per inch of its tight box (retina_png), 96 of them to a
# printed inch, and scales one wider than the column down to it. Text must print at MIN_PRINTED_PT or
# more: a 9 pt tick label survives a figure up to about 7 in wide, not a 10 in one.
PRINT_COLUMN_IN = 6.45
MIN_PRINTED_PT = 8.0
FULL_WIDTH = 7.0   # inches: the widest figure whose 9 pt text (the theme's smallest) still prints at 8 pt


def _renderer(fig):
    """`fig` drawn (its layout done), and the renderer that drew it; a closed figure gets an Agg canvas."""
    if not hasattr(fig.canvas, "get_renderer"):
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        FigureCanvasAgg(fig)
    fig.canvas.draw()
    return fig.canvas.get_renderer()


def printed_scale(fig) -> float:
    """The factor the printed page applies to `fig`'s sizes (above 1 for a narrow figure, below 1 for a wide one)."""
    width = fig.get_tightbbox(_renderer(fig)).width + 2 * plt.rcParams["savefig.pad_inches"]
    return min(fig.dpi / 96, PRINT_COLUMN_IN / width)


def _drawn_texts(fig) -> list:
    """Every non-empty text a draw of `fig` puts on the canvas (tick labels of ticks in view only)."""
    from matplotlib.text import Text

    drawn, original = [], Text.draw

    def record(self, renderer):
        original(self, renderer)
        if self.get_visible() and self.get_text().strip():
            drawn.append(self)

    Text.draw = record
    try:
        _renderer(fig)
    finally:
        Text.draw = original
    return list(dict.fromkeys(drawn))


def _data_points(ax, renderer):
    """Display coordinates of what `ax` draws as data: lines (every segment sampled each 2 px), markers,
    scatter points and line collections, inside the axes' box."""
    import numpy as np
    from matplotlib.collections import LineCollection, PathCollection

    chunks = []
    for line in ax.lines:
        xy = line.get_transform().transform(np.asarray(line.get_xydata(), float))
        xy = xy[np.isfinite(xy).all(1)]
        if len(xy) > 1 and line.get_linestyle() not in ("None", "none", ""):
            for a, b in zip(xy[:-1], xy[1:]):
                n = max(int(np.hypot(*(b - a)) / 2), 1)
                chunks.append(a + np.linspace(0, 1, n + 1)[:, None] * (b - a))
        elif len(xy):
            chunks.append(xy)
    for coll in ax.collections:
        if isinstance(coll, PathCollection) and len(coll.get_offsets()):
            chunks.append(coll.get_offset_transform().transform(np.asarray(coll.get_offsets(), float)))
        elif isinstance(coll, LineCollection):
            for path in coll.get_paths():
                chunks.append(coll.get_transform().transform(path.vertices))
    if not chunks:
        return np.zeros((0, 2))
    xy = np.concatenate(chunks)
    box = ax.get_window_extent(renderer)
    inside = (xy[:, 0] >= box.x0) & (xy[:, 0] <= box.x1) & (xy[:, 1] >= box.y0) & (xy[:, 1] <= box.y1)
    return xy[inside]


def _has_data(ax) -> bool:
    """Whether `ax` draws anything but its frame, grid, labels and legend."""
    lines = any(len(line.get_xydata()) for line in ax.lines)
    patches = any(p is not ax.patch for p in ax.patches)
    return lines or patches or bool(ax.collections or ax.images)


def layout_problems(fig) -> list[str]:
    """What a reader of the printed page would stumble on in `fig`, one sentence each (none: it reads):
    text printed under MIN_PRINTED_PT; texts drawn over each other; an axis label longer than its axis;
    anything reaching past the figure's edge; a panel with no data (an empty grid cell or a legend on
    its own); a legend or a label drawn over data; rounded boxes (a diagram's) overlapping."""
    from matplotlib.patches import FancyBboxPatch

    texts = _drawn_texts(fig)
    renderer = _renderer(fig)
    scale, found = printed_scale(fig), []
    boxes = [(t, t.get_window_extent(renderer)) for t in texts]
    small = sorted((t.get_fontsize() * scale, t.get_text()) for t in texts
                   if t.get_fontsize() * scale < MIN_PRINTED_PT - 0.05)
    if small:
        found.append(f"{len(small)} texts print under {MIN_PRINTED_PT:g} pt, down to {small[0][0]:.1f} pt "
                     f"({small[0][1]!r})")
    for i, (t, a) in enumerate(boxes):
        for u, b in boxes[i + 1:]:
            if a.x0 + 1 < b.x1 and b.x0 + 1 < a.x1 and a.y0 + 1 < b.y1 and b.y0 + 1 < a.y1:
                found.append(f"{t.get_text()!r} and {u.get_text()!r} overlap")
    edge = fig.bbox
    for t, a in boxes:
        if a.x0 < edge.x0 - 1 or a.x1 > edge.x1 + 1 or a.y0 < edge.y0 - 1 or a.y1 > edge.y1 + 1:
            found.append(f"{t.get_text()!r} reaches past the figure's edge")
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        box = ax.get_window_extent(renderer)
        for label, along in ((ax.xaxis.label, "x"), (ax.yaxis.label, "y")):
            if label.get_visible() and label.get_text().strip() and label in texts:
                ext = label.get_window_extent(renderer)
                longer = ext.width > box.width + 2 if along == "x" else ext.height > box.height + 2
                if longer:
                    found.append(f"axis label {label.get_text()!r} is longer than its axis")
        if not _has_data(ax):
            found.append(f"panel {ax.get_title()!r} shows no data" + (" (only a legend)" if ax.get_legend() else ""))
        patches = [p.get_window_extent(renderer) for p in ax.patches if isinstance(p, FancyBboxPatch)]
        for i, a in enumerate(patches):
            for b in patches[i + 1:]:
                if a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1:
                    found.append(f"boxes of panel {ax.get_title()!r} overlap")
    for ax in fig.axes:   # a label placed in a panel (ax.text, an annotation) must not sit on its data
        xy = _data_points(ax, renderer)
        for t in ax.texts:
            if not t.get_visible() or not t.get_text().strip():
                continue
            tb = t.get_window_extent(renderer)
            covered = int(((xy[:, 0] > tb.x0) & (xy[:, 0] < tb.x1) & (xy[:, 1] > tb.y0) & (xy[:, 1] < tb.y1)).sum())
            if covered:
                found.append(f"label {t.get_text().strip()!r} covers {covered} data points of panel {ax.get_title()!r}")
    legends = [(ax, ax.get_legend()) for ax in fig.axes if ax.get_legend()] + [(None, lg) for lg in fig.legends]
    for owner, legend in legends:
        if not legend.get_visible():
            continue
        lb = legend.get_window_extent(renderer)
        for ax in fig.axes:
            xy = _data_points(ax, renderer)
            covered = int(((xy[:, 0] > lb.x0) & (xy[:, 0] < lb.x1) & (xy[:, 1] > lb.y0) & (xy[:, 1] < lb.y1)).sum())
            if covered:
                found.append(f"legend {[t.get_text() for t in legend.get_texts()][:2]} covers {covered} data "
                             f"points of panel {ax.get_title()!r}")
    return found
