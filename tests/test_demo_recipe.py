"""The README's demo run (configs/unet.py:cpu on the six demo photos) trains a colorizer
that is honest when unsure: L1, an output layer that starts at gray, a mirrored in half
the images, chroma at 30-100% (docs/results.md has the full-size measurements)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from colorjax import color
from colorjax.presets import load_config
from colorjax.data import create_train_iterator, default_data_config, demo, images
from colorjax.data import prepare_folder, validate_data_config
from colorjax.objectives import make_objective
from conftest import STEADY_LR, photo_batch, set_fields, tiny_config
from test_data_fixtures import make_plain_folder


def init_key():
    """Parameter init compiles several times faster on the CPU with this key than with
    the default threefry one (tiny UNet: 3.6 s against 22 s on the busy 2-core machine)."""
    return jax.random.key(0, impl="unsafe_rbg")


RECIPE = {"loss": "l1", "model.zero_output": True, "data.mirror_a": 0.5,
          "data.min_chroma_scale": 0.3}
PLAIN = {"loss": "mse", "model.zero_output": False, "data.mirror_a": 0.0,
         "data.min_chroma_scale": 1.0}


def _fields(config, fields):
    return {k: config[k.split(".")[0]][k.split(".")[1]] if "." in k else config[k]
            for k in fields}


@pytest.mark.parametrize("variant", ["cpu", "cpu_backbone"])
def test_cpu_variants_use_the_demo_recipe(variant):
    assert _fields(load_config("unet", variant), RECIPE) == RECIPE


def test_the_gpu_variant_and_other_configs_keep_the_plain_recipe():
    assert _fields(load_config("unet", ""), PLAIN) == PLAIN
    assert _fields(load_config("resnet", "cpu"), PLAIN) == PLAIN
    gan = load_config("unetgan", "cpu")
    assert (gan.data.mirror_a, gan.data.min_chroma_scale) == (0.0, 1.0)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["unet", "resnet"])
def test_zero_output_predicts_gray_before_training(model):
    l = photo_batch(n=2, size=16)["l"]
    net = {z: make_objective(tiny_config(model, **{"model.zero_output": z})).model
           for z in (True, False)}
    variables = jax.jit(lambda r, x: net[True].init(r, x, train=False))(init_key(), l)
    assert np.all(np.asarray(jax.jit(net[True].apply)(variables, l)) == 0.0)
    # The same parameters either way: checkpoints and exports load across the setting.
    plain = jax.eval_shape(lambda r, x: net[False].init(r, x, train=False), jax.random.key(0), l)
    assert jax.tree.map(np.shape, variables) == jax.tree.map(lambda a: a.shape, plain)


def test_fusion_refuses_zero_output():
    config = load_config("fusion", "cpu")
    with config.unlocked():
        config.model.zero_output = True
    with pytest.raises(ValueError, match=r"config\.model\.zero_output: True is not allowed"):
        make_objective(config)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("recipe")
    src = make_plain_folder(root / "photos", 8)
    prepare_folder(src, "recipe", root / "tfds", val_fraction=0.0, progress=False)
    cfg = default_data_config()
    cfg.name, cfg.data_dir, cfg.image_size, cfg.read_threads = "recipe", str(root / "tfds"), 16, 0
    return cfg


def _batch(cfg, **fields):
    cfg = cfg.copy_and_resolve_references()
    for k, v in fields.items():
        cfg[k] = v
    return next(create_train_iterator(cfg, global_batch_size=8, seed=3))


def test_mirror_a_negates_a_and_keeps_l_b_and_the_crops(photos):
    plain, mirrored = _batch(photos), _batch(photos, mirror_a=1.0)
    np.testing.assert_array_equal(mirrored["l"], plain["l"])
    np.testing.assert_array_equal(mirrored["ab"][..., 1], plain["ab"][..., 1])
    np.testing.assert_array_equal(mirrored["ab"][..., 0], -plain["ab"][..., 0])
    half = _batch(photos, mirror_a=0.5)["ab"][..., 0]
    signs = [np.sign(np.sum(h * p)) for h, p in zip(half, plain["ab"][..., 0])]
    assert sorted(set(signs)) == [-1.0, 1.0]  # some images mirrored, some not


def test_min_chroma_scale_scales_each_images_ab_by_one_factor(photos):
    plain, scaled = _batch(photos), _batch(photos, min_chroma_scale=0.3)
    np.testing.assert_array_equal(scaled["l"], plain["l"])
    factors = []
    for s, p in zip(scaled["ab"], plain["ab"]):
        f = np.sum(s * p) / np.sum(p * p)
        np.testing.assert_allclose(s, f * p, atol=1e-6)
        factors.append(f)
    assert 0.3 <= min(factors) and max(factors) <= 1.0 and np.ptp(factors) > 0.05


@pytest.mark.parametrize("field,value", [("mirror_a", 1.5), ("mirror_a", -0.1),
                                         ("min_chroma_scale", 2.0), ("mirror_a", "half")])
def test_bad_augmentation_fields_are_named(field, value):
    with pytest.raises(ValueError, match=rf"config\.data\.{field}: .* is not allowed; "
                                         r"allowed: \[0\.0, 1\.0\]"):
        validate_data_config({field: value})


def _demo_validation_l(size):
    tiles = [t for name in demo.PHOTOS for t in demo.tiles(np.asarray(
        Image.open(demo.photo_dir() / name).convert("RGB")))[1]]
    rgb = np.stack([np.asarray(images.crop_resize(Image.fromarray(t), size, size))
                    for t in tiles])
    return color.rgb_to_model_inputs(rgb)


@pytest.mark.slow
def test_demo_training_learns_no_red_green_cast():
    """A tiny :cpu model trained on the demo photos keeps mean a near 0 on the demo's
    validation photos, whose truth is +11 (mostly orange): trained the plain way (MSE,
    no mirroring) it paints +14, the orange cast the demo used to put on every photo."""
    size, steps = 16, 40
    config = set_fields(load_config("unet", "cpu"), {
        "model.features": (8, 16), "data.image_size": size, "num_train_steps": steps,
        "data.read_threads": 0, **STEADY_LR})
    objective = make_objective(config)
    it = create_train_iterator(config.data, global_batch_size=config.batch_size,
                               seed=config.seed)
    batch = next(it)
    state = jax.jit(objective.init, static_argnums=2)(init_key(), batch, steps)
    step = jax.jit(objective.train_step)
    for i in range(steps):
        state, _ = step(state, batch, jax.random.key(i))
        batch = next(it)
    l, ab_true = _demo_validation_l(size)
    ab = np.asarray(jax.jit(objective.predict)(state, jnp.asarray(l), jax.random.key(0)))
    mean_a, mean_b = ab.mean((0, 1, 2)) * color.AB_SCALE
    true_a, true_b = ab_true.mean((0, 1, 2)) * color.AB_SCALE
    assert true_a > 9  # the demo's own colours are orange
    assert abs(mean_a) < 3, f"mean a {mean_a:+.2f}: a red cast (truth {true_a:+.2f})"
    # b (yellow-blue) is learnt, at no more colour than the truth has.
    assert 2 < mean_b < true_b + 3, f"mean b {mean_b:+.2f} (truth {true_b:+.2f})"
