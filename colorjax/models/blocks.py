"""Building blocks shared by the colorizer networks."""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
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
            return nn.GroupNorm(num_groups=groups_for(x.shape[-1], self.groups))(x)
        if self.kind == "instance":
            return nn.InstanceNorm()(x)
        if self.kind == "none":
            return x
        raise ValueError(f"unknown norm {self.kind!r}; allowed: {NORMS}")


@functools.partial(jax.checkpoint, static_argnums=(4, 5))
def _scale_shift_act(x, mean, mul, bias, act, dtype):
    """act(((x - mean) * mul + bias) as dtype), recomputed in the backward pass instead of
    kept (jax.checkpoint): the forward pass then writes one tensor where it wrote two."""
    return activation(act)(((x - mean) * mul + bias).astype(dtype))


class GroupNorm(nn.GroupNorm):
    """`nn.GroupNorm` (its fields, variables, statistics and output dtype), then the
    activation `act`, with the elementwise part recomputed in the backward pass
    (`_scale_shift_act`): 3% faster for the diffusion UNet's step on XLA:CPU
    (docs/benchmarks.md; the same done to BatchNorm in the UNet measured no gain).
    Its class name is `GroupNorm`, so modules auto-name it `GroupNorm_0`, ... as before and
    checkpoints keep loading. Only what the models use is supported: `num_groups`,
    `epsilon`, scale and bias, no mask."""

    act: str = "none"

    @nn.compact
    def __call__(self, x, mask=None):
        c = x.shape[-1]
        groups = self.num_groups
        if mask is not None or self.group_size is not None or not groups or c % groups \
                or not (self.use_bias and self.use_scale and self.use_fast_variance):
            raise ValueError(f"blocks.GroupNorm: {groups} groups must divide {c} channels; "
                             "group_size, mask and no scale/bias are not supported")
        xf = x.astype(jnp.promote_types(x.dtype, jnp.float32))
        g = xf.reshape(x.shape[:-1] + (groups, c // groups))
        axes = tuple(range(1, x.ndim - 1)) + (x.ndim,)  # all but batch and group
        mean = g.mean(axes)
        var = jnp.maximum(0.0, (g * g).mean(axes) - mean * mean)  # as flax's fast variance
        bshape = (x.shape[0],) + (1,) * (x.ndim - 2) + (c,)
        mean = jnp.repeat(mean, c // groups, axis=-1).reshape(bshape)
        var = jnp.repeat(var, c // groups, axis=-1).reshape(bshape)
        scale = self.param("scale", self.scale_init, (c,), self.param_dtype)
        bias = self.param("bias", self.bias_init, (c,), self.param_dtype)
        mul = lax.rsqrt(var + self.epsilon) * scale
        dtype = nn.dtypes.canonicalize_dtype(x, scale, bias, dtype=self.dtype)
        if self.act == "none":
            return ((x - mean) * mul + bias).astype(dtype)
        return _scale_shift_act(x, mean, mul, bias, self.act, dtype)


def groups_for(channels: int, groups: int) -> int:
    """Largest divisor of `channels` not above `groups` (GroupNorm needs an even split)."""
    g = min(groups, channels)
    while channels % g:
        g -= 1
    return g


_NHWC = ("NHWC", "HWIO", "NHWC")


def _conv_s2_as_space_to_depth(x, kernel, padding):
    """A stride-2 convolution (NHWC, HWIO, explicit padding) as space-to-depth followed by a
    stride-1 VALID convolution: each 2x2 block of the padded input becomes 4x the channels,
    and the kernel (zero-padded to even size) is regrouped the same way. Exactly the same
    function; its input gradient is an ordinary convolution plus a reshape."""
    n, h, w, c = x.shape
    kh, kw, ci, co = kernel.shape
    eh, ew = kh + kh % 2, kw + kw % 2
    kernel = jnp.pad(kernel, ((0, eh - kh), (0, ew - kw), (0, 0), (0, 0)))
    (pt, pb), (pl, pr) = padding
    oh, ow = (h + pt + pb - kh) // 2 + 1, (w + pl + pr - kw) // 2 + 1
    zh, zw = oh + eh // 2 - 1, ow + ew // 2 - 1  # blocks the VALID conv needs
    x = jnp.pad(x, ((0, 0), (pt, max(2 * zh - h - pt, 0)), (pl, max(2 * zw - w - pl, 0)),
                    (0, 0)))[:, :2 * zh, :2 * zw]
    z = x.reshape(n, zh, 2, zw, 2, c).transpose(0, 1, 3, 2, 4, 5).reshape(n, zh, zw, 4 * c)
    k = kernel.reshape(eh // 2, 2, ew // 2, 2, ci, co).transpose(0, 2, 1, 3, 4, 5)
    return lax.conv_general_dilated(z, k.reshape(eh // 2, ew // 2, 4 * ci, co), (1, 1),
                                    "VALID", dimension_numbers=_NHWC)


def _conv_s2_native(x, kernel, padding):
    return lax.conv_general_dilated(x, kernel, (2, 2), padding, dimension_numbers=_NHWC)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv_s2(x, kernel, padding):
    """`lax.conv_general_dilated(x, kernel, (2, 2), padding)` (NHWC, HWIO), with the input
    gradient taken through the space-to-depth form. Why: XLA:CPU computes a strided conv's
    input gradient as an input-dilated convolution on a slow path (measured in
    benchmarks/layer_grads.py), while the forward pass and the kernel gradient of the native
    form are fast. The backward rule is plain JAX, so it differentiates again (the WGAN-GP
    gradient penalty needs that)."""
    return _conv_s2_native(x, kernel, padding)


def _conv_s2_fwd(x, kernel, padding):
    return _conv_s2_native(x, kernel, padding), (x, kernel)


def _conv_s2_bwd(padding, residuals, g):
    x, kernel = residuals
    dkernel = jax.vjp(lambda k: _conv_s2_native(x, k, padding), kernel)[1](g)[0]
    dx = jax.vjp(lambda v: _conv_s2_as_space_to_depth(v, kernel, padding), x)[1](g)[0]
    return dx, dkernel


conv_s2.defvjp(_conv_s2_fwd, _conv_s2_bwd)


def depthwise_conv(x, kernel, strides, padding):
    """`lax.conv_general_dilated(x, kernel, strides, padding, feature_group_count=C)` (NHWC,
    kernel (kh, kw, 1, C)) as kh * kw shifted, strided slices of the padded input, each
    times its tap, summed in float32: one fused elementwise loop. Why: XLA:CPU runs grouped
    convolutions on a slow path, Eigen's and YNNPACK's alike; this form measured 14-35x
    faster forward and 3-10x faster with gradients at EfficientNet's depthwise shapes
    (docs/benchmarks.md, "Depthwise convolutions on CPU"). The same function, summed in
    another order; taps that read only padding (small feature maps) are left out."""
    n, h, w, c = x.shape
    kh, kw = kernel.shape[:2]
    sh, sw = strides
    xp = jnp.pad(x, ((0, 0), padding[0], padding[1], (0, 0)))
    oh, ow = max(0, (xp.shape[1] - kh) // sh + 1), max(0, (xp.shape[2] - kw) // sw + 1)
    acc = jnp.promote_types(x.dtype, jnp.float32)

    def reads_data(d, stride, out_size, before, size):  # else the tap sees only padding
        return any(before <= d + i * stride < before + size for i in range(out_size))

    rows = [dy for dy in range(kh) if reads_data(dy, sh, oh, padding[0][0], h)]
    cols = [dx for dx in range(kw) if reads_data(dx, sw, ow, padding[1][0], w)]
    out = jnp.zeros((n, oh, ow, c), acc)
    for dy in rows:
        for dx in cols:
            tap = lax.slice(xp, (0, dy, dx, 0), (n, dy + (oh - 1) * sh + 1,
                                                 dx + (ow - 1) * sw + 1, c), (1, sh, sw, 1))
            out = out + tap.astype(acc) * kernel[dy, dx, 0].astype(acc)
    return out.astype(jnp.result_type(x, kernel))


def _all_ones(v) -> bool:
    """A stride or dilation field (int, None or a sequence) that is 1 along every axis."""
    return v in (1, None) or not isinstance(v, int) and set(v) == {1}


class Conv(nn.Conv):
    """`nn.Conv` with fast CPU gradients for 2-D stride-2 convolutions (see `conv_s2`) and,
    on CPU, depthwise convolutions as shifted taps (`depthwise_conv`); every other case is
    `nn.Conv`'s own. Its class name is `Conv`, so modules auto-name it
    `Conv_0`, `Conv_1`, ... as before and checkpoints keep loading.

    `upsample_nearest=True` (3x3, stride 1, SAME only): the conv of the x2 nearest-upsampled
    input, computed at the input's resolution (`nearest_up_conv3x3`), same parameters.
    A 1x1 stride-1 conv is computed as a matmul over the channels: the same function, and
    XLA:CPU takes its gradients 1.3-1.6x faster in that form (benchmarks/layer_grads.py)."""

    upsample_nearest: bool = False

    @nn.compact
    def __call__(self, inputs):
        if self.upsample_nearest:
            return self._nearest_up_conv(inputs)
        if self._is_pointwise(inputs):
            return self._pointwise(inputs)
        if self._is_depthwise(inputs):
            inputs, kernel, bias = self._variables(inputs)
            padding = nn.linear.canonicalize_padding(self.padding, 2)
            if isinstance(padding, str):
                padding = lax.padtype_to_pads(inputs.shape[1:3], self.kernel_size,
                                              self._strides(), padding)
            y = depthwise_conv(inputs, kernel, self._strides(),
                               tuple(tuple(p) for p in padding))
            return y if bias is None else y + bias
        strides = self.strides if isinstance(self.strides, Sequence) else (self.strides,) * 2
        padding = nn.linear.canonicalize_padding(self.padding, 2)  # "SAME", pairs, ...
        if (inputs.ndim != 4 or len(self.kernel_size) != 2 or tuple(strides) != (2, 2)
                or self.feature_group_count != 1 or self.input_dilation not in (1, None)
                or self.kernel_dilation not in (1, None) or self.mask is not None
                or isinstance(padding, str) and padding not in ("SAME", "VALID")):
            return super().__call__(inputs)
        inputs, kernel, bias = self._variables(inputs)
        if isinstance(padding, str):  # explicit pairs: the custom VJP needs them static
            padding = lax.padtype_to_pads(inputs.shape[1:3], self.kernel_size, (2, 2), padding)
        y = conv_s2(inputs, kernel, tuple(tuple(p) for p in padding))
        return y if bias is None else y + bias

    def _strides(self) -> tuple[int, int]:
        return tuple(self.strides) if isinstance(self.strides, Sequence) \
            else (1 if self.strides is None else self.strides,) * 2

    def _variables(self, inputs):
        """nn.Conv's kernel and bias (same names, shapes, initializers), with the inputs,
        promoted to the compute dtype."""
        kernel = self.param("kernel", self.kernel_init,
                            (*self.kernel_size,
                             inputs.shape[-1] // self.feature_group_count, self.features),
                            self.param_dtype)
        bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype) \
            if self.use_bias else None
        return nn.dtypes.promote_dtype(inputs, kernel, bias, dtype=self.dtype)

    def _is_pointwise(self, inputs) -> bool:
        padding = self.padding
        # A 1x1 kernel pads nothing under "SAME"; explicit padding must be zero everywhere
        # (ints, (low, high) pairs: canonicalized as nn.Conv does).
        no_padding = (padding in ("SAME", "VALID") if isinstance(padding, str)
                      else all(p == 0 for pair in nn.linear.canonicalize_padding(padding, 2)
                               for p in pair))
        return (inputs.ndim == 4 and not isinstance(self.kernel_size, int)
                and tuple(self.kernel_size) == (1, 1) and _all_ones(self.strides)
                and _all_ones(self.input_dilation) and _all_ones(self.kernel_dilation)
                and no_padding
                and self.feature_group_count == 1 and self.mask is None)

    def _is_depthwise(self, inputs) -> bool:
        """One filter per channel (feature_group_count = in = out channels), 2-D, on CPU,
        "SAME", "VALID" or explicit padding that crops nothing."""
        if not (jax.default_backend() == "cpu" and inputs.ndim == 4
                and not isinstance(self.kernel_size, int) and len(self.kernel_size) == 2
                and self.feature_group_count == inputs.shape[-1] == self.features > 1
                and _all_ones(self.input_dilation) and _all_ones(self.kernel_dilation)
                and self.mask is None):
            return False
        if isinstance(self.padding, str):
            return self.padding in ("SAME", "VALID")
        padding = nn.linear.canonicalize_padding(self.padding, 2)
        return all(p >= 0 for pair in padding for p in pair)

    def _pointwise(self, inputs):
        inputs, kernel, bias = self._variables(inputs)
        y = lax.dot_general(inputs, kernel[0, 0], (((3,), (0,)), ((), ())),
                            precision=self.precision)
        return y if bias is None else y + bias

    def _nearest_up_conv(self, inputs):
        if (tuple(self.kernel_size) != (3, 3) or not _all_ones(self.strides)
                or self.padding != "SAME" or self.feature_group_count != 1
                or inputs.ndim != 4):
            raise ValueError("Conv(upsample_nearest=True) is a 3x3, stride-1, SAME conv of "
                             f"NHWC input; got kernel_size={self.kernel_size}, "
                             f"strides={self.strides}, padding={self.padding!r}")
        inputs, kernel, bias = self._variables(inputs)
        y = nearest_up_conv3x3(inputs, kernel)
        return y if bias is None else y + bias


class ConvNormAct(nn.Module):
    """Conv -> Norm -> activation."""

    features: int
    kernel: int = 3
    strides: int = 1
    norm: str = "batch"
    act: str = "leaky_relu"

    @nn.compact
    def __call__(self, x, train: bool):
        x = Conv(self.features, (self.kernel, self.kernel), strides=self.strides,
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


# Nearest x2 upsampling then a 3x3 SAME conv, along one axis: output 2m reads inputs m-1, m
# with taps (k0, k1 + k2), output 2m+1 reads m, m+1 with (k0 + k1, k2). Those are the phases
# of a 4-tap transposed conv (conv_transpose_4x4_s2's) whose kernel is this matrix times k.
_NEAREST_UP_TAPS = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 1], [0, 0, 1]], np.float32)


def nearest_up_conv3x3(x, kernel):
    """`conv3x3_SAME(nearest_resize_x2(x), kernel)` (NHWC, HWIO) computed at x's resolution
    as a sub-pixel convolution: 2.25x fewer FLOPs (four 2x2 kernels at H x W instead of one
    3x3 at 2H x 2W) and no upsampled copy of x. Exactly the same function."""
    taps = jnp.asarray(_NEAREST_UP_TAPS, kernel.dtype)
    return conv_transpose_4x4_s2(x, jnp.einsum("ai,bj,ijco->abco", taps, taps, kernel))


class ConvTranspose4x4(nn.Module):
    """`nn.ConvTranspose(features, (4, 4), strides=(2, 2), padding="SAME")`: the same
    parameters (names, shapes, initialization) and outputs, with fast CPU gradients."""

    features: int
    use_bias: bool = True
    dtype: Any = None  # the compute dtype (None: the inputs' and weights'), as nn.Conv's

    @nn.compact
    def __call__(self, x):
        kernel = self.param("kernel", nn.initializers.lecun_normal(),
                            (4, 4, x.shape[-1], self.features))
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,)) \
            if self.use_bias else None
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
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
    """1x1 conv to the output channels; tanh keeps ab inside the network range [-1, 1].

    `zero_init`: the conv starts at zero, so an untrained network predicts ab = 0 (gray)
    everywhere instead of noise it must first unlearn (the same parameters either way)."""

    channels: int = 2
    act: str = "tanh"
    zero_init: bool = False

    @nn.compact
    def __call__(self, x):
        init = {"kernel_init": nn.initializers.zeros} if self.zero_init else {}
        return activation(self.act)(Conv(self.channels, (1, 1), **init)(x))
