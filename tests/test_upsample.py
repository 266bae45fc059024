"""The x2 upsampling of every decoder (`UpNormAct`): the sub-pixel form computes exactly
what `nn.ConvTranspose(4x4, stride 2, SAME)` does, with the same parameters; likewise the
diffusion UNet's (`Conv(upsample_nearest=True)`) against a nearest x2 resize and a 3x3 conv."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from colorjax.models.blocks import Conv, ConvTranspose4x4, Norm, UpNormAct, activation


class OldUpNormAct(nn.Module):
    """UpNormAct as it was written before the sub-pixel form (what old checkpoints hold)."""

    features: int
    norm: str = "batch"

    @nn.compact
    def __call__(self, x, train: bool):
        x = nn.ConvTranspose(self.features, (4, 4), strides=(2, 2), padding="SAME",
                             use_bias=self.norm == "none")(x)
        return activation("leaky_relu")(Norm(self.norm)(x, train))


def _perturbed(params, seed):
    """Parameters that are not at their initial values (biases start at zero)."""
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return jax.tree.unflatten(tree, [v + 0.3 * jax.random.normal(k, v.shape)
                                     for v, k in zip(leaves, keys)])


def _assert_same_layer(ref, new, x, out_shape):
    """`new` has `ref`'s parameters (names, shapes, initial values), outputs and gradients
    (of the parameters and the input)."""
    p_ref, p_new = ref.init(jax.random.key(1), x), new.init(jax.random.key(1), x)
    # Same names, shapes and initial values: old checkpoints restore into the new module.
    assert jax.tree.structure(p_ref) == jax.tree.structure(p_new)
    for a, b in zip(jax.tree.leaves(p_ref), jax.tree.leaves(p_new)):
        np.testing.assert_array_equal(a, b)
    params = _perturbed(p_ref, 2)
    y_ref, y_new = ref.apply(params, x), new.apply(params, x)
    assert y_new.shape == y_ref.shape == out_shape
    np.testing.assert_allclose(y_new, y_ref, rtol=1e-5, atol=1e-5)

    target = jax.random.normal(jax.random.key(3), y_ref.shape)
    def loss(module):
        return lambda p, x: jnp.sum((module.apply(p, x) - target) ** 2)
    g_ref = jax.grad(loss(ref), argnums=(0, 1))(params, x)
    g_new = jax.grad(loss(new), argnums=(0, 1))(params, x)
    for a, b in zip(jax.tree.leaves(g_ref), jax.tree.leaves(g_new)):
        scale = float(jnp.max(jnp.abs(a)))
        np.testing.assert_allclose(b, a, atol=1e-5 * max(scale, 1.0))


@pytest.mark.slow
@pytest.mark.parametrize("h,w", [(8, 8), (7, 5), (1, 1), (4, 9)])
@pytest.mark.parametrize("use_bias", [True, False])
def test_forward_and_both_gradients_equal_conv_transpose(h, w, use_bias):
    x = jax.random.normal(jax.random.key(0), (2, h, w, 6))
    ref = nn.ConvTranspose(5, (4, 4), strides=(2, 2), padding="SAME", use_bias=use_bias)
    new = ConvTranspose4x4(5, use_bias=use_bias)
    _assert_same_layer(ref, new, x, (2, 2 * h, 2 * w, 5))


@pytest.mark.slow
def test_old_up_blocks_variables_load_into_the_new_one():
    x = jax.random.normal(jax.random.key(0), (4, 6, 6, 8))
    old, new = OldUpNormAct(4), UpNormAct(4)
    variables = old.init(jax.random.key(1), x, train=False)
    variables = {"params": _perturbed(variables["params"], 4),
                 "batch_stats": variables["batch_stats"]}
    assert jax.tree.structure(variables) == jax.tree.structure(
        new.init(jax.random.key(1), x, train=False))
    y_old, s_old = old.apply(variables, x, train=True, mutable=["batch_stats"])
    y_new, s_new = new.apply(variables, x, train=True, mutable=["batch_stats"])
    np.testing.assert_allclose(y_new, y_old, rtol=1e-5, atol=1e-5)
    for a, b in zip(jax.tree.leaves(s_old), jax.tree.leaves(s_new)):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)


def test_bfloat16_inputs_compute_in_bfloat16():
    x = jax.random.normal(jax.random.key(0), (1, 4, 4, 3)).astype(jnp.bfloat16)
    m = ConvTranspose4x4(2)
    params = jax.tree.map(lambda v: v.astype(jnp.bfloat16), m.init(jax.random.key(1), x))
    assert m.apply(params, x).dtype == jnp.bfloat16


class NearestResizeConv(nn.Module):
    """The diffusion UNet's upsampling as it was written before: nearest x2 resize, 3x3 conv."""

    features: int

    @nn.compact
    def __call__(self, x):
        n, h, w, c = x.shape
        return nn.Conv(self.features, (3, 3))(jax.image.resize(x, (n, 2 * h, 2 * w, c),
                                                                "nearest"))


class NearestUpConv(nn.Module):
    """The same written as the diffusion UNet now writes it."""

    features: int

    @nn.compact
    def __call__(self, x):
        return Conv(self.features, (3, 3), upsample_nearest=True)(x)


@pytest.mark.slow
@pytest.mark.parametrize("h,w", [(8, 8), (7, 5), (1, 1), (4, 9)])
def test_nearest_upsampling_conv_equals_resize_then_conv(h, w):
    x = jax.random.normal(jax.random.key(0), (2, h, w, 6))
    ref, new = NearestResizeConv(5), NearestUpConv(5)
    _assert_same_layer(ref, new, x, (2, 2 * h, 2 * w, 5))


def test_nearest_upsampling_conv_names_other_shapes():
    x = jnp.zeros((1, 4, 4, 3))
    with pytest.raises(ValueError, match="3x3, stride-1, SAME"):
        Conv(2, (4, 4), upsample_nearest=True).init(jax.random.key(0), x)
