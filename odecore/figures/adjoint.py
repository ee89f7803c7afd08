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
    """Peak memory (left) and time (right) of one gradient against the number of fixed solver steps."""
    df = pd.DataFrame(record["metrics"]["memory"])
    fig, (ax, ax2) = plots.subplots(1, 2, width=3.8)
    labels = {"direct": "direct backprop", "adjoint": "torchdiffeq adjoint", "alg1": "Algorithm 1 (odecore)"}
    for name, group in df.groupby("method"):
        ax.plot(group["steps"], group["peak_mib"], "o-", color=plots.COLORS[name], label=labels[name])
        ax2.plot(group["steps"], group["time_s"], "o-", color=plots.COLORS[name], label=labels[name])
    for a in (ax, ax2):
        a.set_xscale("log")
        a.set_xlabel(f"solver steps ({record['config']['memory_method']}, fixed)")
    ax.set_yscale("log")
    ax.set_ylabel("peak memory of one gradient (MiB)")
    ax2.set_ylabel("time of one gradient (s, profiler on)")
    ax2.set_yscale("log")
    ax.legend()
    fig.suptitle(f"memory against depth  [{plots.caption_tag(record)}]", fontsize=9)
    return fig


def fig_sweep(record: dict):
    """Gradient error against rtol, backward against forward NFE, and their ratio against rtol, per solver."""
    df = table_sweep(record)
    fig, (ax1, ax2, ax3) = plots.subplots(1, 3, width=3.4)
    colors = {"dopri5": plots.COLORS["dopri5"], "dopri5 + seminorm": plots.COLORS["seminorm"],
              "scipy LSODA": plots.COLORS["scipy"], "dopri5 (direct backprop)": plots.COLORS["direct"]}
    for solver, g in df.groupby("solver", sort=False):
        seminorm = solver == "dopri5 + seminorm"  # dashed and small, so an identical dopri5 curve shows
        kw = dict(color=colors[solver], label=solver, marker="." if seminorm else "o", ls="--" if seminorm else "-")
        ax1.plot(g["rtol"], g["grad_rel_error"], **kw)
        if solver != "dopri5 (direct backprop)":
            ax2.plot(g["nfe_forward"], g["nfe_backward"], **kw)
            ax3.plot(g["rtol"], g["backward/forward"], **kw)
    ax1.set(xscale="log", yscale="log", xlabel="rtol = atol", ylabel="relative gradient error")
    lim = [df["nfe_forward"].min() * 0.8, df["nfe_backward"].max() * 1.2]
    ax2.plot(lim, lim, "k:", lw=1, label="backward = forward")
    ax2.plot(lim, [x * paper.BACKWARD_OVER_FORWARD_NFE for x in lim], "k--", lw=1, label="paper: half")
    ax2.set(xscale="log", yscale="log", xlabel="forward NFE", ylabel="backward NFE")
    for axis in (ax2.xaxis, ax2.yaxis):
        axis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax3.axhline(paper.BACKWARD_OVER_FORWARD_NFE, color="k", ls="--", lw=1)
    ax3.set(xscale="log", xlabel="rtol = atol", ylabel="backward / forward NFE")
    ax1.legend(fontsize=7)
    ax2.legend(fontsize=7)
    fig.suptitle(f"adjoint accuracy and cost against tolerance  [{plots.caption_tag(record)}]", fontsize=9)
    return fig


def fig2(record: dict):
    """Figure 2: the forward solve, the state recomputed backwards, and the adjoint with its jumps."""
    r = record["metrics"]["figure2"]
    fig, (ax1, ax2) = plots.subplots(2, 1, width=6.5, height=2.2, sharex=True)
    for k, c in ((0, "C0"), (1, "C1")):
        ax1.plot(r["t_forward"], [z[k] for z in r["z_forward"]], color=c, label=f"forward z{k + 1}(t)")
        ax1.plot(r["t_backward"], [z[k] for z in r["z_backward"]], color=c, ls=":", lw=2.5,
                 label=f"z{k + 1}(t) recomputed backwards")
        ax1.plot(r["t_obs"][1:], [z[k] for z in r["z_obs"][1:]], "o", color=c)
        ax2.plot(r["t_backward"], [a[k] for a in r["a_backward"]], ".", ms=2, color=c, label=f"a{k + 1}(t) = dL/dz{k + 1}(t)")
    for t in r["t_obs"][1:]:
        ax2.axvline(t, color="k", lw=0.5, alpha=0.4)
    ax1.set_ylabel("state")
    ax2.set_ylabel("adjoint state")
    ax2.set_xlabel("t   (forward: left to right; adjoint solve: right to left, jumping by dL/dz(t_i) at each observation)")
    ax1.legend(fontsize=7, ncol=2)
    ax2.legend(fontsize=7)
    return fig
