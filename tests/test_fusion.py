"""Deep Koalarization (`fusion`): shapes, the frozen genuine EfficientNet-Lite0 backbone,
conditioning on its embedding, and a real training run that learns."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from colorjax.config.checks import ConfigError
from colorjax.models.efficientnet import load_efficientnet_lite0
from colorjax.models.fusion import (BACKBONE, BACKBONE_NAME, EMBED_DIM, FusionColorizer,
                                    classifier_embedding)
from colorjax.objectives import make_objective
from conftest import STEADY_LR, fit_fixed_batch, photo_batch, tiny_config

# Tiny widths on 32 px crops; the classifier sees 64 px (its native 224 is too slow here).
TINY = {"model.fusion_width": 16, "model.embed_size": 64, **STEADY_LR}
SIZE, FEATURES = 32, (8, 16, 32)


def _config(**overrides):
    return tiny_config("fusion", size=SIZE, features=FEATURES, **{**TINY, **overrides})


def _tree_equal(a, b) -> bool:
    if jax.tree.structure(a) != jax.tree.structure(b):
        return False
    return all(np.array_equal(np.asarray(x), np.asarray(y))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.fixture(scope="module")
def net():
    """The bare module and its variables, on two crops of two different photos."""
    model = FusionColorizer(features=FEATURES, fusion_width=16, embed_size=64)
    l = jnp.concatenate([photo_batch(1, SIZE)["l"], photo_batch(1, SIZE, "coffee")["l"]])
    init = jax.jit(lambda rng, l: model.init(rng, l, train=False))  # faster than eager here
    return model, init(jax.random.key(0), l), l


@pytest.mark.slow
def test_output_shape_range_and_collections(net):
    model, variables, l = net
    assert model.downsample_factor == 4
    assert set(variables) == {"params", "batch_stats", BACKBONE}
    # The classifier's weights are not trainable: nothing of it is in params.
    assert not any("stem_conv" in str(p) for p, _ in
                   jax.tree_util.tree_flatten_with_path(variables["params"])[0])
    ab = model.apply(variables, l, train=False)
    assert ab.shape == (2, SIZE, SIZE, 2) and ab.dtype == jnp.float32
    assert bool(jnp.all(jnp.abs(ab) <= 1.0)) and bool(jnp.all(jnp.isfinite(ab)))


@pytest.mark.slow
def test_init_holds_the_genuine_weights_and_load_pretrained_restores_them(net):
    _, variables, _ = net
    genuine = load_efficientnet_lite0()
    assert _tree_equal(variables[BACKBONE][BACKBONE_NAME], genuine)
    scrambled = {**variables, BACKBONE: jax.tree.map(jnp.zeros_like, variables[BACKBONE])}
    restored = FusionColorizer.load_pretrained(scrambled)
    assert _tree_equal(restored[BACKBONE][BACKBONE_NAME], genuine)
    assert _tree_equal(restored["params"], variables["params"])


@pytest.mark.slow
def test_the_embedding_conditions_the_output(net):
    model, variables, l = net
    weights = variables[BACKBONE][BACKBONE_NAME]
    emb = classifier_embedding(weights, l, 64)
    assert emb.shape == (2, EMBED_DIM)
    assert float(jnp.abs(emb[0] - emb[1]).max()) > 1e-2  # two photos, two embeddings
    # The default forward pass fuses exactly this embedding ...
    ab = model.apply(variables, l, train=False)
    np.testing.assert_allclose(model.apply(variables, l, train=False, embedding=emb), ab,
                               atol=1e-6)
    # ... and swapping the two photos' embeddings (or zeroing them) changes the colours.
    swapped = model.apply(variables, l, train=False, embedding=emb[::-1])
    zeroed = model.apply(variables, l, train=False, embedding=jnp.zeros_like(emb))
    assert float(jnp.abs(swapped - ab).max()) > 1e-3
    assert float(jnp.abs(zeroed - ab).max()) > 1e-3


@pytest.mark.slow
def test_training_learns_and_keeps_the_backbone_frozen():
    config = _config()
    assert config.loss == "huber" and config.model.name == "fusion"
    obj = make_objective(config)
    assert obj.downsample_factor == 4
    batch = photo_batch(4, SIZE)
    state = obj.init(jax.random.key(0), batch, 100)
    assert _tree_equal(state.model_state[BACKBONE][BACKBONE_NAME], load_efficientnet_lite0())
    backbone0 = jax.device_get(state.model_state[BACKBONE])
    params0 = jax.device_get(state.params)
    state, losses = fit_fixed_batch(obj, state, batch)
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:3]), losses
    assert _tree_equal(jax.device_get(state.model_state[BACKBONE]), backbone0)
    assert not _tree_equal(jax.device_get(state.params), params0)
    ab = obj.predict(state, batch["l"], jax.random.key(0))
    assert ab.shape == batch["ab"].shape


@pytest.mark.slow
def test_bfloat16_step_returns_the_backbone_bit_for_bit():
    config = _config(precision="bfloat16", **{"model.norm": "none"})
    obj = make_objective(config)
    batch = photo_batch(2, SIZE)
    state = obj.init(jax.random.key(0), batch, 10)
    assert set(state.model_state) == {BACKBONE}  # no BatchNorm: only the frozen collection
    backbone0 = jax.device_get(state.model_state[BACKBONE])
    state, m = jax.jit(obj.train_step)(state, batch, jax.random.key(1))
    assert np.isfinite(float(m["loss"]))
    assert _tree_equal(jax.device_get(state.model_state[BACKBONE]), backbone0)


@pytest.mark.slow
def test_fused_classifier_maps_condition_the_output(net):
    """`fusion_taps`: the classifier's feature maps join the fusion layer; the paper's
    network (no taps) is unchanged, and other maps give other colours."""
    _, _, l = net
    model = FusionColorizer(features=FEATURES, fusion_width=16, embed_size=64,
                            fusion_taps=(2, 3), tap_width=4)
    variables = jax.jit(lambda rng, l: model.init(rng, l, train=False))(jax.random.key(0), l)
    assert {"fusion_tap2", "fusion_tap3"} <= set(variables["params"])
    # The fusion layer reads the bottleneck, the embedding and two 4-channel maps.
    assert variables["params"]["fusion"]["kernel"].shape == (1, 1, 16 + EMBED_DIM + 8, 16)
    ab = model.apply(variables, l, train=False)
    assert ab.shape == (2, SIZE, SIZE, 2) and bool(jnp.all(jnp.isfinite(ab)))
    other = {**variables, BACKBONE: jax.tree.map(lambda w: 0.5 * w, variables[BACKBONE])}
    # Same embedding, other classifier weights: only the fused maps can change the output.
    emb = classifier_embedding(variables[BACKBONE][BACKBONE_NAME], l, 64)
    moved = model.apply(other, l, train=False, embedding=emb)
    assert float(jnp.abs(moved - ab).max()) > 1e-4


@pytest.mark.parametrize("field,value", [("model.embed_size", 16), ("model.fusion_width", 0),
                                         ("model.features", ()), ("model.fusion_taps", (5,)),
                                         ("model.fusion_tap_width", 0)])
def test_bad_fusion_fields_are_named(field, value):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        make_objective(_config(**{field: value}))


@pytest.mark.slow
def test_export_round_trip_predicts_the_same(tmp_path):
    from colorjax import Colorizer
    from colorjax.training import export

    config = _config()
    obj = make_objective(config)
    batch = photo_batch(2, SIZE)
    state = obj.init(jax.random.key(0), batch)
    path = export.write_export(str(tmp_path / "fusion"), obj.inference_variables(state),
                               config, step=1)
    colorizer = Colorizer.load(path)
    assert colorizer.metadata["model"] == "fusion" and not colorizer.samples
    assert _tree_equal(colorizer.variables[BACKBONE][BACKBONE_NAME], load_efficientnet_lite0())
    rng = jax.random.key(3)
    np.testing.assert_allclose(colorizer.predict_ab(np.asarray(batch["l"]), rng),
                               obj.predict(state, batch["l"], rng), atol=1e-5)
