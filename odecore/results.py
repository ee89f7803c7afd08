"""The results registry: every reproduced number, as JSON with its provenance.

A result lives at `<results dir>/<experiment>-<profile>.json` and records the config that made it
and its hash, so `cached()` can tell whether it still answers the question being asked. Files are
written atomically (temp file + rename), so an interrupted write never leaves half a result. A file
that cannot be read is an error, never a reason to silently retrain over it.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import fcntl
import hashlib
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from pathlib import Path
from typing import Any, Callable, Iterator, TypedDict

import torch

from odecore import settings

ROOT = settings.ROOT


class Record(TypedDict, total=False):
    """One stored result: what `save` writes, `load` and every experiment's `run` return."""

    experiment: str          # the result's name, e.g. "latent_ode"
    profile: str
    config: dict             # the config dataclass that made it, as JSON
    config_hash: str
    seeds: list[int]
    wall_time_s: float       # of the call that wrote the record
    subruns: dict            # count, trained_now, wall_time_s of the sub-runs it assembles (when it has any)
    device: str
    device_name: str
    torch: str
    torchdiffeq: str
    python: str
    git_commit: str
    date: str
    metrics: dict            # the numbers; the figures' arrays are stored beside it (save_arrays)


class ResultsError(RuntimeError):
    """A results file exists but cannot be used (corrupt, truncated, or not a result)."""


def results_dir() -> Path:
    """The settings' results folder (ODECORE_RESULTS_DIR, else data/results/)."""
    return settings.current().results_dir


def checkpoint_dir() -> Path:
    """The settings' folder of small trained models the chapters keep (else data/checkpoints/)."""
    return settings.current().checkpoint_dir


def scratch_dir() -> Path:
    """The settings' folder of resume state of runs in progress (else the git-ignored data/scratch/)."""
    return settings.current().scratch_dir


def as_dict(config: Any) -> dict:
    """A config dataclass (or dict) as a plain JSON-able dict."""
    if dataclasses.is_dataclass(config):
        return dataclasses.asdict(config)
    if isinstance(config, dict):
        return dict(config)
    raise TypeError(f"config must be a dataclass or dict, not {type(config).__name__}")


def config_hash(config: Any) -> str:
    """sha256 of the canonical JSON of the config: equal configs, equal hashes."""
    blob = json.dumps(as_dict(config), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def subrun_key(config: Any, *, fields: tuple[str, ...] | None = None, leave_out: tuple[str, ...] = (),
               **extra: Any) -> str:
    """The key of a sub-run: the hash of the settings its result depends on, that is the config's
    `fields` (None: all of them but `leave_out`) and `extra` (its model, seed, ...; a config field of
    the same name wins). A setting outside the key (more seeds, another figure) can change without
    the sub-run being trained again."""
    settings_ = as_dict(config)
    for name, given in (("fields", fields), ("leave_out", leave_out)):
        if isinstance(given, str):  # ("tol") is a string: every one of its letters would be a field
            raise TypeError(f"subrun_key: {name} must be a tuple of field names, not the string {given!r}")
        unknown = sorted(set(given or ()) - set(settings_))
        if unknown and name == "fields":  # a misspelt field would drop a setting from the key, and serve stale
            # results; a leave_out name the config lacks only leaves nothing out (one list serves several configs)
            raise ValueError(f"subrun_key: {name} names {', '.join(unknown)}, which {type(config).__name__} does not have")
    chosen = {k: v for k, v in settings_.items() if (fields is None or k in fields) and k not in leave_out}
    return config_hash({**extra, **chosen})


def path_for(experiment: str, profile: str) -> Path:
    return results_dir() / f"{experiment}-{settings.parse_profile(profile, 'profile')}.json"


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "odecore"],
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = out.stdout.strip() or "unknown"
    return commit + ("+dirty" if dirty.stdout.strip() else "")


def commit_words(commit: str) -> str:
    """A record's git commit as a page prints it: the first 8 digits, and where odecore had changes not yet committed
    when the record was made (`+dirty`), a note that the commit alone does not reproduce it."""
    head, dirty = commit.removesuffix("+dirty"), commit.endswith("+dirty")
    return head[:8] + (" (odecore had uncommitted changes)" if dirty else "")


def provenance(device: torch.device | None = None) -> dict:
    """Where and with what a result was made."""
    import torchdiffeq

    dev = device or settings.current().resolved_device()
    return {
        "device": dev.type,
        "device_name": settings.device_name(dev),
        "torch": torch.__version__,
        "torchdiffeq": torchdiffeq.__version__,
        "python": platform.python_version(),
        "git_commit": _git_commit(),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def _default_mode() -> int:
    """0o666 less the umask: the mode open() gives a new file (mkstemp's is 0o600, unreadable to others)."""
    umask = os.umask(0o022)   # reading the umask means setting it; put it straight back
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write via a temp file in the same folder, fsynced before the rename and the folder after it,
    so readers never see a partial file and after a crash the file is the old one or the new one.

    Raises:
        OSError: naming `path` (a full disk, a read-only folder); the old file is left intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fchmod(fh.fileno(), _default_mode())
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise OSError(err.errno, f"could not write {path}: {err.strerror or err}; "
                                     "the previous version, if any, is intact") from err
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)   # makes the rename itself durable
    finally:
        os.close(folder)


def atomic_write_text(path: Path, text: str) -> None:
    """`atomic_write_bytes` of UTF-8 text."""
    atomic_write_bytes(path, text.encode())


def check_writable(folder: Path, what: str = "results", setting: str = "ODECORE_RESULTS_DIR") -> None:
    """Raise ResultsError unless a file can be created in `folder`: checked before a compute, so
    that an unwritable folder does not cost the compute's result. `what` and `setting` name the
    folder's role and the variable that moves it, for the message."""
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise ResultsError(f"cannot write {what} to {folder} ({err}); fix its permissions or set "
                           f"{setting} to a writable folder, then rerun") from err


def check_subrun_folders(paths: tuple[Path, ...]) -> None:
    """`check_writable` for every folder a sub-run writes (summary, resume state, weights), before it
    trains: a read-only scratch or checkpoint folder is an error now, not after a chunk of training."""
    chosen = settings.current()
    roles = (("resume state", "ODECORE_SCRATCH_DIR", chosen.scratch_dir),
             ("checkpoints", "ODECORE_CHECKPOINT_DIR", chosen.checkpoint_dir),
             ("results", "ODECORE_RESULTS_DIR", chosen.results_dir))
    for folder in dict.fromkeys(Path(p).parent for p in paths):
        what, setting = next(((w, v) for w, v, root in roles if folder.resolve().is_relative_to(Path(root).resolve())),
                             ("sub-run files", "the folder"))
        check_writable(folder, what, setting)


@contextlib.contextmanager
def subrun_lock(summary: Path) -> Iterator[None]:
    """Hold an exclusive lock on the sub-run `summary` (a `.<name>.lock` file beside it) while it trains,
    so that a second run of the same chapter with the same folders (another command, or a pool task)
    waits for the first and then loads its result instead of training the same sub-run twice. Says
    on stderr when it waits. The kernel drops the lock when its holder dies, however it dies."""
    lock = summary.with_name(f".{summary.name}.lock")
    if lock in _HELD:    # this process holds it already (a stacked training storing a run it trained)
        yield
        return
    with open(lock, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for sub-run {summary.stem}: another process is training it (it holds {lock}); "
                  "its result is loaded when it finishes", file=sys.stderr, flush=True)
            fcntl.flock(fh, fcntl.LOCK_EX)
        _HELD.add(lock)
        try:
            yield
        finally:
            _HELD.discard(lock)
            fcntl.flock(fh, fcntl.LOCK_UN)


_HELD: set[Path] = set()   # the sub-run locks this process holds


def save(experiment: str, profile: str, config: Any, metrics: dict, *, seeds: list[int],
         wall_time_s: float, device: torch.device | None = None, subruns: dict | None = None) -> Record:
    """Write one result with its provenance and return the record. `wall_time_s` is the time of the
    call that wrote it; `subruns` says what the sub-runs it assembles cost (see `cached`)."""
    record = {
        "experiment": experiment,
        "profile": settings.parse_profile(profile, "profile"),
        "config": as_dict(config),
        "config_hash": config_hash(config),
        "seeds": list(seeds),
        "wall_time_s": round(float(wall_time_s), 3),
        **({"subruns": subruns} if subruns else {}),
        **provenance(device),
        "metrics": metrics,
    }
    path = path_for(experiment, profile)
    try:
        text = json.dumps(record, indent=1, sort_keys=False, allow_nan=True) + "\n"
    except (TypeError, ValueError) as err:   # keep what was computed: it may have taken hours
        rescue = path.with_suffix(".unsaved.pt")
        torch.save(record, rescue)
        raise ResultsError(f"the metrics of {experiment} [{profile}] cannot be written as JSON ({err}); "
                           f"the record is kept in {rescue} (torch.load it) until the metrics are fixed") from err
    write_or_keep(path, text, f"the record of {experiment} [{profile}]")
    return record


def write_or_keep(path: Path, text: str, what: str) -> None:
    """`atomic_write_text`, and where that fails (a full disk, a folder gone read-only) after a compute
    that may have taken hours, keep `text` elsewhere and raise a ResultsError that says where.

    Kept in a new file in the system temp folder (often another filesystem), else written to stderr.
    """
    try:
        atomic_write_text(path, text)
    except OSError as err:
        kept = keep_elsewhere(text, Path(path).stem)
        raise ResultsError(f"{what} was computed but could not be saved: {err}. It is kept {kept}; free space "
                           f"or fix the folder, then copy it to {path} (or rerun)") from err


def keep_elsewhere(text: str, stem: str) -> str:
    """Write `text` to a new file in the system temp folder, else (that fails too) to stderr; return
    where, for a message."""
    kept = None
    try:
        fd, kept = tempfile.mkstemp(prefix=f"{stem}-unsaved-", suffix=".json", dir=tempfile.gettempdir())
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        return f"in {kept}"
    except OSError:
        if kept:
            Path(kept).unlink(missing_ok=True)   # a partial copy would pass for the record
    begin, end = f"--- unsaved {stem} ---", f"--- end of unsaved {stem} ---"
    sys.stderr.write(f"{begin}\n{text}{end}\n")
    sys.stderr.flush()
    return f"on stderr only, between the lines {begin!r} and {end!r}"


def save_benchmark(name: str, figures: dict) -> Path:
    """Store a benchmark's printed figures as `<results dir>/<name>_benchmark.json`, with provenance.

    Keys of `figures` win over the provenance's (a benchmark may record its own device or date).
    """
    path = results_dir() / f"{name}_benchmark.json"
    atomic_write_text(path, json.dumps({**provenance(), **figures}, indent=1) + "\n")
    return path


def load_benchmark(name: str) -> dict | None:
    """A benchmark's saved figures (`save_benchmark`): the results folder's, else the committed copy in
    data/results/ (a page built with another results folder still shows the measured figures), else None."""
    for folder in (results_dir(), ROOT / "data" / "results"):
        path = folder / f"{name}_benchmark.json"
        if path.exists():
            return json.loads(path.read_text())
    return None


def load(experiment: str, profile: str) -> Record | None:
    """The stored record, None if there is none; ResultsError if the file is unusable."""
    path = path_for(experiment, profile)
    if not path.exists():
        return None
    fix = f"Restore it from git (git checkout -- {path.name}) or delete it to retrain."
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ResultsError(f"{path} is not valid JSON ({err}); it may be truncated. {fix}") from err
    if not isinstance(record, dict):
        raise ResultsError(f"{path} holds {json.dumps(record)[:40]}, not a result written by odecore.results. {fix}")
    missing = {"experiment", "profile", "config", "config_hash", "metrics"} - set(record)
    if missing:
        raise ResultsError(f"{path} lacks {sorted(missing)}: not a result written by odecore.results")
    if config_hash(record["config"]) != record["config_hash"]:   # edited by hand, or a merge gone wrong
        raise ResultsError(f"{path}: its config no longer matches its config_hash, so the metrics cannot be "
                           f"trusted to be that config's. {fix}")
    return record


def supersede(experiment: str, profile: str) -> Path:
    """Keep the stored record of `experiment` at `profile` in the results folder's superseded/, named by its solver
    (`<experiment>-<profile>-<method>.json`), before a retraining on another solver replaces it: the pages then set
    the old runs' cost beside the new (`superseded`, `compute.retrained`). Refuses to overwrite a kept one."""
    record = load(experiment, profile)
    if record is None:
        raise ResultsError(f"no {experiment} record at profile {profile!r} to keep")
    target = results_dir() / "superseded" / f"{experiment}-{profile}-{record['config'].get('method', 'dopri5')}.json"
    if target.exists():
        raise ResultsError(f"{target} exists: a record trained on that solver is already kept")
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(target, path_for(experiment, profile).read_text())
    return target


def superseded(experiment: str | None = None, profile: str | None = None) -> list[Record]:
    """Records replaced by a retraining on another solver, kept in the results folder's superseded/ (else the
    committed data/results/superseded/) so that a page can set what the old runs cost beside the new; only
    those of `experiment` and `profile` when given."""
    for folder in (results_dir() / "superseded", ROOT / "data" / "results" / "superseded"):
        if folder.is_dir():
            records = [json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))]
            return [r for r in records if experiment in (None, r["experiment"]) and profile in (None, r["profile"])]
    return []


def available_profiles(experiment: str) -> list[str]:
    """Profiles with a stored result for `experiment`, smallest to largest."""
    return [p for p in settings.PROFILES if path_for(experiment, p).exists()]


def cached(experiment: str, profile: str, config: Any, compute: Callable[[], dict], *,
           seeds: list[int], device: torch.device | None = None) -> Record:
    """Return the stored record when its config hash matches, else run `compute()` and store it.

    `compute` returns the metrics dict. The settings' rerun (ODECORE_RERUN=1, --rerun) forces `compute`.
    A record that assembles sub-runs (`run_or_load`) also stores their count, how many were trained by
    this call, and their summed wall time, which is what the result cost (the call itself may only
    have read finished sub-runs).
    """
    if not settings.current().rerun:
        record = load(experiment, profile)
        if record is not None and record["config_hash"] == config_hash(config):
            return record
    check_writable(path_for(experiment, profile).parent)
    start = time.perf_counter()
    _SUBRUNS.append({})
    try:
        metrics = compute()
    finally:
        seen = list(_SUBRUNS.pop().values())
    subruns = {"count": len(seen), "trained_now": sum(now for now, _ in seen),
               "wall_time_s": round(sum(wall for _, wall in seen), 3)} if seen else None
    return save(experiment, profile, config, metrics, seeds=seeds,
                wall_time_s=time.perf_counter() - start, device=device, subruns=subruns)


def arrays_path(experiment: str, profile: str) -> Path:
    """Where the arrays of a result's figures live: beside its JSON, as `<experiment>-<profile>.npz`."""
    return path_for(experiment, profile).with_suffix(".npz")


def _stamp(record: dict) -> str:
    """What ties arrays to the one record they were computed from: its config hash, its date and a
    hash of its metrics (a rerun in the same second still has other numbers)."""
    numbers = hashlib.sha256(json.dumps(record["metrics"], sort_keys=True, default=str).encode()).hexdigest()[:16]
    return f"{record['config_hash']}@{record.get('date', '?')}@{numbers}"


def save_arrays(record: dict, arrays: dict[str, Any]) -> Path:
    """Store the arrays `record`'s figures draw (samples, densities, decoded paths), stamped with the
    record, so that a figure is a pure function of stored results and never solves or loads a model."""
    import numpy as np

    buf = io.BytesIO()
    np.savez_compressed(buf, _stamp=np.array(_stamp(record)), **{k: np.asarray(v) for k, v in arrays.items()})
    path = arrays_path(record["experiment"], record["profile"])
    atomic_write_bytes(path, buf.getvalue())
    return path


def load_arrays(record: dict) -> dict | None:
    """The arrays stored for `record`; None when there are none or they belong to another record
    (an older run, or another config), since then they must be computed again."""
    import numpy as np

    path = arrays_path(record["experiment"], record["profile"])
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as err:
        # numpy takes a file that is no zip archive for a pickle and suggests allow_pickle: not the remedy here
        why = "not an .npz archive" if "pickle" in str(err) else f"{type(err).__name__}: {err}"
        raise ResultsError(f"{path} cannot be read ({why}); it is truncated or corrupt. Restore it from git "
                           f"(git checkout -- {path.name}) or delete it and run its chapter again "
                           "(python -m odecore.experiments CHAPTER), which recomputes the arrays from the "
                           "stored record without training") from err
    if str(arrays.pop("_stamp", "")) != _stamp(record):
        return None
    return arrays


def cached_arrays(record: dict, compute: Callable[[], dict[str, Any]]) -> dict:
    """The stored arrays of `record`, else `compute()`'s, stored. Rerun or not, arrays follow their
    record: a retrained record has a new date and new numbers, so its old arrays no longer match."""
    arrays = load_arrays(record)
    if arrays is None:
        save_arrays(record, compute())
        arrays = load_arrays(record)
    return arrays


_RETRAINED: set[Path] = set()   # sub-runs trained afresh in this process under rerun
_SUBRUNS: list[dict[Path, tuple[bool, float]]] = []   # per enclosing `cached`: each sub-run's (trained now?, wall time)


def _seen(summary: Path, value: dict, trained_now: bool) -> dict:
    """Tell the enclosing `cached` call, if any, about one sub-run, once however often it is asked for (a
    stacked training stores a run that the chapter's loop then loads)."""
    if _SUBRUNS:
        wall = float(value.get("provenance", {}).get("wall_time_s", value.get("wall_time_s", 0.0)) or 0.0)
        before = _SUBRUNS[-1].get(summary, (False, 0.0))
        _SUBRUNS[-1][summary] = (before[0] or trained_now, max(before[1], wall))
    return value


def run_or_load(summary: Path, compute: Callable[[], dict], *, outputs: tuple[Path, ...] = (),
                resume: tuple[Path, ...] = (), writes: tuple[Path, ...] = ()) -> dict:
    """One sub-run of an experiment (a model, a seed, a size): every chapter's one caching rule.

    Returns the summary stored at `summary` when it and the files in `outputs` (e.g. the trained
    weights) exist. Otherwise runs `compute()`, which resumes from its own state in `resume` if an
    earlier call was cut off, and stores its summary with the sub-run's own provenance (device,
    commit, date, wall time). The path encodes the sub-run's key: its name and the hash of the settings
    that decide its result. Under rerun (--rerun, ODECORE_RERUN=1) the first call for a sub-run in this
    process deletes its summary and resume state, so it trains from its start; a later call in the
    same process (a sub-run shared by two results) gets what that retraining stored.

    Before it trains, every folder it writes (those of `summary`, `outputs`, `resume` and the other
    files in `writes`) is checked to be writable, and it takes the sub-run's lock (`subrun_lock`), so
    a second process that wants the same sub-run waits and then loads it instead of training it twice.
    """
    summary = Path(summary)
    rerun = rerun_pending(summary)
    if not rerun and (done := stored(summary, outputs)) is not None:
        return _seen(summary, done, trained_now=False)
    check_subrun_folders((summary, *outputs, *resume, *writes))
    with subrun_lock(summary):
        if rerun:
            forget(summary, resume)
        elif (done := stored(summary, outputs)) is not None:   # finished by the process this one waited for
            return _seen(summary, done, trained_now=False)
        start = time.perf_counter()
        value = compute()
        value = {**value, "provenance": {**provenance(), "wall_time_s": round(time.perf_counter() - start, 3)}}
        write_or_keep(summary, json.dumps(value) + "\n", f"sub-run {summary.stem}")
    if settings.current().rerun:
        _RETRAINED.add(summary)
    return _seen(summary, value, trained_now=True)


def rerun_pending(summary: Path) -> bool:
    """Under rerun, whether the sub-run stored at `summary` has yet to train afresh in this process: until it
    has, what is stored for it is stale."""
    return settings.current().rerun and Path(summary) not in _RETRAINED


def forget(summary: Path, resume: tuple[Path, ...] = ()) -> None:
    """Delete a sub-run's summary and resume state, so that it trains from its start (the rerun step)."""
    for stale in (summary, *resume):
        Path(stale).unlink(missing_ok=True)


def stored(summary: Path, outputs: tuple[Path, ...] = ()) -> dict | None:
    """The finished sub-run's summary when it and its outputs exist, else None: what makes a sub-run finished."""
    if not (summary.exists() and all(Path(p).exists() for p in outputs)):
        return None
    try:
        return json.loads(summary.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ResultsError(f"{summary} is not valid JSON ({err}); delete it to train that sub-run again") from err


def label(record: dict) -> str:
    """Short provenance tag for tables and captions: 'profile reduced, 1 CPU thread, 2026-11-25', with the device the
    training ran on (odecore.compute.devices, the formatter every page uses), not that of the assembling run."""
    from odecore import compute

    return f"profile {record['profile']}, {compute.devices(record)}, {record.get('date', '?')[:10]}"
