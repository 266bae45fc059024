"""Networks: shapes, normalization choices, and that they can learn a fixed batch."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from colorjax.models.resnet import ResNetColorizer
from colorjax.models.unet import UNet


@pytest.mark.slow
@pytest.mark.parametrize("norm", ["batch", "group", "instance", "none"])
def test_unet_shapes_and_range(norm):
    model = UNet(features=(8, 16, 32), norm=norm)
    x = jax.random.uniform(jax.random.key(0), (2, 16, 24, 1), minval=-1, maxval=1)
    variables = model.init(jax.random.key(1), x)
    y = model.apply(variables, x)
    assert y.shape == (2, 16, 24, 2)
    assert float(jnp.max(jnp.abs(y))) <= 1.0
    assert model.downsample_factor == 4


@pytest.mark.slow
def test_resnet_shapes():
    model = ResNetColorizer(width=8)
    x = jnp.zeros((3, 32, 32, 1))
    variables = model.init(jax.random.key(0), x)
    assert model.apply(variables, x).shape == (3, 32, 32, 2)
    assert "batch_stats" in variables


def test_bad_norm_is_named():
    with pytest.raises(ValueError, match="allowed"):
        UNet(features=(8, 16), norm="layer").init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)))


@pytest.mark.slow
def test_batchnorm_train_mode_uses_batch_statistics():
    model = UNet(features=(8, 16), norm="batch")
    x = jax.random.normal(jax.random.key(0), (4, 8, 8, 1))
    variables = model.init(jax.random.key(1), x)
    y_train, updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
    y_eval = model.apply(variables, x, train=False)
    assert not np.allclose(np.asarray(y_train), np.asarray(y_eval))
    moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))),
                         updates["batch_stats"], variables["batch_stats"])
    assert max(jax.tree.leaves(moved)) > 0
