"""The upload page: three files in `colorjax/serving/static/` (index.html, page.css,
page.js; nothing is loaded from elsewhere: no CDN, fonts or icons, so it works offline) and
the one thing the server fills in, the model's `info` (`ColorizeService.info`), as JSON in
index.html for page.js to read. The files are read at each request: an edit shows at the
next reload. What the page offers is described at the top of page.js.
"""

from __future__ import annotations

import html
import json
import re
from importlib import resources

STATIC = resources.files("colorjax.serving") / "static"
# The files served beside the page, with their types: no other name reaches the disk.
ASSETS = {"page.css": "text/css; charset=utf-8", "page.js": "text/javascript; charset=utf-8"}


def render_page(info: dict) -> str:
    """index.html with the title and `info` filled in."""
    fill = {"__TITLE__": html.escape(f"colorjax: {info['model']} (step {info['step']})"),
            # Every "<" escaped: no "</script>" or "<!--" in a name can end the element.
            "__INFO__": json.dumps(info).replace("<", "\\u003c")}
    text = (STATIC / "index.html").read_text("utf-8")
    return re.sub("__TITLE__|__INFO__", lambda m: fill[m.group(0)], text)


def asset(name: str) -> tuple[bytes, str] | None:
    """(bytes, content type) of the served file `name` (page.css, page.js); None otherwise."""
    if name not in ASSETS:
        return None
    return (STATIC / name).read_bytes(), ASSETS[name]
