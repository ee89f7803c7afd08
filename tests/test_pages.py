"""How the book writes numbers, tables, claims and citations (odecore.tables, ledger, cite, scoreboard), and
the page sources' own rules that a program can check without a browser (../shared/BOOK.md)."""
from __future__ import annotations

import json
import math
import re

import pandas as pd
import pytest

from odecore import cite, ledger, results, scoreboard, tables


def test_number_never_prints_a_repr():
    assert tables.number(None) == tables.number(float("nan")) == "-"
    assert tables.number(True) == "yes" and tables.number(False) == "no"
    assert tables.number(20.0) == "20" and tables.number(12345) == "12,345"
    assert tables.number(0.39) == "0.390" and tables.number(1254.25) == "1250" and tables.number(-0.2169) == "−0.217"
    assert tables.number(0.19) == "0.190" and tables.number(22.43) == "22.4"      # trailing zeros kept: 3 digits
    assert tables.number(3.8147e-06) == "3.81 × 10⁻⁶" and tables.number(5e-4, zeros=False) == "5 × 10⁻⁴"
    assert tables.number(0.16421, digits=4) == "0.1642" and tables.signed(0.48) == "+0.480"


def test_the_papers_numbers_print_as_the_paper_prints_them():
    from odecore import paper

    assert [paper.printed(x) for x in (1.60, 0.60, 0.3937, 0.5)] == ["1.60", "0.60", "0.3937", "0.5"]


def test_mean_sd_keeps_the_mean_and_sd_to_the_same_decimals():
    assert tables.mean_sd([0.40, 0.38]) == "0.390 ± 0.014"
    assert tables.mean_sd([0.40, 0.38], digits=2) == "0.39 ± 0.01"
    assert tables.mean_sd([0.5]) == "0.500" and tables.mean_sd([]) == "-" and tables.mean_sd([-0.5, -0.7]) == "−0.600 ± 0.141"


def test_words_say_settings_in_words():
    assert tables.words([30, 50, 100]) == "30, 50, 100"
    assert tables.words([math.pi, 3 * math.pi]) == "3.14, 9.42" and tables.words(5e-4) == "5 × 10⁻⁴"
    assert tables.words({"mlp": 40}) == "mlp 40" and tables.words(None) == "-"


def test_markdown_formats_every_cell_and_escapes_pipes():
    df = pd.DataFrame({"model": ["a|b"], "error": [0.123456], "missing": [None]})
    text = tables.markdown(df)
    assert text.splitlines()[0] == "| model | error | missing |"
    assert "a\\|b" in text and "0.123" in text and "0.123456" not in text and "None" not in text


def test_the_ledger_has_a_verdict_and_evidence_for_every_claim(monkeypatch):
    monkeypatch.delenv("ODECORE_RESULTS_DIR")   # the committed records
    rows = ledger.claims()
    assert len(rows) >= 15                              # Table 1 and 2 cells and the qualitative claims
    assert {r["verdict"] for r in rows} <= set(ledger.VERDICTS)
    assert all(re.fullmatch(r"(adjoint|mnist|cnf|latent_ode)\.html#[a-z0-9-]+", r["evidence"]) for r in rows)
    assert all((results.results_dir() / r["record"]).exists() for r in rows)
    counts = ledger.counts(rows)
    assert sum(counts.values()) == len(rows) and ledger.summary(rows).startswith(f"{len(rows)} claims")


def test_the_ledger_follows_the_records(monkeypatch, tmp_path):
    """A verdict is computed, not typed: an ODE-Net error moved off the paper's turns its claim to 'deviates'."""
    monkeypatch.setenv("ODECORE_RESULTS_DIR", str(tmp_path))
    committed = results.ROOT / "data" / "results"
    record = json.loads((committed / "mnist-cpu.json").read_text())
    record["metrics"]["table1"]["odenet"]["test_error_mean"] = 0.9
    record["metrics"]["table1"]["odenet"]["test_error"] = [0.9, 0.9]
    results.save("mnist", "cpu", record["config"], record["metrics"], seeds=record["seeds"], wall_time_s=1.0)
    row = next(r for r in ledger.claims() if r["claim"].startswith("Table 1: ODE-Net"))
    assert row["verdict"] == "deviates" and row["profile"] == "cpu"
    assert "+0.480 percentage points" in row["detail"] and "0.900 ± 0.000 against 0.42 %" in row["detail"]


def test_citation_bib_is_what_cite_generates():
    assert (results.ROOT / "CITATION.bib").read_text() == cite.bibtex()
    cff = (results.ROOT / "CITATION.cff").read_text()
    assert f"version: {cite.version()}" in cff
    # GitHub's "Cite this repository" takes preferred-citation: the reproduction, with the paper under references
    preferred = cff.split("preferred-citation:")[1]
    assert "type: software" in preferred and cite.TITLE in preferred and preferred.count(f"version: {cite.version()}") == 1
    assert "Neural Ordinary Differential Equations\"" in cff.split("references:")[1].split("preferred-citation:")[0]


def test_every_scoreboard_row_has_its_own_anchor(monkeypatch):
    monkeypatch.delenv("ODECORE_RESULTS_DIR")   # the committed records
    table = scoreboard.table()
    anchors = [scoreboard.anchor(i, q) for i, q in zip(table["item"], table["quantity"])]
    assert len(set(anchors)) == len(anchors) and all(re.fullmatch(r"sb-[a-z0-9-]+", a) for a in anchors)
    assert scoreboard.anchor("Table 1", "ODE-Net test error (mean of 2 seeds)") == "sb-table-1-ode-net-test-error"
    assert len(scoreboard.page_frame().columns) <= 6


def markdown_cells() -> list[tuple[str, str]]:
    out = []
    for page in sorted((results.ROOT / "book").glob("*.ipynb")):
        for cell in json.loads(page.read_text())["cells"]:
            if cell["cell_type"] == "markdown":
                out.append((page.name, "".join(cell["source"])))
    for page in sorted((results.ROOT / "book").glob("*.md")):
        out.append((page.name, page.read_text()))
    return out


@pytest.mark.parametrize("page, text", markdown_cells(), ids=lambda x: x if x.endswith(("ipynb", "md")) else "")
def test_display_math_stands_in_its_own_paragraph(page, text):
    """BOOK.md: `$$` opens and closes its own paragraph (a blank line before and after), else MyST leaves it raw."""
    lines = text.split("\n")
    inside = False
    for i, line in enumerate(lines):
        if line.lstrip().startswith("```"):
            continue
        for _ in range(line.count("$$")):
            opening = not inside
            inside = not inside
            if opening and line.strip().startswith("$$"):
                assert i == 0 or not lines[i - 1].strip(), f"{page}: no blank line before $$ at line {i + 1}: {line[:60]!r}"
            if not opening and line.rstrip().endswith(("$$", "$$ (adjoint-ode)")) or (not opening and "$$ (" in line):
                after = lines[i + 1] if i + 1 < len(lines) else ""
                assert not after.strip(), f"{page}: no blank line after $$ at line {i + 1}: {after[:60]!r}"
        if not inside and "$$" not in line:
            continue
    assert not inside, f"{page}: an unclosed $$"


def visible_code() -> list[tuple[str, int, str]]:
    out = []
    for page in sorted((results.ROOT / "book").glob("*.ipynb")):
        for i, cell in enumerate(json.loads(page.read_text())["cells"]):
            tags = cell.get("metadata", {}).get("tags", [])
            if cell["cell_type"] == "code" and not {"remove-cell", "remove-input"} & set(tags):
                out += [(page.name, i, line) for line in "".join(cell["source"]).splitlines()]
    return out


def test_code_a_reader_sees_fits_the_column():
    """BOOK.md: code that teaches stays visible and fits the column: 80 characters a line at most."""
    long = [(page, cell, line) for page, cell, line in visible_code() if len(line) > 80]
    assert not long, long


def test_a_records_device_is_where_its_training_ran_in_words():
    """One formatter (odecore.compute.devices) for every page: the runs' own devices, not the assembling run's."""
    from odecore import compute

    record = {"profile": "full", "date": "2026-11-25T10:00", "device_name": "cpu (2 threads)",
              "metrics": {"runs": [{"train_time_s": 3600.0, "device_name": "cpu (1 threads)"}] * 2}}
    assert compute.devices(record) == "1 CPU thread"
    assert results.label(record) == "profile full, 1 CPU thread, 2026-11-25"
    assert compute.of({**record, "metrics": {}, "wall_time_s": 5.0}).source == compute.NO_TRAINING
