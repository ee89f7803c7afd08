"""What a reader would stumble on, as checks a program can run on a page and on the PDF.

`READER_JS` gathers, in a page open in Chromium, what the checks need: the content column's box and
every visible element that reaches past it or scrolls sideways, the visible text of prose, tables
and cell outputs (code excluded), and every figure, image and table with its caption. `problems`
turns that into findings, one list per check; `pdf_problems` does the same for a printed PDF.
tests/test_reader.py shows every check failing on a fixture page built to break it, and
tests/test_browser.py and tests/test_pdf.py run them on every page of the book and on its PDF.
"""
from __future__ import annotations

import re
from pathlib import Path

# The content column: sphinx-book-theme's article, else the page's main element, else the body.
READER_JS = r"""
const column = document.querySelector('article.bd-article') || document.querySelector('main') || document.body;
const box = column.getBoundingClientRect();
const visible = el => el.checkVisibility() && el.getBoundingClientRect().width > 0;
const describe = el => {
  const r = el.getBoundingClientRect();
  const where = el.closest('section[id]');
  return {tag: el.tagName.toLowerCase(), cls: (el.className && el.className.baseVal === undefined ? el.className : ''),
          section: where ? where.id : '', text: el.textContent.trim().replace(/\s+/g, ' ').slice(0, 60),
          left: r.left, right: r.right, scroll: el.scrollWidth, client: el.clientWidth};
};
// Elements that reach past the column, outermost first (a child of a reported element is not reported).
const wide = [];
for (const el of column.querySelectorAll('*')) {
  if (!visible(el) || el.closest('mjx-assistive-mml') || wide.some(w => w.contains(el))) continue;
  const r = el.getBoundingClientRect();
  const style = getComputedStyle(el);
  const scrolls = ['auto', 'scroll'].includes(style.overflowX) && el.scrollWidth > el.clientWidth + 1;
  if (r.right > box.right + 1 || r.left < box.left - 1 || scrolls) wide.push(el);
}
// Visible text, one entry per block, code excluded; cell outputs apart from prose.
const skip = 'script, style, textarea, mjx-container, .cell_input, .highlight, code, .MathJax, .katex';
const blocks = new Map();
const walker = document.createTreeWalker(column, NodeFilter.SHOW_TEXT);
while (walker.nextNode()) {
  const node = walker.currentNode, el = node.parentElement;
  if (!el || el.closest(skip) || !el.checkVisibility()) continue;
  const block = el.closest('p, li, td, th, caption, figcaption, dt, dd, h1, h2, h3, h4, h5, h6, pre, .output') || el;
  blocks.set(block, (blocks.get(block) || '') + node.textContent);
}
const texts = Array.from(blocks, ([el, text]) => ({
  kind: el.closest('.cell_output, .output') ? 'output' : (el.closest('table') ? 'table' : 'prose'),
  section: (el.closest('section[id]') || {}).id || '', text: text.replace(/\s+/g, ' ').trim(),
})).filter(t => t.text);
const caption = el => {
  const c = el.querySelector('figcaption, caption');
  return c ? c.textContent.replace(/\s+/g, ' ').trim() : '';
};
return {
  column: [box.left, box.right],
  wide: wide.map(describe),
  texts: texts,
  images: Array.from(column.querySelectorAll('img')).filter(visible).map(i => ({
    src: (i.getAttribute('src') || '').slice(-60), alt: i.getAttribute('alt') || '',
    figure: i.closest('figure') ? caption(i.closest('figure')) : null,
  })),
  tables: Array.from(column.querySelectorAll('table')).filter(visible).map(t => ({
    caption: caption(t), header: Array.from(t.querySelectorAll('thead th')).map(c => c.textContent.trim()).slice(0, 8),
    section: (t.closest('section[id]') || {}).id || '',
  })),
};
"""

TEX = re.compile(r"\$|\\\(|\\\)|\\\[|\\\]|\\[a-zA-Z]+\{")
# Python reprs and raw values: dict/list/tuple reprs, nan/None/True/False/inf, a quoted key.
REPRS = [
    (re.compile(r"\{'[^']*'\s*:|\{\"[^\"]*\"\s*:"), "a dict repr"),
    (re.compile(r"\[\s*'[^']*'\s*,|\[\s*-?\d+(\.\d+)?(e-?\d+)?\s*,\s*-?\d"), "a list repr"),
    (re.compile(r"\((\s*-?\d+(\.\d+)?(e-?\d+)?\s*,){2,}"), "a tuple repr"),
    (re.compile(r"(?<![\w-])(nan|NaN|None|True|False|inf|-inf)(?![\w-])"), "a raw value"),
    (re.compile(r"(=|:)\s*none\b"), "a raw None"),
    (re.compile(r"<[\w.]+ object at 0x[0-9a-f]+>|\bdtype=|\btensor\("), "an object repr"),
]
MAX_SIGNIFICANT = 4          # the book's convention: numbers are shown with at most four significant digits
NUMBER = re.compile(r"(?<![\w./:])-?(\d+)\.(\d+)(?:e[-+]?\d+)?(?![\w./])")  # not in a DOI, path or arXiv:2202.02435
# A number in e-notation (3.8e-06): the book writes 3.81 × 10⁻⁶ (odecore.tables.number), code and outputs aside.
ENOTATION = re.compile(r"(?<![\w.])-?\d+(\.\d+)?e[-+]\d+(?!\w|\.\d)")   # a sign: not a hex commit (434001e0)
PATHS = re.compile(r"(?<![\w.])(/(work|home|root|tmp|usr|opt|mnt|var)/[\w.+-]+|\.venv/|site-packages|[A-Z]:\\\\)")
UI_TEXT = re.compile(r"Show code cell|Hide code cell|Skip to main content|Back to top|Toggle navigation|"
                     r"Copy to clipboard|Print to PDF|Download source file|Edit this page|Previous\s*$|Next\s*$", re.MULTILINE)
FIGURE_NUMBER = re.compile(r"^(Fig\.|Figure)\s*\d+(\.\d+)*")
TABLE_NUMBER = re.compile(r"^Table\s*\d+(\.\d+)*")


def significant_digits(integer: str, fraction: str) -> int:
    """Significant digits of a decimal written as integer.fraction (trailing zeros count: they were printed)."""
    digits = (integer + fraction).lstrip("0")
    return len(digits)


def long_numbers(text: str) -> list[str]:
    """Decimals printed with more significant digits than the book's convention."""
    return [m.group(0) for m in NUMBER.finditer(text) if significant_digits(m.group(1), m.group(2)) > MAX_SIGNIFICANT]


def problems(report: dict) -> dict[str, list[str]]:
    """Findings on one page, by check: wide, tex, repr, digits, enotation, path, figure, image, table."""
    found: dict[str, list[str]] = {k: [] for k in ("wide", "tex", "repr", "digits", "enotation", "path", "figure", "image",
                                                   "table")}
    left, right = report["column"]
    for el in report["wide"]:
        found["wide"].append(f"<{el['tag']} class={el['cls']!r}> in #{el['section']} spans {el['left']:.0f}-{el['right']:.0f} px "
                             f"(column {left:.0f}-{right:.0f}, scroll {el['scroll']} of {el['client']}): {el['text']!r}")
    for t in report["texts"]:
        where = f"{t['kind']} in #{t['section']}: {t['text'][:100]!r}"
        if t["kind"] != "output" and TEX.search(t["text"]):
            found["tex"].append(where)
        for pattern, what in REPRS:
            if pattern.search(t["text"]):
                found["repr"].append(f"{what}, {where}")
        if long := long_numbers(t["text"]):
            found["digits"].append(f"{', '.join(long[:3])} ({MAX_SIGNIFICANT} significant digits at most), {where}")
        if t["kind"] != "output" and (e := ENOTATION.search(t["text"])):
            found["enotation"].append(f"{e.group(0)} (write a power of ten, as tables.number does), {where}")
        if PATHS.search(t["text"]):
            found["path"].append(f"a machine path, {where}")
    for img in report["images"]:
        if not img["alt"].strip():
            found["image"].append(f"no alt text: {img['src']}")
        if img["figure"] is not None and not FIGURE_NUMBER.match(img["figure"]):
            found["figure"].append(f"figure without a number and caption: {img['src']} ({img['figure'][:60]!r})")
        if img["figure"] is None and not img["src"].endswith((".svg", ".ico")):
            found["figure"].append(f"image outside a numbered figure: {img['src']}")
    for table in report["tables"]:
        if not TABLE_NUMBER.match(table["caption"]):
            found["table"].append(f"table without a number and caption in #{table['section']}: {table['header']}")
    return {k: v for k, v in found.items() if v}


# A printed page may be at most this share empty (between its top and bottom margins), unless it ends a chapter or the
# book: more, and a block too tall for what was left of the page was pushed to the next (tests/print_pdf.py, TALL).
MAX_EMPTY = 0.85


def page_filled(page, margin_pt: float) -> float:
    """The share of a pdfplumber page's content height between its first and last mark (text, images, rules and
    boxes; not the background Chromium paints over the whole content box); the footer's page number sits in the
    bottom margin and does not count; 0 for a blank page."""
    top, bottom = margin_pt, page.height - margin_pt
    marks = [c for c in page.chars if c["text"].strip()] + page.images + page.rects + page.lines + page.curves
    spans = [(m["top"], m["bottom"]) for m in marks
             if m["top"] >= top - 1 and m["bottom"] <= bottom + 1
             and not (m["bottom"] - m["top"] > 0.95 * (bottom - top)                  # the page's background
                      and m["x1"] - m["x0"] > 0.95 * (page.width - 2 * margin_pt))]
    if not spans:
        return 0.0
    return (max(b for _, b in spans) - min(t for t, _ in spans)) / (bottom - top)


def pdf_problems(path: Path, margin_pt: float, slack_pt: float = 0.5,
                 chapter_titles: tuple[str, ...] = ()) -> dict[str, list[str]]:
    """Findings on a PDF: glyphs outside the page's margins, UI text that has no place on paper, and pages more than
    `MAX_EMPTY` empty other than the last page of the book or of a chapter (a page followed by one that opens with
    one of `chapter_titles`).

    Chromium clips what overflows the page's content box, so an overflowing line leaves a glyph cut at the
    margin, reaching past it by a fraction of its width; laid-out text never does (the book's stays points
    inside), hence the small slack.
    """
    import pdfplumber

    def opens_chapter(text: str) -> bool:
        head = re.sub(r"\s+", " ", text[:300])
        return any(re.sub(r"\s+", " ", t) in head for t in chapter_titles)

    found: dict[str, list[str]] = {"margin": [], "ui": [], "empty": []}
    with pdfplumber.open(path) as pdf:
        texts = [page.extract_text() or "" for page in pdf.pages]
        for number, page in enumerate(pdf.pages, 1):
            out = [c for c in page.chars if c["text"].strip() and (
                c["x0"] < margin_pt - slack_pt or c["x1"] > page.width - margin_pt + slack_pt)]
            if out:
                text = "".join(c["text"] for c in out[:40])
                found["margin"].append(f"page {number}: {len(out)} glyphs outside the margins, e.g. {text!r}")
            for line in UI_TEXT.findall(texts[number - 1]):
                found["ui"].append(f"page {number}: {line!r}")
            last = number == len(pdf.pages) or opens_chapter(texts[number])
            filled = page_filled(page, margin_pt)
            if not last and 1 - filled > MAX_EMPTY:
                found["empty"].append(f"page {number}: {1 - filled:.0%} empty, ends "
                                      f"{' '.join(texts[number - 1].split()[-8:])!r}, the next opens "
                                      f"{' '.join(texts[number].split()[:8])!r}")
    return {k: v for k, v in found.items() if v}
