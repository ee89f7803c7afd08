"""Sphinx extension: the book's version, commit and date, read once when the build starts.

Notebooks run under `execute_notebooks: cache`, so a commit a notebook printed is that of the checkout that last
executed it, not of the build. The citation on the reproduction page and the PDF's title page must name the
build's commit, so both read it from here:

- the ``{book-citation}`` directive writes the "how to cite a number" example (odecore.cite.example) and the
  book's BibTeX entry (odecore.cite.bibtex) with this build's commit and date;
- every HTML page carries ``<meta name="odecore-build" content="version commit date">``, which
  tests/print_pdf.py reads for the title page.

A page that uses the directive is read again at every build, so a new commit never leaves an old one behind.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import Directive

ROOT = Path(__file__).resolve().parents[2]


def build_info() -> dict[str, str]:
    """{'version', 'commit', 'date'} of the checkout being built (commit and date empty outside git)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from odecore import cite

    where = cite.checkout()
    commit, date = where if where else ("", "")
    return {"version": cite.version(), "commit": commit, "date": date}


class BookCitation(Directive):
    """The citing example and the BibTeX entry, with the build's commit."""

    has_content = False

    def run(self):
        from odecore import cite

        env = self.state.document.settings.env
        if not hasattr(env, "build_info_docs"):
            env.build_info_docs = set()
        env.build_info_docs.add(env.docname)
        info = env.config.odecore_build
        example = cite.example(commit=info["commit"] or None)
        quote = nodes.block_quote("", nodes.paragraph(text=example))
        words = nodes.paragraph(text="The BibTeX entry for this build of the book (the repository's CITATION.bib and "
                                     "CITATION.cff hold the same without the commit):")
        bib = cite.bibtex(info["commit"] or None, info["date"] or None)
        block = nodes.literal_block(bib, bib, language="bibtex")
        return [quote, words, block]


def _config(app, config) -> None:
    config.odecore_build = build_info()


def _outdated(app, env, added, changed, removed):
    return sorted(getattr(env, "build_info_docs", set()) - set(removed))


def _meta(app, pagename, templatename, context, doctree) -> None:
    info = app.config.odecore_build
    tag = f'<meta name="odecore-build" content="{info["version"]} {info["commit"]} {info["date"]}">\n'
    context["metatags"] = context.get("metatags", "") + tag


def setup(app):
    app.add_config_value("odecore_build", {}, "")   # a new commit re-reads only the pages that print it
    app.connect("config-inited", _config)
    app.connect("env-get-outdated", _outdated)
    app.connect("html-page-context", _meta)
    app.add_directive("book-citation", BookCitation)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
