"""The colorizing work behind the upload server: decoding an upload with its limits, lanes of
bounded concurrency, and the answer's images.
"""

from __future__ import annotations

import base64
import io
import threading
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError, features

from colorjax import hints as hints_lib
from colorjax.inference.colorizer import Colorizer, parse_temperature
from colorjax.media.photos import Photo, heif_kind, photo_from_pil, unsupported_photo_message
from colorjax.serving import clips, examples, model_eval
from colorjax.serving.requests import RequestError, busy, check_frame_size

# Photos of at most this many pixels have their own lane of --max_concurrent slots, so a
# small request never waits behind big ones (a 4000 x 4000 photo takes seconds).
_SMALL_PIXELS = 1 << 20
# Allowed image formats: the common photo formats PIL decodes itself (no EPS/PDF-like
# plugins that run external programs, no exotic parsers exposed to the network). JPEG
# includes MPO (phones' multi-picture JPEGs), which PIL opens through the JPEG plugin.
# AVIF where this Pillow reads it (its own plugin, with libavif); HEIC never here (it needs a
# plugin colorjax does not load): refused as a photo it cannot read, not taken for a clip.
FORMATS = ("JPEG", "PNG", "WEBP", "TIFF", "BMP", "GIF", "PPM") + (
    ("AVIF",) if features.check_module("avif") else ())
# The most colour hints one request may carry (each is a point the page's user placed);
# the field's bytes and nesting are bounded too (`colorjax.hints.parse_json`).
MAX_HINTS = hints_lib.MAX_POINTS


class Lane:
    """At most `slots` photos in work and `waiting` more waiting for a slot; any more are
    refused with 503 (a bounded queue: memory and waiting time stay bounded)."""

    def __init__(self, name: str, slots: int, waiting: int):
        self.name, self.slots, self.waiting = name, max(1, int(slots)), max(0, int(waiting))
        self._free = threading.Semaphore(self.slots)
        self._lock = threading.Lock()
        self._waiters = 0

    def acquire(self) -> None:
        if self._free.acquire(blocking=False):
            return
        with self._lock:
            if self._waiters >= self.waiting:
                what = "big photo(s) or clip(s)" if self.name == "big" else f"{self.name} photo(s)"
                raise busy(f"busy: {self.slots} {what} in work and "
                           f"{self._waiters} waiting (--max_concurrent, --max_waiting)")
            self._waiters += 1
        try:
            self._free.acquire()
        finally:
            with self._lock:
                self._waiters -= 1

    def release(self) -> None:
        self._free.release()

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()


class ColorizeService:
    """Decoding, limits and the model call, independent of HTTP (tested directly too)."""

    def __init__(self, colorizer: Colorizer, *, max_upload_mb: float = 20.0,
                 max_pixels: int = 16_000_000, max_side: int = 16384, max_samples: int = 8,
                 max_concurrent: int = 2, max_waiting: int = 8,
                 small_pixels: int = _SMALL_PIXELS, max_video_mb: float = 20.0,
                 max_video_seconds: float = 30.0, max_video_frames: int = 1800,
                 max_clip_work_seconds: float = 300.0, tmp_dir: str | None = None):
        self.colorizer = colorizer
        self.max_upload_bytes = int(max_upload_mb * (1 << 20))
        # Clips: their own upload size, length and work limits; frames obey max_pixels,
        # max_side.
        if not max_clip_work_seconds > 0:
            raise ValueError(f"max_clip_work_seconds={max_clip_work_seconds} must be positive")
        self.clip_limits = clips.ClipLimits(int(max_video_mb * (1 << 20)),
                                            float(max_video_seconds), int(max_video_frames),
                                            int(max_pixels), int(max_side),
                                            float(max_clip_work_seconds))
        self.tmp_dir = tmp_dir  # where clips' private temporary directories go (None: TMPDIR)
        self.max_pixels = int(max_pixels)
        self.max_side = int(max_side)
        self.max_samples = max(1, int(max_samples)) if colorizer.samples else 1
        self.small_pixels = int(small_pixels)
        # Full-resolution Lab/RGB buffers of big photos are large: bound how many are live.
        self.big = Lane("big", max_concurrent, max_waiting)
        self.small = Lane("small", max_concurrent, max_waiting)
        # The export's own evaluation against gray, said on the page (None: it has none).
        self.evaluation = model_eval.summary(getattr(colorizer, "metadata", None) or {})

    def info(self) -> dict:
        c = self.colorizer
        return {"model": c.model_name, "step": c.metadata.get("step"), "size": c.size,
                "family": getattr(c, "family", None), "samples": c.samples,
                "max_samples": self.max_samples,
                # The annealed mean's default T (classification models); None: no such field.
                "temperature": self.temperature_default,
                # Whether the model takes colour hints (points of given colour on the photo).
                "hints": self.uses_hints, "max_hints": MAX_HINTS,
                "max_upload_mb": self.max_upload_bytes / (1 << 20),
                "photo_formats": list(FORMATS),
                "max_pixels": self.max_pixels, "max_side": self.max_side,
                # Clips (POST /api/colorize_video): whether PyAV is here, and their limits.
                "video": clips.available(),
                "max_video_mb": self.clip_limits.max_bytes / (1 << 20),
                "max_video_seconds": self.clip_limits.max_seconds,
                "max_video_frames": self.clip_limits.max_frames,
                "max_clip_work_seconds": self.clip_limits.max_work_seconds,
                # The page's one-click example photos (GET examples/<name>.jpg).
                "examples": examples.available(),
                # The export's evaluation table against gray, in words (or None).
                "evaluation": self.evaluation}

    def num_samples(self, value) -> int:
        if value in (None, ""):
            return 1
        try:
            n = int(value)
        except (TypeError, ValueError):
            raise RequestError(400, f"num_samples={value!r} is not an integer") from None
        if not 1 <= n <= self.max_samples:
            why = ("this model is deterministic: 1" if not self.colorizer.samples
                   else f"1 to {self.max_samples}")
            raise RequestError(400, f"num_samples={n} is not allowed; allowed: {why}")
        return n

    @property
    def uses_hints(self) -> bool:
        return bool(getattr(self.colorizer, "uses_hints", False))

    def hints(self, value) -> list | None:
        """The form's `hints` (JSON text: ``[{"x": 10, "y": 20, "rgb": [255, 0, 0]}, ...]``,
        x and y in the uploaded photo's pixels) -> a list of `colorjax.hints.Hint`; None when
        absent or empty. 400 for bad JSON, too big or too deeply nested a field (checked
        before it is parsed), a bad hint, or hints for a model without them."""
        if value is None or not value.strip():
            return None
        try:
            obj = hints_lib.parse_json(value)
        except ValueError as e:
            raise RequestError(400, f"hints {e}") from None
        if obj == []:
            return None
        if not self.uses_hints:
            raise RequestError(400, f"hints given, but {self.colorizer.model_name!r} takes no "
                                    "colour hints (a model trained with model.hints=True does)")
        try:
            return hints_lib.hints_from_json(obj, MAX_HINTS)
        except ValueError as e:
            raise RequestError(400, f"bad hints: {e}") from None

    @staticmethod
    def check_hints(hints, w: int, h: int) -> None:
        """400 for a hint outside the (w x h) photo."""
        for i, hint in enumerate(hints, 1):
            if not (0 <= hint.x < w and 0 <= hint.y < h):
                raise RequestError(400, f"hint {i} at x={hint.x:g}, y={hint.y:g} is outside "
                                        f"the {w}x{h} photo")

    @property
    def temperature_default(self) -> float | None:
        return getattr(self.colorizer, "temperature_default", None)

    def temperature(self, value) -> float | None:
        """The form's or query's `temperature` (None when absent: the model's own); 400 for
        a model without one or a value outside (0, ∞)."""
        if value in (None, ""):
            return None
        if self.temperature_default is None:
            check = getattr(self.colorizer, "check_temperature", None)
            try:
                if check is None:  # a stand-in colorizer: say it the same way
                    raise ValueError(f"temperature={value!r}: {self.colorizer.model_name!r} "
                                     "has none; temperature applies to classification models "
                                     "only")
                check(value)
            except ValueError as e:
                raise RequestError(400, str(e)) from None
        try:
            return parse_temperature(value)
        except ValueError as e:
            raise RequestError(400, str(e)) from None

    def open(self, data: bytes) -> Image.Image:
        """Bytes -> a PIL image not yet decoded, its header checked against the limits.

        Raises `RequestError` (400, 413, 415) and nothing else."""
        if not data:
            raise RequestError(400, "empty upload: choose an image file")
        if len(data) > self.max_upload_bytes:
            raise RequestError(413, self._too_big(len(data)))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # bombs are checked below; odd EXIF, palettes
                im = Image.open(io.BytesIO(data), formats=FORMATS)
            w, h = im.size
        except UnidentifiedImageError:
            kind = heif_kind(data[:64])
            if kind:  # AVIF without libavif, HEIC: a photo, never a clip (same container)
                raise RequestError(415, unsupported_photo_message(kind) + "; photos read "
                                        f"here: {', '.join(FORMATS)}") from None
            if clips.looks_like_video(data[:512]):
                raise RequestError(415, "this is a video clip, not a photo: colorize it as a "
                                        "clip (POST /api/colorize_video; the page does)") from None
            raise RequestError(415, "not an image file PIL reads here: upload a "
                                    f"{', '.join(FORMATS)} photo") from None
        except Image.DecompressionBombError as e:
            raise RequestError(413, f"too many pixels: {e}") from None
        except Exception as e:  # noqa: BLE001 - a broken header of any kind
            raise RequestError(400, f"cannot read the image: {type(e).__name__}: {e}") from None
        self.check_size(w, h)
        return im

    def check_size(self, w: int, h: int) -> None:
        """413 for too many pixels or too long a side (memory grows with both), 400 for none."""
        check_frame_size(w, h, self.max_pixels, self.max_side, "the image")
        if w <= 0 or h <= 0:
            raise RequestError(400, "the image has no pixels")

    def load(self, im: Image.Image) -> Photo:
        """Decode an `open`ed image (EXIF orientation applied) -> Photo; 400 if damaged."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                im = ImageOps.exif_transpose(im)
                im.load()
                self.check_size(*im.size)  # a decoder that changed the size on load
                return photo_from_pil(im)
        except RequestError:
            raise
        except Exception as e:  # noqa: BLE001 - truncated or damaged data
            raise RequestError(400, f"the image cannot be decoded (truncated or damaged?): "
                                    f"{type(e).__name__}: {e}") from None

    def decode(self, data: bytes) -> Photo:
        """Bytes -> Photo, enforcing the limits (pixels and sides checked before decoding).

        Raises `RequestError` (400, 413, 415) and nothing else."""
        return self.load(self.open(data))

    def _too_big(self, n: int) -> str:
        return (f"the upload is {n / (1 << 20):.1f} MiB; the limit is "
                f"{self.max_upload_bytes / (1 << 20):.1f} MiB (--max_upload_mb)")

    def lane(self, im: Image.Image) -> Lane:
        w, h = im.size
        return self.small if w * h <= self.small_pixels else self.big

    def colorize(self, data: bytes, num_samples: int = 1, temperature: float | None = None,
                 hints: list | None = None):
        """(photo, [sRGB float images]) for an uploaded file; 503 when its lane is full.
        `temperature`: as checked by `temperature` (None: the model's own); `hints`: as
        parsed by `hints` (None: none), each checked to lie on the photo."""
        im = self.open(data)
        with self.lane(im):
            photo = self.load(im)
            kwargs = {} if temperature is None else {"temperature": temperature}
            if not hints:
                return photo, self.colorizer.colorize_photos([photo], num_samples, **kwargs)[0]
            self.check_hints(hints, *photo.size)
            try:  # a Photo in: float sRGB out, one image or (num_samples > 1) a list
                out = self.colorizer.colorize(photo, num_samples, hints=hints, **kwargs)
            except ValueError as e:  # hints the model refuses (the inputs are checked above)
                raise RequestError(400, f"bad hints: {e}") from None
            return photo, list(out) if num_samples > 1 else [out]

    def colorize_clip(self, data: bytes, stabilize: bool = True, client_gone=None):
        """(MP4 bytes, `clips.ClipInfo`, stats) for an uploaded clip. A clip takes a slot of
        the big photos' lane while it is colorized (frames are colorized in batches at full
        resolution: as much memory as a big photo), so big photos and clips share its
        --max_concurrent slots and --max_waiting queue; the work stops at
        --max_clip_work_seconds (413) or when `client_gone()` says so (`clips.ClientGone`).
        Raises `RequestError` (400, 413, 415, 503)."""
        if not clips.available():
            raise RequestError(501, "this server cannot read videos: PyAV is not installed "
                                    "(pip install av)")
        return clips.colorize_clip(self.colorizer, data, self.clip_limits, self.big,
                                   stabilize=stabilize, tmp_dir=self.tmp_dir,
                                   client_gone=client_gone)


def png_data_url(rgb8: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(encode_png(rgb8)).decode("ascii")


def encode_png(rgb8: np.ndarray) -> bytes:
    """(H, W, 3) or, for gray (a third of the bytes), (H, W) uint8 -> PNG bytes."""
    buf = io.BytesIO()
    im = Image.fromarray(rgb8)
    im.save(buf, format="PNG", compress_level=3)
    return buf.getvalue()
