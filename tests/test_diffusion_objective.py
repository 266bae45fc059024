"""The diffusion objective: config validation, the jitted sharded train step with per-bucket
losses, EMA sampling, and the two config files."""

import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np
import pytest

from colorjax.platform import parallel
from colorjax.presets import load_config
from colorjax.objectives import make_objective
from colorjax.objectives.diffusion import (DiffusionObjective, bucket_losses,
                                           stratified_timesteps)


def bare_diffusion_config(**diffusion):
    """The fields configs/unetddpm.py sets, at test size (16 px, widths 8 and 16), built one by
    one rather than from the file (conftest.tiny_config): only what the objective reads."""
    c = mlc.ConfigDict()
    c.model = mlc.ConfigDict(dict(name="unetddim", features=(8, 16), attention_levels=(1,),
                                  num_res_blocks=1, dropout=0.1))
    c.diffusion = mlc.ConfigDict(dict(schedule="cosine", timesteps=1000, prediction="eps",
                                      loss="mse", timestep_buckets=4, data_scale=4.0))
    c.diffusion.update(diffusion)
    c.sampler = mlc.ConfigDict(dict(name="ddim", steps=4, eta=0.0))
    c.ema_decay = 0.99
    c.optimizer = mlc.ConfigDict(dict(name="adam", learning_rate=1e-3, b1=0.9, b2=0.999,
                                      weight_decay=0.0, schedule="constant", warmup_steps=0,
                                      end_lr_factor=1.0, grad_clip_norm=1.0))
    return c


def toy_batch(n=4, size=16, seed=0):
    k1, k2 = jax.random.split(jax.random.key(seed))
    l = jax.random.uniform(k1, (n, size, size, 1), minval=-1, maxval=1)
    ab = 0.2 * jnp.tanh(jax.random.normal(k2, (n, size, size, 2)))
    return {"l": l, "ab": ab}


@pytest.mark.parametrize("section,field,value,allowed", [
    ("diffusion", "schedule", "foo", r"\['cosine', 'linear'\]"),
    ("diffusion", "prediction", "x0", r"\['eps', 'v'\]"),
    ("diffusion", "loss", "huber", r"\['l1', 'mse'\]"),
    ("sampler", "name", "euler", r"\['ddim', 'ddpm'\]"),
    ("sampler", "steps", 0, r"\[1, 1000\]"),
    ("sampler", "steps", 1001, r"\[1, 1000\]"),
    ("sampler", "eta", -0.5, r"\[0.0, ∞\)"),
    ("sampler", "temperature", -0.1, r"\[0.0, ∞\)"),
    ("diffusion", "timestep_buckets", 0, r"\[1, 1000\]"),
    ("diffusion", "data_scale", 0.0, r"\(0, ∞\)"),
    ("model", "dropout", 1.0, r"\[0.0, 1.0\)"),
])
def test_bad_choices_are_named_at_construction(section, field, value, allowed):
    c = bare_diffusion_config()
    c[section][field] = value
    with pytest.raises(ValueError, match=rf"config.{section}.{field}: {value!r} is not allowed; "
                                         rf"allowed: {allowed}"):
        make_objective(c)


def test_bad_ema_decay_and_attention_level_are_named():
    c = bare_diffusion_config()
    c.ema_decay = 1.0
    with pytest.raises(ValueError, match=r"config.ema_decay: 1.0 is not allowed"):
        DiffusionObjective(c)
    c = bare_diffusion_config()
    c.model.attention_levels = (2,)
    with pytest.raises(ValueError, match=r"config.model.attention_levels\[0\]: 2 is not allowed"):
        DiffusionObjective(c)


def test_sampler_defaults_to_the_model_name():
    c = bare_diffusion_config()
    del c.sampler["name"]
    c.model.name = "unetddpm"
    assert make_objective(c).sampler == "ddpm"
    c.model.name = "unetddim"
    assert make_objective(c).sampler == "ddim"


def test_stratified_timesteps_fill_every_bucket_and_are_uniform():
    t = jax.vmap(lambda k: stratified_timesteps(k, 16, 1000))(
        jax.random.split(jax.random.key(0), 2000))
    counts = jax.vmap(lambda x: jnp.bincount(x * 4 // 1000, length=4))(t)
    assert bool(jnp.all(counts == 4))
    hist = np.bincount(np.asarray(t).ravel() // 100, minlength=10) / t.size
    np.testing.assert_allclose(hist, 0.1, atol=0.01)


def test_bucket_losses_average_within_buckets_and_report_zero_for_empty():
    per_example = jnp.asarray([1.0, 3.0, 10.0, 5.0])
    t = jnp.asarray([0, 249, 600, 999])  # buckets 0, 0, 2, 3; bucket 1 empty
    out = jax.jit(lambda p, t: bucket_losses(p, t, 1000, 4))(per_example, t)
    assert {k: float(v) for k, v in out.items()} == {
        "loss_t0": 2.0, "loss_t1": 0.0, "loss_t2": 10.0, "loss_t3": 5.0}


@pytest.fixture(scope="module")
def trained():
    """25 steps as the loop runs them: state replicated, batch split over the 2 devices,
    state donated. Shared by the tests below (one compilation)."""
    obj = DiffusionObjective(bare_diffusion_config())
    mesh = parallel.create_mesh()
    repl, sharded = parallel.replicated(mesh), parallel.data_sharded(mesh)
    batch = jax.device_put(toy_batch(n=8), sharded)
    state = jax.jit(obj.init, out_shardings=repl, static_argnums=2)(jax.random.key(0), batch, 100)
    step = jax.jit(obj.train_step, in_shardings=(repl, sharded, repl),
                   out_shardings=(repl, repl), donate_argnums=0)
    history = []
    for i in range(25):
        state, metrics = step(state, batch, jax.random.key(i))
        history.append(metrics)
    return obj, state, batch, jax.device_get(history)


@pytest.mark.slow
def test_sharded_train_step_learns_and_logs_buckets(trained):
    obj, state, _, history = trained
    metrics = history[-1]
    assert set(metrics) == {"loss", "grad_norm", "finite", "loss_t0", "loss_t1", "loss_t2",
                            "loss_t3"}
    assert all(np.shape(m) == () for m in metrics.values())
    assert bool(metrics["finite"])
    assert int(state.step) == 25
    for m in history:  # batch 8, 4 buckets: every bucket has 2 examples every step
        assert all(np.isfinite(m[k]) and m[k] > 0 for k in m if k.startswith("loss_t")), m
        np.testing.assert_allclose(np.mean([m[f"loss_t{k}"] for k in range(4)]), m["loss"],
                                   rtol=1e-5)
    losses = [float(m["loss"]) for m in history]
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    # The EMA copy moved away from the initialisation but is not the current parameters.
    diff = jax.tree.leaves(jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))),
                                        state.ema_params, state.params))
    assert 0 < max(diff)


@pytest.mark.slow
def test_v_prediction_l1_and_bfloat16_train_step():
    """The options off the default path, in one compilation: v target, L1 loss, and the
    network computing in bfloat16 while parameters, loss and samples stay float32."""
    c = bare_diffusion_config(prediction="v", loss="l1")
    c.model.features, c.model.attention_levels = (4,), ()
    c.precision = "bfloat16"
    obj = DiffusionObjective(c)
    batch = toy_batch(size=8)
    state = jax.jit(obj.init, static_argnums=2)(jax.random.key(0), batch, 10)
    state, metrics = jax.jit(obj.train_step)(state, batch, jax.random.key(1))
    assert bool(metrics["finite"])
    assert int(state.step) == 1
    assert metrics["loss"].dtype == jnp.float32
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(state.params))
    out = jax.jit(obj.model_fn(state.params, batch["l"]))(batch["ab"], jnp.zeros((4,), jnp.int32))
    assert out.dtype == jnp.float32
    jaxpr = str(jax.make_jaxpr(obj.model_fn(state.params, batch["l"]))(
        batch["ab"], jnp.zeros((4,), jnp.int32)))
    assert "conv_general_dilated" in jaxpr
    assert "bf16[4,8,8,4]" in jaxpr


@pytest.fixture(scope="module")
def trained_state(trained):
    obj, state, batch, _ = trained
    return obj, state, jax.device_get(batch)


@pytest.mark.slow
def test_predict_uses_the_ema_parameters(trained_state):
    obj, state, batch = trained_state
    predict = jax.jit(obj.predict)
    ab = predict(state, batch["l"], jax.random.key(2))
    assert ab.shape == batch["ab"].shape
    assert ab.dtype == jnp.float32
    assert float(jnp.max(jnp.abs(ab))) <= 1.0
    perturbed = state.replace(params=jax.tree.map(lambda p: p + 1.0, state.params))
    np.testing.assert_array_equal(ab, predict(perturbed, batch["l"], jax.random.key(2)))
    variables = obj.inference_variables(state)  # predict == predict_with(these)
    assert set(variables) == {"params"}
    assert variables["params"] is state.ema_params
    moved_ema = state.replace(ema_params=jax.tree.map(lambda p: p + 0.1, state.ema_params))
    assert not np.allclose(ab, predict(moved_ema, batch["l"], jax.random.key(2)))


@pytest.mark.slow
def test_predict_is_random_across_keys_and_ddim_eta0_deterministic_given_key(trained_state):
    obj, state, batch = trained_state
    predict = jax.jit(obj.predict)
    a = predict(state, batch["l"], jax.random.key(3))
    np.testing.assert_array_equal(a, predict(state, batch["l"], jax.random.key(3)))
    assert not np.allclose(a, predict(state, batch["l"], jax.random.key(4)))


@pytest.mark.slow
@pytest.mark.parametrize("sampler,eta", [("ddim", 0.0), ("ddim", 1.0), ("ddpm", 0.0)])
def test_temperature_scales_the_noise(trained_state, sampler, eta):
    """1 is the default sampler; 0 removes every noise draw, so the key no longer matters."""
    _, state, batch = trained_state
    compiled = {}  # one compiled sampler per temperature (None: the field left out)

    def predict(temperature, key):
        if temperature not in compiled:
            c = bare_diffusion_config()
            c.sampler.name, c.sampler.eta = sampler, eta
            if sampler == "ddpm":  # DDPM runs every timestep: 50, not the 1000 trained on
                c.diffusion.timesteps = 50
            if temperature is not None:
                c.sampler.temperature = temperature
            compiled[temperature] = jax.jit(DiffusionObjective(c).predict)
        return compiled[temperature](state, batch["l"], jax.random.key(key))

    np.testing.assert_array_equal(predict(1.0, 6), predict(None, 6))
    cold = predict(0.0, 6)
    np.testing.assert_allclose(cold, predict(0.0, 7), atol=1e-6)
    assert not np.allclose(predict(1.0, 6), predict(1.0, 7))
    assert not np.allclose(cold, predict(0.5, 6))


@pytest.mark.slow
def test_ddpm_predict_runs_all_timesteps(trained_state):
    """The unetddpm path: the same trained state, sampled by DDPM ancestral (T = 1000)."""
    _, state, batch = trained_state
    c = bare_diffusion_config()
    c.model.name, c.sampler.name = "unetddpm", "ddpm"
    ab = jax.jit(DiffusionObjective(c).predict)(state, batch["l"], jax.random.key(5))
    assert ab.shape == batch["ab"].shape
    assert bool(jnp.all(jnp.abs(ab) <= 1.0))


@pytest.mark.parametrize("variant", ["", "cpu", "cpu64"])
def test_config_files_differ_only_in_the_sampler(variant):
    ddpm = load_config("unetddpm", variant)
    ddim = load_config("unetddim", variant)
    a, b = ddpm.to_dict(), ddim.to_dict()
    assert (a["model"].pop("name"), b["model"].pop("name")) == ("unetddpm", "unetddim")
    assert (a.pop("sampler")["name"], b.pop("sampler")["name"]) == ("ddpm", "ddim")
    assert a == b
    for c in (ddpm, ddim):
        obj = make_objective(c)
        assert c.data.image_size % obj.downsample_factor == 0
        assert obj.sampler == c.sampler.name


def test_unknown_diffusion_config_variant_names_the_allowed_ones():
    with pytest.raises(ValueError, match="'gpu'.*'cpu' .*'cpu64' "):
        load_config("unetddim", "gpu")
