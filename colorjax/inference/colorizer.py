"""`Colorizer`: an exported model, ready to colorize photos of any size (how a photo is
colorized: `colorjax.colorize`'s docstring, the command line over this class).

`Colorizer.load(path)` restores an export; `colorize(image)` returns the colour image, at the
photo's own size, its own L joined with the predicted ab.
"""

from __future__ import annotations

import math
import numbers
import threading

import jax
import numpy as np
from PIL import Image

from colorjax import color
from colorjax.config import registry
from colorjax import hints as hints_lib
from colorjax.inference.artifact import read_export
from colorjax.media.photo_io import PhotoIO
from colorjax.media.photos import Photo, to_photo, to_uint8

Hint = hints_lib.Hint

def _pow2_at_least(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


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
        self.family: str = metadata.get("family") or objective.family
        # The annealed-mean temperature the model decodes at unless told otherwise (the
        # export config's classification.temperature); None: the model has none.
        self.temperature_default: float | None = (
            float(objective.temperature) if objective.decodes_with_temperature else None)
        # Whether the model reads colour hints (config.model.hints); `colorize(hints=...)`.
        self.uses_hints: bool = bool(objective.hints)
        # How a photo meets this model (working-size L, full-size ab, hint size): the
        # objective's (colorjax's own, colorjax/media/photo_io.py, unless it declares
        # another, as a converted published model does).
        self.photo_io: PhotoIO = objective.photo_io
        self._predict = jax.jit(objective.predict_with, static_argnames="sampling")
        # One jitted call at a time: compilation caches and host buffers are then never
        # contended, and a busy server does not oversubscribe the CPU/GPU.
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: str, *, size: int | None = None, batch_size: int = 8,
             seed: int = 0, precision: str | None = None) -> "Colorizer":
        """Restore an export directory. Raises `ExportError` for anything that is not one.
        `precision="bfloat16"` computes the network in bfloat16 (float32 weights kept)."""
        config, metadata, objective, variables = read_export(path, precision=precision)
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
            models = ", ".join(repr(n) for n, s in registry.builtin().items()
                               if s.family == "classification")
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
        """sRGB float32 (H, W, 3): the photo's own full-size L with the upsampled ab (as
        the model's `photo_io` finishes a photo)."""
        return self.photo_io.finish(self, photo, ab_small)

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
        if num_samples == 1 and temperature is None and not hints:
            # A published pipeline that is not L + ab runs whole (objectives/deoldify.py).
            own = self.photo_io.colorize_photos(
                self, photos, self.size if size is None else self.check_size(size))
            if own is not None:
                return [[out] for out in own]
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
