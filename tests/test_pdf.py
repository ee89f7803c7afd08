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


def test_no_glyph_outside_the_margins_no_ui_text_and_no_mostly_empty_page():
    """The reader checks on paper (tests/reader.py; each shown failing on its fixture in tests/test_reader.py); a page
    more than reader.MAX_EMPTY empty is allowed only where a chapter or the book ends."""
    if not PDF.is_file():
        unavailable(f"no {PDF.relative_to(ROOT)}: run `make pdf`")
    from browser import MARGIN_INCHES
    from reader import pdf_problems

    found = pdf_problems(PDF, margin_pt=72 * MARGIN_INCHES, chapter_titles=tuple(map(title, toc_files())))
    assert not found, json.dumps(found, indent=1, ensure_ascii=False)


def head_commit() -> tuple[str, str] | None:
    """(commit, commit date) of the checkout, as `git` gives them, or None outside git."""
    import subprocess

    try:
        out = subprocess.run(["git", "log", "-1", "--format=%H %cs"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return None
    return (out[0], out[1]) if len(out) == 2 else None


def test_a_title_page_names_the_paper_the_authors_and_the_build(pages):
    from odecore import cite

    first = pages[0]
    assert "Neural Ordinary Differential Equations" in first and "Duvenaud" in first and "NeurIPS 2018" in first
    assert "a reproduction by the odecore contributors" in first     # the book's authors, not the paper's
    assert f"odecore {cite.version()}" in first
    where = head_commit()
    if where:
        assert where[0][:12] in first and where[1] in first


def test_the_title_page_and_the_citation_name_one_commit(pages):
    """The commit comes from one place at build time (book/_ext/build_info.py): the title page and the reproduction
    page's citing example and BibTeX entry name the same one, the checkout's."""
    where = head_commit()
    if not where:
        pytest.skip("not a git checkout")
    first = pages[0]
    title = re.search(r"commit ([0-9a-f]{12})", first).group(1)
    rest = " ".join(pages[1:])
    cited = set(re.findall(r"commit ([0-9a-f]{12})", rest)) | {c[:12] for c in re.findall(r"commit = \{([0-9a-f]{40})\}", rest)}
    assert cited == {title} == {where[0][:12]}, (title, cited, where)
