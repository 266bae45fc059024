"""Colour hints (Zhang et al. 2017, "Real-Time User-Guided Image Colorization with Learned
Deep Priors"): a few points where the colour is given, as two extra input planes.

A model with ``config.model.hints=True`` reads ``concat(L, hints)``, ``hints`` being
(..., H, W, 3): the hint's ab in network range (``color.normalize_ab``) in channels 0-1 and
a 0/1 mask in channel 2, all zero where there is no hint. Zero planes mean "no hints", and
the model still colorizes on its own.

One module for the three users:

* training (``data/pipeline.py``): ``sample_planes`` draws hints from the truth's ab after
  crop and flip, with ``hint_rng(seed, position)``, so hints are deterministic per seed and
  stream position (resume and any number of processes give the same hints);
* evaluation (``evaluate.py``, ``benchmarks/hint_curve.py``): ``sample_planes`` with a fixed
  number of points;
* inference (``colorize.py``): ``Hint`` (full-resolution pixel coordinates of the photo,
  colour as sRGB or ab), ``hints_from_json`` (the CLI's ``--hints=FILE.json`` and the page)
  and ``planes_for_photo`` (hints -> model-size planes).

Sampling (the paper's, adapted to small training crops):

* the number of points is geometric from zero, P(k) = p (1 - p)^k with p = 1/8, as in the
  authors' code (a point is added while ``rand() < 1 - p``): 1/8 of the examples get no
  hint, the mean is 7;
* each point is a square patch whose value is the truth's mean ab over the patch (mask 1);
  its side is uniform in 1..``max_side(image_size)``: the paper's 1..9 at its 176 px
  training crops, scaled to keep the same fraction of the image (1..3 at 64 px, 1..13 at
  256 px), so a patch covers as much of the scene at 64 px as in the paper;
* its location is, per point with probability 1/2 each, a 2-D Gaussian around the centre
  (sigma = a quarter of the image side, clipped to the image) or uniform. The paper describes
  both; we mix them because users click mostly on the subject (the centre) but the API
  takes hints anywhere, and uniform points teach the model to use hints near the border.
* later patches overwrite earlier ones where they overlap (as the authors' code does).

At inference a hint becomes a patch of side ``inference_side(size)`` (odd, about half the
largest training side: 1 px at 64 px, 5 at 176, 7 at 256) centred on the hint's pixel.
An sRGB hint colour is converted to ab at the photo's own L at that pixel: the colour's
hue and chroma (CIELAB of the sRGB colour), with the chroma reduced, if needed, until the
colour exists in sRGB at the photo's lightness there (a truth hint always does).
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import re

import numpy as np

from colorjax import color

NUM_PLANES = 3  # a, b (network range), mask
POINT_P = 1.0 / 8.0  # the geometric distribution's p: P(no hint) = 1/8
PAPER_MAX_SIDE, PAPER_CROP = 9, 176  # patch sides 1..9 at the paper's 176 px crops
AB_LIMIT = color.AB_SCALE  # |a|, |b| of an ab hint, Lab units


# --- the user's hints ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Hint:
    """A colour at one point of a photo: ``x``, ``y`` in the photo's full-resolution pixels
    (0 <= x < width, 0 <= y < height; (0, 0) the top-left pixel), colour either ``rgb``
    (sRGB, three ints 0-255) or ``ab`` (CIELAB a, b in Lab units, each in [-110, 110])."""

    x: float
    y: float
    rgb: tuple[int, int, int] | None = None
    ab: tuple[float, float] | None = None

    def __post_init__(self):
        for name in ("x", "y"):
            v = getattr(self, name)
            if not _is_real(v) or not math.isfinite(float(v)):
                raise ValueError(f"hint {name}={v!r} is not allowed; allowed: a finite number "
                                 "(pixels of the full-resolution photo)")
        if (self.rgb is None) == (self.ab is None):
            raise ValueError(f"hint at ({self.x}, {self.y}) needs exactly one colour: rgb=(r, g, b) "
                             "with ints 0-255, or ab=(a, b) in Lab units")
        if self.rgb is not None:
            rgb = self.rgb
            if (isinstance(rgb, (str, bytes)) or not hasattr(rgb, "__len__") or len(rgb) != 3
                    or not all(_is_int(c) and 0 <= int(c) <= 255 for c in rgb)):
                raise ValueError(f"hint rgb={rgb!r} is not allowed; allowed: three ints 0-255")
            object.__setattr__(self, "rgb", tuple(int(c) for c in rgb))
        else:
            ab = self.ab
            if (isinstance(ab, (str, bytes)) or not hasattr(ab, "__len__") or len(ab) != 2
                    or not all(_is_real(c) and math.isfinite(float(c))
                               and abs(float(c)) <= AB_LIMIT for c in ab)):
                raise ValueError(f"hint ab={ab!r} is not allowed; allowed: two numbers in "
                                 f"[-{AB_LIMIT:g}, {AB_LIMIT:g}] (CIELAB a, b)")
            object.__setattr__(self, "ab", tuple(float(c) for c in ab))
        object.__setattr__(self, "x", float(self.x))
        object.__setattr__(self, "y", float(self.y))


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_))


def _is_real(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))


# Bounds of hints given as JSON (the CLI's --hints file, the server's form field), checked
# before the text is parsed: a point takes about 50 bytes, so 64 KiB holds 256 of them
# however they are indented, and the format nests 3 deep (list > object > [r, g, b]).
# Unbounded, 19 MB of "[[],[],...]" parses into half a GB of lists and 100,000 "[" is a
# RecursionError deep in the parser.
MAX_POINTS = 256
MAX_JSON_BYTES = 64 << 10
MAX_JSON_DEPTH = 8
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)

JSON_FORMAT = ('a JSON list of {"x": X, "y": Y, "rgb": [R, G, B]} (ints 0-255, or "#rrggbb") '
               'or {"x": X, "y": Y, "ab": [A, B]}; x, y in the photo\'s pixels')


def parse_rgb(value) -> tuple[int, int, int]:
    """[r, g, b] (ints 0-255) or "#rrggbb" -> (r, g, b); else ValueError."""
    if isinstance(value, str):
        s = value.strip()
        if len(s) == 7 and s[0] == "#":
            try:
                return tuple(int(s[i:i + 2], 16) for i in (1, 3, 5))
            except ValueError:
                pass
        raise ValueError(f"rgb={value!r} is not allowed; allowed: [r, g, b] with ints 0-255 "
                         'or "#rrggbb"')
    if (not isinstance(value, (list, tuple)) or len(value) != 3
            or not all(_is_int(c) and 0 <= c <= 255 for c in value)):
        raise ValueError(f"rgb={value!r} is not allowed; allowed: [r, g, b] with ints 0-255 "
                         'or "#rrggbb"')
    return tuple(int(c) for c in value)


def parse_json(text: str | bytes):
    """Hints as JSON text (``--hints`` file, the page's form field) -> the parsed value,
    bounded before anything is parsed: at most `MAX_JSON_BYTES` bytes and `MAX_JSON_DEPTH`
    levels of nesting. ValueError (one line, to follow "hints" or the file's name) for text
    over a bound or not JSON."""
    size = len(text) if isinstance(text, bytes) else len(text.encode("utf-8", "replace"))
    if size > MAX_JSON_BYTES:
        raise ValueError(f"is {size:,} bytes long; at most {MAX_JSON_BYTES:,} bytes are "
                         f"allowed (at most {MAX_POINTS} points)")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"is not valid JSON ({e}); expected {JSON_FORMAT}") from None
    depth = _max_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise ValueError(f"is JSON nested {depth:,} levels deep; at most {MAX_JSON_DEPTH} are "
                         f"allowed (expected {JSON_FORMAT})")
    try:
        return json.loads(text)
    except ValueError as e:  # json.JSONDecodeError
        raise ValueError(f"is not valid JSON ({e}); expected {JSON_FORMAT}") from None


def _max_depth(text: str) -> int:
    """The deepest nesting of [ and { in JSON text (outside strings), without recursion."""
    plain = np.frombuffer(_JSON_STRING.sub('""', text).encode("utf-8", "replace"), np.uint8)
    step = (np.isin(plain, (ord("["), ord("{"))).astype(np.int32)
            - np.isin(plain, (ord("]"), ord("}"))))
    return int(np.cumsum(step).max(initial=0))


def hints_from_json(obj, max_points: int | None = None) -> list[Hint]:
    """The hint list of ``--hints=FILE.json`` (already parsed, see `parse_json`), as Hints.

    The format: a list (possibly empty) of objects ``{"x": X, "y": Y, "rgb": [R, G, B]}``
    (R, G, B ints 0-255, or ``"rgb": "#rrggbb"``) or ``{"x": X, "y": Y, "ab": [A, B]}``
    (CIELAB a, b), x and y in the photo's full-resolution pixels; at most `max_points` of
    them (None: any number). Anything else: one ValueError naming the entry and what is
    allowed.
    """
    if not isinstance(obj, list):
        raise ValueError(f"hints must be {JSON_FORMAT}; got a {type(obj).__name__}")
    if max_points is not None and len(obj) > max_points:
        raise ValueError(f"{len(obj):,} hints; at most {max_points} are allowed")
    hints = []
    for i, entry in enumerate(obj):
        try:
            if not isinstance(entry, dict):
                raise ValueError(f"a {type(entry).__name__}, not an object; expected {JSON_FORMAT}")
            extra = set(entry) - {"x", "y", "rgb", "ab"}
            if (extra or "x" not in entry or "y" not in entry
                    or ("rgb" in entry) == ("ab" in entry)):
                raise ValueError("keys must be x, y and exactly one of rgb, ab"
                                 + (f" (unknown: {', '.join(sorted(map(str, extra)))})"
                                    if extra else "") + f"; expected {JSON_FORMAT}")
            if "rgb" in entry:
                hints.append(Hint(entry["x"], entry["y"], rgb=parse_rgb(entry["rgb"])))
            else:
                ab = entry["ab"]
                hints.append(Hint(entry["x"], entry["y"],
                                  ab=tuple(ab) if isinstance(ab, list) else ab))
        except ValueError as e:
            raise ValueError(f"hints[{i}]: {e}") from None
    return hints


def check_in_photo(hints: list[Hint], width: int, height: int) -> None:
    """ValueError (one line) for a hint outside a width x height photo."""
    for i, h in enumerate(hints):
        if not (0 <= h.x < width and 0 <= h.y < height):
            raise ValueError(f"hint {i} at (x={h.x:g}, y={h.y:g}) is outside the photo; allowed: "
                             f"0 <= x < {width}, 0 <= y < {height} (its pixels)")


# --- sizes -----------------------------------------------------------------------------


def max_side(image_size: int) -> int:
    """The largest training patch side at ``image_size``: the paper's 9 at 176 px, scaled."""
    return max(1, round(PAPER_MAX_SIDE * image_size / PAPER_CROP))


def inference_side(image_size: int) -> int:
    """The side of a user hint's patch at the model's size: odd, about half ``max_side``."""
    return max(1, max_side(image_size) // 2) | 1


# --- sampling from the truth -----------------------------------------------------------


def hint_rng(seed: int, position: int, stream: int = 1) -> np.random.Generator:
    """The hints' generator for one example. The pipeline's crops and flips draw from
    ``[seed, 0, position]``; hints from stream 1 (training) or 2 (evaluation), so turning
    hints on changes no crop or flip."""
    return np.random.default_rng([int(seed) % 2**32, stream, int(position)])


def sample_num_points(rng: np.random.Generator, p: float = POINT_P) -> int:
    """Geometric from zero: P(k) = p (1 - p)^k."""
    return int(rng.geometric(p)) - 1


def sample_planes(ab_norm: np.ndarray, rng: np.random.Generator,
                  num_points: int | None = None, side_max: int | None = None) -> np.ndarray:
    """Hint planes (H, W, 3) float32 drawn from the truth ``ab_norm`` (H, W, 2, network range).

    ``num_points`` None draws it (``sample_num_points``); ``side_max`` None is
    ``max_side(H)``. Each point: side s uniform in 1..side_max, top-left corner from a
    Gaussian around the centre (sigma = (H - s + 1) / 4) or uniform, with probability 1/2
    each; value the truth's mean ab over the patch; mask 1.
    """
    ab_norm = np.asarray(ab_norm, np.float32)
    h, w = ab_norm.shape[:2]
    out = np.zeros((h, w, NUM_PLANES), np.float32)
    n = sample_num_points(rng) if num_points is None else int(num_points)
    top = max(1, min(h, w, max_side(h) if side_max is None else int(side_max)))
    for _ in range(n):
        s = int(rng.integers(1, top + 1))
        gaussian = rng.random() < 0.5
        corner = []
        for extent in (h, w):
            span = extent - s  # corners 0..span
            if gaussian:
                c = int(np.clip(np.round(rng.normal(span / 2, (span + 1) / 4)), 0, span))
            else:
                c = int(rng.integers(0, span + 1))
            corner.append(c)
        y, x = corner
        patch = ab_norm[y:y + s, x:x + s]
        out[y:y + s, x:x + s, :2] = patch.reshape(-1, 2).mean(0)
        out[y:y + s, x:x + s, 2] = 1.0
    return out


def sample_batch(ab_norm: np.ndarray, seed: int, positions, num_points: int | None = None,
                 stream: int = 2) -> np.ndarray:
    """Planes (N, H, W, 3) for a batch of truths (N, H, W, 2): example i from
    ``hint_rng(seed, positions[i], stream)`` (evaluation: a fixed number of points)."""
    return np.stack([sample_planes(ab, hint_rng(seed, p, stream), num_points)
                     for ab, p in zip(np.asarray(ab_norm), positions)])


def empty_planes(shape_hw, batch: int | None = None) -> np.ndarray:
    """Zero planes: no hints."""
    shape = tuple(shape_hw) + (NUM_PLANES,)
    return np.zeros(shape if batch is None else (batch,) + shape, np.float32)


# --- user hints -> planes ---------------------------------------------------------------


def rgb_to_ab_at(rgb, lightness: float) -> tuple[float, float]:
    """ab (Lab units) for an sRGB colour (ints 0-255) shown at CIELAB L = ``lightness``: the
    colour's own a, b, scaled toward gray just enough to exist in sRGB at that L."""
    lab = color.rgb_to_lab(np.asarray(rgb, np.float32).reshape(1, 1, 3) / 255.0)[0, 0]
    ab = lab[1:].astype(np.float64)
    scales = np.linspace(1.0, 0.0, 101)
    cand = np.concatenate([np.full((101, 1), float(lightness)), scales[:, None] * ab[None]], 1)
    cand = cand.astype(np.float32)[None]  # (1, 101, 3)
    back = color.rgb_to_lab(color.lab_to_rgb(cand))[0]  # clipping moves out-of-gamut colours
    ok = np.abs(back - cand[0]).max(-1) < 0.5
    k = int(np.argmax(ok)) if ok.any() else 100
    return float(cand[0, k, 1]), float(cand[0, k, 2])


def hint_ab(hint: Hint, photo_l: np.ndarray) -> tuple[float, float]:
    """The hint's ab in Lab units; an rgb hint at the photo's own L at its pixel."""
    if hint.ab is not None:
        return hint.ab
    return rgb_to_ab_at(hint.rgb, float(photo_l[int(hint.y), int(hint.x)]))


def planes_for_photo(hints: list[Hint], photo_l: np.ndarray, size: int,
                     side: int | None = None) -> np.ndarray:
    """Hint planes (size, size, 3) for a photo whose full-resolution L is ``photo_l``
    (H, W), resized to size x size as ``Colorizer`` does (a plain resize, not a crop).

    Each hint is a square patch of ``side`` (default ``inference_side(size)``) pixels
    centred on the model pixel holding its full-resolution pixel; later hints overwrite
    earlier ones. ValueError for a hint outside the photo.
    """
    height, width = photo_l.shape[:2]
    check_in_photo(hints, width, height)
    s = inference_side(size) if side is None else int(side)
    out = np.zeros((size, size, NUM_PLANES), np.float32)
    for h in hints:
        cx = min(size - 1, int(h.x * size / width))
        cy = min(size - 1, int(h.y * size / height))
        x0, y0 = max(0, cx - s // 2), max(0, cy - s // 2)
        a, b = hint_ab(h, photo_l)
        out[y0:cy - s // 2 + s, x0:cx - s // 2 + s] = (
            color.normalize_ab(a), color.normalize_ab(b), 1.0)
    return out
