"""Colorize your own photos with an exported model: `Colorizer` (Python) and a CLI.

    python -m colorjax.colorize --model=EXPORT_DIR --input=FILE_OR_DIR --output=DIR \
        [--overwrite] [--num_samples=N] [--size=S] [--compare] [--batch_size=B] [--seed=K]

How a photo is colorized (any size, any mode PIL reads):

1. EXIF orientation is applied (files only). Gray photos (modes 1/L/LA/I/I;16/F, or RGB with
   three equal channels) are used as they are; colour photos are made gray first: their
   CIELAB L is kept, their colour becomes the "truth" panel of `--compare`.
   Transparent pixels are composited over white.
2. The full-resolution L is resized (bilinear, antialiased) to S x S, the model's working
   size (default: the size it was trained at). This is a plain resize of the whole photo,
   not a crop: the aspect ratio is squeezed for the network, but every pixel gets colour.
3. The predicted ab (S x S) is resized bilinearly back to the photo's size and combined with
   the photo's own full-resolution L, so the result has exactly the input's size and
   sharpness: only the colour is at the model's resolution, which the eye barely notices.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
import threading
from collections import Counter

import jax
import numpy as np
from PIL import Image, ImageOps

from colorjax import color
from colorjax.export import SAMPLING_OVERRIDES, ExportError, read_export

_GRAY_MODES = ("1", "L", "LA", "La", "I", "F")
# Lab -> RGB of a large photo is done in stripes of about this many pixels (bounded memory).
_STRIPE_PIXELS = 1 << 20


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
    """CIELAB L (H, W) of RGB (H, W, 3) in any `_unit` dtype, in stripes (bounded memory)."""
    h, w = rgb.shape[:2]
    out = np.empty((h, w), np.float32)
    rows = max(1, _STRIPE_PIXELS // max(w, 1))
    for y in range(0, h, rows):
        out[y:y + rows] = color.rgb_to_lab(_unit(rgb[y:y + rows]))[..., 0]
    return out


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


def open_photo(path_or_file) -> Photo:
    """Read an image file (path or file object) PIL can decode, EXIF orientation applied."""
    with Image.open(path_or_file) as im:
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


def _resize_plane(plane: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bilinear (antialiased when shrinking) float32 resize of one 2-D plane."""
    if plane.shape == (height, width):
        return plane.astype(np.float32)
    im = Image.fromarray(np.ascontiguousarray(plane, dtype=np.float32))
    return np.asarray(im.resize((width, height), Image.BILINEAR), dtype=np.float32)


def lab_to_rgb_striped(l: np.ndarray, ab: np.ndarray) -> np.ndarray:
    """Lab (L (H, W), ab (H, W, 2) in Lab units) -> sRGB float32 (H, W, 3), in pieces.

    Pieces are counted in pixels, not rows, so the temporaries stay at _STRIPE_PIXELS
    whatever the aspect ratio (one row of a 16,000,000 x 1 photo is 16 M pixels)."""
    h, w = l.shape
    out = np.empty((h * w, 3), np.float32)
    flat_l, flat_ab = l.reshape(-1), ab.reshape(-1, 2)
    for i in range(0, h * w, _STRIPE_PIXELS):
        lab = np.concatenate([flat_l[i:i + _STRIPE_PIXELS, None],
                              flat_ab[i:i + _STRIPE_PIXELS]], axis=-1)
        out[i:i + _STRIPE_PIXELS] = color.lab_to_rgb(lab)
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


def _pow2_at_least(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


# --- the colorizer --------------------------------------------------------------------


class Colorizer:
    """An exported model, ready to colorize photos of any size.

    `Colorizer.load(path)` restores an export (`python -m colorjax.main --mode=export`);
    `colorize(image)` returns the colour image. Safe to call from several threads.
    """

    def __init__(self, objective, variables, config, metadata: dict, *, size: int | None = None,
                 batch_size: int = 8, seed: int = 0):
        self.objective, self.config, self.metadata = objective, config, metadata
        self.variables = variables
        self.model_name: str = metadata["model"]
        self.samples: bool = bool(metadata.get("samples", False))
        self.image_size = int(metadata["image_size"])
        self.downsample_factor = int(getattr(objective, "downsample_factor", 1))
        self.batch_size = int(batch_size)
        if self.batch_size <= 0:
            raise ValueError(f"batch_size={batch_size} must be positive")
        self.seed = int(seed)
        self.size = self.check_size(size)
        self._predict = jax.jit(objective.predict_with)
        self._predict_samples = None  # built on first use, see `_sampling_predict`
        # One jitted call at a time: compilation caches and host buffers are then never
        # contended, and a busy server does not oversubscribe the CPU/GPU.
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: str, *, size: int | None = None, batch_size: int = 8,
             seed: int = 0) -> "Colorizer":
        """Restore an export directory. Raises `ExportError` for anything that is not one."""
        config, metadata, objective, variables = read_export(path)
        return cls(objective, variables, config, metadata, size=size, batch_size=batch_size,
                   seed=seed)

    def __repr__(self):
        return (f"Colorizer(model={self.model_name!r}, step={self.metadata.get('step')}, "
                f"size={self.size}, samples={self.samples})")

    def check_size(self, size: int | None) -> int:
        """The working size: `size`, or the trained size; must divide by the downsample factor."""
        if size is None:
            return self.image_size
        f = self.downsample_factor
        if int(size) != size or size <= 0 or size % f:
            raise ValueError(
                f"size={size} is not allowed for {self.model_name!r}, which halves the image to "
                f"1/{f}; allowed: positive multiples of {f} (it was trained at "
                f"{self.image_size})")
        return int(size)

    def check_num_samples(self, num_samples: int) -> int:
        if int(num_samples) != num_samples or num_samples < 1:
            raise ValueError(f"num_samples={num_samples} must be a positive integer")
        if num_samples > 1 and not self.samples:
            raise ValueError(f"num_samples={num_samples}: {self.model_name!r} is deterministic "
                             "(one colorization per photo); several samples need a VAE or "
                             "diffusion model")
        return int(num_samples)

    # -- prediction in network units at the working size --

    def _sampling_predict(self):
        """`predict_with` of the objective configured to draw samples (e.g. a VAE's z from
        the prior instead of its mode); the same variables serve both."""
        overrides = SAMPLING_OVERRIDES.get(self.metadata.get("family"), {})
        if not overrides:
            return self._predict
        if self._predict_samples is None:
            import ml_collections

            from colorjax.objectives import make_objective
            config = ml_collections.ConfigDict(self.config.to_dict())
            for path, value in overrides.items():
                *parents, leaf = path.split(".")
                node = config
                for name in parents:
                    node = node[name]
                node[leaf] = value
            self._predict_samples = jax.jit(make_objective(config, 1).predict_with)
        return self._predict_samples

    def predict_ab(self, l_norm, rng=None, sampling: bool = False) -> np.ndarray:
        """ab (N, S, S, 2) in network range for l_norm (N, S, S, 1): `predict_with` under jit.
        `sampling` selects the sampling configuration (what num_samples > 1 uses)."""
        rng = jax.random.key(self.seed) if rng is None else rng
        with self._lock:
            fn = self._sampling_predict() if sampling else self._predict
            return np.asarray(fn(self.variables, np.asarray(l_norm, np.float32), rng))

    def _predict_batch(self, l_small: np.ndarray, sample: int, chunk: int,
                       pad_to: int, sampling: bool) -> np.ndarray:
        """Zero-pad (n, S, S, 1) to `pad_to` rows: jit compiles once per padded shape."""
        n = l_small.shape[0]
        padded = max(n, pad_to)
        if padded > n:
            pad = np.zeros((padded - n,) + l_small.shape[1:], np.float32)
            l_small = np.concatenate([l_small, pad])
        rng = jax.random.fold_in(jax.random.fold_in(jax.random.key(self.seed), sample), chunk)
        return self.predict_ab(l_small, rng, sampling)[:n]

    # -- photos in, colour out --

    def predict_small(self, photos: list[Photo], num_samples: int = 1,
                      size: int | None = None, fixed_batch: bool = False
                      ) -> list[list[np.ndarray]]:
        """For each photo, `num_samples` ab planes (S, S, 2) in Lab units at the working size.

        One sample is the model's configured prediction (a VAE's default is its most likely
        colouring, z = 0); several are draws (a VAE's z from the prior; diffusion noise).

        Batches are zero-padded to `batch_size` when there are that many photos or with
        `fixed_batch` (one compilation for a whole folder), else to the next power of two
        (a single photo does not pay for a full batch).
        """
        num_samples = self.check_num_samples(num_samples)
        s = self.size if size is None else self.check_size(size)
        pad_to = (self.batch_size if fixed_batch or len(photos) >= self.batch_size
                  else min(self.batch_size, _pow2_at_least(len(photos))))
        results: list[list[np.ndarray]] = [[] for _ in photos]
        for start in range(0, len(photos), self.batch_size):
            chunk = photos[start:start + self.batch_size]
            l_small = np.stack([color.normalize_l(_resize_plane(p.l, s, s))[..., None]
                                for p in chunk])
            for k in range(num_samples):
                ab = color.denormalize_ab(
                    self._predict_batch(l_small, k, start // self.batch_size, pad_to,
                                        sampling=num_samples > 1))
                for i in range(len(chunk)):
                    results[start + i].append(ab[i])
        return results

    @staticmethod
    def full_size_ab(photo: Photo, ab_small: np.ndarray) -> np.ndarray:
        """ab (S, S, 2) resized bilinearly to the photo's size (H, W, 2)."""
        w, h = photo.size
        return np.stack([_resize_plane(ab_small[..., c], w, h) for c in (0, 1)], -1)

    @classmethod
    def finish(cls, photo: Photo, ab_small: np.ndarray) -> np.ndarray:
        """sRGB float32 (H, W, 3): the photo's own full-size L with the upsampled ab."""
        return lab_to_rgb_striped(photo.l, cls.full_size_ab(photo, ab_small))

    def predict_photos(self, photos: list[Photo], num_samples: int = 1,
                       size: int | None = None) -> list[list[np.ndarray]]:
        """For each photo, `num_samples` ab planes (H, W, 2) in Lab units at its full size."""
        small = self.predict_small(photos, num_samples, size)
        return [[self.full_size_ab(p, ab) for ab in abs_] for p, abs_ in zip(photos, small)]

    def colorize_photos(self, photos: list[Photo], num_samples: int = 1,
                        size: int | None = None) -> list[list[np.ndarray]]:
        """For each photo, `num_samples` sRGB float32 images (H, W, 3) of its size."""
        small = self.predict_small(photos, num_samples, size)
        return [[self.finish(p, ab) for ab in abs_] for p, abs_ in zip(photos, small)]

    def colorize(self, image, num_samples: int = 1, size: int | None = None):
        """Colorize a PIL image, a numpy array, or a list (or (N, H, W[, C]) array) of them.

        Returns the same kind: PIL in -> PIL RGB out; integer arrays -> uint8 (H, W, 3);
        float arrays (values in [0, 1]) -> float32 in [0, 1]. With num_samples > 1 (VAE and
        diffusion models) each image becomes a list of samples (arrays gain an axis).
        """
        if isinstance(image, (list, tuple)):
            photos = [to_photo(x) for x in image]
            outs = self.colorize_photos(photos, num_samples, size)
            return [self._as_input_kind(x, o, num_samples) for x, o in zip(image, outs)]
        if isinstance(image, np.ndarray) and image.ndim == 4:
            outs = self.colorize_photos([to_photo(x) for x in image], num_samples, size)
            return np.stack([self._as_input_kind(image[0], o, num_samples) for o in outs])
        out = self.colorize_photos([to_photo(image)], num_samples, size)[0]
        return self._as_input_kind(image, out, num_samples)

    @staticmethod
    def _as_input_kind(image, samples: list[np.ndarray], num_samples: int):
        if isinstance(image, Image.Image):
            kind = [Image.fromarray(to_uint8(s)) for s in samples]
        elif isinstance(image, Photo) or np.issubdtype(np.asarray(image).dtype, np.floating):
            kind = samples
        else:
            kind = [to_uint8(s) for s in samples]
        if num_samples == 1:
            return kind[0]
        return kind if not isinstance(image, np.ndarray) else np.stack(kind)


# --- command line ---------------------------------------------------------------------

OUTPUT_RULES = """\
output names (the same inputs and options always give the same names):
  Each photo is written under the output folder at its path relative to --input (a single
  file: its own name), with the extension of --format: in/sub/x.jpg -> out/sub/x.png.
  The source extension stays in the name only where two inputs in one folder share a name
  apart from it (case ignored): a.jpg, a.png -> a_jpg.png, a_png.png; a lone b.jpg -> b.png.
  A name still taken (case ignored), by an earlier input (in sorted order, upper case first)
  or by another file of this run such as a compare strip, gets _2, _3, ...:
  b.JPG, b.jpg -> b_jpg.png, b_jpg_2.png; c.png, c_compare.png with --compare -> c.png,
  c_compare.png (c.png's strip), c_compare_2.png, c_compare_2_compare.png.
  --num_samples=N > 1 writes NAME_sample1 ... NAME_sampleN instead of NAME; --compare adds
  NAME_compare.

safety (all checked before the model loads; exit status 2):
  Inputs are never written over or into: an output folder equal to or inside the input
  folder, or an output that is an input file (real paths, symlinks and hard links resolved),
  is refused. The list of inputs is fixed before anything is written. Existing outputs are
  not replaced unless --overwrite: without it the run stops, saying how many exist and
  naming the first. An output folder that cannot be written is reported. A file that cannot
  be written during the run is reported, the others go on, and the exit status is 1.
"""


def image_files(root: str) -> tuple[list[str], int]:
    """Files under `root` (recursively, sorted) whose extension PIL registers; and how many
    other files were ignored."""
    exts = {e.lower() for e in Image.registered_extensions()}
    found, ignored = [], 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            if os.path.splitext(name)[1].lower() in exts:
                found.append(os.path.join(dirpath, name))
            else:
                ignored += 1
    return found, ignored


def output_stems(rels: list[str], suffixes=("",)) -> list[str]:
    """The output stem (path relative to the output folder, no extension) of each input,
    given by its relative path `rels[i]`, under the rules of `OUTPUT_RULES`.

    `suffixes` are what each input's files add to its stem (e.g. "" and "_compare"): a stem
    is free only when none of the names it would write is taken, ignoring case (so that the
    names stay distinct on case-insensitive file systems too).
    """
    bases = [os.path.splitext(r)[0] for r in rels]
    shared = Counter(b.lower() for b in bases)
    wanted = [b if shared[b.lower()] == 1 else f"{b}_{os.path.splitext(r)[1][1:].lower()}"
              for b, r in zip(bases, rels)]
    taken: set[str] = set()
    stems = []
    for want in wanted:
        stem, n = want, 1
        while any((stem + s).lower() in taken for s in suffixes):
            n += 1
            stem = f"{want}_{n}"
        taken.update((stem + s).lower() for s in suffixes)
        stems.append(stem)
    return stems


def output_suffixes(num_samples: int, compare: bool) -> list[str]:
    """What each photo's files add to its stem, in the order they are written."""
    samples = [f"_sample{k + 1}" for k in range(num_samples)] if num_samples > 1 else [""]
    return samples + (["_compare"] if compare else [])


def compare_strip(photo: Photo, colors: list[np.ndarray]) -> np.ndarray:
    """gray | colour(s) | truth (when the input had colour), side by side, uint8."""
    gray = gray_of(photo)
    panels = [np.stack([gray] * 3, -1), *(c if c.dtype == np.uint8 else to_uint8(c)
                                          for c in colors)]
    return np.concatenate(panels + ([photo.truth] if photo.truth is not None else []), axis=1)


def _save(rgb8: np.ndarray, path: str, fmt: str) -> None:
    """Write through a hidden temporary file beside `path`, then rename it into place: an
    interrupted run leaves no half-written image, and a symlink at `path` is replaced rather
    than written through. (Hidden files are never read as inputs, see `image_files`.)"""
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:  # open(), unlike mkstemp, honours the umask
            if fmt == "jpg":
                Image.fromarray(rgb8).save(f, "JPEG", quality=95, subsampling=0)
            else:
                Image.fromarray(rgb8).save(f, "PNG", compress_level=3)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _existing_ancestor(path: str) -> str:
    """`path` itself or its nearest ancestor that exists."""
    path = os.path.abspath(path)
    while not os.path.lexists(path):
        path = os.path.dirname(path)
    return path


def _is_within(path: str, folder: str) -> bool:
    """Whether `path` (existing or not) is `folder` or lies inside it, symlinks resolved.
    Ancestors are compared with `samefile`, which also sees through case-insensitive names
    and bind mounts where comparing strings would not."""
    p = os.path.realpath(path)
    while True:
        if os.path.exists(p) and os.path.samefile(p, folder):
            return True
        parent = os.path.dirname(p)
        if parent == p:
            return False
        p = parent


def _file_id(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _gather_inputs(args) -> tuple[list[str], list[str], int] | str:
    """(input paths, their paths relative to --input, files ignored), fixed once here before
    anything is written; or an error message."""
    if os.path.isdir(args.input):
        paths, ignored = image_files(args.input)
        rels = [os.path.relpath(p, args.input) for p in paths]
    elif os.path.isfile(args.input):
        paths, ignored = [args.input], 0
        rels = [os.path.basename(args.input)]
    else:
        return f"--input={args.input}: no such file or directory"
    if not paths:
        return (f"no image files in {args.input}" +
                (f" ({ignored} files with other extensions ignored)" if ignored else ""))
    return paths, rels, ignored


def check_outputs(args, paths: list[str], outputs: list[str]) -> str | None:
    """Why the planned `outputs` may not be written (see the safety rules of `OUTPUT_RULES`),
    or None. Only looks at the file system: nothing is created."""
    out = args.output
    ancestor = _existing_ancestor(out)
    if not os.path.isdir(ancestor):
        what = "is a file" if ancestor == os.path.abspath(out) else f"is under the file {ancestor}"
        return f"--output={out} {what}, not a folder"
    if os.path.isdir(args.input) and _is_within(out, args.input):
        return (f"--output={out} is the input folder or inside it (--input={args.input}); "
                "colorize never writes into its inputs: choose an output folder outside it")
    if os.path.isdir(args.input):  # also when the input folder lies inside the output folder
        first_in = {}  # output folder -> its first output, checked once per folder
        for o in outputs:
            first_in.setdefault(os.path.dirname(o), o)
        for folder, first in first_in.items():
            if _is_within(folder, args.input):
                return (f"--output={out}: {first} would lie inside --input={args.input}; "
                        "colorize never writes into its inputs")
    # Only an output that exists can be an input; comparing (device, inode) sees through
    # symlinks and hard links alike.
    inputs = {_file_id(p): p for p in paths}
    existing = [o for o in outputs if os.path.lexists(o)]
    for o in existing:
        same = inputs.get(_file_id(o)) if os.path.exists(o) else None
        if same:
            return (f"--output={out}: {o} would replace the input {same}; "
                    "choose another output folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        return f"--output={out}: cannot write in {ancestor} (permission denied)"
    if existing and not args.overwrite:
        what = (f"output file {existing[0]} already exists" if len(existing) == 1 else
                f"{len(existing)} output files already exist (the first: {existing[0]})")
        return f"{what}; pass --overwrite to replace, or choose another --output"
    return None


def _write_photo(colorizer, photo: Photo, abs_, files: list[str], args, bar) -> int:
    """Finish and save one photo's files (colorizations, then its strip); how many were
    written. A file that cannot be written is reported and the others go on."""
    colors = [to_uint8(colorizer.finish(photo, ab)) for ab in abs_]
    images = colors + ([compare_strip(photo, colors)] if args.compare else [])
    written = 0
    for rgb8, path in zip(images, files):
        try:
            _save(rgb8, path, args.format)
            written += 1
        except OSError as e:
            bar.write(f"could not write {path}: {e.strerror or e}", file=sys.stderr)
    return written


def run(args) -> int:
    """The CLI: returns the exit status (0 when at least one photo was colorized and every
    file was written; 2 for a usage error, reported before the model loads)."""
    from tqdm import tqdm

    args.model, args.input, args.output = (os.path.expanduser(p) for p in
                                           (args.model, args.input, args.output))
    gathered = _gather_inputs(args)
    if isinstance(gathered, str):
        print(f"error: {gathered}", file=sys.stderr)
        return 2
    paths, rels, ignored = gathered
    ext = "jpg" if args.format == "jpg" else "png"
    # (An invalid --num_samples is named once the model is known; plan as for one.)
    suffixes = output_suffixes(max(args.num_samples, 1), args.compare)
    stems = output_stems(rels, suffixes)
    files = {p: [os.path.join(args.output, f"{stem}{s}.{ext}") for s in suffixes]
             for p, stem in zip(paths, stems)}
    problem = check_outputs(args, paths, [f for fs in files.values() for f in fs])
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        colorizer = Colorizer.load(args.model, size=args.size, batch_size=args.batch_size,
                                   seed=args.seed)
        colorizer.check_num_samples(args.num_samples)
    except (ExportError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{colorizer}: {len(paths)} photos from {args.input} -> {args.output}", flush=True)

    done, written, failed, skipped = 0, 0, 0, []
    bar = tqdm(total=len(paths), unit="photo", dynamic_ncols=True, file=sys.stderr)
    for start in range(0, len(paths), args.batch_size):
        batch = []
        for path in paths[start:start + args.batch_size]:
            try:
                batch.append((path, open_photo(path)))
            except Exception as e:  # noqa: BLE001 - any decode failure: report, go on
                skipped.append(path)
                bar.write(f"skipped {path}: {type(e).__name__}: {e}", file=sys.stderr)
                bar.update(1)
        if not batch:
            continue
        # Predict the batch at the working size; then one photo at a time at full size, so
        # only one photo's full-resolution buffers are alive at once.
        small = colorizer.predict_small([p for _, p in batch], args.num_samples,
                                        fixed_batch=True)
        for i, ((path, photo), abs_) in enumerate(zip(batch, small)):
            n = _write_photo(colorizer, photo, abs_, files[path], args, bar)
            written, failed = written + n, failed + len(files[path]) - n
            if n == len(files[path]):
                done += 1
            batch[i] = None  # free the photo's full-resolution L before the next one
            bar.update(1)
    bar.close()
    print(f"colorized {done} photo(s) into {args.output} ({written} file(s) written)" +
          (f"; could not write {failed} file(s)" if failed else "") +
          (f"; skipped {len(skipped)} unreadable file(s)" if skipped else "") +
          (f"; ignored {ignored} non-image file(s)" if ignored else ""), flush=True)
    return 0 if done and not failed else 1


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m colorjax.colorize",
                                description="Colorize photos with an exported colorjax model.",
                                epilog=OUTPUT_RULES,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="export directory (--mode=export)")
    p.add_argument("--input", required=True, help="an image file or a folder (recursive)")
    p.add_argument("--output", required=True,
                   help="folder for the results (not the input folder nor inside it)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace outputs that already exist (never an input)")
    p.add_argument("--num_samples", type=int, default=1,
                   help="colorizations per photo (VAE and diffusion models)")
    p.add_argument("--size", type=int, default=None,
                   help="working size of the model (default: the size it was trained at)")
    p.add_argument("--compare", action="store_true",
                   help="also write gray | color (| truth) strips")
    p.add_argument("--batch_size", type=int, default=8, help="photos per model call")
    p.add_argument("--seed", type=int, default=0, help="random seed of sampling models")
    p.add_argument("--format", choices=("png", "jpg"), default="png", help="output format")
    return p.parse_args(argv)


def main(argv=None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
