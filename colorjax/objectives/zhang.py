"""Zhang et al.'s published colorizers, trainable and usable like any colorjax model:
`eccv16` ("Colorful Image Colorization", 2016) and `siggraph17` ("Real-Time User-Guided
Image Colorization with Learned Deep Priors", 2017), their networks in
`colorjax.models.zhang`, converted from the authors' PyTorch release by `colorjax.convert`.

* `eccv16` is a classification model (registry family "classification", this module's
  `ECCV16Objective` extends that family's objective): one logit per ab bin at 1/4 of the
  input, the class-rebalanced soft cross-entropy against the truth's ab averaged over each
  4x4 block (the logits' pixel), the bins and class weights in `model_state["colour_bins"]`.
  Prediction is the release's forward: the annealed mean of the logits at T (T = 1, this
  config's default, is the release's softmax mean, `model_out`; the paper's 0.38 is more
  vivid), then ab upsampled x4 bilinearly. The bins: a converted export holds the release's
  313 (read from its `model_out` layer); a network built here from nothing starts from
  `derived_bins()`, 313 grid-10 ab points near the sRGB gamut (the release's
  `pts_in_hull.npy`, computed from ImageNet's colours, is not reproduced exactly).
* `siggraph17` is a regression model with colour hints (family "regression",
  `config.model.hints` always on): L, hint ab and mask in, ab out; trained with the
  config's per-pixel loss on hints drawn from the truth as every colorjax hint model is.

Both declare `photo_io` (`AuthorsDemoIO`): at inference a photo is prepared and finished as
the authors' demo does (`colorizers/util.py`): the 8-bit RGB photo resized to the working
size with PIL's bicubic filter, then L; ab upsampled to the photo's size as PyTorch's
`F.interpolate(mode='bilinear')` and joined with the photo's own full-resolution L; a hint is
a 5x5 patch at 256 px (their interactive demo's default point, `ui_control.py`).
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image

from colorjax import color
from colorjax.color import ab_bins
from colorjax.config import checks
from colorjax.config.checks import ConfigError
from colorjax.color import AB_SCALE
from colorjax.models.zhang import ECCV16, NUM_BINS, SIGGRAPH17, upsample_bilinear
from colorjax.objectives.base import LOSSES
from colorjax.objectives.classification import (BINS, ClassificationObjective, check_bin_fields,
                                                soft_cross_entropy)
from colorjax.objectives.regression import RegressionObjective
from colorjax.config.registry import ModelSpec
from colorjax.media.photo_io import PhotoIO, resize_bilinear_torch
from colorjax.media.photos import Photo, gray_of

# Zhang et al.'s published networks (colorjax.convert converts their released weights);
# each trains as its family does, with its own network and pre/post-processing.
MODELS = {"eccv16": ModelSpec("classification", "eccv16"),
          "siggraph17": ModelSpec("regression", "siggraph17")}
DOWNSAMPLE_FACTOR = 8  # both networks halve the image three times
ECCV16_OUTPUT_STRIDE = 4  # the logits are at 1/4 of the input
DEMO_SIZE = 256  # the authors' working size (util.preprocess_img's HW)
DEMO_HINT_SIDE = 5  # ideepcolor's default point: +-2 px around the click at 256 px


def validate(config) -> None:
    """ConfigError naming the first wrong field these models read (builds nothing)."""
    name = checks.choice(config, "model.name", tuple(MODELS))
    checks.integer(config, "model.width", low=1, note="(the release's 64)")
    checks.boolean(config, "model.freeze_norm",
                   note="(True: BatchNorm keeps its running statistics in training)")
    checks.choice(config, "model.backbone", ("none",), default="none",
                  note=f"({name} reads the image through its own layers)")
    if name == "eccv16":
        check_bin_fields(config, "(1 = the release's mean, the paper's 0.38 = more vivid)")
    else:
        checks.choice(config, "loss", LOSSES)
        checks.number(config, "loss_rebalance", low=0.0, high=1.0, high_open=True,
                      default=0.0, note="(0 = off, 0.5 = Zhang et al.'s λ = 1/2)")
        if not checks.boolean(config, "model.hints", default=False):
            raise ConfigError("config.model.hints", "False is not allowed for siggraph17, "
                              "whose network reads the hint planes", "True")


def downsample_factor(config) -> int:
    del config
    return DOWNSAMPLE_FACTOR


@functools.lru_cache(maxsize=1)
def derived_bins(count: int = NUM_BINS, grid: float = ab_bins.GRID) -> np.ndarray:
    """(count, 2) float32: the `count` points of the ab grid (multiples of `grid`) nearest
    to the convex hull of the sRGB gamut's ab (inside it first), sorted by a, then b.

    The starting bins of an eccv16 network built here: the release's 313 (its
    pts_in_hull.npy) were the grid points in the hull of the colours of ImageNet; this gives
    313 points of the same grid over a like area (a in [-100, 110], b in [-120, 100], all of
    `ab_bins.in_gamut_centers()` among them). A converted export carries the release's own.
    """
    from scipy.spatial import ConvexHull

    # The hull of the gamut's image is the hull of the image of the RGB cube's faces.
    g = np.linspace(0.0, 1.0, 128)
    u, v = (a.ravel() for a in np.meshgrid(g, g, indexing="ij"))
    faces = []
    for axis in range(3):
        for value in (0.0, 1.0):
            face = np.empty((u.size, 3))
            face[:, axis] = value
            face[:, [i for i in range(3) if i != axis]] = np.stack([u, v], -1)
            faces.append(face)
    ab = color.rgb_to_lab(np.concatenate(faces).astype(np.float32))[:, 1:].astype(np.float64)
    hull = ConvexHull(ab)
    axis = np.arange(-15, 16) * grid
    points = np.stack(np.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)
    # Signed distance to the hull: the largest of the facets' n.x + d (positive outside).
    distance = np.max(points @ hull.equations[:, :2].T + hull.equations[:, 2], axis=1)
    chosen = points[np.argsort(distance, kind="stable")[:count]]
    return chosen[np.lexsort((chosen[:, 1], chosen[:, 0]))].astype(np.float32)


def block_mean(x, factor: int):
    """(N, H, W, C) -> (N, H/factor, W/factor, C): the mean of each factor x factor block."""
    n, h, w, c = x.shape
    return x.reshape(n, h // factor, factor, w // factor, factor, c).mean(axis=(2, 4))


class AuthorsDemoIO(PhotoIO):
    """richzhang/colorization's demo (`colorizers/util.py`): `preprocess_img` resizes the
    8-bit RGB photo (a gray one as three equal channels) to the working size with PIL's
    bicubic filter (`resample=3`) and takes its CIELAB L; `postprocess_tens` upsamples ab with
    `F.interpolate(mode='bilinear')` and joins the full-resolution L. Hints: ideepcolor's
    default point (5x5 at 256 px), scaled to other working sizes."""

    def model_l(self, photo: Photo, size: int) -> np.ndarray:
        rgb = photo.truth
        if rgb is None:  # a gray photo: its 8-bit levels (exact for 8-bit files)
            rgb = np.repeat(gray_of(photo)[..., None], 3, axis=-1)
        small = Image.fromarray(np.ascontiguousarray(rgb)).resize((size, size),
                                                                  Image.BICUBIC)
        return color.rgb_to_lab(np.asarray(small))[..., 0].astype(np.float32)

    def full_size_ab(self, ab_small: np.ndarray, width: int, height: int) -> np.ndarray:
        if ab_small.shape[:2] == (height, width):
            return np.asarray(ab_small, np.float32)
        return resize_bilinear_torch(ab_small, width, height)

    def hint_side(self, size: int) -> int:
        return max(1, round(DEMO_HINT_SIDE * size / DEMO_SIZE)) | 1


def _common(objective, config) -> None:
    """The attributes every objective here sets (the regression family's, no backbone)."""
    validate(config)
    objective.downsample_factor = DOWNSAMPLE_FACTOR
    objective.read_shared_fields(config)  # no backbone: validate allows only "none"
    # Started from an export (`config.init_from`): keep its output layer as it is.
    objective.keep_output_layer = bool(checks.get(config, "init_from", default=""))


class ECCV16Objective(ClassificationObjective):
    """eccv16: per-bin logits at 1/4, decoded by the annealed mean, upsampled x4."""

    photo_io = AuthorsDemoIO()
    output_head = ("model8_6",)  # the 1x1 conv to one logit per bin (fit_data_statistics)

    def __init__(self, config):
        _common(self, config)
        self.centers = derived_bins()
        self.model = ECCV16(width=int(config.model.width), num_bins=len(self.centers),
                            freeze_norm=bool(config.model.freeze_norm))
        self.temperature = float(config.classification.temperature)
        self.prior_mix = float(config.classification.prior_mix)
        self.prior_images = int(config.classification.prior_images)

    def _loss(self, logits, batch, state):
        """The soft cross-entropy at the logits' resolution: the truth's ab averaged over
        each 4x4 block they stand for."""
        bins = state.model_state[BINS]
        ab = block_mean(batch["ab"] * AB_SCALE, ECCV16_OUTPUT_STRIDE)
        return soft_cross_entropy(logits, ab, bins["centers"], bins["weights"])

    def predict_with(self, variables, gray_l, rng, sampling: bool = False, temperature=None,
                     hints=None):
        """ab in network range: the annealed mean of the 1/4-size logits at `temperature`
        (default `config.classification.temperature`; may be traced), upsampled x4."""
        del rng, sampling
        t = self.temperature if temperature is None else temperature
        ab = ab_bins.annealed_mean(self.logits_with(variables, gray_l, hints),
                                   variables[BINS]["centers"], t)
        return upsample_bilinear(ab / AB_SCALE, ECCV16_OUTPUT_STRIDE)


class SIGGRAPH17Objective(RegressionObjective):
    """siggraph17: concat(L, hint planes) -> ab, one forward pass."""

    photo_io = AuthorsDemoIO()

    def __init__(self, config):
        _common(self, config)
        self.model = SIGGRAPH17(width=int(config.model.width),
                                freeze_norm=bool(config.model.freeze_norm))
        self.loss_kind = config.loss
        self.loss_rebalance = float(checks.get(config, "loss_rebalance", default=0.0))


def OBJECTIVE(config):  # noqa: N802  the registry's name for a module's objective maker
    """The objective of `config.model.name` (eccv16 or siggraph17)."""
    name = checks.choice(config, "model.name", tuple(MODELS))
    return {"eccv16": ECCV16Objective, "siggraph17": SIGGRAPH17Objective}[name](config)


__all__ = ["AuthorsDemoIO", "ECCV16Objective", "MODELS", "OBJECTIVE", "SIGGRAPH17Objective",
           "derived_bins", "downsample_factor", "validate"]
