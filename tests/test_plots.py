"""odecore.plots.use(): one seaborn theme with the book's sizes, and retina PNGs inside a kernel."""
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from odecore import plots  # noqa: E402


def test_use_sets_the_seaborn_theme_with_the_book_sizes():
    plt.rcdefaults()
    plots.use()
    for key, value in plots.STYLE.items():
        assert plt.rcParams[key] == value, key
    assert plt.rcParams["axes.grid"] and plt.rcParams["axes.facecolor"] == "white"  # seaborn's whitegrid
    assert plt.rcParams["axes.prop_cycle"].by_key()["color"][0] == matplotlib.colors.to_rgb(plots.COLORS["adjoint"])
    plt.rcdefaults()


def test_use_outside_ipython_changes_no_display_setting():
    from IPython import get_ipython

    plots.use()
    assert get_ipython() is None  # no shell was started on the way
    plt.rcdefaults()


def test_use_in_a_kernel_stores_figures_as_retina_png():
    """In an IPython shell a figure's PNG has twice the pixels of its displayed width, and no fixed
    height (in a subprocess: the shell is process-wide)."""
    script = """
import matplotlib
matplotlib.use("Agg")
import struct
from IPython.core.interactiveshell import InteractiveShell
from odecore import plots
shell = InteractiveShell.instance()
plots.use()
fig, ax = plots.subplots(1, 2, width=2.0, height=1.5)
ax[0].plot([0, 1], [0, 1])
data, meta = shell.display_formatter.format(fig)
png = data["image/png"]
png = png if isinstance(png, bytes) else __import__("base64").b64decode(png)
width, height = struct.unpack(">II", png[16:24])
print(width, height, meta["image/png"]["width"], "height" in meta["image/png"])
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    width, height, shown_width, fixes_height = out.stdout.split()
    assert int(width) // 2 == int(shown_width)       # twice the pixels of the width it is shown at
    assert fixes_height == "False"                     # so a narrower page scales it in proportion
    assert int(shown_width) > 0.8 * 4.0 * plots.STYLE["figure.dpi"]  # about its size (tight bbox), not shrunk


def test_seed_spread_one_group_per_x():
    """Table 1's case: hue is x; a dot per seed, a bar per x, the paper's cross at each x, only 'paper' in the legend."""
    import pandas as pd

    runs = pd.DataFrame({"model": ["a", "a", "b", "b", "b"], "error": [1.0, 1.2, 0.5, 0.6, 0.7]})
    fig, ax = plots.subplots()
    plots.seed_spread(ax, runs, x="model", y="error", palette={"a": "C0", "b": "C1"},
                      paper_points=pd.DataFrame({"model": ["a", "b", "c"], "error": [1.5, None, 9.0]}))
    crosses = ax.collections[-1]
    assert crosses.get_label() == "paper" and crosses.get_offsets().tolist() == [[0.0, 1.5]]  # no y, unknown x: skipped
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["paper"]
    dots = [c for c in ax.collections[:-1] if len(c.get_offsets())]
    assert sorted(len(c.get_offsets()) for c in dots) == [2, 3]
    plt.close(fig)


def test_seed_spread_dodged_groups():
    """Table 2's case: x = n, hue = model; each model's dots and paper cross in its own column (0.4 wide for two)."""
    import numpy as np
    import pandas as pd

    runs = pd.DataFrame({"n": [100, 30, 100, 30] * 2, "model": ["rnn"] * 4 + ["ode"] * 4,
                         "rmse": [0.2, 0.4, 0.21, 0.41, 0.1, 0.2, 0.11, 0.21]})
    paper_points = pd.DataFrame({"model": ["rnn", "rnn", "rnn", "ode"], "n": [30, 50, 100, 30],
                                 "rmse": [0.39, 0.32, 0.18, 0.16]})
    fig, ax = plots.subplots()
    plots.seed_spread(ax, runs, x="n", y="rmse", hue="model", palette={"rnn": "C3", "ode": "C0"},
                      paper_points=paper_points, dodge=0.3)
    crosses = ax.collections[-1].get_offsets()
    np.testing.assert_allclose(crosses, [[-0.2, 0.39], [0.8, 0.18], [0.2, 0.16]])  # n = 50 is not in runs
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["rnn", "ode", "paper"]
    strips = [c.get_offsets() for c in ax.collections[:-1] if len(c.get_offsets())]
    assert all(abs(abs(xy[:, 0] - np.round(xy[:, 0])) - 0.2).max() < 0.2 for xy in strips)  # dodged off the centre
    plt.close(fig)


def test_figures_modules_do_not_import_the_experiments():
    """odecore.figures.<chapter> draws from stored records; importing an experiment from it would make a cycle."""
    script = ("import sys, odecore.figures.adjoint, odecore.figures.mnist, odecore.figures.cnf, odecore.figures.latent_ode; "
              "print([m for m in sys.modules if m.startswith('odecore.experiments')])")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def _clean(**kw):
    fig, ax = plots.subplots(1, 1, width=4.0, height=3.0, **kw)
    ax.plot([0, 1, 2, 3], [0, 1, 4, 9], label="squares")
    return fig, ax


def test_layout_problems_passes_a_clean_figure():
    fig, ax = _clean()
    ax.set(xlabel="x", ylabel="x squared", title="a clean panel")
    ax.legend(loc="upper left")
    assert plots.layout_problems(fig) == []
    plt.close(fig)


def test_layout_problems_fails_each_fault_on_a_figure_built_to_break_it():
    """Every check of plots.layout_problems fails on a figure built with that fault (on a clean one, none does)."""
    from matplotlib.patches import FancyBboxPatch

    def wide():        # 9 pt tick labels on a figure three columns wide print at about 3 pt
        fig, ax = plots.subplots(1, 1, width=20.0, height=3.0)
        ax.plot([0, 1], [0, 1])
        return fig

    def overlap():
        fig, ax = _clean()
        ax.text(1, 4, "one label", fontsize=10)
        ax.text(1.05, 4.05, "another label", fontsize=10)
        return fig

    def long_label():
        fig, ax = _clean()
        ax.set_ylabel("a y label far longer than the height of the axes it belongs to, twice over")
        return fig

    def past_edge():
        fig, ax = _clean()
        fig.text(0.9, 0.5, "text running off the right edge of the figure")
        return fig

    def empty():
        fig, (ax, spare) = plots.subplots(1, 2, width=3.0, height=3.0)
        ax.plot([0, 1], [0, 1], label="line")
        spare.set_axis_off()
        spare.legend(*ax.get_legend_handles_labels())
        return fig

    def covering():
        fig, ax = _clean()
        ax.legend(loc="center", bbox_to_anchor=(0.5, 0.22))   # over the curve
        return fig

    def label_on_data():   # a label placed on the curve (Fig. 4.3's "coverage edge" once sat on its points)
        fig, ax = _clean()
        x, y = ax.lines[0].get_xydata()[len(ax.lines[0].get_xydata()) // 2]
        ax.text(x, y, "a label on the data", ha="center", va="center")
        return fig

    def boxes():
        fig, ax = _clean()
        for x in (0.5, 0.9):
            ax.add_patch(FancyBboxPatch((x, 2), 0.6, 1, boxstyle="round,pad=0.05"))
        return fig

    expected = {wide: "print under 8 pt", overlap: "overlap", long_label: "longer than its axis",
                past_edge: "past the figure's edge", empty: "shows no data (only a legend)",
                covering: "covers", boxes: "boxes of panel", label_on_data: "label 'a label on the data' covers"}
    for make, words in expected.items():
        fig = make()
        found = plots.layout_problems(fig)
        assert any(words in f for f in found), (make.__name__, found)
        plt.close(fig)


def test_printed_scale_follows_the_printed_column():
    """A figure narrower than the column prints at figure.dpi / 96 of its size; a wider one shrinks to the column."""
    narrow, _ = _clean()
    assert plots.printed_scale(narrow) == narrow.dpi / 96
    fig, ax = plots.subplots(1, 1, width=13.0, height=3.0)
    ax.plot([0, 1], [0, 1])
    assert abs(plots.printed_scale(fig) * fig.get_tightbbox().width - plots.PRINT_COLUMN_IN) < 0.5
    plt.close("all")
