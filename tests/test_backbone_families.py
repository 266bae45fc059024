"""A frozen pretrained backbone (`config.model.backbone`) in the adversarial and VAE
families: its taps feed the GAN generators (decoder skips; the encoder-decoder's
bottleneck) and the VAE decoders; its weights are the generator's (the decoder's)
collection "backbone", read but never written by the step, and exported with the
inference variables."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import STEADY_LR, photo_batch, tiny_config

from colorjax.config.checks import ConfigError
from colorjax.models.backbone import load_backbone
from colorjax.objectives import make_objective

SIZE = 16
GANS = ("gan", "unetgan", "pix2pix_resnet", "wgan_gp")
VAES = ("basicvae", "unetvae")
CONFIG_FILE = {"wgan_gp": "wgan"}  # model name -> config file, where they differ
COMBOS = ([(m, "efficientnet_lite0") for m in GANS + VAES]
          + [("unetgan", "vgg16"), ("unetvae", "vgg16")])


def config_for(model, backbone="none", **fields):
    """Test-sized config of `model` (widths 4-8-16, 16 px, constant learning rate), taps
    projected to 8 channels."""
    extra = {"model.backbone": backbone, "model.backbone_width": 8, **STEADY_LR}
    if model in VAES:
        extra.update({"model.encoder_features": (4, 8), "model.latent_dim": 4})
    else:
        extra.update({"adversarial.disc_features": 4, "adversarial.perceptual_weight": 0.0})
    c = tiny_config(CONFIG_FILE.get(model, model), size=SIZE, features=(4, 8, 16), **extra)
    if model in GANS and c.adversarial.discriminator == "patchgan":
        c.adversarial.disc_layers = 2  # a 3-layer (70x70) PatchGAN needs >= 24 px
    for path, value in fields.items():
        section, name = path.split(".")
        c[section][name] = value
    return c


def frozen(model, state):
    """The frozen backbone's weights in a state of `model`'s family."""
    if model in VAES:
        return state.model_state["decoder"]["backbone"]
    return state.model_state["backbone"]


def with_frozen(model, state, weights):
    ms = dict(state.model_state)
    if model in VAES:
        ms["decoder"] = {**ms["decoder"], "backbone": weights}
    else:
        ms["backbone"] = weights
    return state.replace(model_state=ms)


def network_params(model, params):
    """The parameters of the network that reads the taps (G, or the VAE decoder)."""
    return params["decoder"] if model in VAES else params


_CACHE = {}


def setup(model, backbone):
    """(objective, batch, state before, state after one jitted step, its metrics)."""
    key = (model, backbone)
    if key not in _CACHE:
        obj = make_objective(config_for(model, backbone))
        batch = photo_batch(4, SIZE)
        # Eagerly: a jitted init would compile the backbone's weights in as constants.
        state0 = obj.init(jax.random.key(0), batch, 10)
        state, metrics = jax.jit(obj.train_step)(state0, batch, jax.random.key(1))
        _CACHE[key] = (obj, batch, state0, state, metrics)
    return _CACHE[key]


def _differs(a, b) -> bool:
    return any(not np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.mark.slow
@pytest.mark.parametrize("model,backbone", COMBOS)
def test_frozen_backbone_step_and_prediction(model, backbone):
    obj, batch, state0, state, metrics = setup(model, backbone)
    assert all(np.isfinite(np.asarray(v)).all() for v in metrics.values()), metrics
    assert bool(metrics["finite"])

    # The genuine weights, bit for bit, before and after the step; never optimised.
    genuine = load_backbone(backbone)
    jax.tree.map(np.testing.assert_array_equal, frozen(model, state0), genuine)
    jax.tree.map(np.testing.assert_array_equal, frozen(model, state), genuine)
    assert "backbone" not in network_params(model, state.params)
    assert any(k.startswith("tap_level") for k in network_params(model, state.params))
    assert _differs(state0.params, state.params)
    if model in GANS:  # D does not read the backbone
        assert "backbone" not in state.disc_model_state
        assert not any(k.startswith("tap") for k in state.disc_params)
    else:  # nor does the VAE's encoder
        assert "backbone" not in state.model_state["encoder"]
        assert not any(k.startswith("tap") for k in state.params["encoder"])

    # predict == predict_with(inference_variables): exports are self-contained.
    variables = obj.inference_variables(state)
    assert "backbone" in variables and "encoder" not in variables
    jax.tree.map(np.testing.assert_array_equal, variables["backbone"], genuine)
    l, rng = batch["l"], jax.random.key(2)
    # Both in one compilation (the backbone's forward dominates it).
    both = jax.jit(lambda s, v: (obj.predict(s, l, rng), obj.predict_with(v, l, rng)))
    out, out_with = both(state, variables)
    np.testing.assert_allclose(out, out_with, atol=1e-5)

    # The network reads the taps: other backbone weights, another prediction.
    scaled = with_frozen(model, state, jax.tree.map(lambda w: 0.5 * w, frozen(model, state)))
    other, other_with = both(scaled, obj.inference_variables(scaled))
    assert float(jnp.abs(out - other).max()) > 1e-5
    np.testing.assert_allclose(other, other_with, atol=1e-5)


# Parameter counts (G, or encoder + decoder) of these test-sized networks at the commit
# before backbones existed: a config without a backbone builds the same trees.
PARAM_COUNTS = {"gan": 9998, "unetgan": 10718, "pix2pix_resnet": 15630, "wgan_gp": 11122,
                "basicvae": 11298, "unetvae": 11678}


def _shapes(config):
    obj = make_objective(config)
    batch = {"l": jnp.zeros((1, SIZE, SIZE, 1)), "ab": jnp.zeros((1, SIZE, SIZE, 2))}
    return jax.eval_shape(lambda r: obj.init(r, batch), jax.random.key(0))


@pytest.mark.parametrize("model", GANS + VAES)
def test_without_a_backbone_the_trees_are_unchanged(model):
    state = _shapes(config_for(model))
    params = network_params(model, state.params)
    assert not any(k.startswith("tap") for k in params)
    collections = state.model_state["decoder"] if model in VAES else state.model_state
    assert set(collections) == {"batch_stats"}
    count = sum(x.size for x in jax.tree.leaves(state.params))
    assert count == PARAM_COUNTS[model]
    # A config written before the backbone fields existed builds the same tree.
    old = config_for(model)
    del old.model["backbone"], old.model["backbone_width"]
    assert jax.tree.structure(_shapes(old)) == jax.tree.structure(state)


@pytest.mark.parametrize("field,value,message", [
    ("model.backbone", "resnet50", r"config.model.backbone.*'efficientnet_lite0'"),
    ("model.backbone_width", 0, r"config.model.backbone_width"),
    ("model.backbone_trainable", "yes", r"config.model.backbone_trainable"),
])
@pytest.mark.parametrize("model", ["unetgan", "unetvae"])
def test_bad_backbone_fields_are_named(model, field, value, message):
    config = config_for(model, "efficientnet_lite0")
    section, name = field.split(".")
    # The configs' own typed field refuses a str for a bool when set; a config read back
    # from JSON (or written by hand) has no such guard, and the check must name it.
    if name in config[section] and not isinstance(value, type(config[section][name])):
        del config[section][name]
    config[section][name] = value
    with pytest.raises(ConfigError, match=message):
        make_objective(config)
