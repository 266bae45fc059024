"""UNet colorizer (Ronneberger et al. 2015): encoder-decoder with skip connections.

With a pretrained backbone (`backbone_width` > 0, `taps` from `colorjax.models.backbone`)
it is the pretrained-encoder UNet of DeOldify (Antic 2018, a ResNet-encoder U-Net) and of
the ResNet-encoder pix2pix generators: each decoder level also concatenates the backbone's
feature map at its stride, and the bottleneck the deepest one.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from colorjax.models.backbone import TapProjection, check_taps, nearest_tap
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
    """L (N,H,W,C_in) -> (N,H,W,out_channels), with a skip connection at every level.

    `backbone_width` > 0: `taps` (backbone feature maps of L, finest first) are required;
    the decoder level at stride s concatenates beside its skip the tap nearest to stride s
    (GroupNorm, 1x1 conv to `backbone_width`, resized bilinearly where the backbone has no
    tap at s), the bottleneck the deepest tap. Without, the parameters are the plain UNet's.
    """

    backbone_width: int = 0
    zero_output: bool = False  # the output conv starts at zero: an untrained net says gray

    @nn.compact
    def __call__(self, x, train: bool = False, taps=None):
        check_taps(self, taps)

        def tap_at(h, level, tap=None):
            """[backbone tap projected at h's resolution] ([] without taps)."""
            if taps is None:
                return []
            tap = nearest_tap(taps, h.shape[1]) if tap is None else tap
            return [TapProjection(self.backbone_width, name=f"tap_level{level}")(
                tap, h.shape[1], h.shape[2], h.dtype)]

        skips = []
        for feats in self.features[:-1]:
            x = DoubleConv(feats, self.norm, self.act)(x, train)
            skips.append(x)
            # Strided conv rather than max-pool: learnable, and the pix2pix choice.
            x = ConvNormAct(feats, 4, 2, self.norm, self.act)(x, train)
        last = len(self.features) - 1
        if taps is not None:
            x = jnp.concatenate([x] + tap_at(x, last, taps[-1]), -1)
        x = DoubleConv(self.features[-1], self.norm, self.act)(x, train)
        for level, feats, skip in zip(reversed(range(last)), reversed(self.features[:-1]),
                                      reversed(skips)):
            x = UpNormAct(feats, self.norm, self.act)(x, train)
            x = jnp.concatenate([x, skip] + tap_at(skip, level), -1)
            x = DoubleConv(feats, self.norm, self.act)(x, train)
        return OutputHead(self.out_channels, self.out_act, self.zero_output)(x)
