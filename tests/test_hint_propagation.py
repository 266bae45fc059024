"""Hints spread along the image (colorjax/hints/propagation.py): zero without hints, the
hint's colour over its region, stopped by edges, hints kept, any size; and hint models
read the spread planes (seven input channels) unless told not to."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from colorjax.hints.propagation import propagate


def planes(h, w, points):
    """Hint planes with (y, x, a, b) points (network range)."""
    p = np.zeros((1, h, w, 3), np.float32)
    for y, x, a, b in points:
        p[0, y, x] = (a, b, 1.0)
    return jnp.asarray(p)


def two_halves(h=32, w=48):
    """L: dark left half, bright right half (a strong edge at w // 2)."""
    l = np.full((1, h, w, 1), -0.6, np.float32)
    l[:, :, w // 2:] = 0.6
    return jnp.asarray(l)


@pytest.mark.slow
def test_no_hints_give_zero_planes():
    out = propagate(two_halves(), planes(32, 48, []))
    assert out.shape == (1, 32, 48, 3)
    np.testing.assert_array_equal(np.asarray(out), 0.0)


@pytest.mark.slow
def test_one_hint_colours_its_region_and_stays_where_it_is():
    l = two_halves()
    out = np.asarray(propagate(l, planes(32, 48, [(5, 3, 0.4, -0.2)])))
    np.testing.assert_allclose(out[0, 5, 3], [0.4, -0.2, 1.0], atol=1e-6)
    left = out[0, :, :24]
    np.testing.assert_allclose(left[..., :2], np.broadcast_to([0.4, -0.2], left[..., :2].shape),
                               atol=1e-4)
    # Confidence falls with distance and drops across the edge.
    assert left[..., 2].min() > 0.05
    assert out[0, :, 24:, 2].max() < 0.5 * left[..., 2].min()


def test_an_edge_keeps_two_hints_apart():
    l = two_halves()
    out = np.asarray(propagate(l, planes(32, 48, [(16, 2, 0.5, 0.0), (16, 45, -0.5, 0.3)])))
    assert np.abs(out[0, :, :20, :2] - [0.5, 0.0]).max() < 0.02
    assert np.abs(out[0, :, 28:, :2] - [-0.5, 0.3]).max() < 0.02


def test_odd_sizes_and_jit():
    l = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (2, 33, 47, 1)).astype(np.float32))
    p = planes(33, 47, [(0, 0, 0.1, 0.2), (32, 46, -0.3, 0.1)])
    p = jnp.concatenate([p, jnp.zeros_like(p)])  # the second image has no hints
    out = jax.jit(propagate)(l, p)
    assert out.shape == (2, 33, 47, 3)
    assert np.isfinite(np.asarray(out)).all()
    np.testing.assert_array_equal(np.asarray(out[1]), 0.0)
    assert float(out[0, ..., 2].min()) > 0


def test_hint_models_read_the_spread_planes():
    from colorjax.presets import load_config
    from colorjax.objectives.regression import RegressionObjective

    l = two_halves()
    hints = planes(32, 48, [(5, 3, 0.4, -0.2)])
    for propagation, channels in ((True, 7), (False, 4)):
        config = load_config("unet", "cpu")
        config.model.hints = True
        config.model.hint_propagation = propagation
        obj = RegressionObjective(config)
        x = obj.conditioning(l, hints)
        assert x.shape[-1] == channels
        if propagation:
            np.testing.assert_allclose(np.asarray(x[..., 4:]), np.asarray(propagate(l, hints)))
