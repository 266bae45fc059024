"""Diffusion with frozen VGG16 features of L (`config.model.backbone=vgg16`): the backbone
is the genuine ImageNet VGG16, stays frozen through training, conditions the network, and
is run once per sample, outside the sampler's loop."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from colorjax.models.pretrained import load_params
from colorjax.models.backbone import backbone_taps
from colorjax.objectives import make_objective
from test_diffusion_objective import bare_diffusion_config, toy_batch


def backbone_config(**model):
    c = bare_diffusion_config()
    c.model.backbone, c.model.backbone_width = "vgg16", 8
    c.model.update(model)
    return c


@pytest.mark.parametrize("field,value,allowed", [
    ("backbone", "resnet50", r"\['efficientnet_lite0', 'none', 'vgg16'\]"),
    ("backbone_width", 0, r"\[1, ∞\)"),
])
def test_bad_backbone_fields_are_named(field, value, allowed):
    with pytest.raises(ValueError, match=rf"config.model.{field}: {value!r} is not allowed; "
                                         rf"allowed: {allowed}"):
        make_objective(backbone_config(**{field: value}))


def test_taps_are_the_lpips_vgg16_features_of_the_gray_image():
    l = toy_batch(n=2, size=32)["l"]
    taps = backbone_taps("vgg16", load_params("vgg"), l)
    assert [t.shape for t in taps] == [(2, 32, 32, 64), (2, 16, 16, 128), (2, 8, 8, 256),
                                       (2, 4, 4, 512), (2, 2, 2, 512)]
    # The gray image's features, not L's as one channel: a colour image with the same
    # lightness but ab = 0 is the same input.
    from colorjax.color import gray_rgb
    from colorjax.models.pretrained import vgg16_features
    ref = vgg16_features(load_params("vgg"), gray_rgb(np.asarray(l)))
    for got, want in zip(taps, ref):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)


@pytest.fixture(scope="module")
def trained():
    obj = make_objective(backbone_config())
    batch = toy_batch(n=4, size=16)
    state0 = jax.jit(obj.init, static_argnums=2)(jax.random.key(0), batch, 10)
    step = jax.jit(obj.train_step)
    state = state0
    for i in range(3):
        state, metrics = step(state, batch, jax.random.key(i))
    return obj, batch, state0, state, metrics


@pytest.mark.slow
def test_backbone_is_frozen_state_and_its_projection_learns(trained):
    obj, _, state0, state, metrics = trained
    assert bool(metrics["finite"])
    # The genuine weights, unchanged by training and outside the optimised parameters.
    genuine = load_params("vgg")
    jax.tree.map(np.testing.assert_array_equal, state.model_state["backbone"], genuine)
    jax.tree.map(np.testing.assert_array_equal, state0.model_state["backbone"], genuine)
    assert "backbone" not in str(jax.tree_util.tree_structure(state.params))
    n_backbone = sum(x.size for x in jax.tree.leaves(state.model_state))
    n_opt = sum(x.size for x in jax.tree.leaves(state.opt_state))
    assert n_opt < n_backbone  # Adam's moments cover the small network only

    # The zero-initialised convs that add the hypercolumn to each level start at 0 and
    # move: the loss's gradient reaches the network through the backbone's features.
    def injection_kernels(params):
        return [params[f"semantic_level{i}"]["kernel"] for i in range(2)]  # one per level
    before, after = injection_kernels(state0.params), injection_kernels(state.params)
    assert before
    assert all(float(jnp.abs(k).max()) == 0.0 for k in before)
    assert all(float(jnp.abs(k).max()) > 0.0 for k in after)


@pytest.mark.slow
def test_the_network_reads_the_backbone(trained):
    obj, batch, _, state, _ = trained
    # Same x_t, t and L; only the backbone's weights differ: the output must change.
    fn = obj.model_fn(state.params, batch["l"], state.model_state)
    scaled = {"backbone": jax.tree.map(lambda w: 0.5 * w, state.model_state["backbone"])}
    fn_other = obj.model_fn(state.params, batch["l"], scaled)
    t = jnp.full((4,), 500, jnp.int32)
    assert float(jnp.abs(fn(batch["ab"], t) - fn_other(batch["ab"], t)).max()) > 1e-6


def _sub_jaxprs(params):
    for v in params.values():
        for item in (v if isinstance(v, (tuple, list)) else (v,)):
            if hasattr(item, "eqns"):
                yield item
            elif hasattr(item, "jaxpr") and hasattr(item.jaxpr, "eqns"):
                yield item.jaxpr


@pytest.mark.slow
def test_backbone_runs_once_per_sample_outside_the_loop(trained):
    obj, batch, _, state, _ = trained
    jaxpr = jax.make_jaxpr(lambda s, l, r: obj.predict(s, l, r))(
        state, batch["l"], jax.random.key(0)).jaxpr

    def convs(eqns, inside=False, out=None):
        out = out if out is not None else {"outside": [], "inside": []}
        for e in eqns:
            if e.primitive.name == "conv_general_dilated":
                out["inside" if inside else "outside"].append(tuple(e.invars[1].aval.shape))
            for sub in _sub_jaxprs(e.params):
                convs(sub.eqns, inside or e.primitive.name in ("scan", "while"), out)
        return out

    found = convs(jaxpr.eqns)
    vgg_first = (3, 3, 3, 64)  # VGG16's first conv: RGB in, 64 out
    assert found["outside"].count(vgg_first) == 1, found["outside"]
    assert vgg_first not in found["inside"]
    assert len(found["outside"]) >= 13  # all of VGG16's convs run before the loop


@pytest.mark.slow
def test_predict_equals_predict_with_inference_variables(trained):
    obj, batch, _, state, _ = trained
    variables = obj.inference_variables(state)
    assert set(variables) == {"params", "backbone"}
    rng = jax.random.key(3)
    np.testing.assert_allclose(jax.jit(obj.predict)(state, batch["l"], rng),
                               jax.jit(obj.predict_with)(variables, batch["l"], rng), atol=1e-6)
