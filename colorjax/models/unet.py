"""UNet colorizer (Ronneberger et al. 2015): encoder-decoder with skip connections."""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from colorjax.models.blocks import ConvNormAct, OutputHead, UpNormAct


class DoubleConv(nn.Module):
    features: int
    norm: str = "batch"
    act: str = "leaky_relu"

    @nn.compact
    def __call__(self, x, train: bool):
        x = ConvNormAct(self.features, 3, 1, self.norm, self.act)(x, train)
        return ConvNormAct(self.features, 3, 1, self.norm, self.act)(x, train)


class LevelNet(nn.Module):
    """Fields of the image-to-image networks built level by level (UNet and the generators).

    `features` gives the width of each level, e.g. (32, 64, 128, 256): three downsamplings,
    so H and W must be multiples of `downsample_factor` = 2**(len(features)-1).
    """

    features: Sequence[int] = (32, 64, 128, 256)
    norm: str = "batch"
    act: str = "leaky_relu"
    out_channels: int = 2
    out_act: str = "tanh"

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.features) - 1)


class UNet(LevelNet):
    """L (N,H,W,C_in) -> (N,H,W,out_channels), with a skip connection at every level."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        skips = []
        for feats in self.features[:-1]:
            x = DoubleConv(feats, self.norm, self.act)(x, train)
            skips.append(x)
            # Strided conv rather than max-pool: learnable, and the pix2pix choice.
            x = ConvNormAct(feats, 4, 2, self.norm, self.act)(x, train)
        x = DoubleConv(self.features[-1], self.norm, self.act)(x, train)
        for feats, skip in zip(reversed(self.features[:-1]), reversed(skips)):
            x = UpNormAct(feats, self.norm, self.act)(x, train)
            x = DoubleConv(feats, self.norm, self.act)(jnp.concatenate([x, skip], -1), train)
        return OutputHead(self.out_channels, self.out_act)(x)
