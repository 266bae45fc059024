"""DDColor (Kang et al., ICCV 2023), trainable and usable like any colorjax model: its network
in `colorjax.models.ddcolor`, converted from the authors' PyTorch files by
`colorjax.convert` (`--from=ddcolor_tiny|ddcolor_large`).

A regression model (registry family "regression"): L in, ab out, one forward pass; trained
with the config's per-pixel loss (the paper's L1) and the `config.loss_terms` the preset
sets to the paper's (colorjax/objectives/loss_terms.py): a VGG16 perceptual term on
colorjax's VGG16 (theirs is vgg16_bn), DDColor's colourfulness term, and a GAN term whose
discriminator is colorjax's PatchGAN on (L, ab) (theirs judges RGB).

`photo_io` (`AuthorsPipelineIO`) prepares and finishes a photo as the authors'
`ColorizationPipeline.process` (ddcolor/pipeline.py) does: the RGB photo as floats in
[0, 1] resized to the working size with OpenCV's `cv2.resize` default (bilinear, no
antialiasing), its Lab L (the network then makes the gray RGB of that L); ab resized to the
photo's size with `F.interpolate`'s default, nearest, and joined with the photo's own L,
then OpenCV's Lab -> RGB (which, unlike scikit-image's, keeps a negative Z of colours out of
the gamut and clips the linear RGB).
"""

from __future__ import annotations

import numpy as np

from colorjax import color
from colorjax.config import checks
from colorjax.config.registry import ModelSpec
from colorjax.models.ddcolor import ENCODERS, Arch, DDColor
from colorjax.objectives.regression import RegressionObjective, check_published_fields
from colorjax.media.photo_io import PhotoIO, resize_bilinear_torch
from colorjax.media.photos import STRIPE_PIXELS, Photo, gray_of

DOWNSAMPLE_FACTOR = 32  # ConvNeXt halves the image five times (stem 4x, then 2x three times)


def validate(config) -> None:
    """ConfigError naming the first wrong field DDColor reads (builds nothing)."""
    checks.choice(config, "model.name", ("ddcolor",))
    checks.choice(config, "model.encoder", tuple(ENCODERS))
    checks.integer(config, "model.num_queries", low=1, note="(the published models' 100)")
    checks.integer(config, "model.num_scales", low=1, high=3,
                   note="(the pixel decoder's 3 scales; the published models' 3)")
    checks.integer(config, "model.dec_layers", low=1, note="(the published models' 9)")
    check_published_fields(config, "ddcolor", "its own ConvNeXt")


def downsample_factor(config) -> int:
    del config
    return DOWNSAMPLE_FACTOR


def nearest_indices(n_in: int, n_out: int) -> np.ndarray:
    """PyTorch's `F.interpolate(mode='nearest')` source index of each output index:
    floor(i * (n_in / n_out)) in float32, clamped (its `nearest_idx`)."""
    if n_in == n_out:
        return np.arange(n_out)
    if n_out == 2 * n_in:
        return np.arange(n_out) >> 1
    scale = np.float32(n_in) / np.float32(n_out)
    idx = np.floor(np.arange(n_out, dtype=np.float32) * scale).astype(np.int64)
    return np.minimum(idx, n_in - 1)


# OpenCV's float Lab -> RGB (imgproc/src/color_lab.cpp, Lab2RGBfloat): its D65 white and
# XYZ -> sRGB matrix, each column scaled by the white.
_CV_WHITE = np.array([0.950456, 1.0, 1.088754])
_CV_XYZ_TO_RGB = (np.array([[3.240479, -1.53715, -0.498535],
                            [-0.969256, 1.875991, 0.041556],
                            [0.055648, -0.204043, 1.057311]]) * _CV_WHITE).astype(np.float32)


def opencv_lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    """cv2.cvtColor(lab, COLOR_Lab2RGB) for float32 Lab: sRGB float32 in [0, 1]. L <= 8
    (its lThresh) on the linear segment, f <= 6/29 likewise for X and Z (never clipped), the
    linear RGB clipped to [0, 1], then the sRGB curve (OpenCV interpolates it from a table)."""
    lab = np.asarray(lab, np.float32)
    L, a, b = lab[..., 0], lab[..., 1], lab[..., 2]
    low = L <= 8.0
    y = np.where(low, L / np.float32(903.3), ((L + 16) / 116) ** 3)
    fy = np.where(low, np.float32(7.787) * y + np.float32(16 / 116), (L + 16) / 116)
    f = np.stack([fy + a / 500, fy - b / 200], -1)
    xz = np.where(f <= np.float32(6 / 29), (f - np.float32(16 / 116)) / np.float32(7.787), f ** 3)
    xyz = np.stack([xz[..., 0], y, xz[..., 1]], -1)
    lin = np.clip(xyz @ _CV_XYZ_TO_RGB.T, 0.0, 1.0)
    return color.linear_to_srgb(lin).astype(np.float32)


class AuthorsPipelineIO(PhotoIO):
    """piddnad/DDColor's `ColorizationPipeline.process`: `cv2.resize(img / 255, (S, S))`
    (INTER_LINEAR: half-pixel centres, edges clamped, no antialiasing; a gray photo as three
    equal channels, as cv2.imread reads it), its L; ab back with `F.interpolate(size=(h, w))`
    (nearest), joined with the full-resolution L of the photo."""

    def model_l(self, photo: Photo, size: int) -> np.ndarray:
        rgb = photo.truth
        if rgb is None:  # a gray photo: its 8-bit levels (exact for 8-bit files)
            rgb = np.repeat(gray_of(photo)[..., None], 3, axis=-1)
        small = resize_bilinear_torch(np.asarray(rgb, np.float32) / 255.0, size, size)
        return color.rgb_to_lab(small)[..., 0].astype(np.float32)

    def full_size_ab(self, ab_small: np.ndarray, width: int, height: int) -> np.ndarray:
        h, w = ab_small.shape[:2]
        rows, cols = nearest_indices(h, height), nearest_indices(w, width)
        return np.ascontiguousarray(np.asarray(ab_small, np.float32)[rows][:, cols])

    def lab_to_rgb(self, l: np.ndarray, ab: np.ndarray) -> np.ndarray:
        """`cv2.cvtColor(lab, COLOR_LAB2BGR)` (as RGB), in pieces of STRIPE_PIXELS."""
        h, w = l.shape
        flat_l, flat_ab = l.reshape(-1, 1), ab.reshape(-1, 2)
        out = np.empty((h * w, 3), np.float32)
        for i in range(0, h * w, STRIPE_PIXELS):
            piece = slice(i, i + STRIPE_PIXELS)
            out[piece] = opencv_lab_to_rgb(np.concatenate([flat_l[piece], flat_ab[piece]], -1))
        return out.reshape(h, w, 3)


class DDColorObjective(RegressionObjective):
    """ddcolor: L -> gray RGB -> DDColor -> ab, one forward pass."""

    photo_io = AuthorsPipelineIO()

    def __init__(self, config):
        validate(config)
        self.downsample_factor = DOWNSAMPLE_FACTOR
        self.read_shared_fields(config)  # no backbone: validate allows only "none"
        m = config.model
        self.model = DDColor(Arch(str(m.encoder), int(m.num_queries), int(m.num_scales),
                                  int(m.dec_layers)), freeze_norm=bool(m.freeze_norm))
        self.read_loss_fields(config)


# Kang et al.'s DDColor (colorjax.convert --from=ddcolor_tiny|ddcolor_large).
MODELS = {"ddcolor": ModelSpec("regression", "ddcolor")}
OBJECTIVE = DDColorObjective

__all__ = ["OBJECTIVE", "AuthorsPipelineIO", "DDColorObjective", "downsample_factor",
           "nearest_indices", "opencv_lab_to_rgb", "validate"]
