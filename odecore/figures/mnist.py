"""Section 3's tables and figures (Table 1, Figures 1 and 3), from the MNIST record.

`odecore.experiments.mnist` trained the models, measured memory, time and NFE, and stored every
number (each epoch's history, each step's NFE, Figure 1's toy); here they are only tabulated and drawn.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from odecore import paper, plots
from odecore.tables import mean_sd, number, percent, signed
from odecore.models.mnist import MODELS

NAMES = {name: paper.TABLE1[name]["model"] for name in MODELS}  # "odenet" -> "ODE-Net"


def table1(record: dict) -> pd.DataFrame:
    """Table 1's headline, the paper's column beside ours: test error (mean ± sd over the seeds, whose
    count the caption gives) and parameters. The cost columns are `table1_cost`."""
    rows = []
    for name in MODELS:
        ours, ref = record["metrics"]["table1"][name], paper.TABLE1[name]
        rows.append({"model": ref["model"], "test error, paper (%)": paper.printed(ref["test_error"]),
                     "test error, ours (%)": mean_sd(ours["test_error"]),
                     "params, paper (M)": paper.printed(ref["params_m"]), "params, ours (M)": number(ours["params"] / 1e6),
                     "seeds": len(ours["seeds"])})
    return pd.DataFrame(rows)


def _big_o(claim: str) -> str:
    """The paper's O(.) claim as math ("O(L~)" is its O of L-tilde, the number of evaluations)."""
    return "-" if claim == "-" else "$" + claim.replace("L~", r"\tilde L") + "$"


def table1_cost(record: dict) -> pd.DataFrame:
    """Table 1's memory and time columns: the paper's O(.) claims beside what we measured (peak memory of
    one training step, minutes per epoch of 55k images, forward NFE per step)."""
    rows = []
    for name in MODELS:
        ours, ref = record["metrics"]["table1"][name], paper.TABLE1[name]
        rows.append({"model": ref["model"], "memory, paper": _big_o(ref["memory"]),
                     "step memory, ours (MiB)": ours["memory"]["peak_mb"],
                     "time, paper": _big_o(ref["time"]), "epoch, ours (min)": ours["time_per_55k_s"] / 60,
                     "forward NFE": ours.get("nfe_forward_mean")})
    return pd.DataFrame(rows)


# The training settings a reader compares across profiles, in words: key -> (label, how to say a value).
SETTINGS = {
    "epochs": ("epochs", None), "images_per_epoch": ("images per epoch", lambda v: "all" if v is None else f"{v:,}"),
    "batch_size": ("batch", str), "optimizer": ("optimizer", lambda v: {"sgd": "SGD", "adam": "Adam"}[v]),
    "lr": ("learning rate (peak)", lambda v: number(v, zeros=False)), "momentum": ("momentum", lambda v: number(v, zeros=False)),
    "nesterov": ("Nesterov", lambda v: "yes" if v else "no"), "weight_decay": ("weight decay", lambda v: number(v, zeros=False)),
    "schedule": ("schedule", None), "augment": ("random crops", None), "n_val": ("validation images", lambda v: f"{v:,}"),
    "tol": ("ODE tolerance", lambda v: number(v, zeros=False)), "downsampling": ("stem", lambda v: {"res": "residual", "conv": "convolutional"}[v]),
}


def _setting(cfg: dict, key: str) -> str:
    """One setting of a config in words (epochs per model, the schedule with its milestones, crops with padding)."""
    if key == "epochs":
        per = cfg.get("epochs") or {}
        counts = {NAMES[m]: per.get(m, cfg["num_epochs"]) for m in MODELS}
        return str(cfg["num_epochs"]) if len(set(counts.values())) == 1 else ", ".join(f"{k} {v}" for k, v in counts.items())
    if key == "schedule":
        if cfg["schedule"] == "step":
            return f"÷{number(1 / cfg['gamma'])} at epochs {', '.join(map(str, cfg['milestones']))}"
        return {"cosine": "cosine to zero", "onecycle": "one-cycle, per step"}[cfg["schedule"]]
    if key == "augment":
        return f"padding {cfg['crop_padding']}" if cfg["augment"] else "no"
    return SETTINGS[key][1](cfg[key])


def profile_words(cfg: dict, full: dict) -> str:
    """How a profile's training differs from the full profile (the paper's settings where it states them, the authors'
    public example's where it does not), in words generated from the two configs: the sentence beside the settings
    table, for whichever profile the page shows."""
    diffs = [f"{label} {_setting(cfg, key)} (full: {_setting(full, key)})" for key, (label, _) in SETTINGS.items()
             if _setting(cfg, key) != _setting(full, key)]
    return ("It differs from the full profile in " + ("; ".join(diffs) if diffs else "nothing") + ".")


def epochs_words(cfg: dict) -> str:
    """A config's epochs per model in words ('1-layer MLP 40, ResNet 20, RK-Net 15, ODE-Net 15')."""
    return _setting(cfg, "epochs")


def settings_table(configs: dict[str, dict]) -> pd.DataFrame:
    """The training settings of several configs side by side, in words: column name -> config dict."""
    return pd.DataFrame([{"setting": label, **{name: _setting(cfg, key) for name, cfg in configs.items()}}
                         for key, (label, _) in SETTINGS.items()])


# Figure 3 (c)'s solvers (experiments.mnist.FIG3C_SOLVERS) as the figure and its table name them
SOLVER_LABELS = {"dopri5": "dopri5", "dopri5_seminorm": "dopri5 + seminorm", "lsoda": "scipy LSODA"}


def figure3c_table(record: dict):
    """Figure 3(c) in numbers: mean forward NFE, backward NFE and their ratio per solver (FIG3C_SOLVERS' keys; the page
    shows SOLVER_LABELS) and tolerance."""
    df = pd.DataFrame(record["metrics"]["figure3"]["backward"])
    df["backward / forward"] = df["nfe_backward"] / df["nfe_forward"]
    out = df.groupby(["solver", "tol"], sort=False)[["nfe_forward", "nfe_backward", "backward / forward", "time_s"]].mean()
    return out.rename(columns={"nfe_forward": "forward NFE", "nfe_backward": "backward NFE", "time_s": "s / step"})


def plot_training(record: dict):
    """Validation error per epoch of every model (seed 0), the curves model selection reads."""
    fig, ax = plots.subplots(1, 2, width=plots.FULL_WIDTH / 2, height=2.8)
    for name in MODELS:
        hist = record["metrics"]["table1"][name]["history"][0]
        epochs = [h["epoch"] for h in hist]
        ax[0].plot(epochs, [h["loss"] for h in hist], "o-", color=plots.COLORS[name], label=NAMES[name])
        ax[1].plot(epochs, [h["val_error"] for h in hist], "o-", color=plots.COLORS[name], label=NAMES[name])
    ax[0].set(xlabel="epoch", ylabel="training loss (epoch mean)", yscale="log")
    ax[1].set(xlabel="epoch", ylabel="validation error (%)", yscale="log")
    ax[1].yaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))   # 0.5, 1, 2, 5, 10: errors read in percent
    ax[1].yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax[1].yaxis.set_minor_formatter(NullFormatter())
    fig.legend(*ax[1].get_legend_handles_labels(), loc="outside lower center", ncol=len(MODELS))
    return fig


def plot_validation(record: dict):
    """Validation error per epoch of every model and every seed: the curves model selection reads."""
    fig, axes = plots.subplots(2, 2, width=3.4, height=2.7, sharey=True)
    for ax, name in zip(axes.flatten(), MODELS):
        row = record["metrics"]["table1"][name]
        for seed, hist, best in zip(row["seeds"], row["history"], row["best_epoch"]):
            ax.plot([h["epoch"] for h in hist], [h["val_error"] for h in hist], "-", lw=1.2, alpha=0.8,
                    color=plots.COLORS[name], label=f"seed {seed}")
            kept = next(h for h in hist if h["epoch"] == best)   # the epoch whose weights the run keeps (its record's)
            ax.plot(kept["epoch"], kept["val_error"], "o", ms=4, mfc="white", color=plots.COLORS[name], zorder=3)
        ax.set(title=NAMES[name], xlabel="epoch", yscale="log")
        ax.yaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))   # 0.5, 1, 2, 5, 10: errors read in percent
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
    for ax in axes[:, 0]:
        ax.set_ylabel("validation error (%)")
    return fig


def error_by_profile(records: list[dict]) -> pd.DataFrame:
    """Each model's mean test error in every stored profile, beside the passes over the training images
    that bought it, and the paper's error: how far each profile's budget gets each model."""
    cols: dict[tuple[str, str], dict[str, float]] = {}
    for record in records:
        t1, n_train = record["metrics"]["table1"], record["metrics"]["split"]["train"]
        cols[(record["profile"], "passes")] = {
            NAMES[m]: len(t1[m]["history"][0]) * t1[m]["images_per_epoch"] / n_train for m in MODELS}
        cols[(record["profile"], "error (%)")] = {NAMES[m]: t1[m]["test_error_mean"] for m in MODELS}
    cols[("paper", "error (%)")] = {NAMES[m]: paper.TABLE1[m]["test_error"] for m in MODELS}
    return pd.DataFrame(cols)


def plot_table1(record: dict):
    """Table 1's test errors as a picture: every seed (dots), the mean and sd (bar), the paper's number (cross)."""
    t1 = record["metrics"]["table1"]
    y = "test error (%)"
    runs = pd.DataFrame([{"model": NAMES[m], y: e} for m in MODELS for e in t1[m]["test_error"]])
    theirs = pd.DataFrame([{"model": NAMES[m], y: paper.TABLE1[m]["test_error"]} for m in MODELS])
    palette = {NAMES[m]: plots.COLORS[m] for m in MODELS}
    fig, ax = plots.subplots(1, 1, width=5.0, height=3.0)
    plots.seed_spread(ax, runs, x="model", y=y, palette=palette, paper_points=theirs)
    ax.set(xlabel="", yscale="log", title=f"profile {record['profile']}")
    ax.yaxis.set_major_locator(LogLocator(subs=(1, 1.5, 2, 3, 4, 5, 7)))  # labels on both sides of 1%
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    return fig


def threads(record: dict) -> int:
    """CPU threads a record was trained with, from its device name ("cpu (2 threads)"); 1 on a GPU."""
    from odecore.compute import THREADS

    found = THREADS.fullmatch(record.get("device_name", "").strip())
    return int(found.group(1)) if found else 1


def cost_table(record: dict):
    """Training cost per model: epochs, seeds, wall hours over all seeds, CPU-hours (wall x threads) and,
    at this machine's measured rate, the CPU-hours one seed of the authors' 160 epochs would take."""
    k = threads(record) if record.get("device") != "cuda" else None
    rows = []
    for name in MODELS:
        row = record["metrics"]["table1"][name]
        hours = sum(h["time_s"] for hist in row["history"] for h in hist) / 3600
        per_epoch = row["time_per_55k_s"] / 3600
        rows.append({"model": NAMES[name], "epochs": len(row["history"][0]), "seeds": len(row["seeds"]),
                     "wall hours, all seeds": hours,
                     "CPU-hours, all seeds": hours * k if k else float("nan"),
                     f"CPU-hours, {paper.MNIST_EPOCHS} epochs, one seed": paper.MNIST_EPOCHS * per_epoch * k if k else float("nan")})
    return pd.DataFrame(rows).set_index("model")


def nfe_trend(record: dict) -> dict[str, dict[str, float]]:
    """The ODE-Net's mean NFE per training step in the first and last epoch (seed 0), and the slope of
    the per-epoch mean against the epoch, for the forward and the adjoint backward pass (Figure 3 (d):
    the paper says the forward NFE grows)."""
    hist = record["metrics"]["table1"]["odenet"]["history"][0]
    out = {}
    for way in ("forward", "backward"):
        means = np.array([np.mean(h[f"nfe_{way}_steps"]) for h in hist])
        slope = float(np.polyfit(np.arange(1, len(means) + 1), means, 1)[0]) if len(means) > 1 else 0.0
        out[way] = {"first": float(means[0]), "last": float(means[-1]), "slope_per_epoch": slope}
    return out


def plot_figure3(record: dict):
    """Figure 3 (a-d) from the record."""
    fig3 = record["metrics"]["figure3"]
    fig, ax = plots.subplots(2, 2, width=plots.FULL_WIDTH / 2, height=3.0)  # four panels in two rows, not one strip
    ax = ax.flatten()
    tol = fig3["tolerance"]
    nfe = [r["nfe_forward"] for r in tol]
    ax[0].semilogy(nfe, [r["error"] for r in tol], "o-", color=plots.COLORS["odenet"])
    ax[0].set(xlabel="forward NFE", ylabel="numerical error", title="(a) NFE vs error")
    t0 = tol[-1]["time_s"] / tol[-1]["nfe_forward"]
    ax[1].plot(nfe, [r["time_s"] for r in tol], "o-", color=plots.COLORS["odenet"])
    ax[1].set(xlabel="forward NFE", ylabel="forward time (s)", title="(b) NFE vs time")
    ax[1].plot([0, max(nfe)], [0, max(nfe) * t0], ":", color="grey", label="proportional")
    ax[1].legend()
    by = {}
    for r in fig3["backward"]:
        by.setdefault(r["solver"], []).append(r)
    labels = SOLVER_LABELS
    colors = {"dopri5": plots.COLORS["dopri5"], "dopri5_seminorm": plots.COLORS["seminorm"],
              "lsoda": plots.COLORS["scipy"]}
    markers = {"dopri5": dict(marker="o", s=60, facecolors="none"), "dopri5_seminorm": dict(marker="x", s=30),
               "lsoda": dict(marker="s", s=18)}
    hi = 0
    for solver, rows in by.items():
        f, b = [r["nfe_forward"] for r in rows], [r["nfe_backward"] for r in rows]
        hi = max(hi, *f, *b)
        style = markers[solver]
        color = {"edgecolors" if style.get("facecolors") == "none" else "color": colors[solver]}
        ax[2].scatter(f, b, label=labels[solver], **style, **color)
    ax[2].plot([0, hi], [0, hi], ":", color="grey", label="backward = forward")
    ax[2].plot([0, hi], [0, hi * paper.BACKWARD_OVER_FORWARD_NFE], "--", color="grey", label="paper: half")
    ax[2].set(xlabel="forward NFE", ylabel="backward NFE", title="(c) forward vs backward")
    ax[2].set_ylim(top=1.5 * hi)   # room above the points for the legend
    ax[2].legend(loc="upper left")
    hist = record["metrics"]["table1"]["odenet"]["history"][0]
    steps = [n for h in hist for n in h["nfe_forward_steps"]]
    per_epoch = [np.mean(h["nfe_forward_steps"]) for h in hist]
    x_steps = np.arange(1, len(steps) + 1) / max(len(hist[0]["nfe_forward_steps"]), 1)
    # the steps above the epoch means: after the first epoch nearly every step takes the same count, on the mean line
    ax[3].plot(x_steps, steps, ".", ms=4, alpha=0.25, color=plots.COLORS["odenet"], label="forward, each step", zorder=3)
    ax[3].plot(np.arange(1, len(hist) + 1), per_epoch, "o-", color=plots.COLORS["odenet"], label="forward, epoch mean")
    backward = [np.mean(h["nfe_backward_steps"]) for h in hist]  # not in the paper's panel: the adjoint's cost
    ax[3].plot(np.arange(1, len(hist) + 1), backward, "s--", ms=4, color="grey", label="backward, epoch mean")
    ax[3].set(xlabel="training epoch", ylabel="NFE per step", title="(d) NFE over training")
    ax[3].legend(loc="best")   # where it hides fewest points (between the curves, on the stored records)
    return fig


def plot_figure1(record: dict):
    """Figure 1: ResNet's discrete steps (left) against the ODE network's vector field (right)."""
    f1 = record["metrics"]["figure1"]
    fig, ax = plots.subplots(1, 2, width=plots.FULL_WIDTH / 2, height=3.2)
    states = np.array(f1["resnet_states"])
    depth = np.arange(states.shape[1])
    for row in states:
        ax[0].plot(depth, row, "-", color=plots.COLORS["resnet"], alpha=0.6)
        ax[0].plot(depth, row, "o", color="black", ms=3)
    for k in range(states.shape[1] - 1):
        ax[0].quiver(np.full(len(states), k), states[:, k], np.ones(len(states)), states[:, k + 1] - states[:, k],
                     angles="xy", scale_units="xy", scale=1, width=0.004, color="grey", alpha=0.5)
    ax[0].set(xlabel="depth (residual block)", ylabel="hidden state z", title="Residual network")
    t, zz, ff = (np.array(f1[k]) for k in ("field_t", "field_z", "field_f"))
    norm = np.sqrt(1 + ff ** 2)
    ax[1].quiver(t, zz, 1 / norm, ff / norm, angles="uv", color="grey", alpha=0.5, width=0.004)
    for row in np.array(f1["ode_traj"]):
        ax[1].plot(f1["ode_t"], row, "-", color=plots.COLORS["odenet"], alpha=0.7)
    et = np.repeat(f1["ode_eval_t"], len(f1["starts"]))
    ez = np.array(f1["ode_eval_z"]).flatten()
    ax[1].plot(et, ez, "o", color="black", ms=3, label="dopri5 evaluations (right panel)")
    if max(f1["ode_eval_t"]) > max(f1["ode_t"]):   # adaptive steps that end past t1 (the solver interpolates back)
        ax[1].axvline(max(f1["ode_t"]), color="0.4", ls=":", lw=1.2, label=f"end of the solve, t = {max(f1['ode_t']):g}")
    ax[1].set(xlabel="time t", ylabel="state z(t)", title="ODE network")
    fig.legend(*ax[1].get_legend_handles_labels(), loc="outside lower center", ncol=2)
    return fig


# The test error each model of the `cpu` profile aims at: the paper's number where a CPU run of 15-40
# epochs can reach it, with a margin (the ODE-Net and RK-Net train the fewest epochs).
CPU_TARGETS = {"mlp": 1.60, "resnet": 0.50, "rknet": 0.60, "odenet": 0.60}
TOLERANCE = 0.1   # percentage points: within it a Table 1 error counts as reproduced (the scoreboard's)


def error_rows(record: dict) -> pd.DataFrame:
    """Per model: our mean test error, its spread and seeds, the paper's, the difference, and where the
    profile has one, its target and whether it was met."""
    t1, aims = record["metrics"]["table1"], CPU_TARGETS if record["profile"] == "cpu" else {}
    rows = []
    for name in MODELS:
        row, ref = t1[name], paper.TABLE1[name]["test_error"]
        rows.append({"model": NAMES[name], "ours": row["test_error_mean"], "sd": row["test_error_std"],
                     "seeds": len(row["seeds"]), "paper": ref, "difference": row["test_error_mean"] - ref,
                     "target": aims.get(name), "met": row["test_error_mean"] <= aims[name] if name in aims else None})
    return pd.DataFrame(rows).set_index("model")


def error_summary(record: dict) -> str:
    """Table 1's errors in words (Markdown), for the profile the record is: what each number is beside
    the paper's, and what the profile can and cannot say."""
    rows = error_rows(record)
    profile, t1 = record["profile"], record["metrics"]["table1"]
    share = t1["odenet"]["params"] / t1["resnet"]["params"]
    each = "; ".join(f"{m} {mean_sd(t1[n]['test_error'])} %" + (f" over {r.seeds} seeds" if r.seeds > 1 else " (one seed)")
                     + f" against the paper's {paper.printed(r.paper)} %" for (m, r), n in zip(rows.iterrows(), MODELS))
    text = f"**Error.** In the `{profile}` profile the test errors are: {each}."
    if profile == "smoke":
        return text + " The smoke profile trains on a few hundred images to test the code; its errors are not findings."
    if profile == "reduced":
        return text + (" After a fraction of one pass over the data every model is far from the paper's 0.4–1.6%: "
                       "those numbers come from 160 epochs. What a short run can show is the order at equal data, "
                       "and the cost of getting there: the three convolutional models end within their seed-to-seed "
                       "spread of each other, so this run cannot rank them, but at equal data the ODE-Net does as "
                       f"well as the ResNet with {share:.0%} of its parameters, and both are well ahead of the MLP.")
    close = [m for m, r in rows.iterrows() if abs(r.difference) <= TOLERANCE]
    far = [f"{m} ({signed(r.difference)} points)" for m, r in rows.iterrows() if abs(r.difference) > TOLERANCE]
    text += (f" Within {number(TOLERANCE, zeros=False)} percentage points of the paper: {', '.join(close) or 'none'}"
             + (f"; further off: {', '.join(far)}." if far else "."))
    if profile == "cpu":
        epochs = {n: len(t1[n]["history"][0]) for n in MODELS}
        text += (f" These are {min(epochs.values())} to {max(epochs.values())} epochs of one-cycle SGD, not the "
                 "160 epochs of step decay of the authors' public example (the paper states no schedule).")
    return text


def error_overlap(record: dict) -> pd.DataFrame | None:
    """How far two models get the same test images wrong: the share of misclassified images two runs have in common
    (the images both get wrong, over the mean of their two counts), averaged over every pair of a seed of each model,
    and on the diagonal over the pairs of one model's seeds (NaN with one seed). None for a record that keeps no
    misclassified images (stored before runs kept them)."""
    import itertools

    t1 = record["metrics"]["table1"]
    if any(w is None for m in MODELS for w in t1[m].get("misclassified", [None])):
        return None
    runs = {m: [set(w) for w in t1[m]["misclassified"]] for m in MODELS}

    def mean_shared(m1: str, m2: str) -> float:
        pairs = itertools.combinations(runs[m1], 2) if m1 == m2 else itertools.product(runs[m1], runs[m2])
        shares = [len(a & b) / ((len(a) + len(b)) / 2) for a, b in pairs if a or b]
        return float(np.mean(shares)) if shares else float("nan")

    return pd.DataFrame({NAMES[m2]: {NAMES[m1]: mean_shared(m1, m2) for m1 in MODELS} for m2 in MODELS})


def error_overlap_words(record: dict) -> str:
    """`error_overlap` in words: whether the ODE-Net gets the ResNet's images wrong as often as its own on another
    seed, how far the MLP's errors are from the convolutional models', and the images every convolutional run gets
    wrong."""
    table = error_overlap(record)
    if table is None:
        return "This record was stored before runs kept their misclassified images; training it again stores them."
    ode, res, same = table.loc["ODE-Net", "ResNet"], table.loc["ODE-Net", "RK-Net"], table.loc["ODE-Net", "ODE-Net"]
    text = (f"An ODE-Net run shares {percent(ode)} of its misclassified test images with a ResNet run and {percent(res)} with "
            "an RK-Net run")
    if not np.isnan(same):
        text += (f", against {percent(same)} with another seed of its own: image by image it is "
                 + ("no further from the ResNet than from itself." if ode >= same else
                    "closer to itself than to the ResNet."))
    else:
        text += "."
    conv = [NAMES[m] for m in MODELS if m != "mlp"]
    mlp = table.loc["1-layer MLP", conv]
    text += f" The MLP's errors overlap the convolutional models' by {percent(mlp.min())} to {percent(mlp.max())} only."
    t1 = record["metrics"]["table1"]
    conv_runs = [set(w) for m in MODELS if m != "mlp" for w in t1[m]["misclassified"]]
    every = set.intersection(*conv_runs)
    return text + (f" {len(every)} of the {record['metrics']['split']['test']:,} test images "
                   f"{'is' if len(every) == 1 else 'are'} wrong in all "
                   f"{len(conv_runs)} convolutional runs, {len(set.union(*conv_runs))} in at least one.")


def limits(record: dict, full_stored: bool = False) -> list[str]:
    """What the profile shown cannot say, one Markdown bullet each (the chapter's last section); `full_stored`: whether
    a record of the full profile exists beside the one shown."""
    profile, t1 = record["profile"], record["metrics"]["table1"]
    one_seed = [NAMES[m] for m in MODELS if len(t1[m]["seeds"]) == 1]
    out = []
    if profile != "full":
        out.append(f"Errors after the 160 epochs of the authors' example: this page shows the `{profile}` profile; the "
                   "`full` profile (160 epochs, meant for a GPU) gives them, " + (
                       "and its stored record is shown when ODECORE_PROFILE=full." if full_stored else
                       "and has not been run.") + " Every number says which profile it comes from.")
    if one_seed:
        names = ", the ".join(one_seed[:-1]) + (" and the " if len(one_seed) > 1 else "") + one_seed[-1]
        each, rows = ("of each", "their rows show") if len(one_seed) > 1 else ("of it", "its row shows")
        out.append(f"A spread over seeds for the {names}: the `{profile}` profile trains "
                   f"one seed {each}, so {rows} one run, not a mean.")
    out.append("Seconds of a dedicated machine: the tables' times are of a CPU shared with other jobs; the memory "
               "and NFE numbers do not depend on that.")
    return out


ABLATION_LABELS = {"authors": "authors' schedule (step decay, no weight decay)",
                   "onecycle_nowd": "one-cycle, no weight decay", "cpu": "cpu profile (one-cycle, weight decay 5 × 10⁻⁴)"}
# the same schedules in running text, once the legend has said what each is
ABLATION_NAMES = {"authors": "the authors' schedule", "onecycle_nowd": "one-cycle without weight decay",
                  "cpu": "our cpu schedule"}


def plot_nfe_ablation(record: dict):
    """Figure 3 (d)'s ablation: the ODE-Net's mean forward (left) and adjoint backward (right) NFE per step,
    epoch by epoch, for each training variant trained so far."""
    variants = record["metrics"]["variants"]
    fig, axes = plots.subplots(1, 2, width=plots.FULL_WIDTH / 2, height=3.0, sharey=True)
    colors = {"authors": "#d62728", "onecycle_nowd": "#2ca02c", "cpu": plots.COLORS["odenet"]}
    for way, ax in zip(("forward", "backward"), axes):
        for variant, v in variants.items():
            epochs = np.arange(1, v["epochs_done"] + 1)
            ax.plot(epochs, v[f"nfe_{way}"], "o-", ms=3, color=colors[variant], label=ABLATION_LABELS[variant])
        ax.set(xlabel="epoch", title=f"{way} NFE per step")
    axes[0].set_ylabel("mean NFE per step")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center")   # one a line, below the data
    return fig


def nfe_grows(nfe_forward: list[float]) -> bool:
    """Whether a run's mean forward NFE per step grew after its first epoch (which starts from the initial weights):
    the last epoch above the second by more than one evaluation."""
    return len(nfe_forward) > 1 and nfe_forward[-1] > nfe_forward[1] + 1


def ablation_differences(record: dict, variant: str = "authors") -> str:
    """'its learning-rate schedule (step decay against one-cycle), ...': what `variant` changes from the cpu profile,
    read from the configs the ablation record stores (the epochs aside: each variant trains as long as it can)."""
    configs = record["config"]["variants"]
    theirs, ours = configs[variant], configs["cpu"]
    words = {"schedule": lambda v: {"step": "step decay", "onecycle": "one-cycle", "cosine": "cosine"}.get(v, v),
             "nesterov": lambda v: "Nesterov" if v else "plain",
             "weight_decay": lambda v: number(v, zeros=False) if v else "none",
             "crop_padding": lambda v: f"padding {v}", "momentum": lambda v: number(v, zeros=False),
             "lr": lambda v: number(v, zeros=False), "batch_size": str}
    names = {"schedule": "learning-rate schedule", "nesterov": "momentum type", "weight_decay": "weight decay",
             "crop_padding": "random crops", "momentum": "momentum", "lr": "peak learning rate", "batch_size": "batch"}
    parts = [f"its {names.get(k, k.replace('_', ' '))} ({words.get(k, str)(theirs[k])} against "
             f"{words.get(k, str)(ours[k])})" for k in theirs if k != "epochs" and theirs[k] != ours.get(k)]
    return ", ".join(parts[:-1]) + (" and " if len(parts) > 1 else "") + (parts[-1] if parts else "nothing but its epochs")


def nfe_ablation_words(record: dict) -> str:
    """What the ablation shows, generated from the record: per variant the forward NFE of its first and last
    trained epoch; which schedule, if any, makes it grow; and, where the answer may lie beyond what has trained,
    the epochs each variant has left and what they cost at its own median time per epoch on this machine."""
    variants = record["metrics"]["variants"]
    parts, grew, left = [], [], []
    for variant, v in variants.items():
        name = ABLATION_NAMES[variant]
        parts.append(f"{name}, {number(v['nfe_forward'][0])} in epoch 1 and {number(v['nfe_forward'][-1])} in epoch "
                     f"{v['epochs_done']} of {v['epochs_planned']} (backward {number(v['nfe_backward'][0])} to "
                     f"{number(v['nfe_backward'][-1])})")
        if nfe_grows(v["nfe_forward"]):
            grew.append(name)
        if v["epochs_done"] < v["epochs_planned"]:
            epoch_s = float(np.median(v["time_s"]))
            left.append(f"{name} has {v['epochs_planned'] - v['epochs_done']} of its {v['epochs_planned']} epochs left, "
                        f"about {number((v['epochs_planned'] - v['epochs_done']) * epoch_s / 3600)} h of one thread "
                        f"here at its median {number(epoch_s / 60)} minutes per epoch")
    out = ["Mean forward NFE per step: " + "; ".join(parts) + "."]
    ours, authors = variants.get("cpu"), variants.get("authors")
    if grew:
        out.append(f"The forward NFE grows under {' and '.join(grew)}.")
    elif authors and ours and authors["epochs_done"] >= ours["epochs_done"]:
        out.append(f"The authors' schedule differs from ours in {ablation_differences(record)}, and over the first "
                   f"{authors['epochs_done']} epochs its forward NFE stays as flat as ours. No one of these differences "
                   f"makes it grow there, so the guess that our schedule keeps the dynamics smooth is not borne out in "
                   f"these epochs.")
    else:
        out.append(f"Under {'neither schedule' if len(variants) == 2 else 'none of the schedules'} does the forward NFE "
                   "grow after the first epoch in the epochs trained.")
    nowd = variants.get("onecycle_nowd")
    if (nowd and ours and not nfe_grows(nowd["nfe_forward"]) and not nfe_grows(ours["nfe_forward"])
            and nowd["epochs_done"] >= ours["epochs_done"] == ours["epochs_planned"]):
        out.append(f"Our cpu schedule without its weight decay stays as flat as with it over all {ours['epochs_done']} "
                   f"of its epochs (forward NFE {number(nowd['nfe_forward'][-1])} in epoch {nowd['epochs_done']}, against "
                   f"{number(ours['nfe_forward'][-1])}): the weight decay is not what keeps our ODE-Net's NFE flat.")
    if not grew and left:
        out.append("Whether it grows later in training, as the paper's does, is still open: " + "; ".join(left) + ".")
    missing = [ABLATION_NAMES[v] for v in ABLATION_NAMES if v not in variants]
    if missing:
        out.append(f"Not yet trained: {'; '.join(missing)}.")
    return " ".join(out)
