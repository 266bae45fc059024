"""Colorize your own photos with an exported model: `Colorizer` (Python) and a CLI.

    python -m colorjax.colorize --model=EXPORT_DIR --input=FILE_OR_DIR --output=DIR \
        [--overwrite | --skip_existing] [--num_samples=N] [--size=S] [--compare]
        [--batch_size=B] [--seed=K] [--temperature=T] [--hints=FILE.json]

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

Classification models (`colorful`) decode their per-pixel distribution over ab bins by the
annealed mean at a temperature T (`--temperature`, `colorize(..., temperature=T)`; default
the export's `config.classification.temperature`): T = 1 is the mean (dull), T near 0 the
mode (vivid, patchier). T is an argument of the compiled call: a new T does not recompile.

Colour hints (models trained with `config.model.hints=True`, Zhang et al. 2017):
`colorize(image, hints=[Hint(x, y, rgb=(r, g, b)), Hint(x, y, ab=(a, b))])`, x and y in the
photo's own full-resolution pixels; `--hints=FILE.json` gives the same list as JSON,
`[{"x": 120, "y": 40, "rgb": [200, 30, 30]}, {"x": 10, "y": 5, "rgb": "#3060c0"},
{"x": 64, "y": 64, "ab": [20.0, -35.5]}]`, applied to every input photo. Each hint becomes a
small patch of the model-size hint planes (`colorjax.hints.planes_for_photo`); an sRGB
colour is turned into ab at the photo's own L there. Hints for a model trained without
them, outside the photo, or with a bad colour are one clear ValueError (CLI: one line).

Videos (`--input=film.mp4`, or folders holding .mp4 .mov .mkv .webm .avi ... files) are
colorized frame by frame, streamed, with the colour stabilised over time (`--stabilize`, on
by default; `colorjax.temporal`) and written to OUT/NAME.EXT with the input's frame rate,
size, timestamps and audio (`colorjax.video`, `colorjax.video_io`). A file that is not a
readable video, is truncated, has no video stream or frames over `--max_video_pixels` is
one line on stderr and the others go on. `--num_samples` and `--compare` apply to photos.
"""

from __future__ import annotations

if __name__ == "__main__":
    # The program itself, not a library import: XLA:CPU's convolution choice goes into
    # XLA_FLAGS before JAX starts its backend (xla_cpu.py; COLORJAX_CPU_CONV=ynnpack opts out).
    from colorjax import xla_cpu

    xla_cpu.configure_program()

import argparse
import math
import numbers
import os
import sys
import threading

import jax
import numpy as np
from PIL import Image

from colorjax import color, hints as hints_lib, registry
from colorjax.artifact import ExportError, read_export
from colorjax.photo_io import PhotoIO
from colorjax.video_io import MAX_VIDEO_PIXELS, VideoError, is_video_path, output_extension
from colorjax.output_files import (OUTPUT_RULES, check_outputs, output_stems, output_suffixes,
                                   remove_stale_partials, save_atomic)
from colorjax.photos import (STRIPE_PIXELS, NotARegularFile, Photo, compare_strip, media_files,
                             lab_to_rgb_striped, open_photo, photo_from_array, photo_from_pil,
                             regular_file_problem, resize_ab, resize_plane, to_photo, to_uint8)

__all__ = ["Colorizer", "Hint", "main", "run", "parse_args", "Photo", "open_photo", "to_photo",
           "photo_from_array", "photo_from_pil", "output_stems", "STRIPE_PIXELS",
           "lab_to_rgb_striped"]  # the photo names: colorize's API before photos.py existed


Hint = hints_lib.Hint


def _pow2_at_least(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


TEMPERATURE_FAMILY = "classification"  # the family whose decoding has a temperature


def parse_temperature(value, name: str = "temperature") -> float | None:
    """`value` as a temperature (a float in (0, ∞)), None for None; else a ValueError
    naming `name` and the allowed range. Numeric strings are read (the CLI, a web form)."""
    if value is None:
        return None
    t = None
    if isinstance(value, str):
        try:
            t = float(value.strip())
        except ValueError:
            pass
    elif isinstance(value, (bool, np.bool_)):
        pass
    elif isinstance(value, numbers.Real):
        t = float(value)
    elif getattr(value, "shape", None) == () and any(  # 0-d numpy and jax arrays
            np.issubdtype(getattr(value, "dtype", object), k) for k in (np.floating, np.integer)):
        t = float(value)
    if t is None or not math.isfinite(t) or t <= 0:
        raise ValueError(f"{name}={value!r} is not allowed; allowed: a number in (0, ∞) "
                         "(1 = the mean, lower = more vivid; the paper's 0.38)")
    return t


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
        self.downsample_factor = int(objective.downsample_factor)
        self.batch_size = int(batch_size)
        if self.batch_size <= 0:
            raise ValueError(f"batch_size={batch_size} must be positive")
        self.seed = int(seed)
        self.size = self.check_size(size)
        self.family: str = metadata.get("family") or getattr(
            registry.MODELS.get(self.model_name), "family", "")
        # The annealed-mean temperature the model decodes at unless told otherwise (the
        # export config's classification.temperature); None: the model has none.
        self.temperature_default: float | None = None
        if self.family == TEMPERATURE_FAMILY:
            self.temperature_default = float(getattr(
                objective, "temperature", None) or config.classification.temperature)
        # Whether the model reads colour hints (config.model.hints); `colorize(hints=...)`.
        self.uses_hints: bool = bool(getattr(objective, "hints", False))
        # How a photo meets this model (working-size L, full-size ab, hint size): the
        # objective's own where it declares one (a converted published model's), else
        # colorjax's (colorjax/photo_io.py).
        self.photo_io: PhotoIO = getattr(objective, "photo_io", None) or PhotoIO()
        self._predict = jax.jit(objective.predict_with, static_argnames="sampling")
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

    def check_temperature(self, temperature) -> float | None:
        """`temperature` as a float (None stays None: the model's own); a ValueError for a
        model without one (not a classification model) or a value outside (0, ∞)."""
        if temperature is None:
            return None
        if self.temperature_default is None:
            models = ", ".join(repr(m) for m in registry.names(TEMPERATURE_FAMILY))
            raise ValueError(f"temperature={temperature!r}: {self.model_name!r} is a "
                             f"{self.family} model; temperature applies to classification "
                             f"models ({models}) only")
        return parse_temperature(temperature)

    def check_hints(self, hints) -> list[hints_lib.Hint] | None:
        """`hints` as a list of Hints (dicts in the JSON format are read too); None or []
        stays None. ValueError (one line) for hints to a model trained without them, or
        anything that is not a hint."""
        if hints is None:
            return None
        if isinstance(hints, (hints_lib.Hint, dict, str, bytes)) or not hasattr(hints, "__iter__"):
            raise ValueError(f"hints={hints!r:.80}: expected a list of colorjax.Hint")
        hints = list(hints)
        if not hints:
            return None
        if not self.uses_hints:
            raise ValueError(f"hints: {self.model_name!r} was trained without colour hints "
                             "(config.model.hints=False); train with "
                             "--config.model.hints=True to use them")
        if all(isinstance(h, dict) for h in hints):
            return hints_lib.hints_from_json(hints)
        for i, h in enumerate(hints):
            if not isinstance(h, hints_lib.Hint):
                raise ValueError(f"hints[{i}]={h!r:.80} is not a colorjax.Hint")
        return hints

    def hint_planes(self, photo: Photo, hints, size: int | None = None) -> np.ndarray:
        """The (S, S, 3) hint planes of `hints` on `photo` at the working size (zeros for
        None); ValueError for a hint outside the photo."""
        s = self.size if size is None else int(size)
        if not hints:
            return hints_lib.empty_planes((s, s))
        return hints_lib.planes_for_photo(hints, photo.l, s, side=self.photo_io.hint_side(s))

    def check_num_samples(self, num_samples: int) -> int:
        if int(num_samples) != num_samples or num_samples < 1:
            raise ValueError(f"num_samples={num_samples} must be a positive integer")
        if num_samples > 1 and not self.samples:
            raise ValueError(f"num_samples={num_samples}: {self.model_name!r} is deterministic "
                             "(one colorization per photo); several samples need a VAE or "
                             "diffusion model")
        return int(num_samples)

    # -- prediction in network units at the working size --

    def predict_ab(self, l_norm, rng=None, sampling: bool = False, *,
                   temperature: float | None = None, hints=None) -> np.ndarray:
        """ab (N, S, S, 2) in network range for l_norm (N, S, S, 1): `predict_with` under jit.
        `sampling` selects the sampling configuration (what num_samples > 1 uses);
        `temperature` the annealed mean's T of a classification model (None: its default);
        `hints` (N, S, S, 3) hint planes of a hint model (None: no hints)."""
        rng = jax.random.key(self.seed) if rng is None else rng
        t = self.check_temperature(temperature)
        # An array argument, not a constant: every T shares one compilation.
        kwargs = {} if t is None else {"temperature": np.float32(t)}
        if hints is not None and not self.uses_hints:
            raise ValueError(f"hints: {self.model_name!r} was trained without colour hints "
                             "(config.model.hints=False)")
        if self.uses_hints:  # zero planes for no hints: one compilation either way
            kwargs["hints"] = (np.zeros(np.shape(l_norm)[:-1] + (hints_lib.NUM_PLANES,),
                                        np.float32) if hints is None
                               else np.asarray(hints, np.float32))
        with self._lock:
            return np.asarray(self._predict(self.variables, np.asarray(l_norm, np.float32), rng,
                                            sampling=sampling, **kwargs))

    def _predict_batch(self, l_small: np.ndarray, sample: int, chunk: int,
                       pad_to: int, sampling: bool, temperature=None,
                       hints: np.ndarray | None = None) -> np.ndarray:
        """Zero-pad (n, S, S, 1) (and the hint planes) to `pad_to` rows: jit compiles once
        per padded shape."""
        n = l_small.shape[0]
        padded = max(n, pad_to)
        if padded > n:
            pad = np.zeros((padded - n,) + l_small.shape[1:], np.float32)
            l_small = np.concatenate([l_small, pad])
            if hints is not None:
                hints = np.concatenate([hints, np.zeros((padded - n,) + hints.shape[1:],
                                                        np.float32)])
        rng = jax.random.fold_in(jax.random.fold_in(jax.random.key(self.seed), sample), chunk)
        return self.predict_ab(l_small, rng, sampling, temperature=temperature,
                               hints=hints)[:n]

    # -- photos in, colour out --

    def predict_small(self, photos: list[Photo], num_samples: int = 1,
                      size: int | None = None, fixed_batch: bool = False, *,
                      temperature: float | None = None,
                      hints=None) -> list[list[np.ndarray]]:
        """For each photo, `num_samples` ab planes (S, S, 2) in Lab units at the working size.

        One sample is the model's configured prediction (a VAE's default is its most likely
        colouring, z = 0); several are draws (a VAE's z from the prior; diffusion noise).

        Batches are zero-padded to `batch_size` when there are that many photos or with
        `fixed_batch` (one compilation for a whole folder), else to the next power of two
        (a single photo does not pay for a full batch).

        `temperature`: the annealed mean's T of a classification model (None: its default,
        `temperature_default`); other models refuse one (ValueError).

        `hints`: a list of `Hint`s for every photo, or one list (or None) per photo when
        given as a list of lists; hint models only (ValueError otherwise, or for a hint
        outside its photo).
        """
        num_samples = self.check_num_samples(num_samples)
        temperature = self.check_temperature(temperature)
        s = self.size if size is None else self.check_size(size)
        per_photo = self._hints_per_photo(hints, len(photos))
        planes = None
        if any(per_photo):  # checked before any prediction: a bad hint fails at once
            planes = [self.hint_planes(p, h, s) for p, h in zip(photos, per_photo)]
        pad_to = (self.batch_size if fixed_batch or len(photos) >= self.batch_size
                  else min(self.batch_size, _pow2_at_least(len(photos))))
        results: list[list[np.ndarray]] = [[] for _ in photos]
        for start in range(0, len(photos), self.batch_size):
            chunk = photos[start:start + self.batch_size]
            l_small = np.stack([color.normalize_l(self.photo_io.model_l(p, s))[..., None]
                                for p in chunk])
            h_small = (None if planes is None
                       else np.stack(planes[start:start + self.batch_size]))
            for k in range(num_samples):
                ab = color.denormalize_ab(
                    self._predict_batch(l_small, k, start // self.batch_size, pad_to,
                                        sampling=num_samples > 1, temperature=temperature,
                                        hints=h_small))
                for i in range(len(chunk)):
                    results[start + i].append(ab[i])
        return results

    def _hints_per_photo(self, hints, n: int) -> list:
        """`hints` (None, one list for all, or a list of n lists) as n checked lists."""
        if hints is None:
            return [None] * n
        if isinstance(hints, (list, tuple)) and hints and all(
                h is None or isinstance(h, (list, tuple)) for h in hints):
            if len(hints) != n:
                raise ValueError(f"hints: {len(hints)} lists for {n} photos; give one list "
                                 "per photo, or one list of Hints for all")
            return [self.check_hints(h) for h in hints]
        one = self.check_hints(hints)
        return [one] * n

    def full_size_ab(self, photo: Photo, ab_small: np.ndarray) -> np.ndarray:
        """ab (S, S, 2) resized to the photo's size (H, W, 2): bilinearly (`photo_io`)."""
        return self.photo_io.full_size_ab(ab_small, *photo.size)

    def finish(self, photo: Photo, ab_small: np.ndarray) -> np.ndarray:
        """sRGB float32 (H, W, 3): the photo's own full-size L with the upsampled ab."""
        return lab_to_rgb_striped(photo.l, self.full_size_ab(photo, ab_small))

    def predict_photos(self, photos: list[Photo], num_samples: int = 1,
                       size: int | None = None, *,
                       temperature: float | None = None,
                       hints=None) -> list[list[np.ndarray]]:
        """For each photo, `num_samples` ab planes (H, W, 2) in Lab units at its full size."""
        small = self.predict_small(photos, num_samples, size, temperature=temperature,
                                   hints=hints)
        return [[self.full_size_ab(p, ab) for ab in abs_] for p, abs_ in zip(photos, small)]

    def colorize_photos(self, photos: list[Photo], num_samples: int = 1,
                        size: int | None = None, *,
                        temperature: float | None = None,
                        hints=None) -> list[list[np.ndarray]]:
        """For each photo, `num_samples` sRGB float32 images (H, W, 3) of its size."""
        small = self.predict_small(photos, num_samples, size, temperature=temperature,
                                   hints=hints)
        return [[self.finish(p, ab) for ab in abs_] for p, abs_ in zip(photos, small)]

    def colorize(self, image, num_samples: int = 1, size: int | None = None, *,
                 temperature: float | None = None, hints=None):
        """Colorize a PIL image, a numpy array, or a list (or (N, H, W[, C]) array) of them.

        Returns the same kind: PIL in -> PIL RGB out; integer arrays -> uint8 (H, W, 3);
        float arrays (values in [0, 1]) -> float32 in [0, 1]. With num_samples > 1 (VAE and
        diffusion models) each image becomes a list of samples (arrays gain an axis).
        `temperature` (classification models only, in (0, ∞)): the annealed mean's T,
        1 = the mean, lower = more vivid; None = the model's own (`temperature_default`).
        `hints` (models with `uses_hints` only): a list of `colorjax.Hint`, x and y in the
        photo's full-resolution pixels, colour as sRGB or ab; for several images, one list
        for all of them or one list per image.
        """
        t = self.check_temperature(temperature)  # before any photo is converted
        if isinstance(image, (list, tuple)):
            photos = [to_photo(x) for x in image]
            outs = self.colorize_photos(photos, num_samples, size, temperature=t, hints=hints)
            return [self._as_input_kind(x, o, num_samples) for x, o in zip(image, outs)]
        if isinstance(image, np.ndarray) and image.ndim == 4:
            outs = self.colorize_photos([to_photo(x) for x in image], num_samples, size,
                                        temperature=t, hints=hints)
            return np.stack([self._as_input_kind(image[0], o, num_samples) for o in outs])
        out = self.colorize_photos([to_photo(image)], num_samples, size, temperature=t,
                                   hints=hints)[0]
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


def load_hints_file(path: str) -> list[hints_lib.Hint]:
    """The hints of a `--hints` JSON file (`hints.JSON_FORMAT`); ValueError, one line."""
    try:  # at most one byte over the bound is read: a huge file is refused, not loaded
        with open(os.path.expanduser(path), "rb") as f:
            text = f.read(hints_lib.MAX_JSON_BYTES + 1)
    except OSError as e:
        raise ValueError(f"--hints={path}: cannot read it: {e.strerror or e}") from None
    try:
        if len(text) > hints_lib.MAX_JSON_BYTES:
            raise ValueError(f"is over {hints_lib.MAX_JSON_BYTES:,} bytes long; at most "
                             f"{hints_lib.MAX_JSON_BYTES:,} bytes are allowed (at most "
                             f"{hints_lib.MAX_POINTS} points)")
        obj = hints_lib.parse_json(text)
    except ValueError as e:
        raise ValueError(f"--hints={path}: the file {e}") from None
    try:
        return hints_lib.hints_from_json(obj, hints_lib.MAX_POINTS)
    except ValueError as e:
        raise ValueError(f"--hints={path}: {e}") from None


def _gather_inputs(args) -> tuple[list[str], list[str], set[str], int] | str:
    """(input paths, their paths relative to --input, which of them are videos, files
    ignored), fixed once here before anything is written; or an error message."""
    if os.path.isdir(args.input):
        images, videos, ignored = media_files(args.input)
        paths = sorted(images + videos)
        rels = [os.path.relpath(p, args.input) for p in paths]
    elif os.path.isfile(args.input):
        paths, ignored, videos = [args.input], 0, [args.input] if is_video_path(args.input) else []
        rels = [os.path.basename(args.input)]
    elif os.path.lexists(args.input):  # a FIFO, a device, a symbolic link to nothing
        return (f"--input={args.input} is {regular_file_problem(args.input)}; allowed: an "
                "image or video file, or a folder of them")
    else:
        return f"--input={args.input}: no such file or directory"
    if not paths:
        return (f"no image or video files in {args.input}" +
                (f" ({ignored} files with other extensions ignored)" if ignored else ""))
    return paths, rels, set(videos), ignored


def _write_photo(colorizer, photo: Photo, abs_, files: list[str], args, bar,
                 keep=frozenset()) -> int:
    """Finish and save one photo's files (colorizations, then its strip), except those in
    `keep` (--skip_existing); how many were written. A file that cannot be written is
    reported and the others go on."""
    colors = [to_uint8(colorizer.finish(photo, ab)) for ab in abs_]
    images = colors + ([compare_strip(photo, colors)] if args.compare else [])
    written = 0
    for rgb8, path in zip(images, files):
        if path in keep:
            continue
        try:
            save_atomic(rgb8, path, args.format)
            written += 1
        except OSError as e:
            bar.write(f"could not write {path}: {e.strerror or e}", file=sys.stderr)
    return written


def colorize_video_file(*a, **k):
    from colorjax.video import colorize_video_file as f  # cv2 and PyAV load only for videos

    return f(*a, **k)


def run(args) -> int:
    """The CLI: returns the exit status (0 when at least one photo was colorized and every
    file was written; 2 for a usage error, reported before the model loads)."""
    from colorjax import progress

    args.model, args.input, args.output = (os.path.expanduser(p) for p in
                                           (args.model, args.input, args.output))
    if args.overwrite and args.skip_existing:
        print("error: --overwrite and --skip_existing exclude each other: replace the "
              "existing outputs, or keep them", file=sys.stderr)
        return 2
    gathered = _gather_inputs(args)
    if isinstance(gathered, str):
        print(f"error: {gathered}", file=sys.stderr)
        return 2
    paths, rels, videos, ignored = gathered
    try:  # the value now; whether the model has a temperature once it is loaded
        temperature = parse_temperature(args.temperature, "--temperature")
        hint_list = load_hints_file(args.hints) if args.hints else None
        stabilize_options = _stabilize_options(args) if videos else None
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    ext = "jpg" if args.format == "jpg" else "png"
    # (An invalid --num_samples is named once the model is known; plan as for one.)
    suffixes = output_suffixes(max(args.num_samples, 1), args.compare)
    stems = output_stems(rels, suffixes)
    # A video gets one file, the colorized video, in its own container (video_io).
    files = {p: ([os.path.join(args.output, stem + output_extension(p))] if p in videos else
                 [os.path.join(args.output, f"{stem}{s}.{ext}") for s in suffixes])
             for p, stem in zip(paths, stems)}
    problem = check_outputs(args, paths, [f for fs in files.values() for f in fs])
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    # With --skip_existing an input whose outputs all exist is not read again, and of the
    # others only the missing files are written.
    keep = ({f for fs in files.values() for f in fs if os.path.lexists(f)}
            if args.skip_existing else set())
    todo = [p for p in paths if not all(f in keep for f in files[p])]
    kept_inputs = len(paths) - len(todo)
    # Partial files of an interrupted run, before anything of this run is written.
    removed = remove_stale_partials({os.path.dirname(f) for fs in files.values() for f in fs})
    if removed:
        print(f"removed {len(removed)} partial file(s) left by an interrupted run "
              f"(the first: {removed[0]})", flush=True)

    photo_paths = [p for p in todo if p not in videos]
    video_paths = [p for p in todo if p in videos]
    done, written, failed, skipped, videos_done = 0, 0, 0, [], 0
    finished: set[str] = set()  # inputs written (or skipped): what an interrupt leaves out
    bar, interrupted = None, False
    try:  # Ctrl-C: the summary of what was and was not written, exit status 130
        try:
            colorizer = Colorizer.load(args.model, size=args.size, batch_size=args.batch_size,
                                       seed=args.seed)
            colorizer.check_num_samples(args.num_samples)
        except (ExportError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        try:
            colorizer.check_temperature(temperature)  # a model without one: the error names it
        except ValueError as e:
            print(f"error: --{e}", file=sys.stderr)
            return 2
        try:
            hint_list = colorizer.check_hints(hint_list)  # a model without hints: named
        except ValueError as e:
            print(f"error: --hints={args.hints}: {e}", file=sys.stderr)
            return 2
        used = temperature if temperature is not None else colorizer.temperature_default
        what = ", ".join(f"{n} {kind}" for n, kind in ((len(photo_paths), "photos"),
                                                       (len(video_paths), "videos")) if n)
        print(f"{colorizer}: {what or 'nothing'} from {args.input} -> {args.output}" +
              (f" (temperature {used:g})" if used is not None else "") +
              (f"; keeping the outputs of {kept_inputs} input(s) that exist (--skip_existing)"
               if kept_inputs else ""), flush=True)

        bar = progress.bar(len(photo_paths), "colorize", "photo", enabled=bool(photo_paths))
        compiled = False  # until the first batch has been through the model
        for start in range(0, len(photo_paths), args.batch_size):
            batch = []
            for path in photo_paths[start:start + args.batch_size]:
                try:
                    photo = open_photo(path)
                except NotARegularFile as e:  # a FIFO, a dangling symlink: never opened
                    skipped.append(path)
                    finished.add(path)
                    bar.write(f"skipped {path}: {e}", file=sys.stderr)
                    bar.update(1)
                    continue
                except Exception as e:  # noqa: BLE001 - any decode failure: report, go on
                    skipped.append(path)
                    finished.add(path)
                    bar.write(f"skipped {path}: {type(e).__name__}: {e}", file=sys.stderr)
                    bar.update(1)
                    continue
                try:  # hints apply to every photo: one smaller than a hint's place is skipped
                    hints_lib.check_in_photo(hint_list or [], *photo.size)
                except ValueError as e:
                    skipped.append(path)
                    finished.add(path)
                    bar.write(f"skipped {path}: --hints: {e}", file=sys.stderr)
                    bar.update(1)
                    continue
                batch.append((path, photo))
            if not batch:
                continue
            # Predict the batch at the working size; then one photo at a time at full size,
            # so only one photo's full-resolution buffers are alive at once.
            small = colorizer.predict_small([p for _, p in batch], args.num_samples,
                                            fixed_batch=True, temperature=temperature,
                                            hints=hint_list)
            for i, ((path, photo), abs_) in enumerate(zip(batch, small)):
                wanted = [f for f in files[path] if f not in keep]
                n = _write_photo(colorizer, photo, abs_, files[path], args, bar, keep)
                written, failed = written + n, failed + len(wanted) - n
                if n == len(wanted):
                    done += 1
                finished.add(path)
                batch[i] = None  # free the photo's full-resolution L before the next one
                bar.update(1)
            if not compiled:  # the first batch compiled the model: time left from now on
                progress.restart_clock(bar)
                compiled = True
        bar.close()
        for k, path in enumerate(video_paths):
            out = files[path][0]
            problem = regular_file_problem(path)
            if problem:  # a FIFO named like a video would block its reader
                skipped.append(path)
                finished.add(path)
                print(f"skipped {path}: {problem}", file=sys.stderr, flush=True)
                continue
            try:
                stats = colorize_video_file(
                    colorizer, path, out, stabilize=args.stabilize, options=stabilize_options,
                    hints=hint_list, temperature=temperature, max_pixels=args.max_video_pixels,
                    desc=f"[{k + 1}/{len(video_paths)}] {os.path.basename(path)}")
            except VideoError as e:
                skipped.append(path)
                finished.add(path)
                print(f"skipped {path}: {e}", file=sys.stderr, flush=True)
                continue
            except OSError as e:
                failed += 1
                finished.add(path)
                print(f"could not write {out}: {e.strerror or e}", file=sys.stderr, flush=True)
                continue
            videos_done, written = videos_done + 1, written + 1
            finished.add(path)
            print(f"{path} -> {out}: {stats['frames']} frames in {stats['seconds']:.1f} s "
                  f"({stats['frames'] / max(stats['seconds'], 1e-9):.1f} frames/s" +
                  (f", {stats['cuts']} scene cuts" if args.stabilize else ", not stabilised") +
                  (", audio copied" if stats["audio"] else "") + ")", flush=True)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if bar is not None:
            bar.close()
    what = " and ".join(f"{n} {kind}(s)" for n, kind in ((done, "photo"), (videos_done, "video"))
                        if n or (kind == "photo" and not videos_done))
    left = [p for p in todo if p not in finished]
    left_photos = sum(p not in videos for p in left)
    not_done = " and ".join(f"{n} {kind}(s)" for n, kind in
                            ((left_photos, "photo"), (len(left) - left_photos, "video")) if n)
    print(("interrupted: " if interrupted else "") +
          f"colorized {what} into {args.output} ({written} file(s) written)" +
          (f"; kept the existing outputs of {kept_inputs} input(s)" if kept_inputs else "") +
          (f"; could not write {failed} file(s)" if failed else "") +
          (f"; skipped {len(skipped)} unreadable file(s)" +
           (" or photos too small for --hints" if hint_list else "") if skipped else "") +
          (f"; ignored {ignored} non-image file(s)" if ignored else "") +
          (f"; not colorized: {not_done} (rerun with --skip_existing to finish)"
           if interrupted and left else ""), flush=True)
    if interrupted:
        return 130  # 128 + SIGINT, as a shell reports a command stopped by Ctrl-C
    return 0 if (done or videos_done or kept_inputs) and not failed else 1


def _stabilize_options(args):
    """The temporal filter's options from --temporal_blend (ValueError naming the flag)."""
    from colorjax.temporal import StabilizeOptions

    b = args.temporal_blend
    if not (isinstance(b, float) and 0.0 <= b <= 1.0):
        raise ValueError(f"--temporal_blend={b} is not allowed; allowed: a number in [0, 1] "
                         "(0 = no filtering, 1 = keep the previous colour wherever the "
                         "motion is reliable)")
    if args.max_video_pixels <= 0:
        raise ValueError(f"--max_video_pixels={args.max_video_pixels} must be positive")
    return StabilizeOptions(blend=b)


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m colorjax.colorize",
                                description="Colorize photos with an exported colorjax model.",
                                epilog=OUTPUT_RULES,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="export directory (--mode=export)")
    p.add_argument("--input", required=True,
                   help="an image or video file, or a folder of them (recursive)")
    p.add_argument("--output", required=True,
                   help="folder for the results (not the input folder nor inside it)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace outputs that already exist (never an input)")
    p.add_argument("--skip_existing", action="store_true",
                   help="keep outputs that already exist and write only the missing ones: "
                        "resumes an interrupted run of the same command (inputs whose "
                        "outputs all exist are not read again)")
    p.add_argument("--num_samples", type=int, default=1,
                   help="colorizations per photo (VAE and diffusion models)")
    p.add_argument("--size", type=int, default=None,
                   help="working size of the model (default: the size it was trained at)")
    p.add_argument("--compare", action="store_true",
                   help="also write gray | color (| truth) strips")
    p.add_argument("--batch_size", type=int, default=8, help="photos per model call")
    p.add_argument("--seed", type=int, default=0, help="random seed of sampling models")
    p.add_argument("--format", choices=("png", "jpg"), default="png", help="output format")
    p.add_argument("--temperature", default=None, metavar="T",
                   help="classification models (colorful) only: the annealed mean's "
                        "temperature, a number in (0, inf); 1 = the mean (dull), lower = "
                        "more vivid (near 0: the mode); default: the model's own "
                        "(config.classification.temperature, the paper's 0.38)")
    p.add_argument("--hints", default=None, metavar="FILE.json",
                   help="colour hints for every photo (models trained with "
                        "config.model.hints=True): a JSON list of {\"x\": X, \"y\": Y, "
                        "\"rgb\": [R, G, B]} (ints 0-255, or \"#rrggbb\") or {\"x\": X, "
                        "\"y\": Y, \"ab\": [A, B]}, x and y in the photo's own pixels")
    v = p.add_argument_group("videos (inputs with a video extension: .mp4 .mov .mkv .webm "
                             ".avi ...; colorjax.video)")
    v.add_argument("--stabilize", action=argparse.BooleanOptionalAction, default=True,
                   help="stabilise the colour over time along optical flow, restarting at "
                        "scene cuts (default: on; --no-stabilize colorizes each frame alone)")
    v.add_argument("--temporal_blend", type=float, default=0.7, metavar="W",
                   help="weight in [0, 1] of the previous frame's motion-compensated colour "
                        "where the motion is reliable (default 0.7)")
    v.add_argument("--max_video_pixels", type=int, default=MAX_VIDEO_PIXELS, metavar="N",
                   help=f"refuse videos whose frames have more pixels (default {MAX_VIDEO_PIXELS:,},"
                        " 8K UHD)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
