"""Colour rebalancing (Zhang et al. 2016, eq. 4) of the regression loss."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from colorjax import color
from colorjax.training.validation import ConfigError, validate_config
from colorjax.objectives import make_objective
from colorjax.objectives.base import pixel_loss
from colorjax.objectives.rebalance import IN_GAMUT_BINS, rebalancing_weights
from conftest import STEADY_LR, fit_fixed_batch, photo_batch, tiny_config


def _two_colour_batch(share_red: float, size: int = 20):
    """ab (1, size, size, 2): gray everywhere but the first rows, saturated red there."""
    ab = np.zeros((1, size, size, 2), np.float32)
    rows = int(round(share_red * size))
    ab[:, :rows] = np.array([60.0, 40.0]) / color.AB_SCALE  # a red of C*ab ~ 72
    return jnp.asarray(ab), rows


def test_strength_zero_is_the_plain_loss():
    ab = photo_batch(2, 32)["ab"]
    np.testing.assert_allclose(np.asarray(rebalancing_weights(ab, 0.0)), 1.0, rtol=1e-6)


def test_rare_colours_weigh_more_and_the_weights_follow_the_formula():
    ab, rows = _two_colour_batch(0.1)
    w = np.asarray(rebalancing_weights(ab, 0.5))[0]
    w_red, w_gray = w[0, 0], w[-1, -1]
    assert np.all(w[:rows] == w_red)
    assert np.all(w[rows:] == w_gray)
    # The two colours lie > 5 bins apart, so smoothing keeps each one's mass in its own
    # 5x5 neighbourhood: its own bin keeps k0^2 of it (k0 the kernel's centre tap).
    x = np.arange(-2, 3)
    k = np.exp(-0.5 * (x * 10.0 / 5.0) ** 2)
    k0 = (k / k.sum())[2]
    p_red, p_gray = 0.1 * k0**2, 0.9 * k0**2
    raw_red = 1 / (0.5 * p_red + 0.5 / IN_GAMUT_BINS)
    raw_gray = 1 / (0.5 * p_gray + 0.5 / IN_GAMUT_BINS)
    np.testing.assert_allclose(w_red / w_gray, raw_red / raw_gray, rtol=1e-4)
    assert w_red > 3 * w_gray


def test_weights_have_mean_one_on_photos():
    ab = photo_batch(4, 32)["ab"]
    w = np.asarray(rebalancing_weights(ab, 0.5))
    assert w.shape == ab.shape[:-1]
    assert w.mean() == pytest.approx(1.0, rel=1e-5)
    assert w.max() > 1.5 * w.min()  # not uniform


def test_padding_rows_are_left_out():
    ab, _ = _two_colour_batch(0.1)
    padded = jnp.concatenate([ab, jnp.full_like(ab, 0.5)])  # a second, masked-out image
    w = np.asarray(rebalancing_weights(padded, 0.5, mask=jnp.asarray([1.0, 0.0])))
    np.testing.assert_allclose(w[:1], np.asarray(rebalancing_weights(ab, 0.5)), rtol=1e-5)


def test_weighted_pixel_loss():
    pred, target = jnp.zeros((1, 2, 2, 2)), jnp.ones((1, 2, 2, 2))
    weights = jnp.asarray([[[1.0, 3.0], [0.0, 0.0]]])
    assert float(pixel_loss("l1", pred, target, weights=weights)) == pytest.approx(1.0)
    assert float(pixel_loss("l1", pred, target)) == pytest.approx(1.0)
    assert float(pixel_loss("mse", pred, 2 * target, weights=weights)) == pytest.approx(4.0)


@pytest.mark.parametrize("value", [1.0, -0.1, 2.0])
def test_bad_strength_is_named(value):
    config = tiny_config("unet", loss_rebalance=value)
    with pytest.raises(ConfigError, match=r"config\.loss_rebalance"):
        validate_config(config)


@pytest.mark.slow
def test_a_rebalanced_unet_learns():
    config = tiny_config("unet", features=(8, 16, 32), loss="l1", loss_rebalance=0.5,
                         **STEADY_LR)
    obj = make_objective(config)
    batch = photo_batch()
    state = obj.init(jax.random.key(0), batch, 100)
    state, losses = fit_fixed_batch(obj, state, batch)
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:3]), losses
