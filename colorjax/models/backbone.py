"""Frozen ImageNet features of the gray input, for networks that condition on them.

A colorizer trained from scratch on a few hundred photos learns one typical colouring and
not which colour goes with which content (docs/results.md, diffusion). Colorizers that
work from little data read the gray image with a pretrained classifier's features instead
(Larsson, Maire and Shakhnarovich 2016, "Learning Representations for Automatic
Colorization": VGG16 hypercolumns). The VGG16 here is the LPIPS backbone
(`colorjax.metrics.lpips`): genuine ImageNet weights that the project already ships and
hash-checks, so no download is needed.

The backbone is frozen: its weights live in the train state's `model_state`, never in the
optimised `params`, and its taps pass through `stop_gradient`.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from colorjax.color import gray_rgb
from colorjax.models.blocks import groups_for
from colorjax.models.pretrained import load_params, vgg16_features

BACKBONES = ("none", "vgg16")


def load_backbone(name: str) -> dict:
    """The frozen weights of backbone `name` (a pytree of arrays)."""
    if name == "vgg16":
        return load_params("vgg")
    raise ValueError(f"config.model.backbone={name!r} has no weights; allowed: "
                     f"{[b for b in BACKBONES if b != 'none']}")


def backbone_taps(name: str, weights, l_norm: jax.Array) -> list[jax.Array]:
    """The backbone's feature maps of the gray image `l_norm` (N,H,W,1), float32, no gradient.

    VGG16: relu1_2 … relu5_3, at 1/1 … 1/16 of the input size.
    """
    if name != "vgg16":
        raise ValueError(f"config.model.backbone={name!r}; allowed: {list(BACKBONES)}")
    taps = vgg16_features(weights, gray_rgb(l_norm.astype(jnp.float32)))
    return [jax.lax.stop_gradient(t) for t in taps]


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
