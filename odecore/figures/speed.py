"""The side-by-side run against diffrax (benchmarks/diffrax.py) as the chapters show it: a table and a sentence.

Both read the benchmark's saved figures (`results.load_benchmark("diffrax")`): every number is from one
run in which odecore's and diffrax's steps alternated on the same machine, weights, batch and thread.
"""
from __future__ import annotations

import pandas as pd

from odecore.tables import number

METHOD_WORDS = {"dopri5": "torchdiffeq's dopri5", "lean_dopri5": "lean_dopri5",
                "lean_dopri5+compile": "lean_dopri5, compiled", "diffrax Dopri5, jax.jit": "diffrax, jax.jit"}


def times(ratio: float | None) -> str:
    """'1.17×' for a time ratio, '-' for the reference itself."""
    return "-" if ratio is None else f"{number(ratio)}×"


def _rows(bench: dict, workload: str) -> list[dict]:
    return [r for r in bench["rows"] if r["workload"] == workload]


def diffrax_frame(bench: dict, workload: str) -> pd.DataFrame:
    """One row per model state and solver: ms per training step, forward NFE, the step's time against
    diffrax's (> 1: diffrax is faster) and the memory a step keeps (odecore: the tensors autograd saves
    for backward; diffrax: XLA's temporary buffers of the compiled step)."""
    rows = _rows(bench, workload)
    states = {r["weights"] for r in rows}
    out = []
    for r in rows:
        row = {"weights": "trained" if r["weights"].startswith("trained") else "initial"} if len(states) > 1 else {}
        row.update({"solver": METHOD_WORDS.get(r["method"], r["method"]), "ms / step": 1e3 * r["s_per_step"],
                    "forward NFE": r["nfe_forward"], "against diffrax": times(r.get("ratio_per_step")),
                    "step memory (MB)": r.get("saved_for_backward_mb", r.get("xla_temp_mb"))})
        out.append(row)
    return pd.DataFrame(out)


def diffrax_sentence(bench: dict, workload: str) -> str:
    """Per model state, odecore's step time against diffrax's, compiled, eager and with torchdiffeq."""
    parts = []
    for weights in dict.fromkeys(r["weights"] for r in _rows(bench, workload)):
        by = {r["method"]: r for r in _rows(bench, workload) if r["weights"] == weights}
        ref = by.get("diffrax Dopri5, jax.jit")
        if ref is None:
            return "diffrax was not installed when the benchmark ran, so there is no comparison."
        state = "the trained model" if weights.startswith("trained") else "the model at initialisation"
        ours = [f"{times(by[m]['ratio_per_step'])} {words}" for m, words in
                (("lean_dopri5+compile", "with lean_dopri5 compiled"), ("lean_dopri5", "without compiling"),
                 ("dopri5", "with torchdiffeq's dopri5")) if m in by]
        ours[0] = ours[0].replace("×", "× as long", 1)
        listed = ", ".join(ours[:-1]) + f" and {ours[-1]}" if len(ours) > 1 else ours[0]
        parts.append(f"on {state} diffrax's step takes {number(1e3 * ref['s_per_step'])} ms "
                     f"({number(ref['nfe_forward'])} forward evaluations) and odecore's takes {listed}")
    text = "; ".join(parts)
    return text[0].upper() + text[1:] + "."


def breakdown_frame(bench: dict) -> pd.DataFrame | None:
    """Where odecore's latent ODE iteration spends its time (ms), per solver, when the run measured it."""
    rows = bench.get("latent_ode_breakdown")
    if not rows:
        return None
    return pd.DataFrame([{"solver": METHOD_WORDS.get(b["method"], b["method"]), **b["parts_ms"],
                          "whole iteration": b["ms_per_iteration"]} for b in rows])


def breakdown_sentence(bench: dict) -> str:
    """What the breakdown says about the distance to diffrax: the compiled iteration's parts outside the solve
    (encoder; decoder, loss and Adam) against diffrax's whole iteration. Empty when not measured."""
    rows = {b["method"]: b for b in bench.get("latent_ode_breakdown") or []}
    ref = next((r for r in _rows(bench, "latent_ode") if r["side"] == "diffrax"), None)
    ours = rows.get("lean_dopri5+compile") or rows.get("lean_dopri5")
    if ours is None or ref is None:
        return ""
    parts = ours["parts_ms"]
    solve = parts["solve, forward"] + parts["solve, backward"]
    outside = ours["ms_per_iteration"] - solve
    whole = next((r for r in _rows(bench, "latent_ode") if r["side"] == "odecore" and r["method"] == ours["method"]), None)
    timed = (f" (timed part by part, in rounds of its own; the side-by-side rounds above gave the same iteration "
             f"{number(1e3 * whole['s_per_step'])})" if whole else "")
    return (f"With {METHOD_WORDS[ours['method']]}, the solve's forward and backward passes take {number(solve)} ms of "
            f"the iteration's {number(ours['ms_per_iteration'])}{timed}; the encoder's 30 recurrent steps and the decoder, "
            f"likelihood and Adam step take the other {number(outside)} ms, {times(outside / (1e3 * ref['s_per_step']))} "
            "diffrax's whole iteration: eager PyTorch pays for each small operation in those parts too, and only the "
            "solver's steps are compiled here.")


def older_weights(bench: dict | None, record: dict, replaced: dict | None) -> str:
    """A sentence when a benchmark's trained rows timed another checkpoint than that of `record` (the chapter's Figure 5
    record): its weights label names the solver they were trained with (benchmarks since it did), else it ran
    before the record was made and so timed the checkpoint of the record that one replaced (`replaced`). Empty when
    the benchmark timed the current weights, or there is none."""
    rows = (bench or {}).get("rows") or (bench or {}).get("figure5") or []    # the diffrax and the CNF benchmark
    trained = {r["weights"] for r in rows if r.get("weights", "").startswith("trained")}
    if not trained:
        return ""
    current = (f"({record['profile']} profile, " if "profile" in record else "(", f"trained with "
               f"{record['config'].get('method', 'dopri5')})")
    named = [w for w in trained if "trained with" in w]
    if named:
        if all(current[0] in w and w.endswith(current[1]) for w in named):
            return ""
    elif bench.get("date", "") >= record.get("date", ""):
        return ""
    solver = f", trained with {replaced['config'].get('method', 'dopri5')}" if replaced else ""
    return (f"The benchmark's trained rows timed an earlier Figure 5 checkpoint, that of the record the current one "
            f"replaced{solver}, on the same settings and iterations: the benchmark ran on {bench['date'][:10]}, before "
            f"the current record ({record['date'][:10]}).")
