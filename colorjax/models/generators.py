"""Generators of the adversarial colorizers (L -> ab), besides the plain UNet in unet.py.

- `EncoderDecoder`: the original project's GAN generator, a UNet without skip connections.
- `ResNetUNet`: encoder of residual blocks, decoder that upsamples and concatenates the
  encoder's features (the DeOldify / "pix2pix with a ResNet backbone" shape).
- `ResidualUNet`: residual blocks on both paths (Zhang, Liu, Wang, "Road extraction by deep
  residual U-Net", 2018), the WGAN-GP generator.

All take L (N,H,W,1) in [-1, 1] and return ab (N,H,W,2) in [-1, 1]; H and W must be
multiples of `downsample_factor` = 2**(len(features) - 1).

With a pretrained backbone (`backbone_width` > 0 and the `taps=` call argument, the frozen
backbone's feature maps of L from `colorjax.models.backbone.backbone_taps`), the UNet-shaped
generators concatenate beside each decoder skip the tap nearest its stride and at the
bottleneck the deepest tap, as `UNet` does; `EncoderDecoder`, which has no skips, takes the
deepest tap as extra conditioning at its bottleneck. Without taps every parameter tree is
the one of the network without a backbone.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from colorjax.config.checks import ConfigError
from colorjax.models.backbone import TapProjection, check_taps, nearest_tap
from colorjax.models.blocks import Conv, ConvNormAct, Norm, OutputHead, UpNormAct, activation
from colorjax.models.unet import DoubleConv, LevelNet, UNet


def tap_at(width: int, taps, h, level: int, tap=None) -> list:
    """[the backbone tap nearest h's resolution (or `tap`), projected to `width` channels at
    h's size by a `TapProjection` named `tap_level{level}`]; [] without taps. Call it inside
    a compact `__call__`: the projection is a submodule of the calling module."""
    if taps is None:
        return []
    tap = nearest_tap(taps, h.shape[1]) if tap is None else tap
    return [TapProjection(width, name=f"tap_level{level}")(tap, h.shape[1], h.shape[2],
                                                           h.dtype)]


class ResBlock(nn.Module):
    """Two 3x3 convs with an identity (or 1x1 projection) shortcut; `strides` 2 halves."""

    features: int
    strides: int = 1
    norm: str = "batch"
    act: str = "leaky_relu"

    @nn.compact
    def __call__(self, x, train: bool):
        y = ConvNormAct(self.features, 3, self.strides, self.norm, self.act)(x, train)
        y = nn.Conv(self.features, (3, 3), padding="SAME", use_bias=self.norm == "none")(y)
        y = Norm(self.norm)(y, train)
        shortcut = x
        if x.shape[-1] != self.features or self.strides != 1:
            shortcut = Conv(self.features, (1, 1), strides=self.strides,
                            use_bias=self.norm == "none")(x)
            shortcut = Norm(self.norm)(shortcut, train)
        return activation(self.act)(y + shortcut)


class EncoderDecoder(LevelNet):
    """Encoder-decoder without skips: everything the decoder knows passes the bottleneck
    (with taps, the deepest backbone tap is concatenated there too)."""

    backbone_width: int = 0

    @nn.compact
    def __call__(self, x, train: bool = False, taps=None):
        check_taps(self, taps)
        for feats in self.features[:-1]:
            x = DoubleConv(feats, self.norm, self.act)(x, train)
            x = ConvNormAct(feats, 4, 2, self.norm, self.act)(x, train)
        if taps is not None:
            last = len(self.features) - 1
            x = jnp.concatenate([x] + tap_at(self.backbone_width, taps, x, last, taps[-1]), -1)
        x = DoubleConv(self.features[-1], self.norm, self.act)(x, train)
        for feats in reversed(self.features[:-1]):
            x = UpNormAct(feats, self.norm, self.act)(x, train)
            x = DoubleConv(feats, self.norm, self.act)(x, train)
        return OutputHead(self.out_channels, self.out_act)(x)


class ResNetUNet(LevelNet):
    """Residual encoder (two ResBlocks per level, the first strided), UNet decoder."""

    backbone_width: int = 0

    @nn.compact
    def __call__(self, x, train: bool = False, taps=None):
        check_taps(self, taps)
        x = ConvNormAct(self.features[0], 3, 1, self.norm, self.act)(x, train)  # stem
        x = ResBlock(self.features[0], 1, self.norm, self.act)(x, train)
        skips = [x]
        for feats in self.features[1:]:
            x = ResBlock(feats, 2, self.norm, self.act)(x, train)
            x = ResBlock(feats, 1, self.norm, self.act)(x, train)
            skips.append(x)
        skips.pop()  # the bottleneck is x itself
        last = len(self.features) - 1
        if taps is not None:
            x = jnp.concatenate([x] + tap_at(self.backbone_width, taps, x, last, taps[-1]), -1)
        for level, feats, skip in zip(reversed(range(last)), reversed(self.features[:-1]),
                                      reversed(skips)):
            x = UpNormAct(feats, self.norm, self.act)(x, train)
            x = jnp.concatenate([x, skip] + tap_at(self.backbone_width, taps, skip, level), -1)
            x = DoubleConv(feats, self.norm, self.act)(x, train)
        return OutputHead(self.out_channels, self.out_act)(x)


class ResidualUNet(LevelNet):
    """UNet whose every double conv is a residual block (encoder and decoder)."""

    backbone_width: int = 0

    @nn.compact
    def __call__(self, x, train: bool = False, taps=None):
        check_taps(self, taps)
        skips = []
        for feats in self.features[:-1]:
            x = ResBlock(feats, 1, self.norm, self.act)(x, train)
            skips.append(x)
            x = ConvNormAct(feats, 4, 2, self.norm, self.act)(x, train)
        last = len(self.features) - 1
        if taps is not None:
            x = jnp.concatenate([x] + tap_at(self.backbone_width, taps, x, last, taps[-1]), -1)
        x = ResBlock(self.features[-1], 1, self.norm, self.act)(x, train)
        for level, feats, skip in zip(reversed(range(last)), reversed(self.features[:-1]),
                                      reversed(skips)):
            x = UpNormAct(feats, self.norm, self.act)(x, train)
            x = jnp.concatenate([x, skip] + tap_at(self.backbone_width, taps, skip, level), -1)
            x = ResBlock(feats, 1, self.norm, self.act)(x, train)
        return OutputHead(self.out_channels, self.out_act)(x)


GENERATORS = {
    "encoder_decoder": EncoderDecoder,
    "unet": UNet,
    "resnet_unet": ResNetUNet,
    "residual_unet": ResidualUNet,
}


def build_generator(name: str, features: Sequence[int], norm: str,
                    backbone_width: int = 0) -> nn.Module:
    """Generator by name (`config.model.generator`); `backbone_width` > 0: it reads the
    taps of a pretrained backbone (`taps=`), each projected to that many channels."""
    if name not in GENERATORS:
        raise ConfigError("config.model.generator", f"{name!r} is not allowed",
                          str(sorted(GENERATORS)))
    return GENERATORS[name](features=tuple(features), norm=norm,
                            backbone_width=int(backbone_width))
