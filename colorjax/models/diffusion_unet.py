"""The denoising UNet of the diffusion colorizers (Ho et al. 2020; Palette, Saharia et al. 2022).

Inputs: the noisy ab x_t (N,H,W,2), the gray L (N,H,W,1) and the timestep t (N,). L is
concatenated with x_t at the input (Palette's conditioning); t enters every residual block
through a sinusoidal embedding and an MLP. Optionally, frozen backbone features of L
(`colorjax.models.backbone`) enter too: projected and added at the start of every encoder
level, and pooled into the time embedding. GroupNorm throughout (no batch statistics, so
sampling does not depend on the batch), optional self-attention at chosen levels.
"""

from __future__ import annotations

import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from colorjax.models.backbone import Hypercolumn, hypercolumn_at
from colorjax.models.blocks import Conv, GroupNorm, groups_for


def timestep_embedding(t: jax.Array, dim: int, max_period: float = 10_000.0) -> jax.Array:
    """Sinusoidal embedding (Vaswani et al. 2017, as in Ho et al. 2020): (N,) -> (N, dim)."""
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
    args = t.astype(jnp.float32)[:, None] * freqs[None, :]
    emb = jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)
    return jnp.pad(emb, ((0, 0), (0, dim % 2)))


def _group_norm(channels: int, groups: int = 32, act: str = "none") -> GroupNorm:
    """GroupNorm, then `act` (fused: see blocks.GroupNorm)."""
    return GroupNorm(num_groups=groups_for(channels, groups), act=act)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-Conv, + time embedding, GroupNorm-SiLU-Dropout-Conv, residual."""

    features: int
    dropout: float = 0.0
    groups: int = 32

    @nn.compact
    def __call__(self, x, temb, train: bool):
        h = nn.Conv(self.features, (3, 3))(_group_norm(x.shape[-1], self.groups, "silu")(x))
        h = h + nn.Dense(self.features)(nn.silu(temb))[:, None, None, :]
        h = _group_norm(self.features, self.groups, "silu")(h)
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
        # Zero-initialised last conv: each block starts as the identity (Ho et al.'s init).
        h = nn.Conv(self.features, (3, 3), kernel_init=nn.initializers.zeros)(h)
        if x.shape[-1] != self.features:
            x = Conv(self.features, (1, 1))(x)
        return x + h


class SelfAttention(nn.Module):
    """Multi-head self-attention over the H·W positions, residual, zero-initialised output."""

    num_heads: int = 4
    groups: int = 32

    @nn.compact
    def __call__(self, x):
        n, h, w, c = x.shape
        heads = math.gcd(self.num_heads, c)
        y = _group_norm(c, self.groups)(x).reshape(n, h * w, c)
        qkv = nn.Dense(3 * c)(y).reshape(n, h * w, 3, heads, c // heads)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        y = jax.nn.dot_product_attention(q, k, v).reshape(n, h * w, c)
        y = nn.Dense(c, kernel_init=nn.initializers.zeros)(y)
        return x + y.reshape(n, h, w, c)


class DiffusionUNet(nn.Module):
    """(x_t, L, t) -> ε or v, shaped like x_t. H and W must be multiples of
    `downsample_factor` = 2**(len(features)-1).

    `features` gives the width of each level (full resolution first); `attention_levels`
    the level indices (0 = full resolution) that get self-attention after each residual block.
    `backbone_width` > 0 takes backbone taps (`semantic`, see `colorjax.models.backbone`),
    projected to that many channels.
    """

    features: Sequence[int] = (64, 128, 256, 256)
    num_res_blocks: int = 2
    attention_levels: Sequence[int] = (2, 3)
    dropout: float = 0.1
    num_heads: int = 4
    groups: int = 32
    out_channels: int = 2
    backbone_width: int = 0

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.features) - 1)

    @nn.compact
    def __call__(self, x_t, l, t, train: bool = False, semantic=None):
        base = self.features[0]
        if (semantic is not None) != (self.backbone_width > 0):
            raise ValueError("DiffusionUNet: pass backbone taps (`semantic`) exactly when "
                             f"backbone_width > 0 (it is {self.backbone_width})")
        # ≥ 64 frequencies even for tiny widths; sin/cos in float32, then the compute dtype.
        temb = timestep_embedding(t, max(base, 64)).astype(x_t.dtype)
        temb = nn.Dense(4 * base)(nn.silu(nn.Dense(4 * base)(temb)))
        maps = None
        if semantic is not None:
            maps, pooled = Hypercolumn(self.backbone_width, self.groups, name="hypercolumn")(
                semantic, x_t.dtype)
            temb = temb + nn.Dense(4 * base, name="semantic_temb")(pooled)

        def add_semantic(h, level):
            """h + the hypercolumn at h's resolution (zero-initialised: starts as h)."""
            if maps is None:
                return h
            s = nn.silu(hypercolumn_at(maps, h.shape[1], h.shape[2]))
            return h + Conv(h.shape[-1], (1, 1), kernel_init=nn.initializers.zeros,
                            name=f"semantic_level{level}")(s)
        res = lambda f: ResBlock(f, self.dropout, self.groups)
        attn = lambda: SelfAttention(self.num_heads, self.groups)
        last = len(self.features) - 1

        h = nn.Conv(base, (3, 3))(jnp.concatenate([x_t, l.astype(x_t.dtype)], axis=-1))
        skips = [h]
        for level, feats in enumerate(self.features):
            h = add_semantic(h, level)
            for _ in range(self.num_res_blocks):
                h = res(feats)(h, temb, train)
                if level in self.attention_levels:
                    h = attn()(h)
                skips.append(h)
            if level != last:
                h = Conv(feats, (3, 3), strides=(2, 2))(h)  # learnt downsampling (fast grads)
                skips.append(h)

        h = res(self.features[-1])(h, temb, train)
        if self.attention_levels:  # the middle block attends whenever any level does
            h = attn()(h)
        h = res(self.features[-1])(h, temb, train)

        for level in reversed(range(len(self.features))):
            for _ in range(self.num_res_blocks + 1):
                h = res(self.features[level])(jnp.concatenate([h, skips.pop()], -1), temb, train)
                if level in self.attention_levels:
                    h = attn()(h)
            if level != 0:
                # Nearest x2 resize then a 3x3 conv, computed without the upsampled copy.
                h = Conv(h.shape[-1], (3, 3), upsample_nearest=True)(h)
        h = _group_norm(h.shape[-1], self.groups, "silu")(h)
        # Zero-initialised output: the untrained network predicts ε = 0 (x̂_0 = the mean).
        return nn.Conv(self.out_channels, (3, 3), kernel_init=nn.initializers.zeros)(h)
