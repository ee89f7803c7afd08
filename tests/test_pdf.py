"""Smoke check of the printed book (`make pdf` writes _build/pdf/book.pdf with tests/print_pdf.py).

At least one page per chapter of _toc.yml, every chapter's title in the text, no TeX left raw.
Without the PDF it skips with the command that makes it, except with CI=true, where it fails.
"""
from __future__ import annotations

import json
import re
import unicodedata

import pytest

from browser import ROOT, toc_files, unavailable

pytestmark = pytest.mark.book

PDF = ROOT / "_build" / "pdf" / "book.pdf"


def title(source: str) -> str:
    """A page's first heading, from its notebook or MyST file."""
    for suffix in (".ipynb", ".md"):
        path = ROOT / (source + suffix)
        if path.is_file():
            break
    if path.suffix == ".ipynb":
        cells = json.loads(path.read_text())["cells"]
        text = "".join(next(c for c in cells if c["cell_type"] == "markdown")["source"])
    else:
        text = path.read_text()
    return re.search(r"^# (.+)$", text, re.MULTILINE).group(1).strip()


def words(text: str) -> str:
    """Text as pypdf gives it, comparable: ligatures undone, runs of whitespace made one space."""
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text))


@pytest.fixture(scope="module")
def pages() -> list[str]:
    if not PDF.is_file():
        unavailable(f"no {PDF.relative_to(ROOT)}: run `make pdf`")
    from pypdf import PdfReader

    return [words(page.extract_text() or "") for page in PdfReader(PDF).pages]


def test_at_least_one_page_per_chapter(pages):
    assert len(pages) >= len(toc_files()), f"{len(pages)} pages for {len(toc_files())} chapters"


def test_every_chapter_is_in_it(pages):
    text = " ".join(pages)
    missing = [t for t in map(title, toc_files()) if words(t) not in text]
    assert not missing, f"chapter titles not found in the PDF: {missing}"


def test_no_raw_tex(pages):
    raw = [(i + 1, m) for i, page in enumerate(pages) for m in re.findall(r"\\\(.{0,40}|\$\$.{0,40}", page)]
    assert not raw, f"untypeset formulas (page, text): {raw[:5]}"


def test_no_glyph_outside_the_margins_and_no_ui_text():
    """The reader checks on paper (tests/reader.py; each shown failing on its fixture in tests/test_reader.py)."""
    if not PDF.is_file():
        unavailable(f"no {PDF.relative_to(ROOT)}: run `make pdf`")
    from browser import MARGIN_INCHES
    from reader import pdf_problems

    found = pdf_problems(PDF, margin_pt=72 * MARGIN_INCHES)
    assert not found, json.dumps(found, indent=1, ensure_ascii=False)


def test_a_title_page_names_the_paper_and_the_build(pages):
    from odecore import cite

    first = pages[0]
    assert "Neural Ordinary Differential Equations" in first and "Duvenaud" in first and "NeurIPS 2018" in first
    assert f"odecore {cite.version()}" in first
    where = cite.checkout()
    if where:
        assert where[0][:12] in first and where[1] in first
