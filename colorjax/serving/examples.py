"""Example photos for the page: colour photos that scikit-image (a colorjax dependency) ships
in its wheel (public domain or CC0, see `skimage.data`), served as small JPEGs so that a
visitor can try the model with one click. The page sends an example like an upload, so what
the visitor sees is exactly what their own photo would get.

Read from the installed package's own files (never downloaded, never from a data folder of
this checkout); each JPEG is made on its first request and kept in memory (a few dozen KB).
"""

from __future__ import annotations

import io
import threading
from importlib import resources

from PIL import Image

# name -> (file in skimage/data, caption): photos with colours a viewer knows to expect.
EXAMPLES = {
    "astronaut": ("astronaut.png", "Eileen Collins, astronaut (NASA)"),
    "coffee": ("coffee.png", "a cup of coffee (Rachel Michetti, CC0)"),
    "chelsea": ("chelsea.png", "Chelsea the cat (Stefan van der Walt, CC0)"),
    "rocket": ("rocket.jpg", "a Falcon 9 launch (SpaceX, public domain)"),
}
# The longest side of a served example: big enough to fill the page's comparison, small
# enough to colorize at once.
LONGEST_SIDE = 512

_cache: dict[str, bytes] = {}
_lock = threading.Lock()


def _source(name: str):
    return resources.files("skimage") / "data" / EXAMPLES[name][0]


def available() -> list[dict]:
    """The examples this installation has: [{"name", "caption", "url"}] (url relative to
    the page)."""
    return [{"name": name, "caption": caption, "url": f"examples/{name}.jpg"}
            for name, (_, caption) in EXAMPLES.items() if _source(name).is_file()]


def jpeg(name: str) -> bytes | None:
    """Example `name` as JPEG bytes (longest side at most LONGEST_SIDE); None if there is no
    such example here."""
    if name not in EXAMPLES:
        return None
    with _lock:
        if name not in _cache:
            source = _source(name)
            if not source.is_file():
                return None
            with source.open("rb") as f, Image.open(f) as im:
                im = im.convert("RGB")
                im.thumbnail((LONGEST_SIDE, LONGEST_SIDE), Image.LANCZOS)
                buf = io.BytesIO()
                im.save(buf, "JPEG", quality=90)
            _cache[name] = buf.getvalue()
        return _cache[name]
