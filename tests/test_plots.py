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
