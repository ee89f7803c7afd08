"""What a record's results cost to make: the one definition every page uses.

A record's compute is the time spent *training* the models behind it, read from the record itself,
never the wall time of the run that assembled it (which only loads finished sub-runs and can take
under a second): for a record of many runs, the sum of each run's `train_time_s`; for a record of
epochs (MNIST), the sum of every epoch's `time_s`; for a single run, its `train_time_s`; otherwise
the wall time of the run that made it. Hours times the CPU threads each run used give CPU
core-hours; hours on a GPU are GPU-hours. An epoch names the device and threads it trained on (its parts,
where an interruption split it across thread counts); an epoch from before that was recorded, the record's.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

THREADS = re.compile(r"cpu \((\d+) threads?\)")
# A record that trains nothing (it measures, or evaluates stored models): its compute is its own run's time.
NO_TRAINING = "no training: the time of the run that made the record"


@dataclass(frozen=True)
class Compute:
    hours: float           # training wall hours, summed over the pieces
    cpu_core_hours: float
    gpu_hours: float
    source: str            # how the hours were read: "13 runs", "15 epochs", "one run", or NO_TRAINING
    devices: tuple[str, ...]


def _epochs(tree) -> list[dict]:
    """Every epoch dict (with time_s) under a `history` key, at any depth of the metrics."""
    found: list[dict] = []

    def walk(node, in_history: bool = False) -> None:
        if isinstance(node, dict):
            if in_history and "time_s" in node:
                found.append(node)
                return
            for key, value in node.items():
                walk(value, in_history or key == "history")
        elif isinstance(node, list):
            for value in node:
                walk(value, in_history)

    walk(tree)
    return found


def pieces(record: dict) -> tuple[list[tuple[float, str]], str]:
    """(seconds, device name) per piece of training behind a record, and what the pieces are."""
    m, device = record["metrics"], record.get("device_name", "?")
    # Figure 4 keeps its variant runs (one setting changed) apart from the runs its tables average: both are training.
    runs = [r for r in m.get("runs", []) + m.get("cnf_variants", [])
            if isinstance(r, dict) and ("train_time_s" in r or "time_s" in r)]
    if runs:
        return ([(r.get("train_time_s", r.get("time_s")), r.get("device_name", device)) for r in runs],
                f"{len(runs)} run{'s' if len(runs) != 1 else ''}")
    history = _epochs(m)
    if history:   # an epoch says where it trained (odecore.train.fit), else the record's device stands for it
        return [(seconds, where or device) for e in history
                for seconds, where in e.get("segments", [(e["time_s"], e.get("device_name"))])], f"{len(history)} epochs"
    if "train_time_s" in m:
        return [(m["train_time_s"], device)], "one run"
    return [(record.get("wall_time_s") or 0.0, device)], NO_TRAINING


def unattributed_epochs(record: dict) -> int:
    """How many epochs of a record kept by epoch (MNIST) trained, in whole or in part, before an epoch named its own
    device and threads: `of` counts those parts at the record's, that of the process that assembled it, which may
    not be what they trained on. 0 for a record of runs, whose pieces are the runs."""
    if pieces(record)[1].rstrip("s").endswith(" run"):
        return 0
    return sum(1 for e in _epochs(record["metrics"])
               if "device_name" not in e and any(d is None for _, d in e.get("segments", [(0.0, None)])))


def of(record: dict) -> Compute:
    """The training compute behind `record`."""
    return _sum(*pieces(record))


def _sum(parts: list[tuple[float, str]], source: str) -> Compute:
    hours = cpu = gpu = 0.0
    for seconds, device in parts:
        h = seconds / 3600
        hours += h
        threads = THREADS.fullmatch(device.strip())
        if threads:
            cpu += h * int(threads.group(1))
        elif device.startswith("cpu"):
            cpu += h
        else:
            gpu += h
    return Compute(hours, cpu, gpu, source, tuple(sorted({d for _, d in parts})))


def describe(c: Compute) -> str:
    """'6.92 h, 13.8 CPU core-h' (and GPU-hours where there are any): how every page writes a record's compute."""
    from odecore.tables import number

    cost = [f"{number(c.cpu_core_hours)} CPU core-h" if c.cpu_core_hours or not c.gpu_hours else "",
            f"{number(c.gpu_hours)} GPU-h" if c.gpu_hours else ""]
    return f"{number(c.hours)} h, " + " + ".join(s for s in cost if s)


def shown() -> dict[str, dict]:
    """Every stored record the book shows (per experiment, the profile its chapter displays): name -> record."""
    from odecore import profiles, results
    from odecore.experiments import MODULES

    out = {}
    for name in MODULES:
        profile = profiles.current(name)
        if profile in results.available_profiles(name):
            out[name] = results.load(name, profile)
    return out


def total(records: list[dict]) -> Compute:
    """The compute of several records together, a run that two of them share counted once. Such a run (the sampling
    comparison and the density test reuse Table 2's runs) is stored in both with the same measured time on the same
    device, and separate trainings never measure the same time to the nanosecond; within one record equal times
    are separate runs (the NFs trained stacked share each chunk's time evenly), so a piece counts as often as the
    record holding the most copies of it has it."""
    held: Counter = Counter()           # the most copies of each piece one record has had so far
    parts: list[tuple[float, str]] = []
    for record in records:
        mine = Counter(pieces(record)[0])
        for piece, n in mine.items():
            parts += [piece] * max(0, n - held[piece])
            held[piece] = max(held[piece], n)
    return _sum(parts, f"{len(records)} records")


def shared(record: dict, others: list[dict]) -> int:
    """How many of `record`'s pieces of training are also pieces of one of `others` (the same run, stored twice;
    equal pieces count as often as both sides have them)."""
    theirs: Counter = Counter()
    for r in others:
        theirs |= Counter(pieces(r)[0])          # the most copies any one of them has
    mine = Counter(pieces(record)[0])
    return sum(min(n, theirs[piece]) for piece, n in mine.items())


def devices(record: dict) -> str:
    """Where a record's training ran, in words, from the pieces themselves ('1 CPU thread'; '1 CPU thread; 2 CPU
    threads' where they differ): the one formatter of a record's device on every page (results.label uses it).
    A record's own device_name is that of the run that assembled it, which need not be the training's."""
    return "; ".join(device_words(d) for d in of(record).devices) or "?"


def device_words(name: str) -> str:
    """A record's device name as prose: 'cpu (1 threads)' -> '1 CPU thread', 'cuda (NVIDIA H100)' unchanged."""
    threads = THREADS.fullmatch(name.strip())
    if threads:
        n = int(threads.group(1))
        return f"{n} CPU thread{'s' if n != 1 else ''}"
    return name


def _run_key(run: dict) -> tuple:
    """What makes two runs the same work: the model, its data and size, the seed, the iterations."""
    return (run.get("kind", run.get("model")), run.get("task"), run.get("size", run.get("n")), run["seed"],
            run.get("iterations"), run.get("sampling"))


def retrained(old: dict, new: dict) -> dict | None:
    """A record trained again (`new`) against the one it replaced (`old`): the training time of the runs both
    have (same model, data, seed and iterations) and the new one trained again (a run taken over unchanged has
    the same measured time in both and is left out), so the two times are of the same work, and each record's
    solver. None when no run was trained again."""
    def runs(record: dict) -> dict[tuple, dict]:
        return {_run_key(r): r for r in record["metrics"].get("runs", []) if "train_time_s" in r}

    before, after = runs(old), runs(new)
    # a run the new record took over from the old one unchanged (Figure 4's NFs, which solve no ODE) was not trained
    # again: the same measured time in both, so it is no pair
    pairs = [(before[k], r) for k, r in after.items() if k in before and before[k]["train_time_s"] != r["train_time_s"]]
    if not pairs:
        return None
    old_s, new_s = sum(a["train_time_s"] for a, _ in pairs), sum(b["train_time_s"] for _, b in pairs)
    return {"runs": len(pairs), "old_method": old["config"].get("method"), "new_method": new["config"].get("method"),
            "old_hours": old_s / 3600, "new_hours": new_s / 3600, "speedup": old_s / new_s,
            "devices": sorted({r.get("device_name", "?") for pair in pairs for r in pair})}


def book_total() -> str:
    """What the book's results cost, said once for every page: the records the chapters show, and every stored
    record (the smaller profiles' too, which some tables set beside them)."""
    from odecore import results
    from odecore.experiments import MODULES

    shown_records = list(shown().values())
    every = [results.load(e, p) for e in MODULES for p in results.available_profiles(e) if p != "smoke"]
    return (f"The results the book shows (for each experiment, the profile its chapter displays) took "
            f"{describe(total(shown_records))} of training; every stored record, the smaller profiles' too, "
            f"took {describe(total(every))}.")
