"""ResNet colorizer: a ResNet-18 encoder cut after its second stage, then learned upsampling.

As in the original student projects (and the common "ResNet-18 features + upsampling"
colorizer), only the first two stages are kept: they see enough context for local colour
while keeping 1/8 of the input resolution, which the transposed convolutions restore.

With a pretrained backbone (`backbone_width` > 0) its taps enter as a hypercolumn (Larsson
et al. 2016; Hariharan et al. 2015): every tap projected (GroupNorm, 1x1 conv) and resized
to the network's working resolution, 1/8, summed, and concatenated to the encoder's output
before the upsampling head.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from colorjax.models.backbone import TapProjection, check_taps
from colorjax.models.blocks import Conv, ConvNormAct, Norm, OutputHead, UpNormAct


class BasicBlock(nn.Module):
    """ResNet basic block (He et al. 2016): two 3x3 convs with an identity/projection skip."""

    features: int
    strides: int = 1
    norm: str = "batch"

    @nn.compact
    def __call__(self, x, train: bool):
        residual = x
        y = ConvNormAct(self.features, 3, self.strides, self.norm, "relu")(x, train)
        y = nn.Conv(self.features, (3, 3), padding="SAME", use_bias=False)(y)
        y = Norm(self.norm)(y, train)
        if residual.shape != y.shape:
            residual = Conv(self.features, (1, 1), strides=self.strides, use_bias=False)(x)
            residual = Norm(self.norm)(residual, train)
        return nn.relu(y + residual)


class ResNetColorizer(nn.Module):
    """L (N,H,W,1) in [-1,1] -> ab (N,H,W,out_channels). H and W must be multiples of 8."""

    width: int = 64
    norm: str = "batch"
    out_act: str = "tanh"
    backbone_width: int = 0  # > 0: `taps` (colorjax.models.backbone) are required
    out_channels: int = 2  # ab; the classification family predicts one logit per ab bin
    zero_output: bool = False  # the output conv starts at zero: an untrained net says gray
    downsample_factor = 8

    @nn.compact
    def __call__(self, l, train: bool = False, taps=None):
        check_taps(self, taps)
        w = self.width
        # Stem of ResNet-18: 7x7/2 conv + 3x3/2 max-pool.
        x = ConvNormAct(w, 7, 2, self.norm, "relu")(l, train)
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")
        for strides, feats in ((1, w), (2, 2 * w)):  # stages 1 and 2, two blocks each
            x = BasicBlock(feats, strides, self.norm)(x, train)
            x = BasicBlock(feats, 1, self.norm)(x, train)
        if taps is not None:
            n, h, wd, _ = x.shape
            column = sum(TapProjection(self.backbone_width, name=f"tap{i}")(t, h, wd, x.dtype)
                         for i, t in enumerate(taps))
            x = jnp.concatenate([x, column], -1)
        for feats in (2 * w, w, w // 2):  # three x2 upsamplings: 1/8 -> full size
            x = UpNormAct(feats, self.norm, "relu")(x, train)
        return OutputHead(self.out_channels, self.out_act, self.zero_output)(x)
