"""The built book as a reader sees it: every page opened in headless Chromium, offline.

`_build/html` is served from 127.0.0.1 and Chromium may reach nothing else (tests/browser.py), so a
page that needs a CDN, MathJax included, fails here. Each page is opened once; the tests below check what was seen:

- no JavaScript error (no SEVERE console entry), and no request to anything but the local server;
- every formula typeset by MathJax (no raw `\\(`, `\\[` or `$$` in the visible text, no `.math`
  element without MathJax output, no TeX error);
- every image loaded (`naturalWidth > 0`); every figure a notebook drew stored at twice the pixels
  it is shown at (retina) and shown in its own proportions;
- every internal link resolves to a built file, and its `#anchor` to an id in that file;
- the reproduction page's table present, with rows;
- every reader check of tests/reader.py (nothing wider than the column, no TeX or Python repr left in the text,
  no machine path, every figure and table numbered and captioned, every image with alt text), at 1280 px and
  at 800 px;
- the numbers that appear on several pages (the compute behind the book, the ledger's counts) the same on each;
- a full-page screenshot of each page in `_build/screenshots/`.

Needs the built book (`make book`; `make test` builds it first) and Debian's chromium and
chromium-driver; selenium is pinned in the test extra. Without them it skips with the reason, except
with CI=true, where that is a failure.
"""
from __future__ import annotations

import base64
import functools
import html.parser
import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import pytest

from browser import ROOT, UNTYPESET_JS, WINDOW, Unavailable, chrome, serve, settle, toc_files, unavailable
from reader import READER_JS, problems

pytestmark = pytest.mark.book

HTML = ROOT / "_build" / "html"
SHOTS = ROOT / "_build" / "screenshots"


def toc_pages() -> list[str]:
    """The book's pages from _toc.yml, as paths under _build/html."""
    return [f + ".html" for f in toc_files()]


def built_pages() -> list[str]:
    """Every HTML page of the build (not theme assets or sources), relative to _build/html."""
    pages = [p.relative_to(HTML).as_posix() for p in HTML.rglob("*.html")]
    return sorted(p for p in pages if not p.startswith("_"))


class _Ids(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        for key, value in attrs:
            if key in ("id", "name") and value:
                self.ids.add(value)


@functools.lru_cache(maxsize=None)
def anchors(page: str) -> frozenset[str]:
    parser = _Ids()
    parser.feed((HTML / page).read_text(encoding="utf-8", errors="replace"))
    return frozenset(parser.ids)


def resolve(page: str, href: str, base: str) -> str | None:
    """None when an internal link lands on a built file (and its anchor exists), else why not."""
    url = urlsplit(urljoin(base + page, href))
    rel = unquote(url.path).lstrip("/")
    if rel == "" or rel.endswith("/"):
        rel += "index.html"
    target = HTML / rel
    if not target.is_file():
        return f"{href} -> {rel}: no such file in _build/html"
    if url.fragment and target.suffix == ".html" and unquote(url.fragment) not in anchors(rel):
        return f"{href} -> {rel}: no element with id {unquote(url.fragment)!r}"
    return None


def redirect_target(page: str) -> str | None:
    """Where a redirect stub (jupyter-book's index.html) sends the reader, else None."""
    text = (HTML / page).read_text(encoding="utf-8", errors="replace")
    found = re.search(r'<meta[^>]+http-equiv="refresh"[^>]+content="[^"]*url=([^"]+)"', text, re.IGNORECASE)
    return found.group(1) if found else None


@dataclass
class Visit:
    page: str
    redirect: str | None = None
    console: list[str] = field(default_factory=list)
    offsite: list[str] = field(default_factory=list)
    report: dict = field(default_factory=dict)
    screenshot: Path | None = None


# What the page shows, gathered in the page.
REPORT_JS = """
const skip = 'pre, code, script, style, textarea, mjx-container, .highlight';
const raw = [];
const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
while (walker.nextNode()) {
  const node = walker.currentNode, el = node.parentElement;
  if (!el || el.closest(skip) || !el.checkVisibility()) continue;
  const text = node.textContent;
  for (const mark of ['\\\\(', '\\\\[', '$$']) {
    const i = text.indexOf(mark);
    if (i >= 0) raw.push(text.slice(Math.max(0, i - 30), i + 50).trim());
  }
}
const math = Array.from(document.querySelectorAll('span.math, div.math'));
const figures = Array.from(document.querySelectorAll('figure img, .cell_output img, .output img'));
return {
  title: document.title,
  mathjax: window.MathJax && MathJax.version ? MathJax.version : null,
  mathjax_src: Array.from(document.scripts).map(s => s.src).filter(s => /mathjax/i.test(s)),
  n_math: math.length,
  tex_errors: Array.from(document.querySelectorAll('mjx-merror')).map(e => e.getAttribute('data-mjx-error') || e.textContent),
  raw_math: raw,
  n_images: document.images.length,
  broken_images: Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.currentSrc || i.src),
  figures: figures.map(i => ({src: i.getAttribute('src'), natural: [i.naturalWidth, i.naturalHeight],
                              css_width: parseFloat(i.style.width || i.getAttribute('width')) || null,
                              box: [i.getBoundingClientRect().width, i.getBoundingClientRect().height]})),
  links: Array.from(document.querySelectorAll('a[href], link[href]')).map(a => a.getAttribute('href')),
  tables: Array.from(document.querySelectorAll('table')).map(t => ({
    header: Array.from(t.querySelectorAll('thead th, thead td')).map(c => c.textContent.trim()),
    rows: Array.from(t.querySelectorAll('tbody tr')).map(r => Array.from(r.cells).map(c => c.textContent.trim())),
  })),
};
"""


@pytest.fixture(scope="module")
def server():
    if not (HTML / "index.html").is_file():
        unavailable(f"the book is not built ({HTML.relative_to(ROOT)}/index.html missing): run `make book` first")
    with serve(HTML) as base:
        yield base


@pytest.fixture(scope="module")
def driver():
    try:
        drv = chrome(WINDOW, logs=True)
    except Unavailable as why:
        unavailable(str(why))
    yield drv
    drv.quit()


def full_page_screenshot(drv, path: Path) -> None:
    """The whole page at the window's width: the viewport is made as tall as the page, then restored."""
    height = drv.execute_script("return Math.max(document.documentElement.scrollHeight, document.body.scrollHeight)")
    drv.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": WINDOW[0], "height": max(WINDOW[1], int(height)), "deviceScaleFactor": 1, "mobile": False})
    try:
        shot = drv.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})
    finally:
        drv.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    path.write_bytes(base64.b64decode(shot["data"]))


def offsite_requests(drv, base: str) -> list[str]:
    urls = []
    for entry in drv.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            url = message["params"]["request"]["url"]
            if not url.startswith((base, "data:", "blob:", "about:", "chrome:", "devtools:")):
                urls.append(url)
    return urls


@pytest.fixture(scope="module")
def visits(server, driver) -> dict[str, Visit]:
    """Open every page once, in toc order then the rest (index, search...), and record what it showed."""
    toc = toc_pages()
    pages = toc + [p for p in built_pages() if p not in toc]
    shutil.rmtree(SHOTS, ignore_errors=True)
    SHOTS.mkdir(parents=True)
    seen = {}
    for page in pages:
        visit = Visit(page)
        seen[page] = visit
        if not (HTML / page).is_file():
            continue  # reported by test_every_toc_page_is_built
        visit.redirect = redirect_target(page)
        if visit.redirect:
            continue  # checked by test_every_internal_link_resolves
        driver.get_log("browser"), driver.get_log("performance")  # drop what an earlier page left
        driver.get(server + page)
        settled = settle(driver)
        visit.report = driver.execute_script(REPORT_JS)
        visit.report["untypeset"] = driver.execute_script(UNTYPESET_JS)
        visit.report["reader"] = driver.execute_script(READER_JS)
        visit.report["text"] = driver.execute_script("return document.body.innerText")
        if settled:
            visit.console.append(f"waiting for MathJax and images: {settled}")
        visit.console += [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        visit.offsite = offsite_requests(driver, server)
        visit.screenshot = SHOTS / (page.removesuffix(".html").replace("/", "__") + ".png")
        full_page_screenshot(driver, visit.screenshot)
    return seen


def failures(visits: dict[str, Visit], what) -> dict[str, list]:
    found = {page: what(v) for page, v in visits.items() if v.report}
    return {page: items for page, items in found.items() if items}


def test_every_toc_page_is_built(visits):
    missing = [page for page in toc_pages() if not (HTML / page).is_file()]
    assert not missing, f"pages in _toc.yml with no built HTML: {missing}"
    assert all(visits[page].report for page in toc_pages())


def test_the_browser_cannot_reach_the_network(driver, server, visits):
    """The blocking is real: a fetch to an outside address fails from a served page."""
    driver.get(server + toc_pages()[0])
    outcome = driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        fetch('http://example.com/', {mode: 'no-cors'}).then(() => done('reached'), err => done('blocked'));
    """)
    assert outcome == "blocked"


def test_no_javascript_errors(visits):
    errors = failures(visits, lambda v: v.console)
    assert not errors, "SEVERE console entries:\n" + json.dumps(errors, indent=1)


def test_nothing_is_requested_off_the_local_server(visits):
    offsite = failures(visits, lambda v: v.offsite)
    assert not offsite, "requests that need a network (they fail offline):\n" + json.dumps(offsite, indent=1)


def test_every_formula_is_typeset(visits):
    problems = failures(visits, lambda v: [f"not typeset: {s}" for s in v.report["untypeset"]]
                        + [f"raw TeX in the text: {s}" for s in v.report["raw_math"]]
                        + [f"TeX error: {s}" for s in v.report["tex_errors"]])
    assert not problems, json.dumps(problems, indent=1)
    with_math = {p: v.report for p, v in visits.items() if v.report and v.report["n_math"]}
    assert len(with_math) >= 3, "the chapters have formulas; far fewer pages with math than expected"
    for page, report in with_math.items():
        assert report["mathjax"], f"{page}: formulas but no MathJax"
        assert report["mathjax_src"] and all("/_static/mathjax/" in s for s in report["mathjax_src"]), \
            f"{page}: MathJax not served from the book: {report['mathjax_src']}"


def test_every_image_loads(visits):
    broken = failures(visits, lambda v: v.report["broken_images"])
    assert not broken, "images with naturalWidth 0:\n" + json.dumps(broken, indent=1)
    assert sum(v.report["n_images"] for v in visits.values() if v.report) > 0


def test_figures_are_retina_and_in_proportion(visits):
    """A notebook's figure is stored at twice the pixels it is meant to be shown at (odecore.plots.use),
    and a page narrower than the figure scales it without changing its shape."""
    def problems(v: Visit) -> list[str]:
        out = []
        for f in v.report["figures"]:
            (nw, nh), (bw, bh) = f["natural"], f["box"]
            if f["src"].endswith(".png") and nw < 1.9 * (f["css_width"] or bw):
                out.append(f"{f['src']}: {nw} px wide, shown at {f['css_width'] or bw:.0f}: not retina")
            if nw and bh and abs((bw / bh) / (nw / nh) - 1) > 0.02:
                out.append(f"{f['src']}: {nw}x{nh} shown as {bw:.0f}x{bh:.0f}: out of proportion")
        return out

    found = failures(visits, problems)
    assert not found, json.dumps(found, indent=1)
    assert sum(len(v.report["figures"]) for v in visits.values() if v.report) > 0


def test_every_internal_link_resolves(visits, server):
    """Every link and asset reference inside the book lands on a built file, and on the anchor it names."""
    def dead(v: Visit) -> list[str]:
        out = []
        for href in (v.report or {}).get("links", []) + ([v.redirect] if v.redirect else []):
            scheme = urlsplit(href).scheme
            if scheme in ("mailto", "javascript", "data") or (scheme and not href.startswith(server)):
                continue  # outside the book
            if href in ("#", "#!"):
                continue  # a button, not a link
            why = resolve(v.page, href, server)
            if why:
                out.append(why)
        return sorted(set(out))

    broken = {page: found for page, v in visits.items() if (found := dead(v))}
    assert not broken, "internal links that do not resolve:\n" + json.dumps(broken, indent=1)
    assert sum(len(v.report["links"]) for v in visits.values() if v.report) > 0


def test_reproduction_table_is_present(visits):
    report = visits["book/reproduction.html"].report
    tables = [t for t in report["tables"] if {"paper", "ours"} <= set(t["header"])]
    assert tables, f"no table with 'paper' and 'ours' columns; headers: {[t['header'] for t in report['tables']]}"
    table = tables[0]
    assert len(table["rows"]) >= 5, table
    ours = table["header"].index("ours")
    assert all(len(row) == len(table["header"]) for row in table["rows"]), "ragged table"
    assert all(row[0] and row[ours] for row in table["rows"]), "rows with an empty item or 'ours' cell"


def test_a_screenshot_of_every_page(visits):
    for page, visit in visits.items():
        if not visit.report:
            continue
        shot = visit.screenshot
        assert shot.is_file() and shot.stat().st_size > 10_000, page
        width, height = int.from_bytes(shot.read_bytes()[16:20], "big"), int.from_bytes(shot.read_bytes()[20:24], "big")
        assert width >= WINDOW[0] and height >= WINDOW[1], (page, width, height)


NARROW = (800, 1000)


def reader_failures(reports: dict[str, dict]) -> dict[str, dict]:
    return {page: found for page, report in reports.items() if (found := problems(report))}


def test_every_page_passes_the_reader_checks(visits):
    """At 1280 px: the checks of tests/reader.py, each shown failing on its fixture in tests/test_reader.py."""
    found = reader_failures({p: v.report["reader"] for p, v in visits.items() if p in toc_pages() and v.report})
    assert not found, json.dumps(found, indent=1, ensure_ascii=False)


def test_every_page_passes_the_reader_checks_when_narrow(server, visits):
    """At 800 px, where the sidebars fold away and the column is narrower."""
    try:
        drv = chrome(NARROW)
    except Unavailable as why:
        unavailable(str(why))
    reports = {}
    try:
        for page in toc_pages():
            drv.get(server + page)
            settle(drv)
            reports[page] = drv.execute_script(READER_JS)
    finally:
        drv.quit()
    found = reader_failures(reports)
    assert not found, json.dumps(found, indent=1, ensure_ascii=False)


def said(visits, page: str, pattern: str) -> str:
    """The first match of `pattern` (one group) in a page's visible text."""
    found = re.search(pattern, visits[page].report["text"])
    assert found, f"{page}: no {pattern!r} in its text"
    return found.group(1)


def test_numbers_on_several_pages_agree(visits):
    """One number, one source: what several pages say is the same everywhere (odecore.compute, odecore.ledger)."""
    compute = r"took ([\d.,]+ h, [\d.,]+ CPU core-h(?: \+ [\d.,]+ GPU-h)?) of training"
    pages = ["book/intro.html", "book/reproduction.html", "book/execution.html"]
    assert len({said(visits, p, compute) for p in pages}) == 1
    counts = r"(\d+ claims of the paper: [^.]*\.)"
    assert said(visits, "book/intro.html", counts) == said(visits, "book/reproduction.html", counts)
    # the citing example quotes Table 1's ODE-Net error exactly as the MNIST chapter shows it
    cited = said(visits, "book/reproduction.html", r"ODE-Net test error ([\d.]+ ± [\d.]+) %")
    assert re.search(r"ODE-Net\s+0\.42\s+" + re.escape(cited), visits["book/mnist.html"].report["text"])


def test_the_citation_names_the_commit_the_book_is_built_from(visits):
    """The reproduction page's citing example and BibTeX entry carry the build's commit (book/_ext/build_info.py),
    not one an execution cache kept from an older checkout; the PDF's title page reads the same (tests/test_pdf.py)."""
    import subprocess

    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    if not head:
        pytest.skip("not a git checkout")
    text = visits["book/reproduction.html"].report["text"]
    assert set(re.findall(r"commit ([0-9a-f]{12})", text)) == {head[:12]}, re.findall(r"commit \S+", text)
    assert f"commit = {{{head}}}" in text


def test_a_record_names_one_device_on_every_page(visits):
    """results.label and the execution page use one formatter (odecore.compute.devices): the flows chapter and the
    execution page name the same device for the same record, in words, never a raw 'cpu (1 threads)'."""
    raw = {p: re.findall(r"cpu \(\d+ threads?\)", v.report["text"]) for p, v in visits.items() if v.report}
    assert not any(raw.values()), raw
    on_page = said(visits, "book/cnf.html", r"cnf_density-full\.json\W+profile full, ([^,]+),")
    on_execution = said(visits, "book/execution.html", r"cnf_density-full\.json\s+(?:yes\s+)?[\d-]+, ([^\t\n]+?)\s*\t")
    assert on_page == on_execution, (on_page, on_execution)

