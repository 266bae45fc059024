"""Discriminators (critics) of the adversarial colorizers. Both judge (L, ab) pairs, so a
plausible colour must also fit the lightness it was predicted from (conditional GAN).

- `PatchDiscriminator`: the pix2pix "PatchGAN" (Isola et al. 2017, appendix 6.1.2):
  C64-C128-C256-C512, 4x4 convs, LeakyReLU(0.2), no norm on the first layer, one logit per
  overlapping patch. With 3 strided layers each logit sees a 70x70 window.
- `ConvDiscriminator`: strided convs, global average pool, one logit per image (the
  original project's plain GAN discriminator).

For the WGAN-GP critic use `norm="instance"` (or "none"): the gradient penalty is taken per
sample, which BatchNorm's cross-sample coupling would invalidate (Gulrajani et al. 2017, 4).
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from colorjax.config.checks import ConfigError
from colorjax.models.blocks import Conv, Norm

_PAD1 = ((1, 1), (1, 1))  # pix2pix pads its 4x4 convs by 1


def _widths(features: int, n_layers: int) -> list[int]:
    """Channel widths, doubling per layer and capped at 8x the first (pix2pix)."""
    return [features * min(2**i, 8) for i in range(n_layers + 1)]


def patchgan_receptive_field(n_layers: int) -> int:
    """Input window seen by one PatchGAN logit: n_layers 4x4/2 convs, then two 4x4/1."""
    strides = [2] * n_layers + [1, 1]
    field, jump = 1, 1
    for s in strides:
        field += 3 * jump  # kernel 4: (k - 1) * product of earlier strides
        jump *= s
    return field


def patchgan_min_size(n_layers: int) -> int:
    """Smallest input side with at least one output logit (each 4x4/1 conv trims 1)."""
    return 3 * 2**n_layers


class PatchDiscriminator(nn.Module):
    """(L (N,H,W,1), ab (N,H,W,2)) -> logits (N, h, w, 1), one per patch."""

    features: int = 64
    n_layers: int = 3
    norm: str = "batch"

    @nn.compact
    def __call__(self, l, ab, train: bool = False):
        x = jnp.concatenate([l, ab], axis=-1)
        widths = _widths(self.features, self.n_layers)
        for i, feats in enumerate(widths):
            strides = 2 if i < self.n_layers else 1
            norm = "none" if i == 0 else self.norm
            x = Conv(feats, (4, 4), strides=strides, padding=_PAD1,
                        use_bias=norm == "none")(x)
            x = nn.leaky_relu(Norm(norm)(x, train), 0.2)
        return nn.Conv(1, (4, 4), strides=1, padding=_PAD1)(x)


class ConvDiscriminator(nn.Module):
    """(L, ab) -> one logit per image, shape (N, 1)."""

    features: int = 64
    n_layers: int = 4
    norm: str = "batch"

    @nn.compact
    def __call__(self, l, ab, train: bool = False):
        x = jnp.concatenate([l, ab], axis=-1)
        for i, feats in enumerate(_widths(self.features, self.n_layers - 1)):
            norm = "none" if i == 0 else self.norm
            x = Conv(feats, (4, 4), strides=2, padding=_PAD1, use_bias=norm == "none")(x)
            x = nn.leaky_relu(Norm(norm)(x, train), 0.2)
        return nn.Dense(1)(jnp.mean(x, axis=(1, 2)))


DISCRIMINATORS = {"patchgan": PatchDiscriminator, "conv": ConvDiscriminator}


def build_discriminator(name: str, features: int, n_layers: int, norm: str) -> nn.Module:
    """Discriminator by name (`config.adversarial.discriminator`)."""
    if name not in DISCRIMINATORS:
        raise ConfigError("config.adversarial.discriminator", f"{name!r} is not allowed",
                          str(sorted(DISCRIMINATORS)))
    return DISCRIMINATORS[name](features=int(features), n_layers=int(n_layers), norm=norm)


def min_input_size(name: str, n_layers: int) -> int:
    """Smallest image side the discriminator accepts."""
    return patchgan_min_size(n_layers) if name == "patchgan" else 2**n_layers
