"""odecore.compute: what a record cost, runs two records share counted once, and what a retraining on another solver saved."""
import json

import pytest

from odecore import compute, results


def _run(kind: str, seed: int, seconds: float) -> dict:
    return {"kind": kind, "task": "two_circles", "size": 64, "seed": seed, "iterations": 5000,
            "train_time_s": seconds, "device_name": "cpu (1 threads)"}


def test_retrained_compares_the_runs_both_records_have():
    old = {"config": {"method": "dopri5"}, "metrics": {"runs": [_run("cnf", 0, 100.0), _run("nf", 0, 20.0)]}}
    new = {"config": {"method": "lean_dopri5"},
           "metrics": {"runs": [_run("cnf", 0, 40.0), _run("cnf", 1, 45.0), _run("nf", 0, 10.0)]}}
    pair = compute.retrained(old, new)
    # seed 1 has no old run: two pairs, 120 s against 50 s
    assert pair["runs"] == 2 and (pair["old_method"], pair["new_method"]) == ("dopri5", "lean_dopri5")
    assert pair["speedup"] == pytest.approx(2.4) and pair["old_hours"] == pytest.approx(120 / 3600)


def test_a_run_taken_over_unchanged_is_not_a_retrained_pair():
    old = {"config": {"method": "dopri5"}, "metrics": {"runs": [_run("cnf", 0, 100.0), _run("nf", 0, 20.0)]}}
    new = {"config": {"method": "lean_dopri5"}, "metrics": {"runs": [_run("cnf", 0, 40.0), _run("nf", 0, 20.0)]}}
    pair = compute.retrained(old, new)
    assert pair["runs"] == 1 and pair["speedup"] == pytest.approx(2.5)


def test_retrained_is_none_when_the_records_share_no_run():
    old = {"config": {}, "metrics": {"runs": [_run("cnf", 0, 100.0)]}}
    assert compute.retrained(old, {"config": {}, "metrics": {"runs": [_run("cnf", 1, 100.0)]}}) is None


def test_superseded_records_are_read_from_the_results_folder():
    folder = results.results_dir() / "superseded"
    folder.mkdir(parents=True)
    (folder / "cnf_mle-full-dopri5.json").write_text(json.dumps({"experiment": "cnf_mle", "profile": "full"}))
    (folder / "latent_ode-full-dopri5.json").write_text(json.dumps({"experiment": "latent_ode", "profile": "full"}))
    assert [r["experiment"] for r in results.superseded()] == ["cnf_mle", "latent_ode"]
    assert [r["experiment"] for r in results.superseded("latent_ode", "full")] == ["latent_ode"]
    assert results.superseded("cnf_mle", "reduced") == []


def test_irregular_and_regular_runs_are_two_runs():
    run = lambda sampling, seconds: {"model": "latent_ode", "n": 30, "seed": 0, "iterations": 2400,  # noqa: E731
                                     "sampling": sampling, "train_time_s": seconds}
    old = {"config": {"method": "dopri5"}, "metrics": {"runs": [run("irregular", 600.0), run("regular", 300.0)]}}
    new = {"config": {"method": "lean_dopri5"}, "metrics": {"runs": [run("irregular", 200.0), run("regular", 150.0)]}}
    pair = compute.retrained(old, new)
    assert pair["runs"] == 2 and pair["speedup"] == pytest.approx(900 / 350) and pair["new_method"] == "lean_dopri5"


def test_unattributed_epochs_are_those_without_their_own_device():
    history = [{"epoch": 1, "time_s": 1.0}, {"epoch": 2, "time_s": 1.0, "device_name": "cpu (1 threads)"},
               {"epoch": 3, "time_s": 2.0, "segments": [[1.0, None], [1.0, "cpu (2 threads)"]]}]
    record = {"device_name": "cpu (2 threads)", "metrics": {"table1": {"odenet": {"history": [history]}}}}
    assert compute.unattributed_epochs(record) == 2          # the first, and the third's part from before
    runs = {"device_name": "cpu (2 threads)", "metrics": {"runs": [{"train_time_s": 1.0, "history": history}]}}
    assert compute.unattributed_epochs(runs) == 0
    assert compute.of(record).cpu_core_hours == pytest.approx((2 * 1.0 + 1.0 + 2 * 1.0 + 2 * 1.0) / 3600)


def test_total_counts_a_run_two_records_share_once_and_equal_times_within_a_record_apart():
    table2 = {"metrics": {"runs": [_run("cnf", 0, 100.0), _run("cnf", 1, 50.0)]}}
    reuse = {"metrics": {"runs": [_run("cnf", 0, 100.0), _run("cnf", 2, 30.0)]}}      # seed 0 is table2's own run
    stacked = {"metrics": {"runs": [_run("nf", 0, 7.0), _run("nf", 1, 7.0)]}}         # a stack's even split: two runs
    both = compute.total([table2, reuse, stacked])
    assert both.hours == pytest.approx((100 + 50 + 30 + 7 + 7) / 3600) and both.cpu_core_hours == both.hours
    assert compute.of(reuse).hours == pytest.approx(130 / 3600)                        # a record's own row keeps it
    assert compute.shared(reuse, [table2]) == 1 and compute.shared(stacked, [table2, reuse]) == 0


def test_total_does_not_depend_on_the_order_of_a_stack_and_a_record_reusing_one_of_its_runs():
    stack = {"metrics": {"runs": [_run("nf", s, 7.0) for s in range(4)]}}       # a stack's even split: four runs
    reuse = {"metrics": {"runs": [_run("nf", 0, 7.0)]}}
    for order in ([stack, reuse], [reuse, stack]):
        assert compute.total(order).hours == pytest.approx(28 / 3600)
    assert compute.shared(reuse, [stack]) == 1 and compute.shared(stack, [reuse]) == 1


def test_supersede_keeps_the_record_under_its_solver_once():
    results.save("cnf_mle", "smoke", {"method": "dopri5"}, {"runs": []}, seeds=[0], wall_time_s=1.0)
    kept = results.supersede("cnf_mle", "smoke")
    assert kept.name == "cnf_mle-smoke-dopri5.json"
    assert [r["config"]["method"] for r in results.superseded("cnf_mle", "smoke")] == ["dopri5"]
    with pytest.raises(results.ResultsError, match="already kept"):
        results.supersede("cnf_mle", "smoke")
    with pytest.raises(results.ResultsError, match="no cnf_density record"):
        results.supersede("cnf_density", "smoke")
