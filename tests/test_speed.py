"""The diffrax side-by-side as the chapters show it (odecore.figures.speed) and results.load_benchmark."""
from __future__ import annotations

import json

from odecore import results
from odecore.figures import speed


def _row(workload, method, s, ratio=None, weights="initial weights (seed 0)", side="odecore"):
    r = {"workload": workload, "method": method, "weights": weights, "side": side, "s_per_step": s,
         "nfe_forward": 74, "saved_for_backward_mb": 1.7}
    return r | ({"ratio_per_step": ratio} if ratio is not None else {})


BENCH = {"rows": [_row("latent_ode", "dopri5", 0.045, 6.9), _row("latent_ode", "lean_dopri5", 0.0205, 3.1),
                  _row("latent_ode", "lean_dopri5+compile", 0.018, 2.75),
                  _row("latent_ode", "diffrax Dopri5, jax.jit", 0.0066, side="diffrax")],
         "latent_ode_breakdown": [{"method": "lean_dopri5+compile", "ms_per_iteration": 18.0, "nfe_forward": 74,
                                   "parts_ms": {"encoder, forward and backward": 4.0, "solve, forward": 5.0,
                                                "solve, backward": 4.0, "decoder, loss and Adam": 5.0}}]}


def test_the_table_says_each_solver_against_diffrax_in_few_columns():
    frame = speed.diffrax_frame(BENCH, "latent_ode")
    assert list(frame["against diffrax"]) == ["6.90×", "3.10×", "2.75×", "-"]
    assert "weights" not in frame.columns and len(frame.columns) <= 6     # one model state: no column for it
    assert frame["solver"].iloc[-1] == "diffrax, jax.jit"


def test_the_sentences_read_the_ratios_and_the_breakdown():
    text = speed.diffrax_sentence(BENCH, "latent_ode")
    assert "6.60 ms" in text and "2.75× as long with lean_dopri5 compiled" in text and "6.90× with torchdiffeq" in text
    parts = speed.breakdown_sentence(BENCH)
    # outside the solve: 18 - (5 + 4) = 9 ms, 9 / 6.6 = 1.36 of diffrax's whole iteration
    assert "take 9 ms of the iteration's 18" in parts and "1.36× diffrax's whole iteration" in parts
    assert speed.breakdown_sentence({"rows": BENCH["rows"]}) == ""
    no_jax = {"rows": BENCH["rows"][:3]}
    assert "not installed" in speed.diffrax_sentence(no_jax, "latent_ode")


def test_load_benchmark_prefers_the_results_folder_then_the_committed_copy(tmp_path, monkeypatch):
    monkeypatch.setenv("ODECORE_RESULTS_DIR", str(tmp_path))
    committed = results.ROOT / "data" / "results" / "diffrax_benchmark.json"
    assert results.load_benchmark("diffrax") == (json.loads(committed.read_text()) if committed.exists() else None)
    (tmp_path / "diffrax_benchmark.json").write_text(json.dumps({"rows": []}))
    assert results.load_benchmark("diffrax") == {"rows": []}
    assert results.load_benchmark("no_such") is None


def test_a_benchmark_of_an_earlier_checkpoint_says_so():
    record = {"date": "2026-12-07T22:00:00+00:00", "profile": "full", "config": {"method": "lean_dopri5"}}
    replaced = {"config": {"method": "dopri5"}}
    old_label = {"date": "2026-12-06T20:00:00+00:00", "rows": [{"weights": "initial weights (seed 0)"},
                                                               {"weights": "trained Figure 5 checkpoint (full profile, 5000 it.)"}]}
    assert "record the current one replaced, trained with dopri5" in speed.older_weights(old_label, record, replaced)
    assert speed.older_weights({**old_label, "date": "2026-12-08T00:00:00+00:00"}, record, replaced) == ""   # ran after it
    named = {"date": "2026-12-06T20:00:00+00:00",
             "figure5": [{"weights": "trained Figure 5 checkpoint (full profile, 5000 it., trained with lean_dopri5)"}]}
    assert speed.older_weights(named, record, replaced) == ""           # the label says which weights: today's
    assert speed.older_weights(named, {**record, "config": {"method": "dopri5"}}, None).startswith("The benchmark's trained rows")
    assert speed.older_weights(named, {**record, "profile": "reduced"}, replaced) != ""   # another profile's checkpoint
    assert speed.older_weights(None, record, replaced) == ""
    assert speed.older_weights({"rows": [{"weights": "initial weights (seed 0)"}], "date": ""}, record, replaced) == ""
