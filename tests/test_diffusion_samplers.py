"""DDPM and DDIM samplers: exactness with an oracle, agreement in distribution, and that the
loop is compiled once and calls the network exactly once per step."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from colorjax.config.checks import ConfigError
from colorjax.diffusion import (ddim_sample, ddim_timesteps, ddpm_sample, make_schedule,
                                q_sample, training_target)
from colorjax.models.diffusion_unet import DiffusionUNet


@pytest.mark.parametrize("kind,prediction,steps", [("linear", "eps", 50), ("cosine", "eps", 50),
                                                   ("cosine", "v", 10), ("linear", "eps", 1000)])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_ddim_eta0_with_true_noise_recovers_x0(kind, prediction, steps, dtype):
    """A network that outputs the true ε (or the true v) makes DDIM (η = 0) land on x_0.

    Exact in float64. In float32 x_T holds x_0 only at the scale sqrt(ᾱ_T) (5e-5 for the
    cosine schedule), so the recovery is exact to that precision: ~1e-3 of the ab range.
    """
    with jax.enable_x64(dtype == "float64"):
        schedule = make_schedule(kind, 1000, dtype=dtype)
        k1, k2 = jax.random.split(jax.random.key(1))
        x0 = jax.random.uniform(k1, (2, 8, 8, 2), dtype, minval=-0.95, maxval=0.95)
        noise = jax.random.normal(k2, x0.shape, dtype)
        x_T = q_sample(schedule, x0, jnp.full((2,), 999), noise)
        oracle = lambda x, t: training_target(prediction, schedule, x0, t, noise)
        out = jax.jit(lambda x: ddim_sample(oracle, schedule, x, jax.random.key(0), steps=steps,
                                            eta=0.0, prediction=prediction, clip=1.0))(x_T)
        assert out.dtype == dtype
        np.testing.assert_allclose(out, x0, atol=1e-9 if dtype == "float64" else 5e-3)


def test_ddim_timesteps_span_the_schedule():
    assert list(ddim_timesteps(1000, 1000)) == list(range(1000))
    ts = ddim_timesteps(1000, 50)
    assert len(ts) == 50
    assert ts[0] == 0
    assert ts[-1] == 999
    assert np.all(np.diff(ts) > 0)
    with pytest.raises(ConfigError, match=r"config\.sampler\.steps: 0 is not allowed") as e:
        ddim_timesteps(1000, 0)
    assert (e.value.field, e.value.allowed) == ("config.sampler.steps", "1..1000")


# --- a toy problem with a known optimal denoiser ------------------------------------------

MEANS, STD, WEIGHTS = np.array([-0.5, 0.4]), 0.1, np.array([0.3, 0.7])


def mixture_eps(schedule):
    """The exact ε-predictor for x_0 ~ 0.3 N(-0.5, 0.1²) + 0.7 N(0.4, 0.1²), elementwise."""
    def fn(x, t):
        a = schedule.alphas_cumprod[t].reshape((-1,) + (1,) * (x.ndim - 1))
        var = a * STD**2 + 1 - a  # variance of x_t within a component
        logp = jnp.stack([np.log(w) - (x - jnp.sqrt(a) * m) ** 2 / (2 * var)
                          for m, w in zip(MEANS, WEIGHTS)])
        resp = jax.nn.softmax(logp, axis=0)
        x0 = sum(r * (m + jnp.sqrt(a) * STD**2 / var * (x - jnp.sqrt(a) * m))
                 for r, m in zip(resp, MEANS))
        return (x - jnp.sqrt(a) * x0) / jnp.sqrt(1 - a)
    return fn


def ks_statistic(a, b):
    """Two-sample Kolmogorov-Smirnov statistic sup |F_a - F_b|."""
    a, b = np.sort(np.ravel(a)), np.sort(np.ravel(b))
    grid = np.concatenate([a, b])
    return np.max(np.abs(np.searchsorted(a, grid, "right") / a.size
                         - np.searchsorted(b, grid, "right") / b.size))


@pytest.fixture(scope="module")
def toy_samples():
    """DDPM and DDIM (steps = T, η = 1) from independent noise; 8192 scalars each."""
    schedule = make_schedule("linear", 1000)
    model = mixture_eps(schedule)
    shape = (2, 64, 32, 2)

    @jax.jit
    def run(rng):
        k = jax.random.split(rng, 4)
        ddpm = ddpm_sample(model, schedule, jax.random.normal(k[0], shape), k[1],
                           prediction="eps", clip=1.0)
        ddim = ddim_sample(model, schedule, jax.random.normal(k[2], shape), k[3], steps=1000,
                           eta=1.0, prediction="eps", clip=1.0)
        return ddpm, ddim

    ddpm, ddim = run(jax.random.key(7))
    return np.asarray(ddpm), np.asarray(ddim)


def test_ddim_steps_T_eta1_matches_ddpm_in_distribution(toy_samples):
    ddpm, ddim = toy_samples
    n = ddpm.size
    crit = 1.95 * np.sqrt(2.0 / n)  # KS critical value at α = 0.001
    assert ks_statistic(ddpm, ddim) < crit
    # Both reproduce the data distribution, so the agreement is not between two wrong ones.
    rng = np.random.default_rng(0)
    comp = rng.choice(2, size=n, p=WEIGHTS)
    data = rng.normal(MEANS[comp], STD)
    for samples in (ddpm, ddim):
        assert ks_statistic(samples, data) < crit
        assert abs(np.mean(samples > 0) - WEIGHTS[1]) < 0.03
    # ... and the test has the power to see a small error: a 0.03 shift is rejected.
    assert ks_statistic(ddpm, ddim + 0.03) > crit


def test_ddim_steps_T_eta1_is_ddpm_pathwise_with_the_same_noise():
    """With the same x_T and key both draw the same noise per step: the updates agree."""
    schedule = make_schedule("cosine", 1000)
    model = mixture_eps(schedule)
    x_T = jax.random.normal(jax.random.key(3), (1, 16, 16, 2))
    key = jax.random.key(4)
    a = jax.jit(lambda x: ddpm_sample(model, schedule, x, key, prediction="eps", clip=1.0))(x_T)
    b = jax.jit(lambda x: ddim_sample(model, schedule, x, key, steps=1000, eta=1.0,
                                      prediction="eps", clip=1.0))(x_T)
    np.testing.assert_allclose(a, b, atol=1e-3)


# --- the network inside the loop ------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_network():
    model = DiffusionUNet(features=(4, 8), num_res_blocks=1, attention_levels=(1,), dropout=0.0,
                          groups=4)
    l = jax.random.uniform(jax.random.key(0), (2, 8, 8, 1), minval=-1, maxval=1)
    x = jnp.zeros((2, 8, 8, 2))
    # An RBG key: threefry init compiles several times slower on CPU (objectives/diffusion.py).
    params = model.init(jax.random.key(1, impl="rbg"), x, l, jnp.zeros((2,), jnp.int32))["params"]
    return lambda x, t: model.apply({"params": params}, x, l, t)


def counted(fn, counter):
    """fn, plus a host callback that counts every *executed* call (not just traces)."""
    def wrapped(x, t):
        jax.debug.callback(lambda: counter.append(1))
        return fn(x, t)
    return wrapped


@pytest.mark.slow
@pytest.mark.parametrize("sampler,steps", [("ddim", 1), ("ddim", 7), ("ddim", 50),
                                           ("ddpm", 100)])
def test_sampler_calls_the_network_exactly_steps_times(tiny_network, sampler, steps):
    schedule = make_schedule("linear", 100 if sampler == "ddpm" else 1000)
    calls = []
    model = counted(tiny_network, calls)
    x_T = jax.random.normal(jax.random.key(2), (2, 8, 8, 2))
    if sampler == "ddim":
        run = lambda x: ddim_sample(model, schedule, x, jax.random.key(0), steps=steps, eta=0.5)
    else:
        run = lambda x: ddpm_sample(model, schedule, x, jax.random.key(0))
    out = jax.jit(run)(x_T)
    jax.block_until_ready(out)
    jax.effects_barrier()
    assert len(calls) == steps
    assert out.shape == x_T.shape
    assert bool(jnp.all(jnp.isfinite(out)))


@pytest.mark.slow
def test_sampling_is_one_compiled_loop(tiny_network):
    """The program does not grow with the number of steps: the network is traced once,
    inside a single scan."""
    schedule = make_schedule("linear", 1000)
    x_T = jnp.zeros((2, 8, 8, 2))
    jaxprs = [jax.make_jaxpr(lambda x: ddim_sample(tiny_network, schedule, x, jax.random.key(0),
                                                   steps=s))(x_T) for s in (5, 50)]
    assert len(jaxprs[0].eqns) == len(jaxprs[1].eqns)
    scans = [e for e in jaxprs[1].eqns if e.primitive.name == "scan"]
    assert len(scans) == 1
    assert scans[0].params["length"] == 50
    text = str(jaxprs[1])
    one_pass = str(jax.make_jaxpr(tiny_network)(x_T, jnp.zeros((2,), jnp.int32)))
    assert text.count("conv_general_dilated") == one_pass.count("conv_general_dilated") > 0
