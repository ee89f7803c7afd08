"""Headless Chromium on a built book, offline: shared by tests/test_browser.py and tests/print_pdf.py.

The book is served from 127.0.0.1 and Chromium may reach nothing else: every host name resolves to
nothing and every other address goes through a proxy on a closed port. Chromium and its driver are
Debian's (`chromium`, `chromium-driver`); selenium is pinned in the test extra and is pointed at
/usr/bin/chromedriver, so its own driver manager (which downloads) never runs.
"""
from __future__ import annotations

import contextlib
import functools
import os
import shutil
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import yaml

ROOT = Path(__file__).resolve().parent.parent
INSTALL = "apt-get install -y chromium chromium-driver  (as root, Debian/Ubuntu)"
WINDOW = (1280, 1000)
TIMEOUT_S = 120

# No name resolves, and whatever is not loopback goes to a closed port: the page gets the local server only.
NO_NETWORK = ["--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
              "--proxy-server=http://127.0.0.1:9"]

# Waits for the page's images (lazy ones made eager) and for MathJax's first typesetting.
SETTLE_JS = """
const done = arguments[arguments.length - 1];
const images = Array.from(document.images).map(img => {
  img.loading = 'eager';
  return img.complete ? Promise.resolve() : new Promise(r => { img.onload = img.onerror = r; });
});
const mathjax = (window.MathJax && MathJax.startup && MathJax.startup.promise) || Promise.resolve();
Promise.all([mathjax, ...images]).then(() => done(null), err => done(String(err)));
"""

UNTYPESET_JS = """
return Array.from(document.querySelectorAll('span.math, div.math'))
  .filter(e => !e.querySelector('mjx-container')).map(e => e.textContent.slice(0, 80));
"""


class Unavailable(RuntimeError):
    """Chromium, its driver or selenium is missing; the message says which."""


def unavailable(reason: str):
    """In a test: skip with the reason and the fix; under CI=true the browser must run, so fail instead."""
    import pytest

    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(f"browser test cannot run: {reason} (CI=true, so this is a failure; install: {INSTALL})")
    pytest.skip(f"browser test skipped: {reason}; install: {INSTALL}")


def toc_files() -> list[str]:
    """The book's source files in reading order, from _toc.yml (without suffix)."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections"))

    walk(toc.get("chapters"))
    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    return [str(Path(f).with_suffix("")) for f in files]


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # no line per request
        pass


@contextlib.contextmanager
def serve(directory: Path) -> Iterator[str]:
    """Serve `directory` on 127.0.0.1 (a free port) in a thread; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


def chrome(window: tuple[int, int] = WINDOW, logs: bool = False):
    """A headless Chromium driver with no network but loopback; Unavailable when it cannot start."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as err:
        raise Unavailable("selenium is not installed (pip install -e '.[test]')") from err
    browser = next(filter(None, map(shutil.which, ("chromium", "chromium-browser"))), None)
    chromedriver = shutil.which("chromedriver")
    if browser is None or chromedriver is None:
        raise Unavailable(f"no {'chromium' if browser is None else 'chromedriver'} on PATH")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={window[0]},{window[1]}", "--hide-scrollbars", "--force-device-scale-factor=1",
                "--no-first-run", "--disable-extensions", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-default-apps", "--lang=en-US",
                *NO_NETWORK]:
        options.add_argument(arg)
    if logs:
        options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
    driver.set_page_load_timeout(TIMEOUT_S)
    driver.set_script_timeout(TIMEOUT_S)
    return driver


def settle(driver) -> str | None:
    """Wait until MathJax has typeset the page and its images have loaded; an error message, or None."""
    return driver.execute_async_script(SETTLE_JS)


A4_INCHES = (8.27, 11.69)
MARGIN_INCHES = 0.5


def print_page(driver) -> bytes:
    """The open page printed to an A4 PDF with half-inch margins and page numbers: how `make pdf` prints the book."""
    import base64

    pdf = driver.execute_cdp_cmd("Page.printToPDF", {
        "printBackground": True, "paperWidth": A4_INCHES[0], "paperHeight": A4_INCHES[1],
        "marginTop": MARGIN_INCHES, "marginBottom": MARGIN_INCHES,
        "marginLeft": MARGIN_INCHES, "marginRight": MARGIN_INCHES,
        "displayHeaderFooter": True, "headerTemplate": "<span></span>",
        "footerTemplate": '<div style="font-size:8px;width:100%;text-align:center">'
                          '<span class="pageNumber"></span> / <span class="totalPages"></span></div>'})
    return base64.b64decode(pdf["data"])
