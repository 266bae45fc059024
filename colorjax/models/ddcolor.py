"""DDColor (Kang et al., "DDColor: Towards Photo-Realistic Image Colorization via Dual
Decoders", ICCV 2023) as Flax networks, module for module as the authors' PyTorch code
(piddnad/DDColor, Apache-2.0: `ddcolor/model.py`, `basicsr/archs/ddcolor_arch_utils/`)
defines it, so that their state_dicts convert one tensor to one parameter
(`colorjax.convert.ddcolor`):

* a ConvNeXt encoder (Liu et al. 2022; tiny: depths 3-3-9-3, dims 96-768; large:
  3-3-27-3, 192-1536) whose four stages are read after their extra LayerNorms `norm0..3`;
* the pixel decoder: three fastai-style `UnetBlockWide`s (pixel shuffle x2 with a blur,
  the skip through BatchNorm, a 3x3 conv) and a x4 pixel shuffle back to the input size;
* the colour decoder: `num_queries` learned colour queries refined by `dec_layers`
  (cross-attention, self-attention, FFN) layers over the decoder's three scales in turn,
  then one map per query: the dot product of its embedding with the full-size features;
* the refine net: a 1x1 conv from the maps and the normalised input to ab.

Names follow the PyTorch ones ('.' -> '_' within a module), so a parameter's path says which
tensor it came from. The authors' spectral normalisation is a reparameterisation of the
weights; a converted kernel is the weight PyTorch uses in eval mode (the converter divides
by the stored sigma estimate), and a network built here trains plain kernels.

Input: colorjax's L / 50 - 1; the network makes the gray RGB image of that L (the authors'
Lab with a = b = 0 -> RGB) and normalises it with ImageNet's mean and std, as their
`DDColor.forward` does. Output: ab / 110 (colorjax's network range); the authors' network
outputs Lab ab.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from colorjax import color
from colorjax.models.blocks import Conv as FastConv

# ddcolor/model.py's ImageEncoder (ConvNeXt-T and -L, Liu et al. 2022).
ENCODERS = {"convnext-t": ((3, 3, 9, 3), (96, 192, 384, 768)),
            "convnext-l": ((3, 3, 27, 3), (192, 384, 768, 1536))}
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # DDColor's `mean` / `std` buffers
IMAGENET_STD = (0.229, 0.224, 0.225)
NF = 512  # DDColor(nf=512): the pixel decoder's width (the last block: nf // 2)
HIDDEN = 256  # MultiScaleColorDecoder's hidden_dim (and color_embed_dim)
HEADS = 8  # its nheads
FFN = 2048  # its dim_feedforward
BN_EPS, BN_MOMENTUM = 1e-5, 0.9  # torch.nn.BatchNorm2d's (momentum 0.1)
LN_EPS = 1e-5  # torch.nn.LayerNorm's default (the transformer's norms)
CONVNEXT_LN_EPS = 1e-6  # ConvNeXt's LayerNorms


@dataclasses.dataclass(frozen=True)
class Arch:
    """What a DDColor variant is: its encoder and colour decoder's sizes. The published
    files all use num_queries 100, num_scales 3, dec_layers 9 (ddcolor/pipeline.py's
    build_ddcolor_model), with 2 output channels."""

    encoder: str = "convnext-l"
    num_queries: int = 100
    num_scales: int = 3
    dec_layers: int = 9

    @property
    def depths(self) -> tuple[int, ...]:
        return ENCODERS[self.encoder][0]

    @property
    def dims(self) -> tuple[int, ...]:
        return ENCODERS[self.encoder][1]


def _ln(name: str, eps: float = LN_EPS) -> nn.LayerNorm:
    """A LayerNorm over the last axis (a channels-first one in NHWC too), variance as
    PyTorch computes it (the mean of squared deviations)."""
    return nn.LayerNorm(epsilon=eps, use_fast_variance=False, name=name)


def _bn(name: str, train: bool, frozen: bool) -> nn.BatchNorm:
    return nn.BatchNorm(use_running_average=frozen or not train, momentum=BN_MOMENTUM,
                        epsilon=BN_EPS, name=name)


def _conv(features: int, kernel: int, name: str, *, stride: int = 1, bias: bool = True,
          groups: int = 1) -> nn.Conv:
    """PyTorch's Conv2d with padding (kernel - 1) // 2 (stride = kernel: no padding)."""
    pad = 0 if stride > 1 else (kernel - 1) // 2
    # Depthwise (ConvNeXt's 7x7): blocks.Conv's fast CPU form, the same parameters.
    conv = FastConv if groups > 1 else nn.Conv
    return conv(features, (kernel, kernel), strides=(stride, stride),
                padding=((pad, pad), (pad, pad)), use_bias=bias,
                feature_group_count=groups, name=name)


# --- ConvNeXt ----------------------------------------------------------------------------


class ConvNeXtBlock(nn.Module):
    """dwconv 7x7 -> LayerNorm -> Linear 4x -> GELU (exact) -> Linear -> x gamma, residual."""

    dim: int

    @nn.compact
    def __call__(self, x):
        y = _conv(self.dim, 7, "dwconv", groups=self.dim)(x)
        y = _ln("norm", CONVNEXT_LN_EPS)(y)
        y = nn.gelu(nn.Dense(4 * self.dim, name="pwconv1")(y), approximate=False)
        y = nn.Dense(self.dim, name="pwconv2")(y)
        gamma = self.param("gamma", nn.initializers.constant(1e-6), (self.dim,))
        return x + gamma * y


class ConvNeXt(nn.Module):
    """The four stages' features, each after its extra LayerNorm (`norm0`..`norm3`: the
    authors hook those; the stages go on from the un-normed features)."""

    depths: Sequence[int]
    dims: Sequence[int]

    @nn.compact
    def __call__(self, x):
        feats = []
        for i, (depth, dim) in enumerate(zip(self.depths, self.dims)):
            if i == 0:  # the stem: 4x4 stride 4, then LayerNorm
                x = _conv(dim, 4, "downsample_layers_0_0", stride=4)(x)
                x = _ln("downsample_layers_0_1", CONVNEXT_LN_EPS)(x)
            else:  # LayerNorm, then 2x2 stride 2
                x = _ln(f"downsample_layers_{i}_0", CONVNEXT_LN_EPS)(x)
                x = _conv(dim, 2, f"downsample_layers_{i}_1", stride=2)(x)
            for j in range(depth):
                x = ConvNeXtBlock(dim, name=f"stages_{i}_{j}")(x)
            feats.append(_ln(f"norm{i}", CONVNEXT_LN_EPS)(x))
        return feats


# --- the pixel decoder (fastai's UNet pieces, ddcolor_arch_utils/unet.py) ----------------


def pixel_shuffle(x, r: int):
    """torch.nn.PixelShuffle(r) in NHWC: channel c * r * r + i * r + j -> (c, row i, col j)."""
    n, h, w, c = x.shape
    x = x.reshape(n, h, w, c // (r * r), r, r).transpose(0, 1, 4, 2, 5, 3)
    return x.reshape(n, h * r, w * r, c // (r * r))


def blur(x):
    """ReplicationPad2d((1, 0, 1, 0)) then AvgPool2d(2, stride=1): the mean of each pixel
    and its upper and left neighbours (Aitken et al. 2017's checkerboard-free shuffle)."""
    x = jnp.pad(x, ((0, 0), (1, 0), (1, 0), (0, 0)), mode="edge")
    return 0.25 * (x[:, :-1, :-1] + x[:, 1:, :-1] + x[:, :-1, 1:] + x[:, 1:, 1:])


class PixelShuffleICNR(nn.Module):
    """CustomPixelShuffle_ICNR: 1x1 conv to features * scale^2 (with BatchNorm `conv_1` and
    no bias when `extra_bn`), ReLU, pixel shuffle, blur."""

    features: int
    scale: int = 2
    extra_bn: bool = False
    freeze_norm: bool = False

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = _conv(self.features * self.scale ** 2, 1, "conv_0", bias=not self.extra_bn)(x)
        if self.extra_bn:
            x = _bn("conv_1", train, self.freeze_norm)(x)
        return blur(pixel_shuffle(nn.relu(x), self.scale))


class UnetBlockWide(nn.Module):
    """x2 up (PixelShuffleICNR), concat with the BatchNormed skip, ReLU, 3x3 conv, ReLU,
    BatchNorm."""

    features: int
    freeze_norm: bool = False

    @nn.compact
    def __call__(self, up_in, skip, train: bool = False):
        fz = self.freeze_norm
        up = PixelShuffleICNR(self.features, extra_bn=True, freeze_norm=fz, name="shuf")(
            up_in, train)
        x = nn.relu(jnp.concatenate([up, _bn("bn", train, fz)(skip)], axis=-1))
        x = nn.relu(_conv(self.features, 3, "conv_0", bias=False)(x))
        return _bn("conv_2", train, fz)(x)


# --- the colour decoder (ddcolor/model.py's MultiScaleColorDecoder) ----------------------


def sine_position(h: int, w: int, features: int = HIDDEN // 2,
                  temperature: float = 10000.0) -> jax.Array:
    """DETR's PositionEmbeddingSine(normalize=True) for an (h, w) map, (h * w, 2 * features):
    y's sin/cos pairs then x's, the coordinates 1..n scaled to (0, 2 pi]. Computed by the
    program, not held in it: as a NumPy table the 512 px model compiled 22 MB of constants."""
    eps, scale = 1e-6, 2 * np.pi
    dim_t = jnp.asarray(temperature ** (2 * (np.arange(features) // 2) / features),
                        jnp.float32)
    even = (jnp.arange(features) % 2) == 0

    def embed(n):  # (n, features): sin of even, cos of odd indices
        t = jnp.arange(1, n + 1, dtype=jnp.float32) / (n + eps) * scale
        a = t[:, None] / dim_t
        return jnp.where(even, jnp.sin(a), jnp.cos(a))

    py, px = embed(h), embed(w)
    pos = jnp.concatenate([jnp.broadcast_to(py[:, None], (h, w, features)),
                           jnp.broadcast_to(px[None], (h, w, features))], -1)
    return pos.reshape(h * w, 2 * features)


class MultiheadAttention(nn.Module):
    """torch.nn.MultiheadAttention (batch first here): the packed `in_proj` (D, 3D) for q,
    k, v; q scaled by head_dim^-1/2; `out_proj`."""

    dim: int = HIDDEN
    heads: int = HEADS

    @nn.compact
    def __call__(self, q, k, v):
        d, h = self.dim, self.heads
        w = self.param("in_proj_kernel", nn.initializers.xavier_uniform(), (d, 3 * d))
        b = self.param("in_proj_bias", nn.initializers.zeros, (3 * d,))
        q, k, v = (t @ w[:, i * d:(i + 1) * d] + b[i * d:(i + 1) * d]
                   for i, t in enumerate((q, k, v)))
        split = lambda t: t.reshape(t.shape[0], t.shape[1], h, d // h)
        q, k, v = split(q) * (d // h) ** -0.5, split(k), split(v)
        attn = jax.nn.softmax(jnp.einsum("bqhc,bkhc->bhqk", q, k), axis=-1)
        out = jnp.einsum("bhqk,bkhc->bqhc", attn, v).reshape(q.shape[0], q.shape[1], d)
        return nn.Dense(d, name="out_proj")(out)


class CrossAttentionLayer(nn.Module):
    """Post-norm: norm(queries + attn(queries + query_pos, memory + pos, memory))."""

    @nn.compact
    def __call__(self, tgt, memory, pos, query_pos):
        out = MultiheadAttention(name="multihead_attn")(tgt + query_pos, memory + pos, memory)
        return _ln("norm")(tgt + out)


class SelfAttentionLayer(nn.Module):
    """Post-norm: norm(queries + attn(q = k = queries + query_pos, v = queries))."""

    @nn.compact
    def __call__(self, tgt, query_pos):
        qk = tgt + query_pos
        return _ln("norm")(tgt + MultiheadAttention(name="self_attn")(qk, qk, tgt))


class FFNLayer(nn.Module):
    """Post-norm: norm(x + linear2(relu(linear1(x))))."""

    @nn.compact
    def __call__(self, x):
        y = nn.Dense(HIDDEN, name="linear2")(nn.relu(nn.Dense(FFN, name="linear1")(x)))
        return _ln("norm")(x + y)


class MultiScaleColorDecoder(nn.Module):
    """Colour queries over the scales in turn (layer i reads scale i % num_scales), then
    one map per query: color_embed(queries) . img_features."""

    num_queries: int
    num_scales: int
    dec_layers: int

    @nn.compact
    def __call__(self, scales, img_features):
        n = img_features.shape[0]
        level = nn.Embed(self.num_scales, HIDDEN, name="level_embed").embedding
        src, pos = [], []
        for i, f in enumerate(scales):
            _, h, w, _ = f.shape
            proj = _conv(HIDDEN, 1, f"input_proj_{i}")(f).reshape(n, h * w, HIDDEN)
            src.append(proj + level[i])
            pos.append(sine_position(h, w).astype(f.dtype)[None])
        query_pos = nn.Embed(self.num_queries, HIDDEN, name="query_embed").embedding[None]
        out = nn.Embed(self.num_queries, HIDDEN, name="query_feat").embedding[None]
        out = jnp.broadcast_to(out, (n,) + out.shape[1:]).astype(img_features.dtype)
        for i in range(self.dec_layers):
            s = i % self.num_scales
            out = CrossAttentionLayer(name=f"transformer_cross_attention_layers_{i}")(
                out, src[s], pos[s], query_pos)
            out = SelfAttentionLayer(name=f"transformer_self_attention_layers_{i}")(
                out, query_pos)
            out = FFNLayer(name=f"transformer_ffn_layers_{i}")(out)
        out = _ln("decoder_norm")(out)
        for k in range(3):  # MLP(hidden, hidden, color_embed_dim, 3)
            out = nn.Dense(HIDDEN, name=f"color_embed_layers_{k}")(out)
            out = nn.relu(out) if k < 2 else out
        return jnp.einsum("bqc,bhwc->bhwq", out, img_features)


class Decoder(nn.Module):
    """The pixel decoder (three UnetBlockWide, then the x4 shuffle) feeding the colour
    decoder its three scales (1/16, 1/8, 1/4) and the full-size features."""

    arch: Arch
    freeze_norm: bool = False

    @nn.compact
    def __call__(self, feats, train: bool = False):
        fz = self.freeze_norm
        out0 = UnetBlockWide(NF, fz, name="layers_0")(feats[3], feats[2], train)
        out1 = UnetBlockWide(NF, fz, name="layers_1")(out0, feats[1], train)
        out2 = UnetBlockWide(NF // 2, fz, name="layers_2")(out1, feats[0], train)
        out3 = PixelShuffleICNR(NF // 2, scale=4, freeze_norm=fz, name="last_shuf")(out2, train)
        a = self.arch
        return MultiScaleColorDecoder(a.num_queries, a.num_scales, a.dec_layers,
                                      name="color_decoder")([out0, out1, out2], out3)


class DDColor(nn.Module):
    """L / 50 - 1 (N, H, W, 1), H and W multiples of 32 -> ab / 110 (N, H, W, 2)."""

    arch: Arch = Arch()
    freeze_norm: bool = False
    downsample_factor: int = 32  # ConvNeXt: 4 x 2 x 2 x 2

    @nn.compact
    def __call__(self, x, train: bool = False):
        # Lab (L, 0, 0) -> RGB: colorjax's conversion; OpenCV's, which the authors use,
        # differs from it by < 1e-4 on this gray axis.
        rgb = color.gray_rgb(x[..., :1])
        x = (rgb - jnp.asarray(IMAGENET_MEAN, rgb.dtype)) / jnp.asarray(IMAGENET_STD, rgb.dtype)
        a = self.arch
        feats = ConvNeXt(a.depths, a.dims, name="encoder")(x)
        maps = Decoder(a, self.freeze_norm, name="decoder")(feats, train)
        ab = _conv(2, 1, "refine_net_0_0")(jnp.concatenate([maps, x], axis=-1))
        return ab / color.AB_SCALE
