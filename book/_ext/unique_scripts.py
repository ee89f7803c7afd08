"""Sphinx extension: each <script> once per page.

Sphinx 7.4 lists an inline script that an extension adds after the builder starts twice: once as
added (filename None) and once more from the registry when writing starts (filename ''), which it
does not see as the same. sphinx-thebe's `const THEBE_JS_URL = ...` is such a script, and declaring
a const twice is a JavaScript error on every page (tests/test_browser.py finds it).
"""
from __future__ import annotations


def _unique(app, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for js in scripts:
        key = (getattr(js, "filename", js) or "", getattr(js, "priority", None),
               tuple(sorted(getattr(js, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            unique.append(js)
    scripts[:] = unique


def setup(app):
    app.connect("html-page-context", _unique)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
