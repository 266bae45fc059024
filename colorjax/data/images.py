"""Image files in, validated 8-bit RGB bytes out; and the decode/resize/crop of the pipeline.

Everything here works on one image with PIL and NumPy, so it runs the same in prepare
threads and in grain worker processes.

Rejection rules (the ``reason`` keys of a prepare report):

* ``unreadable``: the file cannot be read (permissions, vanished while scanning).
* ``not_an_image``: PIL does not recognise the bytes (e.g. a text file named ``.jpg``).
* ``corrupt``: recognised but not decodable: truncated or damaged data.
* ``too_large``: beyond PIL's decompression-bomb limit.
* ``too_small``: shorter side below ``min_size`` pixels (``config.data.min_size``).
* ``grayscale``: a single-channel image (modes ``1``, ``L``, ``LA``, ``I``, ``I;16``, ``F``).
* ``near_gray``: colour mode, but the mean over pixels of ``max(R,G,B) - min(R,G,B)``
  (8-bit levels, 0..255, measured on a grid subsample of at most about 256x256 pixels)
  is below ``gray_threshold`` (``config.data.gray_threshold``): a gray photo saved as RGB,
  whose only chroma is JPEG noise or a small coloured watermark.

Accepted images are stored as 8-bit RGB. The original bytes are kept when they already
are an upright 8-bit RGB JPEG or PNG (no second JPEG generation loss); anything else
(RGBA, P, CMYK, 16-bit, BMP, WebP, TIFF, EXIF-rotated) is converted and re-encoded:
JPEG sources as JPEG quality 95, all others as PNG. Transparent pixels are composited
over white. Embedded ICC profiles are ignored (pixel values are taken as sRGB).
"""

from __future__ import annotations

import dataclasses
import io
import os
import warnings

import numpy as np
from PIL import Image, ImageOps

from colorjax.media.photos import GRAY_MODES

REASONS = {
    "unreadable": "the file could not be read",
    "not_an_image": "not an image file PIL recognises (wrong content for its extension)",
    "corrupt": "image data could not be decoded (truncated or damaged)",
    "too_large": "larger than PIL's decompression-bomb limit",
    "too_small": "shorter side below min_size (config.data.min_size) pixels",
    "grayscale": "single-channel image (mode 1/L/LA/I/I;16/F): nothing to learn about colour",
    "near_gray": (
        "colour file with gray content: mean max(R,G,B)-min(R,G,B) below gray_threshold "
        "(config.data.gray_threshold, 8-bit levels)"
    ),
}

# Pixels on each side of the subsample used to measure chroma: enough for a stable mean,
# and it keeps the check cheap for multi-megapixel photos.
_CHROMA_SAMPLE = 256


@dataclasses.dataclass(frozen=True)
class Checked:
    """Outcome of validating one file. ``reason`` is None when the image is accepted."""

    reason: str | None
    detail: str = ""
    mode: str = ""
    size: tuple[int, int] = (0, 0)  # (width, height) as stored
    converted_from: str | None = None  # original mode when converted to 8-bit RGB
    chroma: float | None = None
    reencode: bool = False  # True when the stored bytes differ from the file's
    data: bytes | None = None  # encoded 8-bit RGB image, when asked for


def chroma_level(rgb: np.ndarray) -> float:
    """Mean ``max(R,G,B) - min(R,G,B)`` of an 8-bit RGB array, in levels (0..255).

    Measured on a regular grid subsample (stride chosen so at most ~256 pixels per side).
    """
    h, w = rgb.shape[:2]
    step = max(1, max(h, w) // _CHROMA_SAMPLE)
    sub = rgb[::step, ::step]
    return float((sub.max(axis=-1).astype(np.int16) - sub.min(axis=-1)).mean())


def _is_16bit(im: Image.Image) -> bool:
    # PIL opens 48-bit PNG/TIFF as mode RGB; only the tile's raw mode says 16 bits per channel.
    return im.mode.startswith("I;16") or any(";16" in str(t.args) for t in (im.tile or ()))


def to_rgb8(im: Image.Image) -> tuple[Image.Image, str | None]:
    """Any PIL image -> 8-bit RGB; returns (image, original mode if a conversion was needed)."""
    mode = im.mode
    if mode == "RGB":
        return im, None
    if mode in ("RGBA", "RGBa", "PA") or (mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB"), mode
    return im.convert("RGB"), mode


def _encode(im: Image.Image, jpeg: bool) -> bytes:
    buf = io.BytesIO()
    if jpeg:
        im.save(buf, format="JPEG", quality=95, subsampling=0)
    else:
        im.save(buf, format="PNG", compress_level=1)  # level 1: fast, still lossless
    return buf.getvalue()


def check_image(
    path: str, *, min_size: int, gray_threshold: float, want_bytes: bool = False
) -> Checked:
    """Validate one file; with ``want_bytes`` also return the 8-bit RGB bytes to store.

    Never raises for a bad file: every failure becomes a ``Checked`` with a ``reason``.
    """
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        return Checked("unreadable", f"{type(e).__name__}: {e}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PIL warns about odd palettes, EXIF, bombs...
        try:
            im = Image.open(io.BytesIO(raw))
        except Image.DecompressionBombError as e:
            return Checked("too_large", str(e))
        except Image.UnidentifiedImageError:  # its message names the buffer, not the file
            return Checked("not_an_image", f"cannot identify {os.path.basename(path)} as an image")
        except Exception as e:  # noqa: BLE001  any failure to identify the file
            return Checked("not_an_image", f"{type(e).__name__}: {e}")
        mode, fmt, size = im.mode, im.format, im.size
        if min(size) < min_size:
            return Checked("too_small", f"{size[0]}x{size[1]} < {min_size}", mode, size)
        sixteen = _is_16bit(im)
        try:
            im.load()
        except Image.DecompressionBombError as e:
            return Checked("too_large", str(e), mode, size)
        except Exception as e:  # noqa: BLE001  truncated data, bad Huffman tables, ...
            return Checked("corrupt", f"{type(e).__name__}: {e}", mode, size)
        if mode in GRAY_MODES or mode.startswith("I;"):
            return Checked("grayscale", f"mode {mode}", mode, size)
        try:
            orientation = im.getexif().get(0x0112, 1)
            rgb, converted = to_rgb8(im)
            if orientation not in (None, 1):
                rgb = ImageOps.exif_transpose(rgb)
        except Exception as e:  # noqa: BLE001
            return Checked("corrupt", f"conversion to RGB failed: {type(e).__name__}: {e}", mode, size)
        if sixteen and converted is None:
            converted = f"{mode};16"
        chroma = chroma_level(np.asarray(rgb))
        if chroma < gray_threshold:
            return Checked(
                "near_gray",
                f"mean max-min {chroma:.2f} < {gray_threshold} levels",
                mode, size, converted, chroma,
            )
        keep = fmt in ("JPEG", "MPO", "PNG") and converted is None and orientation in (None, 1)
        data = None
        if want_bytes:
            data = raw if keep else _encode(rgb, jpeg=fmt in ("JPEG", "MPO"))
        return Checked(None, "", mode, rgb.size, converted, chroma, not keep, data)


# --- decoding in the input pipeline ----------------------------------------------------


def open_rgb(data: bytes, min_shorter: int, draft: bool = True) -> Image.Image:
    """Decode image bytes to RGB whose shorter side is still >= ``min_shorter`` pixels.

    With ``draft``, JPEGs are decoded with libjpeg's DCT scaling (1/2, 1/4 or 1/8) when the
    result stays at least ``min_shorter`` on both sides: much less work than a full decode
    followed by a large downscale, and the resize that follows hides the difference.
    """
    im = Image.open(io.BytesIO(data))
    if draft:
        im.draft("RGB", (min_shorter, min_shorter))
    return im if im.mode == "RGB" else to_rgb8(im)[0]


def crop_resize(
    im: Image.Image, shorter: int, size: int, offset: tuple[float, float] | None = None
) -> Image.Image:
    """Resize so the shorter side is ``shorter``, then take a ``size`` x ``size`` crop.

    ``offset`` = (fx, fy) in [0, 1] places the crop within the resized image (0.5, 0.5 is
    the center crop). Done as one PIL resize of just the source box under the crop, which
    is what resize-then-crop computes without resizing pixels that are thrown away.
    """
    w, h = im.size
    scale = shorter / min(w, h)
    rw, rh = w * scale, h * scale  # resized extent (fractional: the box keeps it exact)
    fx, fy = offset if offset is not None else (0.5, 0.5)
    x0 = fx * max(rw - size, 0.0)
    y0 = fy * max(rh - size, 0.0)
    box = (x0 / scale, y0 / scale, min(x0 + size, rw) / scale, min(y0 + size, rh) / scale)
    return im.resize((size, size), Image.BILINEAR, box=box)
