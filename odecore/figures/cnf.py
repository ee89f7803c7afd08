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


def spread(sd_a: float, sd_b: float) -> float:
    """The seeds' combined sd of a difference of two means (a missing sd, from one seed, counts as 0): a gap
    smaller than this is one the seeds cannot tell from noise. The one rule every flow comparison uses."""
    return float(np.hypot(*np.nan_to_num(np.asarray([sd_a, sd_b], float))))


def cnf_against_nf(density: dict, nf_iterations: int | None = None):
    """Figure 4's claim per target: the largest CNF's and the largest NF's mean final KL and sd over seeds, and
    whether the CNF matches or beats the NF (its KL not above the NF's by more than the seeds' combined sd) and
    whether it is ahead (below the NF's by more than that). The NF at `nf_iterations`, by default the profile's
    budget (the paper's in `full`); targets without a finished run of either are left out."""
    cfg = density["config"]
    tab = density_table(density).set_index(["task", "kind", "size", "iterations"])
    rows = []
    for t in cfg["targets"]:
        cnf_key = (t, "cnf", max(cfg["cnf_units"]), cfg["cnf_iterations"])
        nf_key = (t, "nf", max(cfg["nf_layers"]), nf_iterations or cfg["nf_iterations"])
        if nf_key not in tab.index or cnf_key not in tab.index:
            continue
        (cnf, cnf_sd), (nf, nf_sd) = (tab.loc[k, ["kl_mean", "kl_std"]] for k in (cnf_key, nf_key))
        gap = spread(cnf_sd, nf_sd)
        rows.append({"target": t, "cnf": float(cnf), "cnf_sd": float(cnf_sd), "nf": float(nf), "nf_sd": float(nf_sd),
                     "nf_seeds": int(tab.loc[nf_key, "seeds"]), "spread": gap, "lower": bool(cnf < nf),
                     "matches": bool(cnf <= nf + gap), "ahead": bool(cnf < nf - gap)})
    return pd.DataFrame(rows, columns=["target", "cnf", "cnf_sd", "nf", "nf_sd", "nf_seeds", "spread", "lower", "matches",
                                       "ahead"])


def cnf_against_nf_sentence(vs: pd.DataFrame) -> str:
    """Figure 4's claim in words from `cnf_against_nf`: on how many targets the CNF matches or beats the NF, where
    it is ahead or behind by more than the seeds' combined sd, and where the two are within it."""
    if vs.empty:
        return "No target has a finished run to compare yet."
    say = lambda rows: ", ".join(rows.target)   # noqa: E731
    ahead, behind, within = vs[vs.ahead], vs[~vs.matches], vs[vs.matches & ~vs.ahead]
    parts = [f"the CNF matches or beats the NF on {int(vs.matches.sum())} of {len(vs)} targets"] if len(vs) > 1 else []
    if len(ahead):
        parts.append(f"it is ahead by more than the seeds' combined sd on {say(ahead)}")
    if len(within):
        it = "it" if len(ahead) else "the seeds' combined sd"
        parts.append(f"the two are within {it} on {say(within)}")
    for r in within[~within.lower].itertuples():   # within the spread, but the NF's mean the lower: say by how much
        parts.append(f"on {r.target} the NF's mean is the lower, KL {tables.number(r.nf)} against the CNF's "
                     f"{tables.number(r.cnf)}, by less than the seeds' combined sd of {tables.number(r.spread)}")
    for r in behind.itertuples():
        parts.append(f"on {r.target} the CNF is behind, KL {tables.number(r.cnf)} against the NF's "
                     f"{tables.number(r.nf)} ({r.nf_seeds} seed{'s' if r.nf_seeds > 1 else ''}), by more "
                     f"than the seeds' combined sd of {tables.number(r.spread)}")
    text = "; ".join(parts)
    return text[0].upper() + text[1:] + "."


def mle_gap(record: dict, task: str) -> tuple[float, float, int] | None:
    """Figure 5: the CNF's mean test log-likelihood minus the NF's on `task`, the seeds' combined sd and the NF's
    seed count; None if either flow has no run on it."""
    ll = mle_summary(record).set_index(["task", "kind"])
    if (task, "nf") not in ll.index or (task, "cnf") not in ll.index:
        return None
    nf, cnf = ll.loc[(task, "nf")], ll.loc[(task, "cnf")]
    return float(cnf.ll_mean - nf.ll_mean), spread(nf.ll_std, cnf.ll_std), int(nf.seeds)


def mle_summary(record: dict):
    """Test log-likelihood (nats per held-out point) per data set and model: mean, std, min and max over
    seeds, the seed count, and the mean training time of one run. Figure 5's numbers, wherever shown."""
    df = pd.DataFrame([r for r in record["metrics"]["runs"] if "test_loglik" in r])
    out = (df.groupby(["task", "kind", "size"], sort=False)
           .agg(ll_mean=("test_loglik", "mean"), ll_std=("test_loglik", "std"), ll_min=("test_loglik", "min"),
                ll_max=("test_loglik", "max"), seeds=("seed", "count"), train_time_s=("train_time_s", "mean"))
           .reset_index())
    out["ll_std"] = out["ll_std"].where(out["seeds"] > 1)
    return out


def mle_table(record: dict):
    """Figure 5's table: per data set and model the test log-likelihood as mean ± sd over the seeds (the
    seed count in the caption) and the training time of one run."""
    runs = pd.DataFrame([r for r in record["metrics"]["runs"] if "test_loglik" in r])
    rows = []
    for r in mle_summary(record).itertuples():
        lls = runs[(runs.task == r.task) & (runs.kind == r.kind) & (runs["size"] == r.size)]["test_loglik"]
        rows.append({"data set": r.task.replace("_", " ").title(),
                     "model": f"CNF, M={r.size}" if r.kind == "cnf" else f"NF, K={r.size} planar layers",
                     "test log-likelihood": tables.mean_sd(lls), "train time per run (min)": r.train_time_s / 60})
    return pd.DataFrame(rows)


def solver_change(old: dict, new: dict) -> str:
    """A sentence: the runs of `new` that an earlier record (`old`, the one it replaced) also trained (same
    model, data and seed), whether they read the same to three digits, and how far the others moved against the
    sd of the new record's seeds. Empty when the two records share no run."""
    before = {(r["task"], r["kind"], r["seed"]): r for r in old["metrics"]["runs"] if "test_loglik" in r}
    sd = mle_summary(new).set_index(["task", "kind"])["ll_std"]
    same, moved = [], []
    for r in new["metrics"]["runs"]:
        was = before.get((r["task"], r["kind"], r["seed"]))
        if "test_loglik" not in r or was is None:
            continue
        name = f"{r['task'].replace('_', ' ').title()} {r['kind'].upper()} (seed {r['seed']})"
        if tables.number(was["test_loglik"]) == tables.number(r["test_loglik"]):
            same.append(name)
            continue
        why = "" if r.get("method") else ", whose layers now run as one batched computation"
        s = sd.get((r["task"], r["kind"]))
        within = "" if s is None or np.isnan(s) else f", {'within' if abs(r['test_loglik'] - was['test_loglik']) <= s else 'beyond'} " \
            f"the seeds' sd of {tables.number(s)}"
        moved.append(f"{name}{why}, from {tables.number(was['test_loglik'])} to {tables.number(r['test_loglik'])}{within}")
    if not same and not moved:
        return ""
    solver = old.get("config", {}).get("method")
    text = f"The earlier training{f' on {solver}' if solver else ''} gave "
    if same:
        text += f"the same test log-likelihood to three digits for {', '.join(same)}"
    if moved:
        text += ("; " if same else "") + "it differs for " + "; ".join(moved)
    return text + "."


def density_solver_change(old: dict, new: dict) -> str:
    """A sentence: Figure 4's CNF settings (target, M, iterations, variant) that an earlier record (`old`, the one `new`
    replaced) also trained, whether each mean KL moved by more than the seeds' combined sd of the two trainings, and
    the claim's count of targets then and now. Empty when the two records share no CNF run."""
    def groups(record: dict) -> dict[tuple, list[float]]:
        out: dict[tuple, list[float]] = {}
        for key in ("runs", "cnf_variants"):
            for r in record["metrics"].get(key, []):
                if r.get("kind") == "cnf" and "kl" in r:
                    out.setdefault((r["task"], r["size"], r["iterations"], r.get("variant", "")), []).append(r["kl"])
        return out

    before, after = groups(old), groups(new)
    shared = [k for k in after if k in before]
    if not shared:
        return ""
    moved, single = [], []
    for key in shared:
        a, b = np.asarray(before[key]), np.asarray(after[key])
        task, size, iterations, variant = key
        name = f"{task}, M = {size}, {iterations:,} it.{f' ({variant})' if variant else ''}"
        if min(len(a), len(b)) < 2:      # no spread to judge a change by: say both numbers
            single.append(f"{name}, {tables.number(a.mean())} then and {tables.number(b.mean())} now")
            continue
        sd = spread(a.std(ddof=1), b.std(ddof=1))
        if abs(b.mean() - a.mean()) > sd:
            moved.append(f"{name}, from {tables.number(a.mean())} to {tables.number(b.mean())}, combined sd "
                         f"{tables.number(sd)}")
    judged = len(shared) - len(single)
    solver = old.get("config", {}).get("method", "dopri5")
    text = (f"The earlier training on {solver} had {len(shared)} of this record's CNF settings (target, M, iterations, "
            "variant)")
    if judged:
        text += (f"; the mean KL over seeds moved by more than the two trainings' combined sd on {len(moved)} of the "
                 f"{judged} with several seeds on both sides ({'; '.join(moved)})" if moved else
                 f"; on {'each' if judged > 1 else 'the one'} with several seeds on both sides the mean KL over seeds "
                 "moved by no more than the two trainings' combined sd")
    if single:
        text += f"; with one seed on a side, {'; '.join(single)}"
    then, now = cnf_against_nf(old), cnf_against_nf(new)
    if len(then) and len(now):
        text += (f". The CNF matched or beat the NF on {int(then.matches.sum())} of {len(then)} targets then and on "
                 f"{int(now.matches.sum())} of {len(now)} now")
    return text + "."


def failures(record: dict) -> list[dict]:
    return [r for r in record["metrics"]["runs"] + record["metrics"].get("cnf_variants", []) if "failed" in r]


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


NUDGE = 2 ** 0.2   # Figure 4 (d) draws the longer CNF this factor right of its M and the shorter NF as far left of its K


def figure4d(record: dict):
    """Figure 4 (d): final KL(q || p) against K (NF) and M (CNF), one panel per target; lines join
    the means over seeds, error bars span the seeds (min to max) where a target has several, dots are
    single seeds; a star marks a CNF trained for long_iterations (the mean over its seeds), a dotted line the NF at the
    shorter budget (short_nf_iterations)."""
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
        if len(longs):   # the mean over its seeds, with a bar from the lowest to the highest where it has several
            ax.errorbar(longs["size"] * NUDGE, longs["kl_mean"], yerr=[longs["kl_mean"] - longs["kl_min"],
                        longs["kl_max"] - longs["kl_mean"]], fmt="*", ms=12, capsize=3, color=plots.COLORS["cnf"],
                        label=f"CNF ({cfg['long_iterations']:,} Adam it.)")
        shorter = tab[(tab.task == target) & (tab.kind == "nf") & (tab.iterations == cfg["short_nf_iterations"])]
        if len(shorter):   # the labelled shorter NF budget, means over seeds
            ax.plot(shorter["size"] / NUDGE, shorter["kl_mean"], "o:", ms=3, lw=1, alpha=0.7, color=plots.COLORS["nf"],
                    label=f"NF ({cfg['short_nf_iterations']:,} RMSprop it.)")
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
    fig.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 2), fontsize=8)   # fits the column
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


# ----------------------------------------------------------------------------------- the NF's two budgets
def run_kls(density: dict):
    """kls(target, kind, size, iterations): the final KL of every seed's run of that flow (indexed by seed), for
    mean ± sd in a table."""
    runs = pd.DataFrame([r for r in density["metrics"]["runs"] if "kl" in r])
    return lambda t, kind, size, n: runs[(runs.task == t) & (runs.kind == kind) & (runs["size"] == size)
                                         & (runs.iterations == n)].set_index("seed")["kl"]


def nf_budgets_table(density: dict) -> pd.DataFrame:
    """Per target and NF budget (the profile's, then the shorter one): the largest NF's final KL and the largest CNF's
    (mean ± sd over seeds), and the CNF's standing against that NF by `cnf_against_nf`'s rule."""
    cfg = density["config"]
    big_nf, big_cnf = max(cfg["nf_layers"]), max(cfg["cnf_units"])
    kls = run_kls(density)
    budgets = [cfg["nf_iterations"]] + ([cfg["short_nf_iterations"]] if cfg["short_nf_iterations"] else [])
    against = {n: cnf_against_nf(density, n).set_index("target") for n in budgets}
    rows = []
    for t in cfg["targets"]:
        for n in budgets:
            vs = against[n].loc[t] if t in against[n].index else None
            rows.append({"target": t, "NF iterations": f"{n:,}", "NF": tables.mean_sd(kls(t, "nf", big_nf, n)),
                         "CNF": tables.mean_sd(kls(t, "cnf", big_cnf, cfg["cnf_iterations"])),
                         "CNF against NF": "-" if vs is None else "ahead" if vs.ahead else
                         "within the seeds' sd" if vs.matches else "behind"})
    return pd.DataFrame(rows)


# The settings of the CNF the paper leaves open that no run here changes.
UNTESTED = "the integration time, the form of the hypernetwork, the solver's tolerance"


def _against_nf(tab: pd.DataFrame, cfg: dict, target: str, size: int, after: float,
                before: float | None = None, after_sd: float = np.nan) -> dict | None:
    """A change to Figure 4's CNF with M = `size` (trained for longer, or with a setting changed; `after` its KL, the
    mean over its seeds) against the CNF at the profile's budget (mean and sd over its seeds) and the NF with K = M
    layers at the profile's NF budget, by `spread`'s rule, the change's own sd where it has several seeds
    (`after_sd`), else the CNF seeds' standing in. `before` is the KL the change is measured from (the CNF's mean unless
    given). `behind`: the CNF's mean behind the NF; `lower`, `higher`: `after` from `before` beyond the CNF seeds' sd
    (combined with the change's own); `share`: the part of `before`'s gap to the NF the change closes (where behind);
    `matches`: `after` within the combined sd of the change and the NF, or ahead. None while a run is missing."""
    cnf_key, nf_key = (target, "cnf", size, cfg["cnf_iterations"]), (target, "nf", size, cfg["nf_iterations"])
    if cnf_key not in tab.index or nf_key not in tab.index:
        return None
    mean, sd = (float(v) for v in tab.loc[cnf_key, ["kl_mean", "kl_std"]])
    nf, nf_sd = (float(v) for v in tab.loc[nf_key, ["kl_mean", "kl_std"]])
    own = sd if np.isnan(after_sd) else after_sd       # the change's sd, the CNF seeds' standing in for one run
    before, gap, noise = mean if before is None else before, spread(sd, nf_sd), spread(sd, 0.0 if np.isnan(after_sd) else after_sd)
    behind = mean > nf + gap
    return {"target": target, "size": size, "mean": mean, "sd": sd, "seeds": int(tab.loc[cnf_key, "seeds"]),
            "before": before, "after": after, "after_sd": after_sd, "nf": nf, "nf_sd": nf_sd,
            "nf_seeds": int(tab.loc[nf_key, "seeds"]), "spread": gap, "behind": behind, "lower": after < before - noise,
            "higher": after > before + noise, "share": (before - after) / (before - nf) if behind and before > nf else np.nan,
            "matches": after <= nf + spread(own, nf_sd)}


AGAINST_NF = ["target", "size", "seed", "mean", "sd", "seeds", "before", "after", "after_sd", "nf", "nf_sd",
              "nf_seeds", "spread", "behind", "lower", "higher", "share", "matches"]


def _kl_against(r, after: str, before: str) -> str:
    """'on U2 KL <after> against 0.0300 <before> and the NF's 0.0120' for a row of `_against_nf`."""
    return f"on {r.target} KL {after} against {tables.number(r.before)} {before} and the NF's {tables.number(r.nf)}"


def _and(names) -> str:
    """'U1', 'U1 and U2', 'U1, U2 and U3'."""
    names = list(dict.fromkeys(names))
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def long_cnf_against_nf(density: dict) -> pd.DataFrame:
    """Figure 4's test of the CNF's budget: each CNF of `long_cnf` trained for long_iterations (more than the
    profile's CNF budget), its KL the mean over the seeds the profile names, as `_against_nf` (measured from the CNF's
    mean at the budget: the longer run is a training of its own). `long_seeds`, `kls`: those seeds and their KLs, `n`
    how many, `seed` the first. A target is left out until all its seeds have finished; empty when the profile trains no
    longer CNF."""
    cfg = density["config"]
    columns = AGAINST_NF + ["n", "long_seeds", "kls"]
    if cfg["long_iterations"] <= cfg["cnf_iterations"]:
        return pd.DataFrame([], columns=columns)
    tab = density_table(density).set_index(["task", "kind", "size", "iterations"])
    kls_of = run_kls(density)
    rows = []
    for target, size, seeds in cfg["long_cnf"]:
        kls = kls_of(target, "cnf", size, cfg["long_iterations"])
        if not set(seeds) <= set(kls.index):
            continue
        kls = [float(kls[s]) for s in seeds]
        row = _against_nf(tab, cfg, target, size, float(np.mean(kls)),
                          after_sd=float(np.std(kls, ddof=1)) if len(kls) > 1 else np.nan)
        if row:
            rows.append({**row, "seed": seeds[0], "n": len(seeds), "long_seeds": list(seeds), "kls": kls})
    return pd.DataFrame(rows, columns=columns)


def long_cnf_seeds(long_cnf) -> str:
    """The seeds of (target, M, seeds) entries in words: 'seed 0', 'one run each, seed 0', '3 seeds each',
    'seed 0 on U1 and 3 seeds on U2'."""
    sets = {tuple(s) for _, _, s in long_cnf}
    each = len(long_cnf) > 1
    if len(sets) == 1:
        (seeds,) = sets
        if len(seeds) == 1:
            return ("one run each, " if each else "") + f"seed {seeds[0]}"
        return f"{len(seeds)} seeds" + (" each" if each else "")
    return _and([f"{seeds_words(len(s), s[0])} on {t}" for t, _, s in long_cnf])


def long_cnf_where(long_cnf) -> str:
    """Where, and on which seeds, a profile's `long_cnf` trains: 'U1, U2 and U3 (one run each, seed 0)',
    'U2 (3 seeds)', 'U1 (seed 0) and U2 (3 seeds)'."""
    if len({tuple(s) for _, _, s in long_cnf}) == 1:
        return f"{_and([t for t, _, _ in long_cnf])} ({long_cnf_seeds(long_cnf)})"
    return _and([f"{t} ({seeds_words(len(s), s[0])})" for t, _, s in long_cnf])


def long_cnf_rows(vs: pd.DataFrame) -> list:
    """The (target, M, seeds) entries of `long_cnf_against_nf`'s rows, for `long_cnf_seeds`."""
    return [(r.target, r.size, r.long_seeds) for r in vs.itertuples()]


def long_cnf_table(density: dict) -> pd.DataFrame:
    """`long_cnf_against_nf` as the chapter prints it, one row per target: the KLs (mean ± sd over seeds where there
    are several), the share of the gap closed, and where the longer CNF stands."""
    cfg = density["config"]
    kls = run_kls(density)
    return pd.DataFrame([{"target": r.target,
                          f"CNF {cfg['cnf_iterations']:,} it.": tables.mean_sd(kls(r.target, "cnf", r.size, cfg["cnf_iterations"])),
                          f"CNF {cfg['long_iterations']:,} it.": tables.mean_sd(r.kls),
                          f"NF {cfg['nf_iterations']:,} it.": tables.mean_sd(kls(r.target, "nf", r.size, cfg["nf_iterations"])),
                          "gap closed": "-" if np.isnan(r.share) else tables.percent(r.share),
                          "CNF against NF": ("behind" if not r.matches else "within the seeds' sd or ahead")}
                         for r in long_cnf_against_nf(density).itertuples()])


SPIKE = 10.0   # a chunk's mean training loss risen this many times the lowest before it: the run blew up there


def spikes(density: dict, iterations: int) -> pd.DataFrame:
    """The CNF runs of `iterations` whose training loss blew up after their first tenth: a chunk's mean loss above
    where the run stood at the end of its first tenth and risen from the lowest before it by more than (SPIKE - 1)
    times that lowest's size (for a positive lowest: above SPIKE times it). Per run its peak (the highest such chunk's
    last iteration and loss), the lowest loss before it and the evaluations per solve there, the most evaluations
    from there on (NaN without a record of them), and where it ended (last chunk's loss, final KL)."""
    rows = []
    for r in density["metrics"]["runs"]:
        if r["kind"] != "cnf" or r["iterations"] != iterations or "kl" not in r or not r.get("loss"):
            continue
        loss = np.asarray(r["loss"], dtype=float)
        start = max(len(loss) // 10, 1)
        lowest = np.minimum.accumulate(loss)[start - 1:-1]          # the lowest before each chunk from `start` on
        later = loss[start:]
        blown = (later > loss[start - 1]) & (later - lowest > (SPIKE - 1) * np.abs(lowest))
        if not blown.any():
            continue
        peak = start + int(np.argmax(np.where(blown, later, -np.inf)))
        best = int(np.argmin(loss[:peak]))
        nfe = r.get("nfe") or []
        counted = len(nfe) == len(loss) and all(x is not None for x in nfe)
        chunk = r.get("chunk") or r["iterations"] // len(loss)
        rows.append({"target": r["task"], "size": r["size"], "seed": r["seed"],
                     "iteration": min((peak + 1) * chunk, r["iterations"]), "peak": float(loss[peak]),
                     "lowest": float(loss[best]), "nfe_before": float(nfe[best]) if counted else np.nan,
                     "peak_nfe": float(max(nfe[best:])) if counted else np.nan, "last": float(loss[-1]),
                     "kl": float(r["kl"])})
    return pd.DataFrame(rows, columns=["target", "size", "seed", "iteration", "peak", "lowest", "nfe_before", "peak_nfe",
                                       "last", "kl"])


def spread_only(vs: pd.DataFrame) -> pd.DataFrame:
    """The rows of `long_cnf_against_nf` within the NF's sd only because the longer seeds spread wider: behind at the
    budget, matching now, yet the mean no closer to the NF."""
    return vs[vs.behind & vs.matches & ~(vs.share > 0)]


def spike_sentence(density: dict, vs: pd.DataFrame | None = None) -> str:
    """The longer CNF runs that blew up during training (`spikes`), of those in the means on the page (the targets
    whose longer runs have all finished: `long_cnf_against_nf`, or its rows `vs`), in words; empty if none did."""
    cfg = density["config"]
    if cfg["long_iterations"] <= cfg["cnf_iterations"]:
        return ""
    vs = long_cnf_against_nf(density) if vs is None else vs
    shown = {(r.target, r.size, s) for r in vs.itertuples() for s in r.long_seeds}
    sp = spikes(density, cfg["long_iterations"])
    sp = sp[[(r.target, r.size, r.seed) in shown for r in sp.itertuples()]]
    if sp.empty:
        return ""
    say = lambda x: tables.number(x, 2)   # noqa: E731

    def one(r) -> str:
        solves = ("" if np.isnan(r.peak_nfe) else f", its solves from {tables.number(round(r.nfe_before))} to as many as "
                  f"{tables.number(round(r.peak_nfe))} evaluations")
        back = "had recovered, to" if r.last - r.lowest <= 0.5 * abs(r.lowest) else "had come back only to"
        return (f"seed {r.seed} on {r.target}, near iteration {r.iteration:,}: its training loss rose to {say(r.peak)} "
                f"from {say(r.lowest)} at its lowest before{solves}, and by iteration {cfg['long_iterations']:,} it "
                f"{back} {say(r.last)} (final KL {say(r.kl)})")

    single = len(sp) == 1
    count = ("One", "Two", "Three", "Four", "Five", "Six", "Seven", "Eight", "Nine")[len(sp) - 1] if len(sp) < 10 else len(sp)
    return (f"{count} longer run{'' if single else 's'} blew up in training under the held learning "
            f"rate ({'; '.join(one(r) for r in sp.itertuples())}). "
            f"{'Its final KL counts' if single else 'Their final KLs count'} in the mean on "
            f"{_and(sorted(set(sp.target)))} as trained; the spike shows in {'its' if single else 'their'} learning "
            f"{'curve' if single else 'curves'} above.")


def long_cnf_sentence(density: dict) -> str:
    """What the longer CNF runs show about the CNF's budget, in words (empty without them): per target the longer run's
    KL against the CNF's at its budget and the NF's, and what that says about why the CNF was behind."""
    vs = long_cnf_against_nf(density)
    if vs.empty:
        return ""
    cfg = density["config"]
    say = lambda rows: ", ".join(rows.target)   # noqa: E731
    per = "; ".join(_kl_against(r, tables.mean_sd(r.kls), f"at {cfg['cnf_iterations']:,}") for r in vs.itertuples())
    text = (f"Trained for {cfg['long_iterations']:,} iterations instead of {cfg['cnf_iterations']:,} "
            f"({long_cnf_seeds(long_cnf_rows(vs))}), the CNF "
            f"reaches: {per} (the CNF at {cfg['cnf_iterations']:,} and the NF at "
            f"{cfg['nf_iterations']:,} iterations as means over their seeds, {int(vs.seeds.max())} for the CNF). ")
    if spiked := spike_sentence(density, vs):
        text += spiked + " "
    was = vs[vs.behind]
    caught, stays, falls = was[was.matches], was[~was.matches], vs[~vs.behind & ~vs.matches]
    closer, spread = caught[caught.share > 0], spread_only(vs)   # the latter: more iterations did not help
    parts = []
    if len(closer):
        parts.append(f"on {say(closer)} the longer training brings it from behind the NF to within the seeds' combined "
                     "sd or better")
    if len(spread):
        sds = ", ".join(f"{tables.number(r.after_sd)} on {r.target}" for r in spread.itertuples())
        parts.append(f"on {say(spread)} its mean KL is no closer to the NF than at its budget, yet its seeds spread "
                     f"so widely (sd {sds}) that the NF lies within their combined sd")
    stays_closer, stays_flat = stays[stays.lower], stays[~stays.lower]
    if len(stays_closer):
        shares = ", ".join(f"{tables.percent(r.share)} of the gap on {r.target}" for r in stays_closer.itertuples())
        parts.append(f"on {say(stays_closer)} it comes closer but stays behind by more than the seeds' combined sd "
                     f"(closing {shares})")
    if len(stays_flat):
        parts.append(f"on {say(stays_flat)} it stays behind, its KL no lower than at its budget beyond the seeds' sd")
    if len(falls):
        parts.append(f"on {say(falls)}, within the seeds' sd at its budget, it falls behind")
    if parts:
        text += "; ".join(parts)[0].upper() + "; ".join(parts)[1:] + ". "
    if not len(was):
        return text + "It was not behind the NF on these targets at its budget, so they cannot tell why it is elsewhere."
    unhelped = pd.concat([spread, stays])
    if not len(unhelped):
        return text + (f"So the CNF was behind for lack of iterations: with {cfg['long_iterations']:,} it catches up "
                       f"with the NF's {cfg['nf_iterations']:,}.")
    if not len(closer) and not was.lower.any():
        return text + "More iterations do not bring it closer, so its budget is not why it is behind."
    flat = pd.concat([spread, stays_flat])
    flat = f" on {_and(flat.target)} more iterations do not help beyond the seeds' sd, and" if len(flat) else ""
    rest = (f" What holds the CNF back on {_and(unhelped.target)} is not yet tested: the settings the paper leaves open "
            f"(the hypernetwork's width, the learning rate, {UNTESTED}) are ours, and a run varying them would tell."
            if not density["metrics"].get("cnf_variants") else
            " The next section changes the settings the paper leaves open, one at a time, to find what holds it back.")
    return text + (f"So the CNF's budget explains part of the gap, not all of it:{flat} the NF's {cfg['nf_iterations']:,} "
                   f"iterations buy a lower KL than the CNF reaches in {cfg['long_iterations']:,}.{rest}")


# ----------------------------------------------------------------------------------- the CNF's settings
def variant_words(run: dict, cfg: dict) -> str:
    """What a variant run of Figure 4's CNF changed against the profile's settings, in words."""
    parts = []
    if run["hidden"] != cfg["hidden"]:
        parts.append(f"a hypernetwork of {run['hidden']} hidden units instead of {cfg['hidden']}")
    if run.get("lr_schedule") == "cosine":
        parts.append(f"the learning rate annealed from {run['lr']:g} to 0 (cosine) instead of held")
    return " and ".join(parts) or run["variant"]


def cnf_variants_against_nf(density: dict) -> pd.DataFrame:
    """Figure 4's variant runs (`cnf_variants`: the largest CNF at the profile's CNF budget with one setting changed),
    one row per variant and target, as `_against_nf` over the variant's seeds: measured from the mean of the same
    seeds' runs as trained (a variant shares its seed's batches, and its initial weights where the change leaves their
    shapes). `seed`: the first of them, `n`: how many. Empty without finished variant runs."""
    cfg = density["config"]
    tab = density_table(density).set_index(["task", "kind", "size", "iterations"])
    kls_of = run_kls(density)
    groups: dict[tuple, list[dict]] = {}
    for r in density["metrics"].get("cnf_variants", []):
        if "kl" in r:
            groups.setdefault((r["variant"], r["task"], r["size"]), []).append(r)
    rows = []
    for (variant, target, size), runs in groups.items():
        trained = kls_of(target, "cnf", size, cfg["cnf_iterations"])      # the same seeds' runs as trained
        runs = [r for r in runs if r["seed"] in trained.index]
        if not runs:
            continue
        kls = [r["kl"] for r in runs]
        before = float(np.mean([trained[r["seed"]] for r in runs]))
        row = _against_nf(tab, cfg, target, size, float(np.mean(kls)), before,
                          float(np.std(kls, ddof=1)) if len(kls) > 1 else np.nan)
        if row:
            rows.append({**row, "seed": runs[0]["seed"], "n": len(runs), "kls": kls, "variant": variant,
                         "words": variant_words(runs[0], cfg)})
    return pd.DataFrame(rows, columns=AGAINST_NF + ["n", "kls", "variant", "words"])


def seeds_words(n: int, first: int) -> str:
    """'seed 0' for one run, '3 seeds' for several."""
    return f"seed {first}" if n == 1 else f"{n} seeds"


def cnf_variants_table(density: dict) -> pd.DataFrame:
    """`cnf_variants_against_nf` as the chapter prints it: one column per target; rows the CNF as trained and the NF
    (mean ± sd over their seeds), the seed a one-seed variant shares as trained, and each variant (its KL,
    mean ± sd over its seeds where it has several), to two significant digits: a column per target fits the page."""
    cfg, vs = density["config"], cnf_variants_against_nf(density)
    kls = run_kls(density)
    alone = [f"seed {s} as trained" for s in sorted({int(r.seed) for r in vs.itertuples() if r.n == 1})]
    nf_column = f"NF {cfg['nf_iterations']:,} it."
    rows = []
    for target, group in vs.groupby("target", sort=False):
        size = int(group["size"].iloc[0])
        row = {"target": target, "CNF as trained": tables.mean_sd(kls(target, "cnf", size, cfg["cnf_iterations"]), 2)}
        row.update({f"seed {r.seed} as trained": tables.number(r.before, 2) for r in group.itertuples() if r.n == 1})
        row.update({r.variant: tables.mean_sd(r.kls, 2) if r.n > 1 else tables.number(r.after, 2)
                    for r in group.itertuples()})
        row[nf_column] = tables.mean_sd(kls(target, "nf", size, cfg["nf_iterations"]), 2)
        rows.append(row)
    columns = ["target", "CNF as trained", *alone, *dict.fromkeys(vs.variant), nf_column]
    wide = pd.DataFrame(rows).reindex(columns=columns).fillna("-").set_index("target")
    wide = wide.reindex([t for t in cfg["targets"] if t in wide.index])     # the profile's order of targets
    return wide.T.rename_axis(index="KL of", columns=None).reset_index()     # one column per target fits the page


def cnf_variants_sentence(density: dict) -> str:
    """What the variant runs show about what holds the CNF back, in words (empty without them): per variant, where it
    brings the CNF level with the NF, lowers or raises its KL beyond the seeds' sd (and how much of the gap to the NF
    that closes), and then whether the settings tested explain the gap."""
    vs = cnf_variants_against_nf(density)
    if vs.empty:
        return ""
    cfg = density["config"]
    text = (f"Each variant is measured from the same seeds' runs as trained and set against the NF at "
            f"{cfg['nf_iterations']:,} iterations (the mean over its {int(vs.nf_seeds.max())} seeds); a difference "
            "counts where it exceeds the combined sd of the two sides (the CNF seeds' sd standing in for a variant of "
            "one run). ")
    helped = []
    for variant, g in vs.groupby("variant", sort=False):
        reached = g.behind & g.matches
        closer, ahead = g[g.lower & ~reached & g.behind], g[g.lower & ~reached & ~g.behind]
        parts = [f"brings the CNF within the seeds' sd of the NF or ahead of it on {_and(g[reached].target)}"
                 ] if reached.any() else []
        if len(closer):
            shares = ", ".join(f"{tables.percent(r.share)} of the gap on {r.target}"
                               for r in closer.itertuples() if not np.isnan(r.share))
            parts.append(f"lowers the KL on {_and(closer.target)}" + (f" (closing {shares})" if shares else "")
                         + " without reaching the NF")
        if len(ahead):
            parts.append(f"lowers the KL on {_and(ahead.target)}, where the CNF already matched the NF")
        if g.higher.any():
            parts.append(f"raises the KL on {_and(g[g.higher].target)}")
        unchanged, fell = ~g.lower & ~g.higher & ~reached, ~g.behind & ~g.matches
        if (unchanged & ~fell).any():
            parts.append(f"leaves it within the seeds' sd on {_and(g[unchanged & ~fell].target)}")
        if (unchanged & fell).any():     # the KL moved less than the sd, but as far from the NF's as counts as behind
            parts.append(f"leaves the KL within the seeds' sd of the runs as trained on {_and(g[unchanged & fell].target)} "
                         "but behind the NF's beyond the combined sd, where as trained it matched within its wider sd")
        if (fell & ~unchanged).any():
            parts.append(f"puts the CNF behind the NF on {_and(g[fell & ~unchanged].target)}, where as trained it matched")
        if reached.any() or len(closer):
            helped.append(variant)
        per = "; ".join(_kl_against(r, f"{tables.number(r.after)} (seed {r.seed})", f"for seed {r.seed} as trained")
                        if r.n == 1 else _kl_against(r, f"{tables.mean_sd(r.kls)} over {r.n} seeds",
                                                     "for the same seeds as trained") for r in g.itertuples())
        text += f"With {g.words.iloc[0]} ({variant}), {per}: it {_and(parts)}. "
    behind = vs[vs.behind]
    if behind.empty:
        return text + "The CNF as trained was not behind the NF on these targets, so they cannot tell what holds it back."
    fixed = behind[behind.matches]
    still = [t for t in dict.fromkeys(behind.target) if t not in set(fixed.target)]
    worse = vs[~vs.behind & ~vs.matches]   # a target the CNF matched as trained and a variant puts behind
    worse = "".join(f"; on {_and(g.target)}, {variant} leaves the CNF behind the NF, where as trained it matched"
                    for variant, g in worse.groupby("variant", sort=False))
    if not helped:
        none = {1: "the setting tested is not", 2: "neither setting is"}.get(vs.variant.nunique(),
                                                                            "none of the settings tested is")
        return text + (f"So {none} what holds the CNF back on {_and(behind.target)}; what does is not among the "
                       f"settings tested here (untested: {UNTESTED}){worse}.")
    if not still:
        return text + (f"So on {_and(fixed.target)} our settings, not the CNF, kept it behind the NF: {_and(fixed.variant)} "
                       f"close{'s' if fixed.variant.nunique() == 1 else ''} the gap{worse}.")
    longer = long_cnf_against_nf(density)
    # where more iterations reach the NF instead; not where only the longer seeds' wider spread reaches it
    caught = set(longer[longer.behind & longer.matches].target) - set(spread_only(longer).target)
    budget, other = [t for t in still if t in caught], [t for t in still if t not in caught]
    return text + (f"So {_and(helped)} explain{'s' if len(helped) == 1 else ''} part of the gap"
                   + (f"; on {_and(budget)} the CNF reaches the NF with more iterations instead (the CNF's budget, "
                      "above)" if budget else "")
                   + (f"; on {_and(other)} the CNF stays behind the NF for a reason not among the settings tested here "
                      f"(untested: {UNTESTED})" if other else "") + worse + ".")


def cnf_variants_claim(density: dict) -> str:
    """The claim's verdict under each variant trained on every target (the claim's rule at the largest M = K, the
    variant's seeds against the NF's), beside the verdict as trained: a second verdict, not the profile's, since the
    variants' settings were chosen after the runs as trained."""
    cfg, vs = density["config"], cnf_variants_against_nf(density)
    size = max(cfg["cnf_units"])
    whole = [(v, g) for v, g in vs.groupby("variant", sort=False) if set(g.target) == set(cfg["targets"])]
    if not whole:
        return ("These runs look for the reason; the verdict on the paper's claim above rests on the profile's settings. "
                f"Whether a changed setting would change it takes the change on every target at M = K = {size}, which "
                "this profile does not train.")
    as_trained = int(cnf_against_nf(density).matches.sum())
    n = len(cfg["targets"])
    parts = [f"With {g.words.iloc[0]} ({v}) on all {n} targets, the CNF with M = {size} matches or beats the NF with "
             f"K = {size} on {int(g.matches.sum())} of {n}, against {as_trained} of {n} as trained: the claim "
             + ("holds under that setting" if g.matches.all() else
                f"does not hold under that setting (behind on {_and(g[~g.matches].target)})")
             for v, g in whole]
    were = "settings were" if len(whole) > 1 else "setting was"
    return (". ".join(parts) + f". The {were} chosen after seeing the runs as trained, so "
            f"{'these verdicts stand' if len(whole) > 1 else 'this verdict stands'} beside the one at the profile's "
            "settings above, not in its place.")


def stacked_sentence(density: dict) -> str:
    """What the NF runs at the profile's budget cost in all and, for each size with runs of both kinds, one run's
    training time alone against its share when stacked with others; empty without such runs."""
    cfg = density["config"]
    runs = [r for r in density["metrics"]["runs"]
            if r["kind"] == "nf" and r["iterations"] == cfg["nf_iterations"] and "train_time_s" in r]
    if not runs:
        return ""
    text = (f"The {tables.words(len(runs))} NF runs at {cfg['nf_iterations']:,} iterations took "
            f"{tables.number(sum(r['train_time_s'] for r in runs) / 3600)} h of training in all.")
    for size in cfg["nf_layers"]:
        alone = [r["train_time_s"] / 3600 for r in runs if r["size"] == size and not r.get("stacked")]
        stacked = [r["train_time_s"] / 3600 for r in runs if r["size"] == size and r.get("stacked")]
        if alone and stacked:
            text += (f" A run with K = {size} took {tables.number(float(np.mean(alone)))} h trained alone, and its share "
                     f"of a stacked training {tables.number(float(np.mean(stacked)))} h.")
    return text


def figure_nf_budget(density: dict):
    """KL against iterations of the largest NF at the profile's budget (its training loss per chunk, one line per
    seed) and of any CNF trained for longer (long_cnf), one panel per target, with the means over seeds of that NF at
    the shorter budget and of the largest CNF as horizontal lines."""
    cfg = density["config"]
    big_nf, big_cnf = max(cfg["nf_layers"]), max(cfg["cnf_units"])
    tab = density_table(density).set_index(["task", "kind", "size", "iterations"])["kl_mean"]
    lines = [(("nf", big_nf, cfg["short_nf_iterations"]), ":", "nf"), (("cnf", big_cnf, cfg["cnf_iterations"]), "--", "cnf")]
    targets = cfg["targets"]
    cols = 2 if len(targets) > 1 else 1
    fig, axes = plots.subplots(-(-len(targets) // cols), cols, width=2.9, height=2.4, squeeze=False)
    for ax in axes.flat[len(targets):]:
        ax.set_axis_off()
    runs = [r for r in density["metrics"]["runs"] if (r["kind"], r["size"], r["iterations"]) == ("nf", big_nf, cfg["nf_iterations"])
            and r.get("loss")]
    longs = [r for r in density["metrics"]["runs"] if r["kind"] == "cnf" and r.get("loss")
             and r["iterations"] == cfg["long_iterations"] > cfg["cnf_iterations"]]
    for ax, target in zip(axes.flat, targets):
        mine = [r for r in runs if r["task"] == target]
        for r in mine:
            ax.plot(np.arange(1, len(r["loss"]) + 1) * r["chunk"], r["loss"], color=plots.COLORS["nf"],
                    alpha=min(1.0, 0.4 + 0.2 * r["seed"]), lw=1, label=f"NF K={r['size']}, seed {r['seed']}")
        for r in (r for r in longs if r["task"] == target):   # the CNF trained for longer, where the profile has one
            mine.append(r)
            ax.plot(np.arange(1, len(r["loss"]) + 1) * r["chunk"], r["loss"], color=plots.COLORS["cnf"], lw=1,
                    alpha=min(1.0, 0.4 + 0.2 * r["seed"]),
                    label=f"CNF M={r['size']}, {r['iterations']:,} it., seed {r['seed']}")
        for (kind, size, n), style, color in lines:
            if (target, kind, size, n) in tab.index:
                ax.axhline(tab[(target, kind, size, n)], color=plots.COLORS[color], ls=style, lw=1,
                           label=f"{kind.upper()} {'K' if kind == 'nf' else 'M'}={size}, {n:,} it.")
        ax.set_xscale("log")
        ax.set_yscale("symlog", linthresh=1e-3)   # from nats at the start to the final KLs' thousandths; a noisy batch can dip below 0
        ax.set_ylim(bottom=min([0.0] + [min(r["loss"]) for r in mine]))   # no empty band below 0 unless a batch went there
        ax.set_xlim(cfg["chunk"], max([cfg["nf_iterations"]] + [r["iterations"] for r in longs]))
        ax.set_title(target)
        ax.set_xlabel("iteration")
    axes.flat[0].set_ylabel("KL(q‖p) estimate, nats")
    legend: dict[str, object] = {}        # every panel's lines, once each (a longer CNF may be on one target only)
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(lab, h)
    fig.legend(list(legend.values()), list(legend), loc="outside lower center", ncol=2, fontsize=8)
    return fig
