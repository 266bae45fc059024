"""DeOldify's generators (jantic/DeOldify, MIT) as Flax networks, layer for layer as
`deoldify/unet.py` builds them on fastai v1 (`fastai/layers.py`, the copy bundled with
DeOldify), so that the published checkpoints convert one module to one Flax module
(`colorjax.convert.deoldify`):

* `DynamicUnetWide` (ColorizeStable_gen.pth, ColorizeVideo_gen.pth): a torchvision
  ResNet-101 body, `nf_factor` 2 (`generators.gen_inference_wide`);
* `DynamicUnetDeep` (ColorizeArtistic_gen.pth): a ResNet-34 body, `nf_factor` 1.5
  (`generators.gen_inference_deep`).

Both: the body (conv1 .. layer4) -> BatchNorm, ReLU -> two 3x3 conv/ReLU/BatchNorm ->
four U-Net blocks on the body's layer3, layer2, layer1 and stem-ReLU outputs (each: 1x1
conv, BatchNorm, ReLU, pixel shuffle x2 and the blur of Sugawara et al. 2018, then
concat with BatchNorm(skip), ReLU, 3x3 convs; self-attention (Zhang et al. 2018, SAGAN) in
the second block) -> pixel shuffle x2 -> concat the input -> a residual block -> 1x1 conv
-> sigmoid into (-3, 3) (`y_range`), an image in ImageNet-normalised RGB units.

Spectral and weight normalisation are folded into plain kernels by the converter (what
PyTorch computes in eval mode). Module names are the PyTorch state_dict prefixes with '_'
for '.' (`layers.0.4.0.conv1` is `layers_0_4_0_conv1`).
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from colorjax import color

# fastai's imagenet_stats (fastai/vision/data.py): DeOldify normalises input and output.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
Y_RANGE = (-3.0, 3.0)  # generators.py: y_range=(-3.0, 3.0)
BN_EPS, BN_MOMENTUM = 1e-5, 0.9  # torch.nn.BatchNorm2d's eps, momentum 0.1
RENDER_BASE = 16  # filters.py ColorizerFilter.render_base: size = render_factor * 16
HE_INIT = nn.initializers.he_normal()  # fastai's kaiming_normal_ (converted weights replace it)


@dataclasses.dataclass(frozen=True)
class Arch:
    """One DeOldify generator: its ResNet body and U-Net decoder."""

    depths: tuple[int, ...]  # torchvision ResNet blocks per stage
    bottleneck: bool  # Bottleneck (ResNet-50/101) or BasicBlock (ResNet-18/34)
    wide: bool  # DynamicUnetWide or DynamicUnetDeep
    nf_factor: float

    @property
    def stage_channels(self) -> tuple[int, ...]:
        e = 4 if self.bottleneck else 1
        return tuple(w * e for w in (64, 128, 256, 512))

    @property
    def skip_channels(self) -> tuple[int, ...]:
        """The hooked outputs, deepest first (unet.py `_get_sfs_idxs` on the body at
        256 px: layer3, layer2, layer1, the stem's ReLU)."""
        c = self.stage_channels
        return (c[2], c[1], c[0], 64)

    def blocks(self) -> list[dict]:
        """Each U-Net block's channels: up_in, shuf_out (pixel-shuffled), skip, convs
        [(in, out), ...] (the last one carries self-attention where `attention`)."""
        x, plan = self.stage_channels[-1], []
        n = len(self.skip_channels)
        for i, skip in enumerate(self.skip_channels):
            not_final = i != n - 1
            if self.wide:  # UnetBlockWide: n_out = nf (nf // 2 last), halves for up and x
                nf = int(512 * self.nf_factor)
                half = (nf if not_final else nf // 2) // 2
                shuf, convs = half, [(half + skip, half)]
            else:  # UnetBlockDeep: conv1, conv2 of int((ni or ni // 2) * nf_factor)
                shuf = x // 2
                ni = shuf + skip
                nf = int((ni if not_final else ni // 2) * self.nf_factor)
                convs = [(ni, nf), (nf, nf)]
            plan.append(dict(up_in=x, shuf=shuf, skip=skip, convs=convs,
                             attention=i == n - 3))  # sa = self_attention and i == n - 3
            x = convs[-1][1]
        return plan

    @property
    def head_channels(self) -> int:
        """Channels after the last pixel shuffle and the input concatenated (MergeLayer)."""
        return self.blocks()[-1]["convs"][-1][1] + 3


ARCHS = {
    "wide": Arch(depths=(3, 4, 23, 3), bottleneck=True, wide=True, nf_factor=2),  # ResNet-101
    "deep": Arch(depths=(3, 4, 6, 3), bottleneck=False, wide=False, nf_factor=1.5),  # ResNet-34
}


def _conv(features: int, kernel: int, name: str, *, stride: int = 1, bias: bool = False):
    """A PyTorch Conv2d with padding kernel // 2 (explicit: Flax's SAME differs at stride 2)."""
    p = kernel // 2
    return nn.Conv(features, (kernel, kernel), strides=(stride, stride),
                   padding=((p, p), (p, p)), use_bias=bias, kernel_init=HE_INIT, name=name)


def pixel_shuffle(x: jax.Array, r: int = 2) -> jax.Array:
    """torch.nn.PixelShuffle in NHWC: channel c * r * r + i * r + j -> pixel (i, j)."""
    n, h, w, c = x.shape
    x = x.reshape(n, h, w, c // (r * r), r, r).transpose(0, 1, 4, 2, 5, 3)
    return x.reshape(n, h * r, w * r, c // (r * r))


def blur(x: jax.Array) -> jax.Array:
    """ReplicationPad2d((1, 0, 1, 0)) then AvgPool2d(2, stride=1): the mean of each pixel
    and its up, left and up-left neighbours (edges replicated)."""
    p = jnp.pad(x, ((0, 0), (1, 0), (1, 0), (0, 0)), mode="edge")
    return 0.25 * (p[:, :-1, :-1] + p[:, :-1, 1:] + p[:, 1:, :-1] + p[:, 1:, 1:])


def nearest_indices(n_in: int, n_out: int) -> np.ndarray:
    """F.interpolate(mode='nearest')'s source indices: floor(dst * (in / out)) in float32."""
    scale = np.float32(n_in) / np.float32(n_out)
    return np.minimum(np.floor(np.arange(n_out, dtype=np.float32) * scale).astype(np.int64),
                      n_in - 1)


def resize_nearest(x: jax.Array, h: int, w: int) -> jax.Array:
    if x.shape[1:3] == (h, w):
        return x
    return x[:, nearest_indices(x.shape[1], h)][:, :, nearest_indices(x.shape[2], w)]


class SelfAttention(nn.Module):
    """fastai's SelfAttention: 1x1 query, key (C/8) and value (C) without bias,
    softmax over the query positions, gamma * attention + x."""

    @nn.compact
    def __call__(self, x):
        n, h, w, c = x.shape
        flat = x.reshape(n, h * w, c)
        f = nn.Dense(c // 8, use_bias=False, kernel_init=HE_INIT, name="query")(flat)
        g = nn.Dense(c // 8, use_bias=False, kernel_init=HE_INIT, name="key")(flat)
        v = nn.Dense(c, use_bias=False, kernel_init=HE_INIT, name="value")(flat)
        gamma = self.param("gamma", nn.initializers.zeros, (1,))
        beta = jax.nn.softmax(jnp.einsum("nic,njc->nij", f, g), axis=1)  # torch dim=1
        o = jnp.einsum("nij,nic->njc", beta, v)
        return (gamma.astype(x.dtype) * o + flat).reshape(n, h, w, c)


class DeOldify(nn.Module):
    """colorjax's L / 50 - 1 (N, H, W, 1), read as the gray level / 127.5 - 1, -> the
    authors' RGB (rgb=True: denormalised, ~[0, 1]) or its CIELAB ab / 110 (N, H, W, 2)."""

    arch: str = "wide"
    freeze_norm: bool = False
    downsample_factor: int = RENDER_BASE  # render sizes are multiples of 16

    def _bn(self, name: str, train: bool):
        return nn.BatchNorm(use_running_average=self.freeze_norm or not train,
                            momentum=BN_MOMENTUM, epsilon=BN_EPS, name=name)

    def _res_unit(self, x, name: str, planes: int, stride: int, train: bool, a: Arch):
        """torchvision's Bottleneck (stride on the 3x3) or BasicBlock."""
        e = 4 if a.bottleneck else 1
        if a.bottleneck:
            y = nn.relu(self._bn(f"{name}_bn1", train)(_conv(planes, 1, f"{name}_conv1")(x)))
            y = nn.relu(self._bn(f"{name}_bn2", train)(
                _conv(planes, 3, f"{name}_conv2", stride=stride)(y)))
            y = self._bn(f"{name}_bn3", train)(_conv(planes * e, 1, f"{name}_conv3")(y))
        else:
            y = nn.relu(self._bn(f"{name}_bn1", train)(
                _conv(planes, 3, f"{name}_conv1", stride=stride)(x)))
            y = self._bn(f"{name}_bn2", train)(_conv(planes, 3, f"{name}_conv2")(y))
        if stride != 1 or x.shape[-1] != planes * e:
            x = self._bn(f"{name}_downsample_1", train)(
                _conv(planes * e, 1, f"{name}_downsample_0", stride=stride)(x))
        return nn.relu(x + y)

    def _conv_layer(self, x, name: str, features: int, train: bool, attention=False):
        """custom_conv_layer with spectral norm and extra_bn: conv (no bias), ReLU, BN."""
        x = self._bn(f"{name}_2", train)(nn.relu(_conv(features, 3, f"{name}_0")(x)))
        return SelfAttention(name=f"{name}_3")(x) if attention else x

    def _shuffle(self, x, name: str, features: int, train: bool):
        """CustomPixelShuffle_ICNR: 1x1 conv, BN, ReLU, shuffle x2, blur (always: its
        `if self.blur` tests the AvgPool2d module, which is truthy)."""
        y = self._bn(f"{name}_conv_1", train)(_conv(features * 4, 1, f"{name}_conv_0")(x))
        return blur(pixel_shuffle(nn.relu(y)))

    @nn.compact
    def __call__(self, x, train: bool = False, rgb: bool = False):
        a = ARCHS[self.arch]
        mean, std = jnp.asarray(IMAGENET_MEAN, x.dtype), jnp.asarray(IMAGENET_STD, x.dtype)
        gray = (x[..., :1] + 1.0) * 0.5  # gray level / 255
        inp = (jnp.broadcast_to(gray, gray.shape[:-1] + (3,)) - mean) / std
        # The body: create_body(resnet) = children[:-2] (conv1, bn1, relu, maxpool, layer1-4).
        h = nn.relu(self._bn("layers_0_1", train)(_conv(64, 7, "layers_0_0", stride=2)(inp)))
        skips = [h]
        h = nn.max_pool(h, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        for s, (depth, width) in enumerate(zip(a.depths, (64, 128, 256, 512))):
            for b in range(depth):
                h = self._res_unit(h, f"layers_0_{4 + s}_{b}", width,
                                   2 if (b == 0 and s > 0) else 1, train, a)
            skips.append(h)
        skips = skips[-2::-1]  # layer3, layer2, layer1, stem
        c = a.stage_channels[-1]
        h = nn.relu(self._bn("layers_1", train)(h))
        h = self._conv_layer(h, "layers_3_0", 2 * c, train)
        h = self._conv_layer(h, "layers_3_1", c, train)
        for i, (plan, s) in enumerate(zip(a.blocks(), skips)):
            name = f"layers_{4 + i}"
            up = self._shuffle(h, f"{name}_shuf", plan["shuf"], train)
            up = resize_nearest(up, s.shape[1], s.shape[2])
            h = nn.relu(jnp.concatenate([up, self._bn(f"{name}_bn", train)(s)], -1))
            convs = ["conv"] if a.wide else ["conv1", "conv2"]
            for k, (cname, (_, cout)) in enumerate(zip(convs, plan["convs"])):
                h = self._conv_layer(h, f"{name}_{cname}", cout, train,
                                     attention=plan["attention"] and k == len(convs) - 1)
        # PixelShuffle_ICNR (fastai's: weight norm, bias, blur always), MergeLayer(dense).
        n = h.shape[-1]
        h = blur(pixel_shuffle(nn.relu(_conv(4 * n, 1, "layers_8_conv_0", bias=True)(h))))
        h = jnp.concatenate([h, inp], -1)
        # res_block(norm_type=Spectral): conv (bias), ReLU, twice, + its input.
        r = nn.relu(_conv(n + 3, 3, "layers_10_layers_0_0", bias=True)(h))
        r = nn.relu(_conv(n + 3, 3, "layers_10_layers_1_0", bias=True)(r))
        h = h + r
        out = _conv(3, 1, "layers_11_0", bias=True)(h)
        lo, hi = Y_RANGE
        out = jax.nn.sigmoid(out) * (hi - lo) + lo  # SigmoidRange
        out = out * std + mean  # pred_batch's denormalisation (the data's do_y=True)
        if rgb:
            return out
        return color.rgb_to_lab(jnp.clip(out, 0.0, 1.0))[..., 1:] / color.AB_SCALE
