"""The reproduction page's table fills itself in from data/results and labels non-full profiles."""
from odecore import paper, results, scoreboard
from odecore.experiments import adjoint


def test_every_item_listed_before_any_run():
    table = scoreboard.table()
    assert set(table["item"]) == {item["id"] for item in paper.ITEMS}
    assert (table["status"] == "not yet run").all()


def test_rows_from_a_result_carry_profile_and_status():
    (smoke,) = adjoint.run("smoke")
    assert set(scoreboard.table()["status"]) == {"not yet run"}  # smoke results never count
    results.save("adjoint", "reduced", smoke["config"], smoke["metrics"], seeds=[0], wall_time_s=1.0)
    table = scoreboard.table()
    rows = table[table["source"] == "adjoint-reduced.json"]
    assert len(rows) >= 4
    assert rows["status"].str.endswith("(reduced profile)").all()
    assert (rows["profile"] == "reduced").all()


def test_status_words():
    assert scoreboard.status({"ours": 0.43, "paper": 0.42, "tolerance": 0.05}, "full") == "reproduced"
    assert (scoreboard.status({"ours": 0.6, "paper": 0.42, "tolerance": 0.05, "unit": "%"}, "full")
            == "deviates by +0.180 percentage points")
    assert scoreboard.status({"ours": None, "paper": 0.42}, "full") == "not yet run"
    assert scoreboard.status({"ours": 1.0, "paper": None}, "reduced") == "measured only (reduced profile)"
    assert scoreboard.status({"ours": "shown", "paper": None}, "full") == "drawn"


def test_the_scoreboard_and_the_ledger_give_one_verdict(monkeypatch):
    """A claim both tables judge gets the same word from both: the backward pass's "roughly half", the flows' claims."""
    from odecore import ledger

    monkeypatch.delenv("ODECORE_RESULTS_DIR")   # the committed records
    table = scoreboard.table()
    board = table[table["quantity"].str.contains("backward / forward NFE, dopri5,") & (table["source"] == "mnist-cpu.json")]
    claim = next(r for r in ledger.claims() if r["claim"].startswith("The adjoint's backward pass"))
    assert board["status"].iloc[0].split(" (")[0] == claim["verdict"]
    assert not board["status"].str.startswith("deviates").any()   # a qualitative claim: held or not
    # the adjoint chapter's toy MLP is not what the paper's "about half" is about: measured, not judged
    toy = table[table["quantity"].str.contains("untrained toy MLP")]
    assert len(toy) == 2 and toy["status"].str.startswith("measured only").all() and toy["paper"].isna().all()
    # the flows' claims: Figure 4's "matches or beats" and Figure 5's "difficulty with Two Moons"
    for quantity, paper_where in (("matches or beats", "Fig. 4"), ("test log-likelihood of CNF minus NF", "Fig. 5")):
        board = table[table["quantity"].str.contains(quantity) & table["claim"]]   # a shorter budget's row is measured only
        claim = next(r for r in ledger.claims() if r["paper"].endswith(paper_where) and "Theorem" not in r["claim"])
        assert len(board) == 1
        assert board["status"].iloc[0].split(" (")[0] == claim["verdict"]


def test_readme_scoreboard_is_current(monkeypatch):
    """The README's table is what `python -m odecore.scoreboard` generates from the committed results."""
    monkeypatch.delenv("ODECORE_RESULTS_DIR")
    text = (results.ROOT / "README.md").read_text()
    block = text.split(scoreboard.README_START)[1].split(scoreboard.README_END)[0].strip()
    assert block == scoreboard.markdown(), "README scoreboard is stale: run python -m odecore.scoreboard"


def test_a_reproduced_number_shows_the_tolerance_it_is_within():
    row = {"paper": 0.42, "ours": 0.39, "tolerance": 0.1, "unit": "%"}
    assert scoreboard._within("reproduced (cpu profile)", row) == "reproduced (within ± 0.1 percentage points; cpu profile)"
    assert scoreboard._within("reproduced", {**row, "unit": ""}) == "reproduced (within ± 0.1)"
    assert scoreboard._within("deviates by +0.2 percentage points", row) == "deviates by +0.2 percentage points"
    assert scoreboard._within("reproduced", {**row, "verdict": "reproduced"}) == "reproduced"   # a claim's own rule
