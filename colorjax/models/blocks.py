"""Building blocks shared by the colorizer networks."""

from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax.numpy as jnp

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


class UpNormAct(nn.Module):
    """x2 upsampling: 4x4 stride-2 transposed conv -> Norm -> activation (every decoder's)."""

    features: int
    norm: str = "batch"
    act: str = "leaky_relu"

    @nn.compact
    def __call__(self, x, train: bool):
        x = nn.ConvTranspose(self.features, (4, 4), strides=(2, 2), padding="SAME",
                             use_bias=self.norm == "none")(x)
        return activation(self.act)(Norm(self.norm)(x, train))


class OutputHead(nn.Module):
    """1x1 conv to the output channels; tanh keeps ab inside the network range [-1, 1]."""

    channels: int = 2
    act: str = "tanh"

    @nn.compact
    def __call__(self, x):
        return activation(self.act)(nn.Conv(self.channels, (1, 1))(x))
