"""VAE colorizers: the KL term, the reparameterization noise, real steps that learn, and
prediction that needs only the decoder."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from colorjax import color
from colorjax.platform import parallel
from colorjax.training import loop as train
from colorjax.objectives import make_objective
from colorjax.objectives.vae import kl_divergence, kl_weight, reparameterize
from conftest import STEADY_LR, photo_batch, tiny_config


# Encoder and decoder widths 8-16, an 8-dimensional latent, 16 px, a constant learning rate.
TINY = {"model.encoder_features": (8, 16), "model.latent_dim": 8, **STEADY_LR}


# --- the pieces, in closed form ---------------------------------------------------------


def test_kl_matches_closed_form_and_monte_carlo():
    mu = jnp.array([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0], [0.5, -2.0]])
    sigma = jnp.array([[1.0, 1.0], [1.0, 1.0], [2.0, 1.0], [0.5, 3.0]])
    kl = kl_divergence(mu, jnp.log(sigma ** 2))
    # 0.5 * sum(mu^2 + s^2 - 1 - log s^2), worked by hand per dimension:
    expected = [0.0, 0.5, 0.5 * (4 - 1 - np.log(4)),
                0.5 * (0.25 + 0.25 - 1 - np.log(0.25)) + 0.5 * (4 + 9 - 1 - np.log(9))]
    np.testing.assert_allclose(kl, expected, rtol=1e-6, atol=1e-7)
    # Independently: E_q[log q(z) - log p(z)] by sampling, for the last row.
    z = mu[3] + sigma[3] * jax.random.normal(jax.random.key(0), (200_000, 2))
    log_q = jnp.sum(-0.5 * ((z - mu[3]) / sigma[3]) ** 2 - jnp.log(sigma[3]), axis=-1)
    log_p = jnp.sum(-0.5 * z ** 2, axis=-1)
    np.testing.assert_allclose(float(jnp.mean(log_q - log_p)), expected[3], rtol=0.02)


def test_kl_warmup_ramps_beta():
    assert float(kl_weight(jnp.int32(7), 0.001, 0)) == pytest.approx(0.001)
    ramp = [float(kl_weight(jnp.int32(s), 0.001, 100)) for s in (0, 50, 100, 1000)]
    np.testing.assert_allclose(ramp, [0.0, 0.0005, 0.001, 0.001], rtol=1e-6)


def test_reparameterization_noise_differs_per_example_device_and_step():
    mesh = parallel.create_mesh(jax.devices()[:2])
    mu = jax.device_put(jnp.zeros((4, 8)), parallel.data_sharded(mesh))
    fn = jax.jit(reparameterize)
    z = np.asarray(fn(jax.random.key(0), mu, jnp.zeros_like(mu)))
    # The same (mu, sigma) on both devices, yet four different draws.
    assert len({tuple(np.round(r, 6)) for r in z}) == 4
    z_next = np.asarray(fn(jax.random.fold_in(jax.random.key(0), 1), mu, jnp.zeros_like(mu)))
    assert not np.allclose(z, z_next)
    # sigma scales the noise, mu shifts it.
    z2 = np.asarray(fn(jax.random.key(0), mu + 3.0, jnp.full_like(mu, np.log(4.0))))
    np.testing.assert_allclose(z2, 3.0 + 2.0 * z, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("field,value,message", [
    ("vae.sample_mode", "mean", r"config.vae.sample_mode.*allowed.*'prior', 'zero'"),
    ("vae.beta", -1.0, r"config.vae.beta"),
    ("vae.kl_warmup_steps", -5, r"config.vae.kl_warmup_steps"),
    ("model.condition", "concat", r"config.model.condition.*allowed.*bottleneck.*film"),
    ("model.norm", "layer", r"config.model.norm.*allowed"),
])
def test_bad_config_named_at_construction(field, value, message):
    config = tiny_config("unetvae", **TINY)
    group, name = field.split(".")
    config[group][name] = value
    with pytest.raises(ValueError, match=message):
        make_objective(config)


# --- training and prediction --------------------------------------------------------------


@pytest.fixture(scope="module", params=["unetvae", "basicvae"])
def trained(request):
    """(objective, jitted step, state, batch, metrics per step) after 20 real steps on a
    fixed batch. Shared by the tests below: initializing a network compiles slowly on CPU."""
    config = tiny_config(request.param, **TINY)
    obj = make_objective(config)
    batch = photo_batch(photo="coffee", stride=(12, 10))  # strong, varied colours
    state = jax.jit(obj.init, static_argnums=2)(jax.random.key(0), batch, 100)  # eager: op by op, slow
    step = jax.jit(obj.train_step)
    history = []
    for i in range(20):
        state, m = step(state, batch, jax.random.key(i))
        history.append(jax.device_get(m))
    return obj, step, state, batch, history


@pytest.mark.slow
def test_reconstruction_falls_and_everything_is_logged(trained):
    obj, _, state, batch, history = trained
    assert int(state.step) == 20
    assert {"loss", "grad_norm", "finite", "recon", "kl", "mu_sq", "sigma_sq"} <= set(history[0])
    assert all(bool(m["finite"]) and np.ndim(m["finite"]) == 0 for m in history), history
    recon = [float(m["recon"]) for m in history]
    assert np.mean(recon[-5:]) < 0.5 * np.mean(recon[:3]), recon
    for m in history:  # the loss is what it claims to be
        np.testing.assert_allclose(m["loss"], m["recon"] + 0.001 * m["kl"], rtol=1e-5)
        assert m["kl"] >= 0
        assert m["sigma_sq"] > 0
        assert m["mu_sq"] >= 0


@pytest.mark.slow
def test_zero_mode_is_deterministic(trained):
    obj, _, state, batch, _ = trained
    assert obj.sample_mode == "zero"  # the config default, what evaluation reports
    predict = jax.jit(obj.predict)
    a = predict(state, batch["l"], jax.random.key(1))
    b = predict(state, batch["l"], jax.random.key(2))
    assert a.shape == batch["ab"].shape
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.slow
def test_prior_mode_two_rngs_give_different_colours(trained):
    obj, _, state, batch, _ = trained
    variables = obj.inference_variables(state)
    z1, z2 = (obj.latent(jax.random.key(k), 4, "prior") for k in (1, 2))
    decode = jax.jit(obj.decode)
    a, b = decode(variables, batch["l"], z1), decode(variables, batch["l"], z2)
    # Mean |difference| above 0.5 Lab units of ab: z steers the colours.
    assert float(jnp.mean(jnp.abs(a - b))) * color.AB_SCALE > 0.5
    assert float(jnp.max(jnp.abs(a))) <= 1.0
    # predict() draws from the prior too when the config says so.
    config = tiny_config("unetvae" if obj.decoder.skips else "basicvae", **TINY)
    config.vae.sample_mode = "prior"
    obj_prior = make_objective(config)
    predict = jax.jit(obj_prior.predict)
    p1, p2 = (predict(state, batch["l"], jax.random.key(k)) for k in (1, 2))
    assert not np.allclose(np.asarray(p1), np.asarray(p2))
    # And so does sampling=True (what colorize --num_samples uses), with the zero-mode config.
    sample = jax.jit(obj.predict, static_argnames="sampling")
    s1, s2 = (sample(state, batch["l"], jax.random.key(k), sampling=True) for k in (1, 2))
    assert not np.allclose(np.asarray(s1), np.asarray(s2))
    np.testing.assert_allclose(np.asarray(s1), np.asarray(p1), atol=1e-6)  # the same draw


@pytest.mark.slow
def test_prediction_needs_only_the_decoder(trained):
    obj, _, state, batch, _ = trained
    variables = obj.inference_variables(state)
    assert set(variables) <= {"params", "batch_stats"}
    n_dec = sum(x.size for x in jax.tree.leaves(state.params["decoder"]))
    assert sum(x.size for x in jax.tree.leaves(variables["params"])) == n_dec
    # Poison the encoder: prediction does not change, so it never read it.
    poisoned = state.replace(
        params={**state.params, "encoder": jax.tree.map(lambda x: x * jnp.nan,
                                                        state.params["encoder"])},
        model_state={**state.model_state, "encoder": jax.tree.map(
            lambda x: x * jnp.nan, state.model_state["encoder"])})
    rng = jax.random.key(3)
    expected = jax.jit(obj.predict_with)(variables, batch["l"], rng)
    np.testing.assert_array_equal(np.asarray(jax.jit(obj.predict)(poisoned, batch["l"], rng)),
                                  np.asarray(expected))
    assert np.all(np.isfinite(np.asarray(expected)))


@pytest.mark.slow
def test_bfloat16_step_is_finite_and_close_to_float32(trained):
    obj, step, state, batch, _ = trained
    config = tiny_config("unetvae" if obj.decoder.skips else "basicvae", **TINY)
    config.precision = "bfloat16"
    step_bf16 = jax.jit(make_objective(config).train_step)  # same state: f32 masters
    rng = jax.random.key(99)
    assert "bf16" in step_bf16.lower(state, batch, rng).as_text()  # really computes in bf16
    new, m16 = step_bf16(state, batch, rng)
    _, m32 = step(state, batch, rng)
    assert bool(m16["finite"])
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(new.params))
    np.testing.assert_allclose([m16["recon"], m16["kl"]], [m32["recon"], m32["kl"]], rtol=0.05)
