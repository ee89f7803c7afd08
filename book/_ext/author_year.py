"""Sphinx extension: the bibliography's labels read as the citations do, author and year ("Chen et al., 2018").

The text cites author-year (`bibtex_reference_style: author_year`); pybtex's default labels are alphabetic
("[CRBD18]"), so a reader would meet two names for one reference. This registers a pybtex style whose labels are
author-year and whose entries are sorted by author, year and title; _config.yml selects it
(`bibtex_default_style: author_year_labels`).
"""
from __future__ import annotations

import re

from pybtex.plugin import register_plugin
from pybtex.style.formatting.unsrt import Style as Unsrt
from pybtex.style.labels import BaseLabelStyle


def _plain(text: str) -> str:
    """A LaTeX name as text: braces and accent commands dropped ('K{\\"o}pf' -> 'Kopf' is good enough for a label)."""
    return re.sub(r"\\[^a-zA-Z]|\\[a-zA-Z]+\s*|[{}]", "", text)


class AuthorYearLabels(BaseLabelStyle):
    def format_labels(self, sorted_entries):
        for entry in sorted_entries:
            people = entry.persons.get("author") or entry.persons.get("editor") or []
            last = [_plain(" ".join(p.prelast_names + p.last_names)) for p in people]
            if not last:
                names = _plain(entry.fields.get("title", entry.key))
            elif len(last) == 1:
                names = last[0]
            elif len(last) == 2:
                names = f"{last[0]} and {last[1]}"
            else:
                names = f"{last[0]} et al."
            yield f"{names}, {entry.fields.get('year', 'n.d.')}"


class AuthorYearStyle(Unsrt):
    default_label_style = "author_year_labels"
    default_sorting_style = "author_year_title"


def setup(app):
    register_plugin("pybtex.style.labels", "author_year_labels", AuthorYearLabels)
    register_plugin("pybtex.style.formatting", "author_year_labels", AuthorYearStyle)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
