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
    """'reproduced', 'deviates by +x unit', 'measured', or 'not yet run', tagged with a non-full profile."""
    ours, ref = row.get("ours"), row.get("paper")
    if ours is None:
        return "not yet run"
    if not isinstance(ref, (int, float)):
        text = "measured (paper gives no number)"
    elif row.get("tolerance") is not None and abs(ours - ref) <= row["tolerance"]:
        text = "reproduced"
    else:
        text = f"deviates by {ours - ref:+.3g}{(' ' + row['unit']) if row.get('unit') else ''}"
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


def page_frame() -> pd.DataFrame:
    """The scoreboard as the reproduction page shows it: six columns, each row with its anchor in the item cell,
    the quantity without its parenthetical detail (which the chapter gives), the profile in the status."""
    from odecore.tables import number

    df = table()
    return pd.DataFrame({
        "item": [f'<span id="{anchor(i, q)}"></span>{i}' for i, q in zip(df["item"], df["quantity"])],
        "quantity": [q.split(" (")[0] for q in df["quantity"]],
        "paper": [x if isinstance(x, str) else number(x, 4) for x in df["paper"]],
        "ours": [x if isinstance(x, str) else number(x) for x in df["ours"]],
        "status": df["status"].str.replace("measured (paper gives no number)", "measured only", regex=False),
        "record": [f"`{x}`" if x != "-" else x for x in df["source"]]})


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
    return pd.DataFrame(rows)[cols]


README_START, README_END = "<!-- scoreboard:start -->", "<!-- scoreboard:end -->"


def markdown() -> str:
    """The table as Markdown, for the README (regenerate with `python -m odecore.scoreboard`)."""
    def cell(x) -> str:
        if x is None or (isinstance(x, float) and pd.isna(x)):
            return "-"
        return f"{x:.4g}" if isinstance(x, float) else str(x)

    df = table()
    lines = ["| " + " | ".join(df.columns) + " |", "|" + " --- |" * len(df.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
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
