"""Pretrained ImageNet features of the gray input, for networks that condition on them.

A colorizer trained from scratch on a few hundred photos learns one typical colouring and
not which colour goes with which content (docs/results.md, diffusion). Colorizers that
work from little data read the gray image with a pretrained classifier's features instead
(Larsson, Maire and Shakhnarovich 2016, "Learning Representations for Automatic
Colorization": VGG16 hypercolumns). The VGG16 here is the LPIPS backbone
(`colorjax.metrics.lpips`): genuine ImageNet weights that the project already ships and
hash-checks, so no download is needed. EfficientNet-Lite0 (`colorjax.models.efficientnet`,
Tan & Le 2019) is the small, fast alternative: taps at strides 2 … 32.

By default the backbone is frozen: its weights live in the train state's `model_state`,
never in the optimised `params`, and its taps pass through `stop_gradient`. The regression
family can also fine-tune it (`backbone_taps(..., trainable=True)` keeps the gradient).
"""

from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from colorjax.config.checks import ConfigError
from colorjax.color import gray_rgb
from colorjax.models.blocks import groups_for
from colorjax.models.efficientnet import efficientnet_features, load_efficientnet_lite0
from colorjax.models.pretrained import load_params, vgg16_features

BACKBONES = ("none", "vgg16", "efficientnet_lite0")
# Input size / tap size of each backbone's taps, finest first.
TAP_STRIDES = {"vgg16": (1, 2, 4, 8, 16), "efficientnet_lite0": (2, 4, 8, 16, 32)}
TAP_CHANNELS = {"vgg16": (64, 128, 256, 512, 512),
                "efficientnet_lite0": (16, 24, 40, 112, 320)}


def _unknown(name: str) -> ValueError:
    return ConfigError("config.model.backbone", f"{name!r} has no weights",
                       str([b for b in BACKBONES if b != "none"]))


def load_backbone(name: str) -> dict:
    """The pretrained weights of backbone `name` (a pytree of arrays): VGG16's
    `{"params"}` (with LPIPS's heads, unused here), EfficientNet-Lite0's
    `{"params", "batch_stats"}`."""
    if name == "vgg16":
        return load_params("vgg")
    if name == "efficientnet_lite0":
        return load_efficientnet_lite0()
    raise _unknown(name)


def projected_width(model_config) -> int:
    """Channels of each projected backbone tap (`model.backbone_width`, default 64); 0
    without a backbone."""
    if model_config.get("backbone", "none") == "none":
        return 0
    return int(model_config.get("backbone_width", 64))


def tap_shapes(name: str, l_shape) -> list[tuple[int, int, int, int]]:
    """The shapes of `backbone_taps(name, ..., l)` for `l` of shape (N, H, W, 1), without
    tracing the backbone: EfficientNet's stride-2 convs pad "SAME" (sizes round up),
    VGG16's 2x2 max pools are VALID (sizes round down)."""
    n, h, w = l_shape[:3]
    if name == "efficientnet_lite0":
        sizes = [(-(-h // s), -(-w // s)) for s in TAP_STRIDES[name]]
    elif name == "vgg16":
        sizes, sh, sw = [], h, w
        for i in range(len(TAP_STRIDES[name])):
            sh, sw = (sh, sw) if i == 0 else (sh // 2, sw // 2)
            sizes.append((sh, sw))
    else:
        raise _unknown(name)
    return [(n, th, tw, c) for (th, tw), c in zip(sizes, TAP_CHANNELS[name])]


def backbone_taps(name: str, weights, l_norm: jax.Array,
                  trainable: bool = False) -> list[jax.Array]:
    """The backbone's feature maps of the gray image `l_norm` (N,H,W,1), float32, finest
    first, at the strides `TAP_STRIDES[name]`; no gradient unless `trainable`.

    VGG16: relu1_2 … relu5_3, at 1/1 … 1/16 of the input size. EfficientNet-Lite0: the
    last block at 1/2 … 1/32 (sizes round up: TF "SAME" padding).
    """
    rgb = gray_rgb(l_norm.astype(jnp.float32))
    if name == "vgg16":
        taps = vgg16_features(weights, rgb)
    elif name == "efficientnet_lite0":
        taps = efficientnet_features(weights, rgb)[0]
    else:
        raise _unknown(name)
    taps = [t.astype(jnp.float32) for t in taps]
    return taps if trainable else [jax.lax.stop_gradient(t) for t in taps]


def nearest_tap(taps: Sequence[jax.Array], height: int) -> jax.Array:
    """The tap whose height is nearest to `height` (in octaves): an exact one if any, else
    the finest or the coarsest (`TapProjection` resizes it)."""
    return min(taps, key=lambda t: abs(math.log2(t.shape[1] / height)))


def check_taps(module, taps) -> None:
    """Taps are given exactly when the network was built for them."""
    if (taps is not None) != (module.backbone_width > 0):
        raise ValueError(f"{type(module).__name__}: pass backbone taps (`taps`) exactly when "
                         f"backbone_width > 0 (it is {module.backbone_width})")


class TapProjection(nn.Module):
    """One tap (cast to `dtype`) normalised (GroupNorm) and projected by a 1x1 conv to
    `width` channels, then resized (bilinearly) to height x width."""

    width: int = 64
    groups: int = 32

    @nn.compact
    def __call__(self, tap: jax.Array, height: int, width: int, dtype) -> jax.Array:
        tap = tap.astype(dtype)
        tap = nn.GroupNorm(num_groups=groups_for(tap.shape[-1], self.groups))(tap)
        tap = nn.Conv(self.width, (1, 1))(tap)
        if tap.shape[1:3] != (height, width):
            tap = jax.image.resize(tap, (tap.shape[0], height, width, self.width), "bilinear")
        return tap


class Hypercolumn(nn.Module):
    """Projects each tap to `width` channels (GroupNorm, 1x1 conv) and pools the deepest
    one into a global vector; `hypercolumn_at` sums the projections at any resolution."""

    width: int = 64
    groups: int = 32

    @nn.compact
    def __call__(self, taps: Sequence[jax.Array], dtype):
        maps = []
        for tap in taps:
            tap = tap.astype(dtype)
            norm = nn.GroupNorm(num_groups=groups_for(tap.shape[-1], self.groups))
            maps.append(nn.Conv(self.width, (1, 1))(norm(tap)))
        pooled = nn.LayerNorm()(jnp.mean(taps[-1].astype(dtype), axis=(1, 2)))
        return maps, pooled


def hypercolumn_at(maps: Sequence[jax.Array], height: int, width: int) -> jax.Array:
    """Sum of the projected taps, each resized (bilinear) to height x width."""
    return sum(jax.image.resize(m, (m.shape[0], height, width, m.shape[-1]), "bilinear")
               for m in maps)
