"""Regression objectives: real steps that learn, and data parallelism equal to one device."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from colorjax.platform import parallel
from colorjax.training import loop as train
from colorjax.objectives import make_objective
from conftest import STEADY_LR, fit_fixed_batch, photo_batch, tiny_config


# UNet widths 8-16-32 and ResNet width 8 on 16 px crops, a constant learning rate.
TINY = {"features": (8, 16, 32), "model.width": 8, **STEADY_LR}


@pytest.mark.slow
@pytest.mark.parametrize("model", ["unet", "resnet"])
def test_loss_decreases_on_a_fixed_batch(model):
    config = tiny_config(model, **TINY)
    obj = make_objective(config)
    batch = photo_batch()
    state = obj.init(jax.random.key(0), batch, 100)
    state, losses = fit_fixed_batch(obj, state, batch)
    assert int(state.step) == 30
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:3]), losses
    ab = obj.predict(state, batch["l"], jax.random.key(0))
    assert ab.shape == batch["ab"].shape


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["l1", "huber"])
def test_other_losses_run(loss):
    config = tiny_config("unet", **TINY)
    config.loss = loss
    obj = make_objective(config)
    batch = photo_batch(2)
    state = obj.init(jax.random.key(0), batch, 10)
    state, m = jax.jit(obj.train_step)(state, batch, jax.random.key(1))
    assert np.isfinite(float(m["loss"]))


@pytest.mark.slow
def test_two_devices_equal_one_device_batchnorm_included():
    assert jax.device_count() >= 2, "tests/conftest.py forces two host devices"
    config = tiny_config("unet", **TINY)
    # Adam turns tiny gradients into steps of about the learning rate, so float-level
    # differences in a near-zero gradient would show as lr-sized parameter differences:
    # a small rate keeps the comparison about the sharding, not Adam's sign flips.
    config.optimizer.learning_rate = 1e-4
    assert config.model.norm == "batch"
    batch = photo_batch(4)
    results = []
    for devices in (jax.devices()[:1], jax.devices()[:2]):
        mesh = parallel.create_mesh(devices)
        obj = make_objective(config)
        state = jax.jit(obj.init, out_shardings=parallel.replicated(mesh), static_argnums=2)(
            jax.random.key(0), batch, 10)
        step = train.make_train_step(obj, mesh)
        losses = []
        for _ in range(3):
            sharded = jax.device_put(batch, parallel.data_sharded(mesh))
            assert len(sharded["l"].sharding.device_set) == len(devices)
            state, m = step(state, sharded, jax.random.key(7))
            losses.append(float(m["loss"]))
        results.append((losses, jax.device_get(state.params), jax.device_get(state.model_state)))
    (l1, p1, s1), (l2, p2, s2) = results
    np.testing.assert_allclose(l1, l2, rtol=1e-5)
    lr, steps = config.optimizer.learning_rate, 3
    for a, b in zip(jax.tree.leaves((p1, s1)), jax.tree.leaves((p2, s2))):
        # Where a gradient is near zero, its rounding (the devices' reduction order, XLA's
        # codegen) can flip the sign of Adam's step: those few elements may differ by up to
        # 2 lr a step. A sharding error (BatchNorm statistics per device, a gradient not
        # averaged) moves most elements.
        off = ~np.isclose(a, b, rtol=1e-4, atol=1e-5)
        assert off.mean() <= 0.02, f"{off.sum()} of {off.size} elements differ"
        assert np.abs(a - b).max() <= 2 * lr * steps + 1e-5


def test_unknown_model_is_named():
    config = tiny_config("unet", **TINY)
    config.model.name = "transformer"
    with pytest.raises(ValueError, match="config.model.name.*allowed"):
        make_objective(config)


@pytest.mark.slow
def test_bfloat16_mixed_precision_tracks_float32():
    """bf16 compute, f32 parameters and optimizer state: the loss follows float32's."""
    curves = {}
    for precision in ("float32", "bfloat16"):
        config = tiny_config("unet", **TINY)
        config.precision = precision
        obj = make_objective(config)
        batch = photo_batch()
        state = obj.init(jax.random.key(0), batch, 100)
        step = jax.jit(obj.train_step)
        losses = []
        for i in range(20):
            state, m = step(state, batch, jax.random.key(i))
            losses.append(float(m["loss"]))
        assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(state.params))
        assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(state.opt_state)
                   if hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.floating))
        curves[precision] = np.array(losses)
        if precision == "bfloat16":
            hlo = step.lower(state, batch, jax.random.key(0)).as_text()
            assert "bf16" in hlo, "the network should really compute in bfloat16"
    f32, bf16 = curves["float32"], curves["bfloat16"]
    assert np.all(np.isfinite(bf16))
    assert bf16[-1] < 0.6 * bf16[0]  # it learns
    np.testing.assert_allclose(bf16[-5:].mean(), f32[-5:].mean(), rtol=0.25)
    np.testing.assert_allclose(bf16[0], f32[0], rtol=0.02)


def test_the_finite_flag_covers_parameters_and_their_ema():
    """`apply_gradients`' "finite" (what the loop stops a run on) is False when the EMA
    copy or the updated parameters are not finite, though loss and gradients are: an
    EMA decay above 1 diverged that way with a normal loss (issue 37)."""
    import optax

    from colorjax.objectives.base import TrainState, apply_gradients, init_ema

    params = {"w": jnp.ones((3,)), "b": jnp.zeros((2,))}
    grads = jax.tree.map(jnp.ones_like, params)
    state = TrainState.create(params, {}, optax.sgd(0.1), init_ema(params, 0.9))
    step = jax.jit(apply_gradients)
    ok = step(state, grads, 0.9, jnp.float32(1.0))[1]
    assert bool(ok["finite"])
    nan_ema = state.replace(ema_params={**state.ema_params, "b": jnp.full((2,), jnp.nan)})
    metrics = step(nan_ema, grads, 0.9, jnp.float32(1.0))[1]
    assert np.isfinite(metrics["loss"]) and np.isfinite(metrics["grad_norm"])
    assert not bool(metrics["finite"])
    overflowing = step(state, grads, 1e30, jnp.float32(1.0))  # EMA ~ 1e29, finite
    assert bool(overflowing[1]["finite"])
    assert not bool(step(overflowing[0], grads, 1e30, jnp.float32(1.0))[1]["finite"])
    # Finite gradients, a finite (huge) step: the parameters overflow float32 to inf.
    big = {"w": jnp.full((3,), 3e38), "b": jnp.zeros((2,))}
    huge = TrainState.create(big, {}, optax.sgd(1e38), None)
    metrics = step(huge, jax.tree.map(lambda g: -g, grads), 0.0, jnp.float32(1.0))[1]
    assert np.isfinite(metrics["grad_norm"]) and not bool(metrics["finite"])
