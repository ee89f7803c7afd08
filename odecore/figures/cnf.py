"""Section 4's tables and figures (Figures 4 and 5, Theorem 1), from the stored records and arrays.

The histograms and densities were computed by `odecore.experiments.cnf` (`density_arrays`,
`mle_arrays`) when the record was made; here they are only drawn.
"""
from __future__ import annotations

import matplotlib.ticker as mticker
import numpy as np
import pandas as pd
import seaborn as sns

from odecore import paper, plots, tables

def density_table(record: dict):
    """Final KL(q || p) per target, model, size and iterations: mean, std, min and max over seeds, seeds."""
    rows = [r for r in record["metrics"]["runs"] if "kl" in r]
    df = pd.DataFrame(rows)
    df["iterations"] = df["iterations"].astype(int)
    out = (df.groupby(["task", "kind", "size", "iterations"])["kl"]
           .agg(kl_mean="mean", kl_std="std", kl_min="min", kl_max="max", seeds="count").reset_index())
    out["kl_std"] = out["kl_std"].where(out["seeds"] > 1)
    return out


def mle_table(record: dict):
    """Test log-likelihood (nats, mean over the held-out points) per data set and model."""
    rows = []
    for r in record["metrics"]["runs"]:
        if "test_loglik" not in r:
            continue
        model = f"CNF, M={r['size']}" if r["kind"] == "cnf" else f"NF, K={r['size']} planar layers"
        rows.append({"data set": r["task"].replace("_", " ").title(), "model": model, "seed": r["seed"],
                     "iterations": r["iterations"], "test log-likelihood": r["test_loglik"],
                     "std. error": r["test_loglik_se"], "train time (s)": r["train_time_s"]})
    return pd.DataFrame(rows)


def failures(record: dict) -> list[dict]:
    return [r for r in record["metrics"]["runs"] if "failed" in r]


def _image(ax, values: np.ndarray, lim: float, grid: bool = False) -> None:
    """Draw a density indexed [x, y], without axes: a histogram of bins spanning [-lim, lim]^2, or
    (grid=True) values at n x n points spanning it, each drawn as the cell centred on its point."""
    n = values.shape[0]
    half = lim / (n - 1) if grid else 0.0
    edges = np.linspace(-lim - half, lim + half, n + 1)
    ax.pcolormesh(edges, edges, values.T, cmap="viridis", rasterized=True)
    ax.set_xticks([]); ax.set_yticks([]); ax.set_aspect("equal"); ax.grid(False)


def figure_theorem1(th: dict):
    """Delta log p by -int tr(df/dz) (lines) against -log|det dz(t)/dz0| by autograd (markers)."""
    fig, ax = plots.subplots(1, 1, width=4.6, height=3.2)
    t = np.array(th["t"])
    for i, (a, b) in enumerate(zip(th["delta_logp"], th["neg_logdet"])):
        line, = ax.plot(t, a, label="$-\\int_0^t \\mathrm{tr}(\\partial f/\\partial z)$" if i == 0 else None)
        ax.plot(t, b, "o", ms=4, mfc="none", color=line.get_color(),
                label="$-\\log|\\det \\partial z(t)/\\partial z_0|$" if i == 0 else None)
    ax.set_xlabel("t"); ax.set_ylabel("$\\log p(z(t)) - \\log p(z(0))$")
    ax.set_title(f"Theorem 1, {len(th['delta_logp'])} of {th['n']} points (largest error {tables.number(th['max_abs_err'])})")
    ax.legend(loc="best")
    return fig


def figure4(record: dict, arrays: dict):
    """Figure 4 (a-c): target exp(-U), then NF K=... and CNF M=... samples, one row per target. Each flow's
    panel is the seed-0 flow (the one the arrays hold); below it that flow's final KL and, where the
    target has several seeds, their mean (the number the KL table shows), both through tables.number;
    the target's panel names the two lines."""
    cfg = record["config"]
    targets = cfg["targets"]
    lim = float(arrays["lim"])
    cols = [("target", None)] + [("nf", k) for k in cfg["nf_layers"]] + [("cnf", m) for m in cfg["cnf_units"]]
    kl = {(r["task"], r["kind"], r["size"]): r["kl"] for r in record["metrics"]["runs"]
          if "kl" in r and r["seed"] == 0 and r["iterations"] == cfg[f"{r['kind']}_iterations"]}
    tab = density_table(record)
    tab = tab[tab["iterations"] == tab["kind"].map({k: cfg[f"{k}_iterations"] for k in ("nf", "cnf")})]
    mean = {(r.task, r.kind, r.size): (r.kl_mean, r.seeds) for r in tab.itertuples()}
    side = plots.FULL_WIDTH / len(cols)
    fig, axes = plots.subplots(len(targets), len(cols), width=side, height=side + 0.45, squeeze=False)
    for r, target in enumerate(targets):
        for c, (kind, size) in enumerate(cols):
            ax = axes[r, c]
            key = f"{target}/target" if kind == "target" else f"{target}/{kind}{size}"
            if key not in arrays:
                ax.axis("off")
                continue
            _image(ax, arrays[key], lim, grid=kind == "target")
            if kind == "target":   # the target's panel names the two lines its row's flows carry
                seeds = max((n for (t, *_), (_, n) in mean.items() if t == target), default=1)
                ax.set_ylabel(target)
                ax.set_xlabel("KL, seed 0" + (f"\nmean of {seeds}" if seeds > 1 else ""), fontsize=9)
            elif (target, kind, size) in kl:
                average, seeds = mean.get((target, kind, size), (None, 1))
                ax.set_xlabel(tables.number(kl[(target, kind, size)])
                              + (f"\n{tables.number(average)}" if seeds > 1 else ""), fontsize=9)
            if r == 0:
                ax.set_title("target" if kind == "target" else f"{kind.upper()} {'K' if kind == 'nf' else 'M'}={size}")
    return fig


def figure4d(record: dict):
    """Figure 4 (d): final KL(q || p) against K (NF) and M (CNF), one panel per target; lines join
    the means over seeds, error bars span the seeds (min to max) where a target has several, dots are
    single seeds; a star marks a CNF trained for long_iterations (the paper's 10,000)."""
    cfg = record["config"]
    tab = density_table(record)
    targets = cfg["targets"]
    labels_of = {"nf": f"NF ({cfg['nf_iterations']:,} RMSprop it.)", "cnf": f"CNF ({cfg['cnf_iterations']:,} Adam it.)"}
    runs = pd.DataFrame([{"task": r["task"], "size": r["size"], "kl": r["kl"], "flow": labels_of[r["kind"]]}
                         for r in record["metrics"]["runs"]
                         if "kl" in r and r["iterations"] == cfg[f"{r['kind']}_iterations"]])
    palette = {labels_of[k]: plots.COLORS[k] for k in labels_of}
    cols = 2 if len(targets) > 2 else len(targets)   # four targets wrap into two rows
    fig, axes = plots.subplots(-(-len(targets) // cols), cols, width=2.9, height=2.5, squeeze=False)
    for ax in axes.flat[len(targets):]:
        ax.set_axis_off()
    for ax, target in zip(axes.flat, targets):
        sub = runs[runs.task == target]
        # the mean over seeds, its band from the lowest to the highest seed, and every seed as a dot
        sns.lineplot(sub, x="size", y="kl", hue="flow", palette=palette, hue_order=list(palette), marker="o",
                     errorbar=("pi", 100), err_style="bars", err_kws={"capsize": 3}, legend=False, ax=ax)
        sns.scatterplot(sub, x="size", y="kl", hue="flow", palette=palette, hue_order=list(palette), alpha=0.4, s=12,
                        legend=False, ax=ax)
        for label, color in palette.items():
            ax.plot([], [], "o-", color=color, label=label)
        longs = tab[(tab.task == target) & (tab.kind == "cnf") & (tab.iterations == cfg["long_iterations"])
                    & (cfg["long_iterations"] != cfg["cnf_iterations"])]
        if len(longs):
            ax.plot(longs["size"], longs["kl_mean"], "*", ms=12, color=plots.COLORS["cnf"],
                    label=f"CNF ({cfg['long_iterations']:,} Adam it.)")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(sorted(set(cfg["nf_layers"]) | set(cfg["cnf_units"])))
        ax.xaxis.set_major_formatter(mticker.ScalarFormatter())
        ax.yaxis.set_major_locator(mticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(mticker.FormatStrFormatter("%g"))
        ax.yaxis.set_minor_formatter(mticker.NullFormatter())
        ax.set_xlabel("K (NF) or M (CNF)")
        ax.set_ylabel("")
        ax.set_title(target)
    for ax in axes[:, 0]:
        ax.set_ylabel("final KL(q || p) (nats)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    for ax in axes.flat[1:]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h); labels.append(lab)
    fig.legend(handles, labels, loc="outside lower center", ncol=len(labels), fontsize=8)
    return fig


def figure5(record: dict, arrays: dict) -> dict:
    """Figure 5 for each data set: target; rows density (CNF p_t), samples (CNF), NF samples;
    columns at 5, 20, 40, 60, 80, 100% of the flow (of t1 for the CNF, of the layers for the NF)."""
    fracs, lim = paper.FIGURE5["fractions"], float(arrays["lim"])
    figs = {}
    for data in record["config"]["datasets"]:
        side = plots.FULL_WIDTH / (len(fracs) + 1)
        fig, axes = plots.subplots(3, len(fracs) + 1, width=side, height=side + 0.1, squeeze=False)
        for r, name in enumerate(("CNF\ndensity", "CNF\nsamples", "NF\nsamples")):
            _image(axes[r, 0], arrays[f"{data}/target"], lim)
            axes[r, 0].set_ylabel(name)
            key = f"{data}/" + ("cnf_density", "cnf_samples", "nf_samples")[r]
            for c in range(1, len(fracs) + 1):
                if key in arrays:
                    _image(axes[r, c], arrays[key][c - 1], lim, grid=r == 0)
                else:
                    axes[r, c].axis("off")
        axes[0, 0].set_title("target")
        for c, f in enumerate(fracs, start=1):
            axes[0, c].set_title(f"{round(100 * f)}%")
        fig.suptitle(data.replace("_", " ").title())
        figs[data] = fig
    return figs
