"""``colorjax_demo``: the colour photographs that ship inside scikit-image, as a small dataset.

Made on first use, offline, from files inside the installed ``skimage/data`` folder (the
images ``skimage.data`` loads without pooch): astronaut, chelsea, coffee, rocket and the
motorcycle stereo pair. The other bundled images are grayscale, synthetic, microscopy or
astronomy, so they are left out.

Splits (pixel-disjoint, deterministic):

* ``validation``: the bottom 30% rows of every photo, cut into non-overlapping squares
  (side = strip height): 26 images. Rows, not columns, because the motorcycle pair is a
  rectified stereo pair: a scene point lies on the same row in both photos, so holding
  out the same rows of both keeps validation content out of training.
* ``train``: the top 70% of every photo, whole, plus overlapping squares of half its
  height spread across its width (zoomed-in views for more variety): 62 images.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from colorjax.data import builders, folder

NAME = "colorjax_demo"
PHOTOS = (
    "astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg",
    "motorcycle_left.png", "motorcycle_right.png",
)
DEMO_VERSION = 1  # bump when the tiling below changes
_HOLDOUT = 0.3


def photo_dir() -> Path:
    import skimage.data  # noqa: PLC0415  (heavy import, only needed here)

    return Path(skimage.data.__file__).parent


def tiles(rgb: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(train images, validation images) cut from one photo, as described above."""
    h, w = rgb.shape[:2]
    hv = round(_HOLDOUT * h)
    top, bottom = rgb[: h - hv], rgb[h - hv :]
    train = [top]
    t = top.shape[0] // 2
    n = int(np.ceil(w / t))
    for y in (0, top.shape[0] - t):
        for x in np.linspace(0, w - t, n).round().astype(int):
            train.append(top[y : y + t, x : x + t])
    val = [bottom[:, i * hv : (i + 1) * hv] for i in range(w // hv)]
    return train, val


def prepare_demo(data_dir=None, *, min_size: int = 32, gray_threshold: float = 1.0,
                 progress: bool = True) -> folder.PrepareReport:
    """Make (or find cached) ``colorjax_demo`` in ``data_dir``; returns the prepare report."""
    import skimage  # noqa: PLC0415

    src = photo_dir()
    missing = [p for p in PHOTOS if not (src / p).is_file()]
    if missing:
        raise FileNotFoundError(
            f"The colorjax_demo photos {missing} are not in {src}: scikit-image "
            f"{skimage.__version__} no longer ships them. Set config.data.name or "
            "config.data.folder to other data."
        )
    key = f"demo-{DEMO_VERSION}-skimage-{skimage.__version__}"
    with tempfile.TemporaryDirectory(prefix="colorjax_demo_") as tmp:
        tmp = Path(tmp)
        if (cached := _cached(data_dir, key, min_size, gray_threshold)) is not None:
            return cached
        for split in ("train", "val"):
            (tmp / split).mkdir()
        for photo in PHOTOS:
            rgb = np.asarray(Image.open(src / photo).convert("RGB"))
            train, val = tiles(rgb)
            stem = os.path.splitext(photo)[0]
            for i, im in enumerate(train):
                Image.fromarray(im).save(tmp / "train" / f"{stem}_{i:02d}.png", compress_level=1)
            for i, im in enumerate(val):
                Image.fromarray(im).save(tmp / "val" / f"{stem}_{i:02d}.png", compress_level=1)
        return folder.prepare_folder(
            tmp, NAME, data_dir, min_size=min_size, gray_threshold=gray_threshold,
            progress=progress, _cache_key=key, _reserved_ok=True,
            _src_label=f"scikit-image {skimage.__version__} photos in {src}",
        )


def _cached(data_dir, key, min_size, gray_threshold):
    options = folder.make_options(min_size, gray_threshold, 0.1, 0.0)
    return folder.load_cached(
        builders.colorjax_data_dir(data_dir), NAME, folder.cache_key(key, options)
    )
