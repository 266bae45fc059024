"""`config.model.backbone_trainable=True` in the adversarial, VAE and diffusion families
(the regression family's is tests/test_regression_backbone.py's): the backbone's weights
are the params of the network that reads it (G's `params["backbone"]`, the VAE decoder's
`params["decoder"]["backbone"]`, the denoiser's `params["backbone"]`), fine-tuned at their
own peak learning rate `config.model.backbone_learning_rate` with their BatchNorm
statistics fixed; frozen (the default), a step leaves them bit for bit."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import STEADY_LR, photo_batch, tiny_config

from colorjax.config.checks import ConfigError
from colorjax.models.backbone import load_backbone
from colorjax.objectives import make_objective
from colorjax.objectives.frozen_backbone import backbone_labels
from test_diffusion_objective import bare_diffusion_config, toy_batch

SIZE = 16
BACKBONE = "efficientnet_lite0"  # the one with BatchNorm statistics
FAMILIES = ("unetgan", "unetvae", "diffusion")
# The denoiser's output conv, its ResBlocks' last convs and its semantic injections start
# at zero, so the loss's gradient first reaches the backbone at step 3 (as the frozen
# test_diffusion_backbone's reaches the injections): three steps there.
STEPS = {"diffusion": 3}
LR = 3e-4  # the backbone's peak learning rate in the trainable runs (the networks: 1e-3, 3e-3)


def config_for(family, trainable=False, backbone_lr=LR):
    """Test-sized config of `family` (16 px, widths 4-8 or 8-16, constant learning rate,
    EMA on so that it is exercised), taps projected to 8 channels."""
    if family == "diffusion":
        c = bare_diffusion_config()
        c.model.backbone, c.model.backbone_width = BACKBONE, 8
    else:
        extra = {"model.backbone": BACKBONE, "model.backbone_width": 8, **STEADY_LR,
                 "ema_decay": 0.5}
        if family == "unetvae":
            extra.update({"model.encoder_features": (4, 8), "model.latent_dim": 4})
        else:
            extra.update({"adversarial.disc_features": 4, "adversarial.perceptual_weight": 0.0})
        c = tiny_config(family, size=SIZE, features=(4, 8), **extra)
        if family == "unetgan":
            c.adversarial.disc_layers = 2  # a 3-layer PatchGAN needs >= 24 px
    if trainable:
        c.model.backbone_trainable = True
        c.model.backbone_learning_rate = backbone_lr
    return c


def batch_for(family):
    return toy_batch(n=4, size=SIZE) if family == "diffusion" else photo_batch(4, SIZE)


def trainable_weights(family, tree):
    """A trainable backbone's weights in params (or EMA params) of `family`."""
    return tree["decoder"]["backbone"] if family == "unetvae" else tree["backbone"]


def frozen_weights(family, state):
    return (state.model_state["decoder"]["backbone"] if family == "unetvae"
            else state.model_state["backbone"])


def network(family, params):
    """The params of the network that reads the backbone, without it."""
    p = params["decoder"] if family == "unetvae" else params
    return {k: v for k, v in p.items() if k != "backbone"}


_CACHE = {}


def setup(family, trainable, backbone_lr=LR):
    """(objective, batch, state before, state after `STEPS` (1) jitted steps, metrics)."""
    key = (family, trainable, backbone_lr)
    if key not in _CACHE:
        obj = make_objective(config_for(family, trainable, backbone_lr))
        batch = batch_for(family)
        # Eagerly: a jitted init would compile the backbone's weights in as constants.
        state0 = obj.init(jax.random.key(0), batch, 10)
        step, state = jax.jit(obj.train_step), state0
        for i in range(STEPS.get(family, 1)):
            state, metrics = step(state, batch, jax.random.key(1 + i))
            assert bool(metrics["finite"]), metrics
        _CACHE[key] = (obj, batch, state0, state, metrics)
    return _CACHE[key]


def _differs(a, b) -> bool:
    return any(not np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _max_change(a, b) -> float:
    return max(float(jnp.abs(x - y).max()) for x, y in zip(jax.tree.leaves(a),
                                                           jax.tree.leaves(b)))


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_trainable_backbone_moves_at_its_own_rate(family):
    obj, _, state0, state, _ = setup(family, True)
    genuine = load_backbone(BACKBONE)
    # Layout: params of the reading network, not a frozen collection.
    assert "backbone" not in str(jax.tree_util.tree_structure(state0.model_state))
    jax.tree.map(np.testing.assert_array_equal, trainable_weights(family, state0.params),
                 genuine)
    before, after = (trainable_weights(family, s.params) for s in (state0, state))
    # BatchNorm statistics fixed, weights moved; the network moved too.
    jax.tree.map(np.testing.assert_array_equal, after["batch_stats"], genuine["batch_stats"])
    assert _differs(before["params"], after["params"])
    assert _differs(network(family, state0.params), network(family, state.params))
    # Adam's first update of a weight moves it by at most the peak rate (|m/sqrt(v)| <= 1;
    # 0.64 of it when the gradients of two steps before were 0), the largest ones by about
    # it: the backbone's rate, not the network's.
    change = _max_change(before["params"], after["params"])
    assert 0.25 * LR < change <= 1.01 * LR, change
    # The EMA (of the reading network's params: the VAE's tracks its decoder alone) tracks
    # the backbone's weights like the rest.
    assert _differs(state0.ema_params["backbone"]["params"],
                    state.ema_params["backbone"]["params"])
    # The optimizer labels them apart: the network's, the backbone's, the fixed statistics.
    labels = backbone_labels(state.params)
    assert set(jax.tree.leaves(trainable_weights(family, labels)["params"])) == {"backbone"}
    assert set(jax.tree.leaves(trainable_weights(family, labels)["batch_stats"])) == {"frozen"}
    assert set(jax.tree.leaves(network(family, labels))) == {"network"}


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_zero_backbone_learning_rate_keeps_it_while_the_rest_trains(family):
    """The optimizer the objective builds for backbone_learning_rate 0 (its state's `tx`,
    which the train step applies: test_trainable_backbone_moves_at_its_own_rate): an update
    of every weight (constant rate, no warmup) leaves the backbone's as they were and moves
    the network's. No train step is compiled for it."""
    obj = make_objective(config_for(family, True, backbone_lr=0.0))
    # The state's layout and optimizer, from init's shapes (its values do not matter here).
    shapes = jax.eval_shape(lambda r, b: obj.init(r, b, 10), jax.random.key(0),
                            batch_for(family))

    @jax.jit
    def before_and_after():
        params = jax.tree.map(lambda s: jnp.linspace(-1.0, 1.0, s.size, dtype=s.dtype)
                              .reshape(s.shape), shapes.params)
        grads = jax.tree.map(lambda p: jnp.sin(7.0 * p) + 0.5, params)  # every sign, size
        updates, _ = shapes.tx.update(grads, shapes.tx.init(params), params)
        return params, optax.apply_updates(params, updates)

    params, after = before_and_after()
    jax.tree.map(np.testing.assert_array_equal, trainable_weights(family, after),
                 trainable_weights(family, params))
    assert _differs(network(family, params), network(family, after))


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_frozen_default_leaves_the_backbone_bit_for_bit(family):
    obj, _, state0, state, _ = setup(family, False)
    assert not obj.backbone_trainable
    genuine = load_backbone(BACKBONE)
    jax.tree.map(np.testing.assert_array_equal, frozen_weights(family, state0), genuine)
    jax.tree.map(np.testing.assert_array_equal, frozen_weights(family, state), genuine)
    assert "backbone" not in str(jax.tree_util.tree_structure(state.params))
    assert _differs(state0.params, state.params)


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_inference_in_both_layouts(family):
    obj, batch, _, frozen_state, _ = setup(family, False)
    obj_t, _, _, trained_state, _ = setup(family, True)
    l, rng = batch["l"], jax.random.key(2)
    outs = []
    for o, state in ((obj, frozen_state), (obj_t, trained_state)):
        variables = o.inference_variables(state)
        assert "encoder" not in variables
        in_params = "backbone" in variables["params"]
        assert in_params == o.backbone_trainable and ("backbone" in variables) != in_params
        both = jax.jit(lambda s, v: (o.predict(s, l, rng), o.predict_with(v, l, rng)))
        out, out_with = both(state, variables)
        assert np.isfinite(np.asarray(out)).all()
        np.testing.assert_allclose(out, out_with, atol=1e-5)
        if family == "diffusion":
            # The tiny untrained denoiser's samples saturate at the clip (ab = +-1): compare
            # the denoiser's output, conditioned on the backbone, instead.
            fn = o.model_fn(variables["params"], l, variables)
            out = fn(batch["ab"], jnp.full((l.shape[0],), 500, jnp.int32))
        outs.append(out)
    # The same init, trained alike: the fine-tuned backbone predicts otherwise.
    assert float(jnp.abs(outs[0] - outs[1]).max()) > 1e-6


@pytest.mark.parametrize("family", FAMILIES)
def test_bad_backbone_learning_rate_is_named(family):
    config = config_for(family, True, backbone_lr=-1.0)
    with pytest.raises(ConfigError, match=r"config.model.backbone_learning_rate"):
        make_objective(config)


@pytest.mark.slow
@pytest.mark.parametrize("family", ["unetgan", "unetvae"])
def test_a_trainable_backbone_is_checkpointed_with_the_params(family, tmp_path):
    """Checkpoints leave only frozen collections out: a fine-tuned backbone is params, so
    it is saved and restored (by `restore_run`, not reloaded from the package)."""
    from colorjax.training.checkpoint import TrainCheckpointer, _saved_tree, restore_run

    obj, _, _, state, _ = setup(family, True)
    config = config_for(family, True)
    ckpt = TrainCheckpointer(str(tmp_path / "checkpoints"), async_save=False)
    ckpt.save(1, state, {}, config)
    ckpt.close()
    saved = _saved_tree(str(tmp_path / "checkpoints" / "1"))
    assert "backbone" in (saved["params"]["decoder"] if family == "unetvae" else saved["params"])
    run = restore_run(str(tmp_path), config=config)
    jax.tree.map(np.testing.assert_array_equal, run.state.params, state.params)
    assert _differs(trainable_weights(family, run.state.params)["params"],
                    load_backbone(BACKBONE)["params"])
