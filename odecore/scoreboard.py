"""The reproduction page's table: every item of the paper, the paper's number, ours, and a status.

Built from odecore.paper.ITEMS and whatever data/results/ holds, so it fills itself in as
chapters land. Each experiment module turns its record into rows via `scoreboard(record)`:
dicts with item, quantity, paper, ours, unit, tolerance (absolute; a difference within it
counts as reproduced) and an optional note.
"""
from __future__ import annotations

import importlib
import re

import pandas as pd

from odecore import paper, results
from odecore.experiments import MODULES


def status(row: dict, profile: str) -> str:
    """The row's verdict in the ledger's words (odecore.ledger.numeric, or the row's own verdict for a qualitative
    claim): 'reproduced', 'deviates by +x unit', 'not reproduced', 'measured only', 'drawn' (a figure, no number),
    or 'not yet run', tagged with a profile other than full."""
    from odecore import ledger

    ours, ref = row.get("ours"), row.get("paper")
    if ours is None:
        return "not yet run"
    if row.get("verdict"):
        text = row["verdict"]
    elif isinstance(ours, str):
        text = "drawn"
    elif not isinstance(ref, (int, float)):
        text = "measured only"
    else:
        verdict, detail = ledger.numeric(ours, ref, row.get("tolerance"), row.get("unit") or "")
        text = verdict if verdict != "deviates" else "deviates by " + detail.rsplit(": ", 1)[1]
    return text if profile == "full" else f"{text} ({profile} profile)"


def rows_for(experiment: str) -> list[dict]:
    """Scoreboard rows of the largest stored profile of `experiment`, with provenance; [] if none.

    The smoke profile never counts: its numbers test the code path, they measure nothing.
    """
    have = [p for p in results.available_profiles(experiment) if p != "smoke"]
    if not have or experiment not in MODULES:
        return []
    record = results.load(experiment, have[-1])
    module = importlib.import_module(MODULES[experiment])
    out = []
    for row in module.scoreboard(record):
        out.append({**row, "profile": record["profile"], "status": status(row, record["profile"]),
                    "source": results.path_for(experiment, record["profile"]).name,
                    "device": record.get("device_name", "?"), "date": record.get("date", "?")[:10]})
    return out


def anchor(item: str, quantity: str) -> str:
    """A row's stable anchor on the reproduction page: its item and quantity up to the first parenthesis, as a slug
    ("Table 1", "ODE-Net test error" -> "sb-table-1-ode-net-test-error"), so a citation can link to one number."""
    words = re.sub(r"[^a-z0-9]+", "-", f"{item} {quantity.split(' (')[0]}".lower()).strip("-")
    return f"sb-{words}"


# Solver, data set and setting names as words on the page (the records keep the code's names).
WORDS = {"dopri5_seminorm": "dopri5 with the seminorm", "scipy LSODA": "LSODA", "lsoda": "LSODA",
         "two_circles": "two circles", "two_moons": "two moons", "tol 1e-3": "tolerance 10⁻³",
         "K=": "K = ", "M=": "M = ", " it.": " iterations",
         "RMSE over the 100 times beyond the window, ": "RMSE beyond the window, "}
UNIT_WORDS = {"%": "%", "MiB/step": "MiB per step", "M": "M", "nats": "nats", "targets": "targets", "MiB": "MiB"}


def _words(text: str) -> str:
    for code, said in WORDS.items():
        text = text.replace(code, said)
    return text


def _with_unit(value, unit: str, paper_value: bool = False) -> str:
    """A cell: the number (the paper's as printed, ours through tables.number) and its unit; O(.) claims as math."""
    from odecore.tables import number

    if isinstance(value, str):
        return "$" + value.replace("L~", r"\tilde L") + "$" if value.startswith("O(") else value
    if value is None:
        return "-"
    text = paper.printed(value) if paper_value else number(value)
    unit = UNIT_WORDS.get(unit or "", unit or "")
    if type(value) is int and value == 1 and len(unit) > 2 and unit.isalpha() and unit.endswith("s"):   # "1 target"
        unit = unit[:-1]
    return f"{text} {unit}".strip()


def _within(status: str, row: dict) -> str:
    """A reproduced number's status with the tolerance it is within ("reproduced (within ± 0.1 percentage points;
    cpu profile)"), so that a reader sees what "reproduced" allowed; other statuses as they are."""
    from odecore import ledger
    from odecore.tables import number

    tol, ref = row.get("tolerance"), row.get("paper")
    if not status.startswith("reproduced") or tol is None or not isinstance(ref, (int, float)) or row.get("verdict"):
        return status
    unit = row.get("unit") or ""
    said = ledger.UNITS.get(unit, (None, f" {UNIT_WORDS.get(unit, unit)}"))[1].rstrip()
    rest = status[len("reproduced"):].strip(" ()")
    return f"reproduced (within ± {number(tol, zeros=False)}{said}" + (f"; {rest})" if rest else ")")


def page_frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    """The scoreboard as the reproduction page shows it: the headline (every quantity the paper gives a number or a
    claim for) and the detail (what we measured where the paper gives none, and the figures drawn). Six columns,
    each row with its anchor in the item cell, the quantity in words without its parenthetical detail (which the
    chapter gives), each number with its unit, the profile in the status, the record's file unbroken."""
    df = table()
    units = [r.get("unit") for r in _rows()]
    frame = pd.DataFrame({
        "item": [f'<span id="{anchor(i, q)}"></span>{i}' for i, q in zip(df["item"], df["quantity"])],
        "quantity": [_words(q.split(" (")[0]) for q in df["quantity"]],
        "paper": [_with_unit(x, u, paper_value=True) for x, u in zip(df["paper"], units)],
        "ours": [_with_unit(x, u) for x, u in zip(df["ours"], units)],
        "status": [_within(status, r) for status, r in zip(df["status"], _rows())],
        "record": [f'<span class="record">{x}</span>' if x != "-" else x for x in df["source"]]})
    headline = df["paper"].map(lambda x: isinstance(x, (int, float)) and not isinstance(x, bool)) | df["claim"]
    detail = frame[~headline.to_numpy()].drop(columns="paper")   # the paper gives none of these a number
    return frame[headline.to_numpy()].reset_index(drop=True), detail.reset_index(drop=True)


def page_frame() -> pd.DataFrame:
    """Headline and detail together (`page_frames`)."""
    headline, detail = page_frames()
    return pd.concat([headline, detail.assign(paper="-")[headline.columns]], ignore_index=True)


def _rows() -> list[dict]:
    """table()'s rows as dicts, in its order (their units, which the table leaves out)."""
    measured = [row for exp in MODULES for row in rows_for(exp)]
    out: list[dict] = []
    for item in paper.ITEMS:
        out.extend([r for r in measured if r["item"] == item["id"]] or [{"item": item["id"]}])
    return out


def table() -> pd.DataFrame:
    """One row per reproduced quantity (from any experiment), and 'not yet run' for items with none."""
    measured = [row for exp in MODULES for row in rows_for(exp)]
    rows: list[dict] = []
    for item in paper.ITEMS:
        mine = [r for r in measured if r["item"] == item["id"]]
        if mine:
            rows.extend(mine)
        else:
            rows.append({"item": item["id"], "quantity": item["what"], "paper": None, "ours": None,
                         "status": "not yet run", "profile": "-", "source": "-"})
    cols = ["item", "quantity", "paper", "ours", "status", "profile", "source"]
    out = pd.DataFrame(rows)
    out["claim"] = [bool(r.get("verdict")) for r in rows]   # a qualitative claim of the paper, judged
    return out[cols + ["claim"]]


README_START, README_END = "<!-- scoreboard:start -->", "<!-- scoreboard:end -->"


def markdown() -> str:
    """The table as Markdown, for the README (regenerate with `python -m odecore.scoreboard`)."""
    from odecore.tables import number

    def cell(x, column: str) -> str:   # the book's formatting: the paper's numbers as printed, ours by tables.number
        if x is None or (isinstance(x, float) and pd.isna(x)):
            return "-"
        if isinstance(x, (int, float)) and not isinstance(x, bool):
            return paper.printed(x) if column == "paper" else number(x)
        return str(x)

    df = table().drop(columns="claim")
    lines = ["| " + " | ".join(df.columns) + " |", "|" + " --- |" * len(df.columns)]
    lines += ["| " + " | ".join(cell(v, c) for v, c in zip(row, df.columns)) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def update_readme(path) -> bool:
    """Replace the README's generated block; True if it changed."""
    from pathlib import Path

    text = Path(path).read_text()
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    new = f"{head}{README_START}\n{markdown()}\n{README_END}{tail}"
    Path(path).write_text(new)
    return new != text


if __name__ == "__main__":
    changed = update_readme(results.ROOT / "README.md")
    print("README.md scoreboard", "updated" if changed else "already current")
