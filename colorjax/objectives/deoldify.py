"""DeOldify's generators (jantic/DeOldify, MIT), usable and trainable like any colorjax
regression model (registry family "regression", module "deoldify"); the networks in
`colorjax.models.deoldify`, converted from the authors' checkpoints by `colorjax.convert`.

The network reads the gray level (L / 50 - 1 in training: colorjax's L read as a gray
level) and returns RGB; for training, videos and metrics the objective gives its CIELAB
ab. A photo is colorized as the authors' `ColorizerFilter` (deoldify/filters.py) does
(`DeOldifyIO`).

Trained with the per-pixel loss on ab and the preset's `config.loss_terms`
(colorjax/objectives/loss_terms.py): DeOldify's FeatureLoss weights 20, 70, 10 on the three
deepest taps of colorjax's VGG16 (theirs: vgg16_bn), on the composite of the true L and the
predicted ab (theirs compares the network's RGB). A GAN term (colorjax's PatchGAN, not their
critic and its NoGAN schedule) is off unless `loss_terms.gan_weight` is set.

Videos (`python -m colorjax.colorize --input=film.mp4`, the page's clips; any DeOldify
export, the video weights `--from=deoldify_video` made for film among them) take colorjax's
path, `colorjax.video`: each frame is prepared as a photo is (`DeOldifyIO.model_l`: the
square gray image at the working size, render_factor x 16, 336 px for the video weights),
the network's RGB becomes CIELAB ab, that ab is stabilised along optical flow against the
previous output frame (`colorjax.media.temporal`, restarting at scene cuts; `--no-stabilize`
turns it off) and joined with the frame's own full-resolution L; timestamps and audio are
kept. DeOldify's own `VideoColorizer` (deoldify/visualize.py) has no temporal filter (its
video weights are trained to flicker less): ffmpeg writes the frames as JPEG, each goes
through `ColorizerFilter` on its own (render_factor 21; the network's YUV U and V on the
frame's Y), and the colour JPEGs are encoded again with libx264 (crf 17) at the source's
average frame rate, the audio copied back as AAC. So with the stabiliser off, colorjax's
frames differ from theirs in how colour meets the frame (Lab ab of the network's RGB on
the frame's L, against U and V on its Y) and by their JPEG round trips; a frame colorized
as a photo (`Colorizer.colorize`) is their filter's result.
"""

from __future__ import annotations

import jax
import numpy as np
from PIL import Image

from colorjax.config import checks
from colorjax.config.registry import ModelSpec
from colorjax.models.deoldify import ARCHS, RENDER_BASE, DeOldify
from colorjax.objectives.base import apply_in_precision
from colorjax.objectives.regression import RegressionObjective, check_published_fields
from colorjax.media.photo_io import PhotoIO
from colorjax.media.photos import Photo, gray_of

# DeOldify's generators (jantic/DeOldify; config.model.arch: wide or deep).
MODELS = {"deoldify": ModelSpec("regression", "deoldify")}


def validate(config) -> None:
    """ConfigError naming the first wrong field this model reads (builds nothing)."""
    checks.choice(config, "model.name", tuple(MODELS))
    checks.choice(config, "model.arch", tuple(ARCHS),
                  note="(wide: ResNet-101, stable and video; deep: ResNet-34, artistic)")
    check_published_fields(config, "deoldify", "its own ResNet")


def downsample_factor(config) -> int:
    del config
    return RENDER_BASE


def authors_rgb_photo(photo: Photo) -> Image.Image:
    """The photo as `PIL.Image.open(path).convert('RGB')` (a gray one: three equal planes)."""
    rgb = photo.truth
    if rgb is None:
        rgb = np.repeat(gray_of(photo)[..., None], 3, axis=-1)
    return Image.fromarray(np.ascontiguousarray(rgb))


def authors_uint8(x: np.ndarray) -> np.ndarray:
    """`image2np(out * 255).astype(np.uint8)` (filters.py): truncated, not clipped; out of
    range values wrap modulo 256 as NumPy's cast does on x86 and ARM."""
    return (np.trunc(np.asarray(x, np.float64)).astype(np.int64) % 256).astype(np.uint8)


def post_process(raw_color: np.ndarray, orig: np.ndarray) -> np.ndarray:
    """ColorizerFilter._post_process: Y of the photo, U and V of the network's colour
    (OpenCV's 8-bit RGB <-> YUV), uint8 (H, W, 3)."""
    import cv2

    color_yuv = cv2.cvtColor(np.ascontiguousarray(raw_color), cv2.COLOR_RGB2YUV)
    hires = cv2.cvtColor(np.ascontiguousarray(orig), cv2.COLOR_RGB2YUV)
    hires[:, :, 1:3] = color_yuv[:, :, 1:3]
    return cv2.cvtColor(hires, cv2.COLOR_YUV2RGB)


class DeOldifyIO(PhotoIO):
    """deoldify/filters.py `ColorizerFilter` at render size S = render_factor * 16: the RGB
    photo stretched to S x S (PIL bilinear), made gray (`convert('LA').convert('RGB')`),
    ImageNet-normalised; the network's RGB denormalised, x 255 to uint8, resized back
    (PIL bilinear) and joined with the photo's luminance (`post_process`). As the authors'
    `get_transformed_image(..., watermarked=False)`: their default watermark (a logo blended
    into a corner, visualize.py `get_watermarked`) is branding, not colorization.

    `Colorizer.colorize` (and serve) run this pipeline; the colorize CLI's `finish` runs the
    network once more for it. Videos take colorjax's path (`predict_small`'s ab, the
    temporal stabiliser, the frame's own L), not the per-frame filter of DeOldify's
    VideoColorizer."""

    def model_l(self, photo: Photo, size: int) -> np.ndarray:
        """The gray level g (0-255) of the square image, as L = g * 100 / 255 (the network
        reads L / 50 - 1 as g / 127.5 - 1)."""
        square = authors_rgb_photo(photo).resize((size, size), Image.BILINEAR)
        gray = np.asarray(square.convert("LA").convert("RGB"))[..., 0]
        return gray.astype(np.float32) * np.float32(100.0 / 255.0)

    def colorize_photos(self, colorizer, photos: list[Photo], size: int) -> list[np.ndarray]:
        """sRGB float32 (H, W, 3) in [0, 1] of each photo, the authors' whole pipeline."""
        objective = colorizer.objective
        outs = []
        for start in range(0, len(photos), colorizer.batch_size):
            chunk = photos[start:start + colorizer.batch_size]
            x = np.stack([self.model_l(p, size) / 50.0 - 1.0 for p in chunk])[..., None]
            pad = min(colorizer.batch_size, 1 << (len(chunk) - 1).bit_length()) - len(chunk)
            x = np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)])  # few shapes
            with colorizer._lock:
                rgb = np.asarray(objective.predict_rgb(colorizer.variables,
                                                       x.astype(np.float32)))
            for p, out in zip(chunk, rgb):
                orig = authors_rgb_photo(p)
                small = Image.fromarray(authors_uint8(out * 255.0))
                raw = np.asarray(small.resize(orig.size, Image.BILINEAR))
                outs.append(post_process(raw, np.asarray(orig)).astype(np.float32) / 255.0)
        return outs

    def finish(self, colorizer, photo: Photo, ab_small: np.ndarray) -> np.ndarray:
        """`Colorizer.finish`: the authors' result at the working size of `ab_small` (the
        network runs again for its RGB: the ab alone cannot give the authors' colours)."""
        return self.colorize_photos(colorizer, [photo], ab_small.shape[0])[0]


class DeOldifyObjective(RegressionObjective):
    """L -> ab through the authors' RGB network; `predict_rgb` is its RGB."""

    photo_io = DeOldifyIO()

    def __init__(self, config):
        validate(config)
        self.downsample_factor = RENDER_BASE
        self.read_shared_fields(config)
        self.keep_output_layer = bool(checks.get(config, "init_from", default=""))
        self.model = DeOldify(arch=config.model.arch,
                              freeze_norm=bool(config.model.freeze_norm))
        self.read_loss_fields(config)
        self.predict_rgb = jax.jit(self.predict_rgb_with)

    def predict_rgb_with(self, variables, gray_l):
        """The authors' denormalised RGB (N, S, S, 3), about [0, 1], for L / 50 - 1, computed
        in `config.precision` (float32 out)."""
        return apply_in_precision(self.model, variables, gray_l, train=False, rgb=True,
                                  dtype=self.dtype)


def OBJECTIVE(config):  # noqa: N802  the registry's name for a module's objective maker
    return DeOldifyObjective(config)


__all__ = ["DeOldifyIO", "DeOldifyObjective", "MODELS", "OBJECTIVE", "downsample_factor",
           "post_process", "validate"]
