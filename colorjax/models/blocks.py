"""Building blocks shared by the colorizer networks."""

from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax.numpy as jnp
from jax import lax

NORMS = ("batch", "group", "instance", "none")
ACTIVATIONS = ("relu", "leaky_relu", "silu", "tanh", "none")


def activation(name: str, negative_slope: float = 0.2) -> Callable:
    """Activation by name; LeakyReLU(0.2) is the pix2pix / original-project default."""
    if name == "relu":
        return nn.relu
    if name == "leaky_relu":
        return lambda x: nn.leaky_relu(x, negative_slope)
    if name == "silu":
        return nn.silu
    if name == "tanh":
        return jnp.tanh
    if name == "none":
        return lambda x: x
    raise ValueError(f"unknown activation {name!r}; allowed: {ACTIVATIONS}")


class Norm(nn.Module):
    """Normalization by name. BatchNorm statistics are taken over the whole (global) batch:
    under `jax.jit` with a batch sharded over devices, XLA reduces across devices."""

    kind: str = "batch"
    groups: int = 8
    momentum: float = 0.9

    @nn.compact
    def __call__(self, x, train: bool):
        if self.kind == "batch":
            return nn.BatchNorm(use_running_average=not train, momentum=self.momentum)(x)
        if self.kind == "group":
            return nn.GroupNorm(num_groups=_groups_for(x.shape[-1], self.groups))(x)
        if self.kind == "instance":
            return nn.InstanceNorm()(x)
        if self.kind == "none":
            return x
        raise ValueError(f"unknown norm {self.kind!r}; allowed: {NORMS}")


def _groups_for(channels: int, groups: int) -> int:
    """Largest divisor of `channels` not above `groups` (GroupNorm needs an even split)."""
    g = min(groups, channels)
    while channels % g:
        g -= 1
    return g


class ConvNormAct(nn.Module):
    """Conv -> Norm -> activation."""

    features: int
    kernel: int = 3
    strides: int = 1
    norm: str = "batch"
    act: str = "leaky_relu"

    @nn.compact
    def __call__(self, x, train: bool):
        x = nn.Conv(self.features, (self.kernel, self.kernel), strides=self.strides,
                    padding="SAME", use_bias=self.norm == "none")(x)
        x = Norm(self.norm)(x, train)
        return activation(self.act)(x)


def conv_transpose_4x4_s2(x, kernel):
    """`lax.conv_transpose(x, kernel, (2, 2), "SAME")` for a 4x4 kernel (HWIO), computed as
    four 2x2 convolutions, one per output phase, interleaved (a sub-pixel convolution).

    Exactly the same function, with the same FLOPs. Why: XLA:CPU takes a slow path for the
    kernel gradient of a transposed convolution (25x PyTorch's at 16x16x128->64), while
    ordinary convolutions and their gradients are fast.

    Along each axis the transposed conv pads the 2x-dilated input by 2 on both sides, so
    output 2m reads inputs m-1, m with taps 0, 2 and output 2m+1 reads m, m+1 with taps 1, 3.
    """
    n, h, w, _ = x.shape
    phases = []
    for py in (0, 1):
        row = []
        for px in (0, 1):
            pad = ((1 - py, py), (1 - px, px))  # even phase looks back one input, odd ahead
            row.append(lax.conv_general_dilated(
                x, kernel[py::2, px::2], (1, 1), pad,
                dimension_numbers=("NHWC", "HWIO", "NHWC")))
        phases.append(jnp.stack(row, axis=3))  # (n, h, w, px, c)
    y = jnp.stack(phases, axis=2)  # (n, h, py, w, px, c)
    return y.reshape(n, 2 * h, 2 * w, kernel.shape[-1])


class ConvTranspose4x4(nn.Module):
    """`nn.ConvTranspose(features, (4, 4), strides=(2, 2), padding="SAME")`: the same
    parameters (names, shapes, initialization) and outputs, with fast CPU gradients."""

    features: int
    use_bias: bool = True

    @nn.compact
    def __call__(self, x):
        kernel = self.param("kernel", nn.initializers.lecun_normal(),
                            (4, 4, x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,)) \
            if self.use_bias else None
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias)
        y = conv_transpose_4x4_s2(x, kernel)
        return y if bias is None else y + bias


class UpNormAct(nn.Module):
    """x2 upsampling: 4x4 stride-2 transposed conv -> Norm -> activation (every decoder's)."""

    features: int
    norm: str = "batch"
    act: str = "leaky_relu"

    @nn.compact
    def __call__(self, x, train: bool):
        # Named as nn.ConvTranspose was, so checkpoints and exports from before still load.
        x = ConvTranspose4x4(self.features, use_bias=self.norm == "none",
                             name="ConvTranspose_0")(x)
        return activation(self.act)(Norm(self.norm)(x, train))


class OutputHead(nn.Module):
    """1x1 conv to the output channels; tanh keeps ab inside the network range [-1, 1]."""

    channels: int = 2
    act: str = "tanh"

    @nn.compact
    def __call__(self, x):
        return activation(self.act)(nn.Conv(self.channels, (1, 1))(x))
