"""Zhang et al.'s published colorizers as Flax networks, layer for layer as their PyTorch
release (richzhang/colorization, BSD-2, `colorizers/eccv16.py` and `colorizers/siggraph17.py`)
defines them, so that the released state_dicts convert one tensor to one parameter
(`colorjax.convert`):

* `ECCV16` ("Colorful Image Colorization", ECCV 2016): a VGG-style network over L; three
  stride-2 convolutions, dilated convolutions in blocks 5 and 6, one 4x4 transposed
  convolution back to 1/4 of the input, then one logit per ab bin (313 in the release).
  The release decodes them by the mean of the softmax (a fixed 1x1 convolution whose
  weights are the bins' ab) and upsamples ab x4 bilinearly; that decoding lives in the
  objective (`colorjax.objectives.zhang`), which holds the bins.
* `SIGGRAPH17` ("Real-Time User-Guided Image Colorization with Learned Deep Priors",
  SIGGRAPH 2017): L, hint ab and a hint mask in, a UNet-like network with subsampling by
  striding (`x[::2, ::2]`), three transposed convolutions with skip connections, ab out
  through tanh.

Module names follow the PyTorch ones (`model3.4` is `model3_4`), so a parameter's path says
which tensor it came from. Both read colorjax's conditioning planes (L / 50 - 1 first, then
any hint planes, see `colorjax.objectives.base.Objective.conditioning`) and rescale L to the
authors' (L - 50) / 100 (`base_color.py`: l_cent 50, l_norm 100); ab is in network range,
ab / 110 (their ab_norm, colorjax's `AB_SCALE`). BatchNorm: PyTorch's epsilon 1e-5 and
momentum 0.1 (Flax's 0.9); `freeze_norm` keeps the running statistics in training too
(fine-tuning on small batches).
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

WIDTH = 64  # the release's width of the first block (then 2x, 4x, 8x)
NUM_BINS = 313  # the release's ab bins (its pts_in_hull.npy)
BN_EPS, BN_MOMENTUM = 1e-5, 0.9  # torch.nn.BatchNorm2d's eps and momentum 0.1
# He et al. 2015's initialisation for a network built here from nothing (converted weights
# replace it): ReLU layers keep their activations' scale through the 20-odd convolutions,
# also before BatchNorm's running statistics have caught up.
HE_INIT = nn.initializers.he_normal()


def authors_l(x: jax.Array) -> jax.Array:
    """Channel 0 from colorjax's L / 50 - 1 to the authors' (L - 50) / 100 (= half of it);
    hint planes (ab / 110 and the 0/1 mask) are already in their units."""
    return jnp.concatenate([x[..., :1] * 0.5, x[..., 1:]], axis=-1)


def _conv(features: int, name: str, *, stride: int = 1, dilation: int = 1,
          kernel: int = 3) -> nn.Conv:
    """A PyTorch-padded convolution: padding = dilation for 3x3 (their `padding=1` / `2`),
    0 for 1x1; explicit, since Flax's SAME pads a stride-2 conv (0, 1), PyTorch (1, 1)."""
    pad = dilation * (kernel // 2)
    return nn.Conv(features, (kernel, kernel), strides=(stride, stride),
                   padding=((pad, pad), (pad, pad)), kernel_dilation=(dilation, dilation),
                   kernel_init=HE_INIT, name=name)


class UpConv(nn.Module):
    """PyTorch's `ConvTranspose2d(kernel_size=4, stride=2, padding=1)`: x2 the size.

    Computed as a convolution over the input dilated by 2 (zeros between pixels), padded by
    kernel - 1 - padding = 2. `kernel` (4, 4, in, out) is in that direct convolution's
    layout: PyTorch's weight (in, out, 4, 4) flipped in both spatial axes (the converter
    does it)."""

    features: int

    @nn.compact
    def __call__(self, x):
        kernel = self.param("kernel", HE_INIT,
                            (4, 4, x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        y = lax.conv_general_dilated(x, kernel.astype(x.dtype), (1, 1), ((2, 2), (2, 2)),
                                     lhs_dilation=(2, 2),
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return y + bias.astype(x.dtype)


def _norm(name: str, train: bool, frozen: bool) -> nn.BatchNorm:
    return nn.BatchNorm(use_running_average=frozen or not train, momentum=BN_MOMENTUM,
                        epsilon=BN_EPS, name=name)


def _block(x, name: str, widths: Sequence[int], train: bool, frozen: bool, *,
           last_stride: int = 1, dilation: int = 1, first: int = 0):
    """conv, ReLU, ... conv, ReLU, BatchNorm: torch `Sequential` indices first, first+2, ...;
    the norm is the next index. The last conv has `last_stride` (ECCV16's subsampling)."""
    i = first
    for k, f in enumerate(widths):
        stride = last_stride if k == len(widths) - 1 else 1
        x = nn.relu(_conv(f, f"{name}_{i}", stride=stride, dilation=dilation)(x))
        i += 2
    return _norm(f"{name}_{i}", train, frozen)(x)


class ECCV16(nn.Module):
    """L (and any hint planes) -> per-bin logits (N, H/4, W/4, num_bins)."""

    width: int = WIDTH
    num_bins: int = NUM_BINS
    freeze_norm: bool = False
    downsample_factor: int = 8  # three stride-2 convolutions

    @nn.compact
    def __call__(self, x, train: bool = False):
        w, fz = self.width, self.freeze_norm
        x = authors_l(x)
        x = _block(x, "model1", [w, w], train, fz, last_stride=2)
        x = _block(x, "model2", [2 * w, 2 * w], train, fz, last_stride=2)
        x = _block(x, "model3", [4 * w] * 3, train, fz, last_stride=2)
        x = _block(x, "model4", [8 * w] * 3, train, fz)
        x = _block(x, "model5", [8 * w] * 3, train, fz, dilation=2)
        x = _block(x, "model6", [8 * w] * 3, train, fz, dilation=2)
        x = _block(x, "model7", [8 * w] * 3, train, fz)
        x = nn.relu(UpConv(4 * w, name="model8_0")(x))
        x = nn.relu(_conv(4 * w, "model8_2")(x))
        x = nn.relu(_conv(4 * w, "model8_4")(x))
        return _conv(self.num_bins, "model8_6", kernel=1)(x)


class SIGGRAPH17(nn.Module):
    """concat(L, hint ab, mask) (and optionally more planes) -> ab / 110 (N, H, W, 2).

    The release also has `model_class` (a 1x1 conv to 529 classes from block 8), which its
    forward never calls; it is not part of this network (the converter checks and drops it).
    """

    width: int = WIDTH
    freeze_norm: bool = False
    downsample_factor: int = 8  # three x[::2, ::2] subsamplings

    @nn.compact
    def __call__(self, x, train: bool = False):
        w, fz = self.width, self.freeze_norm
        x = authors_l(x)
        conv1 = _block(x, "model1", [w, w], train, fz)
        conv2 = _block(conv1[:, ::2, ::2], "model2", [2 * w, 2 * w], train, fz)
        conv3 = _block(conv2[:, ::2, ::2], "model3", [4 * w] * 3, train, fz)
        conv4 = _block(conv3[:, ::2, ::2], "model4", [8 * w] * 3, train, fz)
        conv5 = _block(conv4, "model5", [8 * w] * 3, train, fz, dilation=2)
        conv6 = _block(conv5, "model6", [8 * w] * 3, train, fz, dilation=2)
        conv7 = _block(conv6, "model7", [8 * w] * 3, train, fz)
        up8 = UpConv(4 * w, name="model8up_0")(conv7) + _conv(4 * w, "model3short8_0")(conv3)
        conv8 = _block(nn.relu(up8), "model8", [4 * w] * 2, train, fz, first=1)
        up9 = UpConv(2 * w, name="model9up_0")(conv8) + _conv(2 * w, "model2short9_0")(conv2)
        conv9 = _block(nn.relu(up9), "model9", [2 * w], train, fz, first=1)
        up10 = UpConv(2 * w, name="model10up_0")(conv9) + _conv(2 * w, "model1short10_0")(conv1)
        conv10 = nn.leaky_relu(_conv(2 * w, "model10_1")(nn.relu(up10)), 0.2)
        return jnp.tanh(_conv(2, "model_out_0", kernel=1)(conv10))


def upsample_bilinear(x: jax.Array, factor: int) -> jax.Array:
    """(N, h, w, C) -> (N, h*factor, w*factor, C) as PyTorch's `nn.Upsample(scale_factor,
    mode='bilinear')` (align_corners=False: half-pixel centres, edges clamped). For
    upsampling, `jax.image.resize`'s linear kernel is exactly that (no antialiasing applies,
    and its weights outside the image renormalise to the clamped edge)."""
    n, h, w, c = x.shape
    return jax.image.resize(x, (n, h * factor, w * factor, c), method="linear")
