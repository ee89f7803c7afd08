"""Section 5's tables and figures (Table 2, Figures 6-10), from the stored records and arrays.

Figures 7-10 draw what `odecore.experiments.latent_ode` computed from the trained models when it made
the record (`spiral_arrays`, `poisson_arrays`); nothing here loads a model or solves an ODE.
"""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from odecore import paper, plots
from odecore.models.latent_ode import MODELS, NAMES
from odecore.tables import mean_sd, number, percent


def table2_frame(record: dict) -> pd.DataFrame:
    """Table 2's headline: the paper's RMSE and ours (mean ± sd over the seeds, which the caption counts) per
    model and n. The other readings of the same runs are `table2_detail`."""
    t2 = record["metrics"]["table2"]
    rows = []
    for n in sorted(t2["latent_ode"], key=int):
        row = {"observed": f"{n}/100"}
        for model in MODELS:
            c = t2[model][n]
            row[f"{NAMES[model]}: paper"] = paper.printed(c["paper"])   # as the paper prints it
            row[f"{NAMES[model]}: ours"] = mean_sd(c["values"])
        rows.append(row)
    return pd.DataFrame(rows)


def table2_detail(record: dict) -> pd.DataFrame:
    """The same runs read other ways, per n and model: RMSE inside the observed window, over a window that
    straddles its end, the median spiral's RMSE beyond it, and the headline RMSE on test spirals drawn
    from another data seed (the RNN's naive free run too)."""
    t2 = record["metrics"]["table2"]
    pm = lambda c, k: f"{c[k]:.3f} ± {c[k + '_std']:.3f}"  # noqa: E731
    rows = []
    for n in sorted(t2["latent_ode"], key=int):
        for model in MODELS:
            c = t2[model][n]
            rows.append({"observed": f"{n}/100", "model": NAMES[model], "inside the window": pm(c, "rmse_window"),
                         "straddling its end": pm(c, "rmse_straddle"), "median spiral": pm(c, "rmse_beyond_median"),
                         "new test spirals": c.get("independent")})
    return pd.DataFrame(rows)


def runs_frame(record: dict):
    """One row per sub-run: model, n, seed, the RMSEs, likelihood, time and NFE."""
    keep = ["model", "n", "seed", "rmse", "rmse_window", "rmse_straddle", "rmse_beyond_median", "rmse_naive",
            "test_loglik", "iterations", "train_time_s", "s_per_iter", "nfe_forward_final"]
    return pd.DataFrame([{k: r.get(k) for k in keep} for r in record["metrics"]["runs"]])


def fig6():
    """Figure 6 of the paper, the model, as a diagram: the encoder on the left, the latent solve and the
    decoder on the right; boxes, arrows and words placed so that none runs into another at 7 in wide."""
    from matplotlib.patches import FancyBboxPatch

    fig, ax = plots.subplots(1, 1, width=plots.FULL_WIDTH, height=3.0)
    ax.set_axis_off()
    ax.set_xlim(0, 10)
    ax.set_ylim(-0.1, 4)
    ax.grid(False)

    def box(x, y, w, h, text, color, size=9):
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.04", fc=color, ec="0.3", alpha=0.9))
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=size)

    def arrow(a, b, **kw):
        ax.annotate("", xy=b, xytext=a, arrowprops=dict(arrowstyle="->", color="0.2", lw=1.2, **kw))

    # observations at irregular times, read backwards by the RNN (gaps of 0.55 to 0.85: irregular, no box touches)
    ts = [0.25, 0.8, 1.6, 2.15, 3.0]
    ax.plot([0.05, 3.2], [0.6, 0.6], color="0.6", lw=0.8)
    for k, t in enumerate(ts):
        ax.plot(t, 0.6, "o", color="k", ms=5)
        ax.text(t, 0.22, f"$x_{{t_{k}}}$", ha="center", fontsize=10)
        box(t - 0.11, 1.2, 0.22, 0.3, "h", plots.COLORS["rnn"] + "55")
        arrow((t, 0.7), (t, 1.14))
    for k in range(len(ts) - 1, 0, -1):
        arrow((ts[k] - 0.16, 1.35), (ts[k - 1] + 0.16, 1.35))
    ax.text(1.6, -0.1, "observations at irregular times", ha="center", fontsize=9)
    ax.text(1.6, 3.3, "RNN encoder, run backwards in\ntime, also reads the time gaps", ha="center", fontsize=9)
    box(3.3, 1.8, 1.65, 0.55, r"$q(z_{t_0}) = \mathcal{N}(\mu, \sigma^2)$", "#dddddd")
    arrow((ts[0], 1.56), (3.24, 2.1), connectionstyle="arc3,rad=-0.3")
    # the latent trajectory: one solve from a sample of q, decoded inside the window and beyond it
    tt = np.linspace(0, 4.6, 200)
    zx, zy = 5.6 + 0.93 * tt, 2.55 + 0.45 * np.sin(1.6 * tt)
    ax.plot(zx[:130], zy[:130], color=plots.COLORS["latent_ode"], lw=2)
    ax.plot(zx[129:], zy[129:], color=plots.COLORS["latent_ode"], lw=2, ls="--")
    arrow((5.03, 2.1), (zx[0] - 0.08, zy[0] - 0.04))
    ax.text(5.12, 2.5, "sample", ha="center", va="bottom", fontsize=9)
    ax.text(zx[0], zy[0] + 0.3, r"$z_{t_0}$", ha="center", fontsize=10)
    ax.text(7.75, 3.55, r"ODESolve$(z_{t_0}, f, \theta_f, t_0, \ldots, t_M)$: one solve, any times",
            ha="center", fontsize=9)
    for k in (0, 25, 60, 80, 115, 150, 185):
        ax.plot(zx[k], zy[k], "o", color=plots.COLORS["latent_ode"], ms=4)
        arrow((zx[k], zy[k] - 0.08), (zx[k], 0.72))
        ax.plot(zx[k], 0.6, "s", color="#2ca02c" if k < 130 else "#ff7f0e", ms=5)
    ax.plot([5.4, 9.95], [0.6, 0.6], color="0.6", lw=0.8)
    ax.text(5.5, 1.1, "decoder", ha="right", fontsize=9)
    ax.text(6.9, 0.22, "reconstruction", ha="center", fontsize=9, color="#2ca02c")
    ax.text(9.2, 0.22, "extrapolation", ha="center", fontsize=9, color="#ff7f0e")
    ax.plot([zx[130]] * 2, [0.4, 3.1], color="0.5", ls=":", lw=1)
    ax.text(zx[130] + 0.06, 2.95, r"$t_N$", fontsize=10)
    ax.text(7.75, -0.1, "predictions at any times", ha="center", fontsize=9)
    plt.close(fig)
    return fig


def _draw_spiral(ax, truth: np.ndarray, x: np.ndarray, pred: np.ndarray, n_times: int, color: str, label: str) -> None:
    """One spiral: the noise-free truth, the observations, the reconstruction (solid) and extrapolation (dashed)."""
    ax.plot(*truth.T, color="0.75", lw=3, label="truth", zorder=0)
    ax.plot(*pred[:n_times].T, color=color, lw=1.6, label=f"{label}: reconstruction")
    ax.plot(*pred[n_times - 1:].T, color=color, lw=1.6, ls="--", label=f"{label}: extrapolation")
    ax.scatter(*x.T, s=8, color="k", zorder=3, label="observed")
    ax.set_aspect("equal")


def _turns_counter_clockwise(path: np.ndarray) -> bool:
    """Whether a 2-D path (T, 2) turns counter-clockwise about the origin (its signed swept area is positive)."""
    x, y = path[:, 0], path[:, 1]
    return float(np.sum(x[:-1] * np.diff(y) - y[:-1] * np.diff(x))) > 0


def fig8_errors(arrays: dict) -> str:
    """Each example spiral's RMSE beyond the window under both models, in words for Figure 8's caption: the examples
    are not picked, so either model may do better on them than Table 2's means say."""
    n, nt = int(arrays["fig8/n"]), int(arrays["n_times"])
    rmse = lambda pred, truth: float(np.sqrt(np.mean((pred[nt:] - truth[nt:]) ** 2)))  # noqa: E731
    rows = []
    for row, truth in enumerate(arrays["truth"]):
        rnn, lode = rmse(arrays["fig8/pred_rnn"][row], truth), rmse(arrays[f"fig10/{n}/pred"][row], truth)
        turn = "counter-clockwise" if _turns_counter_clockwise(truth) else "clockwise"
        rows.append(f"{turn}, RNN {number(rnn)} and latent ODE {number(lode)}")
    return "RMSE beyond the window on these spirals: " + "; ".join(rows) + "."


def fig8(record: dict, arrays: dict):
    """Figure 8: (a) RNN and (b) latent ODE on the example test spirals, one row each (the experiment
    takes the first counter-clockwise and the first clockwise spiral of the test split), and (c) the
    latent trajectories of the first test spirals of each direction, the row's direction in colour (its
    title's) and the other in grey, both rows on the same axes; one legend below."""
    n, nt = int(arrays["fig8/n"]), int(arrays["n_times"])
    k = len(arrays["examples"])
    fig, axes = plots.subplots(k, 3, width=plots.FULL_WIDTH / 3, height=2.35, squeeze=False)
    x = arrays[f"fig10/{n}/x"]
    colour = {True: "#2ca02c", False: "#9467bd"}   # counter-clockwise, clockwise
    latent, ccw = arrays["fig8/latent"], arrays["fig8/direction"] > 0
    for row in range(k):
        truth = arrays["truth"][row]
        _draw_spiral(axes[row, 0], truth, x[row], arrays["fig8/pred_rnn"][row], nt, plots.COLORS["rnn"], "RNN")
        _draw_spiral(axes[row, 1], truth, x[row], arrays[f"fig10/{n}/pred"][row], nt, plots.COLORS["latent_ode"],
                     "latent ODE")
        turn = _turns_counter_clockwise(truth)
        axes[row, 0].set_ylabel("counter-clockwise" if turn else "clockwise")
        axc = axes[row, 2]   # (c): the row's direction over the other one in grey, on shared limits
        for path, own in zip(latent, ccw == turn):
            axc.plot(path[:, 0], path[:, 1], color=colour[turn] if own else "0.8", lw=0.8, alpha=0.7,
                     zorder=2 if own else 1)
            if own:
                axc.plot(path[0, 0], path[0, 1], "o", color=colour[turn], ms=2.5, zorder=2)
        axc.set_title(f"{'(c) ' if row == 0 else ''}latent, {'counter-clockwise' if turn else 'clockwise'}",
                      color=colour[turn])
        axc.set_ylabel("main remaining axis")
    lo, hi = latent.reshape(-1, 2).min(0), latent.reshape(-1, 2).max(0)
    pad = 0.05 * (hi - lo)
    for axc in axes[:, 2]:
        axc.set(xlim=(lo[0] - pad[0], hi[0] + pad[0]), ylim=(lo[1] - pad[1], hi[1] + pad[1]))
    axes[-1, 2].set_xlabel("between-direction axis")
    axes[0, 0].set_title(f"(a) RNN, n = {n}")
    axes[0, 1].set_title(f"(b) latent ODE, n = {n}")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    h2, l2 = axes[0, 1].get_legend_handles_labels()
    order = [0, 3, 1, 2]   # truth, observed, RNN reconstruction and extrapolation, then the latent ODE's
    handles, labels = [handles[i] for i in order] + h2[1:3], [labels[i] for i in order] + l2[1:3]
    fig.legend(handles, labels, loc="outside lower center", ncol=3)
    plt.close(fig)
    return fig


def fig9(record: dict, arrays: dict):
    """Figure 9: decoded trajectories while one dimension of z_t0 varies (the others at a test posterior mean),
    and a last panel moving z_t0 on the line from a counter-clockwise spiral's posterior mean to a clockwise one's.
    Colour is the varied quantity; the two colour scales take the grid's last cell, so no cell is empty."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    paths, span = arrays["fig9/paths"], float(arrays["fig9/span"])
    dims, steps = len(paths) - 1, paths.shape[1]
    titles = [f"$z_{{t_0}}[{dim}]$ varied" for dim in range(dims)] + ["counter-clockwise → clockwise"]
    cols = math.ceil((len(paths) + 1) / 2)  # the panels and the colour scales wrap into two rows
    fig, axes = plots.subplots(2, cols, width=plots.FULL_WIDTH / cols, height=2.45)
    axes = axes.flatten()
    cmap = plt.get_cmap("coolwarm")
    for panel, (ax, title, path) in enumerate(zip(axes, titles, paths)):
        for s in range(steps):
            ax.plot(*path[s].T, color=cmap(s / (steps - 1)), lw=1.2)
            ax.plot(*path[s, 0], "o", color=cmap(s / (steps - 1)), ms=3)
        if panel < dims and steps % 2:   # the unchanged z_t0 (the middle of a symmetric span) in black, its way marked
            mid, at = path[steps // 2], 3 * len(path[steps // 2]) // 4
            ax.plot(*mid.T, color="k", lw=0.9, zorder=3)
            ax.annotate("", xy=mid[at + 1], xytext=mid[at], zorder=4,
                        arrowprops=dict(arrowstyle="-|>", color="k", lw=0.9, mutation_scale=9))
        ax.set_title(title)
        ax.set_aspect("equal")
    spec = axes[len(paths)].get_subplotspec()
    for ax in axes[len(paths):]:
        ax.remove()
    cells = spec.subgridspec(5, 1)
    scales = ((Normalize(-span, span), [-span, 0, span], None, r"added to $z_{t_0}[d]$"),
              (Normalize(0, 1), [0, 1], ["counter-clockwise", "clockwise"], "along the line (last panel)"))
    for cell, (norm, ticks, names, label) in zip((cells[1], cells[3]), scales):
        bar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), cax=fig.add_subplot(cell), orientation="horizontal",
                           ticks=ticks, label=label)
        if names:
            bar.ax.set_xticklabels(names)
            for text, ha in zip(bar.ax.get_xticklabels(), ("left", "right")):
                text.set_ha(ha)
        else:
            bar.ax.set_xticklabels([f"{t:+g}".replace("-", "\u2212") if t else "0" for t in ticks])
    plt.close(fig)
    return fig


def fig10(record: dict, arrays: dict):
    """Figure 10: latent ODE reconstructions of the same test spirals from 30, 50 and 100 observations."""
    counts, nt, k = [int(n) for n in arrays["counts"]], int(arrays["n_times"]), len(arrays["examples"])
    fig, axes = plots.subplots(k, len(counts), width=plots.FULL_WIDTH / len(counts), height=2.3, squeeze=False)
    for col, n in enumerate(counts):
        for row in range(k):
            _draw_spiral(axes[row, col], arrays["truth"][row], arrays[f"fig10/{n}/x"][row], arrays[f"fig10/{n}/pred"][row],
                         nt, plots.COLORS["latent_ode"], "latent ODE")
        axes[0, col].set_title(f"{n}/100 observed")
    for row in range(k):
        axes[row, 0].set_ylabel("counter-clockwise" if _turns_counter_clockwise(arrays["truth"][row]) else "clockwise")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(labels))
    plt.close(fig)
    return fig


def fig7(record: dict, arrays: dict):
    """Figure 7: learned intensity lambda(z(t)) against the true one, events as ticks, a few test sequences."""
    t = arrays["t"]
    fig, axes = plots.subplots(len(arrays["lam"]), 1, width=plots.FULL_WIDTH, height=1.6, sharex=True, squeeze=False)
    axes = axes[:, 0]
    for ax, lam, lam_true, events in zip(axes, arrays["lam"], arrays["lam_true"], arrays["events"]):
        events = events[~np.isnan(events)]
        ax.plot(t, lam_true, color="0.6", lw=2.5, label=r"true $\lambda(t)$")
        ax.plot(t, lam, color=plots.COLORS["latent_ode"], label=r"learned $\lambda(z(t))$")
        ax.plot(events, np.zeros(len(events)), "|", color="k", ms=12, mew=1.2, label="events")
        ax.set_ylabel("intensity")
    fig.legend(*axes[0].get_legend_handles_labels(), ncol=3, loc="outside lower center")   # below: no curve hidden
    axes[-1].set_xlabel("t")
    plt.close(fig)
    return fig


TRAINING_LINTHRESH = 10.0   # nats: fig_training's axis is linear between -10 and 10, logarithmic beyond


def fig_training(record: dict):
    """Training loss per epoch of every sub-run, one panel per n, one line per seed (latent ODE: -ELBO;
    RNN: NLL; both nats per spiral). The loss itself, on a symmetric log axis (linear within
    +-TRAINING_LINTHRESH), since the -ELBO falls below zero: each curve ends where its run ended."""
    runs = record["metrics"]["runs"]
    counts = sorted({r["n"] for r in runs})
    fig, axes = plots.subplots(1, len(counts), width=plots.FULL_WIDTH / len(counts), height=2.9, sharey=True,
                               squeeze=False)
    for ax, n in zip(axes[0], counts):
        for r in runs:
            if r["n"] == n:
                loss = np.array(r["loss_history"])
                ax.plot(np.arange(1, len(loss) + 1), loss, color=plots.COLORS[r["model"]], alpha=0.7, lw=1)
        ax.set_yscale("symlog", linthresh=TRAINING_LINTHRESH, linscale=1.0)   # 0 to 10 as wide as a decade
        ax.axhline(0, color="0.3", lw=0.6)
        ax.set(title=f"{n}/100 observed", xlabel="epoch")
    low, top = (f(f(r["loss_history"]) for r in runs) for f in (min, max))
    decades = lambda v: range(1, int(np.log10(v)) + 1) if v > 10 else range(0)  # noqa: E731
    ticks = [-(10.0 ** k) for k in reversed(decades(-low))] + [0] + [10.0 ** k for k in decades(top)]
    axes[0, 0].set_yticks(ticks, [f"{t:,.0f}".replace("-", "\u2212") for t in ticks])
    axes[0, 0].set_ylabel("loss (nats per spiral)")
    handles = [plt.Line2D([], [], color=plots.COLORS[m]) for m in MODELS]
    labels = {"latent_ode": "latent ODE: \u2212ELBO", "rnn": "RNN: negative log-likelihood"}   # the caption's minus
    fig.legend(handles, [labels.get(m, NAMES[m]) for m in MODELS], loc="outside lower center", ncol=len(MODELS))
    plt.close(fig)
    return fig


def uncovered_share(cover: dict) -> dict[str, float]:
    """From a "latent_ode_coverage" record, pooled over its runs: the share of test spirals whose
    extrapolation leaves the covered angles, their share of the squared beyond-window error, and the
    median per-spiral beyond RMSE on either side of the coverage edge."""
    inside, outside = [], []
    for r in cover["metrics"]["runs"]:
        edge = r["coverage"]["edge"]
        for theta0, e in zip(r["theta0"], r["per_spiral_beyond"]):
            (inside if theta0 <= edge else outside).append(e)
    sq_in, sq_out = sum(e * e for e in inside), sum(e * e for e in outside)
    return {"spirals": len(outside) / max(len(inside) + len(outside), 1),
            "squared_error": sq_out / max(sq_in + sq_out, 1e-30),
            "median_inside": float(np.median(inside)) if inside else float("nan"),
            "median_outside": float(np.median(outside)) if outside else float("nan")}


def inside_failures(cover: dict, factor: float = 5.0) -> str:
    """The runs of a "latent_ode_coverage" record that fail on test spirals inside the coverage edge too: per run, how
    many of its inside spirals read above `factor` times the pooled median inside (`uncovered_share`), in words. The
    runs with many such spirals are the band inside the edge in `fig_coverage` (a)."""
    limit = factor * uncovered_share(cover)["median_inside"]
    counts = []
    for r in cover["metrics"]["runs"]:
        inside = [e for theta0, e in zip(r["theta0"], r["per_spiral_beyond"]) if theta0 <= r["coverage"]["edge"]]
        counts.append((r["seed"], r["n"], sum(e > limit for e in inside), len(inside)))
    bad = [c for c in counts if c[2] > 0.1 * c[3]]
    if not bad:
        return (f"Inside the edge no run has more than a tenth of its spirals above {number(limit)} ({factor:g} times "
                "the median there).")
    rest = sum(c[2] for c in counts if c not in bad)
    per_seed = "; ".join(f"seed {seed}: " + ", ".join(f"{k} of {total} at n = {n}" for s_, n, k, total in bad if s_ == seed)
                         for seed in dict.fromkeys(c[0] for c in bad))
    fit = {(r["seed"], r["n"]): r["test_loglik"] for r in cover["metrics"]["runs"]}
    worst = [seed for seed in dict.fromkeys(c[0] for c in bad)
             if all(v >= fit[(seed, n)] for (s_, n), v in fit.items())]
    text = (f"Not every run extrapolates well inside the edge either: the spirals there that read above {number(limit)} "
            f"({factor:g} times the median inside) number, for {per_seed} (the band inside the edge in (a)), against "
            f"{rest} in all the other runs together.")
    for seed in worst:
        ns = sorted({n for s_, n in fit if s_ == seed})
        text += (f" Seed {seed}'s models also fit the test spirals worst at every n (test log-likelihood "
                 + ", ".join(f"{number(fit[(seed, n)])} at n = {n} against "
                             + " and ".join(number(v) for (s_, m), v in fit.items() if m == n and s_ != seed)
                             for n in ns) + ").")
    return text


def fig_coverage(record: dict, cover: dict):
    """Per test spiral, the latent ODE's RMSE beyond the window against its start angle: (a) the first
    design (training and test starts from one range), (b) the covered design; dotted, the coverage edge
    (the largest start angle whose extrapolation stays inside the angles the training observations reach)."""
    fig, axes = plots.subplots(1, 2, width=plots.FULL_WIDTH / 2, height=3.2, sharey=True)
    colors = dict(zip((30, 50, 100), ("#9ecae1", "#4292c6", "#08306b")))
    panels = (("(a) first design: one range of starts", cover["metrics"]["runs"], None),
              ("(b) covered: training starts widened", [r for r in record["metrics"]["runs"]
                                                              if r["model"] == "latent_ode"], record))
    for ax, (title, runs, rec) in zip(axes, panels):
        edges = []
        for r in runs:
            theta0 = r["theta0"] if rec is None else rec["metrics"]["test_theta0"]
            edge = (r["coverage"] if rec is None else rec["metrics"]["coverage"][str(r["n"])])["edge"]
            edges.append(edge)
            ax.scatter(theta0, r["per_spiral_beyond"], s=6, alpha=0.6, color=colors.get(r["n"], "k"),
                       label=f"n = {r['n']}, seed {r['seed']}")
        edge = min(edges)
        ax.axvline(edge, color="k", ls=":", lw=1.2, label="coverage edge")   # named in the legend, off the data
        ax.set(xlabel=r"test spiral's start angle $\theta_0$", yscale="log", title=title)
    axes[0].set_ylabel("RMSE beyond the window")
    handles, labels = axes[1].get_legend_handles_labels()
    keep = {lab.split(",")[0]: h for h, lab in zip(handles, labels)}
    axes[1].legend(keep.values(), keep.keys(), loc="upper left")
    plt.close(fig)
    return fig


def late_improvement(record: dict, epochs: int = 50) -> dict[str, float]:
    """Per model, the largest share of a sub-run's whole training-loss decrease (latent ODE: -ELBO,
    RNN: NLL; 5-epoch means at either end) that came in its last `epochs` epochs: how much the tail
    of the learning curve still moved. A ratio of decreases, since -ELBO crosses zero."""
    out = {}
    for model in MODELS:
        shares = []
        for r in record["metrics"]["runs"]:
            loss = np.array(r["loss_history"])
            if r["model"] == model and len(loss) > epochs + 5:
                end = loss[-5:].mean()
                shares.append((loss[-epochs - 5:-epochs].mean() - end) / (loss[:5].mean() - end))
        out[model] = float(max(shares)) if shares else float("nan")
    return out


def late_fall(record: dict, epochs: int = 50) -> dict[str, dict[int, float]]:
    """Per model and n, how far the training loss still fell in the last `epochs` epochs, in nats per spiral (5-epoch
    means, mean over the seeds): `late_improvement`'s share hides a fall that is small beside the first epochs' but
    not beside the loss it ends at."""
    out: dict[str, dict[int, list[float]]] = {}
    for r in record["metrics"]["runs"]:
        loss = np.array(r["loss_history"])
        if len(loss) > epochs + 5:
            out.setdefault(r["model"], {}).setdefault(int(r["n"]), []).append(
                float(loss[-epochs - 5:-epochs].mean() - loss[-5:].mean()))
    return {m: {n: float(np.mean(v)) for n, v in sorted(by_n.items())} for m, by_n in out.items()}


def fig_table2(record: dict):
    """Table 2 as a picture: each seed's headline RMSE (dots) and their mean and sd (bar) per model and n,
    the paper's number as a black cross."""
    y = "RMSE beyond the window"
    runs = pd.DataFrame([{"model": NAMES[r["model"]], "n": r["n"], y: r["rmse"]} for r in record["metrics"]["runs"]])
    reported = pd.DataFrame([{"model": NAMES[m], "n": n, y: v} for m in MODELS for n, v in paper.TABLE2[m].items()])
    fig, ax = plots.subplots(1, 1, width=5.2, height=3.2)
    plots.seed_spread(ax, runs, x="n", y=y, hue="model", palette={NAMES[m]: plots.COLORS[m] for m in MODELS},
                      paper_points=reported, dodge=0.4)
    ax.set(xlabel="observed times n (of 100)", ylim=(0, None))
    plt.close(fig)
    return fig


# --------------------------------------------------------------------------- Table 2's gap: data density

# How a reader sees the record's trainings: its keys stay ("headline" is Table 2's training on torchdiffeq's
# dopri5, "fast" the same training on lean_dopri5, the runs Table 2 shows), the page names them by what they are.
DENSITY_WORDS = {"headline": "Table 2 (dopri5)", "fast": "Table 2 (lean_dopri5)", "dense": "dense", "longer": "longer"}
# A seed is named as far from the others when its distance from their mean is more than OUTLIER_K times the
# record's typical seed sd (see `seed_outlier`).
OUTLIER_K = 3.0


def _say(ns) -> str:
    """'30', '30 and 50', '30, 50 and 100'."""
    ns = [str(n) for n in ns]
    return ", ".join(ns[:-1]) + (" and " if len(ns) > 1 else "") + (ns[-1] if ns else "")


def density_frame(design: dict, counts, summary: dict | None = None) -> pd.DataFrame:
    """The density test as a table, per n and training: its spirals and iterations (`design`, a
    "latent_ode_density" record's or `density_design`'s), and from the record's `summary` the RMSE beyond
    the window on Table 2's test spirals and on those of another data seed (mean ± sd over seeds) and the
    first's distance above the paper's number; "not yet run" where there is no summary. Trainings are named
    as the page names them (`DENSITY_WORDS`), not by the record's keys."""
    rows = []
    for n in counts:
        for variant, d in design.items():
            c = (summary or {}).get(variant, {}).get(str(n))
            rows.append({"observed": f"{n}/100",
                         "training": f"{DENSITY_WORDS.get(variant, variant)}: {d['n_train']} spirals",
                         "iterations": d["iterations"],
                         "RMSE": mean_sd(c["values"]) if c else "not yet run",
                         "new test spirals": mean_sd(c["independent_values"]) if c else "-",
                         "above the paper": percent(c["above_paper_pct"] / 100) if c else "-"})
    return pd.DataFrame(rows)


def typical_spread(summary: dict) -> float:
    """The record's typical seed sd: the median over its trainings and n of each one's seeds' sd (cells of at
    least two seeds), NaN when there is none. A median, so that one cell with a stray seed does not set it."""
    sds = [c["std"] for cells in summary.values() for c in cells.values() if len(c.get("values", [])) >= 2]
    return float(np.median(sds)) if sds else float("nan")


def seed_outlier(values, seeds, typical: float, k: float = OUTLIER_K) -> dict | None:
    """The seed far from the others, or None. Each seed's distance from the mean of the other seeds; the
    farthest is named when that distance is more than `k` times `typical` (`typical_spread`), and only with
    three or more seeds (with two, neither is the odd one).

    Why the record's typical sd and not the other seeds' own spread: with three seeds the other two's sd rests
    on two numbers and can be near zero by chance, so a seed one ordinary sd away would read as an outlier.

    Returns {"seed", "value", "others" (the other seeds' values), "others_mean", "distance"}.
    """
    values = [float(v) for v in values]
    if len(values) < 3 or not typical > 0:
        return None
    seeds = list(seeds) if seeds is not None else list(range(len(values)))
    dist = [abs(v - np.mean(values[:i] + values[i + 1:])) for i, v in enumerate(values)]
    i = int(np.argmax(dist))
    if dist[i] <= k * typical:
        return None
    others = values[:i] + values[i + 1:]
    return {"seed": seeds[i], "value": values[i], "others": others, "others_mean": float(np.mean(others)),
            "distance": float(dist[i])}


def density_verdicts(summary: dict) -> dict[str, dict]:
    """Per n (str): Table 2's training on dopri5 (the record's `headline`) with its mean and values; its
    training on lean_dopri5 (`fast`, when stored: `solver_agrees` when it is within the larger of the two
    seeds' sds of the dopri5 one); the baseline the other trainings are measured against (`baseline`: fast
    when stored, else the headline, i.e. the same solver; `base_mean`, `base_values`) and its gap to the paper;
    per other training the change of the mean RMSE against the baseline, the share of the baseline's gap that
    closes, its seeds' sd, and whether it closes the gap: a drop larger than that sd (`closes`), or a rise
    larger than it (`widens`).

    `equal_iterations` compares dense with longer, which train for as many iterations and differ only in the
    data: "lower" when dense's mean is below longer's by more than the larger of their seeds' sds, "higher"
    when above by more, else "same". `outliers`: per training, the seed far from its others (`seed_outlier`,
    against the record's `typical_spread`), where there is one."""
    typical = typical_spread(summary)
    out = {}
    for n, h in summary["headline"].items():
        fast = summary.get("fast", {}).get(n)
        base = fast or h
        gap = base["mean"] - base["paper"]
        row = {"headline": h["mean"], "headline_values": h["values"], "paper": h["paper"], "gap": gap,
               "baseline": "fast" if fast else "headline", "base_mean": base["mean"], "base_values": base["values"],
               "base_iterations": base.get("iterations"), "variants": {}, "outliers": {}}
        if fast:
            row["fast_values"] = fast["values"]
            row["train_min"] = (h.get("train_min"), fast.get("train_min"))
            row["solver_agrees"] = abs(fast["mean"] - h["mean"]) <= max(fast["std"], h["std"])
        for variant, cells in summary.items():
            if n not in cells:
                continue
            c = cells[n]
            odd = seed_outlier(c["values"], c.get("seeds"), typical)
            if odd:
                row["outliers"][variant] = odd
            if variant in ("headline", "fast"):
                continue
            drop = base["mean"] - c["mean"]
            row["variants"][variant] = {"mean": c["mean"], "values": c["values"], "drop": drop, "spread": c["std"],
                                        "iterations": c.get("iterations"),
                                        "share": drop / gap if gap > 0 else float("nan"),
                                        "closes": gap > 0 and drop > c["std"], "widens": -drop > c["std"]}
        d, lo = row["variants"].get("dense"), row["variants"].get("longer")
        if d and lo:
            diff, spread = d["mean"] - lo["mean"], max(d["spread"], lo["spread"])
            row["equal_iterations"] = {"difference": diff, "spread": spread,
                                       "says": "lower" if -diff > spread else "higher" if diff > spread else "same"}
        out[n] = row
    return out


def density_solver_clause(summary: dict) -> str:
    """Table 2 (dopri5) against Table 2 (lean_dopri5), as the end of the sentence that introduces the first: the
    same training on another solver, and whether the two agree to within their seeds' spread (the larger sd) at
    every n; "" without the lean_dopri5 runs."""
    verdicts = {n: v for n, v in density_verdicts(summary).items() if "fast_values" in v}
    if not verdicts:
        return ""
    agree = [n for n, v in verdicts.items() if v["solver_agrees"]]
    if len(agree) == len(verdicts):
        how = "agree to within their seeds' spread at every n"
    elif not agree:
        how = "differ by more than their seeds' spread at every n"
    else:
        how = (f"agree to within their seeds' spread at n = {_say(agree)}, not at "
               f"n = {_say([n for n in verdicts if n not in agree])}")
    return f"the two differ only in the solver and {how}."


def _outlier_words(variant: str, odd: dict, against: tuple[str, float] | None = None) -> str:
    """'One seed of dense is far from its others: seed 0 reads 0.233 against 0.153 and 0.154 (without it, dense
    reads 0.153, against longer's 0.143).' `against`: the training it is compared with at equal iterations."""
    name = DENSITY_WORDS.get(variant, variant)
    vs = f", against {DENSITY_WORDS.get(against[0], against[0])}'s {number(against[1])}" if against else ""
    return (f"One seed of {name} is far from its others: seed {odd['seed']} reads {number(odd['value'])} against "
            f"{_say([number(x) for x in odd['others']])} (without it, {name} reads {number(odd['others_mean'])}{vs}).")


def _training_words(variant: str, c: dict, base_iterations) -> str:
    """A training as the per-n sentence names it, with its iterations where the summary stores them."""
    it = c.get("iterations")
    if variant == "dense":
        iters = (f"for {it:,} iterations against Table 2's {base_iterations:,}" if it and base_iterations
                 else "for as many iterations as longer")
        return f"dense (as many spirals per radian as the first design had, {iters})"
    if variant == "longer":
        return f"longer (Table 2's spirals for {f'{it:,} iterations' if it else 'as many iterations as dense'})"
    return DENSITY_WORDS.get(variant, variant)


def density_conclusion(summary: dict) -> str:
    """What the density test supports, over the n where Table 2's training is above the paper, as sentences that
    stand alone (the chapter's summary repeats them; `density_sentence` ends with them after "So"). Two
    comparisons, each changing one thing: longer against Table 2's training (the length: more iterations on the
    same spirals; does it close the gap?) and dense against longer (the data, at equal iterations: does dense
    read lower by more than the seeds' sd?). Dense against Table 2's training changes both at once, so its gain
    there is attributed to the data only where dense also beats longer."""
    verdicts = {n: v for n, v in density_verdicts(summary).items() if v["gap"] > 0}
    if not verdicts:
        return ""
    ns = list(verdicts)
    longer = [n for n in ns if verdicts[n]["variants"].get("longer", {}).get("closes", False)]
    compared = [n for n in ns if "equal_iterations" in verdicts[n]]
    helps = [n for n in compared if verdicts[n]["equal_iterations"]["says"] == "lower"]
    dense_closes = [n for n in ns if verdicts[n]["variants"].get("dense", {}).get("closes", False)]
    every = lambda sub: "at every n" if len(sub) == len(ns) else f"at n = {_say(sub)}"  # noqa: E731

    length = ("More iterations on the same spirals (longer, with the learning rate's decay stretched over them) close "
              f"the gap {every(longer) if longer else 'at no n'}")
    if not compared:
        return f"{length}."
    if not helps:
        data = (f"at equal iterations, more spirals per radian do not help {'beyond that' if longer else 'either'} "
                "(dense reads no lower than longer at any n)")
    else:
        data = (f"at equal iterations, more spirals per radian lower the RMSE further {every(helps)} (dense reads "
                "below longer by more than their seeds' sd)")
    text = f"{length}; {data}."
    if dense_closes and not helps:
        its = [verdicts[n]["variants"]["dense"].get("iterations") for n in dense_closes]
        base = [verdicts[n].get("base_iterations") for n in dense_closes]
        extra = (f" ({its[0]:,} against {base[0]:,})" if its[0] and base[0]
                 and len(set(its)) == 1 and len(set(base)) == 1 else "")
        says = {verdicts[n].get("equal_iterations", {}).get("says") for n in dense_closes}
        gains = ("more" if says == {"higher"} else "as much, to within their seeds' sd" if says == {"same"}
                 else "at least as much, to within their seeds' sd")
        text += (f" What dense gains over Table 2's training {every(dense_closes)} comes with its extra "
                 f"iterations{extra}: longer, trained for as many, gains {gains}.")
    if len(longer) == len(ns) and not helps:
        lead = "The gap is the training's length, not the data's density"
    elif len(helps) == len(compared) and not longer:
        lead = "The gap is the training data's density, not the training's length"
    elif len(helps) == len(compared) and len(longer) == len(ns):
        lead = "Both the data's density and the training's length matter"
    else:
        lead = "Neither the data's density nor the training's length alone explains the gap at every n"
    return f"{lead}. {text}"


def density_sentence(summary: dict) -> str:
    """What the density test shows, from a "latent_ode_density" record's summary: per n, how far Table 2's
    training (on lean_dopri5 when stored) is above the paper, which training closes how much of that gap (a
    training whose RMSE drops by less than its seeds' sd does not close it), how dense and longer compare at
    equal iterations, and any seed far from its others (`seed_outlier`); then `density_conclusion`."""
    out = []
    for n, v in density_verdicts(summary).items():
        gap = v["base_mean"] - v["paper"]
        where = (f"{percent(gap / v['paper'])} above" if gap > 0 else "at or below")
        text = (f"At n = {n} Table 2's latent ODE reads {mean_sd(v['base_values'])}, {where} the paper's "
                f"{number(v['paper'], 4)}.")
        pair = {"dense": "longer", "longer": "dense"} if "equal_iterations" in v else {}
        odd = "".join(" " + _outlier_words(k, o, (pair[k], v["variants"][pair[k]]["mean"]) if k in pair else None)
                      for k, o in v["outliers"].items())
        if v["gap"] <= 0:
            out.append(f"{text} There is no gap to close.{odd}")
            continue
        parts = []
        for variant, c in v["variants"].items():
            says = _training_words(variant, c, v["base_iterations"])
            if c["closes"] and c["share"] >= 1:
                parts.append(f"{says} closes all of it ({mean_sd(c['values'])}, at or below the paper's)")
            elif c["closes"]:
                parts.append(f"{says} closes {percent(c['share'])} ({mean_sd(c['values'])})")
            elif c["widens"]:
                parts.append(f"{says} does not close it: its RMSE is higher ({mean_sd(c['values'])})")
            else:
                parts.append(f"{says} does not close it ({mean_sd(c['values'])}, a change smaller than its seeds' sd)")
        text += f" Of that gap, {'; '.join(parts)}."
        eq = v.get("equal_iterations")
        if eq:
            side = "above" if eq["difference"] > 0 else "below"
            text += (f" At equal iterations dense reads {side} longer by "
                     f"{'less' if eq['says'] == 'same' else 'more'} than their seeds' sd.")
        out.append(text + odd)
    conclusion = density_conclusion(summary)
    if conclusion:
        out.append(f"So {conclusion[0].lower()}{conclusion[1:]}")
    return " ".join(out)
