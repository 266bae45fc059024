"""Photos in and out, shared by `colorize`, `serve` and the data package: decoding any mode
PIL reads (EXIF orientation, 16-bit, alpha over white), CIELAB L in stripes of bounded
memory, Lab -> RGB on the host, the model's gray view, and finding image files.

A `Photo` keeps a photo's full-resolution L and, when it had colour, its 8-bit RGB (the
"truth" of a comparison strip).
"""

from __future__ import annotations

import dataclasses
import os
import stat

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from colorjax import color

# File extensions the data package accepts for training and evaluation folders (colorize
# reads anything PIL registers, see `image_files`).
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".webp", ".tif", ".tiff"}
)
# PIL modes with one channel of data (plus alpha): no colour in the file.
GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "F"})


def is_image_path(name: str) -> bool:
    """True for file names with one of `IMAGE_EXTENSIONS` (case-insensitive)."""
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


# Photos in the HEIF container (ISO base media, as MP4): AVIF (AV1) and HEIC (HEVC) are
# photos, told from videos by the brands of their `ftyp` box, never sent down a video
# path; whether they can be read depends on Pillow (AVIF from Pillow 11.2 when built with
# libavif; HEIC needs a plugin colorjax does not load). Their extensions count as photos
# whether or not Pillow registers them, so that a file that cannot be read is reported.
HEIF_EXTENSIONS = frozenset({".avif", ".avifs", ".heic", ".heics", ".heif", ".heifs", ".hif"})
_HEIF_BRANDS = {b"avif": "AVIF", b"avis": "AVIF", b"heic": "HEIC", b"heix": "HEIC",
                b"heim": "HEIC", b"heis": "HEIC", b"hevc": "HEIC", b"hevx": "HEIC",
                b"hevm": "HEIC", b"hevs": "HEIC"}


def heif_kind(head: bytes) -> str | None:
    """'AVIF', 'HEIC' or 'HEIF' when bytes start like a HEIF still image or image sequence
    (the `ftyp` box's major brand, or for the generic mif1/msf1 its compatible brands);
    None for anything else (MP4 and MOV videos included)."""
    if head[4:8] != b"ftyp":
        return None
    major = head[8:12]
    if major in _HEIF_BRANDS:
        return _HEIF_BRANDS[major]
    if major not in (b"mif1", b"msf1"):
        return None
    end = min(int.from_bytes(head[:4], "big"), len(head))
    compatible = [head[i:i + 4] for i in range(16, end - 3, 4)]
    return next((_HEIF_BRANDS[b] for b in compatible if b in _HEIF_BRANDS), "HEIF")


class UnsupportedPhoto(ValueError):
    """A photo in a format this Pillow cannot read (HEIC without a HEIF plugin, say)."""


def unsupported_photo_message(kind: str) -> str:
    return (f"a {kind} photo, which cannot be read here (this Pillow has no {kind} "
            "decoder): convert it to JPEG or PNG")


# Lab -> RGB of a large photo is done in stripes of about this many pixels (bounded memory).
STRIPE_PIXELS = 1 << 20


@dataclasses.dataclass
class Photo:
    """One input photo: CIELAB L (H, W) in [0, 100]; the colour original as 8-bit RGB
    (H, W, 3) when the input had colour (the "truth" of `--compare`), else None."""

    l: np.ndarray
    truth: np.ndarray | None = None

    @property
    def size(self) -> tuple[int, int]:
        """(width, height), as PIL says it."""
        return self.l.shape[1], self.l.shape[0]


# --- inputs ---------------------------------------------------------------------------


def _lightness(rgb: np.ndarray) -> np.ndarray:
    """CIELAB L (H, W) of RGB (H, W, 3) in any `_unit` dtype, in stripes of rows (bounded
    memory), computed by up to `_WORKERS` threads."""
    h, w = rgb.shape[:2]
    out = np.empty((h, w), np.float32)

    def rows(y0, y1):
        piece = rgb[y0:y1]  # uint8 through color's table of the sRGB curve: the same values
        out[y0:y1] = color.rgb_to_l(piece if piece.dtype == np.uint8 else _unit(piece))

    _in_pieces(rows, h, max(1, STRIPE_PIXELS // max(w, 1)))
    return out


# Host-side colour conversions of a photo run on this many threads, a piece each: NumPy's
# loops release the GIL. On 2 cores, a 512x768 photo's Lab -> RGB took 7.8 ms against 24 ms
# on one thread, its L 1.7 against 2.8 ms (with one BLAS thread, host_threads.py;
# docs/benchmarks.md, "bfloat16 convolutions on AMX", its "Colorize throughput" part).
# At most 4, so that the pieces' temporaries stay a few STRIPE_PIXELS on a many-core machine.
_WORKERS = max(1, min(4, os.cpu_count() or 1))
_POOL = None


def _in_pieces(fn, total: int, most: int) -> None:
    """fn(start, stop) over [0, total) in pieces of at most `most`, split so that each
    of `_WORKERS` threads has one when it can; run on a shared pool, in order of start."""
    global _POOL
    size = max(1, min(most, -(-total // _WORKERS)))
    pieces = [(i, min(i + size, total)) for i in range(0, total, size)]
    if len(pieces) <= 1 or _WORKERS == 1:
        for piece in pieces:
            fn(*piece)
        return
    if _POOL is None:
        from concurrent.futures import ThreadPoolExecutor
        _POOL = ThreadPoolExecutor(_WORKERS, thread_name_prefix="colorjax-photo")
    for f in [_POOL.submit(fn, *piece) for piece in pieces]:
        f.result()  # re-raises a piece's exception here


def _gray_photo(values: np.ndarray) -> Photo:
    """Gray levels (H, W) in [0, 1] -> Photo. L is computed as for an RGB image with equal
    channels, so a gray photo and its RGB copy give the same L."""
    v = np.clip(values.astype(np.float32), 0.0, 1.0)
    return Photo(l=_lightness(np.broadcast_to(v[..., None], v.shape + (3,))))


def _rgb_photo(rgb: np.ndarray) -> Photo:
    """8-bit, 16-bit or [0, 1] float RGB -> Photo; equal channels count as gray (no truth)."""
    if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2]):
        return _gray_photo(_unit(rgb[..., 0]))
    truth = rgb if rgb.dtype == np.uint8 else to_uint8(_unit(rgb))
    return Photo(l=_lightness(rgb), truth=truth)


def _unit(a: np.ndarray) -> np.ndarray:
    """Integer or float pixel values -> float32 in [0, 1]."""
    if a.dtype == np.bool_:
        return a.astype(np.float32)
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    if a.dtype == np.uint16:
        return a.astype(np.float32) / 65535.0
    if np.issubdtype(a.dtype, np.floating):
        if a.size and (np.nanmin(a) < -1e-3 or np.nanmax(a) > 1.0 + 1e-3):
            raise ValueError("float images must have values in [0, 1]; got "
                             f"[{np.nanmin(a):.4g}, {np.nanmax(a):.4g}] (pass uint8 for 0..255)")
        return np.clip(np.nan_to_num(a.astype(np.float32)), 0.0, 1.0)
    raise ValueError(f"unsupported pixel dtype {a.dtype}; use uint8, uint16, bool or float")


def _over_white(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    a = _unit(alpha)[..., None]
    return _unit(rgb) * a + (1.0 - a)


def photo_from_array(a: np.ndarray) -> Photo:
    """(H, W), (H, W, 1|2|3|4) arrays: gray, gray+alpha, RGB or RGBA (uint8, uint16, float)."""
    a = np.asarray(a)
    if a.ndim == 2:
        return _gray_photo(_unit(a))
    if a.ndim == 3 and a.shape[-1] in (1, 2, 3, 4):
        c = a.shape[-1]
        if c == 1:
            return _gray_photo(_unit(a[..., 0]))
        if c == 2:
            return _gray_photo(_over_white(a[..., :1], a[..., 1])[..., 0])
        if c == 4:
            return _rgb_photo(_over_white(a[..., :3], a[..., 3]))
        return _rgb_photo(a)
    raise ValueError(f"an image array must be (H, W) or (H, W, 1|2|3|4); got {a.shape}")


def photo_from_pil(im: Image.Image) -> Photo:
    """Any PIL image, pixels as stored (apply EXIF orientation before, see `open_photo`)."""
    mode = im.mode
    if mode.startswith("I;16"):
        return _gray_photo(np.asarray(im, dtype=np.float32) / 65535.0)
    if mode == "I":  # 32-bit ints: 16-bit data in practice, 8-bit when it fits
        a = np.asarray(im, dtype=np.float32)
        return _gray_photo(a / (255.0 if a.size and a.max() <= 255 else 65535.0))
    if mode == "F":
        a = np.asarray(im, dtype=np.float32)
        return _gray_photo(a if a.size and a.max() <= 1.0 else a / 255.0)
    if mode in ("LA", "La", "PA", "RGBA", "RGBa") or (mode == "P" and "transparency" in im.info):
        rgba = np.asarray(im.convert("RGBA"))
        return photo_from_array(rgba)
    if mode in ("1", "L"):
        return _gray_photo(np.asarray(im.convert("L"), dtype=np.float32) / 255.0)
    return _rgb_photo(np.asarray(im.convert("RGB")))


class NotARegularFile(OSError):
    """A path named like a photo that is no regular file: a FIFO, a socket, a device, a
    folder, or a symbolic link to nothing. Reading a FIFO would block forever."""


def regular_file_problem(path) -> str | None:
    """None when `path` (symlinks followed) is a regular file; else what it is instead, in
    a few words ('a FIFO (named pipe), not a regular file')."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if os.path.islink(path):
            return f"a symbolic link to {os.readlink(path)!r}, which does not exist"
        return "no such file"
    except OSError as e:
        return f"cannot be read ({e.strerror or e})"
    if stat.S_ISREG(mode):
        return None
    kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "a folder" if stat.S_ISDIR(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a special file")
    return f"{kind}, not a regular file"


def open_regular_file(path):
    """`path` opened for binary reading if it is a regular file (symlinks followed), else
    `NotARegularFile`. Checked before opening (a device is never opened) and again on the
    open descriptor, which is opened non-blocking: a FIFO swapped in meanwhile cannot hang
    the reader."""
    problem = regular_file_problem(path)
    if problem:
        raise NotARegularFile(problem)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotARegularFile("not a regular file (replaced while being opened)")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def open_photo(path_or_file) -> Photo:
    """Read an image file (path or file object) PIL can decode, EXIF orientation applied.
    A path must be a regular file (`open_regular_file`: `NotARegularFile` otherwise)."""
    if isinstance(path_or_file, (str, os.PathLike)):
        with open_regular_file(path_or_file) as f:
            return open_photo(f)
    try:
        im = Image.open(path_or_file)
    except UnidentifiedImageError:
        try:
            path_or_file.seek(0)
            kind = heif_kind(path_or_file.read(64))
        except (AttributeError, OSError):  # a stream that cannot go back: say what PIL said
            kind = None
        if kind:
            raise UnsupportedPhoto(unsupported_photo_message(kind)) from None
        raise
    with im:
        im = ImageOps.exif_transpose(im)
        im.load()
        return photo_from_pil(im)


def to_photo(image) -> Photo:
    """A PIL image, a numpy array or a Photo -> Photo."""
    if isinstance(image, Photo):
        return image
    if isinstance(image, Image.Image):
        return photo_from_pil(image)
    return photo_from_array(np.asarray(image))


# --- resizing and Lab -> RGB on the host -----------------------------------------------


def resize_plane(plane: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bilinear (antialiased when shrinking) float32 resize of one 2-D plane."""
    if plane.shape == (height, width):
        return plane.astype(np.float32)
    im = Image.fromarray(np.ascontiguousarray(plane, dtype=np.float32))
    return np.asarray(im.resize((width, height), Image.BILINEAR), dtype=np.float32)


def resize_ab(ab: np.ndarray, width: int, height: int) -> np.ndarray:
    """`resize_plane` of both ab channels (h, w, 2) -> (height, width, 2)."""
    return np.stack([resize_plane(ab[..., c], width, height) for c in (0, 1)], -1)


def lab_to_rgb_striped(l: np.ndarray, ab: np.ndarray) -> np.ndarray:
    """Lab (L (H, W), ab (H, W, 2) in Lab units) -> sRGB float32 (H, W, 3), in pieces.

    Pieces are counted in pixels, not rows, so the temporaries stay at STRIPE_PIXELS
    whatever the aspect ratio (one row of a 16,000,000 x 1 photo is 16 M pixels)."""
    h, w = l.shape
    out = np.empty((h * w, 3), np.float32)
    flat_l, flat_ab = l.reshape(-1), ab.reshape(-1, 2)

    def pixels(i, j):
        out[i:j] = color.lab_to_rgb(np.concatenate([flat_l[i:j, None], flat_ab[i:j]], -1))

    _in_pieces(pixels, h * w, STRIPE_PIXELS)  # several threads: see _WORKERS
    return out.reshape(h, w, 3)


_LUT_L = np.linspace(0.0, 100.0, 4097, dtype=np.float32)

_LUT_GRAY = color.lab_to_rgb(np.stack([_LUT_L, 0 * _LUT_L, 0 * _LUT_L], -1))[:, 1]


def gray_of(photo: Photo) -> np.ndarray:
    """The gray image the model sees (L with ab = 0), 8-bit (H, W).

    Looked up in a 4097-entry table of `color.lab_to_rgb` over L in [0, 100] (error far
    below one 8-bit level): a third of the work of a full Lab -> RGB on large photos.
    """
    return to_uint8(np.interp(photo.l, _LUT_L, _LUT_GRAY))


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    return np.round(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8)


def media_files(root: str) -> tuple[list[str], list[str], int]:
    """Files under `root` (recursively, sorted, hidden ones skipped): the images (extensions
    PIL registers), the videos (`video_io.VIDEO_EXTENSIONS`, which wins where PIL also
    claims one, e.g. .mpg), and how many other files were ignored."""
    from colorjax.media.video_io import VIDEO_EXTENSIONS

    exts = {e.lower() for e in Image.registered_extensions()}
    images, videos, ignored = [], [], 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            ext = os.path.splitext(name)[1].lower()
            if ext in VIDEO_EXTENSIONS:
                videos.append(os.path.join(dirpath, name))
            elif ext in exts or ext in HEIF_EXTENSIONS:
                images.append(os.path.join(dirpath, name))
            else:
                ignored += 1
    return images, videos, ignored


def image_files(root: str) -> tuple[list[str], int]:
    """Images under `root` (see `media_files`); and how many other files (videos included)
    were ignored."""
    images, videos, ignored = media_files(root)
    return images, ignored + len(videos)


def compare_strip(photo: Photo, colors: list[np.ndarray]) -> np.ndarray:
    """gray | colour(s) | truth (when the input had colour), side by side, uint8."""
    gray = gray_of(photo)
    panels = [np.stack([gray] * 3, -1), *(c if c.dtype == np.uint8 else to_uint8(c)
                                          for c in colors)]
    return np.concatenate(panels + ([photo.truth] if photo.truth is not None else []), axis=1)
