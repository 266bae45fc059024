"""Zhang et al.'s networks as colorjax models (colorjax/models/zhang.py,
colorjax/objectives/zhang.py) at test widths: the configs' checks, ECCV16's decoding as the
release's forward, the authors' pre/post-processing (`AuthorsDemoIO`), hints read by both,
and a tiny SIGGRAPH17 that learns to follow hints. Against the authors' code itself:
tests/test_zhang_peer.py."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import STEADY_LR, fit_fixed_batch, photo_batch, tiny_config
from PIL import Image
from skimage import color as skcolor
from skimage import data as skdata

from colorjax.color import ab_bins
from colorjax import hints
from colorjax.config.checks import ConfigError
from colorjax.training.validation import validate_config
from colorjax.objectives import make_objective
from colorjax.objectives.zhang import AuthorsDemoIO, block_mean, derived_bins
from colorjax.media.photo_io import resize_bilinear_torch
from colorjax.media.photos import photo_from_array

TINY = {"model.width": 4, **STEADY_LR}


def init_key():
    # An RBG key: Flax's initialisers compile and run several times faster with it on CPU.
    return jax.random.key(0, impl="rbg")


def config(model, size=32, **fields):
    return tiny_config(model, size=size, **{**TINY, **fields})


def hint_batch(n, size, num_points=5):
    batch = photo_batch(n, size)
    ab = np.asarray(batch["ab"])
    planes = np.stack([hints.sample_planes(ab[i], hints.hint_rng(0, i), num_points)
                       for i in range(n)])
    return {**batch, "hints": jnp.asarray(planes)}


# --- configs -------------------------------------------------------------------------------


def test_configs_validate_and_name_their_mistakes():
    for model in ("eccv16", "siggraph17"):
        validate_config(config(model))
    with pytest.raises(ConfigError, match=r"^config\.model\.hints: False is not allowed for "
                                          r"siggraph17.*; allowed: True$"):
        validate_config(config("siggraph17", **{"model.hints": False}))
    with pytest.raises(ConfigError, match=r"^config\.model\.backbone: 'vgg16' is not allowed"):
        validate_config(config("eccv16", **{"model.backbone": "vgg16"}))
    with pytest.raises(ConfigError, match=r"^config\.model\.width: 0 is not allowed"):
        validate_config(config("eccv16", **{"model.width": 0}))
    with pytest.raises(ConfigError, match=r"config\.data\.image_size: 36 cannot be halved"):
        validate_config(config("siggraph17", size=36))


def test_derived_bins_are_313_grid_points_around_the_gamut():
    bins = derived_bins()
    assert bins.shape == (313, 2) and len(np.unique(bins, axis=0)) == 313
    assert np.all(bins % 10 == 0)
    assert bins.min() >= -120 and bins.max() <= 110
    inside = {tuple(b) for b in bins}
    assert all(tuple(c) in inside for c in ab_bins.in_gamut_centers())  # every sRGB colour's


# --- ECCV16: the release's decoding ------------------------------------------------------


@pytest.mark.slow
def test_eccv16_predicts_the_softmax_mean_upsampled_x4_and_anneals():
    c = config("eccv16")
    obj = make_objective(c)
    batch = photo_batch(2, 32)
    state = obj.init(init_key(), batch)
    v = obj.inference_variables(state)
    # Varied logits: random output biases, and the last layer scaled up.
    head = v["params"]["model8_6"]
    head["bias"] = 3.0 * jax.random.normal(jax.random.key(1), head["bias"].shape)
    head["kernel"] = head["kernel"] * 1e4
    logits = np.asarray(jax.jit(obj.logits_with)(v, batch["l"]), np.float64)
    assert logits.shape == (2, 8, 8, 313)
    centers = np.asarray(v["colour_bins"]["centers"], np.float64)
    p = np.exp(logits - logits.max(-1, keepdims=True))
    mean = (p / p.sum(-1, keepdims=True)) @ centers / 110.0  # model_out(softmax(.)), / 110
    want = jax.image.resize(mean, (2, 32, 32, 2), "linear")  # nn.Upsample(scale_factor=4)
    predict = jax.jit(obj.predict_with, static_argnames="sampling")
    got = np.asarray(predict(v, batch["l"], None))
    np.testing.assert_allclose(got, want, atol=2e-5)
    assert np.ptp(got) > 0.05  # not a constant
    # The annealed mean at T (the paper's 0.38): softmax(log p / T), then the same.
    q = np.exp((logits - logits.max(-1, keepdims=True)) / 0.38)
    annealed = jax.image.resize((q / q.sum(-1, keepdims=True)) @ centers / 110.0,
                                (2, 32, 32, 2), "linear")
    vivid = np.asarray(predict(v, batch["l"], None, temperature=np.float32(0.38)))
    np.testing.assert_allclose(vivid, annealed, atol=2e-5)
    assert np.abs(vivid - got).max() > 0.05


@pytest.mark.slow
def test_eccv16_trains_at_the_logits_resolution_with_hints():
    c = config("eccv16", **{"model.hints": True})
    obj = make_objective(c)
    batch = hint_batch(4, 32)
    state = obj.init(init_key(), batch, 10)
    state, losses = fit_fixed_batch(obj, state, batch, steps=3)
    assert np.isfinite(losses).all()
    v = obj.inference_variables(state)
    logits = jax.jit(obj.logits_with)
    with_hints = np.asarray(logits(v, batch["l"], batch["hints"]))
    without = np.asarray(logits(v, batch["l"]))
    assert with_hints.shape == (4, 8, 8, 313)
    assert np.abs(with_hints - without).max() > 1e-4  # the first layer reads the planes
    x = np.arange(2 * 8 * 8 * 2, dtype=np.float32).reshape(2, 8, 8, 2)
    np.testing.assert_array_equal(block_mean(x, 4)[0, 0, 0], x[0, :4, :4].mean((0, 1)))


# --- the authors' pre/post-processing ----------------------------------------------------


def test_authors_io_resizes_the_rgb_photo_bicubically_then_takes_l():
    io = AuthorsDemoIO()
    rgb = skdata.coffee()[::2, ::2]  # (200, 300, 3)
    want = skcolor.rgb2lab(np.asarray(Image.fromarray(rgb).resize((64, 64), Image.BICUBIC)))
    np.testing.assert_allclose(io.model_l(photo_from_array(rgb), 64), want[..., 0], atol=1e-3)
    # A gray photo: its levels as three equal channels (the demo's load_img).
    gray = np.asarray(Image.fromarray(rgb).convert("L"))
    want = skcolor.rgb2lab(np.asarray(Image.fromarray(np.tile(gray[..., None], 3)).resize(
        (64, 64), Image.BICUBIC)))
    np.testing.assert_allclose(io.model_l(photo_from_array(gray), 64), want[..., 0], atol=1e-3)
    assert io.hint_side(256) == 5 and io.hint_side(64) == 1 and io.hint_side(512) == 11


def test_authors_io_upsamples_ab_as_torch_bilinear():
    rng = np.random.default_rng(0)
    ab = rng.uniform(-50, 50, (16, 16, 2)).astype(np.float32)
    # Up: jax.image.resize's linear kernel is the same half-pixel interpolation.
    up = resize_bilinear_torch(ab, 48, 40, stripe_pixels=100)  # stripes of 2 rows
    want = jax.image.resize(ab, (40, 48, 2), "linear")
    np.testing.assert_allclose(up, want, atol=1e-4)
    # Down by 2 (no antialiasing, unlike PIL): the mean of each 2x2 block.
    np.testing.assert_allclose(resize_bilinear_torch(ab, 8, 8),
                               ab.reshape(8, 2, 8, 2, 2).mean((1, 3)), atol=1e-5)
    np.testing.assert_array_equal(AuthorsDemoIO().full_size_ab(ab, 16, 16), ab)


# --- hints -------------------------------------------------------------------------------


@pytest.mark.slow  # 60 steps: ~40 s on the shared 2-core build machine
def test_a_tiny_siggraph17_learns_to_follow_hints():
    """Eight copies of one gray crop, each coloured with its own flat colour: only the hint
    (a 3x3 patch of that colour) tells them apart. After a short fit on this batch the
    prediction next to a hint is much nearer its colour than without hints."""
    n, size = 8, 32
    c = config("siggraph17", size=size, **{"model.width": 8})
    obj = make_objective(c)
    l = jnp.repeat(photo_batch(1, size)["l"], n, axis=0)
    angles = 2 * np.pi * np.arange(n) / n
    colours = 0.4 * np.stack([np.cos(angles), np.sin(angles)], -1).astype(np.float32)
    ab = np.broadcast_to(colours[:, None, None, :], (n, size, size, 2)).copy()
    planes = np.zeros((n, size, size, 3), np.float32)
    rng = np.random.default_rng(0)
    where = []
    for i in range(n):
        y, x = rng.integers(3, size - 6, 2)
        planes[i, y:y + 3, x:x + 3] = (*colours[i], 1.0)
        where.append((y, x))
    batch = {"l": l, "ab": jnp.asarray(ab), "hints": jnp.asarray(planes)}
    state = obj.init(init_key(), batch, 60)
    state, losses = fit_fixed_batch(obj, state, batch, steps=60)
    assert losses[-1] < 0.5 * losses[0]
    predict = jax.jit(obj.predict)
    with_hints = np.asarray(predict(state, l, jax.random.key(0), hints=batch["hints"]))
    without = np.asarray(predict(state, l, jax.random.key(0)))
    near_with, near_without = [], []
    for i, (y, x) in enumerate(where):
        region = (slice(y - 2, y + 5), slice(x - 2, x + 5))
        near_with.append(np.abs(with_hints[i][region] - colours[i]).mean())
        near_without.append(np.abs(without[i][region] - colours[i]).mean())
    assert np.mean(near_with) < 0.5 * np.mean(near_without), (near_with, near_without)
