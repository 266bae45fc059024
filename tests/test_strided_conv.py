"""blocks.Conv: nn.Conv with a space-to-depth input gradient for stride-2 convolutions (and
1x1 stride-1 convs as a matmul).

It must be nn.Conv exactly: the same parameter tree and initial values (checkpoints load),
the same outputs, the same first and second derivatives (WGAN-GP differentiates the
discriminator's input gradient again), at odd and even sizes, for every padding in use.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from colorjax.models import blocks

CASES = [  # kernel, height, padding
    (4, 16, "SAME"), (4, 15, "SAME"), (4, 15, ((1, 1), (1, 1))), (4, 16, ((1, 1), (1, 1))),
    (3, 16, "SAME"), (3, 17, "SAME"), (1, 9, "SAME"), (1, 8, "SAME"), (3, 12, "VALID"),
    (4, 10, ((0, 2), (1, 0))),
]


def _pair(kernel, padding, use_bias=True):
    kw = dict(strides=2, padding=padding, use_bias=use_bias)
    return nn.Conv(5, (kernel, kernel), **kw), blocks.Conv(5, (kernel, kernel), **kw)


@pytest.mark.slow
@pytest.mark.parametrize("kernel,height,padding", CASES)
def test_same_parameters_outputs_and_gradients_as_nn_conv(kernel, height, padding):
    x = jax.random.normal(jax.random.key(0), (2, height, height + 1, 3))  # H != W
    ref, fast = _pair(kernel, padding)
    p_ref, p_fast = ref.init(jax.random.key(1), x), fast.init(jax.random.key(1), x)
    assert jax.tree.structure(p_ref) == jax.tree.structure(p_fast)
    for a, b in zip(jax.tree.leaves(p_ref), jax.tree.leaves(p_fast)):
        np.testing.assert_array_equal(a, b)
    p = jax.tree.map(lambda v: v + 0.1, p_ref)  # a nonzero bias too
    np.testing.assert_allclose(fast.apply(p, x), ref.apply(p, x), atol=1e-5)

    loss = lambda m: lambda p, x: jnp.sum(jnp.sin(3 * m.apply(p, x)))  # noqa: E731
    g_ref = jax.grad(loss(ref), (0, 1))(p, x)
    g_fast = jax.grad(loss(fast), (0, 1))(p, x)
    for a, b in zip(jax.tree.leaves(g_ref), jax.tree.leaves(g_fast)):
        np.testing.assert_allclose(b, a, atol=2e-5)


@pytest.mark.slow
@pytest.mark.parametrize("kernel,height,padding", [CASES[0], CASES[2], CASES[5]])
def test_second_derivatives_match_for_a_gradient_penalty(kernel, height, padding):
    x = jax.random.normal(jax.random.key(0), (2, height, height, 3))
    ref, fast = _pair(kernel, padding, use_bias=False)
    p = ref.init(jax.random.key(1), x)

    def penalty(m):
        def f(p, x):
            grad_x = jax.grad(lambda v: jnp.sum(jnp.tanh(m.apply(p, v))))(x)
            return jnp.sum((jnp.sqrt(jnp.sum(grad_x ** 2, axis=(1, 2, 3))) - 1.0) ** 2)
        return f
    h_ref = jax.grad(penalty(ref), (0, 1))(p, x)
    h_fast = jax.grad(penalty(fast), (0, 1))(p, x)
    for a, b in zip(jax.tree.leaves(h_ref), jax.tree.leaves(h_fast)):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)


def test_other_convolutions_are_nn_convs_own():
    """Stride 1 (and anything else) takes nn.Conv's path unchanged, under the same name."""
    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = blocks.Conv(4, (3, 3))(x)
            x = blocks.Conv(4, (4, 4), strides=2)(x)
            return nn.Conv(4, (3, 3))(x)
    x = jnp.ones((1, 8, 8, 2))
    names = sorted(Net().init(jax.random.key(0), x)["params"])
    assert names == ["Conv_0", "Conv_1", "Conv_2"]


@pytest.mark.slow
def test_the_unet_keeps_its_parameter_names():
    from colorjax.models.unet import UNet
    x = jnp.ones((1, 16, 16, 1))
    params = UNet(features=(4, 8)).init(jax.random.key(0), x, train=False)["params"]
    assert params["ConvNormAct_0"]["Conv_0"]["kernel"].shape == (4, 4, 4, 4)


@pytest.mark.parametrize("padding,use_bias", [("SAME", True), ("VALID", False),
                                              (((0, 0), (0, 0)), True)])
def test_pointwise_conv_is_nn_conv_as_a_matmul(padding, use_bias):
    """1x1 stride-1 convs are computed as a matmul over channels: still nn.Conv exactly."""
    x = jax.random.normal(jax.random.key(0), (2, 5, 6, 7))
    kw = dict(padding=padding, use_bias=use_bias)
    ref, fast = nn.Conv(4, (1, 1), **kw), blocks.Conv(4, (1, 1), **kw)
    assert fast._is_pointwise(x)  # the matmul path, not nn.Conv's own
    p_ref, p_fast = ref.init(jax.random.key(1), x), fast.init(jax.random.key(1), x)
    assert jax.tree.structure(p_ref) == jax.tree.structure(p_fast)
    for a, b in zip(jax.tree.leaves(p_ref), jax.tree.leaves(p_fast)):
        np.testing.assert_array_equal(a, b)
    p = jax.tree.map(lambda v: v + 0.1, p_ref)
    np.testing.assert_allclose(fast.apply(p, x), ref.apply(p, x), atol=1e-5)
    loss = lambda m: lambda p, x: jnp.sum(jnp.sin(3 * m.apply(p, x)))  # noqa: E731
    for a, b in zip(jax.tree.leaves(jax.grad(loss(ref), (0, 1))(p, x)),
                    jax.tree.leaves(jax.grad(loss(fast), (0, 1))(p, x))):
        np.testing.assert_allclose(b, a, atol=2e-5)
    assert not blocks.Conv(4, (1, 1), padding=((1, 1), (0, 0)))._is_pointwise(x)
    # Padding as nn.Conv takes it: an int, one int a dimension, (low, high) pairs.
    for padding, pointwise in ((0, True), ((0, 0), True), (1, False), ((0, 1), False)):
        assert blocks.Conv(4, (1, 1), padding=padding)._is_pointwise(x) == pointwise, padding


DEPTHWISE_CASES = [  # kernel, stride, height, padding
    (3, 1, 9, "SAME"), (3, 2, 9, "SAME"), (5, 2, 12, "SAME"), (5, 1, 4, ((2, 2), (2, 2))),
    (7, 1, 10, ((3, 3), (3, 3))), (3, 2, 8, "VALID"), (5, 1, 1, "SAME"), (3, 2, 2, "SAME"),
    (4, 2, 7, ((1, 2), (0, 1))), (3, 1, 5, 1), (3, 1, 5, (0, 2)),
]


@pytest.mark.slow
@pytest.mark.parametrize("kernel,stride,height,padding", DEPTHWISE_CASES)
@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the shifted-taps form is CPU's")
def test_depthwise_conv_is_nn_conv_as_shifted_taps(kernel, stride, height, padding):
    """One filter per channel (EfficientNet's, ConvNeXt's): the shifted-taps form, still
    nn.Conv exactly (parameters, outputs, gradients), also where taps see only padding."""
    c = 6
    x = jax.random.normal(jax.random.key(0), (2, height, height + 1, c))  # H != W
    kw = dict(strides=stride, padding=padding, feature_group_count=c)
    ref, fast = nn.Conv(c, (kernel, kernel), **kw), blocks.Conv(c, (kernel, kernel), **kw)
    assert fast._is_depthwise(x)
    p_ref, p_fast = ref.init(jax.random.key(1), x), fast.init(jax.random.key(1), x)
    assert jax.tree.structure(p_ref) == jax.tree.structure(p_fast)
    for a, b in zip(jax.tree.leaves(p_ref), jax.tree.leaves(p_fast)):
        np.testing.assert_array_equal(a, b)
    p = jax.tree.map(lambda v: v + 0.1, p_ref)
    np.testing.assert_allclose(fast.apply(p, x), ref.apply(p, x), atol=1e-5)
    loss = lambda m: lambda p, x: jnp.sum(jnp.sin(3 * m.apply(p, x)))  # noqa: E731
    for a, b in zip(jax.tree.leaves(jax.grad(loss(ref), (0, 1))(p, x)),
                    jax.tree.leaves(jax.grad(loss(fast), (0, 1))(p, x))):
        np.testing.assert_allclose(b, a, atol=5e-5)


def test_depthwise_bfloat16_sums_in_float32_and_other_groupings_are_nn_convs():
    x = jax.random.normal(jax.random.key(0), (1, 8, 8, 4))
    w = jax.random.normal(jax.random.key(1), (5, 5, 1, 4))
    pad = ((2, 2), (2, 2))
    want = jax.lax.conv_general_dilated(x, w, (1, 1), pad, feature_group_count=4,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))
    got = blocks.depthwise_conv(x.astype(jnp.bfloat16), w.astype(jnp.bfloat16), (1, 1), pad)
    assert got.dtype == jnp.bfloat16
    # bfloat16 inputs (8 bits of mantissa), float32 sums: within the inputs' rounding.
    np.testing.assert_allclose(got.astype(jnp.float32), want, rtol=0.05, atol=0.1)
    for conv in (blocks.Conv(8, (3, 3), feature_group_count=4),  # 2 filters a channel
                 blocks.Conv(4, (3, 3), feature_group_count=2),  # groups of 2 channels
                 blocks.Conv(4, (3, 3), feature_group_count=4, kernel_dilation=2),
                 blocks.Conv(4, (3, 3), feature_group_count=4, padding=((-1, 1), (1, 1))),
                 blocks.Conv(4, (3, 3), feature_group_count=4, padding="CIRCULAR")):
        assert not conv._is_depthwise(x)
