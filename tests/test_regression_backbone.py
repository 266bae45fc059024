"""Regression colorizers with a pretrained backbone (`config.model.backbone`): VGG16 or
EfficientNet-Lite0 reads the gray image and its feature maps feed the UNet's decoder levels
(the ResNet's head). Frozen by default (state, not params; taps outside the gradient);
`backbone_trainable` fine-tunes it with its own learning rate."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import STEADY_LR, photo_batch, tiny_config

from colorjax.inference import artifact
from colorjax.training import export
from colorjax.color import gray_rgb
from colorjax.models.backbone import TAP_STRIDES, backbone_taps, load_backbone, tap_shapes
from colorjax.models.efficientnet import efficientnet_features
from colorjax.models.pretrained import vgg16_features
from colorjax.objectives import make_objective
from colorjax.objectives.regression import split_optimizer

BACKBONES = ("vgg16", "efficientnet_lite0")
COMBOS = [(m, b) for m in ("unet", "resnet") for b in BACKBONES]
TRAIN_SIZE = 32  # the combo that also trains for a few dozen steps and is exported
TRAINED = ("unet", "efficientnet_lite0")


def config_for(model, backbone="none", size=16, **fields):
    extra = {"model.width": 8} if model == "resnet" else {}
    return tiny_config(model, size=size, **STEADY_LR, **extra,
                       **{"model.backbone": backbone, "model.backbone_width": 8}, **fields)


_CACHE = {}


def init_key():
    """An RBG key for init: XLA:CPU compiles threefry's init of these networks in ~25 s,
    RBG's in ~6 s (see colorjax.objectives.base.rbg_key)."""
    return jax.random.key(0, impl="rbg")


def setup(model, backbone):
    """(objective, config, batch, state0, state after one step, metrics, jitted step,
    predict), built once per (model, backbone)."""
    key = (model, backbone)
    if key not in _CACHE:
        size = TRAIN_SIZE if key == TRAINED else 16
        config = config_for(model, backbone, size=size)
        obj = make_objective(config)
        batch = photo_batch(4, size)
        state0 = jax.jit(obj.init, static_argnums=2)(init_key(), batch, 100)
        step = jax.jit(obj.train_step)
        state, metrics = step(state0, batch, jax.random.key(1))
        # Prediction runs eagerly: cheaper than compiling it once more per combination.
        _CACHE[key] = (obj, config, batch, state0, state, metrics, step, obj.predict)
    return _CACHE[key]


def _differs(a, b) -> bool:
    return any(not np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.mark.slow
@pytest.mark.parametrize("model,backbone", COMBOS)
def test_frozen_backbone_step(model, backbone):
    obj, _, batch, state0, state, metrics, _, predict = setup(model, backbone)
    assert bool(metrics["finite"]) and np.isfinite(float(metrics["loss"]))
    genuine = load_backbone(backbone)
    # Bit-identical, outside the optimised parameters; the network's parameters moved.
    jax.tree.map(np.testing.assert_array_equal, state.model_state["backbone"], genuine)
    jax.tree.map(np.testing.assert_array_equal, state0.model_state["backbone"], genuine)
    assert "backbone" not in state.params
    assert any(k.startswith("tap") for k in state.params)
    assert _differs(state0.params, state.params)
    n_backbone = sum(x.size for x in jax.tree.leaves(state.model_state["backbone"]))
    assert sum(x.size for x in jax.tree.leaves(state.opt_state)) < n_backbone

    # The network reads the taps: other backbone weights, another prediction.
    l = batch["l"]
    out = predict(state, l, jax.random.key(0))
    scaled = {**state.model_state,
              "backbone": jax.tree.map(lambda w: 0.5 * w, state.model_state["backbone"])}
    other = predict(state.replace(model_state=scaled), l, jax.random.key(0))
    assert float(jnp.abs(out - other).max()) > 1e-5
    # predict == predict_with(inference_variables): exports are self-contained.
    variables = obj.inference_variables(state)
    assert set(variables) == {"params", "batch_stats", "backbone"}
    np.testing.assert_allclose(out, obj.predict_with(variables, l, jax.random.key(0)),
                               atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("backbone", BACKBONES)
def test_taps_are_the_features_of_the_gray_image(backbone):
    l = photo_batch(2, 32)["l"]
    weights = load_backbone(backbone)
    taps = backbone_taps(backbone, weights, l)
    again = backbone_taps(backbone, weights, l)
    rgb = gray_rgb(l)
    want = (vgg16_features(weights, rgb) if backbone == "vgg16"
            else efficientnet_features(weights, rgb)[0])
    assert [32 // t.shape[1] for t in taps] == list(TAP_STRIDES[backbone])
    for got, same, ref in zip(taps, again, want):
        assert got.dtype == jnp.float32
        np.testing.assert_array_equal(got, same)  # deterministic
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("backbone", BACKBONES)
def test_tap_shapes_are_the_traced_ones(backbone):
    """`tap_shapes` (init's taps, with no backbone traced) at odd and even sizes, square and
    not, against the shapes of the backbone run on them."""
    weights = load_backbone(backbone)
    for h, w in ((17, 23), (32, 48), (33, 31)):
        l = jax.ShapeDtypeStruct((2, h, w, 1), jnp.float32)
        traced = jax.eval_shape(lambda v, x: backbone_taps(backbone, v, x), weights, l)
        assert tap_shapes(backbone, l.shape) == [t.shape for t in traced], (h, w)
        assert all(t.dtype == jnp.float32 for t in traced)


@pytest.mark.parametrize("model,keys,count", [
    ("unet", ['ConvNormAct_0', 'DoubleConv_0', 'DoubleConv_1', 'DoubleConv_2', 'OutputHead_0',
              'UpNormAct_0'], 9082),
    ("resnet", ['BasicBlock_0', 'BasicBlock_1', 'BasicBlock_2', 'BasicBlock_3', 'ConvNormAct_0',
                'OutputHead_0', 'UpNormAct_0', 'UpNormAct_1', 'UpNormAct_2'], 17850),
])
def test_without_a_backbone_the_parameters_are_unchanged(model, keys, count):
    batch = {"l": jnp.zeros((1, 16, 16, 1)), "ab": jnp.zeros((1, 16, 16, 2))}

    def shapes(config):
        obj = make_objective(config)
        return jax.eval_shape(lambda r: obj.init(r, batch), jax.random.key(0))

    state = shapes(config_for(model))
    # The parameter names and sizes of the network before backbones existed.
    assert sorted(state.params) == keys
    assert sum(x.size for x in jax.tree.leaves(state.params)) == count
    assert set(state.model_state) == {"batch_stats"}
    # A config written before the backbone fields existed builds the same tree.
    old = config_for(model)
    for field in ("backbone", "backbone_width", "backbone_trainable", "backbone_learning_rate"):
        del old.model[field]
    assert jax.tree.structure(shapes(old)) == jax.tree.structure(state)


@pytest.mark.slow
def test_a_short_training_lowers_the_loss():
    _, _, batch, _, state, first, step, _ = setup(*TRAINED)
    losses = [float(first["loss"])]
    for i in range(30):
        state, metrics = step(state, batch, jax.random.key(i))
        losses.append(float(metrics["loss"]))
    assert np.all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < 0.7 * losses[0], losses


@pytest.mark.slow
def test_export_round_trip_predicts_as_the_training_state(tmp_path):
    obj, config, batch, _, state, _, _, predict = setup(*TRAINED)
    path = export.write_export(str(tmp_path / "export"), obj.inference_variables(state),
                               config, step=1)
    _, _, loaded, variables = artifact.read_export(path)
    assert "backbone" in variables
    want = predict(state, batch["l"], jax.random.key(0))
    got = loaded.predict_with(variables, batch["l"], jax.random.key(0))
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_split_optimizer_honours_each_learning_rate():
    config = config_for("unet")
    params = {"Conv_0": {"kernel": jnp.ones((3,))},
              "backbone": {"params": {"w": jnp.ones((4,))},
                           "batch_stats": {"mean": jnp.ones((2,))}}}
    grads = jax.tree.map(jnp.ones_like, params)
    for lr in (0.0, 1e-2):
        tx = split_optimizer(config.optimizer, 10, lr)
        updates, _ = tx.update(grads, tx.init(params), params)
        new = optax.apply_updates(params, updates)
        assert not np.array_equal(new["Conv_0"]["kernel"], params["Conv_0"]["kernel"])
        np.testing.assert_array_equal(new["backbone"]["batch_stats"]["mean"], 1.0)
        moved = not np.array_equal(new["backbone"]["params"]["w"], params["backbone"]["params"]["w"])
        assert moved == (lr > 0)


@pytest.mark.slow
def test_trainable_backbone(backbone_lr=1e-3):
    """One real fine-tuning step (the split of learning rates, lr=0 included, is
    test_split_optimizer_honours_each_learning_rate's)."""
    # zero_output off: an output conv that starts at zero passes no gradient back in step 1.
    config = config_for("unet", "efficientnet_lite0", **{
        "model.backbone_trainable": True, "model.backbone_learning_rate": backbone_lr,
        "model.zero_output": False})
    obj = make_objective(config)
    batch = photo_batch(4, 16)
    state0 = jax.jit(obj.init, static_argnums=2)(init_key(), batch, 100)
    assert "backbone" not in state0.model_state
    genuine = load_backbone("efficientnet_lite0")
    jax.tree.map(np.testing.assert_array_equal, state0.params["backbone"], genuine)
    state, metrics = jax.jit(obj.train_step)(state0, batch, jax.random.key(1))
    assert bool(metrics["finite"])
    network = lambda p: {k: v for k, v in p.items() if k != "backbone"}
    assert _differs(network(state0.params), network(state.params))
    # The BatchNorm statistics of the backbone never move; its weights move at their rate.
    jax.tree.map(np.testing.assert_array_equal, state.params["backbone"]["batch_stats"],
                 genuine["batch_stats"])
    assert _differs(state.params["backbone"]["params"], genuine["params"]) == (backbone_lr > 0)
    variables = obj.inference_variables(state)
    assert set(variables) == {"params", "batch_stats"} and "backbone" in variables["params"]
    np.testing.assert_allclose(obj.predict(state, batch["l"], jax.random.key(0)),
                               obj.predict_with(variables, batch["l"], jax.random.key(0)),
                               atol=1e-5)


@pytest.mark.parametrize("field,value", [
    ("backbone", "resnet50"), ("backbone_width", 0), ("backbone_trainable", "yes"),
    ("backbone_learning_rate", -1.0)])
def test_bad_backbone_fields_are_named(field, value):
    config = config_for("unet", "vgg16", **{"model.backbone_trainable": True})
    with config.unlocked():  # type-safe fields: replace rather than assign
        del config.model[field]
        config.model[field] = value
    with pytest.raises(ValueError, match=rf"config.model.{field}: {value!r} is not allowed"):
        make_objective(config)


def test_fusion_takes_no_backbone():
    config = tiny_config("fusion", size=32)
    config.model.backbone = "vgg16"
    with pytest.raises(ValueError, match=r"config.model.backbone: 'vgg16' is not allowed"):
        make_objective(config)
