"""Every reader check (tests/reader.py) fails on a small page built to break it, and passes on a clean one.

So none of them can pass vacuously on the book: each fixture below is a page in the book's layout (a
content column of 600 px) with one fault, opened in the same headless Chromium as the book, and the
check named beside it must find that fault and no other check may fire. The PDF checks are shown the
same way on fixtures printed by the same call that prints the book.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from browser import Unavailable, chrome, print_page, serve, unavailable
from reader import READER_JS, long_numbers, pdf_problems, problems

pytestmark = pytest.mark.book

PAGE = """<!doctype html><html><head><meta charset="utf-8"><style>
body {{ margin: 0; font: 16px sans-serif; }} article.bd-article {{ width: 600px; margin: 0 40px; }}
.scroll {{ overflow-x: auto; }} pre {{ white-space: pre; }}
</style></head><body><main><article class="bd-article"><section id="s">
<p>A clean paragraph with 0.39 ± 0.01 % and 1.25 MiB, 3.81 × 10⁻⁶, and code <code>$ODECORE_PROFILE {{'a': 1}}</code>.</p>
<figure><img src="a.png" alt="a plot" width="100" height="50"><figcaption>Fig. 1.1 A numbered figure.</figcaption></figure>
<table><caption>Table 1.1 A numbered table.</caption><thead><tr><th>model</th><th>error (%)</th></tr></thead>
<tbody><tr><td>ODE-Net</td><td>0.39</td></tr></tbody></table>
{body}
</section></article></main></body></html>"""

PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")

# check -> a fault it must find
FAULTS = {
    "wide": '<table><caption>Table 1.2 Wide.</caption><tr><td style="white-space:nowrap">' + "wide cell " * 30 + "</td></tr></table>",
    "wide-scroll": '<div class="scroll"><pre>' + "x = 1; " * 40 + "</pre></div>",
    "tex": "<p>If $z(t)$ follows the dynamics, then</p>",
    "tex-paren": r"<p>the trace \(\operatorname{tr} A\) is</p>",
    "repr": "<p>settings: {'lr': 0.1, 'epochs': 15}</p>",
    "repr-list": "<div class='output'><pre>[30, 50, 100]</pre></div>",
    "repr-none": "<table><caption>Table 1.3 Values.</caption><tr><td>nan</td><td>None</td></tr></table>",
    "repr-words": "<p>the RNN at n = none</p>",
    "digits": "<p>the run took 0.435000 s</p>",
    "enotation": "<p>Algorithm 1 agrees with direct backprop to a relative 3.8e-06.</p>",
    "enotation-table": "<table><caption>Table 1.4 Errors.</caption><tr><td>1.0e-08</td></tr></table>",
    "path": "<p>files found in /work/shared/data/mnist</p>",
    "figure": '<figure><img src="a.png" alt="x"><figcaption>A caption without a number</figcaption></figure>',
    "figure-bare": '<img src="a.png" alt="a lone plot">',
    "image": '<figure><img src="a.png"><figcaption>Fig. 1.2 No alt text.</figcaption></figure>',
    "table": "<table><thead><tr><th>a</th></tr></thead><tbody><tr><td>b</td></tr></tbody></table>",
}


def check_of(fault: str) -> str:
    return fault.split("-")[0]


@pytest.fixture(scope="module")
def driver():
    try:
        drv = chrome((1280, 900))
    except Unavailable as why:
        unavailable(str(why))
    yield drv
    drv.quit()


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("reader")
    (root / "a.png").write_bytes(PNG)
    (root / "clean.html").write_text(PAGE.format(body=""), encoding="utf-8")
    for fault, body in FAULTS.items():
        (root / f"{fault}.html").write_text(PAGE.format(body=body), encoding="utf-8")
    return root


def report(driver, site: Path, page: str) -> dict:
    with serve(site) as base:
        driver.get(base + page)
        return driver.execute_script(READER_JS)


def test_the_clean_page_passes_every_check(driver, site):
    assert problems(report(driver, site, "clean.html")) == {}


@pytest.mark.parametrize("fault", FAULTS)
def test_each_check_fails_on_its_fixture(driver, site, fault):
    found = problems(report(driver, site, f"{fault}.html"))
    assert set(found) == {check_of(fault)}, found


def test_significant_digits():
    assert long_numbers("0.1642 and 0.39 and 17.91 and 1254 and doi 10.1137/0904010 and arXiv:2202.02435") == []
    assert long_numbers("0.435000 and 1254.25 and 3.141592653589793") == ["0.435000", "1254.25", "3.141592653589793"]


PDF_PAGE = """<!doctype html><html><head><meta charset="utf-8"></head><body style="margin:0;font:11pt sans-serif">
<p>Plain text that fits the page.</p>{body}</body></html>"""
PDF_FAULTS = {
    "margin": "<pre style=\"white-space:pre\">" + "a_line_of_code_that_runs_past_the_right_margin" * 4 + "</pre>",
    "ui": "<p>Show code cell source</p>",
    # a block kept whole (break-inside: avoid) and too tall for what the first page has left: pushed to the second,
    # it leaves the first page one line of text
    "empty": '<div style="break-inside:avoid;height:10.4in"><h2>Chapter two</h2><p>A block kept whole.</p></div>',
}


@pytest.mark.parametrize("fault", [None, *PDF_FAULTS])
def test_each_pdf_check_fails_on_its_fixture(driver, tmp_path, fault):
    (tmp_path / "page.html").write_text(PDF_PAGE.format(body=PDF_FAULTS.get(fault, "")), encoding="utf-8")
    with serve(tmp_path) as base:
        driver.get(base + "page.html")
        (tmp_path / "page.pdf").write_bytes(print_page(driver))
    from browser import MARGIN_INCHES

    found = pdf_problems(tmp_path / "page.pdf", margin_pt=72 * MARGIN_INCHES)
    assert set(found) == ({fault} if fault else set()), found


def test_a_mostly_empty_page_is_allowed_where_a_chapter_ends(driver, tmp_path):
    """The "empty" fixture's first page passes when its second page opens a chapter: that page is a chapter's last."""
    (tmp_path / "page.html").write_text(PDF_PAGE.format(body=PDF_FAULTS["empty"]), encoding="utf-8")
    with serve(tmp_path) as base:
        driver.get(base + "page.html")
        (tmp_path / "page.pdf").write_bytes(print_page(driver))
    from browser import MARGIN_INCHES

    assert pdf_problems(tmp_path / "page.pdf", margin_pt=72 * MARGIN_INCHES, chapter_titles=("Chapter two",)) == {}
