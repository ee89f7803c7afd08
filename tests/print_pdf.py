"""Print the whole book to one PDF with Debian's Chromium, offline (`make pdf`).

Reads the single-page build (`jupyter-book build . --builder singlehtml`, in _build/singlehtml),
serves it on 127.0.0.1 with no other network (tests/browser.py), waits until MathJax has typeset
every formula and every image has loaded, and prints it to _build/pdf/book.pdf (A4).
tests/test_pdf.py then checks the result. Exits non-zero, printing nothing, if a formula is left
untypeset, or if there is no Chromium; with --if-browser (what `make test` uses) a missing Chromium
is reported and the PDF skipped instead, unless CI=true.

    python tests/print_pdf.py [--if-browser] [SINGLEHTML_DIR] [PDF]
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from browser import (A4_INCHES, INSTALL, MARGIN_INCHES, ROOT, UNTYPESET_JS, Unavailable, chrome, print_page, serve,
                     settle, toc_files)

SOURCE = ROOT / "_build" / "singlehtml"
PDF = ROOT / "_build" / "pdf" / "book.pdf"


TITLE_PAGE_JS = """
const page = document.createElement('section');
page.className = 'book-title-page';
page.style.cssText = 'min-height: 9.5in; display: flex; flex-direction: column; justify-content: center; text-align: center';
page.innerHTML = arguments[0];
(document.querySelector('main') || document.body).prepend(page);
// the theme's printed header repeats the title above its contents list: the title page has it now
document.querySelectorAll('.onlyprint h1').forEach(h => h.remove());
"""


# A block the theme keeps whole on paper (a table, an admonition, a code block: `break-inside: avoid`) that is taller
# than this share of the printed page may break across pages instead (reader.css, .print-may-break): kept whole, it
# is pushed to the next page and leaves the one before it up to that share empty (a 28-row table, a heading left
# alone at the foot of a page). Figures stay whole: an image cannot break.
TALL = 0.4
MARK_TALL_JS = """
const limit = arguments[0];
const tall = [...document.querySelectorAll('table, .admonition, div.highlight, div.literal-block-wrapper')]
  .filter(el => el.getBoundingClientRect().height > limit);
tall.forEach(el => el.classList.add('print-may-break'));
return tall.length;
"""


def print_layout(driver, width: int) -> None:
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": "print"})
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {"width": width, "height": 1200,
                                                                   "deviceScaleFactor": 1, "mobile": False})


def screen_layout(driver) -> None:
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": ""})


def prepare_print(driver) -> list[str]:
    """In print layout, at the A4 content width: marks the blocks too tall to keep whole (`TALL`), and returns what
    would be cut at the printed page's right margin, the reader's width check (Chromium clips an overflowing line
    when it prints, so the PDF alone cannot show it)."""
    from reader import READER_JS, problems

    width = round((A4_INCHES[0] - 2 * MARGIN_INCHES) * 96)
    height = (A4_INCHES[1] - 2 * MARGIN_INCHES) * 96
    print_layout(driver, width)
    try:
        driver.execute_script(MARK_TALL_JS, TALL * height)
        return problems(driver.execute_script(READER_JS)).get("wide", [])
    finally:
        screen_layout(driver)


BUILD_JS = "const m = document.querySelector('meta[name=odecore-build]'); return m ? m.content : '';"


def build_of(driver) -> dict[str, str]:
    """The version, commit and date the book was built at, from the page (book/_ext/build_info.py wrote them): the
    commit the reproduction page's citation names, whatever the checkout is when the PDF is printed."""
    parts = (driver.execute_script(BUILD_JS) or "").split()
    return dict(zip(("version", "commit", "date"), parts + [""] * (3 - len(parts))))


def title_page(build: dict[str, str]) -> str:
    """The PDF's first page: the book's title and authors, the paper it reproduces, the book's version, commit and
    date (those of the build, `build_of`)."""
    sys.path.insert(0, str(ROOT))
    from odecore import cite

    where = f"commit {build['commit'][:12]}, {build['date']}" if build.get("commit") else "outside a git checkout"
    authors = cite.AUTHOR.strip("{}")
    return (f'<h1 style="font-size:28pt;margin-bottom:0.2in">{cite.TITLE.split(":")[0]}</h1>'
            f'<p style="font-size:14pt">a reproduction by {authors}</p>'
            f'<p style="font-size:12pt;margin-top:0.4in">reproducing<br><em>Neural Ordinary Differential Equations</em><br>'
            f'by Ricky T. Q. Chen, Yulia Rubanova, Jesse Bettencourt and David Duvenaud<br>NeurIPS 2018, arXiv:1806.07366</p>'
            f'<p style="font-size:11pt;margin-top:0.5in">odecore {build.get("version") or cite.version()}, {where}</p>')


def print_book(source: Path = SOURCE, out: Path = PDF, if_browser: bool = False) -> int:
    """Print the book; returns the number of pages written (0: skipped, no browser)."""
    out.unlink(missing_ok=True)  # never leave an older book behind for tests/test_pdf.py
    built = source / (toc_files()[0] + ".html")  # the root page holds the whole book in a single-page build
    if not built.is_file():
        raise SystemExit(f"{built} missing: build it with `jupyter-book build . --builder singlehtml`")
    # Its links to _static/ and _images/ are written as if it sat at the top of the build (it sits in
    # book/), so it is printed from a copy there.
    page = "print.html"
    (source / page).write_bytes(built.read_bytes())
    try:
        driver = chrome()
    except Unavailable as why:
        if if_browser and os.environ.get("CI", "").strip().lower() != "true":
            print(f"PDF skipped: {why}; install: {INSTALL}", file=sys.stderr)
            return 0
        raise SystemExit(f"cannot print the book: {why}; install: {INSTALL}") from why
    try:
        with serve(source) as base:
            driver.get(base + page)
            error = settle(driver)
            if error:
                raise SystemExit(f"waiting for MathJax and images: {error}")
            untypeset = driver.execute_script(UNTYPESET_JS)
            if untypeset:
                raise SystemExit(f"{len(untypeset)} formulas not typeset, first: {untypeset[0]!r}; not printing")
            driver.execute_script(TITLE_PAGE_JS, title_page(build_of(driver)))
            wide = prepare_print(driver)
            if wide:
                raise SystemExit(f"{len(wide)} elements wider than the printed page, first: {wide[0]}; not printing")
            data = print_page(driver)
    finally:
        driver.quit()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    from pypdf import PdfReader

    return len(PdfReader(out).pages)


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--if-browser"]
    source, out = (Path(args[0]) if args else SOURCE), (Path(args[1]) if len(args) > 1 else PDF)
    pages = print_book(source, out, if_browser="--if-browser" in sys.argv[1:])
    if pages:
        print(f"{out}: {pages} pages")
