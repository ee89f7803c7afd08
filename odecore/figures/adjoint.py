"""The adjoint chapter's tables and figures (Section 2, Algorithm 1, Figure 2, Appendix B), from its record.

`odecore.experiments.adjoint` ran the gradient checks, the memory and tolerance sweeps and the
Figure 2 solve, and stored every number; here they are only tabulated and drawn.
"""
from __future__ import annotations

import matplotlib.ticker
import numpy as np
import pandas as pd

from odecore import paper, plots


def table_checks(record: dict) -> pd.DataFrame:
    """Algorithm 1's largest gradient error against each other method, per problem (float64)."""
    rows = []
    for problem, res in record["metrics"]["checks"].items():
        for ref, err in res.items():
            if isinstance(err, dict):
                rows.append({"problem": problem, "Algorithm 1 against": ref.replace("_", " "),
                             "max abs error": err["max_abs"], "max rel error": err["max_rel"]})
    return pd.DataFrame(rows)


def table_memory(record: dict) -> pd.DataFrame:
    """Peak MiB of one gradient, one row per number of solver steps, one column per method."""
    df = pd.DataFrame(record["metrics"]["memory"])
    return df.pivot(index="steps", columns="method", values="peak_mib").round(2)


def table_sweep(record: dict) -> pd.DataFrame:
    """The tolerance sweep, one row per solver and rtol, with the backward / forward NFE ratio."""
    df = pd.DataFrame(record["metrics"]["sweep"])
    df["backward/forward"] = df["nfe_backward"] / df["nfe_forward"]
    return df


def memory_slope(record: dict, method: str) -> float:
    """Least-squares slope of peak MiB against steps: MiB per extra solver step."""
    df = pd.DataFrame(record["metrics"]["memory"])
    df = df[df["method"] == method]
    return float(np.polyfit(df["steps"], df["peak_mib"], 1)[0])


def fig_memory(record: dict):
    """Peak memory (a) and time (b) of one gradient against the number of fixed solver steps; the
    legend below both panels, the long words in the panel titles, where they fit."""
    df = pd.DataFrame(record["metrics"]["memory"])
    fig, (ax, ax2) = plots.subplots(1, 2, width=plots.FULL_WIDTH / 2, height=3.1)
    labels = {"direct": "direct backprop", "adjoint": "torchdiffeq adjoint", "alg1": "Algorithm 1 (odecore)"}
    for name in labels:
        group = df[df["method"] == name]
        ax.plot(group["steps"], group["peak_mib"], "o-", color=plots.COLORS[name], label=labels[name])
        ax2.plot(group["steps"], group["time_s"], "o-", color=plots.COLORS[name], label=labels[name])
    for a in (ax, ax2):
        a.set(xscale="log", yscale="log", xlabel=f"solver steps ({record['config']['memory_method']}, fixed)")
    ax.set(ylabel="MiB", title="(a) peak memory of one gradient")
    ax2.set(ylabel="seconds", title="(b) time of one gradient, profiler on")
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncol=3)
    return fig


def fig_sweep(record: dict):
    """Gradient error against rtol (a), backward against forward NFE (b), and their ratio against rtol (c),
    per solver; one legend below the three panels, so each panel keeps its width for the data."""
    df = table_sweep(record)
    fig, (ax1, ax2, ax3) = plots.subplots(1, 3, width=plots.FULL_WIDTH / 3, height=2.9)
    colors = {"dopri5": plots.COLORS["dopri5"], "dopri5 + seminorm": plots.COLORS["seminorm"],
              "scipy LSODA": plots.COLORS["scipy"], "dopri5 (direct backprop)": plots.COLORS["direct"]}
    for solver, g in df.groupby("solver", sort=False):
        seminorm = solver == "dopri5 + seminorm"  # dashed and small, so an identical dopri5 curve shows
        kw = dict(color=colors[solver], label=solver, marker="." if seminorm else "o", ls="--" if seminorm else "-")
        ax1.plot(g["rtol"], g["grad_rel_error"], **kw)
        if solver != "dopri5 (direct backprop)":
            ax2.plot(g["nfe_forward"], g["nfe_backward"], **kw)
            ax3.plot(g["rtol"], g["backward/forward"], **kw)
    lim = [df["nfe_forward"].min() * 0.8, df["nfe_backward"].max() * 1.2]
    ax2.plot(lim, lim, "k:", lw=1, label="backward = forward")
    # the paper's "about half" is for its trained MNIST ODE-Net: drawn for reference, not a claim about this MLP
    ax2.plot(lim, [x * paper.BACKWARD_OVER_FORWARD_NFE for x in lim], "k--", lw=1, label="half (paper's ODE-Net)")
    ax3.axhline(paper.BACKWARD_OVER_FORWARD_NFE, color="k", ls="--", lw=1, label="half (paper's ODE-Net)")
    ax1.set(xscale="log", yscale="log", xlabel="rtol = atol", title="(a) gradient error (rel.)")
    ax2.set(xscale="log", yscale="log", xlabel="forward NFE", ylabel="backward NFE", title="(b) backward vs forward")
    ax3.set(xscale="log", xlabel="rtol = atol", title="(c) backward / forward NFE")
    for ax in (ax1, ax3):   # every other decade: seven labels do not fit a third of the column
        ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(numticks=4))
    ax1.yaxis.set_major_locator(matplotlib.ticker.LogLocator(numticks=5))
    for axis in (ax2.xaxis, ax2.yaxis):   # 10, 20, 50, 100: the NFE span one decade
        axis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        axis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    handles, labels = ax1.get_legend_handles_labels()
    for h, lab in zip(*ax2.get_legend_handles_labels()):
        if lab not in labels:
            handles.append(h); labels.append(lab)
    fig.legend(handles, labels, loc="outside lower center", ncol=3)
    return fig


def recompute_gap(record: dict) -> float:
    """Figure 2's largest difference between the forward solution and the state the augmented solve recomputes
    backwards, on the forward solve's output times (the backward one interpolated linearly between its own): what
    the top panel's two coinciding curves would show if they did not."""
    f = record["metrics"]["figure2"]
    t_f, z_f = np.asarray(f["t_forward"]), np.asarray(f["z_forward"])
    order = np.argsort(f["t_backward"])
    t_b, z_b = np.asarray(f["t_backward"])[order], np.asarray(f["z_backward"])[order]
    return float(max(np.abs(z_f[:, k] - np.interp(t_f, t_b, z_b[:, k])).max() for k in range(z_f.shape[1])))


def fig2(record: dict):
    """Figure 2: the forward solve, the state recomputed backwards, and the adjoint with its jumps; the
    direction of each solve in its panel's title, the legends beside the panels."""
    r = record["metrics"]["figure2"]
    fig, (ax1, ax2) = plots.subplots(2, 1, width=plots.FULL_WIDTH, height=2.2, sharex=True)
    for k, c in ((0, "C0"), (1, "C1")):
        ax1.plot(r["t_forward"], [z[k] for z in r["z_forward"]], color=c, label=f"forward $z_{k + 1}(t)$")
        ax1.plot(r["t_backward"], [z[k] for z in r["z_backward"]], color=c, ls=":", lw=2.5,
                 label=f"$z_{k + 1}(t)$ recomputed\nbackwards")
        ax1.plot(r["t_obs"][1:], [z[k] for z in r["z_obs"][1:]], "o", color=c)
        ax2.plot(r["t_backward"], [a[k] for a in r["a_backward"]], ".", ms=2, color=c,
                 label=f"$a_{k + 1}(t) = \\partial L/\\partial z_{k + 1}(t)$")
    for t in r["t_obs"][1:]:
        ax2.axvline(t, color="k", lw=0.5, alpha=0.4)
    ax1.set(ylabel="state", title="forward solve, left to right (dots: the observations)")
    ax2.set(ylabel="adjoint state", xlabel="t",
            title=r"adjoint solve, right to left, jumping by $\partial L/\partial z(t_i)$ at each observation")
    for ax in (ax1, ax2):
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), markerscale=4)
    return fig
