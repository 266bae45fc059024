"""Noise schedules and the forward process q(x_t | x_0)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from colorjax.config.checks import ConfigError
from colorjax.diffusion import make_schedule, predict_x0_eps, q_sample, training_target


def test_linear_schedule_is_ho_et_al():
    s = make_schedule("linear", 1000)
    betas = np.asarray(s.betas)
    np.testing.assert_allclose(betas[[0, -1]], [1e-4, 0.02], rtol=1e-6)
    np.testing.assert_allclose(np.diff(betas), (0.02 - 1e-4) / 999, rtol=1e-3)
    # ᾱ_T of the linear schedule is ~4e-5 (Ho et al. 2020, §4: x_T is almost pure noise).
    assert 3e-5 < float(s.alphas_cumprod[-1]) < 5e-5


def test_cosine_schedule_is_nichol_dhariwal():
    T, s_off = 1000, 0.008
    s = make_schedule("cosine", T)
    f = lambda t: np.cos((t / T + s_off) / (1 + s_off) * np.pi / 2) ** 2
    t = np.arange(1, T + 1)
    expected = f(t) / f(0)
    # Identical until β hits its 0.999 clip at the very last step.
    np.testing.assert_allclose(np.asarray(s.alphas_cumprod)[:-1], expected[:-1], rtol=1e-4,
                               atol=1e-7)
    assert float(jnp.max(s.betas)) <= 0.999 + 1e-6


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_alphas_cumprod_decrease_from_one_to_zero(kind):
    abar = np.asarray(make_schedule(kind, 1000).alphas_cumprod)
    assert np.all(np.diff(abar) < 0)
    assert abar[0] > 0.999
    assert abar[-1] < 1e-3


def test_unknown_schedule_is_named():
    with pytest.raises(ConfigError, match=r"config\.diffusion\.schedule: 'foo' is not allowed; "
                                          r"allowed: \['cosine', 'linear'\]") as e:
        make_schedule("foo", 10)
    assert e.value.field == "config.diffusion.schedule" and e.value.problem == "'foo' is not allowed"


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_q_sample_has_the_schedules_mean_and_variance(kind):
    """Many draws of x_t | x_0: sample mean sqrt(ᾱ_t) x_0 and variance 1 - ᾱ_t, per timestep,
    within 5 standard errors."""
    schedule = make_schedule(kind, 1000)
    n = 100_000
    x0 = jnp.asarray([-0.9, 0.0, 0.3, 0.8])
    for t in (0, 10, 250, 500, 999):
        noise = jax.random.normal(jax.random.key(t), (n, 4))
        xt = np.asarray(q_sample(schedule, jnp.broadcast_to(x0, (n, 4)), jnp.full((n,), t), noise),
                        np.float64)
        abar = float(schedule.alphas_cumprod[t])
        var = 1.0 - abar
        mean_se, var_se = np.sqrt(var / n), var * np.sqrt(2.0 / n)
        assert np.all(np.abs(xt.mean(0) - np.sqrt(abar) * np.asarray(x0)) < 5 * mean_se), t
        assert np.all(np.abs(xt.var(0) - var) < 5 * var_se), t


@pytest.mark.parametrize("prediction", ["eps", "v"])
def test_true_target_gives_back_x0_and_noise(prediction):
    schedule = make_schedule("cosine", 1000)
    k1, k2 = jax.random.split(jax.random.key(0))
    x0 = jax.random.uniform(k1, (6, 4, 4, 2), minval=-1, maxval=1)
    noise = jax.random.normal(k2, x0.shape)
    t = jnp.asarray([0, 1, 100, 500, 900, 998])
    xt = q_sample(schedule, x0, t, noise)
    target = training_target(prediction, schedule, x0, t, noise)
    x0_hat, eps_hat = predict_x0_eps(prediction, schedule, xt, t, target)
    np.testing.assert_allclose(x0_hat, x0, atol=2e-3)
    np.testing.assert_allclose(eps_hat, noise, atol=2e-3)
